//! The one configuration: `config.toml` (sections `[server]`, `[registry]`, `[log]`,
//! `[engines.NAME]`, `[[routes]]`), every scalar setting overridable by its `HYPERLLAMA_*`
//! environment variable, each effective value tagged with where it came from.
//!
//! This module parses text and asks a lookup function for variables; the binary reads the
//! file and the environment. The orchestrator's choice of engine for a model
//! ([`Settings::choose_engine`]) is a pure function of the settings, the model's format, what
//! is installed and the hardware.
//!
//! # Invariants
//! - Precedence: environment variable > file > default, per key.
//! - A bad value or an unknown key is an error that names the key and the file line (or the
//!   variable); no setting is silently ignored.
//! - Every value in [`Settings`] has been validated for its kind, so typed getters only fail
//!   for keys that do not exist.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::options::KeepAlive;

mod engines;

use engines::default_engines;
pub use engines::{engine_env, EngineChoice, EngineDef, Machine, ModelFormat, Route};

/// The in-process engine's name.
pub const LLAMA_CPP: &str = "llama.cpp";

/// Where an effective value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The built-in default.
    Default,
    /// A line of the configuration file.
    File {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
    },
    /// An environment variable.
    Env(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File { path, line } => write!(f, "{}:{line}", path.display()),
            Source::Env(var) => write!(f, "env {var}"),
        }
    }
}

/// What a configuration error is about.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is not valid TOML or has an unknown key or a value of the wrong type.
    #[error("{path}:{line}: {message}")]
    File {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong (names the key).
        message: String,
    },
    /// A file value is invalid for its key.
    #[error("{path}:{line}: `{key}`: {message}")]
    Key {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// The key (`server.max_queue`).
        key: String,
        /// What is wrong.
        message: String,
    },
    /// An environment variable is invalid.
    #[error("{var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong.
        message: String,
    },
}

/// How a setting's text is validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Text,
    Positive,
    Bool,
    List,
    KeepAlive,
    Bytes,
}

/// One scalar setting.
#[derive(Debug)]
pub struct Key {
    /// `section.name`.
    pub key: &'static str,
    /// The variable that overrides it.
    pub env: &'static str,
    /// What it does.
    pub description: &'static str,
    /// The default, described.
    pub default: &'static str,
    kind: Kind,
    /// Never printed (the API key).
    pub secret: bool,
}

const fn key(
    key: &'static str,
    env: &'static str,
    kind: Kind,
    default: &'static str,
    description: &'static str,
) -> Key {
    Key {
        key,
        env,
        description,
        default,
        kind,
        secret: false,
    }
}

/// Every scalar setting.
pub const KEYS: &[Key] = &[
    key(
        "server.host",
        "HYPERLLAMA_HOST",
        Kind::Text,
        "127.0.0.1:11434",
        "Address `serve` listens on (host, :port or host:port)",
    ),
    key(
        "server.keep_alive",
        "HYPERLLAMA_KEEP_ALIVE",
        Kind::KeepAlive,
        "5m",
        "How long a model stays loaded after a request (duration or seconds; negative: forever)",
    ),
    key(
        "server.max_loaded_models",
        "HYPERLLAMA_MAX_LOADED_MODELS",
        Kind::Positive,
        "3",
        "Models resident at once before the least recently used is unloaded",
    ),
    key(
        "server.max_memory",
        "HYPERLLAMA_MAX_MEMORY",
        Kind::Bytes,
        "available RAM + GPU memory - 1 GiB",
        "Memory budget of resident models (bytes, or with KB/MB/GB/KiB/MiB/GiB)",
    ),
    key(
        "server.max_queue",
        "HYPERLLAMA_MAX_QUEUE",
        Kind::Positive,
        "512",
        "Requests queued per model before the server answers 503",
    ),
    key(
        "server.context_length",
        "HYPERLLAMA_CONTEXT_LENGTH",
        Kind::Positive,
        "4096",
        "Default context length (num_ctx) per request",
    ),
    key(
        "server.num_parallel",
        "HYPERLLAMA_NUM_PARALLEL",
        Kind::Positive,
        "4",
        "Sequences one model computes at once (continuous batching)",
    ),
    key(
        "server.cache_tokens",
        "HYPERLLAMA_CACHE_TOKENS",
        Kind::Positive,
        "context_length",
        "Tokens of finished requests' KV kept for prefix reuse beyond what running requests hold (every cached token widens each step's attention)",
    ),
    key(
        "server.num_batch",
        "HYPERLLAMA_NUM_BATCH",
        Kind::Positive,
        "512 on a CPU; on a GPU with kv_streams 8704 + num_parallel (4352 + num_parallel where its compute buffer would take over 1/16 of the free memory), else 2048",
        "Most tokens one engine step computes (prompt chunks and decode tokens together)",
    ),
    key(
        "server.kv_streams",
        "HYPERLLAMA_KV_STREAMS",
        Kind::Bool,
        "when every sequence's full context fits (always on a CPU)",
        "One KV cache stream per sequence (llama.cpp's non-unified cache; attention spans each sequence's own cells) instead of one pool shared by all",
    ),
    key(
        "server.gather",
        "HYPERLLAMA_GATHER",
        Kind::Bool,
        "true on a GPU",
        "An idle model waits for the requests that arrive with the first one (until none has come for 3 ms, at most 12 ms) and starts them in one step",
    ),
    key(
        "server.speculative",
        "HYPERLLAMA_SPECULATIVE",
        Kind::Bool,
        "true",
        "Speculative decoding with prompt-lookup drafts, or the model's DRAFT model (switches itself off where it does not pay)",
    ),
    key(
        "server.num_threads",
        "HYPERLLAMA_NUM_THREADS",
        Kind::Positive,
        "all cores; 4 for a model wholly on a GPU",
        "CPU threads llama.cpp may use",
    ),
    key(
        "server.models",
        "HYPERLLAMA_MODELS",
        Kind::Text,
        "~/.hyperllama/models",
        "The model store, in Ollama's layout (may be an Ollama models folder)",
    ),
    key(
        "server.db",
        "HYPERLLAMA_DB",
        Kind::Text,
        "~/.hyperllama/index-<hash of the store path>.db",
        "The SQLite index of the store (a cache, never written inside the store)",
    ),
    key(
        "server.origins",
        "HYPERLLAMA_ORIGINS",
        Kind::List,
        "(local origins only)",
        "Extra allowed CORS origins (comma-separated in the variable, a list in the file)",
    ),
    Key {
        secret: true,
        ..key(
            "server.api_key",
            "HYPERLLAMA_API_KEY",
            Kind::Text,
            "(none: no key required)",
            "API key `serve` requires as `Authorization: Bearer <key>` (all routes but /)",
        )
    },
    key(
        "registry.ollama_url",
        "HYPERLLAMA_REGISTRY_URL",
        Kind::Text,
        "https://registry.ollama.ai",
        "Base URL of the default registry (registry.ollama.ai)",
    ),
    key(
        "registry.hf_url",
        "HYPERLLAMA_HF_URL",
        Kind::Text,
        "https://hf.co",
        "Base URL of Hugging Face's registry endpoint (hf.co)",
    ),
    key(
        "log.debug",
        "HYPERLLAMA_DEBUG",
        Kind::Bool,
        "false",
        "Verbose logging",
    ),
    key(
        "log.filter",
        "HYPERLLAMA_LOG",
        Kind::Text,
        "warn",
        "Log filter in tracing's EnvFilter syntax (overrides log.debug)",
    ),
];

/// One effective scalar value.
#[derive(Clone, Debug)]
pub struct Value {
    /// The text, `None` for the default.
    pub value: Option<String>,
    /// Where it came from.
    pub source: Source,
}

/// The effective configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    values: BTreeMap<&'static str, Value>,
    /// External engines in preference order: the built-in ones (vllm, sglang, max,
    /// llama-server), replaced in place by file definitions of the same name, then the
    /// file's other engines.
    pub engines: Vec<EngineDef>,
    /// Routing rules, in order.
    pub routes: Vec<Route>,
    /// The file read, if any.
    pub file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    server: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    registry: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    log: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    engines: BTreeMap<String, Spanned<EngineFile>>,
    #[serde(default)]
    routes: Vec<Spanned<RouteFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EngineFile {
    command: String,
    health: Option<Vec<String>>,
    startup_timeout_secs: Option<u64>,
    formats: Option<Vec<Spanned<String>>>,
    needs_gpu: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    model: Option<String>,
    format: Option<Spanned<String>>,
    engine: Spanned<String>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |t| t.matches('\n').count() + 1)
}

/// Checks `text` for `kind`; the message says what is expected.
fn validate(kind: Kind, text: &str) -> Result<(), String> {
    match kind {
        Kind::Text | Kind::List => Ok(()),
        Kind::Positive => match text.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(()),
            _ => Err(format!("must be a positive integer, not {text:?}")),
        },
        Kind::Bool => parse_bool(text)
            .map(|_| ())
            .ok_or_else(|| format!("must be true or false, not {text:?}")),
        Kind::KeepAlive => KeepAlive::parse_str(text)
            .map(|_| ())
            .map_err(|e| e.message),
        Kind::Bytes => parse_bytes(text).map(|_| ()),
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Bytes from `8589934592`, `8GB` (10⁹) or `8GiB` (2³⁰); fractions allowed with a unit.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "must be a size such as 8GiB or 8000000000, not {text:?}"
            ))
        }
    };
    match num.parse::<f64>() {
        Ok(n) if n > 0.0 && n.is_finite() => Ok((n * mult as f64) as u64),
        _ => Err(format!(
            "must be a positive size such as 8GiB, not {text:?}"
        )),
    }
}

/// A TOML value as setting text (lists joined with commas).
fn value_text(v: &toml::Value) -> Result<String, String> {
    Ok(match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(items) => items
            .iter()
            .map(value_text)
            .collect::<Result<Vec<_>, _>>()?
            .join(","),
        other => {
            return Err(format!(
                "must be a string, number, boolean or list, not {}",
                other.type_str()
            ))
        }
    })
}

impl Settings {
    /// Builds the effective settings from an optional file (path and text) and a variable
    /// lookup (returns `None` for unset or empty variables).
    pub fn load(
        file: Option<(&Path, &str)>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut values: BTreeMap<&'static str, Value> = KEYS
            .iter()
            .map(|k| {
                (
                    k.key,
                    Value {
                        value: None,
                        source: Source::Default,
                    },
                )
            })
            .collect();
        let mut engines = default_engines();
        let mut routes = Vec::new();
        if let Some((path, text)) = file {
            let shown = path.display().to_string();
            let doc: FileDoc = toml::from_str(text).map_err(|e| ConfigError::File {
                path: shown.clone(),
                line: e.span().map_or(1, |s| line_of(text, s.start)),
                message: e.message().trim().to_owned(),
            })?;
            let at = |offset: usize| Source::File {
                path: path.to_path_buf(),
                line: line_of(text, offset),
            };
            let key_err = |key: String, offset: usize, message: String| ConfigError::Key {
                path: shown.clone(),
                line: line_of(text, offset),
                key,
                message,
            };
            for (section, table) in [
                ("server", doc.server),
                ("registry", doc.registry),
                ("log", doc.log),
            ] {
                for (name, v) in table {
                    let full = format!("{section}.{name}");
                    let offset = v.span().start;
                    let Some(k) = KEYS.iter().find(|k| k.key == full) else {
                        let known: Vec<&str> = KEYS
                            .iter()
                            .filter(|k| k.key.starts_with(&format!("{section}.")))
                            .map(|k| &k.key[section.len() + 1..])
                            .collect();
                        return Err(key_err(
                            full,
                            offset,
                            format!("unknown key; [{section}] has {}", known.join(", ")),
                        ));
                    };
                    let text_value =
                        value_text(v.get_ref()).map_err(|m| key_err(full.clone(), offset, m))?;
                    validate(k.kind, &text_value).map_err(|m| key_err(full.clone(), offset, m))?;
                    values.insert(
                        k.key,
                        Value {
                            value: Some(text_value),
                            source: at(offset),
                        },
                    );
                }
            }
            for (name, e) in doc.engines {
                let offset = e.span().start;
                let e = e.into_inner();
                if name == LLAMA_CPP {
                    return Err(key_err(
                        format!("engines.{name}"),
                        offset,
                        "llama.cpp is the in-process engine; it cannot be configured as a command"
                            .into(),
                    ));
                }
                let mut formats = Vec::new();
                for f in e.formats.unwrap_or_default() {
                    let fo = f.span().start;
                    formats.push(ModelFormat::parse(f.get_ref()).ok_or_else(|| {
                        key_err(
                            format!("engines.{name}.formats"),
                            fo,
                            format!(
                                "unknown format {:?}; formats are gguf, safetensors, hf",
                                f.get_ref()
                            ),
                        )
                    })?);
                }
                if !e.command.contains("{port}") {
                    return Err(key_err(
                        format!("engines.{name}.command"),
                        offset,
                        "the command must contain {port}".into(),
                    ));
                }
                let slot = engines.iter().position(|d| d.name == name);
                let default = slot.map(|i| engines[i].clone());
                let def = EngineDef {
                    name: name.clone(),
                    command: e.command,
                    health: e
                        .health
                        .unwrap_or_else(|| vec!["/health".into(), "/v1/models".into()]),
                    startup_timeout: Duration::from_secs(e.startup_timeout_secs.unwrap_or(600)),
                    formats: if formats.is_empty() {
                        default
                            .as_ref()
                            .map(|d| d.formats.clone())
                            .unwrap_or_default()
                    } else {
                        formats
                    },
                    needs_gpu: e
                        .needs_gpu
                        .or(default.map(|d| d.needs_gpu))
                        .unwrap_or(false),
                    source: at(offset),
                };
                match slot {
                    Some(i) => engines[i] = def,
                    None => engines.push(def),
                }
            }
            for r in doc.routes {
                let offset = r.span().start;
                let r = r.into_inner();
                let engine = r.engine.get_ref().clone();
                if engine != LLAMA_CPP && !engines.iter().any(|e| e.name == engine) {
                    let names: Vec<&str> = std::iter::once(LLAMA_CPP)
                        .chain(engines.iter().map(|e| e.name.as_str()))
                        .collect();
                    return Err(key_err(
                        "routes.engine".into(),
                        r.engine.span().start,
                        format!("no engine {engine:?}; engines are {}", names.join(", ")),
                    ));
                }
                let format = match r.format {
                    None => None,
                    Some(f) => Some(ModelFormat::parse(f.get_ref()).ok_or_else(|| {
                        key_err(
                            "routes.format".into(),
                            f.span().start,
                            format!(
                                "unknown format {:?}; formats are gguf, safetensors, hf",
                                f.get_ref()
                            ),
                        )
                    })?),
                };
                routes.push(Route {
                    model: r.model,
                    format,
                    engine,
                    source: at(offset),
                });
            }
        }
        for k in KEYS {
            if let Some(v) = env(k.env) {
                validate(k.kind, &v).map_err(|message| ConfigError::Env {
                    var: k.env.into(),
                    message,
                })?;
                values.insert(
                    k.key,
                    Value {
                        value: Some(v),
                        source: Source::Env(k.env.into()),
                    },
                );
            }
        }
        for e in &mut engines {
            let var = engine_env(&e.name);
            if let Some(cmd) = env(&var) {
                e.command = cmd;
                e.source = Source::Env(var);
            }
        }
        Ok(Self {
            values,
            engines,
            routes,
            file: file.map(|(p, _)| p.to_path_buf()),
        })
    }

    /// The external engine called `name`.
    pub fn engine(&self, name: &str) -> Option<&EngineDef> {
        self.engines.iter().find(|e| e.name == name)
    }

    /// The effective value of `key` and its source; panics never: unknown keys give `None`.
    pub fn value(&self, key: &str) -> Option<&Value> {
        self.values.get(key)
    }

    /// The text of `key`, when set (file or environment).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key)?.value.as_deref()
    }

    /// A positive integer setting, when set.
    pub fn positive(&self, key: &str) -> Option<usize> {
        self.get(key)?.trim().parse().ok()
    }

    /// A boolean setting, when set.
    pub fn bool(&self, key: &str) -> Option<bool> {
        parse_bool(self.get(key)?)
    }

    /// A list setting (comma-separated), empty when unset.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.get(key)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A size setting in bytes, when set.
    pub fn bytes(&self, key: &str) -> Option<u64> {
        parse_bytes(self.get(key)?).ok()
    }
}

#[cfg(test)]
mod tests;
