//! The engine's request and configuration vocabulary: what goes in (settings, a generation
//! request) and what comes out (events, the completion's statistics, the engine's counters).
//! Plain data; the engine loop gives it meaning.

use std::sync::Arc;
use std::time::Duration;

use hyperllama_core::constraint::ConstraintSpec;
use hyperllama_core::sampling::SamplingParams;
use hyperllama_core::sched::FinishReason;
use hyperllama_core::TokenId;

use super::MAX_SLOTS;
use crate::llama::Model;

/// Engine settings, fixed for the engine's lifetime.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Context length per sequence (Ollama's `num_ctx`).
    pub n_ctx: usize,
    /// KV cells shared by all sequences; at least `n_ctx`.
    pub n_kv_cells: usize,
    /// Most sequences computed at once.
    pub max_seqs: usize,
    /// llama.cpp sequence slots (at most 256): running sequences plus prefix-cache entries.
    pub n_slots: usize,
    /// Keep finished sequences' KV and reuse it for prompts that start the same way.
    pub prefix_cache: bool,
    /// Most KV cells the prefix cache keeps beyond those running sequences hold
    /// ([`SchedulerConfig::cache_cells`](hyperllama_core::sched::SchedulerConfig::cache_cells)); `None`: `n_ctx`, one whole conversation. Unbounded
    /// with `kv_streams`, where cached cells widen no one's attention.
    pub cache_cells: Option<usize>,
    /// Threads that sample a step's items when it has many (each thread at least 4): more
    /// than 1 only where the cores are not busy computing the step (a GPU), since llama.cpp's
    /// CPU threads spin between steps. Default 1.
    pub sample_threads: usize,
    /// One KV stream of `n_ctx` cells per slot instead of one pool of `n_kv_cells` shared by
    /// all (see [`crate::llama::LlamaStepBackend`]): each step's attention then spans each
    /// sequence's own cells only, at the price of `n_slots × n_ctx` cells of memory and of a
    /// whole-stream copy per shared prefix. `n_kv_cells` is ignored.
    pub kv_streams: bool,
    /// Most tokens per step.
    pub n_batch: usize,
    /// CPU threads llama.cpp may use.
    pub n_threads: usize,
    /// Requests that may wait beyond the `max_seqs` that run at once before `submit` and
    /// `embed` report overload.
    pub queue_capacity: usize,
    /// Speculative decoding with prompt-lookup drafts (adaptive per sequence; see the module
    /// docs). On by default.
    pub speculative: bool,
    /// A draft model for speculative decoding, replacing prompt lookup (see
    /// [`crate::drafter`]); it must have the model's vocabulary ([`Model::check_draft`],
    /// checked by [`Engine::start`](super::Engine::start)). Unused while `speculative` is off.
    pub draft_model: Option<Arc<Model>>,
    /// How an idle engine gathers a burst of arrivals into its first step (see
    /// [`GatherWindow`]); `None` (the default) starts the first step with the first request.
    pub gather: Option<GatherWindow>,
}

/// How long an idle engine waits, once a request has arrived, for the requests arriving with
/// it: until none has arrived for `quiet`, and at most `cap` after the first. Where a step has
/// a large fixed cost (a GPU: every step reads all the weights, and a new step shape builds a
/// graph), a burst of requests that reach the engine over a few milliseconds otherwise starts
/// with a step of the first prompt alone, and the burst needs a step more; a lone request
/// pays `quiet` more time to its first token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GatherWindow {
    /// The pause in arrivals that ends the wait.
    pub quiet: Duration,
    /// The longest wait after the first arrival.
    pub cap: Duration,
}

impl EngineConfig {
    /// Settings for `n_ctx` tokens per sequence and up to `max_seqs` sequences at once.
    pub fn new(n_ctx: usize, max_seqs: usize) -> Self {
        Self {
            n_ctx,
            n_kv_cells: n_ctx,
            max_seqs,
            n_slots: (max_seqs * 2).clamp(max_seqs, MAX_SLOTS),
            prefix_cache: true,
            cache_cells: None,
            kv_streams: false,
            sample_threads: 1,
            n_batch: 512,
            n_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            queue_capacity: 256,
            speculative: true,
            draft_model: None,
            gather: None,
        }
    }
}

/// One generation request, already tokenized.
#[derive(Clone, Debug)]
pub struct GenerateRequest {
    /// Prompt tokens (the chat template, if any, is already applied).
    pub prompt: Vec<TokenId>,
    /// How to sample.
    pub sampling: SamplingParams,
    /// Most new tokens; `None` means until end of generation or the context is full.
    pub num_predict: Option<usize>,
    /// Stop strings: generation ends before any of them, which is never emitted.
    pub stop: Vec<String>,
    /// Keep going past end-of-generation tokens.
    pub ignore_eos: bool,
    /// Report each token's log-probability with this many alternatives (at most
    /// [`MAX_TOP_LOGPROBS`](hyperllama_core::logprobs::MAX_TOP_LOGPROBS)); `None` reports none.
    pub logprobs: Option<usize>,
    /// What the output must match (JSON, a JSON schema, a grammar); compiled at submission,
    /// where an invalid one is refused.
    pub constraint: Option<ConstraintSpec>,
}

/// A generated token's log-probability under the model, with the likeliest alternatives.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    /// The token's log-probability.
    pub logprob: f32,
    /// The token's bytes (a piece of UTF-8 text, possibly an incomplete character).
    pub bytes: Vec<u8>,
    /// The most likely tokens at this position, most likely first.
    pub top: Vec<Alternative>,
}

/// One alternative token in a [`TokenLogprob`].
#[derive(Clone, Debug, PartialEq)]
pub struct Alternative {
    /// The token id.
    pub token: TokenId,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Its log-probability.
    pub logprob: f32,
}

/// Statistics of a finished request, as Ollama reports them.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    /// Why it ended.
    pub reason: FinishReason,
    /// Prompt tokens evaluated (computed, not taken from the prefix cache).
    pub n_prompt: usize,
    /// Prompt tokens taken from the prefix cache.
    pub n_cached: usize,
    /// Time spent on the prompt (from first scheduling to the first sampled token).
    pub prompt_eval_duration: Duration,
    /// Tokens generated.
    pub n_eval: usize,
    /// Time spent generating after the prompt.
    pub eval_duration: Duration,
    /// Time from submission to the end.
    pub total_duration: Duration,
    /// Draft tokens verified (speculative decoding).
    pub n_drafted: usize,
    /// Of those, how many were accepted (each saved a decode step).
    pub n_accepted: usize,
}

impl Completion {
    /// Accepted draft tokens per verified one; `None` when nothing was drafted.
    pub fn acceptance_rate(&self) -> Option<f64> {
        (self.n_drafted > 0).then(|| self.n_accepted as f64 / self.n_drafted as f64)
    }
}

/// What a request's stream carries.
#[derive(Clone, Debug)]
pub enum Event {
    /// A generated token and the text it completes (may be empty while a multi-byte character
    /// or a possible stop string is incomplete).
    Token {
        /// The token id.
        token: TokenId,
        /// Text released by this token.
        text: String,
        /// The token's log-probability, when the request asked for it.
        logprobs: Option<Box<TokenLogprob>>,
    },
    /// Trailing text released when the sequence ends (an incomplete character, or text held
    /// back while it could have been the start of a stop string).
    Text(String),
    /// The request finished normally; the last event.
    Done(Completion),
    /// The request failed; the last event.
    Error(String),
}

/// A snapshot of the engine's load, published after every step: it may lag the events that
/// step sent by a moment, so a caller waiting for a value polls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Sequences holding KV.
    pub n_running: usize,
    /// Sequences waiting for admission.
    pub n_waiting: usize,
    /// KV cells (in whole blocks) used by running sequences.
    pub n_kv_used: usize,
    /// KV cells (in whole blocks) held only by the prefix cache: reclaimable on demand.
    pub n_kv_cached: usize,
    /// KV cells in total.
    pub n_kv_cells: usize,
    /// Preemptions so far.
    pub n_preemptions: u64,
    /// Steps executed so far.
    pub n_steps: u64,
    /// Draft tokens verified so far (speculative decoding).
    pub n_drafted: u64,
    /// Of those, how many were accepted.
    pub n_accepted: u64,
}
