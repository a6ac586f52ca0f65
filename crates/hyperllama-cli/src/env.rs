//! The configuration HyperLlama reads: `config.toml` (`HYPERLLAMA_CONFIG`, default
//! `~/.hyperllama/config.toml`) overridden key by key by the `HYPERLLAMA_*` variables (see
//! `hyperllama_server::settings`). This is the only module that reads the environment or the
//! file; everything else receives typed settings. The settings are read once per process.
//!
//! Where things live: the model store is `HYPERLLAMA_MODELS` (default `~/.hyperllama/models`),
//! in Ollama's layout, so it may be an Ollama models folder (`~/.ollama/models`). The SQLite
//! index of the store is kept *outside* it, in `~/.hyperllama/` (or `HYPERLLAMA_DB`), so that
//! pointing HyperLlama at Ollama's folder never writes anything there but models the user
//! creates or pulls. Each store gets its own index file (named after a hash of the store's
//! path), so switching `HYPERLLAMA_MODELS` back and forth does not re-index every time; the
//! index is a cache and is rebuilt by itself when missing or stale.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Context;
use hyperllama_models::digest::BlobDigest;
use hyperllama_server::settings::{Settings, KEYS};

/// The variable that names the configuration file.
pub const CONFIG_VAR: &str = "HYPERLLAMA_CONFIG";

/// A variable's value, `None` when unset or blank.
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The configuration file: `HYPERLLAMA_CONFIG` (which must exist), else
/// `~/.hyperllama/config.toml` when it exists.
pub fn config_path() -> anyhow::Result<Option<PathBuf>> {
    if let Some(p) = var(CONFIG_VAR) {
        let p = expand(p.trim())?;
        anyhow::ensure!(p.is_file(), "{CONFIG_VAR}: no file {}", p.display());
        return Ok(Some(p));
    }
    let Ok(home) = home_dir() else {
        return Ok(None);
    };
    let p = home.join("config.toml");
    Ok(p.is_file().then_some(p))
}

fn load_settings() -> anyhow::Result<Settings> {
    let path = config_path()?;
    let text = match &path {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the configuration {}", p.display()))?,
        ),
        None => None,
    };
    let file = path.as_deref().zip(text.as_deref());
    Ok(Settings::load(file, var)?)
}

/// The effective settings (file + environment), read once.
pub fn settings() -> anyhow::Result<&'static Settings> {
    static SETTINGS: OnceLock<Result<Settings, String>> = OnceLock::new();
    SETTINGS
        .get_or_init(|| load_settings().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Whether debug logging is on.
pub fn debug() -> bool {
    settings().is_ok_and(|s| s.bool("log.debug") == Some(true))
}

/// The log filter (`log.filter` / `HYPERLLAMA_LOG`), when set.
pub fn log_filter() -> Option<String> {
    settings().ok()?.get("log.filter").map(str::to_owned)
}

/// Threads for llama.cpp, when set.
pub fn num_threads() -> anyhow::Result<Option<usize>> {
    Ok(settings()?.positive("server.num_threads"))
}

/// Settings of `serve`, each `None` when unset.
#[derive(Debug, Default)]
pub struct ServeEnv {
    /// `server.host`, normalised to `host:port`.
    pub host: String,
    /// `server.keep_alive`, as given.
    pub keep_alive: Option<String>,
    /// `server.max_loaded_models`.
    pub max_loaded_models: Option<usize>,
    /// `server.max_queue`.
    pub max_queue: Option<usize>,
    /// `server.context_length`.
    pub context_length: Option<usize>,
    /// `server.num_parallel`.
    pub num_parallel: Option<usize>,
    /// `server.origins`.
    pub origins: Vec<String>,
    /// `server.api_key`, trimmed.
    pub api_key: Option<String>,
    /// `server.max_memory` in bytes.
    pub max_memory: Option<u64>,
    /// `server.speculative`.
    pub speculative: Option<bool>,
    /// `server.cache_tokens`.
    pub cache_tokens: Option<usize>,
    /// `server.kv_streams`.
    pub kv_streams: Option<bool>,
    /// `server.gather`.
    pub gather: Option<bool>,
    /// `server.num_batch`.
    pub num_batch: Option<usize>,
}

/// Reads the settings of `serve`.
pub fn serve_env() -> anyhow::Result<ServeEnv> {
    let s = settings()?;
    Ok(ServeEnv {
        host: host(s.get("server.host")),
        keep_alive: s.get("server.keep_alive").map(str::to_owned),
        max_loaded_models: s.positive("server.max_loaded_models"),
        max_queue: s.positive("server.max_queue"),
        context_length: s.positive("server.context_length"),
        num_parallel: s.positive("server.num_parallel"),
        origins: s.list("server.origins"),
        api_key: s.get("server.api_key").map(|k| k.trim().to_owned()),
        max_memory: s.bytes("server.max_memory"),
        speculative: s.bool("server.speculative"),
        cache_tokens: s.positive("server.cache_tokens"),
        kv_streams: s.bool("server.kv_streams"),
        gather: s.bool("server.gather"),
        num_batch: s.positive("server.num_batch"),
    })
}

/// Where the CLI looks for a running server: `server.host`, normalised to `host:port`.
pub fn client_host() -> String {
    host(settings().ok().and_then(|s| s.get("server.host")))
}

/// `server.api_key`: the bearer token the server requires, when set.
pub fn api_key() -> Option<String> {
    settings()
        .ok()?
        .get("server.api_key")
        .map(|k| k.trim().to_owned())
}

/// `host:port` from `HYPERLLAMA_HOST` as Ollama reads `OLLAMA_HOST`: an optional `http://`,
/// a missing host means 127.0.0.1, a missing port means 11434.
fn host(value: Option<&str>) -> String {
    let v = value.unwrap_or("").trim();
    let v = v
        .strip_prefix("http://")
        .or_else(|| v.strip_prefix("https://"))
        .unwrap_or(v)
        .trim_end_matches('/');
    let (h, p) = match v.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) => (h, p),
        _ => (v, "11434"),
    };
    let h = if h.is_empty() { "127.0.0.1" } else { h };
    format!("{h}:{p}")
}

/// The user's home directory.
fn home() -> anyhow::Result<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .context("HOME is not set: set HYPERLLAMA_MODELS and HYPERLLAMA_DB")
}

/// `~/.hyperllama`.
fn home_dir() -> anyhow::Result<PathBuf> {
    Ok(home()?.join(".hyperllama"))
}

/// Expands a leading `~/`.
fn expand(path: &str) -> anyhow::Result<PathBuf> {
    match path.strip_prefix("~/") {
        Some(rest) => Ok(home()?.join(rest)),
        None => Ok(PathBuf::from(path)),
    }
}

/// `path` with a leading `~/` replaced by the home directory (as Ollama expands the paths in a
/// Modelfile); other paths are returned as they are.
pub fn expand_home(path: &str) -> anyhow::Result<String> {
    if path.starts_with("~/") {
        Ok(expand(path)?.to_string_lossy().into_owned())
    } else {
        Ok(path.to_owned())
    }
}

/// The model store's root.
pub fn models_dir() -> anyhow::Result<PathBuf> {
    match settings()?.get("server.models") {
        Some(dir) => expand(dir.trim()),
        None => Ok(home_dir()?.join("models")),
    }
}

/// The index database for the store at `models_dir` (see the module docs).
pub fn index_db(models_dir: &Path) -> anyhow::Result<PathBuf> {
    if let Some(path) = settings()?.get("server.db") {
        return expand(path.trim());
    }
    let absolute = std::path::absolute(models_dir).unwrap_or_else(|_| models_dir.to_path_buf());
    let id = BlobDigest::of_bytes(absolute.as_os_str().as_encoded_bytes()).short();
    Ok(home_dir()?.join(format!("index-{id}.db")))
}

/// Base URLs by registry host, for those set in the environment.
pub fn registry_urls() -> anyhow::Result<Vec<(&'static str, String)>> {
    let s = settings()?;
    Ok([
        ("registry.ollama.ai", "registry.ollama_url"),
        ("hf.co", "registry.hf_url"),
    ]
    .into_iter()
    .filter_map(|(host, key)| s.get(key).map(|url| (host, url.trim().to_owned())))
    .collect())
}

/// Prints the table of variables with their current values.
pub fn print_table() -> anyhow::Result<()> {
    let s = settings()?;
    let config = var(CONFIG_VAR).unwrap_or_else(|| "(default: ~/.hyperllama/config.toml)".into());
    println!("{CONFIG_VAR:<30} {config:<24} The configuration file");
    for k in KEYS {
        let value = match s.value(k.key) {
            Some(v) if v.value.is_some() && k.secret => "(set)".to_owned(),
            Some(v) if v.value.is_some() => v.value.clone().unwrap_or_default(),
            _ => format!("(default: {})", k.default),
        };
        println!("{:<30} {value:<24} {}", k.env, k.description);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn hosts_are_read_like_ollama_host() {
        assert_eq!(super::host(None), "127.0.0.1:11434");
        assert_eq!(super::host(Some("0.0.0.0")), "0.0.0.0:11434");
        assert_eq!(super::host(Some(":8080")), "127.0.0.1:8080");
        assert_eq!(
            super::host(Some("http://localhost:9000/")),
            "localhost:9000"
        );
    }
}
