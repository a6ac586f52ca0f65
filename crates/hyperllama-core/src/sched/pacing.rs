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
//! # Invariants
//! - [`Pacer::prefill_cap`] is within `[min_chunk, max_chunk]`, and `max_chunk` until both
//!   costs have been measured.
//! - Durations are handed in by the caller (seconds); nothing here reads a clock.

/// Learns step costs and derives the prefill cap.
#[derive(Clone, Debug)]
pub struct Pacer {
    decode_step: Option<f64>,
    prefill_token: Option<f64>,
    ratio: f64,
    min_chunk: usize,
    max_chunk: usize,
}

/// Weight of a new measurement in the moving averages.
const ALPHA: f64 = 0.25;

impl Pacer {
    /// A pacer whose cap ranges over `[min_chunk, max_chunk]` (the step budget), aiming at
    /// prompt tokens that cost `ratio` decode steps per step.
    pub fn new(min_chunk: usize, max_chunk: usize, ratio: f64) -> Self {
        let min_chunk = min_chunk.max(1);
        Self {
            decode_step: None,
            prefill_token: None,
            ratio,
            min_chunk,
            max_chunk: max_chunk.max(min_chunk),
        }
    }

    /// Records one step: `n_decode` single tokens, `n_prefill` tokens in prompt chunks,
    /// `secs` of wall time.
    pub fn observe(&mut self, n_decode: usize, n_prefill: usize, secs: f64) {
        if !(secs.is_finite() && secs > 0.0) {
            return;
        }
        let ewma = |old: Option<f64>, new: f64| Some(old.map_or(new, |o| o + ALPHA * (new - o)));
        if n_prefill == 0 {
            if n_decode > 0 {
                self.decode_step = ewma(self.decode_step, secs);
            }
            return;
        }
        let decode_part = if n_decode > 0 {
            self.decode_step.unwrap_or(0.0)
        } else {
            0.0
        };
        // At least a tenth of the step is put on the prompt, so a noisy decode estimate
        // cannot make prompt tokens look free.
        let prompt_secs = (secs - decode_part).max(secs * 0.1);
        self.prefill_token = ewma(self.prefill_token, prompt_secs / n_prefill as f64);
    }

    /// What one more token in a step costs relative to a decode step (measured), once both
    /// are known: a speculative draft token pays when it is accepted more often than this.
    pub fn token_cost_ratio(&self) -> Option<f64> {
        match (self.decode_step, self.prefill_token) {
            (Some(d), Some(p)) if d > 0.0 => Some(p / d),
            _ => None,
        }
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
        p.observe(8, 0, 0.06);
        assert_eq!(p.prefill_cap(), 512, "prompt cost unknown yet");
    }

    #[test]
    fn an_expensive_prompt_token_gets_small_chunks_a_cheap_one_large_chunks() {
        // CPU-like: a decode step 60 ms, a prompt token 5 ms.
        let mut cpu = Pacer::new(16, 512, 1.0);
        for _ in 0..20 {
            cpu.observe(8, 0, 0.060);
            cpu.observe(8, 32, 0.060 + 32.0 * 0.005);
        }
        assert_eq!(cpu.prefill_cap(), 16, "12 tokens, raised to the minimum");
        let mut cpu2 = Pacer::new(4, 512, 1.0);
        for _ in 0..40 {
            cpu2.observe(8, 0, 0.060);
            cpu2.observe(8, 12, 0.060 + 12.0 * 0.005);
        }
        assert!(
            (11..=12).contains(&cpu2.prefill_cap()),
            "{}",
            cpu2.prefill_cap()
        );
        // GPU-like: a decode step 15 ms, a prompt token 0.02 ms.
        let mut gpu = Pacer::new(16, 512, 1.0);
        for _ in 0..20 {
            gpu.observe(64, 0, 0.015);
            gpu.observe(64, 256, 0.015 + 256.0 * 0.000_02);
        }
        assert_eq!(gpu.prefill_cap(), 512);
    }

    #[test]
    fn nonsense_durations_are_ignored() {
        let mut p = Pacer::new(16, 512, 1.0);
        p.observe(8, 0, f64::NAN);
        p.observe(8, 10, -1.0);
        p.observe(8, 10, 0.0);
        assert_eq!(p.prefill_cap(), 512);
    }
}
