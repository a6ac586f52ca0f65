//! The scheduler's plain-data vocabulary: its limits, what goes in (`SeqSpec`), what a step
//! runs (`StepPlan`) and what comes out (`SeqEvent`). Nothing here holds scheduler state.

use crate::ids::{SeqId, SlotId, TokenId};

/// Scheduler limits; see the field docs.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Most tokens computed in one step (llama.cpp's `n_batch`).
    pub max_batched_tokens: usize,
    /// Most sequences running (holding KV and computing) at once.
    pub max_seqs: usize,
    /// Backend slots (sequence ids); at least `max_seqs`. Slots not used by running sequences
    /// hold cache entries.
    pub n_slots: usize,
    /// KV cells shared by all sequences (llama.cpp's unified `n_ctx`).
    pub n_kv_cells: usize,
    /// Positions per KV block: the unit of accounting and of prefix sharing.
    pub block_size: usize,
    /// Most tokens (prompt + output) one sequence may hold: the per-request context length.
    pub n_ctx_per_seq: usize,
    /// Tokens that end generation (end of generation / end of turn).
    pub eog_tokens: Vec<TokenId>,
    /// Keep finished sequences' KV and share it with later prompts that start the same way.
    pub prefix_cache: bool,
    /// Most KV cells held only by cache entries, beyond the cells running sequences hold
    /// (the cache may always hold as many as they do). In llama.cpp's unified cache every
    /// cell in use widens every step's attention, so an unbounded cache slows all later
    /// steps; entries over the bound are evicted least recently used first.
    pub cache_cells: usize,
    /// Give new sequences the lowest slot that is free or holds an evictable cache entry,
    /// keeping running sequences in consecutive slots (for per-slot KV streams).
    pub packed_slots: bool,
    /// A prompt joins a step that already computes another prompt only if all of it fits:
    /// only a step's first prompt chunk is cut to the budget. llama.cpp splits a step of
    /// per-slot KV streams into micro-batches of equally many tokens per sequence, so equal
    /// prompts cut at different lengths cost extra passes over the weights.
    pub whole_prompts: bool,
    /// A cached prefix shorter than this many tokens is computed again rather than copied
    /// into a new sequence's slot, and a prompt does not wait for another prompt's prefill
    /// to share less than this. With per-slot KV streams a copy moves a whole stream and
    /// llama.cpp re-plans its graphs after it, which costs more than computing a short
    /// prefix. An entry the sequence takes over in place (no copy) is used at any length.
    pub min_copy_tokens: usize,
    /// Prompt chunks of one step at most this many tokens longer than a shorter chunk of the
    /// step are cut to its length while more prompt work follows the step (a sequence waits,
    /// or a chunk leaves its prompt unfinished), and a sequence whose chunk was cut so
    /// computes the rest of its prompt (at most this many tokens) one token per step, beside
    /// the decode tokens.
    /// llama.cpp computes a step of per-slot KV streams in one pass over the weights per
    /// distinct number of tokens per sequence: 64 prompts of 256 to 260 tokens cost a pass
    /// of a few tokens for each length beyond the shortest, each about a decode step, while
    /// one token more per sequence in the decode pass costs next to nothing. 0: off.
    pub equal_chunk_slack: usize,
}

impl SchedulerConfig {
    /// Limits for `max_seqs` sequences of up to `n_ctx_per_seq` tokens in `n_kv_cells` cells,
    /// with a step budget of `max_batched_tokens`, prefix caching on and twice as many slots
    /// as sequences.
    pub fn new(
        max_batched_tokens: usize,
        max_seqs: usize,
        n_kv_cells: usize,
        n_ctx_per_seq: usize,
    ) -> Self {
        Self {
            max_batched_tokens,
            max_seqs,
            n_slots: max_seqs * 2,
            n_kv_cells,
            block_size: 16,
            n_ctx_per_seq,
            eog_tokens: Vec::new(),
            prefix_cache: true,
            cache_cells: usize::MAX,
            packed_slots: false,
            whole_prompts: false,
            min_copy_tokens: 0,
            equal_chunk_slack: 0,
        }
    }
}

/// A sequence to add: its prompt and when it must stop.
#[derive(Clone, Debug)]
pub struct SeqSpec {
    /// The sequence's id, chosen by the caller and unique.
    pub id: SeqId,
    /// Prompt tokens; at least one.
    pub prompt: Vec<TokenId>,
    /// Most new tokens to generate; `None` means until end of generation or context.
    pub max_new_tokens: Option<usize>,
    /// Keep generating past end-of-generation tokens (fixed-length benchmarks).
    pub ignore_eos: bool,
}

/// Why a sequence ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// The token limit or the context length was reached.
    Length,
    /// The client went away or asked to stop.
    Cancelled,
    /// The output constraint (JSON schema, grammar) allowed no further token.
    Constraint,
}

impl FinishReason {
    /// The name Ollama and OpenAI use (`stop`, `length`, `cancelled`; ours: `constraint`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::Cancelled => "cancelled",
            Self::Constraint => "constraint",
        }
    }
}

/// A sequence cannot be admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdmissionError {
    /// The prompt has no tokens.
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// The prompt does not leave room for one new token in the context.
    #[error("the prompt has {n_prompt} tokens, more than the context of {n_ctx} tokens allows")]
    PromptTooLong {
        /// Prompt tokens.
        n_prompt: usize,
        /// Context length per sequence.
        n_ctx: usize,
    },
    /// A sequence with this id already exists.
    #[error("duplicate sequence id {0}")]
    DuplicateId(SeqId),
}

/// Copy the KV of positions `[0, n_tokens)` from one slot into another (shared, not
/// duplicated, in llama.cpp's unified cache).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvCopy {
    /// The slot holding the positions.
    pub src: SlotId,
    /// The slot that receives them (empty before the copy).
    pub dst: SlotId,
    /// How many leading positions.
    pub n_tokens: usize,
}

/// One sequence's share of a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanItem {
    /// Which sequence.
    pub seq: SeqId,
    /// Its KV slot.
    pub slot: SlotId,
    /// Position of the first token in `tokens`.
    pub pos: usize,
    /// Tokens to compute, at positions `pos..pos + tokens.len()`.
    pub tokens: Vec<TokenId>,
    /// Whether the logits after the last token are needed to sample the next one.
    pub sample: bool,
    /// How many trailing tokens of `tokens` are draft tokens to verify (speculative decoding;
    /// only on a decode item, whose first token is the last sampled one). With `sample`,
    /// logits are needed after each of the last `n_draft + 1` tokens.
    pub n_draft: usize,
}

impl PlanItem {
    /// Logits rows this item needs: `n_draft + 1` when sampled, else none.
    pub fn n_rows(&self) -> usize {
        if self.sample {
            self.n_draft + 1
        } else {
            0
        }
    }

    /// The draft tokens (the last `n_draft` tokens).
    pub fn draft(&self) -> &[TokenId] {
        &self.tokens[self.tokens.len() - self.n_draft..]
    }
}

/// Remove a slot's KV from position `from` on: the rejected draft positions of a
/// speculating sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvTrim {
    /// The slot.
    pub slot: SlotId,
    /// First position removed.
    pub from: usize,
}

/// What the backend runs in one step, in this order: `trim`, `clear`, `copy`, `items`.
/// Plain data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepPlan {
    /// Rejected draft positions to remove first (from the previous step's verification).
    pub trim: Vec<KvTrim>,
    /// Slots whose KV must be removed first (evicted entries, dropped sequences).
    pub clear: Vec<SlotId>,
    /// Prefix copies into newly admitted sequences' slots.
    pub copy: Vec<KvCopy>,
    /// Sequences to compute, each at most once.
    pub items: Vec<PlanItem>,
}

impl StepPlan {
    /// Total tokens computed by this plan.
    pub fn n_tokens(&self) -> usize {
        self.items.iter().map(|i| i.tokens.len()).sum()
    }

    /// Number of items whose logits are sampled (the rows of the step's output).
    pub fn n_samples(&self) -> usize {
        self.items.iter().filter(|i| i.sample).count()
    }

    /// Logits rows of the step's output: each sampled item's `n_draft + 1`, in plan order.
    pub fn n_rows(&self) -> usize {
        self.items.iter().map(PlanItem::n_rows).sum()
    }

    /// Draft tokens planned for verification.
    pub fn n_draft(&self) -> usize {
        self.items.iter().map(|i| i.n_draft).sum()
    }

    /// Whether there is nothing to compute.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// What happened to a sequence in a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SeqEvent {
    /// A new token was generated (never an end-of-generation token).
    Token {
        /// Which sequence.
        seq: SeqId,
        /// The token.
        token: TokenId,
    },
    /// The prompt was fully computed (reported once per admission, also after preemption).
    PromptDone {
        /// Which sequence.
        seq: SeqId,
        /// Prompt tokens.
        n_prompt: usize,
        /// Of those, how many were taken from the prefix cache instead of computed.
        n_cached: usize,
    },
    /// The sequence ended; its KV stays as a cache entry or is cleared at the next step.
    Finished {
        /// Which sequence.
        seq: SeqId,
        /// Why.
        reason: FinishReason,
    },
}
