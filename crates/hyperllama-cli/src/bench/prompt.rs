//! Deterministic benchmark prompts: text of about N tokens drawn from a fixed word list by a
//! seeded generator (SplitMix64), so two runs with the same `--seed` send the same requests
//! to every server.
//!
//! # Invariants
//! - The same `(seed, stream)` always gives the same text; different streams give different
//!   text (every request of a run is its own prompt unless a workload shares one on purpose).
//! - Sizes are approximate: one word of the list is about one token in the common BPE
//!   vocabularies (short lowercase English words with a leading space); the real counts are
//!   the ones the server reports.

/// Short common words, each about one token after a space.
const WORDS: &[&str] = &[
    "time",
    "year",
    "people",
    "way",
    "day",
    "man",
    "thing",
    "woman",
    "life",
    "child",
    "world",
    "school",
    "state",
    "family",
    "student",
    "group",
    "country",
    "problem",
    "hand",
    "part",
    "place",
    "case",
    "week",
    "company",
    "system",
    "program",
    "question",
    "work",
    "number",
    "night",
    "point",
    "home",
    "water",
    "room",
    "mother",
    "area",
    "money",
    "story",
    "fact",
    "month",
    "lot",
    "right",
    "study",
    "book",
    "eye",
    "job",
    "word",
    "business",
    "issue",
    "side",
    "kind",
    "head",
    "house",
    "service",
    "friend",
    "father",
    "power",
    "hour",
    "game",
    "line",
    "end",
    "member",
    "law",
    "car",
    "city",
    "name",
    "team",
    "minute",
    "idea",
    "kid",
    "body",
    "back",
    "parent",
    "face",
    "others",
    "level",
    "office",
    "door",
    "health",
    "person",
    "art",
    "war",
    "history",
    "party",
    "result",
    "change",
    "morning",
    "reason",
    "research",
    "girl",
    "guy",
    "moment",
    "air",
    "teacher",
    "force",
    "education",
    "good",
    "new",
    "first",
    "last",
    "long",
    "great",
    "little",
    "own",
    "other",
    "old",
    "big",
    "high",
    "different",
    "small",
    "large",
    "next",
    "early",
    "young",
    "important",
    "few",
    "public",
    "bad",
    "same",
    "able",
    "blue",
    "green",
    "red",
    "cold",
    "warm",
    "quiet",
    "happy",
    "simple",
    "open",
    "river",
    "mountain",
    "garden",
    "tree",
    "stone",
    "bridge",
    "window",
    "letter",
    "music",
    "paper",
    "road",
    "market",
    "train",
    "light",
    "summer",
    "winter",
    "ocean",
    "island",
    "forest",
    "bird",
    "horse",
    "table",
    "chair",
    "bread",
    "apple",
    "coffee",
    "street",
    "village",
    "doctor",
    "farmer",
    "painter",
    "castle",
    "lake",
    "field",
    "cloud",
    "rain",
    "snow",
    "wind",
];

/// Question openings for the short prompts.
const ASKS: &[&str] = &[
    "Write a short story about",
    "Describe in detail",
    "Explain to a child",
    "Write a poem about",
    "List some facts about",
    "Tell me about",
];

/// A small deterministic generator (SplitMix64).
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator for one stream of one run: `seed` mixed with `stream`.
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut g = SplitMix64(seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F));
        g.next_u64();
        g
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Text of about `n_tokens` tokens: words in sentences of 8 to 15 words.
pub fn text(seed: u64, stream: u64, n_tokens: usize) -> String {
    let mut g = SplitMix64::new(seed, stream);
    let mut out = String::with_capacity(n_tokens * 7);
    let mut left = n_tokens;
    while left > 0 {
        // A sentence's period is about one more token.
        let len = (8 + g.below(8)).min(left.saturating_sub(1).max(1));
        for i in 0..len {
            let w = WORDS[g.below(WORDS.len())];
            if i == 0 {
                if !out.is_empty() {
                    out.push(' ');
                }
                let mut c = w.chars();
                if let Some(first) = c.next() {
                    out.extend(first.to_uppercase());
                    out.push_str(c.as_str());
                }
            } else {
                out.push(' ');
                out.push_str(w);
            }
        }
        out.push('.');
        left = left.saturating_sub(len + 1);
    }
    out
}

/// Paragraphs of plain English prose (written for this benchmark), the material of
/// [`document`]: a model copies or quotes real sentences faithfully, where a list of random
/// words makes small models wander off.
const PARAGRAPHS: &[&str] = &[
    "The old lighthouse stood at the edge of the cliff for more than a hundred years. Every night its keeper climbed the narrow stairs, lit the great lamp and watched the ships pass safely through the dark water below. When the storms came in winter, he stayed awake until morning, writing in his journal about the wind, the waves and the sailors he would never meet.",
    "Our team moved the billing service to a new database last spring. We copied the data in small batches during the night, compared every table with the old one, and kept both systems running side by side for two weeks. Only when the reports matched to the last cent did we switch the traffic over and turn the old machines off.",
    "To make bread at home you need flour, water, salt and a little yeast. Mix them in a large bowl, knead the dough for ten minutes until it feels smooth, then cover it and let it rest in a warm place. After an hour, shape the loaf, let it rise again and bake it in a hot oven until the crust turns deep brown.",
    "The river that runs through the valley was once full of fish. Farmers along its banks drew water for their fields, children learned to swim in its quiet bends, and in autumn the whole village gathered on the bridge to watch the salmon jump. Today a small group of volunteers cleans the banks every month to bring those days back.",
    "When you report a bug, describe what you did, what you expected to happen and what happened instead. Include the version of the program, the operating system and the exact error message. A short example that shows the problem is worth more than a long story, because it lets the people who fix it see the failure for themselves.",
    "The museum opened a new hall for its collection of clocks. Some of them are tiny and fit in the palm of a hand, others are taller than a grown man and ring so loudly that visitors cover their ears. A guide explains how each one keeps time, from simple water clocks to the first watches that sailors carried across the ocean.",
    "Good sleep is one of the simplest ways to stay healthy. Going to bed at the same time each night, keeping the bedroom dark and cool, and putting screens away an hour before sleep all help. Adults need seven to nine hours, and most people feel the difference after only a few days of regular rest.",
    "The city council voted to turn the empty lot behind the station into a public garden. Neighbors will plant vegetables and flowers in raised beds, the school will use one corner for science lessons, and a local bakery has offered to build a small stone oven where families can bake pizza together on summer evenings.",
];

/// A document of at least `n_tokens` tokens (about three words to four tokens): whole
/// paragraphs of [`PARAGRAPHS`] in an order drawn from `(seed, stream)`, separated by blank
/// lines, repeating the list if it runs out.
pub fn document(seed: u64, stream: u64, n_tokens: usize) -> String {
    let mut g = SplitMix64::new(seed, stream ^ 0x444F_4355);
    let mut order: Vec<usize> = (0..PARAGRAPHS.len()).collect();
    // Fisher-Yates.
    for i in (1..order.len()).rev() {
        let j = g.below(i + 1);
        order.swap(i, j);
    }
    let mut out = String::new();
    let mut words = 0;
    for &i in order.iter().cycle() {
        if words * 4 >= n_tokens * 3 {
            break;
        }
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        out.push_str(PARAGRAPHS[i]);
        words += PARAGRAPHS[i].split_whitespace().count();
    }
    out
}

/// A short question (about 12 tokens), different for each stream.
pub fn question(seed: u64, stream: u64) -> String {
    let mut g = SplitMix64::new(seed, stream ^ 0x5155_4553);
    let ask = ASKS[g.below(ASKS.len())];
    let a = WORDS[g.below(WORDS.len())];
    let b = WORDS[g.below(WORDS.len())];
    let c = WORDS[g.below(WORDS.len())];
    format!("{ask} the {a}, the {b} and the {c}.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_prompts() {
        assert_eq!(text(42, 7, 300), text(42, 7, 300));
        assert_eq!(question(42, 7), question(42, 7));
        assert_ne!(text(42, 7, 300), text(42, 8, 300));
        assert_ne!(text(42, 7, 300), text(43, 7, 300));
        assert_ne!(question(42, 1), question(42, 2));
        assert_eq!(document(42, 1, 300), document(42, 1, 300));
        assert_ne!(document(42, 1, 300), document(42, 2, 300));
    }

    #[test]
    fn a_document_has_at_least_the_asked_size_in_whole_paragraphs() {
        for n in [1, 100, 300, 2000] {
            let d = document(7, 3, n);
            assert!(d.split_whitespace().count() * 4 >= n * 3, "{n}");
            for p in d.split("\n\n") {
                assert!(PARAGRAPHS.contains(&p), "{p}");
            }
        }
    }

    #[test]
    fn text_has_about_the_asked_size() {
        for n in [1, 5, 60, 500, 2000] {
            let t = text(1, 2, n);
            let words = t.split_whitespace().count();
            let periods = t.matches('.').count();
            assert!(
                words + periods >= n,
                "{n}: {words} words + {periods} periods"
            );
            assert!(
                words + periods <= n + 2,
                "{n}: {words} words + {periods} periods"
            );
            assert!(t.ends_with('.'));
        }
        assert_eq!(text(1, 2, 0), "");
    }
}
