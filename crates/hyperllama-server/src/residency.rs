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
//! - An entry with leases out has no expiry and is never evicted; a replaced, evicted or
//!   discarded (stopped) entry's engine lives on until its last lease ends.
//! - Engines are dropped (which joins their thread) off the async worker threads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use hyperllama_engine::chat::ChatFormatter;
use hyperllama_engine::serving::Supervisor;
use hyperllama_engine::{Engine, EngineStats};
use hyperllama_models::name::ModelName;
use hyperllama_models::resolve::{resolve_model, ResolveError, ResolvedModel};
use hyperllama_models::store::Store;
use tokio::sync::{Notify, OnceCell};
use tokio::time::Instant;

use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::options::KeepAlive;
use crate::settings::{EngineChoice, ModelFormat, LLAMA_CPP};

mod load;

use load::{load, load_serving};

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

    /// Forgets the leased engine at once, for one that has stopped (a failed step): the next
    /// request loads the model afresh, even while requests keep arriving, and requests still
    /// holding the stopped engine keep it until they end (as with a replaced entry). Only this
    /// lease's load is forgotten: a newer load of the same model stays.
    pub fn discard(&self) {
        let gone = {
            let mut entries = self.inner.lock();
            match entries.get(&self.key) {
                Some(e) if e.generation == self.generation => entries.remove(&self.key),
                _ => None,
            }
        };
        drop(gone);
        self.inner.notify.notify_one();
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
