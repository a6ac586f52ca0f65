//! Pacing prefill against decoding: how many prompt tokens a step may compute while other
//! sequences wait for their next token.
//!
//! A long prompt that arrives while others decode is computed in chunks between their decode
//! steps. A chunk that is too large stalls every decoding user for its whole duration; one
//! that is too small makes the prompt's own first token late. The [`Pacer`] learns from the
//! measured step times what a decode step and a prompt token cost on this machine and this
//! model, and caps a step's prompt tokens so that they cost about `ratio` decode steps: with
//! the default ratio of 1, a step that carries a chunk takes about twice a plain decode step,
//! on a 2-core CPU (prompt tokens expensive) as on a GPU (prompt tokens almost free).
//!
//! The same measurements price speculative decoding. A step without prompt tokens that carries
//! `x` tokens (each decoding sequence's last token plus all draft tokens, every one of them
//! with logits) costs `T(x) = a + b·x`, learned by least squares over recent such steps, with
//! and without drafts. A step that gives its `n` decoders drafts accepted at rate `r` produces
//! more tokens per second exactly when `r > b·n / T(n)`: [`Pacer::draft_cost_ratio`]. On a
//! 2-core CPU a token costs nearly the same in any position, so the ratio nears 1 as the batch
//! grows and drafting stops paying; on a GPU it stays small. Drafting is asked to beat the
//! ratio by [`DRAFT_MARGIN`], since a misjudged draft costs time and a skipped one only a
//! missed gain.
//!
//! # Invariants
//! - [`Pacer::prefill_cap`] is within `[min_chunk, max_chunk]`, and `max_chunk` until both
//!   costs have been measured.
//! - [`Pacer::draft_cost_ratio`] is `None` until a plain decode step and a step with prompt
//!   or draft tokens have been measured, then finite and positive.
//! - Durations are handed in by the caller (seconds); nothing here reads a clock.

/// Learns step costs and derives the prefill cap.
#[derive(Clone, Debug)]
pub struct Pacer {
    decode_step: Option<f64>,
    prefill_token: Option<f64>,
    draft_token: Option<f64>,
    decode_fit: DecodeFit,
    /// Steps without prompt tokens, by the tokens they carry (decode and draft tokens).
    token_fit: DecodeFit,
    /// The most sequences a plain decode step has been measured with.
    largest_plain: usize,
    /// Steps since the last plain decode step.
    since_plain: u32,
    ratio: f64,
    min_chunk: usize,
    max_chunk: usize,
}

/// Weight of a new measurement in the moving averages.
const ALPHA: f64 = 0.25;
/// Forgetting factor of the decode-step fit (about the last 20 plain steps count).
const FIT_DECAY: f64 = 0.95;
/// Steps with drafts or prompt tokens after which a plain decode step is asked for.
pub const PLAIN_EVERY: u32 = 32;
/// How much drafts must beat their measured cost (see the module docs).
pub const DRAFT_MARGIN: f64 = 1.25;

/// Least-squares fit `secs = a + b·n` of plain decode steps, exponentially forgetting.
#[derive(Clone, Debug, Default)]
struct DecodeFit {
    w: f64,
    n: f64,
    nn: f64,
    t: f64,
    nt: f64,
}

impl DecodeFit {
    fn add(&mut self, n: f64, secs: f64) {
        self.w = FIT_DECAY * self.w + 1.0;
        self.n = FIT_DECAY * self.n + n;
        self.nn = FIT_DECAY * self.nn + n * n;
        self.t = FIT_DECAY * self.t + secs;
        self.nt = FIT_DECAY * self.nt + n * secs;
    }

    /// The mean size and duration, the variance of the sizes, and the least-squares line
    /// `(a, b)` through them (meaningless while the variance is about 0); `None` before the
    /// first step.
    fn fit(&self) -> Option<Fit> {
        if self.w <= 0.0 {
            return None;
        }
        let (mn, mt) = (self.n / self.w, self.t / self.w);
        let var = self.nn / self.w - mn * mn;
        let b = (self.nt / self.w - mn * mt) / var;
        Some(Fit {
            mn,
            mt,
            var,
            a: mt - b * mn,
            b,
        })
    }

    /// The fitted line `(a, b)`, once the sizes seen vary enough to tell them apart and
    /// both are non-negative.
    fn line(&self) -> Option<(f64, f64)> {
        let f = self.fit()?;
        (f.var > 1.0 && f.b >= 0.0 && f.a >= 0.0).then_some((f.a, f.b))
    }

    /// The predicted duration of a plain decode step with `n` sequences.
    fn predict(&self, n: f64) -> Option<f64> {
        let Fit { mn, mt, var, a, b } = self.fit()?;
        if var > 0.25 {
            if b >= 0.0 && a >= 0.0 {
                return Some(a + b * n);
            }
            if b < 0.0 {
                return Some(mt);
            }
            // A negative intercept: proportional through the mean.
            return Some(mt * n / mn);
        }
        // Only one batch size seen: half fixed cost, half per sequence, a guess between
        // a memory-bound step (flat) and a compute-bound one (proportional).
        Some(mt * (0.5 + 0.5 * n / mn))
    }
}

/// What [`DecodeFit::fit`] computes.
struct Fit {
    mn: f64,
    mt: f64,
    var: f64,
    a: f64,
    b: f64,
}

impl Pacer {
    /// A pacer whose cap ranges over `[min_chunk, max_chunk]` (the step budget), aiming at
    /// prompt tokens that cost `ratio` decode steps per step.
    pub fn new(min_chunk: usize, max_chunk: usize, ratio: f64) -> Self {
        let min_chunk = min_chunk.max(1);
        Self {
            decode_step: None,
            prefill_token: None,
            draft_token: None,
            decode_fit: DecodeFit::default(),
            token_fit: DecodeFit::default(),
            largest_plain: 0,
            since_plain: 0,
            ratio,
            min_chunk,
            max_chunk: max_chunk.max(min_chunk),
        }
    }

    /// Records one step: `n_decode` sequences decoding (each its last token, plus `n_draft`
    /// draft tokens in all), `n_prefill` tokens in prompt chunks, `secs` of wall time.
    pub fn observe(&mut self, n_decode: usize, n_prefill: usize, n_draft: usize, secs: f64) {
        if !(secs.is_finite() && secs > 0.0) {
            return;
        }
        let ewma = |old: Option<f64>, new: f64| Some(old.map_or(new, |o| o + ALPHA * (new - o)));
        if n_prefill == 0 && n_decode > 0 {
            self.token_fit.add((n_decode + n_draft) as f64, secs);
        }
        if n_prefill == 0 && n_draft == 0 {
            if n_decode > 0 {
                self.decode_step = ewma(self.decode_step, secs);
                self.decode_fit.add(n_decode as f64, secs);
                self.largest_plain = self.largest_plain.max(n_decode);
                self.since_plain = 0;
            }
            return;
        }
        self.since_plain = self.since_plain.saturating_add(1);
        let decode_part = if n_decode > 0 {
            self.decode_fit
                .predict(n_decode as f64)
                .or(self.decode_step)
                .unwrap_or(0.0)
        } else {
            0.0
        };
        // At least a tenth of the step is put on the extra tokens, so a noisy decode estimate
        // cannot make them look free.
        let extra_secs = (secs - decode_part).max(secs * 0.1);
        if n_prefill == 0 {
            self.draft_token = ewma(self.draft_token, extra_secs / n_draft as f64);
        } else {
            // Drafts beside a prompt chunk (rare: no drafts while prompts wait) are priced
            // like its tokens.
            self.prefill_token = ewma(
                self.prefill_token,
                extra_secs / (n_prefill + n_draft) as f64,
            );
        }
    }

    /// The draft acceptance rate above which drafting pays in a step where `n_decode`
    /// sequences decode: `b·n / T(n)` (see the module docs) times `DRAFT_MARGIN`. At 1 or
    /// more, no acceptance rate pays (also for a batch more than twice the largest plain step
    /// measured, until one is). `None` until the costs are measured; while the step
    /// sizes seen so far cannot tell `a` from `b`, a draft token is priced by the last draft
    /// (or prompt) token measured against a plain decode step.
    pub fn draft_cost_ratio(&self, n_decode: usize) -> Option<f64> {
        if n_decode > 2 * self.largest_plain.max(1) {
            // A batch far larger than any measured plain step: no guessing (a guess that
            // is too low makes a large batch draft); the next plain step measures it.
            return Some(f64::INFINITY);
        }
        let n = n_decode.max(1) as f64;
        if let Some((a, b)) = self.token_fit.line() {
            let t = a + b * n;
            if t > 0.0 {
                return Some(DRAFT_MARGIN * b * n / t);
            }
        }
        let d = self.decode_fit.predict(n)?;
        let c = self.draft_token.or(self.prefill_token)?;
        (d > 0.0).then(|| DRAFT_MARGIN * c * n / d)
    }

    /// Whether the next step should carry no drafts, so that a plain decode step is measured
    /// again: drafting prices itself against plain steps, and a sequence that always drafts
    /// would never see one. At most one step in `PLAIN_EVERY`.
    pub fn wants_plain_step(&self) -> bool {
        self.since_plain >= PLAIN_EVERY
    }

    /// The most prompt tokens for a step in which some sequence decodes.
    pub fn prefill_cap(&self) -> usize {
        match (self.decode_step, self.prefill_token) {
            (Some(d), Some(p)) if p > 0.0 => {
                let cap = (self.ratio * d / p).floor();
                if cap >= self.max_chunk as f64 {
                    self.max_chunk
                } else {
                    (cap as usize).clamp(self.min_chunk, self.max_chunk)
                }
            }
            _ => self.max_chunk,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmeasured_costs_leave_the_whole_budget() {
        let mut p = Pacer::new(16, 512, 1.0);
        assert_eq!(p.prefill_cap(), 512);
        p.observe(8, 0, 0, 0.06);
        assert_eq!(p.prefill_cap(), 512, "prompt cost unknown yet");
    }

    #[test]
    fn an_expensive_prompt_token_gets_small_chunks_a_cheap_one_large_chunks() {
        // CPU-like: a decode step 60 ms, a prompt token 5 ms.
        let mut cpu = Pacer::new(16, 512, 1.0);
        for _ in 0..20 {
            cpu.observe(8, 0, 0, 0.060);
            cpu.observe(8, 32, 0, 0.060 + 32.0 * 0.005);
        }
        assert_eq!(cpu.prefill_cap(), 16, "12 tokens, raised to the minimum");
        let mut cpu2 = Pacer::new(4, 512, 1.0);
        for _ in 0..40 {
            cpu2.observe(8, 0, 0, 0.060);
            cpu2.observe(8, 12, 0, 0.060 + 12.0 * 0.005);
        }
        assert!(
            (11..=12).contains(&cpu2.prefill_cap()),
            "{}",
            cpu2.prefill_cap()
        );
        // GPU-like: a decode step 15 ms, a prompt token 0.02 ms.
        let mut gpu = Pacer::new(16, 512, 1.0);
        for _ in 0..20 {
            gpu.observe(64, 0, 0, 0.015);
            gpu.observe(64, 256, 0, 0.015 + 256.0 * 0.000_02);
        }
        assert_eq!(gpu.prefill_cap(), 512);
    }

    #[test]
    fn nonsense_durations_are_ignored() {
        let mut p = Pacer::new(16, 512, 1.0);
        p.observe(8, 0, 0, f64::NAN);
        p.observe(8, 10, 0, -1.0);
        p.observe(8, 10, 0, 0.0);
        assert_eq!(p.prefill_cap(), 512);
    }

    #[test]
    fn drafts_pay_alone_on_a_cpu_but_not_in_a_large_batch() {
        // CPU-like: a step costs 5 ms plus 4.6 ms per token, wherever the token is.
        let mut cpu = Pacer::new(16, 512, 1.0);
        for n in [1usize, 2, 4, 8, 16, 1, 16] {
            cpu.observe(n, 0, 0, 0.005 + 0.0046 * n as f64);
        }
        cpu.observe(1, 0, 4, 0.005 + 0.0046 * 5.0);
        // Alone: 4.6 / 9.6 ms, with the margin 0.6: drafts accepted 60 % of the time pay.
        let alone = cpu.draft_cost_ratio(1).expect("measured");
        assert!((alone - 1.25 * 0.0046 / 0.0096).abs() < 0.02, "{alone}");
        // Sixteen sequences: no acceptance rate pays.
        let batch = cpu.draft_cost_ratio(16).expect("measured");
        assert!(batch > 1.0, "a 16-sequence batch: {batch}");
        // GPU-like: a step costs 15 ms plus 0.02 ms per token.
        let mut gpu = Pacer::new(16, 512, 1.0);
        for n in [1usize, 8, 64, 32] {
            gpu.observe(n, 0, 0, 0.015 + 0.000_02 * n as f64);
        }
        gpu.observe(64, 0, 128, 0.015 + 0.000_02 * 192.0);
        assert!(gpu.draft_cost_ratio(64).expect("measured") < 0.2);
        // Only one sequence measured so far: a batch of 16 does not draft until measured.
        let mut alone = Pacer::new(16, 512, 1.0);
        alone.observe(1, 0, 0, 0.0096);
        alone.observe(1, 0, 4, 0.005 + 0.0046 * 5.0);
        assert!(alone.draft_cost_ratio(1).expect("measured") < 1.0);
        assert_eq!(alone.draft_cost_ratio(16), Some(f64::INFINITY));
    }

    #[test]
    fn a_plain_step_is_asked_for_after_a_run_of_drafting_steps() {
        let mut p = Pacer::new(16, 512, 1.0);
        assert_eq!(p.draft_cost_ratio(1), None);
        p.observe(1, 0, 0, 0.01);
        assert_eq!(p.draft_cost_ratio(1), None, "no draft cost yet");
        for _ in 0..PLAIN_EVERY {
            assert!(!p.wants_plain_step());
            p.observe(1, 0, 4, 0.02);
        }
        assert!(p.wants_plain_step());
        p.observe(1, 0, 0, 0.01);
        assert!(!p.wants_plain_step());
    }
}
