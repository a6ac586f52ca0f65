//! Reading what the index records about one model from its manifest and blobs.
//!
//! Synchronous file IO: the registry runs it on tokio's blocking pool.

use std::fs;

use crate::gguf::{self, GgufFile};
use crate::manifest::{media_type, ModelConfig};
use crate::reference::ModelReference;
use crate::store::{Store, StoredManifest};
use crate::template;

/// What a model can do, as Ollama's capability list says it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Capabilities {
    /// Generates text (every model without pooling).
    pub completion: bool,
    /// Produces embeddings (`{arch}.pooling_type` present, or a BERT-like architecture).
    pub embedding: bool,
    /// Its template renders tools or tool calls.
    pub tools: bool,
    /// Its template knows about reasoning.
    pub thinking: bool,
    /// Takes images: a projector layer, or `{arch}.vision.block_count` in the GGUF.
    pub vision: bool,
}

impl Capabilities {
    /// The names of the capabilities present, in Ollama's spelling and a fixed order.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.completion, "completion"),
            (self.embedding, "embedding"),
            (self.tools, "tools"),
            (self.thinking, "thinking"),
            (self.vision, "vision"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }

    /// Reads a list of names; unknown names are ignored.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut caps = Capabilities::default();
        for name in names {
            match name {
                "completion" => caps.completion = true,
                "embedding" => caps.embedding = true,
                "tools" => caps.tools = true,
                "thinking" => caps.thinking = true,
                "vision" => caps.vision = true,
                _ => {}
            }
        }
        caps
    }
}

/// Architectures that are embedding models even without `pooling_type`.
const EMBEDDING_ARCHITECTURES: &[&str] = &[
    "bert",
    "nomic-bert",
    "nomic-bert-moe",
    "jina-bert-v2",
    "modern-bert",
    "neo-bert",
    "t5encoder",
];

/// The metadata of one model.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct ModelFacts {
    pub architecture: Option<String>,
    pub parameter_count: Option<u64>,
    pub quantization: Option<String>,
    pub context_length: Option<u64>,
    pub embedding_length: Option<u64>,
    pub has_chat_template: bool,
    pub capabilities: Capabilities,
    /// Why the weights could not be read, if so (the other facts then come from the config).
    pub index_error: Option<String>,
    /// `gguf`, `safetensors` or `huggingface`.
    pub format: String,
    /// Bytes of weights outside the store (a referenced safetensors folder).
    pub outside_size: u64,
}

/// Reads a model's facts from its GGUF weights, config and template layers. Never fails: what
/// cannot be read is left out and explained in `index_error`.
pub(super) fn inspect(store: &Store, stored: &StoredManifest) -> ModelFacts {
    let manifest = &stored.manifest;
    let mut facts = ModelFacts {
        format: "gguf".to_owned(),
        ..ModelFacts::default()
    };
    let config = fs::read(store.blob_path(&manifest.config.digest))
        .ok()
        .and_then(|bytes| ModelConfig::from_json(&bytes).ok());
    let gguf = match manifest.model_layer() {
        Some(layer) => match gguf::read_file(&store.blob_path(&layer.digest)) {
            Ok(file) => Some(file),
            Err(e) => {
                facts.index_error = Some(error_chain(&e));
                None
            }
        },
        None => {
            match manifest.reference_layer().map(|l| {
                fs::read(store.blob_path(&l.digest))
                    .map_err(|e| error_chain(&e))
                    .and_then(|b| ModelReference::from_json(&b).map_err(|e| error_chain(&e)))
            }) {
                Some(Ok(reference)) => {
                    facts.format = reference.format().to_owned();
                    facts.outside_size = reference.size();
                    facts.parameter_count = reference.parameter_count();
                }
                Some(Err(e)) => facts.index_error = Some(format!("the reference layer: {e}")),
                None => facts.index_error = Some("the manifest has no model layer".to_owned()),
            }
            None
        }
    };
    let mut templates = Vec::new();
    if let Some(file) = &gguf {
        read_gguf(file, &mut facts);
        if let Some(t) = file.chat_template() {
            templates.push(t.to_owned());
        }
    }
    // Ollama's own template layer (a Go template): `.Tools`, `.Thinking` read as words once
    // lowercased.
    if let Some(layer) = manifest.layer(media_type::TEMPLATE) {
        if let Ok(text) = fs::read_to_string(store.blob_path(&layer.digest)) {
            templates.push(text.to_lowercase());
        }
    }
    facts.has_chat_template = !templates.is_empty();
    for t in &templates {
        let caps = template::detect_capabilities(t);
        facts.capabilities.tools |= caps.tools;
        facts.capabilities.thinking |= caps.thinking;
    }
    if manifest.layer(media_type::PROJECTOR).is_some() {
        facts.capabilities.vision = true;
    }
    if let Some(config) = config {
        let or_config = |value: &mut Option<String>, from: &str| {
            if value.is_none() && !from.is_empty() {
                *value = Some(from.to_owned());
            }
        };
        or_config(&mut facts.architecture, &config.model_family);
        or_config(&mut facts.quantization, &config.file_type);
        for name in &config.capabilities {
            let caps = Capabilities::from_names([name.as_str()]);
            facts.capabilities.tools |= caps.tools;
            facts.capabilities.thinking |= caps.thinking;
            facts.capabilities.vision |= caps.vision;
        }
        if facts.context_length.is_none() && config.context_length > 0 {
            facts.context_length = Some(config.context_length);
        }
        if facts.embedding_length.is_none() && config.embedding_length > 0 {
            facts.embedding_length = Some(config.embedding_length);
        }
    }
    if gguf.is_none() && !facts.capabilities.embedding {
        facts.capabilities.completion = true;
    }
    facts
}

/// Fills the facts a GGUF file holds.
fn read_gguf(file: &GgufFile, facts: &mut ModelFacts) {
    let arch = file.architecture().map(str::to_owned);
    facts.parameter_count = Some(file.parameter_count()).filter(|&n| n > 0);
    facts.quantization = file.quantization_label().map(str::to_owned);
    facts.context_length = file.context_length();
    facts.embedding_length = file.embedding_length();
    let has_key = |suffix: &str| {
        arch.as_deref()
            .is_some_and(|a| file.get(&format!("{a}.{suffix}")).is_some())
    };
    let embedding = has_key("pooling_type")
        || arch
            .as_deref()
            .is_some_and(|a| EMBEDDING_ARCHITECTURES.contains(&a));
    facts.capabilities.embedding = embedding;
    facts.capabilities.completion = !embedding;
    facts.capabilities.vision |= has_key("vision.block_count");
    facts.architecture = arch;
}

/// An error and its sources on one line.
pub(super) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
