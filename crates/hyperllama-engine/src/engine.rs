//! The engine loop on its own thread, and the handle that talks to it.
//!
//! Each iteration: take new requests (blocking only when idle), drop requests whose client
//! left, then `schedule` → `execute` → sample → `commit`, and stream each sequence's new text
//! to its receiver. Sampling happens here, between the backend's forward pass and the
//! scheduler's commit, with `hyperllama-core`'s sampler (`engine::sample`); one iteration is
//! `engine::iteration`; the request and configuration types live in `engine::types`.
//!
//! # Invariants
//! - The scheduler and the backend are owned by the engine thread alone.
//! - Every accepted request ends with exactly one [`Event::Done`] or [`Event::Error`], unless
//!   its receiver was dropped first.
//! - Streamed text is valid UTF-8 and never contains a stop string.
//! - A panic inside a step fails every in-flight request with an error and stops the engine;
//!   it never takes the process down.
//! - At most `max_seqs + queue_capacity` requests (generations and embeddings) are in the
//!   engine at once, from `submit`/`embed` until their last event; beyond that, `submit` and
//!   `embed` answer [`Error::Overloaded`] at once. Each request holds a `Ticket` that
//!   counts it and is released when the request is dropped, however it ends.
//! - A step's events reach the requests' channels before the next step is computed: while
//!   the device computes it where llama.cpp returns from a decode step at its launch (every
//!   layer on a GPU), else before it starts. Per request they stay in order.
//! - Embedding decodes run on the engine thread between steps (see [`crate::embed`]).
//! - Speculative decoding (on unless [`EngineConfig::speculative`] is off): before each step,
//!   every decoding sequence whose [`DraftControl`] allows it gets a draft from the engine's
//!   [`DraftSource`] (prompt lookup, or a draft model when [`EngineConfig::draft_model`] is
//!   set; all drafting sequences at once), cut where its output constraint rejects it; the
//!   scheduler verifies the drafts inside the normal batched step, and each verified position
//!   is sampled with [`Sampler::verify`] (greedy: accepted while the argmax equals the draft;
//!   sampling: the distribution-preserving rule), under the constraint's mask. The tokens a
//!   request receives are the same tokens, in the same order, with the same events as
//!   without speculation; only how many arrive per step changes.

use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hyperllama_core::constraint::{Constraint, ConstraintCompiler, ConstraintError};
use hyperllama_core::logprobs::TokenLogprobs;
use hyperllama_core::sampling::Sampler;
use hyperllama_core::sched::{FinishReason, Pacer, Scheduler, SchedulerConfig, SeqEvent};
use hyperllama_core::spec::DraftControl;
use hyperllama_core::stop::{StopMatcher, StopOutcome};
use hyperllama_core::utf8::Utf8Stream;
use hyperllama_core::SeqId;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::backend::StepBackend;
use crate::drafter::{DraftSource, ModelDrafter};
use crate::embed::{EmbedQueue, EmbedRequest, Embeddings, Job};
use crate::llama::{ContextOptions, LlamaStepBackend, Model};
use crate::Error;

mod iteration;
mod sample;
mod timing;
mod types;

pub use types::{
    Alternative, Completion, EngineConfig, EngineStats, Event, GatherWindow, GenerateRequest,
    TokenLogprob,
};

/// llama.cpp's limit on sequence ids in one context.
pub const MAX_SLOTS: usize = 256;

/// Positions per KV block: the granularity of prefix sharing.
const BLOCK_SIZE: usize = 16;

enum Command {
    Generate {
        id: SeqId,
        req: Box<GenerateRequest>,
        constraint: Option<Box<Constraint>>,
        tx: UnboundedSender<Event>,
        submitted: Instant,
        ticket: Ticket,
    },
    Embed(Job),
    Shutdown,
}

/// A request's place in the engine: counted while it lives (see the module invariants).
pub(crate) struct Ticket(Arc<AtomicUsize>);

impl Ticket {
    /// Takes a place when fewer than `limit` are taken.
    fn take(count: &Arc<AtomicUsize>, limit: usize) -> Option<Self> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(Arc::clone(count)))
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A handle to a running engine; dropping it stops the engine thread (in-flight requests end
/// with an error event).
pub struct Engine {
    model: Arc<Model>,
    cfg: EngineConfig,
    tx: SyncSender<Command>,
    thread: Option<JoinHandle<()>>,
    next_id: std::sync::atomic::AtomicU64,
    stats: Arc<Mutex<EngineStats>>,
    /// The constraint compiler for the model's vocabulary, built on first use.
    compiler: OnceLock<Result<ConstraintCompiler, ConstraintError>>,
    in_engine: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("cfg", &self.cfg).finish()
    }
}

impl Engine {
    /// Starts the engine thread for `model` and waits until its context exists. A draft model
    /// whose vocabulary differs from `model`'s is refused ([`Error::DraftMismatch`]).
    pub fn start(model: Arc<Model>, cfg: EngineConfig) -> Result<Self, Error> {
        if cfg.n_ctx < 2
            || cfg.max_seqs == 0
            || cfg.n_batch < cfg.max_seqs
            || cfg.n_slots < cfg.max_seqs
            || cfg.n_slots > MAX_SLOTS
        {
            return Err(Error::InvalidRequest(format!(
                "invalid engine settings: n_ctx {} (at least 2), max_seqs {} (at least 1), n_batch {} (at least max_seqs), n_slots {} (max_seqs to {MAX_SLOTS})",
                cfg.n_ctx, cfg.max_seqs, cfg.n_batch, cfg.n_slots
            )));
        }
        if let Some(draft) = &cfg.draft_model {
            model.check_draft(draft)?;
        }
        let (tx, rx) = mpsc::sync_channel(cfg.queue_capacity);
        let (ready_tx, ready_rx) = mpsc::channel();
        let stats = Arc::new(Mutex::new(EngineStats::default()));
        let thread_model = Arc::clone(&model);
        let thread_cfg = cfg.clone();
        let thread_stats = Arc::clone(&stats);
        let thread = std::thread::Builder::new()
            .name("hyperllama-engine".into())
            .spawn(move || engine_thread(&thread_model, &thread_cfg, &rx, &ready_tx, &thread_stats))
            .map_err(|e| Error::InvalidRequest(format!("cannot start the engine thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(Error::Stopped);
            }
        }
        Ok(Self {
            model,
            cfg,
            tx,
            thread: Some(thread),
            next_id: std::sync::atomic::AtomicU64::new(1),
            stats,
            compiler: OnceLock::new(),
            in_engine: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The model this engine serves.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// The engine's settings.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// The engine's load after its last step.
    pub fn stats(&self) -> EngineStats {
        *self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a request and returns its event stream. Dropping the receiver cancels it.
    pub fn submit(&self, req: GenerateRequest) -> Result<UnboundedReceiver<Event>, Error> {
        if req.prompt.is_empty() {
            return Err(Error::InvalidRequest("the prompt is empty".into()));
        }
        if req.prompt.len() >= self.cfg.n_ctx {
            return Err(Error::InvalidRequest(format!(
                "the prompt has {} tokens, but the context holds {} (prompt plus at least one new token); shorten the prompt or raise num_ctx",
                req.prompt.len(),
                self.cfg.n_ctx
            )));
        }
        let constraint = match &req.constraint {
            None => None,
            Some(spec) => {
                let compiler = self
                    .compiler
                    .get_or_init(|| ConstraintCompiler::new(&self.model.vocabulary()))
                    .as_ref()
                    .map_err(|e| Error::InvalidRequest(e.to_string()))?;
                Some(Box::new(
                    compiler
                        .compile(spec)
                        .map_err(|e| Error::InvalidRequest(e.to_string()))?,
                ))
            }
        };
        let id = SeqId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let ticket = self.ticket()?;
        let (tx, rx) = unbounded_channel();
        let cmd = Command::Generate {
            id,
            req: Box::new(req),
            constraint,
            tx,
            submitted: Instant::now(),
            ticket,
        };
        self.send(cmd)?;
        Ok(rx)
    }

    /// Queues an embedding request and returns the receiver of its answer: one vector per
    /// input (see [`crate::embed`]). Dropping the receiver cancels it.
    pub fn embed(
        &self,
        req: EmbedRequest,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<Embeddings, Error>>, Error> {
        if req.inputs.is_empty() {
            return Err(Error::InvalidRequest("there is no input to embed".into()));
        }
        if let Some(bad) = req
            .inputs
            .iter()
            .find(|i| i.is_empty() || i.len() > self.cfg.n_ctx)
        {
            return Err(Error::InvalidRequest(format!(
                "an input has {} tokens; embedding inputs need 1 to {} (the context length)",
                bad.len(),
                self.cfg.n_ctx
            )));
        }
        let ticket = self.ticket()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Command::Embed(Job::new(req, tx, Instant::now(), ticket)))?;
        Ok(rx)
    }

    /// Length of the model's embedding vectors.
    pub fn embedding_length(&self) -> usize {
        self.model.n_embd()
    }

    /// Requests in the engine now (queued or running, generations and embeddings).
    pub fn n_requests(&self) -> usize {
        self.in_engine.load(Ordering::Acquire)
    }

    fn ticket(&self) -> Result<Ticket, Error> {
        let limit = self.cfg.max_seqs.saturating_add(self.cfg.queue_capacity);
        Ticket::take(&self.in_engine, limit).ok_or(Error::Overloaded {
            queued: self.cfg.queue_capacity,
        })
    }

    fn send(&self, cmd: Command) -> Result<(), Error> {
        match self.tx.try_send(cmd) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(Error::Overloaded {
                queued: self.cfg.queue_capacity,
            }),
            Err(TrySendError::Disconnected(_)) => Err(Error::Stopped),
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.tx.send(Command::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Per-request state the engine thread keeps beside the scheduler's sequence.
struct Live {
    tx: UnboundedSender<Event>,
    sampler: Sampler,
    utf8: Utf8Stream,
    stop: StopMatcher,
    submitted: Instant,
    _ticket: Ticket,
    first_scheduled: Option<Instant>,
    prompt_done: Option<Instant>,
    n_prompt: usize,
    n_cached: usize,
    n_eval: usize,
    /// Alternatives to report per token, when the request asked for log-probabilities.
    logprobs: Option<usize>,
    /// The log-probabilities of the tokens sampled this step, until their events are sent.
    pending_logprobs: VecDeque<TokenLogprobs>,
    /// The output constraint, advanced with every sampled token.
    constraint: Option<Box<Constraint>>,
    /// Logits restricted by the constraint (reused between steps).
    scratch: Vec<f32>,
    /// The adaptive draft length (speculative decoding).
    draft: DraftControl,
    n_drafted: usize,
    n_accepted: usize,
}

impl Live {
    /// Ends the request: the text held back (an incomplete character, a possible stop string)
    /// and the completion statistics go to `out`.
    fn finish(mut self, reason: FinishReason, out: &mut Outbox) {
        let tail = self.utf8.finish();
        let mut text = match self.stop.push(&tail) {
            StopOutcome::Continue(t) | StopOutcome::Stopped(t) => t,
        };
        text.push_str(&self.stop.finish());
        if !text.is_empty() {
            out.push((self.tx.clone(), Event::Text(text)));
        }
        let now = Instant::now();
        let prompt_done = self.prompt_done.unwrap_or(now);
        let completion = Completion {
            reason,
            n_prompt: self.n_prompt - self.n_cached.min(self.n_prompt),
            n_cached: self.n_cached,
            prompt_eval_duration: prompt_done
                .saturating_duration_since(self.first_scheduled.unwrap_or(prompt_done)),
            n_eval: self.n_eval,
            eval_duration: now.saturating_duration_since(prompt_done),
            total_duration: now.saturating_duration_since(self.submitted),
            n_drafted: self.n_drafted,
            n_accepted: self.n_accepted,
        };
        out.push((self.tx, Event::Done(completion)));
    }
}

fn fallback_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

fn engine_thread(
    model: &Model,
    cfg: &EngineConfig,
    rx: &Receiver<Command>,
    ready: &mpsc::Sender<Result<(), Error>>,
    stats: &Mutex<EngineStats>,
) {
    let opts = ContextOptions {
        n_kv_cells: if cfg.kv_streams {
            cfg.n_ctx.saturating_mul(cfg.n_slots)
        } else {
            cfg.n_kv_cells.max(cfg.n_ctx)
        },
        kv_streams: cfg.kv_streams,
        n_slots: cfg.n_slots,
        n_batch: cfg.n_batch,
        // With streams llama.cpp splits a step into micro-batches of equally many tokens per
        // sequence; on a GPU one micro-batch per step keeps the passes over the weights (and
        // the graphs to build) to the fewest.
        n_ubatch: if gpu_streams(cfg) {
            cfg.n_batch
        } else {
            MAX_UBATCH
        },
        n_threads: cfg.n_threads,
        // Prefix sharing copies positions between sequences: sliding-window layers must
        // keep every position for a shared prefix to be complete.
        swa_full: cfg.prefix_cache,
        // On a GPU a pass over the weights costs far more than a filler token; on a CPU
        // each token costs about its share of a step.
        fill_gaps: cfg.kv_streams && model.on_gpu(),
        // Likewise a prompt chunk's padding tokens; a step may hold 1/16 more of them.
        pad_chunks: if gpu_streams(cfg) && model.on_gpu() && crate::llama::chunk_padding_wanted() {
            cfg.n_batch / CHUNK_PAD_SHARE
        } else {
            0
        },
        // CUDA loads a kernel at its first launch: without a warm-up the first step of each
        // new size paid for it (tens of milliseconds, up to 200 for a first large prompt).
        warm_up: model.on_gpu() && crate::llama::warm_up_wanted(),
    };
    let mut backend = match LlamaStepBackend::new(model, &opts) {
        Ok(b) => b,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    // One draft-context sequence per sequence computed at once (see `crate::drafter`).
    let source = match cfg.draft_model.as_deref().filter(|_| cfg.speculative) {
        None => DraftSource::Lookup,
        Some(draft) => {
            let draft_opts = ContextOptions {
                n_slots: cfg.max_seqs,
                n_kv_cells: cfg.n_kv_cells.max(cfg.n_ctx),
                kv_streams: false,
                fill_gaps: false,
                pad_chunks: 0,
                warm_up: false,
                n_ubatch: MAX_UBATCH,
                ..opts.clone()
            };
            match ModelDrafter::new(draft, &draft_opts) {
                Ok(d) => DraftSource::Model(Box::new(d)),
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            }
        }
    };
    let caps = backend.capabilities();
    let n_kv_cells = caps.n_kv_cells - caps.n_kv_cells % BLOCK_SIZE;
    // With streams a sequence holds at most its own stream.
    let n_ctx = if cfg.kv_streams {
        cfg.n_ctx.min(caps.n_kv_cells / cfg.n_slots.max(1))
    } else {
        cfg.n_ctx
    };
    let sched = Scheduler::new(SchedulerConfig {
        max_batched_tokens: cfg.n_batch,
        max_seqs: cfg.max_seqs,
        n_slots: cfg.n_slots,
        n_kv_cells,
        block_size: BLOCK_SIZE,
        n_ctx_per_seq: n_ctx.min(n_kv_cells),
        eog_tokens: model.eog_tokens().to_vec(),
        prefix_cache: cfg.prefix_cache,
        packed_slots: cfg.kv_streams,
        whole_prompts: gpu_streams(cfg),
        min_copy_tokens: if gpu_streams(cfg) {
            MIN_STREAM_COPY_TOKENS
        } else {
            0
        },
        equal_chunk_slack: if gpu_streams(cfg) {
            EQUAL_CHUNK_SLACK
        } else {
            0
        },
        cache_cells: if cfg.kv_streams {
            usize::MAX
        } else {
            cfg.cache_cells.unwrap_or(cfg.n_ctx)
        },
    });
    let _ = ready.send(Ok(()));
    let mut state = LoopState {
        sched,
        live: HashMap::new(),
        n_steps: 0,
        pacer: Pacer::new(
            // Large steps mean a GPU (where a chunk's own micro-batch is the cost); on a CPU
            // a 256-token chunk would stall every decoder for a second.
            if gpu_streams(cfg) {
                MIN_STREAM_PREFILL_CHUNK
            } else {
                MIN_PREFILL_CHUNK
            },
            cfg.n_batch,
            PREFILL_RATIO,
        ),
        new_embeds: Vec::new(),
        speculative: cfg.speculative,
        source,
        n_drafted: 0,
        n_accepted: 0,
        sample_pool: (cfg.sample_threads > 1)
            .then(|| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(cfg.sample_threads)
                    .thread_name(|i| format!("hyperllama-sample-{i}"))
                    .build()
                    .ok()
            })
            .flatten(),
        outbox: Vec::new(),
        rows_time: Duration::ZERO,
        clock: timing::DeviceClock::default(),
        trace: None,
        epoch: Instant::now(),
        gather: cfg.gather,
        model,
        later: Vec::new(),
        early_launch: model.all_on_gpu(),
    };
    let mut embeds = EmbedQueue::new(cfg.n_ctx, cfg.n_threads);
    loop {
        let running = state.intake(rx, embeds.has_work());
        for job in state.new_embeds.drain(..) {
            embeds.push(job);
        }
        if !running {
            break;
        }
        let step = catch_unwind(AssertUnwindSafe(|| {
            embeds.step(model);
            state.step(model, &mut backend)
        }));
        *stats.lock().unwrap_or_else(PoisonError::into_inner) = state.stats();
        match step {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                state.fail_all(&format!("the engine failed: {e}"));
                break;
            }
            Err(_) => {
                state.fail_all("the engine panicked during a step; the model must be reloaded");
                break;
            }
        }
    }
    state.fail_all("the engine is shutting down");
    embeds.fail_all("the engine is shutting down");
}

/// The smallest prompt chunk beside decoding sequences (smaller ones waste the batch).
const MIN_PREFILL_CHUNK: usize = 16;
/// The same with per-slot KV streams and GPU-sized steps: llama.cpp computes a prompt chunk in
/// a micro-batch of its own beside the decode tokens, at the fixed cost of a pass over the
/// weights, so a small chunk buys little prompt for a whole extra pass.
const MIN_STREAM_PREFILL_CHUNK: usize = 256;
/// The most tokens of a llama.cpp micro-batch, except with [`gpu_streams`].
const MAX_UBATCH: usize = 512;
/// A GPU step's room for padding tokens beyond its `n_batch` (`ContextOptions::pad_chunks`):
/// `n_batch / CHUNK_PAD_SHARE`. The server counts it in the step's compute buffer.
pub const CHUNK_PAD_SHARE: usize = 16;
/// With [`gpu_streams`], a cached prefix shorter than this is computed again rather than
/// copied (`SchedulerConfig::min_copy_tokens`): a copy between streams moves the whole stream
/// (every layer's K and V) and makes llama.cpp plan its graphs again, about 3 ms on an H200,
/// what computing some 30 tokens of prompt costs there.
const MIN_STREAM_COPY_TOKENS: usize = 64;
/// With per-slot KV streams and large steps, prompt chunks of a step at most this many tokens
/// longer than a shorter one are cut to its length while more prompts follow, and their tails
/// go one token per step beside the decode tokens (`SchedulerConfig::equal_chunk_slack`).
/// Measured on an H100 with 64 prompts of 256 to 260 tokens arriving at once: each extra
/// length cost a pass over the weights of a few tokens, 30 to 50 ms on every 400 ms step of
/// 15 prompts.
const EQUAL_CHUNK_SLACK: usize = 8;

/// Per-slot KV streams with GPU-sized steps: the layout where llama.cpp's micro-batch split
/// (equal tokens per sequence) and its whole-stream copies shape the schedule.
fn gpu_streams(cfg: &EngineConfig) -> bool {
    cfg.kv_streams && cfg.n_batch >= 4 * MIN_STREAM_PREFILL_CHUNK
}

/// From this draft-cost ratio on ([`Pacer::draft_cost_ratio`]), a sequence decoding in a batch
/// of at least [`PROVEN_ONLY_BATCH`] drafts only once its drafts have proved themselves
/// ([`DraftControl::is_proven`]).
const PROVEN_ONLY_RATIO: f64 = 0.6;
/// See [`PROVEN_ONLY_RATIO`]. Up to 4 sequences on a CPU, fresh sequences drafting together
/// paid (sweep at 4 users: 1.10x SmolLM2's and 1.13x Gemma 3's output without speculation).
const PROVEN_ONLY_BATCH: usize = 5;

/// A step's prompt tokens may cost about this many decode steps (see [`Pacer`]): a step with a
/// chunk then takes about twice a plain decode step.
const PREFILL_RATIO: f64 = 1.0;

struct LoopState<'m> {
    sched: Scheduler,
    live: HashMap<SeqId, Live>,
    n_steps: u64,
    /// Learns step costs; sets the scheduler's prefill cap after every step.
    pacer: Pacer,
    /// Embedding requests taken by the last intake, for the embedding queue.
    new_embeds: Vec<Job>,
    /// Draft (speculative decoding).
    speculative: bool,
    /// Where drafts come from: prompt lookup or a draft model.
    source: DraftSource<'m>,
    n_drafted: u64,
    n_accepted: u64,
    /// The threads that sample a large batch ([`EngineConfig::sample_threads`], started once:
    /// a thread started per step costs more than the sampling it does), none for one.
    sample_pool: Option<rayon::ThreadPool>,
    /// Events for the requests' channels, sent while the device computes the next step (a
    /// wake-up per request is otherwise on every step's critical path) where its launch
    /// returns early, else before it starts, or before the loop waits for work; in order per
    /// request.
    outbox: Outbox,
    /// How long the last step's sampling took to fetch its logits rows (step trace).
    rows_time: Duration,
    /// When decode steps' logits reach the host (to wake the sampling threads in time).
    clock: timing::DeviceClock,
    /// The last step's trace, written while the device computes the next one.
    trace: Option<timing::StepTrace>,
    /// When the loop began (the step trace's time origin).
    epoch: Instant,
    /// How an idle loop gathers arriving requests into its first step.
    gather: Option<GatherWindow>,
    /// The model (token texts for the events).
    model: &'m Model,
    /// The last step's events that wait until the next step is launched (see
    /// `LoopState::defers`).
    later: Vec<SeqEvent>,
    /// Whether llama.cpp returns from a decode step before it is computed (every layer on a
    /// GPU): only then do the last step's events wait until the step is launched.
    early_launch: bool,
}

/// Events waiting to be sent, with the channel each goes to.
type Outbox = Vec<(UnboundedSender<Event>, Event)>;
