//! Stop strings over streamed text.
//!
//! Text arrives piece by piece; a stop string may be split across pieces. The matcher holds
//! back exactly the tail that could still become a stop string and releases everything else.
//!
//! # Invariants
//! - No text that is part of a stop string is ever released, wherever the string is split.
//! - Released text is always a prefix of the full text; held text is released by `finish`
//!   when the sequence ends without a stop.
//! - Held text is never longer than the longest stop string minus one byte.

/// Result of feeding one piece of text to a [`StopMatcher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopOutcome {
    /// No stop string yet; this text may be shown.
    Continue(String),
    /// A stop string matched; this text (everything before it) may be shown, then stop.
    Stopped(String),
}

/// Finds stop strings in a stream of text; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

impl StopMatcher {
    /// A matcher for these stop strings (empty strings are ignored).
    pub fn new(stops: impl IntoIterator<Item = String>) -> Self {
        Self {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
        }
    }

    /// Whether there are any stop strings at all.
    pub fn is_empty(&self) -> bool {
        self.stops.is_empty()
    }

    /// Feeds the next piece of text.
    pub fn push(&mut self, text: &str) -> StopOutcome {
        if self.stops.is_empty() {
            return StopOutcome::Continue(text.to_owned());
        }
        self.held.push_str(text);
        let first_match = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min();
        if let Some(pos) = first_match {
            let before = self.held[..pos].to_owned();
            self.held.clear();
            return StopOutcome::Stopped(before);
        }
        let keep = self.partial_suffix_len();
        let release_to = self.held.len() - keep;
        let released = self.held[..release_to].to_owned();
        self.held.drain(..release_to);
        StopOutcome::Continue(released)
    }

    /// Releases whatever is held back; call when the sequence ends for another reason.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Length of the longest suffix of `held` that is a proper prefix of some stop string.
    fn partial_suffix_len(&self) -> usize {
        let held = self.held.as_str();
        let mut best = 0;
        for stop in &self.stops {
            let max = (stop.len() - 1).min(held.len());
            for len in (best + 1..=max).rev() {
                let start = held.len() - len;
                if held.is_char_boundary(start) && stop.starts_with(&held[start..]) {
                    best = len;
                    break;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()));
        let mut out = String::new();
        for p in pieces {
            match m.push(p) {
                StopOutcome::Continue(t) => out.push_str(&t),
                StopOutcome::Stopped(t) => {
                    out.push_str(&t);
                    return (out, true);
                }
            }
        }
        out.push_str(&m.finish());
        (out, false)
    }

    #[test]
    fn stop_split_across_pieces_is_never_emitted() {
        assert_eq!(
            run(&["<|end|>"], &["Hello <|", "en", "d|> tail"]),
            ("Hello ".into(), true)
        );
        assert_eq!(run(&["\n\n"], &["a\n", "\nb"]), ("a".into(), true));
    }

    #[test]
    fn near_misses_are_released() {
        assert!(run(&["STOP"], &["ST", "OP!"]).1);
        assert_eq!(run(&["STOP"], &["ST", "ART"]), ("START".into(), false));
        assert_eq!(run(&[], &["abc"]), ("abc".into(), false));
    }

    #[test]
    fn multibyte_text_is_handled_on_char_boundaries() {
        assert_eq!(run(&["é!"], &["café", "!"]), ("caf".into(), true));
        assert_eq!(
            run(&["日本"], &["こんにちは日", "曜"]),
            ("こんにちは日曜".into(), false)
        );
    }

    proptest! {
        #[test]
        fn any_split_gives_the_unsplit_answer(
            text in "[ab\\n]{0,40}",
            stop in "[ab\\n]{1,4}",
            cuts in proptest::collection::vec(0usize..40, 0..8),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= text.len()).collect();
            cuts.sort_unstable();
            cuts.dedup();
            let mut pieces = Vec::new();
            let mut last = 0;
            for c in cuts { pieces.push(&text[last..c]); last = c; }
            pieces.push(&text[last..]);
            let expected = match text.find(&stop) {
                Some(pos) => (text[..pos].to_string(), true),
                None => (text.clone(), false),
            };
            prop_assert_eq!(run(&[stop.as_str()], &pieces), expected);
        }
    }
}
