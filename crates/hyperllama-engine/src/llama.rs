//! llama.cpp, in-process: model loading, tokenization, and the step backend.
//!
//! Every call into llama.cpp (through the `llama-cpp-2` crate) lives in this module; the rest
//! of HyperLlama sees [`Model`] and [`LlamaStepBackend`] only. The `llama-cpp-2` crate holds
//! the `unsafe` FFI itself, so this module needs none of its own.
//!
//! One context per loaded model, sequence ids being the scheduler's slots, with either a
//! *unified* KV cache (all sequences share one pool of cells) or one KV stream per slot
//! (`ContextOptions::kv_streams`; see ARCHITECTURE.md for when each is used).
//!
//! Embeddings use a second context of the same model ([`EmbedContext`]) with embeddings on
//! and a pooling type; see `crate::embed` for who owns it and when it runs. A draft model for
//! speculative decoding gets its own context ([`DraftContext`]), owned by `crate::drafter`,
//! after [`Model::check_draft`] found its vocabulary identical to the target's.
//!
//! # Invariants
//! - llama.cpp's global backend is initialised exactly once per process ([`llama_backend`]).
//! - A file reaches llama.cpp only after our own GGUF reader accepted its header, so a file
//!   that is missing, not GGUF or truncated gets our clear error, never a crash in C++.
//! - `llama_decode` return codes never leave this module as integers: they become
//!   [`BackendError`].
//! - A filler token (`ContextOptions::fill_gaps`) lives for one step only: it is removed at
//!   the start of the next `execute`, before the plan's trims, clears and copies, so a slot's
//!   KV outside a step holds exactly what the scheduler planned.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hyperllama_core::constraint::{Vocabulary, SPECIAL_TOKEN_MARKER};
use hyperllama_core::sched::StepPlan;
use hyperllama_core::{SlotId, TokenId};
use hyperllama_models::gguf;
use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::context::session::LlamaStateSeqFlags;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::DecodeError;

use crate::backend::{BackendError, Capabilities, StepBackend};
use crate::Error;

/// The process-wide llama.cpp backend, initialised on first use. llama.cpp's own log lines go
/// to `tracing` (target `llama-cpp-2`), where the subscriber's filter decides what is shown.
fn llama_backend() -> &'static LlamaBackend {
    static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();
    BACKEND.get_or_init(|| {
        llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
        // `init` fails only when called twice, which the OnceLock rules out.
        LlamaBackend::init().expect("llama.cpp backend initialised once")
    })
}

/// How to load a model.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Layers to offload to a GPU; more than the model has means all of them. Ignored when
    /// llama.cpp has no GPU backend (a CPU build, or no device found).
    pub n_gpu_layers: u32,
}

impl Default for LoadOptions {
    /// Every layer on the GPU; see [`LoadOptions::auto`] to fit them into free memory.
    fn default() -> Self {
        Self {
            n_gpu_layers: u32::MAX,
        }
    }
}

/// Bytes of GPU memory left free for llama.cpp's compute buffers and the KV cache when layers
/// are placed automatically.
const GPU_RESERVE_BYTES: u64 = 2 << 30;

impl LoadOptions {
    /// Options for the GGUF at `path`: `num_gpu` layers when given (Ollama's option), else all
    /// layers when the file fits into free GPU memory with [`GPU_RESERVE_BYTES`] to spare, else
    /// the share of layers that fits (none without a GPU).
    pub fn auto(path: &Path, num_gpu: Option<u32>) -> Self {
        if let Some(n) = num_gpu {
            return Self { n_gpu_layers: n };
        }
        let Some(gpu) = gpu_memory() else {
            return Self::default();
        };
        let file = std::fs::metadata(path).map_or(0, |m| m.len());
        let room = gpu.free.saturating_sub(GPU_RESERVE_BYTES);
        if file <= room {
            return Self::default();
        }
        let layers = gguf::read_file(path)
            .ok()
            .and_then(|m| m.block_count())
            .unwrap_or(0);
        // The output layer and embeddings count as one more layer's worth.
        let per_layer = file / (layers + 1).max(1);
        let n = (room / per_layer.max(1)).min(layers);
        Self {
            n_gpu_layers: u32::try_from(n).unwrap_or(u32::MAX),
        }
    }
}

/// Memory of the GPUs llama.cpp sees, summed over devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpuMemory {
    /// Total bytes.
    pub total: u64,
    /// Free bytes now.
    pub free: u64,
}

/// The GPU memory llama.cpp's backends report, or `None` when there is no GPU device (a CPU
/// build, or no card).
pub fn gpu_memory() -> Option<GpuMemory> {
    llama_backend();
    let mut sum: Option<GpuMemory> = None;
    for d in llama_cpp_2::list_llama_ggml_backend_devices() {
        if matches!(d.device_type, llama_cpp_2::LlamaBackendDeviceType::Gpu) {
            let m = sum.get_or_insert(GpuMemory { total: 0, free: 0 });
            m.total += d.memory_total as u64;
            m.free += d.memory_free as u64;
        }
    }
    sum
}

/// What HyperLlama knows about a loaded model.
#[derive(Clone, Debug)]
pub struct ModelInfo {
    /// The file it was loaded from.
    pub path: PathBuf,
    /// `general.architecture`.
    pub architecture: String,
    /// The context length the model was trained with.
    pub n_ctx_train: usize,
    /// Vocabulary size.
    pub n_vocab: usize,
    /// Parameter count.
    pub n_params: u64,
    /// Size of the weights in bytes.
    pub size_bytes: u64,
    /// The GGUF's `tokenizer.chat_template`, if any.
    pub chat_template: Option<String>,
    /// Text of the beginning-of-sequence token (for chat templates).
    pub bos_text: String,
    /// Text of the end-of-sequence token (for chat templates).
    pub eos_text: String,
    /// How long loading took.
    pub load_duration: Duration,
}

/// A loaded model: weights and vocabulary. Shared read-only between the engine thread and
/// request handlers (llama.cpp's model is immutable after loading).
pub struct Model {
    inner: LlamaModel,
    info: ModelInfo,
    eog_tokens: Vec<TokenId>,
    /// Whether layers (and with them the KV cache) were offloaded to a GPU.
    on_gpu: bool,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("info", &self.info).finish()
    }
}

impl Model {
    /// Bytes one KV cell takes (f16 keys and values over all layers): what one token of
    /// context costs in the KV cache.
    pub fn kv_bytes_per_cell(&self) -> u64 {
        let n_head = u64::from(self.inner.n_head().max(1));
        let head_dim = u64::try_from(self.inner.n_embd()).unwrap_or(0) / n_head;
        2 * 2 * u64::from(self.inner.n_layer()) * u64::from(self.inner.n_head_kv()) * head_dim
    }

    /// Loads a GGUF file. The header is checked by our own reader first.
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Arc<Self>, Error> {
        let start = Instant::now();
        std::fs::File::open(path).map_err(|source| Error::ModelFile {
            path: path.to_owned(),
            source,
        })?;
        let meta = gguf::read_file(path).map_err(|source| Error::InvalidGguf {
            path: path.to_owned(),
            source,
        })?;
        let architecture = meta.architecture().unwrap_or("unknown").to_owned();
        let chat_template = meta.chat_template().map(str::to_owned);
        drop(meta);

        let params = LlamaModelParams::default().with_n_gpu_layers(opts.n_gpu_layers);
        let on_gpu = opts.n_gpu_layers > 0 && gpu_memory().is_some();
        let inner = LlamaModel::load_from_file(llama_backend(), path, &params).map_err(|e| {
            tracing::debug!(error = %e, "llama.cpp refused the model");
            Error::ModelLoad {
                path: path.to_owned(),
                architecture: architecture.clone(),
                reason: "the architecture is not supported by this build of llama.cpp, or the file is damaged".into(),
            }
        })?;
        let vocab = inner.vocab();
        let n_vocab = usize::try_from(vocab.n_tokens()).unwrap_or(0);
        let eog_tokens = (0..vocab.n_tokens())
            .filter(|&t| vocab.is_eog(LlamaToken(t)))
            .map(|t| t as TokenId)
            .collect();
        let piece = |t: LlamaToken| {
            String::from_utf8_lossy(&vocab.token_to_piece(t, true, None)).into_owned()
        };
        let bos_text = piece(vocab.bos());
        let eos_text = piece(vocab.eos());
        let info = ModelInfo {
            path: path.to_owned(),
            architecture,
            n_ctx_train: inner.n_ctx_train() as usize,
            n_vocab,
            n_params: inner.n_params(),
            size_bytes: inner.size(),
            chat_template,
            bos_text,
            eos_text,
            load_duration: start.elapsed(),
        };
        Ok(Arc::new(Self {
            inner,
            info,
            eog_tokens,
            on_gpu,
        }))
    }

    /// What is known about the model.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Whether its layers were offloaded to a GPU (`n_gpu_layers > 0` and a GPU present):
    /// contexts of it then keep their KV cache there, else in host memory.
    pub fn on_gpu(&self) -> bool {
        self.on_gpu
    }

    /// Tokens that end generation (end of sequence, end of turn).
    pub fn eog_tokens(&self) -> &[TokenId] {
        &self.eog_tokens
    }

    /// Tokenizes text with the model's vocabulary. `add_special` adds BOS/EOS where the model
    /// asks for them; `parse_special` turns special-token text (`<|im_start|>`) into tokens.
    pub fn tokenize(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<TokenId> {
        self.inner
            .vocab()
            .tokenize(text.as_bytes(), add_special, parse_special)
            .into_iter()
            .map(|t| t.0 as TokenId)
            .collect()
    }

    /// The bytes of one token as text output shows them (control tokens render as nothing).
    pub fn token_bytes(&self, token: TokenId) -> Vec<u8> {
        self.inner
            .vocab()
            .token_to_piece(LlamaToken(token as i32), false, None)
    }

    /// The vocabulary for constrained decoding: each token's bytes, control tokens as
    /// [`SPECIAL_TOKEN_MARKER`] and their text, and the end-of-generation tokens (the end of
    /// turn first, where the model has one).
    pub fn vocabulary(&self) -> Vocabulary {
        let vocab = self.inner.vocab();
        let tokens = (0..vocab.n_tokens())
            .map(|t| {
                let token = LlamaToken(t);
                let text = vocab.token_to_piece(token, false, None);
                if !text.is_empty() {
                    return text;
                }
                let special = vocab.token_to_piece(token, true, None);
                if special.is_empty() {
                    return special;
                }
                let mut marked = Vec::with_capacity(special.len() + 1);
                marked.push(SPECIAL_TOKEN_MARKER);
                marked.extend_from_slice(&special);
                marked
            })
            .collect();
        let eot = vocab.eot().0;
        let eos = if eot >= 0 { eot } else { vocab.eos().0 };
        Vocabulary {
            tokens,
            eos: TokenId::try_from(eos).unwrap_or(0),
            eog: self.eog_tokens.clone(),
        }
    }

    /// Length of the embedding vectors the model produces (`n_embd_out`).
    pub fn n_embd(&self) -> usize {
        usize::try_from(self.inner.n_embd_out()).unwrap_or(0)
    }

    /// The pooling the GGUF asks for (`{arch}.pooling_type`), when it names one that yields
    /// one vector per sequence (mean, CLS or last token).
    pub fn pooling(&self) -> Option<Pooling> {
        let key = format!("{}.pooling_type", self.info.architecture);
        let value = self.inner.meta_val_str(&key).ok()?;
        match value.trim().parse::<i32>().ok()? {
            1 => Some(Pooling::Mean),
            2 => Some(Pooling::Cls),
            3 => Some(Pooling::Last),
            _ => None,
        }
    }

    /// Checks that `draft` can propose tokens for this model (speculative decoding with a
    /// draft model): the same number of tokens, the same bytes for every token id (special
    /// tokens included), and the same BOS and EOS tokens. Otherwise
    /// [`Error::DraftMismatch`], naming both files and the first difference.
    pub fn check_draft(&self, draft: &Model) -> Result<(), Error> {
        let mismatch = |reason: String| {
            Err(Error::DraftMismatch {
                target: self.info.path.clone(),
                draft: draft.info.path.clone(),
                reason,
            })
        };
        let (ours, theirs) = (self.inner.vocab(), draft.inner.vocab());
        if ours.n_tokens() != theirs.n_tokens() {
            return mismatch(format!(
                "its vocabulary has {} tokens, the model's {}",
                theirs.n_tokens(),
                ours.n_tokens()
            ));
        }
        if ours.bos() != theirs.bos() || ours.eos() != theirs.eos() {
            return mismatch(format!(
                "its BOS/EOS tokens are {}/{}, the model's {}/{}",
                theirs.bos().0,
                theirs.eos().0,
                ours.bos().0,
                ours.eos().0
            ));
        }
        for t in 0..ours.n_tokens() {
            let token = LlamaToken(t);
            let (a, b) = (
                ours.token_to_piece(token, true, None),
                theirs.token_to_piece(token, true, None),
            );
            if a != b {
                return mismatch(format!(
                    "token {t} is {:?} in the draft model but {:?} in the model",
                    String::from_utf8_lossy(&b),
                    String::from_utf8_lossy(&a)
                ));
            }
        }
        Ok(())
    }

    /// Detokenizes a whole sequence (lossy on invalid UTF-8).
    pub fn detokenize(&self, tokens: &[TokenId]) -> String {
        let mut bytes = Vec::new();
        for &t in tokens {
            bytes.extend_from_slice(&self.token_bytes(t));
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Context settings for a [`LlamaStepBackend`]. Flash attention is llama.cpp's default,
/// `auto`: on wherever the device supports it.
#[derive(Clone, Debug)]
pub struct ContextOptions {
    /// KV cells shared by all sequences.
    pub n_kv_cells: usize,
    /// Number of sequence slots.
    pub n_slots: usize,
    /// Most tokens in one step.
    pub n_batch: usize,
    /// Most tokens in one of llama.cpp's micro-batches (a pass over the weights each); at
    /// most `n_batch`.
    pub n_ubatch: usize,
    /// CPU threads for computation.
    pub n_threads: usize,
    /// Keep every position in sliding-window layers (needed to share prefixes).
    pub swa_full: bool,
    /// One KV stream per slot (llama.cpp's non-unified cache), `n_kv_cells / n_slots` cells
    /// each, instead of one pool shared by all: see [`LlamaStepBackend`].
    pub kv_streams: bool,
    /// With `kv_streams`: fill short gaps between a step's slots with filler tokens, so that
    /// llama.cpp computes them in one micro-batch (see [`LlamaStepBackend`]). Worth it where
    /// a pass over the weights costs far more than a token (a GPU).
    pub fill_gaps: bool,
}

/// Environment variable with which ggml's CUDA backend runs every graph without CUDA graphs.
const CUDA_GRAPHS_OFF: &str = "GGML_CUDA_DISABLE_GRAPHS";

/// Turns CUDA graphs off for this process when `path` holds unquantized (16- or 32-bit)
/// weights and the user has not decided, for a context with one unified KV cache on a GPU:
/// llama.cpp's CUDA backend (the vendored version) fails with "an illegal instruction"
/// inside a replayed CUDA graph once 32 or more sequences decode an F16 model together in one
/// unified cache (measured on H100/H200; quantized models are unaffected, and without CUDA
/// graphs F16 runs every concurrency). With one KV stream per sequence (the default on a GPU
/// where the cells fit) the same workloads ran with CUDA graphs on an H200 and an H100, and
/// graphs make each F16 decode step of 64 sequences about 2 ms shorter (the kernels are
/// launched from one graph instead of one by one). ggml reads the variable once, at its first
/// graph on a GPU, so this must happen before the first step; whatever ran first decides for
/// the whole process. `HYPERLLAMA_CUDA_GRAPHS=on` keeps them in any case (to re-check the
/// fault), `=off` turns them off for every model.
fn avoid_cuda_graphs_for_unquantized(path: &Path, unified: bool) {
    if std::env::var_os(CUDA_GRAPHS_OFF).is_some()
        || std::env::var("HYPERLLAMA_CUDA_GRAPHS").is_ok_and(|v| v == "on")
    {
        return;
    }
    if std::env::var("HYPERLLAMA_CUDA_GRAPHS").is_ok_and(|v| v == "off") {
        // Rust 2021's `set_var`: see below.
        std::env::set_var(CUDA_GRAPHS_OFF, "1");
        return;
    }
    if !unified {
        return;
    }
    let Ok(meta) = gguf::read_file(path) else {
        return;
    };
    // general.file_type: 0 all F32, 1 mostly F16, 32 mostly BF16 (llama.cpp's LLAMA_FTYPE_*).
    let unquantized = matches!(meta.get_u64("general.file_type"), Some(0 | 1 | 32));
    if unquantized {
        tracing::warn!(
            "unquantized weights on a GPU with one unified KV cache: CUDA graphs off ({CUDA_GRAPHS_OFF}=1), which llama.cpp needs to decode many sequences of such a model there"
        );
        // Rust 2021's `set_var`: it runs on the loading thread before llama.cpp reads the
        // variable, and no other code of ours reads it.
        std::env::set_var(CUDA_GRAPHS_OFF, "1");
    }
}

/// A context of `model` with a KV cache of `opts.n_kv_cells` cells for `n_seq_max` sequences
/// (one unified pool, or with `opts.kv_streams` one stream per sequence), at most
/// `opts.n_batch` tokens per decode in micro-batches of at most `opts.n_ubatch`: the step
/// backend's and a draft model's.
fn unified_context<'m>(
    model: &'m Model,
    opts: &ContextOptions,
    n_seq_max: usize,
    swa_full: bool,
) -> Result<LlamaContext<'m>, Error> {
    let n_ctx = u32::try_from(opts.n_kv_cells).unwrap_or(u32::MAX);
    let threads = i32::try_from(opts.n_threads.max(1)).unwrap_or(1);
    if model.on_gpu {
        avoid_cuda_graphs_for_unquantized(&model.info.path, !opts.kv_streams);
    }
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(opts.n_batch as u32)
        .with_n_ubatch(opts.n_ubatch.clamp(1, opts.n_batch) as u32)
        .with_n_seq_max(n_seq_max as u32)
        .with_kv_unified(!opts.kv_streams)
        .with_swa_full(swa_full)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    model
        .inner
        .new_context(llama_backend(), params)
        .map_err(|e| Error::ContextCreate {
            n_ctx,
            reason: e.to_string(),
        })
}

/// What a failed `llama_decode` means for the engine.
fn backend_error(e: DecodeError) -> BackendError {
    match e {
        DecodeError::NoKvCacheSlot => BackendError::NoKvSlot,
        DecodeError::NTokensZero => BackendError::InvalidBatch,
        DecodeError::Unknown(code) => BackendError::from_decode_code(code),
    }
}

/// The llama.cpp step backend: one context, one batch per step.
///
/// Its KV cache is either one unified pool (`seq_cp` of a prefix only tags the same cells with
/// another sequence id, but every step's attention and mask span every cell in use), or, with
/// [`ContextOptions::kv_streams`], one stream per slot: a sequence's attention spans its own
/// cells only (what llama-server and llama-batched-bench run), a prefix copy is a copy of the
/// source's whole stream (applied by llama.cpp before the next decode) with the positions past
/// the prefix then removed, and the batch lists its items by ascending slot, since llama.cpp
/// computes consecutive slots with equally many tokens in one micro-batch.
pub struct LlamaStepBackend<'m> {
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    rows: Vec<i32>,
    /// Per plan item: its first logits row in the batch and how many.
    item_rows: Vec<(i32, usize)>,
    order: Vec<usize>,
    streams: bool,
    /// The KV cache is in host memory: a prefix crosses streams by serializing the source
    /// sequence's cells (see `copy_slot`).
    host_kv: bool,
    /// `ContextOptions::fill_gaps` (with streams).
    fill_gaps: bool,
    /// Filler tokens of the last step, removed before the next one (see `gap_fills`).
    fillers: Vec<(i32, u32)>,
    n_fillers: u64,
    caps: Capabilities,
}

impl<'m> LlamaStepBackend<'m> {
    /// Creates the context for `model`.
    pub fn new(model: &'m Model, opts: &ContextOptions) -> Result<Self, Error> {
        let ctx = unified_context(model, opts, opts.n_slots, opts.swa_full)?;
        let caps = Capabilities {
            n_vocab: model.info.n_vocab,
            n_kv_cells: ctx.n_ctx() as usize,
            n_slots: opts.n_slots,
            max_batch_tokens: opts.n_batch,
        };
        Ok(Self {
            ctx,
            batch: LlamaBatch::new(opts.n_batch, 1),
            rows: Vec::new(),
            item_rows: Vec::new(),
            order: Vec::new(),
            streams: opts.kv_streams,
            host_kv: !model.on_gpu,
            fill_gaps: opts.kv_streams && opts.fill_gaps,
            fillers: Vec::new(),
            n_fillers: 0,
            caps,
        })
    }

    /// Filler tokens computed so far (see `ContextOptions::fill_gaps`).
    pub fn n_fillers(&self) -> u64 {
        self.n_fillers
    }

    /// With `fill_gaps`: a filler token for each slot that no item of the step holds below
    /// the step's highest slot, rounded up to a bucket ([`SPAN_BUCKETS`]). llama.cpp computes
    /// a micro-batch over a run of consecutive streams only, so a gap left by a finished
    /// sequence costs another pass over the weights (a few milliseconds each; 64 decoding
    /// sequences with a dozen gaps took three times a step); and a step whose set of slots
    /// changes gets a new graph, which llama.cpp builds and the GPU runs kernel by kernel
    /// until the shape repeats (the steps where a burst's sequences finish one group after
    /// another took 17-35 ms instead of 14.5). With the span rounded up, a decode step keeps
    /// its shape while sequences finish, and its graph is replayed.
    /// A filler is one token at the slot's next position (with logits nobody reads, so that a
    /// decode step's graph keeps its shape), removed before the next step; it is not placed
    /// where its position would widen the step's attention (llama.cpp attends over the cells
    /// of the fullest stream, rounded up to [`KV_PAD`]: a filler must not round past the
    /// furthest position the step computes), and the step's size stays within `n_batch`.
    /// Returns (slot, position) pairs in slot order.
    fn gap_fills(&self, plan: &StepPlan) -> Vec<(i32, u32)> {
        let mut fills = Vec::new();
        let Some(&last) = self.order.last() else {
            return fills;
        };
        if !self.fill_gaps {
            return fills;
        }
        let furthest = plan
            .items
            .iter()
            .map(|i| i.pos + i.tokens.len())
            .max()
            .unwrap_or(0);
        let mut room = self.caps.max_batch_tokens.saturating_sub(plan.n_tokens());
        let span = plan.items[last].slot.0 as usize + 1;
        let end = SPAN_BUCKETS
            .iter()
            .copied()
            .find(|&b| b >= span)
            .unwrap_or(span)
            .min(self.caps.n_slots);
        // `order` lists the items by ascending slot.
        let mut held = self
            .order
            .iter()
            .map(|&i| plan.items[i].slot.0 as usize)
            .peekable();
        for slot in 0..end {
            if held.peek() == Some(&slot) {
                held.next();
                continue;
            }
            if room == 0 {
                break;
            }
            let pos = (self.ctx.kv_cache_seq_pos_max(slot as i32) + 1).max(0) as usize;
            if (pos + 1).next_multiple_of(KV_PAD) <= furthest.next_multiple_of(KV_PAD) {
                fills.push((slot as i32, pos as u32));
                room -= 1;
            }
        }
        fills
    }
}

/// What llama.cpp rounds the cells a step attends over up to (at least; `get_n_kv`).
const KV_PAD: usize = 256;

/// The slot spans a step is padded to with fillers ([`LlamaStepBackend::gap_fills`]): a
/// filler costs about what one more decoding sequence does, a pass or a graph more far more.
const SPAN_BUCKETS: [usize; 13] = [1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256];

impl StepBackend for LlamaStepBackend<'_> {
    fn execute(&mut self, plan: &StepPlan) -> Result<(), BackendError> {
        for (slot, pos) in self.fillers.drain(..) {
            let _ = self
                .ctx
                .clear_kv_cache_seq(Some(slot as u32), Some(pos), None);
        }
        for trim in &plan.trim {
            // Rejected draft positions: the tail of the sequence, always removable.
            let _ = self
                .ctx
                .clear_kv_cache_seq(Some(trim.slot.0), Some(trim.from as u32), None);
        }
        for slot in &plan.clear {
            // Removing a whole sequence always succeeds.
            let _ = self.ctx.clear_kv_cache_seq(Some(slot.0), None, None);
        }
        for copy in &plan.copy {
            self.copy_slot(copy.src, copy.dst, copy.n_tokens);
        }
        self.rows.clear();
        if plan.items.is_empty() {
            return Ok(());
        }
        self.batch.clear();
        self.order.clear();
        self.order.extend(0..plan.items.len());
        if self.streams {
            self.order.sort_by_key(|&i| plan.items[i].slot.0);
        }
        self.item_rows.clear();
        self.item_rows.resize(plan.items.len(), (0, 0));
        // llama.cpp takes a micro-batch's sequences in batch order and consecutive slots
        // only: fillers go between the items they join.
        let fills = self.gap_fills(plan);
        let mut next_fill = fills.iter().peekable();
        for &i in &self.order {
            let item = &plan.items[i];
            while let Some(&&(slot, pos)) = next_fill.peek() {
                if slot >= item.slot.0 as i32 {
                    break;
                }
                // Logits nobody reads, as for a lone unsampled token below.
                self.batch
                    .add(LlamaToken(0), pos as i32, &[slot], true)
                    .map_err(|_| BackendError::InvalidBatch)?;
                next_fill.next();
            }
            let seq = [item.slot.0 as i32];
            let last = item.tokens.len().saturating_sub(1);
            for (j, &token) in item.tokens.iter().enumerate() {
                // A speculating item needs logits after its last token and every draft.
                let want_logits = item.sample && j + item.n_draft >= last;
                // A lone token that is not sampled (a prompt's tail going one token per step)
                // still asks for logits, which nobody reads, where fillers are used: a decode
                // step's graph then keeps its shape (every token an output) and llama.cpp
                // replays it instead of building and capturing another.
                let steady = self.fill_gaps && item.tokens.len() == 1;
                self.batch
                    .add(
                        LlamaToken(token as i32),
                        (item.pos + j) as i32,
                        &seq,
                        want_logits || steady,
                    )
                    .map_err(|_| BackendError::InvalidBatch)?;
                if want_logits {
                    let rows = &mut self.item_rows[i];
                    if rows.1 == 0 {
                        rows.0 = self.batch.n_tokens() - 1;
                    }
                    rows.1 += 1;
                }
            }
        }
        // Fillers past the last item's slot.
        for &(slot, pos) in next_fill {
            self.batch
                .add(LlamaToken(0), pos as i32, &[slot], true)
                .map_err(|_| BackendError::InvalidBatch)?;
        }
        self.n_fillers += fills.len() as u64;
        self.fillers = fills;
        // Logits rows in plan order: an item's rows are consecutive in the batch.
        for &(first, n) in &self.item_rows {
            self.rows.extend((0..n as i32).map(|k| first + k));
        }
        self.ctx.decode(&mut self.batch).map_err(backend_error)
    }

    fn logits(&self, row: usize) -> &[f32] {
        self.ctx.get_logits_ith(self.rows[row])
    }

    fn copy_slot(&mut self, src: SlotId, dst: SlotId, n_tokens: usize) {
        if self.streams {
            // Across streams llama.cpp copies whole streams only (the destination is empty:
            // a new sequence's slot); the positions past the prefix are then dropped. In host
            // memory, serializing the source's cells and reading them into the destination
            // moves only the cells in use (a 500-token prefix of a 135M model: 12 MB instead
            // of a 94 MB stream, single-threaded memcpy); on a GPU the whole-stream copy stays
            // on the device.
            let copied = self.host_kv
                && self
                    .ctx
                    .state_seq_get(src.0 as i32, LlamaStateSeqFlags::empty())
                    .and_then(|state| self.ctx.state_seq_set(&state, dst.0 as i32))
                    .is_ok();
            if !copied {
                let _ = self
                    .ctx
                    .copy_kv_cache_seq(src.0 as i32, dst.0 as i32, None, None);
            }
            let _ = self
                .ctx
                .clear_kv_cache_seq(Some(dst.0), Some(n_tokens as u32), None);
        } else {
            let _ = self.ctx.copy_kv_cache_seq(
                src.0 as i32,
                dst.0 as i32,
                Some(0),
                Some(n_tokens as u32),
            );
        }
    }

    fn trim_slot(&mut self, slot: SlotId, from_pos: usize) {
        let _ = self
            .ctx
            .clear_kv_cache_seq(Some(slot.0), Some(from_pos as u32), None);
    }

    fn capabilities(&self) -> Capabilities {
        self.caps.clone()
    }
}

/// One token of a [`DraftContext::decode`] batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DraftToken {
    /// The draft context's sequence id.
    pub seq: usize,
    /// Its position in that sequence.
    pub pos: usize,
    /// The token.
    pub token: TokenId,
    /// Whether its logits are needed.
    pub logits: bool,
}

/// A draft model's context (speculative decoding; see `crate::drafter`): a unified KV cache
/// whose sequence ids are the drafter's slots, with every position kept in sliding-window
/// layers (`swa_full`) so that trimming a sequence's tail leaves a complete prefix.
pub struct DraftContext<'m> {
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    rows: Vec<i32>,
    n_batch: usize,
    n_seqs: usize,
}

impl<'m> DraftContext<'m> {
    /// Creates the context for the draft `model`: `opts.n_slots` sequences sharing
    /// `opts.n_kv_cells` cells, at most `opts.n_batch` tokens per decode.
    pub fn new(model: &'m Model, opts: &ContextOptions) -> Result<Self, Error> {
        let n_seqs = opts.n_slots.clamp(1, crate::engine::MAX_SLOTS);
        let ctx = unified_context(model, opts, n_seqs, true)?;
        Ok(Self {
            ctx,
            batch: LlamaBatch::new(opts.n_batch.max(1), 1),
            rows: Vec::new(),
            n_batch: opts.n_batch.max(1),
            n_seqs,
        })
    }

    /// Most tokens in one [`DraftContext::decode`].
    pub fn n_batch(&self) -> usize {
        self.n_batch
    }

    /// Number of sequence ids (`0..n_seqs`).
    pub fn n_seqs(&self) -> usize {
        self.n_seqs
    }

    /// KV cells, shared by all sequences.
    pub fn n_cells(&self) -> usize {
        self.ctx.n_ctx() as usize
    }

    /// Removes sequence `seq`'s positions from `from` on (all of them with 0).
    pub fn trim(&mut self, seq: usize, from: usize) {
        // Removing a sequence's tail always succeeds.
        let _ = self
            .ctx
            .clear_kv_cache_seq(Some(seq as u32), Some(from as u32), None);
    }

    /// Empties the whole KV cache.
    pub fn clear(&mut self) {
        self.ctx.clear_kv_cache();
    }

    /// Computes `tokens` (at most [`DraftContext::n_batch`]) in one decode; the logits of
    /// those with `logits` set are then [`DraftContext::logits`] `0, 1, ...` in order.
    pub fn decode(&mut self, tokens: &[DraftToken]) -> Result<(), BackendError> {
        self.rows.clear();
        if tokens.is_empty() || tokens.len() > self.n_batch {
            return Err(BackendError::InvalidBatch);
        }
        self.batch.clear();
        for t in tokens {
            if t.seq >= self.n_seqs {
                return Err(BackendError::InvalidBatch);
            }
            self.batch
                .add(
                    LlamaToken(t.token as i32),
                    t.pos as i32,
                    &[t.seq as i32],
                    t.logits,
                )
                .map_err(|_| BackendError::InvalidBatch)?;
            if t.logits {
                self.rows.push(self.batch.n_tokens() - 1);
            }
        }
        self.ctx.decode(&mut self.batch).map_err(|e| {
            self.rows.clear();
            backend_error(e)
        })
    }

    /// The logits of the `row`-th token that asked for them in the last decode.
    pub fn logits(&self, row: usize) -> &[f32] {
        self.ctx.get_logits_ith(self.rows[row])
    }
}

/// How the token vectors of one sequence become its embedding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// The mean of all token vectors.
    Mean,
    /// The first token's vector.
    Cls,
    /// The last token's vector.
    Last,
}

/// Settings of an [`EmbedContext`].
#[derive(Clone, Debug)]
pub struct EmbedOptions {
    /// Most tokens of one input, and most tokens of one decode (all inputs together).
    pub n_ctx: usize,
    /// Most inputs in one decode (sequence ids).
    pub n_seq_max: usize,
    /// CPU threads for computation.
    pub n_threads: usize,
    /// How token vectors are pooled.
    pub pooling: Pooling,
}

/// A llama.cpp context of a model with embeddings on: each decode computes one pooled vector
/// per input. Its KV cache is cleared before every decode, so decodes are independent.
///
/// One decode is one ubatch (`n_ubatch = n_batch = n_ctx`): pooling is computed per ubatch,
/// so an input split across two ubatches would get a wrong vector.
pub struct EmbedContext<'m> {
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    opts: EmbedOptions,
}

impl<'m> EmbedContext<'m> {
    /// Creates the context for `model`.
    pub fn new(model: &'m Model, opts: &EmbedOptions) -> Result<Self, Error> {
        let n_ctx = u32::try_from(opts.n_ctx.max(1)).unwrap_or(u32::MAX);
        let threads = i32::try_from(opts.n_threads.max(1)).unwrap_or(1);
        let pooling = match opts.pooling {
            Pooling::Mean => LlamaPoolingType::Mean,
            Pooling::Cls => LlamaPoolingType::Cls,
            Pooling::Last => LlamaPoolingType::Last,
        };
        let n_seq_max =
            u32::try_from(opts.n_seq_max.clamp(1, crate::engine::MAX_SLOTS)).unwrap_or(1);
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(n_ctx)
            .with_n_ubatch(n_ctx)
            .with_n_seq_max(n_seq_max)
            .with_kv_unified(true)
            .with_embeddings(true)
            .with_pooling_type(pooling)
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        let ctx = model
            .inner
            .new_context(llama_backend(), params)
            .map_err(|e| Error::ContextCreate {
                n_ctx,
                reason: e.to_string(),
            })?;
        let mut opts = opts.clone();
        opts.n_ctx = opts
            .n_ctx
            .min(ctx.n_batch() as usize)
            .min(ctx.n_ubatch() as usize);
        opts.n_seq_max = n_seq_max as usize;
        Ok(Self {
            ctx,
            batch: LlamaBatch::new(opts.n_ctx, 1),
            opts,
        })
    }

    /// The settings in effect (`n_ctx` as llama.cpp granted it).
    pub fn options(&self) -> &EmbedOptions {
        &self.opts
    }

    /// Embeds `inputs` in one decode: at most `n_seq_max` inputs of together at most `n_ctx`
    /// tokens, none empty. Returns one raw (unnormalized) vector per input.
    pub fn embed(&mut self, inputs: &[&[TokenId]]) -> Result<Vec<Vec<f32>>, BackendError> {
        let total: usize = inputs.iter().map(|i| i.len()).sum();
        if inputs.is_empty()
            || inputs.len() > self.opts.n_seq_max
            || total > self.opts.n_ctx
            || inputs.iter().any(|i| i.is_empty())
        {
            return Err(BackendError::InvalidBatch);
        }
        self.ctx.clear_kv_cache();
        self.batch.clear();
        for (seq, tokens) in inputs.iter().enumerate() {
            let seq = [seq as i32];
            for (pos, &token) in tokens.iter().enumerate() {
                self.batch
                    .add(LlamaToken(token as i32), pos as i32, &seq, true)
                    .map_err(|_| BackendError::InvalidBatch)?;
            }
        }
        let decoded = self.ctx.decode(&mut self.batch).map_err(backend_error);
        let vectors = decoded.and_then(|()| {
            (0..inputs.len())
                .map(|seq| {
                    self.ctx
                        .embeddings_seq_ith(seq as i32)
                        .map(<[f32]>::to_vec)
                        .map_err(|_| BackendError::Fatal(-1))
                })
                .collect()
        });
        self.ctx.clear_kv_cache();
        vectors
    }
}
