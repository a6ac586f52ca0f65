//! Log-probabilities of sampled tokens, as the OpenAI and Ollama APIs report them.
//!
//! The values are those of the model's own distribution: a log-softmax over the raw logits,
//! before penalties, truncation or temperature (what vLLM and OpenAI report by default), so
//! that they do not depend on how the token was picked.
//!
//! # Invariants
//! - Every reported value is `<= 0` and finite unless the logit itself was `-inf` or NaN
//!   (then `-inf`).
//! - The alternatives are sorted by descending log-probability, ties by ascending token id,
//!   and hold at most `top_n` entries (fewer only for a smaller vocabulary).

use crate::ids::TokenId;

/// The most alternatives a request may ask for (OpenAI's limit for chat).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// A sampled token's log-probability and the most likely alternatives at its position.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprobs {
    /// The sampled token.
    pub token: TokenId,
    /// Its log-probability.
    pub logprob: f32,
    /// The `top_n` most likely tokens at this position with their log-probabilities.
    pub top: Vec<(TokenId, f32)>,
}

/// Log-probability of `token` and of the `top_n` most likely tokens under `softmax(logits)`.
/// `logits` must be non-empty and `token < logits.len()`; an out-of-range `token` gets `-inf`.
pub fn token_logprobs(logits: &[f32], token: TokenId, top_n: usize) -> TokenLogprobs {
    let max = logits
        .iter()
        .copied()
        .filter(|l| !l.is_nan())
        .fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits
        .iter()
        .filter(|l| !l.is_nan())
        .map(|&l| f64::from(l - max).exp())
        .sum();
    let log_z = f64::from(max) + sum.ln();
    let lp = |l: f32| -> f32 {
        if l.is_nan() || !log_z.is_finite() {
            f32::NEG_INFINITY
        } else {
            (f64::from(l) - log_z).min(0.0) as f32
        }
    };
    let logprob = logits
        .get(token as usize)
        .map_or(f32::NEG_INFINITY, |&l| lp(l));
    let top_n = top_n.min(logits.len());
    let mut top: Vec<(TokenId, f32)> = Vec::with_capacity(top_n);
    if top_n > 0 {
        let mut idx: Vec<TokenId> = (0..logits.len() as TokenId).collect();
        let order = |a: &TokenId, b: &TokenId| {
            let (la, lb) = (logits[*a as usize], logits[*b as usize]);
            let key = |l: f32| if l.is_nan() { f32::NEG_INFINITY } else { l };
            key(lb).total_cmp(&key(la)).then_with(|| a.cmp(b))
        };
        if top_n < idx.len() {
            idx.select_nth_unstable_by(top_n - 1, order);
            idx.truncate(top_n);
        }
        idx.sort_unstable_by(order);
        top.extend(idx.into_iter().map(|t| (t, lp(logits[t as usize]))));
    }
    TokenLogprobs {
        token,
        logprob,
        top,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn matches_a_hand_computed_softmax() {
        let lp = token_logprobs(&[0.0, 0.0, 2f32.ln()], 2, 2);
        // p = [1/4, 1/4, 1/2]
        assert!((lp.logprob - 0.5f32.ln()).abs() < 1e-6);
        assert_eq!(lp.top.len(), 2);
        assert_eq!(lp.top[0].0, 2);
        assert_eq!(lp.top[1].0, 0, "ties go to the lower id");
        assert!((lp.top[1].1 - 0.25f32.ln()).abs() < 1e-6);
    }

    #[test]
    fn nan_and_out_of_range_are_minus_infinity() {
        let lp = token_logprobs(&[f32::NAN, 1.0], 0, 2);
        assert_eq!(lp.logprob, f32::NEG_INFINITY);
        assert_eq!(lp.top[0], (1, 0.0));
        assert_eq!(token_logprobs(&[1.0], 7, 0).logprob, f32::NEG_INFINITY);
    }

    #[test]
    fn no_alternatives_when_none_asked() {
        assert!(token_logprobs(&[1.0, 2.0], 1, 0).top.is_empty());
        assert_eq!(token_logprobs(&[1.0, 2.0], 1, 50).top.len(), 2);
    }

    proptest! {
        #[test]
        fn probabilities_are_consistent(
            logits in proptest::collection::vec(-30.0f32..30.0, 1..200),
            top_n in 0usize..25,
            pick in any::<prop::sample::Index>(),
        ) {
            let token = pick.index(logits.len()) as TokenId;
            let lp = token_logprobs(&logits, token, top_n);
            prop_assert!(lp.logprob <= 0.0);
            prop_assert_eq!(lp.top.len(), top_n.min(logits.len()));
            for w in lp.top.windows(2) {
                prop_assert!(w[0].1 >= w[1].1);
            }
            // The full distribution sums to one.
            let all = token_logprobs(&logits, token, logits.len());
            let total: f64 = all.top.iter().map(|t| f64::from(t.1).exp()).sum();
            prop_assert!((total - 1.0).abs() < 1e-3);
            // The sampled token's value is the same as in the full list.
            let same = all.top.iter().find(|t| t.0 == token).map(|t| t.1);
            prop_assert_eq!(same, Some(lp.logprob));
        }
    }
}
