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
];

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
        let value = var(name).unwrap_or_else(|| format!("(default: {default})"));
        println!("{name:<24} {value:<24} {description}");
    }
}
