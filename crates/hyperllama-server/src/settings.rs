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
        "512 on a CPU; on a GPU 4352 + num_parallel with kv_streams, else 2048",
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

/// A model's on-disk format, as far as choosing an engine goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ModelFormat {
    /// A GGUF file.
    Gguf,
    /// A folder of safetensors weights.
    Safetensors,
    /// A Hugging Face repository id (`org/name`), fetched by the engine itself.
    HuggingFace,
}

impl ModelFormat {
    /// The name used in the file (`gguf`, `safetensors`, `hf`).
    pub fn as_str(self) -> &'static str {
        match self {
            ModelFormat::Gguf => "gguf",
            ModelFormat::Safetensors => "safetensors",
            ModelFormat::HuggingFace => "hf",
        }
    }

    /// The format of a model in the store: GGUF weights, or what its reference layer names.
    pub fn of(model: &hyperllama_models::resolve::ResolvedModel) -> Self {
        use hyperllama_models::reference::ModelReference;
        match &model.reference {
            None => Self::Gguf,
            Some(ModelReference::Safetensors { .. }) => Self::Safetensors,
            Some(ModelReference::HuggingFace { .. }) => Self::HuggingFace,
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "gguf" => Some(Self::Gguf),
            "safetensors" => Some(Self::Safetensors),
            "hf" => Some(Self::HuggingFace),
            _ => None,
        }
    }

    /// The format of a model given as a path or id: a file is GGUF, a folder with
    /// `*.safetensors` is safetensors, anything else that looks like `org/name` is a Hugging
    /// Face id.
    pub fn detect(model: &str) -> Option<Self> {
        let path = Path::new(model);
        if path.is_file() {
            return Some(Self::Gguf);
        }
        if path.is_dir() {
            let has = std::fs::read_dir(path)
                .ok()?
                .filter_map(Result::ok)
                .any(|e| e.path().extension().is_some_and(|x| x == "safetensors"));
            return has.then_some(Self::Safetensors);
        }
        let mut parts = model.split('/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty() => Some(Self::HuggingFace),
            _ => None,
        }
    }
}

/// An external serving engine.
#[derive(Clone, Debug)]
pub struct EngineDef {
    /// Its name (`vllm`).
    pub name: String,
    /// The command template (`{port}`, `{model}`).
    pub command: String,
    /// Health paths polled at start-up.
    pub health: Vec<String>,
    /// Start-up timeout.
    pub startup_timeout: Duration,
    /// Formats it serves.
    pub formats: Vec<ModelFormat>,
    /// Whether it needs an NVIDIA GPU.
    pub needs_gpu: bool,
    /// Where it was defined.
    pub source: Source,
}

impl EngineDef {
    /// The program the command runs (its first word).
    pub fn program(&self) -> &str {
        self.command.split_whitespace().next().unwrap_or("")
    }
}

/// A routing rule: models matching `model` (a glob with `*`) and `format` go to `engine`.
#[derive(Clone, Debug)]
pub struct Route {
    /// Name pattern; `None` matches every model.
    pub model: Option<String>,
    /// Format; `None` matches every format.
    pub format: Option<ModelFormat>,
    /// The engine's name (`llama.cpp` or a configured engine).
    pub engine: String,
    /// Where it was defined.
    pub source: Source,
}

/// The orchestrator's decision for one model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineChoice {
    /// The engine's name.
    pub engine: String,
    /// Why, in words.
    pub reason: String,
}

/// What the orchestrator knows about the machine.
#[derive(Clone, Copy, Debug, Default)]
pub struct Machine {
    /// NVIDIA GPUs found.
    pub n_gpus: usize,
}

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

fn default_engines() -> Vec<EngineDef> {
    let def = |name: &str, command: &str, formats: &[ModelFormat], needs_gpu: bool| EngineDef {
        name: name.into(),
        command: command.into(),
        health: vec!["/health".into(), "/v1/models".into()],
        startup_timeout: Duration::from_secs(600),
        formats: formats.to_vec(),
        needs_gpu,
        source: Source::Default,
    };
    use ModelFormat::{Gguf, HuggingFace, Safetensors};
    [
        def(
            "vllm",
            "vllm serve {model} --host 127.0.0.1 --port {port}",
            &[Safetensors, HuggingFace],
            true,
        ),
        def(
            "sglang",
            "python3 -m sglang.launch_server --model-path {model} --host 127.0.0.1 --port {port}",
            &[Safetensors, HuggingFace],
            true,
        ),
        def(
            "max",
            "max serve --model-path {model} --port {port}",
            &[Safetensors, HuggingFace],
            false,
        ),
        def(
            "llama-server",
            "llama-server -m {model} --host 127.0.0.1 --port {port}",
            &[Gguf],
            false,
        ),
    ]
    .into_iter()
    .collect()
}

/// `*` matches any text; case-insensitive.
fn glob(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.to_ascii_lowercase(), name.to_ascii_lowercase());
    let parts: Vec<&str> = p.split('*').collect();
    if parts.len() == 1 {
        return p == n;
    }
    let mut rest = n.as_str();
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(at) = rest.find(part) else {
                return false;
            };
            rest = &rest[at + part.len()..];
        }
    }
    true
}

/// The variable that overrides engine `name`'s command (`HYPERLLAMA_ENGINE_LLAMA_SERVER_COMMAND`).
pub fn engine_env(name: &str) -> String {
    let up: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("HYPERLLAMA_ENGINE_{up}_COMMAND")
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

    /// Chooses the engine for a model named `name` with the given format: the first route
    /// that matches and whose engine can run here; else GGUF → llama.cpp in-process; else the
    /// first configured engine for the format that is installed (`installed(program)`) and
    /// whose hardware needs are met.
    pub fn choose_engine(
        &self,
        name: &str,
        format: ModelFormat,
        installed: impl Fn(&str) -> bool,
        machine: Machine,
    ) -> Result<EngineChoice, String> {
        let usable = |e: &EngineDef| -> Result<(), String> {
            if !installed(e.program()) {
                return Err(format!(
                    "{} is not installed (`{}` is not on PATH)",
                    e.name,
                    e.program()
                ));
            }
            if e.needs_gpu && machine.n_gpus == 0 {
                return Err(format!("{} needs an NVIDIA GPU and none was found", e.name));
            }
            Ok(())
        };
        let mut skipped = Vec::new();
        for r in &self.routes {
            let name_ok = r.model.as_deref().is_none_or(|p| glob(p, name));
            let format_ok = r.format.is_none_or(|f| f == format);
            if !(name_ok && format_ok) {
                continue;
            }
            if r.engine == LLAMA_CPP {
                if format != ModelFormat::Gguf {
                    skipped.push(format!(
                        "route at {} sends a {} model to llama.cpp, which reads only GGUF",
                        r.source,
                        format.as_str()
                    ));
                    continue;
                }
                return Ok(EngineChoice {
                    engine: r.engine.clone(),
                    reason: format!("route at {}", r.source),
                });
            }
            let Some(e) = self.engine(&r.engine) else {
                continue;
            };
            match usable(e) {
                Ok(()) => {
                    return Ok(EngineChoice {
                        engine: e.name.clone(),
                        reason: format!("route at {}", r.source),
                    })
                }
                Err(why) => skipped.push(format!("route at {} skipped: {why}", r.source)),
            }
        }
        let note = if skipped.is_empty() {
            String::new()
        } else {
            format!(" ({})", skipped.join("; "))
        };
        if format == ModelFormat::Gguf {
            return Ok(EngineChoice {
                engine: LLAMA_CPP.into(),
                reason: format!("GGUF runs in-process on llama.cpp{note}"),
            });
        }
        for e in self.engines.iter().filter(|e| e.formats.contains(&format)) {
            match usable(e) {
                Ok(()) => {
                    return Ok(EngineChoice {
                        engine: e.name.clone(),
                        reason: format!(
                            "first configured engine for {} that runs here{note}",
                            format.as_str()
                        ),
                    })
                }
                Err(why) => skipped.push(why),
            }
        }
        Err(format!(
            "no engine can serve {name} ({}): {}",
            format.as_str(),
            skipped.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(a, b)| ((*a).into(), (*b).into()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const FILE: &str = r#"
[server]
max_queue = 64
origins = ["http://a.example", "http://b.example"]
keep_alive = "10m"

[engines.llama-server]
command = "/opt/llama-server -m {model} --port {port} -t 1"

[[routes]]
model = "smol*"
engine = "llama-server"
"#;

    #[test]
    fn env_overrides_file_overrides_default_with_sources() {
        let path = Path::new("/etc/hl.toml");
        let s = Settings::load(
            Some((path, FILE)),
            env_of(&[("HYPERLLAMA_KEEP_ALIVE", "-1")]),
        )
        .expect("valid");
        assert_eq!(s.positive("server.max_queue"), Some(64));
        assert_eq!(
            s.value("server.max_queue")
                .map(|v| v.source.to_string())
                .as_deref(),
            Some("/etc/hl.toml:3")
        );
        assert_eq!(s.list("server.origins").len(), 2);
        assert_eq!(s.get("server.keep_alive"), Some("-1"));
        assert_eq!(
            s.value("server.keep_alive").map(|v| v.source.clone()),
            Some(Source::Env("HYPERLLAMA_KEEP_ALIVE".into()))
        );
        assert_eq!(
            s.value("server.num_parallel").map(|v| v.source.clone()),
            Some(Source::Default)
        );
        assert_eq!(
            s.engine("llama-server")
                .expect("defined")
                .source
                .to_string(),
            "/etc/hl.toml:7"
        );
    }

    #[test]
    fn bad_values_name_key_and_line() {
        let path = Path::new("c.toml");
        let err = Settings::load(Some((path, "[server]\n\nmax_queue = 0\n")), env_of(&[]))
            .expect_err("bad");
        assert_eq!(
            err.to_string(),
            "c.toml:3: `server.max_queue`: must be a positive integer, not \"0\""
        );
        let err = Settings::load(Some((path, "[server]\nmax_qeue = 3\n")), env_of(&[]))
            .expect_err("unknown");
        assert!(
            err.to_string()
                .starts_with("c.toml:2: `server.max_qeue`: unknown key"),
            "{err}"
        );
        let err = Settings::load(Some((path, "[server\n")), env_of(&[])).expect_err("syntax");
        assert!(err.to_string().starts_with("c.toml:1: "), "{err}");
        let err = Settings::load(Some((path, "[[routes]]\nengine = \"nope\"\n")), env_of(&[]))
            .expect_err("engine");
        assert!(
            err.to_string()
                .starts_with("c.toml:2: `routes.engine`: no engine \"nope\""),
            "{err}"
        );
        let err =
            Settings::load(None, env_of(&[("HYPERLLAMA_MAX_MEMORY", "lots")])).expect_err("env");
        assert!(
            err.to_string().starts_with("HYPERLLAMA_MAX_MEMORY: "),
            "{err}"
        );
    }

    #[test]
    fn engine_choice_follows_routes_format_installation_and_hardware() {
        let s = Settings::load(Some((Path::new("c.toml"), FILE)), env_of(&[])).expect("valid");
        let all = |_: &str| true;
        let none = |_: &str| false;
        let cpu = Machine { n_gpus: 0 };
        let gpu = Machine { n_gpus: 1 };
        let c = s
            .choose_engine("smollm2:135m", ModelFormat::Gguf, all, cpu)
            .expect("routed");
        assert_eq!(c.engine, "llama-server");
        assert!(c.reason.contains("c.toml:10"), "{c:?}");
        let c = s
            .choose_engine("smollm2:135m", ModelFormat::Gguf, none, cpu)
            .expect("fallback");
        assert_eq!(c.engine, LLAMA_CPP);
        assert!(c.reason.contains("not on PATH"), "{c:?}");
        assert_eq!(
            s.choose_engine("gemma3", ModelFormat::Gguf, all, cpu)
                .expect("gguf")
                .engine,
            LLAMA_CPP
        );
        // safetensors: vllm first; it needs a GPU, so on CPU the first installed one that does not.
        assert_eq!(
            s.choose_engine("org/m", ModelFormat::HuggingFace, all, gpu)
                .expect("hf")
                .engine,
            "vllm"
        );
        assert_eq!(
            s.choose_engine("org/m", ModelFormat::HuggingFace, all, cpu)
                .expect("hf")
                .engine,
            "max"
        );
        let only_vllm = |p: &str| p == "vllm";
        assert_eq!(
            s.choose_engine("org/m", ModelFormat::HuggingFace, only_vllm, gpu)
                .expect("hf")
                .engine,
            "vllm"
        );
        let err = s
            .choose_engine("org/m", ModelFormat::HuggingFace, only_vllm, cpu)
            .expect_err("no gpu");
        assert!(err.contains("vllm needs an NVIDIA GPU"), "{err}");
    }

    #[test]
    fn sizes_and_globs() {
        assert_eq!(parse_bytes("8GiB"), Ok(8 << 30));
        assert_eq!(parse_bytes("1.5 GB"), Ok(1_500_000_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("-1").is_err());
        assert!(glob("smol*", "SmolLM2:135m"));
        assert!(glob("*:q4*", "x:q4_k"));
        assert!(!glob("gemma*", "smollm"));
    }
}
