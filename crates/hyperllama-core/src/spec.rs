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
//! anywhere), and a longer n-gram makes a more specific, more often right, guess.
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
/// How far back (in tokens) the lookup searches: bounds its cost on long contexts.
pub const LOOKUP_WINDOW: usize = 8192;

/// Proposes up to `k` tokens to follow `tokens`: the continuation of the most recent earlier
/// occurrence of the longest suffix n-gram (see the module docs).
pub fn propose(tokens: &[TokenId], k: usize) -> Vec<TokenId> {
    let len = tokens.len();
    if k == 0 {
        return Vec::new();
    }
    let start = len.saturating_sub(LOOKUP_WINDOW);
    for n in (NGRAM_MIN..=NGRAM_MAX).rev() {
        if len <= n {
            continue;
        }
        let suffix = &tokens[len - n..];
        // Most recent earlier occurrence: it must be followed by at least one token.
        let mut i = len - n;
        while i > start {
            i -= 1;
            if &tokens[i..i + n] == suffix {
                let from = i + n;
                let to = (from + k).min(len);
                return tokens[from..to].to_vec();
            }
        }
    }
    Vec::new()
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

/// Pseudo-counts of the continuation estimate before any draft is verified: accepted draft
/// tokens and stops (a prior of q = 2/3).
const PRIOR_ACCEPTED: f32 = 2.0;
const PRIOR_STOPS: f32 = 1.0;
/// Forgetting factor of the continuation estimate per verified draft.
const Q_DECAY: f32 = 0.9;

/// The draft length that makes a step of `n` decoding sequences yield the most tokens per
/// second, when each draft token is accepted with probability `q` given that the one before
/// it was (its expected yield is `q^j` for the j-th) and costs `price` of what one sequence's
/// share of the step costs: maximizes `(n + Σ_{j≤k} q^j) / (n + price·k)` over
/// `k ∈ 1..=max` (at least 1, so that the estimate keeps being measured; a draft that does not
/// pay at all is switched off by the acceptance floor instead).
pub fn best_len(q: f32, price: f32, n: usize, max: usize) -> usize {
    let n = n.max(1) as f32;
    let (mut best, mut best_k) = (f32::MIN, 1);
    let (mut p, mut yield_) = (1.0f32, 0.0f32);
    for k in 1..=max {
        p *= q;
        yield_ += p;
        let v = (n + yield_) / (n + price * k as f32);
        if v > best {
            best = v;
            best_k = k;
        }
    }
    best_k
}

/// One sequence's adaptive draft length: grows (doubling, up to [`MAX_DRAFT`]) while drafts are
/// fully accepted and shrinks on rejection, and once the cost of a draft token is known
/// ([`DraftControl::set_price`]), is at most [`best_len`] for the measured probability that a
/// draft token is accepted after an accepted one. Switches drafting off for a cool-down when
/// the moving-average acceptance rate stays below [`MIN_ACCEPTANCE`] (or the price).
#[derive(Clone, Debug)]
pub struct DraftControl {
    len: usize,
    /// Accepted draft tokens and stops (a rejected draft token), exponentially forgotten.
    accepted: f32,
    stops: f32,
    /// What a draft token costs relative to one sequence's share of a step, and the
    /// sequences decoding (see [`Self::set_price`]).
    price: Option<(f32, usize)>,
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
            accepted: 0.0,
            stops: 0.0,
            price: None,
            rate: 1.0,
            n_rounds: 0,
            cooldown_left: 0,
            next_cooldown: COOLDOWN,
            min_acceptance: MIN_ACCEPTANCE,
        }
    }

    /// Prices a draft token: `ratio` is its measured cost relative to one sequence's share of
    /// a step of `n_decode` decoding sequences (the pacer's `draft_cost_ratio`). Drafting
    /// switches off below that acceptance rate (clamped to [`MIN_ACCEPTANCE`]..=0.95), and the
    /// length is chosen by [`best_len`].
    pub fn set_price(&mut self, ratio: f32, n_decode: usize) {
        if ratio.is_finite() && ratio > 0.0 {
            self.min_acceptance = ratio.clamp(MIN_ACCEPTANCE, 0.95);
            self.price = Some((ratio, n_decode));
        } else {
            self.min_acceptance = MIN_ACCEPTANCE;
            self.price = None;
        }
    }

    /// The estimated probability that a draft token is accepted given that the one before it
    /// was.
    pub fn continuation(&self) -> f32 {
        (self.accepted + PRIOR_ACCEPTED)
            / (self.accepted + self.stops + PRIOR_ACCEPTED + PRIOR_STOPS)
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
        match self.price {
            Some((price, n)) => self
                .len
                .min(best_len(self.continuation(), price, n, MAX_DRAFT)),
            None => self.len,
        }
    }

    /// Records a verified draft: `accepted` of `drafted` (> 0) tokens were accepted.
    pub fn record(&mut self, drafted: usize, accepted: usize) {
        if drafted == 0 {
            return;
        }
        let r = accepted as f32 / drafted as f32;
        self.rate = 0.7 * self.rate + 0.3 * r;
        self.accepted = Q_DECAY * self.accepted + accepted as f32;
        self.stops = Q_DECAY * self.stops + f32::from(u8::from(accepted < drafted));
        self.n_rounds += 1;
        if accepted == drafted {
            self.len = (self.len * 2).min(MAX_DRAFT);
            if self.rate > 0.8 {
                self.next_cooldown = COOLDOWN;
            }
        } else {
            self.len = ((self.len + accepted) / 2).max(1);
        }
        if self.n_rounds >= 4 && self.rate < self.min_acceptance {
            self.cooldown_left = self.next_cooldown;
            self.next_cooldown = (self.next_cooldown * 2).min(MAX_COOLDOWN);
        }
    }

    /// Whether drafting is switched off for now.
    pub fn is_cooling_down(&self) -> bool {
        self.cooldown_left > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        c.set_price(0.8, 1);
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
    fn the_best_length_weighs_acceptance_against_price() {
        // A draft token costing half a decode step: at q = 0.95 about 4 to 6 tokens pay best
        // (a 16-token draft yields 1.18 tokens per step-cost against 1.41).
        let k = best_len(0.95, 0.5, 1, MAX_DRAFT);
        assert!((3..=6).contains(&k), "{k}");
        // Surer drafts are longer; dearer ones shorter; nearly free ones as long as allowed.
        assert!(best_len(0.99, 0.5, 1, MAX_DRAFT) > k);
        assert!(best_len(0.95, 0.9, 1, MAX_DRAFT) < k);
        assert_eq!(best_len(0.95, 0.02, 1, MAX_DRAFT), MAX_DRAFT);
        // Never below 1: whether to draft at all is the acceptance floor's call.
        assert_eq!(best_len(0.1, 5.0, 1, MAX_DRAFT), 1);
    }

    #[test]
    fn a_priced_draft_is_as_long_as_the_measured_continuation_pays_for() {
        let mut c = DraftControl::new();
        c.set_price(0.5, 1);
        // Copying: every draft accepted, so the continuation estimate climbs and the ramp
        // reaches its cap.
        for _ in 0..12 {
            let k = c.next_len();
            c.record(k, k);
        }
        assert!(c.continuation() > 0.95, "{}", c.continuation());
        assert!(c.next_len() >= 6, "{}", c.next_len());
        // Frequent early stops: shorter drafts.
        for _ in 0..12 {
            let k = c.next_len();
            c.record(k, k.min(2));
        }
        assert!(
            c.next_len() <= 4,
            "{} at q {}",
            c.next_len(),
            c.continuation()
        );
    }
}
