//! Model-level scheduling: which models are loaded, for how long, and which one goes when
//! there is no room (Ollama's `server/sched.go`). Token-level scheduling (continuous
//! batching) is the engine's business; this module only starts and stops engines.
//!
//! A request [`Residency::acquire`]s a [`Lease`] on a model: the first request loads it
//! (`Model::load` and `Engine::start` on a blocking thread), concurrent first requests share
//! that one load, and later ones find it resident. While leases are out the model never
//! expires. When the last lease ends, the request's `keep_alive` decides: forever, unload
//! now (zero), or expire after the duration. A background task ([`Residency::new`]) and
//! every acquire drop expired models; time is `tokio::time`, so tests can pause it. When
//! more than `max_loaded_models` are resident, the least recently used idle one is unloaded.
//! A request whose context length differs from the resident engine's reloads that model
//! only.
//!
//! Memory budget: before loading, a model's need is estimated (weights file size plus the
//! KV cache from the GGUF header: layers × cells × KV heads × head size × 2 (K and V) × 2
//! bytes; plus the same for its draft model, when speculative decoding uses one). Least-recently-used idle models are unloaded until the resident needs fit the
//! budget ([`ServerConfig::max_memory`]); a model whose need alone exceeds the budget is
//! refused with the numbers. Busy models are never evicted: when they alone fill the
//! budget, the new model loads over it (with a warning) rather than waiting.
//!
//! Engines: with [`ServerConfig::settings`], each model's engine is chosen by
//! [`crate::settings::Settings::choose_engine`] from its name and format (GGUF in the store,
//! or a reference to a safetensors folder or a Hugging Face id); a model routed to an
//! external serving engine is started under a [`Supervisor`] instead of loading in-process,
//! with the engine's command given the GGUF blob path, the folder path or the id as
//! `{model}`. A GGUF model falls back to llama.cpp in-process when no route applies; a model
//! in another format that no configured engine can serve is refused with 400, before
//! anything is loaded. A referenced model's memory need is its safetensors files' size.
//!
//! The residency also carries the server's [`Metrics`]: every request that uses a model
//! passes through it, and it knows the engines whose load the metrics report.
//!
//! # Invariants
//! - At most one entry per model (keyed by its case-folded name); an entry's engine is
//!   loaded at most once.
//! - An entry with leases out has no expiry and is never evicted; a replaced or evicted
//!   entry's engine lives on until its last lease ends.
//! - Engines are dropped (which joins their thread) off the async worker threads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use hyperllama_engine::chat::ChatFormatter;
use hyperllama_engine::llama::gpu_memory;
use hyperllama_engine::serving::{ServingConfig, Supervisor};
use hyperllama_engine::{Engine, EngineConfig, EngineStats, LoadOptions, Model};
use hyperllama_models::name::ModelName;
use hyperllama_models::resolve::{resolve_model, ResolveError, ResolvedModel, TemplateChoice};
use hyperllama_models::store::Store;
use tokio::sync::{Notify, OnceCell};
use tokio::time::Instant;

use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::options::KeepAlive;
use crate::settings::{EngineChoice, ModelFormat, LLAMA_CPP};

/// A model loaded into an engine.
pub struct LoadedModel {
    /// What the store says about it.
    pub resolved: ResolvedModel,
    /// The context length per sequence the engine runs with.
    pub n_ctx: usize,
    /// Bytes of GPU memory it holds (weights, KV cache, buffers); 0 without a GPU.
    pub size_vram: u64,
    /// How long loading took.
    pub load_duration: Duration,
    /// The chat template, or why it cannot be used.
    pub formatter: Result<ChatFormatter, String>,
    /// Which engine serves it, and why.
    pub choice: EngineChoice,
    /// Estimated memory need in bytes (weights + KV cache).
    pub need: u64,
    engine: Option<Engine>,
    serving: Option<Supervisor>,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("name", &self.resolved.name.to_string())
            .field("n_ctx", &self.n_ctx)
            .finish()
    }
}

impl LoadedModel {
    /// The engine. It exists from load until drop.
    pub fn engine(&self) -> Option<&Engine> {
        self.engine.as_ref()
    }

    /// The external serving engine, when the model runs in one.
    pub fn serving(&self) -> Option<&Supervisor> {
        self.serving.as_ref()
    }

    /// The estimated memory need in bytes (weights and KV cache).
    pub fn size(&self) -> u64 {
        self.need
    }
}

impl Drop for LoadedModel {
    fn drop(&mut self) {
        // Dropping an engine joins its thread: never on an async worker.
        if let Some(engine) = self.engine.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    handle.spawn_blocking(move || drop(engine));
                }
                Err(_) => drop(engine),
            }
        }
    }
}

/// What `/api/ps` shows about one resident model.
#[derive(Clone, Debug)]
pub struct ResidentModel {
    /// The model.
    pub resolved: ResolvedModel,
    /// Bytes of weights.
    pub size: u64,
    /// The context length per sequence.
    pub n_ctx: usize,
    /// Bytes of GPU memory it holds; 0 without a GPU.
    pub size_vram: u64,
    /// Time until it expires; `None` means never (or not before its last request ends and
    /// `keep_alive` is negative).
    pub expires_in: Option<Duration>,
    /// Requests using it now.
    pub n_active: usize,
    /// Which engine serves it, and why.
    pub choice: EngineChoice,
}

struct Entry {
    generation: u64,
    /// The context length asked for (before clamping to the model's trained length).
    n_ctx_requested: usize,
    cell: Arc<OnceCell<Arc<LoadedModel>>>,
    n_active: usize,
    keep_alive: KeepAlive,
    expires_at: Option<Instant>,
    last_used: Instant,
    /// Estimated bytes the model needs once loaded.
    need: u64,
}

struct Inner {
    cfg: ServerConfig,
    /// The memory budget in bytes.
    budget: u64,
    store: Store,
    entries: Mutex<HashMap<String, Entry>>,
    notify: Arc<Notify>,
    next_generation: AtomicU64,
    metrics: Arc<Metrics>,
    /// The context length each weights file was trained with (`None`: not in its GGUF), by
    /// path: read once per file, not per request.
    trained: Mutex<HashMap<std::path::PathBuf, Option<u64>>>,
    /// What a weights file and its draft need for a number of KV cells ([`estimate_need`]),
    /// by paths and cells: read once, not per request (blobs are content-addressed, and
    /// parsing the GGUF header of a large vocabulary takes milliseconds, which a burst of
    /// requests otherwise spends before reaching the engine).
    needs: Mutex<NeedCache>,
}

type NeedCache = HashMap<(std::path::PathBuf, Option<std::path::PathBuf>, usize), u64>;

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ends one lease of entry `key` (if it is still generation `generation`).
    fn release(&self, key: &str, generation: u64, keep_alive: KeepAlive) {
        let mut gone = None;
        {
            let mut entries = self.lock();
            let Some(e) = entries.get_mut(key).filter(|e| e.generation == generation) else {
                return;
            };
            e.n_active = e.n_active.saturating_sub(1);
            e.last_used = Instant::now();
            e.keep_alive = keep_alive;
            if e.n_active == 0 {
                let unloaded = e.cell.get().is_none();
                match keep_alive {
                    _ if unloaded => gone = entries.remove(key),
                    KeepAlive::Forever => e.expires_at = None,
                    KeepAlive::For(d) if d.is_zero() => gone = entries.remove(key),
                    KeepAlive::For(d) => e.expires_at = Some(Instant::now() + d),
                }
            }
        }
        drop(gone);
        self.notify.notify_one();
    }

    /// Drops expired entries; returns the next expiry.
    fn reap(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut gone = Vec::new();
        let next = {
            let mut entries = self.lock();
            let expired: Vec<String> = entries
                .iter()
                .filter(|(_, e)| e.n_active == 0 && e.expires_at.is_some_and(|t| t <= now))
                .map(|(k, _)| k.clone())
                .collect();
            for k in expired {
                gone.extend(entries.remove(&k));
            }
            entries.values().filter_map(|e| e.expires_at).min()
        };
        drop(gone);
        next
    }
}

/// The resident models. Cheap to clone (a shared handle).
#[derive(Clone)]
pub struct Residency {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Residency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Residency").finish_non_exhaustive()
    }
}

/// One request's hold on a loaded model; dropping it ends the request's use.
pub struct Lease {
    inner: Arc<Inner>,
    key: String,
    generation: u64,
    keep_alive: KeepAlive,
    model: Option<Arc<LoadedModel>>,
    /// The time this request spent loading the model (zero when it was resident).
    pub load_duration: Duration,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("key", &self.key).finish()
    }
}

impl Lease {
    /// The leased model.
    pub fn model(&self) -> Option<&Arc<LoadedModel>> {
        self.model.as_ref()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // The model reference goes first, so that an unload really drops the engine.
        let model = self.model.take();
        self.inner
            .release(&self.key, self.generation, self.keep_alive);
        drop(model);
    }
}

impl Residency {
    /// An empty residency for models of `store`. Inside a tokio runtime it starts the task
    /// that unloads expired models (it stops when the last handle is dropped).
    pub fn new(cfg: ServerConfig, store: Store) -> Self {
        let notify = Arc::new(Notify::new());
        let budget = cfg.max_memory.unwrap_or_else(|| {
            let hw = hyperllama_engine::hardware::detect();
            (hw.memory_available + hw.gpu_memory_free())
                .saturating_sub(crate::config::MEMORY_RESERVE)
        });
        let inner = Arc::new(Inner {
            budget,
            cfg,
            store,
            entries: Mutex::new(HashMap::new()),
            notify: Arc::clone(&notify),
            next_generation: AtomicU64::new(1),
            metrics: Arc::new(Metrics::default()),
            trained: Mutex::new(HashMap::new()),
            needs: Mutex::new(HashMap::new()),
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(reaper(Arc::downgrade(&inner), notify));
        }
        Self { inner }
    }

    /// The context length `resolved`'s weights were trained with, from its GGUF metadata (read
    /// once per weights file); `None` when the file does not say or cannot be read.
    pub async fn trained_context(&self, resolved: &ResolvedModel) -> Option<u64> {
        let path = resolved.model_path.clone();
        let read = path.clone();
        cached_blocking(&self.inner.trained, path, move || {
            hyperllama_models::gguf::read_file(&read)
                .ok()
                .and_then(|f| f.context_length())
        })
        .await
        .ok()
        .flatten()
    }

    /// Resolves `name` in the store (404 when it is not there).
    pub async fn resolve(&self, name: &ModelName) -> Result<ResolvedModel, ApiError> {
        let store = self.inner.store.clone();
        let name = name.clone();
        tokio::task::spawn_blocking(move || resolve_model(&store, &name))
            .await
            .map_err(|e| ApiError::internal("the model lookup failed", &e))?
            .map_err(|e| match e {
                e @ ResolveError::NotFound { .. } => ApiError::not_found(e.to_string()),
                e => ApiError::internal("cannot read the model", &e),
            })
    }

    /// Takes a lease on `name` with context length `num_ctx` (else the model's, else the
    /// server's default), loading it if needed. `keep_alive` (else the server's default)
    /// applies when the lease ends.
    pub async fn acquire(
        &self,
        name: &ModelName,
        num_ctx: Option<usize>,
        keep_alive: Option<KeepAlive>,
    ) -> Result<Lease, ApiError> {
        let resolved = self.resolve(name).await?;
        let cfg = &self.inner.cfg;
        let choice = choose(cfg, &resolved)?;
        let keep_alive = keep_alive.unwrap_or(match cfg.default_keep_alive {
            Some(d) => KeepAlive::For(d),
            None => KeepAlive::Forever,
        });
        let model_ctx = resolved
            .options()
            .num_ctx
            .and_then(|n| usize::try_from(n).ok());
        let n_ctx = num_ctx.or(model_ctx).unwrap_or(cfg.default_num_ctx);
        if n_ctx < 2 {
            return Err(ApiError::bad_request("num_ctx must be at least 2"));
        }
        let key = resolved.name.case_folded().to_string();
        let need = match &resolved.reference {
            Some(r) => r.size(),
            None => {
                let path = resolved.model_path.clone();
                let draft = resolved.draft.clone().filter(|_| cfg.speculative);
                let cells = n_ctx.saturating_mul(cfg.num_parallel.max(1));
                let (p, d) = (path.clone(), draft.clone());
                cached_blocking(&self.inner.needs, (path, draft, cells), move || {
                    let draft = d.map_or(0, |d| estimate_need(&d, cells));
                    estimate_need(&p, cells).saturating_add(draft)
                })
                .await
                .map_err(|e| ApiError::internal("the model's size estimate failed", &e))?
            }
        };
        let budget = self.inner.budget;
        if need > budget {
            return Err(ApiError::new(
                crate::error::ErrorKind::Internal,
                format!(
                    "model {} needs {} (weights and KV cache for {n_ctx} tokens × {} sequences) but the memory budget is {}; lower num_ctx or raise HYPERLLAMA_MAX_MEMORY",
                    resolved.name,
                    gib(need),
                    cfg.num_parallel.max(1),
                    gib(budget)
                ),
            ));
        }
        self.inner.reap();
        let (generation, cell, replaced, evicted) = {
            let mut entries = self.inner.lock();
            let mut replaced = None;
            let reuse = entries
                .get(&key)
                .is_some_and(|e| e.n_ctx_requested == n_ctx && same_digest(e, &resolved));
            if !reuse {
                replaced = entries.remove(&key);
                let generation = self.inner.next_generation.fetch_add(1, Ordering::Relaxed);
                entries.insert(
                    key.clone(),
                    Entry {
                        generation,
                        n_ctx_requested: n_ctx,
                        cell: Arc::new(OnceCell::new()),
                        n_active: 0,
                        keep_alive,
                        expires_at: None,
                        last_used: Instant::now(),
                        need,
                    },
                );
            }
            let mut evicted = Vec::new();
            let over = |entries: &HashMap<String, Entry>| {
                entries.len() > cfg.max_loaded_models.max(1)
                    || entries.values().map(|e| e.need).sum::<u64>() > budget
            };
            while over(&entries) {
                let victim = entries
                    .iter()
                    .filter(|(k, e)| **k != key && e.n_active == 0)
                    .min_by_key(|(_, e)| e.last_used)
                    .map(|(k, _)| k.clone());
                match victim.and_then(|k| entries.remove(&k)) {
                    Some(e) => evicted.push(e),
                    None => {
                        tracing::warn!(
                            model = %key,
                            budget,
                            "busy models fill the memory budget; loading over it"
                        );
                        break;
                    }
                }
            }
            let Some(e) = entries.get_mut(&key) else {
                return Err(ApiError::new(
                    crate::error::ErrorKind::Internal,
                    "the model entry vanished",
                ));
            };
            e.n_active += 1;
            e.expires_at = None;
            e.last_used = Instant::now();
            (e.generation, Arc::clone(&e.cell), replaced, evicted)
        };
        drop(replaced);
        drop(evicted);
        let mut lease = Lease {
            inner: Arc::clone(&self.inner),
            key,
            generation,
            keep_alive,
            model: None,
            load_duration: Duration::ZERO,
        };
        let loaded_here = AtomicBool::new(false);
        let model = cell
            .get_or_try_init(|| async {
                loaded_here.store(true, Ordering::Relaxed);
                let cfg = cfg.clone();
                if choice.engine != LLAMA_CPP {
                    let metrics = Arc::clone(&self.inner.metrics);
                    return load_serving(resolved, n_ctx, need, choice, &cfg, &metrics)
                        .await
                        .map(Arc::new);
                }
                tokio::task::spawn_blocking(move || load(resolved, n_ctx, need, choice, &cfg))
                    .await
                    .map_err(|e| ApiError::internal("the model load failed", &e))?
                    .map(Arc::new)
            })
            .await?;
        if loaded_here.load(Ordering::Relaxed) {
            lease.load_duration = model.load_duration;
        }
        lease.model = Some(Arc::clone(model));
        Ok(lease)
    }

    /// Unloads `name` now if it is idle, else as soon as its last request ends. Returns
    /// whether it was resident.
    pub fn unload(&self, name: &ModelName) -> bool {
        let key = name.case_folded().to_string();
        let gone = {
            let mut entries = self.inner.lock();
            match entries.get_mut(&key) {
                None => return false,
                Some(e) if e.n_active > 0 => {
                    e.keep_alive = KeepAlive::For(Duration::ZERO);
                    return true;
                }
                Some(_) => entries.remove(&key),
            }
        };
        drop(gone);
        true
    }

    /// Unloads every model and waits until their engines have stopped (requests still
    /// under way keep their engine until they end). For a server that is shutting down.
    pub async fn shutdown(&self) {
        let entries: Vec<Entry> = self.inner.lock().drain().map(|(_, e)| e).collect();
        let models: Vec<Arc<LoadedModel>> = entries
            .into_iter()
            .filter_map(|e| e.cell.get().cloned())
            .collect();
        // Dropped on a blocking thread: the last reference joins the engine thread there.
        let _ = tokio::task::spawn_blocking(move || {
            for mut model in models {
                if let Some(m) = Arc::get_mut(&mut model) {
                    drop(m.engine.take());
                    drop(m.serving.take());
                }
            }
        })
        .await;
    }

    /// The loaded models, most recently used first.
    pub fn snapshot(&self) -> Vec<ResidentModel> {
        self.inner.reap();
        let now = Instant::now();
        let entries = self.inner.lock();
        let mut list: Vec<(Instant, ResidentModel)> = entries
            .values()
            .filter_map(|e| {
                let m = e.cell.get()?;
                let expires_in = match (e.expires_at, e.keep_alive) {
                    (Some(t), _) => Some(t.saturating_duration_since(now)),
                    (None, KeepAlive::For(d)) => Some(d),
                    (None, KeepAlive::Forever) => None,
                };
                Some((
                    e.last_used,
                    ResidentModel {
                        resolved: m.resolved.clone(),
                        size: m.size(),
                        n_ctx: m.n_ctx,
                        size_vram: m.size_vram,
                        expires_in,
                        n_active: e.n_active,
                        choice: m.choice.clone(),
                    },
                ))
            })
            .collect();
        list.sort_by_key(|m| std::cmp::Reverse(m.0));
        list.into_iter().map(|(_, m)| m).collect()
    }

    /// Which engine serves `resolved` and why; 400 when none can (a safetensors or Hugging
    /// Face model without a configured engine for its format).
    pub fn engine_choice(&self, resolved: &ResolvedModel) -> Result<EngineChoice, ApiError> {
        choose(&self.inner.cfg, resolved)
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// The load of every loaded model's engine, by model name.
    pub fn engine_loads(&self) -> Vec<EngineLoad> {
        let entries = self.inner.lock();
        let mut loads: Vec<EngineLoad> = entries
            .values()
            .filter_map(|e| {
                let m = e.cell.get()?;
                let engine = m.engine()?;
                Some(EngineLoad {
                    model: m.resolved.name.display_shortest(),
                    stats: engine.stats(),
                    n_requests: engine.n_requests(),
                })
            })
            .collect();
        loads.sort_by(|a, b| a.model.cmp(&b.model));
        loads
    }

    /// The engine statistics of `name`, when it is loaded.
    pub fn engine_stats(&self, name: &ModelName) -> Option<EngineStats> {
        let key = name.case_folded().to_string();
        let entries = self.inner.lock();
        let m = entries.get(&key)?.cell.get()?;
        m.engine().map(Engine::stats)
    }
}

/// One loaded model's engine load, for the metrics.
#[derive(Clone, Debug)]
pub struct EngineLoad {
    /// The model's name (shortest form).
    pub model: String,
    /// The engine's statistics after its last step.
    pub stats: EngineStats,
    /// Requests in the engine (queued or running).
    pub n_requests: usize,
}

fn same_digest(e: &Entry, resolved: &ResolvedModel) -> bool {
    e.cell
        .get()
        .is_none_or(|m| m.resolved.digest == resolved.digest)
}

fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Estimated bytes a GGUF model needs with `n_cells` KV cells: the file's size plus an F16
/// KV cache (`n_layer × n_cells × n_head_kv × head_dim × 2 × 2`). What the header does not
/// say counts as zero.
pub fn estimate_need(path: &std::path::Path, n_cells: usize) -> u64 {
    let file = std::fs::metadata(path).map_or(0, |m| m.len());
    let Ok(g) = hyperllama_models::gguf::read_file(path) else {
        return file;
    };
    let Some(arch) = g.architecture().map(str::to_owned) else {
        return file;
    };
    let get = |k: &str| g.get_u64(&format!("{arch}.{k}"));
    let n_layer = g.block_count().unwrap_or(0);
    let n_head = get("attention.head_count").unwrap_or(0);
    let n_head_kv = get("attention.head_count_kv").unwrap_or(n_head);
    let head_dim = get("attention.key_length").unwrap_or_else(|| {
        g.embedding_length()
            .unwrap_or(0)
            .checked_div(n_head)
            .unwrap_or(0)
    });
    let kv = n_layer
        .saturating_mul(n_cells as u64)
        .saturating_mul(n_head_kv.saturating_mul(head_dim))
        .saturating_mul(4);
    file.saturating_add(kv)
}

/// The value `cache` holds for `key`, else what `compute` gives (on the blocking pool, for
/// file reads), which is then kept; an error when the blocking task failed (nothing is kept).
async fn cached_blocking<K, V>(
    cache: &Mutex<HashMap<K, V>>,
    key: K,
    compute: impl FnOnce() -> V + Send + 'static,
) -> Result<V, tokio::task::JoinError>
where
    K: Eq + std::hash::Hash,
    V: Copy + Send + 'static,
{
    let cached = cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
        .copied();
    if let Some(v) = cached {
        return Ok(v);
    }
    let v = tokio::task::spawn_blocking(compute).await?;
    cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key, v);
    Ok(v)
}

/// The engine for `resolved`: by the settings' routes and engines for its format; a GGUF
/// model falls back to llama.cpp in-process, any other format without an engine is a 400
/// that names the format and the configuration keys that would serve it.
fn choose(cfg: &ServerConfig, resolved: &ResolvedModel) -> Result<EngineChoice, ApiError> {
    let format = ModelFormat::of(resolved);
    let name = resolved.name.display_shortest();
    let chosen = match &cfg.settings {
        Some(settings) => settings.choose_engine(&name, format, installed, cfg.machine),
        None => Err(format!(
            "no engine can serve {name} ({}): no engines are configured",
            format.as_str()
        )),
    };
    match chosen {
        Ok(choice) => Ok(choice),
        Err(_) if format == ModelFormat::Gguf => Ok(EngineChoice {
            engine: LLAMA_CPP.into(),
            reason: "GGUF runs in-process on llama.cpp".into(),
        }),
        Err(why) => Err(ApiError::bad_request(format!(
            "model '{name}' is a {} model, which llama.cpp cannot run, and {why}. Configure a serving engine for it in config.toml: [engines.NAME] with command = \"... {{model}} ... {{port}}\" and formats = [\"{f}\"] (or [[routes]] format = \"{f}\" with engine = \"NAME\"), or set HYPERLLAMA_ENGINE_<NAME>_COMMAND for a built-in engine that serves {f} (`hyperllama config` lists them)",
            resolved.format(),
            f = format.as_str(),
        ))),
    }
}

/// Whether `program` runs here: a path that exists, or a name on `PATH`.
pub fn installed(program: &str) -> bool {
    if program.contains('/') {
        return std::path::Path::new(program).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// Starts an external serving engine for the model and waits until it is healthy.
async fn load_serving(
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
fn load(
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
    let mut ecfg = EngineConfig::new(n_ctx, n_parallel);
    let wanted = n_ctx.saturating_mul(n_parallel);
    ecfg.n_kv_cells = wanted;
    // Free GPU memory once the weights are placed (one NVML query).
    let gpu_after_load = gpu_memory();
    let on_gpu = model.on_gpu();
    if let Some(gpu) = gpu_after_load {
        // The KV cache lives on the GPU with the layers: at most 90 % of what the weights left
        // free, less 1.5 GiB for compute buffers, and never under one full context.
        let room = (gpu.free / 10 * 9).saturating_sub(3 << 29);
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
        ecfg.n_batch = if ecfg.kv_streams {
            GPU_STREAM_STEP_TOKENS + ecfg.n_slots
        } else {
            GPU_STEP_TOKENS
        };
    }
    if let Some(n) = cfg.num_batch {
        ecfg.n_batch = n.clamp(1, MAX_STEP_TOKENS);
    }
    let n_kv_cells = ecfg.n_kv_cells;
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
/// llama.cpp's CPU threads for a model wholly on a GPU (see `load`), unless `server.num_threads` says.
const GPU_HOST_THREADS: usize = 4;
/// The most tokens `server.num_batch` may ask for in one step.
const MAX_STEP_TOKENS: usize = 65_536;

/// Unloads expired models until the residency is dropped.
async fn reaper(inner: Weak<Inner>, notify: Arc<Notify>) {
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let next = match inner.upgrade() {
            Some(inner) => inner.reap(),
            None => return,
        };
        let far = Instant::now() + Duration::from_secs(3600);
        tokio::select! {
            () = tokio::time::sleep_until(next.unwrap_or(far)) => {}
            () = &mut notified => {}
        }
    }
}
