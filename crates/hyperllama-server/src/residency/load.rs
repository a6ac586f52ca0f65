//! Loading a model's engine: an external serving engine started under a supervisor, or the
//! GGUF file loaded in-process on llama.cpp, with the engine's settings derived from the
//! context length, `num_parallel` and the machine (KV cells from free GPU memory; one KV stream
//! per sequence where they fit; on a GPU, steps sized for it, sampling threads, and few
//! llama.cpp CPU threads). The server's settings (`num_batch`, `num_threads`, `kv_streams`,
//! ...) override the derived values. Part of [`super::Residency`].

use std::time::Duration;

use hyperllama_engine::chat::ChatFormatter;
use hyperllama_engine::engine::GatherWindow;
use hyperllama_engine::llama::gpu_memory;
use hyperllama_engine::serving::{ServingConfig, Supervisor};
use hyperllama_engine::{Engine, EngineConfig, LoadOptions, Model};
use hyperllama_models::resolve::{ResolvedModel, TemplateChoice};

use super::LoadedModel;
use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::settings::EngineChoice;

/// Starts an external serving engine for the model and waits until it is healthy.
pub(super) async fn load_serving(
    resolved: ResolvedModel,
    n_ctx: usize,
    need: u64,
    choice: EngineChoice,
    cfg: &ServerConfig,
    metrics: &Metrics,
) -> Result<LoadedModel, ApiError> {
    let start = std::time::Instant::now();
    let def = cfg
        .settings
        .as_ref()
        .and_then(|s| s.engine(&choice.engine))
        .ok_or_else(|| ApiError::new(crate::error::ErrorKind::Internal, "the engine vanished"))?;
    let model = match &resolved.reference {
        Some(r) => r.location(),
        None => resolved.model_path.display().to_string(),
    };
    let mut scfg = ServingConfig::new(def.command.replace("{n_ctx}", &n_ctx.to_string()), model);
    scfg.health_paths = def.health.clone();
    scfg.startup_timeout = def.startup_timeout;
    // What the engine holds on NVIDIA GPUs: the drop in their free memory (NVML) over its
    // start. Other processes may allocate meanwhile; it is an estimate.
    let gpu_free = || {
        let hw = metrics.hardware();
        (!hw.gpus.is_empty()).then(|| hw.gpu_memory_free())
    };
    let gpu_before = gpu_free();
    let sup = Supervisor::start(scfg).await.map_err(|e| {
        ApiError::new(
            crate::error::ErrorKind::Internal,
            format!("cannot start engine {}: {e}", choice.engine),
        )
    })?;
    let size_vram = match (gpu_before, gpu_free()) {
        (Some(b), Some(a)) => b.saturating_sub(a),
        _ => 0,
    };
    tracing::info!(model = %resolved.name, engine = %choice.engine, size_vram, "model served by an external engine");
    Ok(LoadedModel {
        resolved,
        n_ctx,
        size_vram,
        load_duration: start.elapsed(),
        formatter: Err(format!("the model runs in {}", choice.engine)),
        choice,
        need,
        engine: None,
        serving: Some(sup),
    })
}

/// Loads the weights and starts an engine (blocking).
pub(super) fn load(
    resolved: ResolvedModel,
    n_ctx: usize,
    need: u64,
    choice: EngineChoice,
    cfg: &ServerConfig,
) -> Result<LoadedModel, ApiError> {
    let start = std::time::Instant::now();
    // GPU placement: the model's `num_gpu` parameter (Ollama's; negative means automatic), else
    // every layer when the weights fit into free GPU memory, else the share that fits; the KV
    // cache is then capped by what is left (see below). No GPU: both are no-ops.
    let gpu_before = gpu_memory();
    let num_gpu = resolved
        .parameters
        .get("num_gpu")
        .and_then(serde_json::Value::as_i64)
        .and_then(|n| u32::try_from(n).ok());
    let opts = LoadOptions::auto(&resolved.model_path, num_gpu);
    let model = Model::load(&resolved.model_path, &opts)
        .map_err(|e| ApiError::internal("cannot load the model", &e))?;
    let n_ctx = n_ctx.min(model.info().n_ctx_train.max(2));
    let formatter = match resolved.chat_template() {
        TemplateChoice::Jinja(t) => ChatFormatter::with_template(&model, &t),
        TemplateChoice::FromGguf => ChatFormatter::for_model(&model),
    }
    .map_err(|e| e.to_string());
    let n_parallel = cfg.num_parallel.max(1);
    let mut ecfg = engine_config(cfg, &model, n_ctx, n_parallel);
    let n_kv_cells = ecfg.n_kv_cells;
    // The Modelfile's `DRAFT`: drafts for speculative decoding instead of prompt lookup.
    if let (Some(path), true) = (&resolved.draft, cfg.speculative) {
        let draft_opts = LoadOptions::auto(path, num_gpu);
        let draft = Model::load(path, &draft_opts).map_err(|e| {
            ApiError::internal(
                &format!(
                    "cannot load the draft model of {}",
                    resolved.name.display_shortest()
                ),
                &e,
            )
        })?;
        ecfg.draft_model = Some(draft);
    }
    let kv_streams = ecfg.kv_streams;
    let engine = Engine::start(model, ecfg).map_err(|e| match e {
        e @ hyperllama_engine::Error::DraftMismatch { .. } => ApiError::internal(
            &format!(
                "cannot use the draft model of {}",
                resolved.name.display_shortest()
            ),
            &e,
        ),
        e => ApiError::internal("cannot start the engine", &e),
    })?;
    // What this model holds on the GPU: the drop in free memory over load and engine start.
    let size_vram = match (gpu_before, gpu_memory()) {
        (Some(b), Some(a)) => b.free.saturating_sub(a.free),
        _ => 0,
    };
    tracing::info!(model = %resolved.name, n_ctx, n_kv_cells, n_gpu_layers = opts.n_gpu_layers,
        size_vram, kv_streams, "model loaded");
    Ok(LoadedModel {
        resolved,
        n_ctx,
        size_vram,
        load_duration: start.elapsed(),
        formatter,
        choice,
        need,
        engine: Some(engine),
        serving: None,
    })
}

/// The engine settings for `model` with `n_ctx` positions per sequence and `n_parallel`
/// sequences at once (a draft model is the caller's to add).
fn engine_config(
    cfg: &ServerConfig,
    model: &Model,
    n_ctx: usize,
    n_parallel: usize,
) -> EngineConfig {
    let mut ecfg = EngineConfig::new(n_ctx, n_parallel);
    let wanted = n_ctx.saturating_mul(n_parallel);
    ecfg.n_kv_cells = wanted;
    // Free GPU memory once the weights are placed (one NVML query).
    let gpu_after_load = gpu_memory();
    let on_gpu = model.on_gpu();
    // Steps of twice the tokens where their larger compute buffer takes little of the GPU.
    let step_bytes = step_token_bytes(model);
    let large_steps = on_gpu
        && gpu_after_load.is_some_and(|gpu| {
            step_bytes.saturating_mul(LARGE_GPU_STREAM_STEP_TOKENS as u64) <= gpu.free / 16
        });
    if let Some(gpu) = gpu_after_load {
        // The KV cache lives on the GPU with the layers: at most 90 % of what the weights left
        // free, less 1.5 GiB for compute buffers (more for large steps and their padding
        // tokens), and never under one full context.
        let extra = if large_steps {
            let tokens = LARGE_GPU_STREAM_STEP_TOKENS - GPU_STREAM_STEP_TOKENS
                + LARGE_GPU_STREAM_STEP_TOKENS / hyperllama_engine::engine::CHUNK_PAD_SHARE;
            step_bytes.saturating_mul(tokens as u64)
        } else {
            0
        };
        let room = (gpu.free / 10 * 9).saturating_sub((3 << 29) + extra);
        let cells = usize::try_from(room / model.kv_bytes_per_cell().max(1)).unwrap_or(usize::MAX);
        ecfg.n_kv_cells = ecfg.n_kv_cells.min(cells.max(n_ctx));
    }
    // One KV stream per sequence where each may hold its whole context: every step's attention
    // then spans each sequence's own cells, not every cell in use (on a GPU that is most of a
    // large batch's step; on a CPU, where flash attention walks every cell of the unified
    // cache and skips the masked ones one by one, cached prefixes of other conversations made
    // a small model's decode steps 15-40% slower). The slots are the sequences: cache entries
    // live in idle ones. On a CPU the cells are what the unified cache would take anyway.
    ecfg.kv_streams = cfg.kv_streams.unwrap_or(ecfg.n_kv_cells >= wanted);
    if ecfg.kv_streams {
        ecfg.n_slots = n_parallel.clamp(1, hyperllama_engine::engine::MAX_SLOTS);
        ecfg.n_kv_cells = n_ctx.saturating_mul(ecfg.n_slots);
    }
    if on_gpu {
        // The cores wait for the GPU, and sampling 50k logits for each of a hundred sequences
        // is otherwise a visible share of a step (64 rows on 8 threads: 0.5 ms of a 15 ms
        // step on an H100 host): every core but the engine thread's samples.
        ecfg.sample_threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get() - 1)
            .clamp(1, 32);
        // On a GPU a large step costs little more per token than a small one: bursts of
        // prompts are computed in fewer steps. With KV streams a step is one micro-batch
        // (fewest passes over the weights and graphs to build, so even larger); else four
        // micro-batches of 512, llama-server's defaults.
        ecfg.n_batch = if ecfg.kv_streams && large_steps {
            LARGE_GPU_STREAM_STEP_TOKENS + ecfg.n_slots
        } else if ecfg.kv_streams {
            GPU_STREAM_STEP_TOKENS + ecfg.n_slots
        } else {
            GPU_STEP_TOKENS
        };
    }
    if let Some(n) = cfg.num_batch {
        ecfg.n_batch = n.clamp(1, MAX_STEP_TOKENS);
    }
    if cfg.gather.unwrap_or(on_gpu) {
        ecfg.gather = Some(GATHER);
    }
    ecfg.queue_capacity = cfg.queue_limit.max(1);
    ecfg.speculative = cfg.speculative;
    ecfg.cache_cells = cfg.cache_tokens;
    if model.all_on_gpu() {
        // The CPU computes only the token-embedding lookup, and llama.cpp starts (and joins)
        // its CPU threads for it at every step: with all 16 cores of an H100 host that took
        // 0.1-0.2 ms more of each step's launch than with 1 or 4 (prompt steps unchanged).
        ecfg.n_threads = ecfg.n_threads.min(GPU_HOST_THREADS);
    }
    if let Some(n) = cfg.n_threads {
        ecfg.n_threads = n.max(1);
    }
    ecfg
}

/// Most tokens in one engine step when the model runs on a GPU (512 on a CPU).
const GPU_STEP_TOKENS: usize = 2048;
/// The same with per-sequence KV streams, where a step is one micro-batch: measured on an
/// H200 with 64 prompts of 256 tokens arriving at once, 4096-token steps computed them in 6
/// steps instead of 11, at 2.5% more output tokens per second overall. 4352 (17 x 256) so
/// that 16 prompts of a 256-token text still fit one step once a chat template has added its
/// few tokens (with 4096, prompts of 258 went 15 to a step, and a burst of 64 needed a step
/// more, about 50 ms on an H100). The step holds one decode token per sequence beside it, so
/// that prompts are computed that many tokens at a time however many sequences decode.
const GPU_STREAM_STEP_TOKENS: usize = 4352;
/// The same where the GPU has room for the compute buffer of steps twice that size (34 x
/// 256): an H100 computed a burst of 64 prompts of 256 tokens in two steps instead of four,
/// at the same tokens per second, and the burst ended two decode steps sooner (each step's
/// sequences need their 127 decode steps after it).
const LARGE_GPU_STREAM_STEP_TOKENS: usize = 8704;
/// How an idle engine gathers requests arriving together (`server.gather`, on a GPU by
/// default). The 64 requests of a benchmark burst reached an H100 server's engine over 5-20
/// ms, and its first step computed the first prompt alone (17 ms for an F16 8B model), a
/// step the burst would not otherwise need. Their HTTP handlers started up to 2-5 ms apart
/// (and further on new connections), so requests 3 ms apart still count as arriving
/// together; a lone request waits 3 ms more for its first token.
const GATHER: GatherWindow = GatherWindow {
    quiet: Duration::from_millis(3),
    cap: Duration::from_millis(12),
};
/// What llama.cpp's compute buffer takes per token of a step, about: logits for every token
/// (it reserves for the worst case) and a few activations of the embedding's width. An F16
/// 8B model with a 49,152-token vocabulary measured 1,139 MiB for 4,416 tokens (270 KB
/// each); this says 327 KB.
fn step_token_bytes(model: &Model) -> u64 {
    let info = model.info();
    (info.n_vocab as u64 * 4).saturating_add(model.n_embd() as u64 * 32)
}

/// llama.cpp's CPU threads for a model wholly on a GPU (see [`engine_config`]), unless
/// `server.num_threads` says.
const GPU_HOST_THREADS: usize = 4;
/// The most tokens `server.num_batch` may ask for in one step.
const MAX_STEP_TOKENS: usize = 65_536;
