//! The environment variables HyperLlama reads. This is the only module that reads the
//! environment; everything else receives typed settings.
//!
//! Where things live: the model store is `HYPERLLAMA_MODELS` (default `~/.hyperllama/models`),
//! in Ollama's layout, so it may be an Ollama models folder (`~/.ollama/models`). The SQLite
//! index of the store is kept *outside* it, in `~/.hyperllama/` (or `HYPERLLAMA_DB`), so that
//! pointing HyperLlama at Ollama's folder never writes anything there but models the user
//! creates or pulls. Each store gets its own index file (named after a hash of the store's
//! path), so switching `HYPERLLAMA_MODELS` back and forth does not re-index every time; the
//! index is a cache and is rebuilt by itself when missing or stale.

use std::path::{Path, PathBuf};

use anyhow::Context;
use hyperllama_models::digest::BlobDigest;

/// Name, description and default of every variable.
const VARS: &[(&str, &str, &str)] = &[
    ("HYPERLLAMA_DEBUG", "Verbose logging (1/true)", "false"),
    (
        "HYPERLLAMA_LOG",
        "Log filter in tracing's EnvFilter syntax (overrides HYPERLLAMA_DEBUG)",
        "warn",
    ),
    (
        "HYPERLLAMA_NUM_THREADS",
        "CPU threads llama.cpp may use",
        "all cores",
    ),
    (
        "HYPERLLAMA_MODELS",
        "The model store, in Ollama's layout (may be an Ollama models folder)",
        "~/.hyperllama/models",
    ),
    (
        "HYPERLLAMA_DB",
        "The SQLite index of the store (a cache, never written inside the store)",
        "~/.hyperllama/index-<hash of the store path>.db",
    ),
    (
        "HYPERLLAMA_REGISTRY_URL",
        "Base URL of the default registry (registry.ollama.ai)",
        "https://registry.ollama.ai",
    ),
    (
        "HYPERLLAMA_HF_URL",
        "Base URL of Hugging Face's registry endpoint (hf.co)",
        "https://hf.co",
    ),
    (
        "HYPERLLAMA_HOST",
        "Address `serve` listens on (host, :port or host:port)",
        "127.0.0.1:11434",
    ),
    (
        "HYPERLLAMA_KEEP_ALIVE",
        "How long a model stays loaded after a request (duration or seconds; negative: forever)",
        "5m",
    ),
    (
        "HYPERLLAMA_MAX_LOADED_MODELS",
        "Models resident at once before the least recently used is unloaded",
        "3",
    ),
    (
        "HYPERLLAMA_MAX_QUEUE",
        "Requests queued per model before the server answers 503",
        "512",
    ),
    (
        "HYPERLLAMA_CONTEXT_LENGTH",
        "Default context length (num_ctx) per request",
        "4096",
    ),
    (
        "HYPERLLAMA_NUM_PARALLEL",
        "Sequences one model computes at once (continuous batching)",
        "4",
    ),
    (
        "HYPERLLAMA_ORIGINS",
        "Extra allowed CORS origins, comma-separated",
        "(local origins only)",
    ),
    (
        API_KEY,
        "API key `serve` requires as `Authorization: Bearer <key>` (all routes but /)",
        "(none: no key required)",
    ),
];

/// The variable that holds the server's API key; its value is never printed.
const API_KEY: &str = "HYPERLLAMA_API_KEY";

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Whether debug logging is on.
pub fn debug() -> bool {
    var("HYPERLLAMA_DEBUG").is_some_and(|v| matches!(v.trim(), "1" | "true" | "yes" | "on"))
}

/// Threads for llama.cpp, when set.
pub fn num_threads() -> anyhow::Result<Option<usize>> {
    match var("HYPERLLAMA_NUM_THREADS") {
        None => Ok(None),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => anyhow::bail!("HYPERLLAMA_NUM_THREADS must be a positive integer, not {v:?}"),
        },
    }
}

/// A positive integer setting, when set.
fn positive(name: &str) -> anyhow::Result<Option<usize>> {
    match var(name) {
        None => Ok(None),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => anyhow::bail!("{name} must be a positive integer, not {v:?}"),
        },
    }
}

/// Settings of `serve`, each `None` when unset.
#[derive(Debug, Default)]
pub struct ServeEnv {
    /// `HYPERLLAMA_HOST`, normalised to `host:port`.
    pub host: String,
    /// `HYPERLLAMA_KEEP_ALIVE`, as given.
    pub keep_alive: Option<String>,
    /// `HYPERLLAMA_MAX_LOADED_MODELS`.
    pub max_loaded_models: Option<usize>,
    /// `HYPERLLAMA_MAX_QUEUE`.
    pub max_queue: Option<usize>,
    /// `HYPERLLAMA_CONTEXT_LENGTH`.
    pub context_length: Option<usize>,
    /// `HYPERLLAMA_NUM_PARALLEL`.
    pub num_parallel: Option<usize>,
    /// `HYPERLLAMA_ORIGINS`, split on commas.
    pub origins: Vec<String>,
    /// `HYPERLLAMA_API_KEY`, trimmed.
    pub api_key: Option<String>,
}

/// Reads the settings of `serve`.
pub fn serve_env() -> anyhow::Result<ServeEnv> {
    Ok(ServeEnv {
        host: host(var("HYPERLLAMA_HOST").as_deref()),
        keep_alive: var("HYPERLLAMA_KEEP_ALIVE"),
        max_loaded_models: positive("HYPERLLAMA_MAX_LOADED_MODELS")?,
        max_queue: positive("HYPERLLAMA_MAX_QUEUE")?,
        context_length: positive("HYPERLLAMA_CONTEXT_LENGTH")?,
        num_parallel: positive("HYPERLLAMA_NUM_PARALLEL")?,
        origins: var("HYPERLLAMA_ORIGINS")
            .map(|v| {
                v.split(',')
                    .map(|o| o.trim().to_owned())
                    .filter(|o| !o.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
        api_key: var(API_KEY).map(|k| k.trim().to_owned()),
    })
}

/// Where the CLI looks for a running server: `HYPERLLAMA_HOST`, normalised to `host:port`.
pub fn client_host() -> String {
    host(var("HYPERLLAMA_HOST").as_deref())
}

/// `HYPERLLAMA_API_KEY`: the bearer token the server requires, when set.
pub fn api_key() -> Option<String> {
    var("HYPERLLAMA_API_KEY")
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
    match var("HYPERLLAMA_MODELS") {
        Some(dir) => expand(dir.trim()),
        None => Ok(home_dir()?.join("models")),
    }
}

/// The index database for the store at `models_dir` (see the module docs).
pub fn index_db(models_dir: &Path) -> anyhow::Result<PathBuf> {
    if let Some(path) = var("HYPERLLAMA_DB") {
        return expand(path.trim());
    }
    let absolute = std::path::absolute(models_dir).unwrap_or_else(|_| models_dir.to_path_buf());
    let id = BlobDigest::of_bytes(absolute.as_os_str().as_encoded_bytes()).short();
    Ok(home_dir()?.join(format!("index-{id}.db")))
}

/// Base URLs by registry host, for those set in the environment.
pub fn registry_urls() -> Vec<(&'static str, String)> {
    [
        ("registry.ollama.ai", "HYPERLLAMA_REGISTRY_URL"),
        ("hf.co", "HYPERLLAMA_HF_URL"),
    ]
    .into_iter()
    .filter_map(|(host, name)| var(name).map(|url| (host, url.trim().to_owned())))
    .collect()
}

/// Prints the table of variables with their current values.
pub fn print_table() {
    for (name, description, default) in VARS {
        let value = match var(name) {
            Some(_) if *name == API_KEY => "(set)".to_owned(),
            Some(v) => v,
            None => format!("(default: {default})"),
        };
        println!("{name:<24} {value:<24} {description}");
    }
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
