//! Token sampling: penalties, top-k, top-p, min-p, temperature, seeded draws.
//!
//! The chain follows llama.cpp's default order so that a user moving from llama.cpp or Ollama
//! sees the same behaviour: penalties → top-k → top-p → min-p → temperature → draw. At
//! temperature 0 the chain is penalties → argmax, and argmax breaks ties towards the lower token
//! id, as llama.cpp's greedy sampler does.
//!
//! # Invariants
//! - `sample` never reads outside `logits` and always returns an id `< logits.len()` (the
//!   caller guarantees `logits` is non-empty).
//! - The same parameters, seed, logits and history give the same token: the only randomness
//!   is the sampler's own [`Rng`].
//! - The caller's logits are never modified; penalties work on a scratch copy.

use serde::{Deserialize, Serialize};

use crate::ids::TokenId;
use crate::rng::Rng;

/// How to pick the next token. Defaults are Ollama's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    /// Softmax temperature; `0` (or below) means greedy decoding.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; `0` disables the filter.
    pub top_k: u32,
    /// Keep the smallest set of tokens whose probability adds up to `top_p`; `1` disables it.
    pub top_p: f32,
    /// Drop tokens whose probability is below `min_p` times the best token's; `0` disables it.
    pub min_p: f32,
    /// Multiplicative penalty for tokens seen in the last `repeat_last_n` tokens; `1` disables it.
    pub repeat_penalty: f32,
    /// How many of the most recent tokens (prompt included) the penalties look at.
    pub repeat_last_n: u32,
    /// Subtracted once from the logit of every token seen in the window.
    pub presence_penalty: f32,
    /// Subtracted from a token's logit once per occurrence in the window.
    pub frequency_penalty: f32,
    /// Seed for the draw; `None` picks one at random per request.
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.9,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: None,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding with no penalties: the deterministic baseline used by fidelity tests.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }

    fn has_penalties(&self) -> bool {
        self.repeat_last_n > 0
            && (self.repeat_penalty != 1.0
                || self.presence_penalty != 0.0
                || self.frequency_penalty != 0.0)
    }
}

/// One sequence's sampler: parameters, its random stream and reusable scratch space.
#[derive(Clone, Debug)]
pub struct Sampler {
    params: SamplingParams,
    rng: Rng,
    scratch: Vec<f32>,
    candidates: Vec<(f32, TokenId)>,
    window: Vec<(TokenId, u32)>,
    blocks: Vec<f32>,
}

/// `logits` with the repetition penalties applied (copied into `scratch`), or `logits`
/// itself when `params` has none.
fn penalized<'a>(
    params: &SamplingParams,
    scratch: &'a mut Vec<f32>,
    window: &mut Vec<(TokenId, u32)>,
    logits: &'a [f32],
    history: &[TokenId],
) -> &'a [f32] {
    if !params.has_penalties() {
        return logits;
    }
    scratch.clear();
    scratch.extend_from_slice(logits);
    apply_penalties(params, scratch, history, window);
    scratch
}

impl Sampler {
    /// A sampler seeded with `params.seed`, or with `fallback_seed` when the request gave none.
    pub fn new(params: SamplingParams, fallback_seed: u64) -> Self {
        let seed = params.seed.unwrap_or(fallback_seed);
        Self {
            params,
            rng: Rng::seed_from_u64(seed),
            scratch: Vec::new(),
            candidates: Vec::new(),
            window: Vec::new(),
            blocks: Vec::new(),
        }
    }

    /// The parameters this sampler was built with.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks the next token from `logits` (one value per vocabulary entry) given the
    /// sequence's tokens so far, `history` (prompt included, oldest first).
    pub fn sample(&mut self, logits: &[f32], history: &[TokenId]) -> TokenId {
        debug_assert!(!logits.is_empty(), "sampling from an empty vocabulary");
        let Self {
            params,
            rng,
            scratch,
            candidates,
            window,
            blocks,
        } = self;
        let logits = penalized(params, scratch, window, logits, history);
        if params.temperature <= 0.0 {
            return argmax(logits);
        }
        let Some(total) = distribution(params, candidates, blocks, logits) else {
            return 0;
        };
        draw(rng, candidates, total, None)
    }

    /// Verifies a draft token at one position (speculative sampling): returns the token to
    /// emit and whether it is the draft. Greedy: the draft is accepted when it is the argmax,
    /// else the argmax is emitted, so the output is what [`Self::sample`] gives. Sampling:
    /// the draft is a point mass, so it is accepted with probability p(draft) under the
    /// processed distribution (the same chain as `sample`), else a token is drawn from p with
    /// the draft removed and renormalized; the emitted token is distributed exactly as p.
    pub fn verify(
        &mut self,
        logits: &[f32],
        history: &[TokenId],
        draft: TokenId,
    ) -> (TokenId, bool) {
        debug_assert!(!logits.is_empty(), "sampling from an empty vocabulary");
        let Self {
            params,
            rng,
            scratch,
            candidates,
            window,
            blocks,
        } = self;
        let logits = penalized(params, scratch, window, logits, history);
        if params.temperature <= 0.0 {
            let t = argmax(logits);
            return (t, t == draft);
        }
        let Some(total) = distribution(params, candidates, blocks, logits) else {
            return (0, draft == 0);
        };
        let w_draft = candidates
            .iter()
            .find(|c| c.1 == draft)
            .map_or(0.0, |c| c.0);
        if rng.next_f32() * total < w_draft {
            return (draft, true);
        }
        let rest = total - w_draft;
        if rest <= 0.0 {
            return (draft, true);
        }
        (draw(rng, candidates, rest, Some(draft)), false)
    }
}

/// Draws from `cands` (weights adding up to `total`), leaving out `skip`.
fn draw(rng: &mut Rng, cands: &[(f32, TokenId)], total: f32, skip: Option<TokenId>) -> TokenId {
    let mut r = rng.next_f32() * total;
    let mut last = None;
    for c in cands.iter().filter(|c| Some(c.1) != skip) {
        if r < c.0 {
            return c.1;
        }
        r -= c.0;
        last = Some(c.1);
    }
    last.unwrap_or(cands[cands.len() - 1].1)
}

/// The processed target distribution: leaves `cands` as (weight, token) pairs, most likely
/// first, after top-k, top-p, min-p and temperature, and returns the weights' total (`None`
/// when every logit is NaN).
fn distribution(
    p: &SamplingParams,
    cands: &mut Vec<(f32, TokenId)>,
    blocks: &mut Vec<f32>,
    logits: &[f32],
) -> Option<f32> {
    let k = p.top_k as usize;
    top_k_pool(logits, k, blocks, cands);
    if cands.is_empty() {
        return None;
    }
    let by_logit_desc =
        |a: &(f32, TokenId), b: &(f32, TokenId)| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1));
    // Top-k: partial selection, then sort only the survivors.
    if k > 0 && k < cands.len() {
        cands.select_nth_unstable_by(k - 1, by_logit_desc);
        cands.truncate(k);
    }
    cands.sort_unstable_by(by_logit_desc);

    // Top-p over the softmax at temperature 1, as llama.cpp does.
    if p.top_p < 1.0 {
        let max = cands[0].0;
        let total: f32 = cands.iter().map(|c| (c.0 - max).exp()).sum();
        let mut cum = 0.0;
        let mut keep = cands.len();
        for (i, c) in cands.iter().enumerate() {
            cum += (c.0 - max).exp() / total;
            if cum >= p.top_p {
                keep = i + 1;
                break;
            }
        }
        cands.truncate(keep.max(1));
    }
    // Min-p: keep tokens with p >= min_p * p_max, i.e. logit >= max + ln(min_p).
    if p.min_p > 0.0 && p.min_p <= 1.0 {
        let threshold = cands[0].0 + p.min_p.ln();
        let keep = cands.iter().take_while(|c| c.0 >= threshold).count();
        cands.truncate(keep.max(1));
    }
    // Temperature, softmax, draw.
    let max = cands[0].0;
    let inv_t = 1.0 / p.temperature;
    let mut total = 0.0f32;
    for c in cands.iter_mut() {
        c.0 = ((c.0 - max) * inv_t).exp();
        total += c.0;
    }
    Some(total)
}

/// Length of the blocks whose maxima bound the k-th largest logit from below ([`top_k_pool`]).
const TOP_K_BLOCK: usize = 64;

/// Fills `cands` with every (logit, token) pair that can be among the `k` largest logits: all
/// non-NaN logits at or above the k-th largest of the maxima of [`TOP_K_BLOCK`]-long blocks
/// (`k` blocks hold a logit that large, so the k-th largest logit is at least that). Only the
/// blocks whose maximum reaches the bound are scanned: for a 50k–260k vocabulary this reads the
/// logits once, vectorized, instead of selecting among all of them. With `k == 0`, or too few
/// blocks, every non-NaN logit is a candidate. The k largest are the same either way, so the
/// caller's selection gives what selecting over the whole vocabulary gives.
fn top_k_pool(logits: &[f32], k: usize, blocks: &mut Vec<f32>, cands: &mut Vec<(f32, TokenId)>) {
    cands.clear();
    let n_blocks = logits.len().div_ceil(TOP_K_BLOCK);
    let all = |cands: &mut Vec<(f32, TokenId)>| {
        cands.extend(
            logits
                .iter()
                .enumerate()
                .filter(|(_, l)| !l.is_nan())
                .map(|(i, &l)| (l, i as TokenId)),
        )
    };
    if k == 0 || n_blocks <= k {
        return all(cands);
    }
    // The blocks' maxima in order, then a copy to select the k-th largest in.
    blocks.clear();
    blocks.extend(logits.chunks(TOP_K_BLOCK).map(max_of));
    blocks.extend_from_within(..n_blocks);
    let (maxima, select) = blocks.split_at_mut(n_blocks);
    let bound = *select
        .select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a))
        .1;
    if bound == f32::NEG_INFINITY {
        return all(cands);
    }
    for (b, _) in maxima.iter().enumerate().filter(|(_, &m)| m >= bound) {
        let start = b * TOP_K_BLOCK;
        let block = &logits[start..(start + TOP_K_BLOCK).min(logits.len())];
        cands.extend(
            block
                .iter()
                .enumerate()
                .filter(|(_, &l)| l >= bound)
                .map(|(i, &l)| (l, (start + i) as TokenId)),
        );
    }
}

/// The largest non-NaN value of `values` (`-inf` when there is none), over 16 lanes so that it
/// vectorizes.
fn max_of(values: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut chunks = values.chunks_exact(LANES);
    for c in &mut chunks {
        for (m, &v) in lanes.iter_mut().zip(c) {
            // `v > m` is false for NaN: NaN never becomes the maximum.
            *m = if v > *m { v } else { *m };
        }
    }
    lanes
        .iter()
        .chain(chunks.remainder())
        .fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a })
}

/// Index of the largest value; ties go to the lowest index, NaN never wins.
///
/// One vectorized pass over blocks (each block's maximum over 16 lanes; the first block with
/// the largest), then the first index holding it within that block: a 50k-entry vocabulary
/// for each of 64 sequences every step is otherwise a visible share of a GPU step, and the
/// logits are read from memory once (half the time of a maximum pass and an index pass).
pub fn argmax(logits: &[f32]) -> TokenId {
    const BLOCK: usize = 512;
    let (mut max, mut at) = (f32::NEG_INFINITY, 0);
    for (b, block) in logits.chunks(BLOCK).enumerate() {
        let m = max_of(block);
        if m > max {
            (max, at) = (m, b);
        }
    }
    if max == f32::NEG_INFINITY {
        // All -inf or NaN: 0.
        return 0;
    }
    let start = at * BLOCK;
    (start + logits[start..].iter().position(|&v| v == max).unwrap_or(0)) as TokenId
}

/// llama.cpp's penalties: repeat (divide positive logits, multiply negative ones), then
/// frequency (per occurrence) and presence (once) subtracted, over the last
/// `repeat_last_n` tokens of `history`.
fn apply_penalties(
    p: &SamplingParams,
    logits: &mut [f32],
    history: &[TokenId],
    counts: &mut Vec<(TokenId, u32)>,
) {
    let start = history.len().saturating_sub(p.repeat_last_n as usize);
    counts.clear();
    counts.extend(history[start..].iter().map(|&t| (t, 1)));
    counts.sort_unstable_by_key(|c| c.0);
    counts.dedup_by(|later, first| {
        if later.0 == first.0 {
            first.1 += 1;
            true
        } else {
            false
        }
    });
    for &(token, n) in counts.iter() {
        let Some(logit) = logits.get_mut(token as usize) else {
            continue;
        };
        if *logit <= 0.0 {
            *logit *= p.repeat_penalty;
        } else {
            *logit /= p.repeat_penalty;
        }
        *logit -= n as f32 * p.frequency_penalty + p.presence_penalty;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(f: impl FnOnce(&mut SamplingParams)) -> SamplingParams {
        let mut p = SamplingParams::default();
        f(&mut p);
        p
    }

    #[test]
    fn defaults_are_ollamas() {
        let p = SamplingParams::default();
        assert_eq!(
            (p.temperature, p.top_k, p.top_p, p.repeat_penalty),
            (0.8, 40, 0.9, 1.0)
        );
    }

    #[test]
    fn argmax_matches_a_plain_scan_on_every_length_and_odd_values() {
        let scan = |l: &[f32]| {
            let (mut best, mut val) = (0usize, f32::NEG_INFINITY);
            for (i, &v) in l.iter().enumerate() {
                if v > val {
                    best = i;
                    val = v;
                }
            }
            best as TokenId
        };
        let mut rng = Rng::seed_from_u64(7);
        // Short ones, and ones across blocks (ties between blocks are common with 8 values).
        for len in (1..80).chain([511, 512, 513, 1025, 1600, 3000]) {
            for _ in 0..20 {
                let mut l: Vec<f32> = (0..len).map(|_| (rng.next_f32() * 8.0).floor()).collect();
                if rng.next_f32() < 0.3 {
                    l[rng.next_u64() as usize % len] = f32::NAN;
                }
                if rng.next_f32() < 0.2 {
                    l.iter_mut().for_each(|v| *v = f32::NEG_INFINITY);
                }
                assert_eq!(argmax(&l), scan(&l), "{l:?}");
            }
        }
    }

    #[test]
    fn the_top_k_prefilter_keeps_what_selecting_over_the_whole_vocabulary_keeps() {
        // The old way: every non-NaN logit a candidate, then select the k best.
        let naive = |l: &[f32], k: usize| {
            let mut c: Vec<(f32, TokenId)> = l
                .iter()
                .enumerate()
                .filter(|(_, v)| !v.is_nan())
                .map(|(i, &v)| (v, i as TokenId))
                .collect();
            c.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
            c.truncate(if k == 0 { c.len() } else { k });
            c
        };
        let mut rng = Rng::seed_from_u64(11);
        let (mut cands, mut blocks) = (Vec::new(), Vec::new());
        for len in [1, 63, 64, 65, 640, 2_561, 5_000, 49_152] {
            for k in [0, 1, 2, 40, 41, 200] {
                for case in 0..6 {
                    let mut l: Vec<f32> = (0..len)
                        .map(|_| match case {
                            // Few distinct values: ties everywhere, broken by token id.
                            0 => (rng.next_f32() * 4.0).floor(),
                            // One huge outlier block and everything else low.
                            1 => rng.next_f32() - 10.0,
                            _ => rng.next_f32() * 20.0 - 10.0,
                        })
                        .collect();
                    if case == 1 {
                        let at = rng.next_u64() as usize % len;
                        l[at..(at + 70).min(len)]
                            .iter_mut()
                            .for_each(|v| *v += 30.0);
                    }
                    if case == 3 {
                        for _ in 0..len / 3 + 1 {
                            l[rng.next_u64() as usize % len] = f32::NAN;
                        }
                    }
                    if case == 4 {
                        for _ in 0..len / 2 + 1 {
                            l[rng.next_u64() as usize % len] = f32::NEG_INFINITY;
                        }
                    }
                    if case == 5 && len > 1 {
                        l.iter_mut().skip(1).for_each(|v| *v = f32::NEG_INFINITY);
                    }
                    let p = params(|p| {
                        p.top_k = k as u32;
                        p.top_p = 1.0;
                    });
                    let total = distribution(&p, &mut cands, &mut blocks, &l);
                    let want = naive(&l, k);
                    let got: Vec<TokenId> = cands.iter().map(|c| c.1).collect();
                    let want_ids: Vec<TokenId> = want.iter().map(|c| c.1).collect();
                    assert_eq!(got, want_ids, "len {len} k {k} case {case}");
                    assert_eq!(total.is_some(), !want.is_empty());
                }
            }
        }
    }

    #[test]
    fn greedy_picks_max_and_breaks_ties_low() {
        let mut s = Sampler::new(SamplingParams::greedy(), 1);
        assert_eq!(s.sample(&[0.1, 3.0, -1.0, 3.0], &[]), 1);
        assert_eq!(s.sample(&[f32::NAN, 0.5, 0.2], &[]), 1);
    }

    #[test]
    fn repeat_penalty_changes_greedy_choice() {
        let p = params(|p| {
            p.temperature = 0.0;
            p.repeat_penalty = 2.0;
        });
        let mut s = Sampler::new(p, 1);
        // Token 0 (logit 2.0) was seen: 2.0 / 2 = 1.0 < 1.5.
        assert_eq!(s.sample(&[2.0, 1.5, 0.0], &[0]), 1);
        // Outside the window (repeat_last_n = 64) it is not penalised.
        let mut history = vec![0];
        history.extend(std::iter::repeat_n(2, 64));
        assert_eq!(s.sample(&[2.0, 1.5, 0.0], &history), 0);
    }

    #[test]
    fn frequency_and_presence_penalties_subtract() {
        let p = params(|p| {
            p.temperature = 0.0;
            p.frequency_penalty = 0.5;
            p.presence_penalty = 0.25;
        });
        let mut s = Sampler::new(p, 1);
        // Token 0 seen twice: 2.0 - 2*0.5 - 0.25 = 0.75 < 1.0.
        assert_eq!(s.sample(&[2.0, 1.0], &[0, 0]), 1);
        // Seen once: 2.0 - 0.5 - 0.25 = 1.25 > 1.0.
        assert_eq!(s.sample(&[2.0, 1.0], &[0]), 0);
    }

    #[test]
    fn same_seed_same_draws_different_seed_differs() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let p = params(|p| {
            p.seed = Some(7);
            p.top_k = 0;
            p.top_p = 1.0;
            p.temperature = 1.5;
        });
        let draw = |p: SamplingParams| {
            let mut s = Sampler::new(p, 0);
            (0..50).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
        };
        assert_eq!(draw(p.clone()), draw(p.clone()));
        let mut other = p.clone();
        other.seed = Some(8);
        assert_ne!(draw(p), draw(other));
    }

    #[test]
    fn top_k_one_is_greedy() {
        let p = params(|p| {
            p.top_k = 1;
            p.temperature = 5.0;
        });
        let mut s = Sampler::new(p, 3);
        for _ in 0..100 {
            assert_eq!(s.sample(&[0.0, 1.0, 0.9, 0.95], &[]), 1);
        }
    }

    #[test]
    fn top_p_and_min_p_cut_the_tail() {
        // Probabilities at T=1: token 0 dominates (~0.97); top_p 0.5 keeps only it.
        let logits = [5.0, 1.0, 0.5, 0.0];
        let mut s = Sampler::new(
            params(|p| {
                p.top_k = 0;
                p.top_p = 0.5;
                p.temperature = 10.0;
            }),
            11,
        );
        assert!((0..200).all(|_| s.sample(&logits, &[]) == 0));
        let mut s = Sampler::new(
            params(|p| {
                p.top_k = 0;
                p.top_p = 1.0;
                p.min_p = 0.5;
                p.temperature = 10.0;
            }),
            11,
        );
        assert!((0..200).all(|_| s.sample(&logits, &[]) == 0));
    }

    /// Speculative sampling preserves the target distribution: over a 5-token vocabulary
    /// with top-k, temperature and a repeat penalty in the chain, the emitted token's
    /// frequencies match plain sampling's probabilities (a chi-square bound), whatever the
    /// draft, including a draft the chain cuts (top-k) and a likely one.
    #[test]
    fn verification_preserves_the_target_distribution() {
        let logits = [1.0, 2.0, 0.5, 1.5, -1.0];
        let history = [1, 1, 3];
        let p = params(|p| {
            p.top_k = 4;
            p.top_p = 1.0;
            p.temperature = 0.7;
            p.repeat_penalty = 1.3;
            p.seed = Some(5);
        });
        // The exact target: penalties, top-k 4 (token 4 cut), temperature, softmax.
        let mut pen = logits;
        for t in [1usize, 3] {
            pen[t] = if pen[t] <= 0.0 {
                pen[t] * 1.3
            } else {
                pen[t] / 1.3
            };
        }
        let w: Vec<f64> = (0..4).map(|i| (f64::from(pen[i]) / 0.7).exp()).collect();
        let z: f64 = w.iter().sum();
        let target: Vec<f64> = (0..5).map(|i| w.get(i).map_or(0.0, |w| w / z)).collect();
        let n = 40_000;
        for draft in [0, 1, 4] {
            let mut s = Sampler::new(p.clone(), 0);
            let mut counts = [0usize; 5];
            let mut accepted = 0;
            for _ in 0..n {
                let (t, ok) = s.verify(&logits, &history, draft);
                counts[t as usize] += 1;
                accepted += usize::from(ok);
                assert_eq!(ok, t == draft);
            }
            assert_eq!(counts[4], 0, "a token the chain cuts is never emitted");
            let chi2: f64 = (0..4)
                .map(|i| {
                    let e = target[i] * n as f64;
                    (counts[i] as f64 - e).powi(2) / e
                })
                .sum();
            // 3 degrees of freedom: P(chi2 > 16.3) = 0.001.
            assert!(chi2 < 16.3, "draft {draft}: chi2 {chi2}, counts {counts:?}");
            let rate = accepted as f64 / n as f64;
            assert!(
                (rate - target[draft as usize]).abs() < 0.01,
                "acceptance {rate}"
            );
        }
        // Greedy: accepted exactly when the draft is the penalized argmax.
        let mut g = Sampler::new(SamplingParams::greedy(), 0);
        assert_eq!(g.verify(&logits, &[], 1), (1, true));
        assert_eq!(g.verify(&logits, &[], 3), (1, false));
    }

    #[test]
    fn draws_follow_the_distribution() {
        // Two tokens with probability 0.25 / 0.75 at T=1.
        let logits = [0.0, 3f32.ln()];
        let mut s = Sampler::new(
            params(|p| {
                p.top_k = 0;
                p.top_p = 1.0;
                p.temperature = 1.0;
                p.seed = Some(99);
            }),
            0,
        );
        let n = 20_000;
        let ones = (0..n).filter(|_| s.sample(&logits, &[]) == 1).count();
        let frac = ones as f64 / n as f64;
        assert!((frac - 0.75).abs() < 0.02, "got {frac}");
    }
}
