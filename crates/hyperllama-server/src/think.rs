//! Thinking: splitting a reasoning model's `<think>…</think>` answer into its thinking and
//! its content (pure code, no IO).
//!
//! Models whose chat template supports thinking (it mentions `<think>` or
//! `enable_thinking`, see `hyperllama_models::template::detect_capabilities`) write their
//! reasoning first, between `<think>` and `</think>`, then the answer. Some templates end
//! the generation prompt with `<think>` already (DeepSeek-R1, Qwen3 thinking models): the
//! answer then starts inside the thinking, which [`ThinkSplitter::inside_thinking`] handles.
//!
//! # Invariants
//! - Splitting never fails: an answer without `<think>` at its start is all content, and an
//!   answer that never closes its thinking is all thinking.
//! - Feeding an answer in one piece or split at any byte position gives the same thinking
//!   and the same content (each concatenated).
//! - Whitespace right after `<think>` and right after `</think>` is dropped.
//! - Text is held back only while it may be the start of `<think>` (at the very start) or
//!   of `</think>`.

/// The tag that opens the thinking (the same the output constraints know).
pub const OPEN: &str = hyperllama_core::constraint::THINK_OPEN;
/// The tag that closes the thinking.
pub const CLOSE: &str = hyperllama_core::constraint::THINK_CLOSE;

/// A piece of a split answer (never empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ThinkPiece {
    /// Reasoning.
    Thinking(String),
    /// The answer proper.
    Content(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Only whitespace (or the start of `<think>`) seen.
    Start,
    /// Right after `<think>`: dropping whitespace.
    ThinkingStart,
    /// Inside the thinking.
    Thinking,
    /// Right after `</think>`: dropping whitespace.
    ContentStart,
    /// In the answer proper.
    Content,
}

/// Splits a streamed answer into thinking and content (see the module docs).
#[derive(Clone, Debug)]
pub struct ThinkSplitter {
    state: State,
    buf: String,
}

impl Default for ThinkSplitter {
    fn default() -> Self {
        Self::new()
    }
}

impl ThinkSplitter {
    /// A splitter for an answer that may open with `<think>`.
    pub fn new() -> Self {
        Self {
            state: State::Start,
            buf: String::new(),
        }
    }

    /// A splitter for an answer whose prompt already ended with `<think>`.
    pub fn inside_thinking() -> Self {
        Self {
            state: State::ThinkingStart,
            buf: String::new(),
        }
    }

    /// Takes the next piece of the answer and returns what can be released.
    pub fn feed(&mut self, text: &str) -> Vec<ThinkPiece> {
        self.buf.push_str(text);
        let mut out = Vec::new();
        loop {
            match self.state {
                State::Start => {
                    let t = self.buf.trim_start();
                    if let Some(rest) = t.strip_prefix(OPEN) {
                        self.buf = rest.to_owned();
                        self.state = State::ThinkingStart;
                    } else if t.is_empty() || OPEN.starts_with(t) {
                        break;
                    } else {
                        self.state = State::Content;
                    }
                }
                State::ThinkingStart | State::ContentStart => {
                    let t = self.buf.trim_start();
                    if t.is_empty() {
                        self.buf.clear();
                        break;
                    }
                    self.buf = t.to_owned();
                    self.state = if self.state == State::ThinkingStart {
                        State::Thinking
                    } else {
                        State::Content
                    };
                }
                State::Thinking => {
                    if let Some(at) = self.buf.find(CLOSE) {
                        push(&mut out, ThinkPiece::Thinking(self.buf[..at].to_owned()));
                        self.buf.drain(..at + CLOSE.len());
                        self.state = State::ContentStart;
                    } else {
                        let keep = partial_suffix(&self.buf, CLOSE);
                        let release = self.buf.len() - keep;
                        let text: String = self.buf.drain(..release).collect();
                        push(&mut out, ThinkPiece::Thinking(text));
                        break;
                    }
                }
                State::Content => {
                    let text = std::mem::take(&mut self.buf);
                    push(&mut out, ThinkPiece::Content(text));
                    break;
                }
            }
        }
        out
    }

    /// Ends the answer and returns everything still held.
    pub fn finish(self) -> Vec<ThinkPiece> {
        let mut out = Vec::new();
        match self.state {
            State::Start | State::Content => push(&mut out, ThinkPiece::Content(self.buf)),
            State::Thinking => push(&mut out, ThinkPiece::Thinking(self.buf)),
            State::ThinkingStart | State::ContentStart => {}
        }
        out
    }
}

/// Appends a piece unless it is empty, merging it into the last one of the same kind.
fn push(out: &mut Vec<ThinkPiece>, piece: ThinkPiece) {
    match (out.last_mut(), piece) {
        (_, ThinkPiece::Thinking(t) | ThinkPiece::Content(t)) if t.is_empty() => {}
        (Some(ThinkPiece::Thinking(last)), ThinkPiece::Thinking(t))
        | (Some(ThinkPiece::Content(last)), ThinkPiece::Content(t)) => last.push_str(&t),
        (_, piece) => out.push(piece),
    }
}

/// The length of the longest suffix of `text` that is a proper prefix of `marker`.
fn partial_suffix(text: &str, marker: &str) -> usize {
    (1..marker.len().min(text.len() + 1))
        .rev()
        .find(|&n| text.is_char_boundary(text.len() - n) && text.ends_with(&marker[..n]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mut s: ThinkSplitter, pieces: &[&str]) -> (String, String) {
        let mut outs = Vec::new();
        for p in pieces {
            outs.extend(s.feed(p));
        }
        outs.extend(s.finish());
        let (mut thinking, mut content) = (String::new(), String::new());
        for o in outs {
            match o {
                ThinkPiece::Thinking(t) => {
                    assert!(!t.is_empty());
                    thinking.push_str(&t);
                }
                ThinkPiece::Content(t) => {
                    assert!(!t.is_empty());
                    content.push_str(&t);
                }
            }
        }
        (thinking, content)
    }

    /// Splits `answer` whole, at every byte position and char by char; all must agree.
    fn split_all_ways(make: fn() -> ThinkSplitter, answer: &str) -> (String, String) {
        let whole = run(make(), &[answer]);
        for at in (0..=answer.len()).filter(|&at| answer.is_char_boundary(at)) {
            assert_eq!(
                run(make(), &[&answer[..at], &answer[at..]]),
                whole,
                "split at {at} of {answer:?}"
            );
        }
        let chars: Vec<String> = answer.chars().map(String::from).collect();
        let refs: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(run(make(), &refs), whole, "char by char: {answer:?}");
        whole
    }

    #[test]
    fn thinking_then_content() {
        let (t, c) = split_all_ways(
            ThinkSplitter::new,
            "<think>\nThe user greets me; ü < 2.\n</think>\n\nHello there!",
        );
        assert_eq!(t, "The user greets me; ü < 2.\n");
        assert_eq!(c, "Hello there!");
    }

    #[test]
    fn no_thinking_is_all_content() {
        for answer in [
            "Hello <think>not at the start</think>",
            "<thin",
            "  ",
            "",
            "<b>x</b>",
        ] {
            let (t, c) = split_all_ways(ThinkSplitter::new, answer);
            assert_eq!(t, "", "{answer:?}");
            assert_eq!(c, answer, "{answer:?}");
        }
    }

    #[test]
    fn empty_and_unclosed_thinking() {
        assert_eq!(
            split_all_ways(ThinkSplitter::new, "<think>\n\n</think>\n\nAnswer."),
            (String::new(), "Answer.".to_owned())
        );
        assert_eq!(
            split_all_ways(ThinkSplitter::new, "<think>still going </thi"),
            ("still going </thi".to_owned(), String::new())
        );
    }

    #[test]
    fn a_prompt_that_opened_the_thinking() {
        assert_eq!(
            split_all_ways(ThinkSplitter::inside_thinking, "\nHmm.</think>Yes."),
            ("Hmm.".to_owned(), "Yes.".to_owned())
        );
    }

    #[test]
    fn content_streams_without_delay() {
        let mut s = ThinkSplitter::new();
        assert_eq!(s.feed("<thi"), vec![]);
        assert_eq!(s.feed("nk>a</"), vec![ThinkPiece::Thinking("a".into())]);
        assert_eq!(s.feed("think>b"), vec![ThinkPiece::Content("b".into())]);
        assert_eq!(s.feed("c"), vec![ThinkPiece::Content("c".into())]);
        assert!(s.finish().is_empty());
    }
}
