//! Resolving a model name to everything needed to show or run it.
//!
//! [`resolve_model`] reads a manifest and its small layers (params, template, system, license,
//! messages) and finds the blob paths of the large ones (weights, adapters, projectors, draft).
//! [`ResolvedModel::options`] turns the params layer into typed defaults for a request, and
//! [`ResolvedModel::chat_template`] says which chat template to use: Ollama's template layers
//! are Go `text/template` source, which HyperLlama cannot run, so only a template layer written
//! in Jinja is used and otherwise the GGUF's own `tokenizer.chat_template` applies.
//! [`ResolvedModel::to_modelfile`] writes the Modelfile that `show --modelfile` prints.
//!
//! It reads the store only; it knows nothing about the index, the engine or the network.
//!
//! # Invariants
//!
//! - A [`ResolvedModel`] always has a weights path whose blob existed when it was resolved:
//!   the GGUF weights, or for a model whose weights stay outside the store the reference
//!   layer's blob, parsed into [`ResolvedModel::reference`] (never GGUF: check `reference`
//!   before loading `model_path`).
//! - Every layer text in it is the blob's content as stored (lossily decoded as UTF-8); nothing
//!   is trimmed or rewritten.
//! - [`ModelOptions`] holds only values of the right type: a params value of another type (a
//!   model made by a newer Ollama) is ignored, never an error.

use std::fs;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::Deserialize;
use serde_json::Value;

use crate::digest::BlobDigest;
use crate::manifest::{media_type, Manifest, ModelConfig};
use crate::modelfile::{Command, MessageRole, Modelfile, Parameters};
use crate::name::ModelName;
use crate::reference::ModelReference;
use crate::store::{Store, StoreError};

/// Why a model could not be resolved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// The store has no model of this name.
    #[error("model '{}' not found", name.display_shortest())]
    NotFound {
        /// The name looked up.
        name: Box<ModelName>,
    },
    /// The manifest has neither a GGUF weights layer nor a reference layer.
    #[error("model '{}' has no model layer", name.display_shortest())]
    NoModelLayer {
        /// The model.
        name: Box<ModelName>,
    },
    /// A layer's blob is missing.
    #[error("model '{}' is incomplete: blob {digest} is missing", name.display_shortest())]
    MissingBlob {
        /// The model.
        name: Box<ModelName>,
        /// The missing blob.
        digest: BlobDigest,
    },
    /// A layer could not be read.
    #[error("cannot read layer {digest} of model '{}'", name.display_shortest())]
    Layer {
        /// The model.
        name: Box<ModelName>,
        /// The layer's blob.
        digest: BlobDigest,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The params or messages layer is not the JSON it should be.
    #[error("layer {digest} of model '{}' is not valid JSON of its kind", name.display_shortest())]
    BadJson {
        /// The model.
        name: Box<ModelName>,
        /// The layer's blob.
        digest: BlobDigest,
        /// Why it does not parse.
        #[source]
        source: serde_json::Error,
    },
    /// The store failed otherwise.
    #[error(transparent)]
    Store(StoreError),
}

/// One example message of the messages layer.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ModelMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    #[serde(default)]
    pub content: String,
}

/// Which chat template a model should be run with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateChoice {
    /// The model's template layer, which is Jinja: use it.
    Jinja(String),
    /// No usable template layer (none, or Go template syntax): use the GGUF's own template
    /// (or the engine's built-in fallback).
    FromGguf,
}

/// Typed request defaults from a model's params layer. `None`/empty means "not set".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelOptions {
    /// `temperature`.
    pub temperature: Option<f32>,
    /// `top_k`.
    pub top_k: Option<u32>,
    /// `top_p`.
    pub top_p: Option<f32>,
    /// `min_p`.
    pub min_p: Option<f32>,
    /// `repeat_penalty`.
    pub repeat_penalty: Option<f32>,
    /// `repeat_last_n`.
    pub repeat_last_n: Option<u32>,
    /// `presence_penalty`.
    pub presence_penalty: Option<f32>,
    /// `frequency_penalty`.
    pub frequency_penalty: Option<f32>,
    /// `seed` (negative: random, as Ollama's -1).
    pub seed: Option<i64>,
    /// `num_predict` (negative: unlimited).
    pub num_predict: Option<i64>,
    /// `num_ctx`.
    pub num_ctx: Option<u64>,
    /// `stop`, every value.
    pub stop: Vec<String>,
}

impl ModelOptions {
    /// Reads the known options from `params`, skipping values of the wrong type.
    pub fn from_parameters(params: &Parameters) -> Self {
        let float = |k: &str| params.get(k).and_then(Value::as_f64).map(|v| v as f32);
        let int = |k: &str| params.get(k).and_then(Value::as_i64);
        let uint = |k: &str| {
            params
                .get(k)
                .and_then(Value::as_u64)
                .and_then(|v| u32::try_from(v).ok())
        };
        let stop = match params.get("stop") {
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Some(Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        };
        ModelOptions {
            temperature: float("temperature"),
            top_k: uint("top_k"),
            top_p: float("top_p"),
            min_p: float("min_p"),
            repeat_penalty: float("repeat_penalty"),
            repeat_last_n: uint("repeat_last_n"),
            presence_penalty: float("presence_penalty"),
            frequency_penalty: float("frequency_penalty"),
            seed: int("seed"),
            num_predict: int("num_predict"),
            num_ctx: params.get("num_ctx").and_then(Value::as_u64),
            stop,
        }
    }
}

/// A model from the store, ready to be shown or run.
#[derive(Clone, Debug)]
pub struct ResolvedModel {
    /// The name, casing as stored.
    pub name: ModelName,
    /// The manifest's digest (Ollama's model ID).
    pub digest: BlobDigest,
    /// The manifest.
    pub manifest: Manifest,
    /// The manifest file's modification time.
    pub modified: SystemTime,
    /// The config blob, when readable.
    pub config: Option<ModelConfig>,
    /// The GGUF weights blob (for a referenced model, the reference layer's blob).
    pub model_path: PathBuf,
    /// Where the weights are when they stay outside the store (safetensors folder, Hugging
    /// Face id); `None` for GGUF weights in the store.
    pub reference: Option<ModelReference>,
    /// LoRA adapter blobs, in order.
    pub adapters: Vec<PathBuf>,
    /// Multimodal projector blobs, in order.
    pub projectors: Vec<PathBuf>,
    /// The draft model blob, if any.
    pub draft: Option<PathBuf>,
    /// The params layer.
    pub parameters: Parameters,
    /// The template layer's text, if any.
    pub template: Option<String>,
    /// The system layer's text, if any.
    pub system: Option<String>,
    /// Every license layer's text.
    pub licenses: Vec<String>,
    /// The messages layer.
    pub messages: Vec<ModelMessage>,
}

/// Whether a template is Jinja (as in GGUF files) rather than a Go template (as Ollama's
/// template layers): Jinja has `{%` statements or reads the `messages` variable, which a Go
/// template spells `.Messages`.
pub fn is_jinja(template: &str) -> bool {
    template.contains("{%") || template.contains("messages")
}

/// Reads the model `name` (looked up ignoring ASCII case, as Ollama does).
pub fn resolve_model(store: &Store, name: &ModelName) -> Result<ResolvedModel, ResolveError> {
    let stored = store.read_manifest(name).map_err(|e| match e {
        StoreError::ModelNotFound { name } => ResolveError::NotFound { name },
        e => ResolveError::Store(e),
    })?;
    let name = stored.name.clone();
    let manifest = stored.manifest;
    let boxed = || Box::new(name.clone());
    let blob = |digest: &BlobDigest| -> Result<PathBuf, ResolveError> {
        let path = store.blob_path(digest);
        if path.is_file() {
            Ok(path)
        } else {
            Err(ResolveError::MissingBlob {
                name: boxed(),
                digest: *digest,
            })
        }
    };
    let text = |digest: &BlobDigest| -> Result<String, ResolveError> {
        let bytes = fs::read(blob(digest)?).map_err(|source| ResolveError::Layer {
            name: boxed(),
            digest: *digest,
            source,
        })?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    let bad_json = |digest: &BlobDigest, source| ResolveError::BadJson {
        name: boxed(),
        digest: *digest,
        source,
    };
    let (model_path, reference) = match (manifest.model_layer(), manifest.reference_layer()) {
        (Some(weights), _) => (blob(&weights.digest)?, None),
        (None, Some(l)) => {
            let reference = ModelReference::from_json(text(&l.digest)?.as_bytes())
                .map_err(|e| bad_json(&l.digest, e))?;
            (blob(&l.digest)?, Some(reference))
        }
        (None, None) => return Err(ResolveError::NoModelLayer { name: boxed() }),
    };
    let paths = |kind: &str| -> Result<Vec<PathBuf>, ResolveError> {
        manifest.layers_of(kind).map(|l| blob(&l.digest)).collect()
    };
    let adapters = paths(media_type::ADAPTER)?;
    let projectors = paths(media_type::PROJECTOR)?;
    let draft = manifest
        .layer(media_type::DRAFT)
        .map(|l| blob(&l.digest))
        .transpose()?;
    let parameters = match manifest.layer(media_type::PARAMS) {
        Some(l) => Parameters::from_json(text(&l.digest)?.as_bytes())
            .map_err(|e| bad_json(&l.digest, e))?,
        None => Parameters::default(),
    };
    let messages = match manifest.layer(media_type::MESSAGES) {
        Some(l) => serde_json::from_str::<Option<Vec<ModelMessage>>>(&text(&l.digest)?)
            .map_err(|e| bad_json(&l.digest, e))?
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let template = manifest
        .layer(media_type::TEMPLATE)
        .map(|l| text(&l.digest))
        .transpose()?;
    let system = manifest
        .layer(media_type::SYSTEM)
        .map(|l| text(&l.digest))
        .transpose()?;
    let licenses = manifest
        .layers_of(media_type::LICENSE)
        .map(|l| text(&l.digest))
        .collect::<Result<Vec<_>, _>>()?;
    let config = fs::read(store.blob_path(&manifest.config.digest))
        .ok()
        .and_then(|bytes| ModelConfig::from_json(&bytes).ok());
    Ok(ResolvedModel {
        name,
        digest: stored.digest,
        modified: stored.modified,
        config,
        model_path,
        reference,
        adapters,
        projectors,
        draft,
        parameters,
        template,
        system,
        licenses,
        messages,
        manifest,
    })
}

impl ResolvedModel {
    /// The weights' format: `gguf`, `safetensors` or `huggingface`.
    pub fn format(&self) -> &'static str {
        self.reference
            .as_ref()
            .map_or("gguf", ModelReference::format)
    }

    /// The request defaults of the params layer.
    pub fn options(&self) -> ModelOptions {
        ModelOptions::from_parameters(&self.parameters)
    }

    /// Which chat template to use (see the module docs).
    pub fn chat_template(&self) -> TemplateChoice {
        match &self.template {
            Some(t) if is_jinja(t) => TemplateChoice::Jinja(t.clone()),
            _ => TemplateChoice::FromGguf,
        }
    }

    /// The Modelfile that recreates this model from its blobs, as `ollama show --modelfile`
    /// writes it: a comment header, `FROM <weights blob path>`, then the template, system,
    /// adapters, parameters, messages and licenses. `tool` names the program in the header.
    pub fn to_modelfile(&self, tool: &str) -> String {
        let from = match &self.reference {
            Some(r) => r.modelfile_from(),
            None => self.model_path.display().to_string(),
        };
        let mut commands = vec![Command::From(from)];
        if let Some(t) = &self.template {
            commands.push(Command::Template(t.clone()));
        }
        if let Some(s) = &self.system {
            commands.push(Command::System(s.clone()));
        }
        for a in &self.adapters {
            commands.push(Command::Adapter(a.display().to_string()));
        }
        if let Some(d) = &self.draft {
            commands.push(Command::Draft(d.display().to_string()));
        }
        commands.extend(self.parameters.to_commands());
        for m in &self.messages {
            let role = match m.role.as_str() {
                "system" => MessageRole::System,
                "assistant" => MessageRole::Assistant,
                _ => MessageRole::User,
            };
            commands.push(Command::Message {
                role,
                content: m.content.clone(),
            });
        }
        for l in &self.licenses {
            commands.push(Command::License(l.clone()));
        }
        let modelfile = Modelfile {
            commands,
            dropped_parameters: Vec::new(),
        };
        format!(
            "# Modelfile generated by \"{tool} show\"\n\
             # To build a new Modelfile based on this, replace FROM with:\n\
             # FROM {}\n\n{modelfile}",
            self.name.display_shortest()
        )
    }
}

#[cfg(test)]
mod tests;
