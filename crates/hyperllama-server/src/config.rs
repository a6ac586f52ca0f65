//! The server's settings, as one typed value.
//!
//! The CLI reads `HYPERLLAMA_*` variables and fills a [`ServerConfig`]; this crate never
//! reads the environment.
//!
//! # Invariants
//! - Every field has a default that matches Ollama's (keep-alive 5m, 3 loaded models,
//!   512 queued requests, 4096 context tokens).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyperllama_models::pull::PullConfig;

use crate::guard::ApiKey;
use crate::settings::{Machine, Settings};

/// Everything the server needs to know at start-up.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The model store's root (Ollama's `OLLAMA_MODELS` layout).
    pub models_dir: PathBuf,
    /// The SQLite index of the store.
    pub registry_db: PathBuf,
    /// How long a model stays loaded after its last request when the request gives no
    /// `keep_alive`; `None` keeps it forever.
    pub default_keep_alive: Option<Duration>,
    /// Most models resident at once; the least recently used idle one is unloaded to make
    /// room (Ollama's `OLLAMA_MAX_LOADED_MODELS`, 3 per GPU, 3 on CPU).
    pub max_loaded_models: usize,
    /// Requests that may wait in one engine's queue before the server answers 503.
    pub queue_limit: usize,
    /// Context length per sequence when neither the request nor the model sets `num_ctx`.
    pub default_num_ctx: usize,
    /// Sequences one model computes at once (Ollama's `OLLAMA_NUM_PARALLEL`). The KV cache
    /// holds `num_ctx × num_parallel` cells: one stream of `num_ctx` per sequence (see
    /// `kv_streams`), or one pool shared by all of them.
    pub num_parallel: usize,
    /// Speculative decoding (prompt-lookup drafts, or a model's `DRAFT` model) in the engines
    /// this server starts.
    pub speculative: bool,
    /// KV cells of finished requests each engine keeps for prefix reuse beyond those its
    /// running requests hold (`EngineConfig::cache_cells`); `None`: one context.
    pub cache_tokens: Option<usize>,
    /// One KV stream per sequence (`EngineConfig::kv_streams`); `None`: when
    /// `num_ctx × num_parallel` cells fit (on a GPU, beside the weights; always on a CPU).
    pub kv_streams: Option<bool>,
    /// Most tokens one engine step computes (Ollama's `num_batch`); `None`: 512 on a CPU,
    /// on a GPU 8,704 (4,352 where memory is short) plus one token per sequence with KV
    /// streams (a step is one micro-batch there) and 2,048 without.
    pub num_batch: Option<usize>,
    /// An idle engine gathers the requests that arrive together into its first step
    /// (`EngineConfig::gather`); `None`: on a GPU.
    pub gather: Option<bool>,
    /// CPU threads for llama.cpp; `None` uses every core.
    pub n_threads: Option<usize>,
    /// Largest request body in bytes; larger bodies get 413.
    pub max_body_bytes: usize,
    /// Origins allowed for cross-origin requests besides the local ones (Ollama's
    /// `OLLAMA_ORIGINS`); `*` in a pattern matches any text.
    pub allowed_origins: Vec<String>,
    /// How `/api/pull` reaches registries (base URLs, `insecure`, retries).
    pub pull: PullConfig,
    /// When set, every request except `GET /` and `HEAD /` needs `Authorization: Bearer
    /// <key>` (`HYPERLLAMA_API_KEY`; Ollama has no such key, so the default is none).
    pub api_key: Option<ApiKey>,
    /// Memory budget of the resident models in bytes (`HYPERLLAMA_MAX_MEMORY`); `None`:
    /// available RAM plus free GPU memory at start-up, minus [`MEMORY_RESERVE`].
    pub max_memory: Option<u64>,
    /// Engines and routing rules; `None`: every model runs on llama.cpp in-process.
    pub settings: Option<Arc<Settings>>,
    /// The machine, for engine choice (GPUs); detected by the binary.
    pub machine: Machine,
}

/// What the default memory budget leaves for everything else.
pub const MEMORY_RESERVE: u64 = 1 << 30;

impl ServerConfig {
    /// Ollama's defaults for a store at `models_dir` with its index at `registry_db`.
    pub fn new(models_dir: impl Into<PathBuf>, registry_db: impl Into<PathBuf>) -> Self {
        Self {
            models_dir: models_dir.into(),
            registry_db: registry_db.into(),
            default_keep_alive: Some(Duration::from_secs(5 * 60)),
            max_loaded_models: 3,
            queue_limit: 512,
            default_num_ctx: 4096,
            num_parallel: 4,
            speculative: true,
            cache_tokens: None,
            kv_streams: None,
            num_batch: None,
            gather: None,
            n_threads: None,
            max_body_bytes: 32 * 1024 * 1024,
            allowed_origins: Vec::new(),
            pull: PullConfig::default(),
            api_key: None,
            max_memory: None,
            settings: None,
            machine: Machine::default(),
        }
    }
}
