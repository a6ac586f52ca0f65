//! The step-backend boundary: one batched forward pass per call, no policy.
//!
//! The scheduler decides; the backend executes a [`StepPlan`] and exposes the logits rows the
//! plan asked for. KV operations (clear a slot, trim a slot, copy a slot) are the backend's
//! only other verbs.
//!
//! # Invariants
//! - `execute` applies the plan's trims, then its clears, then its copies, then computes its
//!   items. The trims, clears and copies always take effect; the computation either completes or has no effect
//!   (llama.cpp restores its cache on `NoKvSlot`), so the scheduler can retry.
//! - Logits rows follow the plan: each item with `sample` set owns `n_draft + 1` consecutive
//!   rows (after each of its last `n_draft + 1` tokens, in order); rows stay valid until the
//!   next `execute`.

use hyperllama_core::sched::StepPlan;
use hyperllama_core::SlotId;

/// Why a step failed: llama.cpp's `llama_decode` return codes as a closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// No KV cell was free for the batch (code 1); the step had no effect.
    #[error("no KV cache slot for the batch")]
    NoKvSlot,
    /// The computation was aborted (code 2).
    #[error("the computation was aborted")]
    Aborted,
    /// The batch was invalid (code -1): a bug in the plan or its translation.
    #[error("llama.cpp rejected the batch as invalid")]
    InvalidBatch,
    /// Any other failure (codes below -1): the backend is unusable.
    #[error("llama.cpp failed with code {0}")]
    Fatal(i32),
}

impl BackendError {
    /// Maps `llama_decode`'s non-zero return code.
    pub fn from_decode_code(code: i32) -> Self {
        match code {
            1 => Self::NoKvSlot,
            2 => Self::Aborted,
            -1 => Self::InvalidBatch,
            c => Self::Fatal(c),
        }
    }

    /// Whether the step had no effect and may be retried with a smaller plan.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::NoKvSlot | Self::Aborted)
    }
}

/// What a backend can do, reported once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// Vocabulary size: the length of every logits row.
    pub n_vocab: usize,
    /// KV cells shared by all slots.
    pub n_kv_cells: usize,
    /// Number of slots (sequence ids) the backend accepts.
    pub n_slots: usize,
    /// Most tokens in one `execute`.
    pub max_batch_tokens: usize,
}

/// How the last `execute` computed its plan, for the step trace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecStats {
    /// Micro-batches (each a pass over the weights) the step is split into, as the backend
    /// reckons its library splits it; 0 where it does not say.
    pub passes: usize,
    /// Padding tokens computed beside the plan's (removed again before the next step).
    pub padded: usize,
}

/// Executes one batched forward step; see the module docs.
pub trait StepBackend {
    /// Runs the plan: trims and clears the listed slots, copies prefixes, then computes every
    /// item.
    fn execute(&mut self, plan: &StepPlan) -> Result<(), BackendError>;
    /// The logits of the `row`-th row of the last plan (see the module docs for the order).
    fn logits(&self, row: usize) -> &[f32];
    /// Copies the KV of `src` for positions `[0, n_tokens)` into `dst` (shared, not duplicated).
    fn copy_slot(&mut self, src: SlotId, dst: SlotId, n_tokens: usize);
    /// Removes the KV of `slot` from position `from_pos` on.
    fn trim_slot(&mut self, slot: SlotId, from_pos: usize);
    /// What this backend can do.
    fn capabilities(&self) -> Capabilities;
    /// How the last `execute` computed its plan (see [`ExecStats`]).
    fn last_stats(&self) -> ExecStats {
        ExecStats::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_codes_map_to_a_closed_set() {
        assert_eq!(BackendError::from_decode_code(1), BackendError::NoKvSlot);
        assert_eq!(BackendError::from_decode_code(2), BackendError::Aborted);
        assert_eq!(
            BackendError::from_decode_code(-1),
            BackendError::InvalidBatch
        );
        assert_eq!(BackendError::from_decode_code(-3), BackendError::Fatal(-3));
        assert!(BackendError::NoKvSlot.is_retryable());
        assert!(!BackendError::Fatal(-2).is_retryable());
    }
}
