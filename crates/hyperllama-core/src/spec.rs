//! Speculative decoding's pure parts: prompt-lookup drafting and the per-sequence draft length.
//!
//! A *draft* is a guess of the next few tokens, verified by the target model in one forward
//! step (the scheduler plans the last sampled token plus the draft as one item whose logits
//! are needed at every position). Drafts here come from *prompt lookup*: the longest recent
//! n-gram that ends the sequence (prompt and output so far) is searched for earlier in the
//! sequence, and the tokens that followed its most recent earlier occurrence are proposed.
//! This pays on input-grounded tasks (rewriting, correcting, quoting a given text), where the
//! output copies long stretches of the input, and costs nothing when no n-gram matches.
//!
//! n-gram lengths are tried from [`NGRAM_MAX`] (4) down to [`NGRAM_MIN`] (2): a match of one
//! token is too weak a signal (a common token such as a space or a comma matches almost
//! anywhere), and a longer n-gram makes a more specific, more often right, guess. A sequence
//! whose drafts have not been accepted lately starts at [`NGRAM_STRICT`] (3) instead
//! ([`DraftControl::min_ngram`], [`propose_from`]): in free answers most 2-gram matches are
//! chance, and a rejected draft costs about half a decode step per token on a CPU.
//!
//! # Invariants
//! - [`propose`] returns at most `k` tokens, all taken from the sequence itself, and none when
//!   `k == 0` or no n-gram of length `NGRAM_MIN..=NGRAM_MAX` recurs.
//! - [`DraftControl::next_len`] is 0 while the sequence is cooling down, else in
//!   `1..=MAX_DRAFT`.

use crate::ids::TokenId;

/// Longest n-gram matched.
pub const NGRAM_MAX: usize = 4;
/// Shortest n-gram matched.
pub const NGRAM_MIN: usize = 2;
/// Most draft tokens per step: on a CPU a verified token costs about half a decode step, so a
/// fully accepted draft must be long for a step to yield twice the tokens per second.
pub const MAX_DRAFT: usize = 16;
/// Draft length a sequence starts with (and restarts with after a cool-down).
pub const INITIAL_DRAFT: usize = 4;
/// How far back (in tokens) the lookup searches: bounds its cost on long contexts. The search
/// scans that window block-wise for the last token, from the end and only as far back as a
/// match needs, so every decoding sequence can look each step (64 sequences of 8,192 tokens
/// without a match: about 0.06 ms on this project's 2-core machine; compared position by
/// position it was 2.3 ms, and 0.12 ms at 384 tokens).
pub const LOOKUP_WINDOW: usize = 8192;

/// Proposes up to `k` tokens to follow `tokens`: the continuation of the most recent earlier
/// occurrence of the longest suffix n-gram (see the module docs).
pub fn propose(tokens: &[TokenId], k: usize) -> Vec<TokenId> {
    propose_from(tokens, k, NGRAM_MIN)
}

/// [`propose`] with n-grams of at least `min_n` tokens (at most [`NGRAM_MAX`]): a sequence whose
/// drafts have not been accepted lately asks for the stronger evidence of a longer match
/// ([`DraftControl::min_ngram`]).
pub fn propose_from(tokens: &[TokenId], k: usize, min_n: usize) -> Vec<TokenId> {
    let len = tokens.len();
    let min_n = min_n.clamp(NGRAM_MIN, NGRAM_MAX);
    if k == 0 || len <= min_n {
        return Vec::new();
    }
    let start = len.saturating_sub(LOOKUP_WINDOW);
    // Every n-gram that ends the sequence ends with its last token: a block-wise scan finds
    // where that token recurs (most recent first, only as far back as needed, remembered for
    // the shorter n-grams), and only there are whole n-grams compared. An occurrence must
    // start at `start` or later and be followed by at least one token.
    let mut ends = Recurrences::new(&tokens[..len - 1], tokens[len - 1], start + min_n - 1);
    for n in (min_n..=NGRAM_MAX).rev() {
        if len <= n {
            continue;
        }
        let suffix = &tokens[len - n..];
        let earliest = start + n - 1;
        let mut i = 0;
        while let Some(end) = ends.get(i).filter(|&e| e >= earliest) {
            if tokens[end + 1 - n..=end] == *suffix {
                let from = end + 1;
                return tokens[from..(from + k).min(len)].to_vec();
            }
            i += 1;
        }
    }
    Vec::new()
}

/// The positions of `token` in `tokens[from..]`, last first, found lazily: blocks of 32 tokens
/// are compared without branching (which vectorizes), from the end, and looked into only
/// where they hold `token`.
struct Recurrences<'a> {
    tokens: &'a [TokenId],
    token: TokenId,
    from: usize,
    /// The blocks at and after this position are scanned.
    scanned: usize,
    found: Vec<usize>,
}

impl<'a> Recurrences<'a> {
    const BLOCK: usize = 32;

    fn new(tokens: &'a [TokenId], token: TokenId, from: usize) -> Self {
        Self {
            tokens,
            token,
            from,
            scanned: tokens.len().max(from),
            found: Vec::new(),
        }
    }

    /// The `i`-th most recent position, scanning further back as needed.
    fn get(&mut self, i: usize) -> Option<usize> {
        while self.found.len() <= i && self.scanned > self.from {
            let base = self.scanned.saturating_sub(Self::BLOCK).max(self.from);
            let block = &self.tokens[base..self.scanned];
            if block.iter().fold(false, |hit, &t| hit | (t == self.token)) {
                let token = self.token;
                self.found.extend(
                    block
                        .iter()
                        .enumerate()
                        .rev()
                        .filter(|&(_, &t)| t == token)
                        .map(|(j, _)| base + j),
                );
            }
            self.scanned = base;
        }
        self.found.get(i).copied()
    }
}

/// Steps a sequence does not draft after its acceptance rate fell too low, at first; doubled
/// each time it falls low again (up to [`MAX_COOLDOWN`]), reset by a good run.
pub const COOLDOWN: u32 = 16;
/// Longest cool-down.
pub const MAX_COOLDOWN: u32 = 512;
/// Below this (moving-average) acceptance rate drafting switches off, whatever a draft token
/// costs; the engine raises the bar to the measured cost of a draft token relative to a
/// decode step ([`DraftControl::set_min_acceptance`]), where drafting stops paying.
pub const MIN_ACCEPTANCE: f32 = 0.3;

/// One sequence's adaptive draft length: doubles while drafts are fully accepted, shrinks on
/// rejection, and switches drafting off for a cool-down when the moving-average acceptance
/// rate stays below [`MIN_ACCEPTANCE`].
#[derive(Clone, Debug)]
pub struct DraftControl {
    len: usize,
    /// Exponential moving average of the per-step acceptance rate.
    rate: f32,
    /// Verified drafts since the last (re)start.
    n_rounds: u32,
    cooldown_left: u32,
    next_cooldown: u32,
    min_acceptance: f32,
}

impl Default for DraftControl {
    fn default() -> Self {
        Self::new()
    }
}

impl DraftControl {
    /// A fresh controller: drafts [`INITIAL_DRAFT`] tokens.
    pub fn new() -> Self {
        Self {
            len: INITIAL_DRAFT,
            rate: 1.0,
            n_rounds: 0,
            cooldown_left: 0,
            next_cooldown: COOLDOWN,
            min_acceptance: MIN_ACCEPTANCE,
        }
    }

    /// Sets the acceptance rate below which drafting switches off (at least
    /// [`MIN_ACCEPTANCE`], at most 0.95): the measured cost of a draft token relative to a
    /// decode step.
    pub fn set_min_acceptance(&mut self, rate: f32) {
        self.min_acceptance = if rate.is_finite() {
            rate.clamp(MIN_ACCEPTANCE, 0.95)
        } else {
            MIN_ACCEPTANCE
        };
    }

    /// How many tokens to draft this step (0 while cooling down). Call once per step in which
    /// the sequence could draft; a cool-down counts these calls.
    pub fn next_len(&mut self) -> usize {
        if self.cooldown_left > 0 {
            self.cooldown_left -= 1;
            if self.cooldown_left == 0 {
                self.len = INITIAL_DRAFT.min(2);
                self.rate = 1.0;
                self.n_rounds = 0;
            }
            return 0;
        }
        self.len
    }

    /// Records a verified draft: `accepted` of `drafted` (> 0) tokens were accepted.
    pub fn record(&mut self, drafted: usize, accepted: usize) {
        if drafted == 0 {
            return;
        }
        let r = accepted as f32 / drafted as f32;
        self.rate = 0.7 * self.rate + 0.3 * r;
        self.n_rounds += 1;
        if accepted == drafted {
            self.len = (self.len * 2).min(MAX_DRAFT);
            if self.rate > 0.8 {
                self.next_cooldown = COOLDOWN;
            }
        } else {
            self.len = ((self.len + accepted) / 2).max(1);
        }
        if self.n_rounds >= PROOF_ROUNDS && self.rate < self.min_acceptance {
            self.cooldown_left = self.next_cooldown;
            self.next_cooldown = (self.next_cooldown * 2).min(MAX_COOLDOWN);
        }
    }

    /// Whether drafting is switched off for now.
    pub fn is_cooling_down(&self) -> bool {
        self.cooldown_left > 0
    }

    /// The shortest n-gram this sequence's drafts may come from: [`NGRAM_MIN`] once a draft of
    /// it has been verified and the acceptance rate is at least a half, else
    /// [`NGRAM_STRICT`]. In free answers most 2-gram matches are chance ("of the"), and on two
    /// cores a verified token costs about half a decode step (a lone extra token nearly a whole
    /// one), so a fresh sequence waits for a longer match before it pays for a draft.
    pub fn min_ngram(&self) -> usize {
        if self.n_rounds > 0 && self.rate >= 0.5 {
            NGRAM_MIN
        } else {
            NGRAM_STRICT
        }
    }

    /// Whether this sequence's drafts have proved themselves: verified at least
    /// [`PROOF_ROUNDS`] times since the last (re)start, with a moving-average acceptance rate
    /// at the current minimum. A fresh sequence's rate starts at 1 (optimistic, so that a
    /// sequence alone starts drafting at once); where drafts must be accepted nearly always to
    /// pay, as in a large batch on a CPU, that optimism would have many sequences draft at
    /// once and mostly fail, so there only proven sequences draft.
    pub fn is_proven(&self) -> bool {
        self.cooldown_left == 0 && self.n_rounds >= PROOF_ROUNDS && self.rate >= self.min_acceptance
    }
}

/// Shortest n-gram a sequence matches while its drafts are unproven ([`DraftControl::min_ngram`]).
pub const NGRAM_STRICT: usize = 3;

/// Verified drafts after which a sequence's acceptance rate counts as measured
/// ([`DraftControl::is_proven`]); also the rounds before a low rate starts a cool-down.
pub const PROOF_ROUNDS: u32 = 4;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The lookup as the module docs define it, position by position: the reference for
    /// [`propose_from`]'s block scan.
    fn propose_naive(tokens: &[TokenId], k: usize, min_n: usize, window: usize) -> Vec<TokenId> {
        let len = tokens.len();
        if k == 0 {
            return Vec::new();
        }
        let start = len.saturating_sub(window);
        for n in (min_n.clamp(NGRAM_MIN, NGRAM_MAX)..=NGRAM_MAX).rev() {
            if len <= n {
                continue;
            }
            let suffix = &tokens[len - n..];
            let mut i = len - n;
            while i > start {
                i -= 1;
                if &tokens[i..i + n] == suffix {
                    return tokens[i + n..(i + n + k).min(len)].to_vec();
                }
            }
        }
        Vec::new()
    }

    proptest! {
        /// Small alphabets make n-grams recur often, at every distance and block boundary.
        #[test]
        fn the_block_scan_proposes_what_the_position_by_position_lookup_does(
            tokens in proptest::collection::vec(0u32..6, 0..300),
            k in 0usize..6,
            min_n in 0usize..6,
        ) {
            prop_assert_eq!(
                propose_from(&tokens, k, min_n),
                propose_naive(&tokens, k, min_n, LOOKUP_WINDOW)
            );
        }
    }

    #[test]
    fn the_lookup_searches_the_last_window_of_tokens_only() {
        // "7 8 9" recurs only at the very start, more than a window back; "8 9" recurs
        // within it.
        let mut t = vec![7, 8, 9, 1];
        t.extend(std::iter::repeat_n(0, LOOKUP_WINDOW - 8));
        t.extend([3, 8, 9, 2, 7, 8, 9]);
        assert_eq!(t.len(), LOOKUP_WINDOW + 3);
        assert_eq!(propose(&t, 1), vec![2]);
        assert_eq!(
            propose(&t, 1),
            propose_naive(&t, 1, NGRAM_MIN, LOOKUP_WINDOW)
        );
        // Within the window, the longer match wins.
        t.drain(..4);
        assert_eq!(
            propose(&t, 1),
            propose_naive(&t, 1, NGRAM_MIN, LOOKUP_WINDOW)
        );
    }

    #[test]
    fn proposes_the_continuation_of_the_longest_recent_match() {
        // "1 2 3 4 5 9 | 2 3 4 6 7 | 2 3 4": the suffix 2 3 4 recurs; the most recent earlier
        // occurrence is followed by 6 7.
        let t = [1, 2, 3, 4, 5, 9, 2, 3, 4, 6, 7, 2, 3, 4];
        assert_eq!(propose(&t, 2), vec![6, 7]);
        assert_eq!(propose(&t, 8), vec![6, 7, 2, 3, 4]);
        // A longer match wins over a more recent shorter one.
        let t = [1, 2, 3, 4, 10, 11, 9, 3, 4, 12, 1, 2, 3, 4];
        assert_eq!(propose(&t, 2), vec![10, 11]);
        assert!(propose(&t, 0).is_empty());
        // No bigram recurs: nothing.
        assert!(propose(&[1, 2, 3, 4, 5, 1], 4).is_empty());
        // "5 6" recurs but no trigram does: only the weaker evidence matches.
        let t = [5, 6, 7, 8, 1, 5, 6];
        assert_eq!(propose(&t, 2), vec![7, 8]);
        assert!(propose_from(&t, 2, NGRAM_STRICT).is_empty());
        let t = [4, 5, 6, 7, 8, 1, 4, 5, 6];
        assert_eq!(propose_from(&t, 2, NGRAM_STRICT), vec![7, 8]);
        assert!(propose(&[], 4).is_empty());
    }

    #[test]
    fn draft_length_adapts_and_switches_off_when_it_does_not_pay() {
        let mut c = DraftControl::new();
        assert_eq!(c.next_len(), INITIAL_DRAFT);
        c.record(4, 4);
        assert_eq!(c.next_len(), 8);
        c.record(8, 8);
        assert_eq!(c.next_len(), MAX_DRAFT);
        c.record(16, 16);
        assert_eq!(c.next_len(), MAX_DRAFT);
        c.record(16, 2);
        assert_eq!(c.next_len(), 9);
        for _ in 0..8 {
            let n = c.next_len();
            c.record(n, 0);
            if c.is_cooling_down() {
                break;
            }
        }
        assert!(c.is_cooling_down());
        let off = (0..COOLDOWN).filter(|_| c.next_len() == 0).count();
        assert_eq!(off as u32, COOLDOWN);
        assert!(c.next_len() > 0, "drafting resumes after the cool-down");
        // Where a draft token costs 0.8 of a decode step, 60% acceptance does not pay.
        let mut c = DraftControl::new();
        c.set_min_acceptance(0.8);
        for _ in 0..6 {
            c.next_len();
            c.record(5, 3);
        }
        assert!(c.is_cooling_down());
        let mut c = DraftControl::new();
        for _ in 0..6 {
            c.next_len();
            c.record(5, 3);
        }
        assert!(!c.is_cooling_down(), "where it is cheap, it does");
    }

    #[test]
    fn a_sequence_proves_its_drafts_by_measured_acceptance() {
        let mut c = DraftControl::new();
        c.set_min_acceptance(0.8);
        assert!(!c.is_proven(), "a fresh sequence has measured nothing");
        assert_eq!(c.min_ngram(), NGRAM_STRICT);
        for _ in 0..PROOF_ROUNDS {
            let n = c.next_len();
            c.record(n, n);
        }
        assert!(c.is_proven());
        assert_eq!(c.min_ngram(), NGRAM_MIN);
        // Mostly rejected drafts: the rate falls under the minimum.
        for _ in 0..3 {
            let n = c.next_len();
            if n > 0 {
                c.record(n, 0);
            }
        }
        assert!(!c.is_proven());
        // Where drafts are cheap the same record proves them.
        c.set_min_acceptance(0.0);
        assert!(c.is_cooling_down() || c.is_proven());
    }
}
