//! The engine thread's clocks: when a step's logits should reach the host (so that the
//! sampling threads are awake by then), and each step's timings for the step trace, written
//! while the device computes the next step.
//!
//! # Invariants
//! - [`DeviceClock::wake_at`] is `None` until [`MIN_SAMPLES`] steps of the same shape (logits
//!   rows and tokens, no prompt tokens) were measured in a row; it is then earlier than every
//!   one of the last [`KEPT`] of them by at least [`WAKE_EARLY`].
//! - A [`StepTrace`] is written once, after the step it describes.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How early the sampling threads are woken before the step's logits are expected: waking a
/// sleeping thread takes about 0.1 ms, and the device's step time varies by about as much
/// from step to step.
pub(super) const WAKE_EARLY: Duration = Duration::from_micros(400);
/// Steps of one shape measured before their time is trusted.
pub(super) const MIN_SAMPLES: usize = 3;
/// Steps of one shape remembered (the earliest of them is expected).
pub(super) const KEPT: usize = 8;
/// Below this much time left, the engine thread does not sleep before the logits.
const MIN_SLEEP: Duration = Duration::from_micros(200);

/// The shape of a step that the device's time is learned for: logits rows and tokens of a
/// step without prompt tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Shape {
    pub rows: usize,
    pub tokens: usize,
}

/// Learns how long after its launch a step's logits are on the host.
#[derive(Debug, Default)]
pub(super) struct DeviceClock {
    shape: Option<Shape>,
    recent: VecDeque<Duration>,
}

impl DeviceClock {
    /// Records that a step of `shape` (none: it had prompt tokens) had its logits `waited`
    /// after its launch returned.
    pub(super) fn record(&mut self, shape: Option<Shape>, waited: Duration) {
        if shape != self.shape {
            self.recent.clear();
            self.shape = shape;
        }
        if shape.is_some() {
            if self.recent.len() == KEPT {
                self.recent.pop_front();
            }
            self.recent.push_back(waited);
        }
    }

    /// When to wake the sampling threads for a step of `shape` launched at `launched`: the
    /// earliest recent wait of that shape less [`WAKE_EARLY`], if that is far enough ahead to
    /// sleep until.
    pub(super) fn wake_at(
        &self,
        shape: Option<Shape>,
        launched: Instant,
        now: Instant,
    ) -> Option<Instant> {
        if shape.is_none() || shape != self.shape || self.recent.len() < MIN_SAMPLES {
            return None;
        }
        let earliest = self.recent.iter().min()?;
        let at = launched + earliest.checked_sub(WAKE_EARLY)?;
        (at > now + MIN_SLEEP).then_some(at)
    }
}

/// One step's numbers for the step trace (`hyperllama_engine=trace`).
#[derive(Debug)]
pub(super) struct StepTrace {
    /// When the step started, in milliseconds since the engine loop began.
    pub t_ms: f64,
    pub n_items: usize,
    pub n_decode: usize,
    pub n_prefill: usize,
    pub n_draft: usize,
    pub n_clear: usize,
    pub n_copy: usize,
    /// Micro-batches the backend reckons the step took, and its padding tokens
    /// ([`crate::backend::ExecStats`]).
    pub passes: usize,
    pub padded: usize,
    pub launch_ms: f64,
    pub compute_ms: f64,
    pub slept_ms: f64,
    pub sample_ms: f64,
    pub rows_ms: f64,
    pub ms: f64,
    pub schedule_ms: f64,
}

impl StepTrace {
    /// Writes the trace line (called while the device computes the next step, or before the
    /// loop waits for work, so that writing it is not on a step's critical path).
    pub(super) fn emit(&self) {
        tracing::trace!(
            t_ms = self.t_ms,
            n_items = self.n_items,
            n_decode = self.n_decode,
            n_prefill = self.n_prefill,
            n_draft = self.n_draft,
            n_clear = self.n_clear,
            n_copy = self.n_copy,
            passes = self.passes,
            padded = self.padded,
            launch_ms = self.launch_ms,
            compute_ms = self.compute_ms,
            slept_ms = self.slept_ms,
            sample_ms = self.sample_ms,
            rows_ms = self.rows_ms,
            ms = self.ms,
            schedule_ms = self.schedule_ms,
            "step"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECODE: Shape = Shape {
        rows: 64,
        tokens: 64,
    };

    #[test]
    fn wakes_before_the_earliest_recent_step_of_the_same_shape_only() {
        let mut clock = DeviceClock::default();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        clock.record(Some(DECODE), ms(10));
        clock.record(Some(DECODE), ms(9));
        assert_eq!(
            clock.wake_at(Some(DECODE), t0, t0),
            None,
            "two steps are not enough"
        );
        clock.record(Some(DECODE), ms(11));
        assert_eq!(
            clock.wake_at(Some(DECODE), t0, t0),
            Some(t0 + ms(9) - WAKE_EARLY)
        );
        // Another shape, a prompt step, or too little time left: no sleep.
        let other = Shape {
            rows: 63,
            tokens: 63,
        };
        assert_eq!(clock.wake_at(Some(other), t0, t0), None);
        assert_eq!(clock.wake_at(None, t0, t0), None);
        assert_eq!(clock.wake_at(Some(DECODE), t0, t0 + ms(9)), None);
        // A step of another shape starts the count again.
        clock.record(None, ms(100));
        clock.record(Some(DECODE), ms(10));
        assert_eq!(clock.wake_at(Some(DECODE), t0, t0), None);
    }

    #[test]
    fn forgets_all_but_the_last_steps() {
        let mut clock = DeviceClock::default();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        clock.record(Some(DECODE), ms(2));
        for _ in 0..KEPT {
            clock.record(Some(DECODE), ms(12));
        }
        assert_eq!(
            clock.wake_at(Some(DECODE), t0, t0),
            Some(t0 + ms(12) - WAKE_EARLY),
            "the 2 ms step is forgotten"
        );
    }
}
