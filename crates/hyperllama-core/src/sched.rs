//! The token-level scheduler: which sequences run in the next step, and with how many tokens.
//!
//! One engine iteration is `schedule` → execute (the backend) → `commit`. There are no
//! prefill or decode modes: every sequence carries `n_computed` (tokens whose KV exists) and its
//! tokens; the scheduler closes the gap in chunks within a token budget. Running sequences'
//! decode tokens are planned first, then prompt chunks, then new admissions (first come, first
//! served). A prompt longer than the budget is prefilled over several steps.
//!
//! KV capacity is a ledger of cells: a sequence holds as many cells as it has computed tokens.
//! When a decode token finds no free cell, the newest running sequence is preempted: its cells
//! are freed (its slot is cleared at the next step) and it is recomputed later from its tokens.
//!
//! # Invariants
//! - A plan never holds more than `max_batched_tokens` tokens nor more than `max_seqs`
//!   sequences, and no sequence appears twice in one plan.
//! - `n_kv_used` equals the sum, over sequences holding a slot, of their computed tokens plus the
//!   tokens planned for them in the step in flight; it never exceeds `n_kv_cells`.
//! - A slot belongs to at most one sequence; a slot whose sequence ended or was preempted is
//!   listed in the next plan's `clear` before anything else is computed in it.
//! - Only `schedule`, `commit`, `abandon`, `add` and `abort` change state; a plan is plain data
//!   with no references into the scheduler.

use std::collections::{HashMap, VecDeque};

use crate::ids::{SeqId, SlotId, TokenId};

/// Scheduler limits; see the field docs.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Most tokens computed in one step (llama.cpp's `n_batch`).
    pub max_batched_tokens: usize,
    /// Most sequences holding KV at once; also the number of backend slots.
    pub max_seqs: usize,
    /// KV cells shared by all sequences (llama.cpp's unified `n_ctx`).
    pub n_kv_cells: usize,
    /// Most tokens (prompt + output) one sequence may hold: the per-request context length.
    pub n_ctx_per_seq: usize,
    /// Tokens that end generation (end of generation / end of turn).
    pub eog_tokens: Vec<TokenId>,
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
}

impl FinishReason {
    /// The name Ollama and OpenAI use (`stop`, `length`, `cancelled`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::Cancelled => "cancelled",
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
}

/// What the backend runs in one step; plain data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepPlan {
    /// Slots whose KV must be removed before computing (ended or preempted sequences).
    pub clear: Vec<SlotId>,
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
        /// Prompt tokens computed.
        n_prompt: usize,
    },
    /// The sequence ended; its slot is cleared at the next step.
    Finished {
        /// Which sequence.
        seq: SeqId,
        /// Why.
        reason: FinishReason,
    },
}

#[derive(Debug)]
struct Sequence {
    tokens: Vec<TokenId>,
    n_prompt: usize,
    n_computed: usize,
    n_planned: usize,
    max_new_tokens: Option<usize>,
    ignore_eos: bool,
    slot: Option<SlotId>,
    prompt_reported: bool,
}

impl Sequence {
    fn n_generated(&self) -> usize {
        self.tokens.len() - self.n_prompt
    }
}

/// The scheduler; see the module docs.
#[derive(Debug)]
pub struct Scheduler {
    cfg: SchedulerConfig,
    seqs: HashMap<SeqId, Sequence>,
    waiting: VecDeque<SeqId>,
    running: Vec<SeqId>,
    free_slots: Vec<SlotId>,
    to_clear: Vec<SlotId>,
    n_kv_used: usize,
    n_preemptions: u64,
}

impl Scheduler {
    /// A scheduler with no sequences. The budget must fit one decode token per sequence.
    pub fn new(cfg: SchedulerConfig) -> Self {
        assert!(cfg.max_seqs >= 1 && cfg.max_batched_tokens >= cfg.max_seqs);
        assert!(cfg.n_ctx_per_seq >= 2 && cfg.n_kv_cells >= cfg.n_ctx_per_seq);
        let free_slots = (0..cfg.max_seqs as u32).rev().map(SlotId).collect();
        Self {
            cfg,
            seqs: HashMap::new(),
            waiting: VecDeque::new(),
            running: Vec::new(),
            free_slots,
            to_clear: Vec::new(),
            n_kv_used: 0,
            n_preemptions: 0,
        }
    }

    /// The limits this scheduler was built with.
    pub fn config(&self) -> &SchedulerConfig {
        &self.cfg
    }

    /// Queues a sequence (first come, first served).
    pub fn add(&mut self, spec: SeqSpec) -> Result<(), AdmissionError> {
        if spec.prompt.is_empty() {
            return Err(AdmissionError::EmptyPrompt);
        }
        if spec.prompt.len() >= self.cfg.n_ctx_per_seq {
            return Err(AdmissionError::PromptTooLong {
                n_prompt: spec.prompt.len(),
                n_ctx: self.cfg.n_ctx_per_seq,
            });
        }
        if self.seqs.contains_key(&spec.id) {
            return Err(AdmissionError::DuplicateId(spec.id));
        }
        let n_prompt = spec.prompt.len();
        self.seqs.insert(
            spec.id,
            Sequence {
                tokens: spec.prompt,
                n_prompt,
                n_computed: 0,
                n_planned: 0,
                max_new_tokens: spec.max_new_tokens,
                ignore_eos: spec.ignore_eos,
                slot: None,
                prompt_reported: false,
            },
        );
        self.waiting.push_back(spec.id);
        Ok(())
    }

    /// Removes a sequence wherever it is (the client left); frees its KV at once.
    /// Returns whether it existed.
    pub fn abort(&mut self, id: SeqId) -> bool {
        debug_assert!(self.in_flight().is_none(), "abort during a step");
        let Some(seq) = self.seqs.remove(&id) else {
            return false;
        };
        self.waiting.retain(|&s| s != id);
        self.running.retain(|&s| s != id);
        if let Some(slot) = seq.slot {
            self.n_kv_used -= seq.n_computed;
            self.to_clear.push(slot);
            self.free_slots.push(slot);
        }
        true
    }

    /// Whether any sequence is waiting or running.
    pub fn has_work(&self) -> bool {
        !self.seqs.is_empty()
    }

    /// Sequences waiting for admission.
    pub fn n_waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Sequences holding KV.
    pub fn n_running(&self) -> usize {
        self.running.len()
    }

    /// KV cells in use.
    pub fn n_kv_used(&self) -> usize {
        self.n_kv_used
    }

    /// How many preemptions happened so far.
    pub fn n_preemptions(&self) -> u64 {
        self.n_preemptions
    }

    /// The tokens of a sequence so far (prompt and output), for sampling penalties.
    pub fn tokens(&self, id: SeqId) -> Option<&[TokenId]> {
        self.seqs.get(&id).map(|s| s.tokens.as_slice())
    }

    fn in_flight(&self) -> Option<SeqId> {
        self.running
            .iter()
            .copied()
            .find(|id| self.seqs.get(id).is_some_and(|s| s.n_planned > 0))
    }

    /// Plans the next step. Call `commit` (or `abandon`) with the plan before scheduling again.
    pub fn schedule(&mut self) -> StepPlan {
        debug_assert!(self.in_flight().is_none(), "schedule before commit");
        let mut budget = self.cfg.max_batched_tokens;
        let mut items = Vec::new();

        // 1. Running sequences, oldest first: decode tokens and unfinished prompt chunks.
        let mut idx = 0;
        while idx < self.running.len() {
            let id = self.running[idx];
            let remaining = {
                let s = &self.seqs[&id];
                s.tokens.len() - s.n_computed
            };
            let want = remaining.min(budget);
            if want == 0 {
                idx += 1;
                continue;
            }
            // Make room by preempting the newest sequences (possibly this one).
            let mut n = want.min(self.cfg.n_kv_cells - self.n_kv_used);
            while n == 0 {
                let victim = *self.running.last().expect("running is non-empty here");
                self.preempt(victim);
                if victim == id {
                    break;
                }
                n = want.min(self.cfg.n_kv_cells - self.n_kv_used);
            }
            if n == 0 {
                // This sequence itself was preempted; it is no longer in `running`.
                continue;
            }
            items.push(self.plan_item(id, n));
            budget -= n;
            idx += 1;
        }

        // 2. Admit waiting sequences, first come first served, while their whole prompt fits.
        while budget > 0 && !self.free_slots.is_empty() {
            let Some(&id) = self.waiting.front() else {
                break;
            };
            let n_tokens = self.seqs[&id].tokens.len();
            if self.n_kv_used + n_tokens > self.cfg.n_kv_cells {
                break;
            }
            self.waiting.pop_front();
            let slot = self.free_slots.pop().expect("checked non-empty");
            self.seqs.get_mut(&id).expect("waiting ids exist").slot = Some(slot);
            self.running.push(id);
            let n = n_tokens.min(budget);
            items.push(self.plan_item(id, n));
            budget -= n;
        }

        StepPlan {
            clear: std::mem::take(&mut self.to_clear),
            items,
        }
    }

    fn plan_item(&mut self, id: SeqId, n: usize) -> PlanItem {
        let s = self.seqs.get_mut(&id).expect("planned ids exist");
        let pos = s.n_computed;
        s.n_planned = n;
        self.n_kv_used += n;
        PlanItem {
            seq: id,
            slot: s.slot.expect("running sequences hold a slot"),
            pos,
            tokens: s.tokens[pos..pos + n].to_vec(),
            sample: pos + n == s.tokens.len(),
        }
    }

    fn preempt(&mut self, id: SeqId) {
        let s = self.seqs.get_mut(&id).expect("preempted ids exist");
        self.n_kv_used -= s.n_computed + s.n_planned;
        s.n_computed = 0;
        s.n_planned = 0;
        s.prompt_reported = false;
        if let Some(slot) = s.slot.take() {
            self.to_clear.push(slot);
            self.free_slots.push(slot);
        }
        self.running.retain(|&r| r != id);
        self.waiting.push_front(id);
        self.n_preemptions += 1;
    }

    /// Undoes a plan whose step had no effect (the backend found no KV room or was aborted).
    /// The newest running sequence is preempted so that the retry asks for less.
    pub fn abandon(&mut self, plan: &StepPlan) {
        self.to_clear.splice(0..0, plan.clear.iter().copied());
        for item in &plan.items {
            if let Some(s) = self.seqs.get_mut(&item.seq) {
                self.n_kv_used -= s.n_planned;
                s.n_planned = 0;
            }
        }
        if let Some(&victim) = self.running.last() {
            self.preempt(victim);
        }
    }

    /// Applies a step's results: `sampled[i]` is the token sampled for the i-th item with
    /// `sample` set. Returns what happened, in plan order.
    pub fn commit(&mut self, plan: &StepPlan, sampled: &[TokenId]) -> Vec<SeqEvent> {
        assert_eq!(
            sampled.len(),
            plan.n_samples(),
            "one token per sampled item"
        );
        let mut events = Vec::new();
        let mut samples = sampled.iter();
        for item in &plan.items {
            let s = self.seqs.get_mut(&item.seq).expect("planned ids exist");
            debug_assert_eq!(s.n_planned, item.tokens.len());
            s.n_computed += s.n_planned;
            s.n_planned = 0;
            if !s.prompt_reported && s.n_computed >= s.n_prompt {
                s.prompt_reported = true;
                events.push(SeqEvent::PromptDone {
                    seq: item.seq,
                    n_prompt: s.n_prompt,
                });
            }
            if !item.sample {
                continue;
            }
            let token = *samples.next().expect("counted above");
            let reason = if !s.ignore_eos && self.cfg.eog_tokens.contains(&token) {
                Some(FinishReason::Stop)
            } else {
                s.tokens.push(token);
                events.push(SeqEvent::Token {
                    seq: item.seq,
                    token,
                });
                let at_limit = s.max_new_tokens.is_some_and(|m| s.n_generated() >= m);
                let ctx_full = s.tokens.len() >= self.cfg.n_ctx_per_seq;
                (at_limit || ctx_full).then_some(FinishReason::Length)
            };
            if let Some(reason) = reason {
                events.push(SeqEvent::Finished {
                    seq: item.seq,
                    reason,
                });
                self.finish(item.seq);
            }
        }
        events
    }

    fn finish(&mut self, id: SeqId) {
        if let Some(seq) = self.seqs.remove(&id) {
            self.running.retain(|&s| s != id);
            if let Some(slot) = seq.slot {
                self.n_kv_used -= seq.n_computed;
                self.to_clear.push(slot);
                self.free_slots.push(slot);
            }
        }
    }

    /// Ends a sequence for a reason found outside the scheduler (a stop string). Same as
    /// `abort`, named for the call site.
    pub fn stop(&mut self, id: SeqId) -> bool {
        self.abort(id)
    }
}

#[cfg(test)]
mod tests;
