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
//! - llama.cpp's global backend is initialised exactly once per process (`llama_backend`).
//! - A file reaches llama.cpp only after our own GGUF reader accepted its header, so a file
//!   that is missing, not GGUF or truncated gets our clear error, never a crash in C++.
//! - `llama_decode` return codes never leave this module as integers: they become
//!   [`BackendError`].
//! - A filler token (`ContextOptions::fill_gaps`) or padding token
//!   (`ContextOptions::pad_chunks`) lives for one step only: it is removed at the start of the
//!   next `execute`, before the plan's trims, clears and copies, so a slot's KV outside a step
//!   holds exactly what the scheduler planned.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hyperllama_core::constraint::{Vocabulary, SPECIAL_TOKEN_MARKER};
use hyperllama_core::TokenId;
use hyperllama_models::gguf;
use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::DecodeError;

mod step;
pub use step::LlamaStepBackend;

use crate::backend::BackendError;
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
    /// layers when the file fits into free GPU memory with `GPU_RESERVE_BYTES` (2 GiB) to
    /// spare, else the share of layers that fits (none without a GPU).
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
    /// Its weights are 16 or 32 bits (`general.file_type` 0, 1 or 32: all F32, mostly F16,
    /// mostly BF16 in llama.cpp's LLAMA_FTYPE_*); see `avoid_cuda_graphs_for_unquantized`.
    unquantized: bool,
    /// Whether every layer (and the output layer) was offloaded: the CPU then computes only
    /// the token-embedding lookup (llama.cpp keeps the input layer in host memory).
    all_on_gpu: bool,
    /// Whether a sequence's KV holds attention only (no recurrent state, which positions
    /// computed past its end would change for good): see [`Model::tail_removable`].
    attention_only: bool,
    /// Whether some layers attend over a sliding window (`<arch>.attention.sliding_window`).
    sliding_window: bool,
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
        let unquantized = matches!(meta.get_u64("general.file_type"), Some(0 | 1 | 32));
        let sliding_window = meta
            .get_u64(&format!("{architecture}.attention.sliding_window"))
            .is_some_and(|n| n > 0);
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
        // llama.cpp offloads the repeating layers first, then the output layer.
        let all_on_gpu = on_gpu && opts.n_gpu_layers > inner.n_layer();
        let attention_only = !inner.is_recurrent() && !inner.is_hybrid();
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
            unquantized,
            all_on_gpu,
            attention_only,
            sliding_window,
        }))
    }

    /// What is known about the model.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Whether tokens computed past a sequence's end leave no trace once removed again, in a
    /// context keeping every sliding-window position when `swa_full`: attention layers only,
    /// and no sliding window that would drop the positions the next tokens attend over.
    pub fn tail_removable(&self, swa_full: bool) -> bool {
        self.attention_only && (swa_full || !self.sliding_window)
    }

    /// Whether its layers were offloaded to a GPU (`n_gpu_layers > 0` and a GPU present):
    /// contexts of it then keep their KV cache there, else in host memory.
    pub fn on_gpu(&self) -> bool {
        self.on_gpu
    }

    /// Whether every layer, the output layer included, is on a GPU.
    pub fn all_on_gpu(&self) -> bool {
        self.all_on_gpu
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
    /// With `kv_streams`: up to this many tokens per step beyond `n_batch` pad a step's
    /// prompt chunks to equal lengths, so that llama.cpp computes them in one micro-batch
    /// (see [`LlamaStepBackend`]); 0 for none. Ignored where [`Model::tail_removable`] says
    /// no.
    pub pad_chunks: usize,
    /// Compute a few throwaway batches at creation, one of each size a step's micro-batches
    /// commonly have (see `LlamaStepBackend::warm_up`), so that a GPU backend has loaded the
    /// kernels for them before the first request.
    pub warm_up: bool,
}

/// Whether a step context on a GPU pads its prompt chunks ([`ContextOptions::pad_chunks`]):
/// yes unless `HYPERLLAMA_CHUNK_PADDING=off` (to measure what it saves).
pub fn chunk_padding_wanted() -> bool {
    std::env::var("HYPERLLAMA_CHUNK_PADDING").as_deref() != Ok("off")
}

/// Whether a step context on a GPU warms up at creation ([`ContextOptions::warm_up`]):
/// yes unless `HYPERLLAMA_WARMUP=off` (to measure what it saves).
pub fn warm_up_wanted() -> bool {
    std::env::var("HYPERLLAMA_WARMUP").as_deref() != Ok("off")
}

/// Environment variable with which ggml's CUDA backend runs every graph without CUDA graphs.
const CUDA_GRAPHS_OFF: &str = "GGML_CUDA_DISABLE_GRAPHS";

/// Turns CUDA graphs off for this process when a model's weights are unquantized (16- or
/// 32-bit) and the user has not decided, for a context with one unified KV cache on a GPU:
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
fn avoid_cuda_graphs_for_unquantized(unquantized: bool, unified: bool) {
    if std::env::var_os(CUDA_GRAPHS_OFF).is_some() {
        return;
    }
    let off = match std::env::var("HYPERLLAMA_CUDA_GRAPHS").as_deref() {
        Ok("on") => false,
        Ok("off") => true,
        _ if unified && unquantized => {
            tracing::warn!(
                "unquantized weights on a GPU with one unified KV cache: CUDA graphs off ({CUDA_GRAPHS_OFF}=1), which llama.cpp needs to decode many sequences of such a model there"
            );
            true
        }
        _ => false,
    };
    if off {
        // Rust 2021's `set_var`: it runs before this context exists, so before the first
        // graph on a GPU of this context reads it; no other code of ours reads it.
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
        avoid_cuda_graphs_for_unquantized(model.unquantized, !opts.kv_streams);
    }
    // Padding tokens come on top of the planned ones, in the same micro-batch.
    let n_batch = opts.n_batch + opts.pad_chunks;
    let n_ubatch = if opts.n_ubatch >= opts.n_batch {
        n_batch
    } else {
        opts.n_ubatch.max(1)
    };
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(n_batch as u32)
        .with_n_ubatch(n_ubatch as u32)
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
