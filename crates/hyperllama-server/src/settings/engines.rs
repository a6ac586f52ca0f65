//! Engines and routes: the serving engines a model may run on (llama.cpp in-process, or a
//! configured server such as vLLM, started as a child process), the `[[routes]]` that pick one
//! by model name and format, and [`Settings::choose_engine`], a pure function of the settings,
//! the model's format, what is installed and the hardware. Part of [`super`].

use std::path::Path;
use std::time::Duration;

use super::{Settings, Source, LLAMA_CPP};

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

    pub(super) fn parse(s: &str) -> Option<Self> {
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

pub(super) fn default_engines() -> Vec<EngineDef> {
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
pub(super) fn glob(pattern: &str, name: &str) -> bool {
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
