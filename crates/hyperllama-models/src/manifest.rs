//! Manifests: the Docker distribution v2 JSON that names a model's blobs, and the config blob
//! it points to.
//!
//! This module owns the manifest and config formats, byte-compatible with Ollama's
//! (`manifest/manifest.go`, `manifest/layer.go`, `types/model/config.go`): the same field
//! names in the same order, Go's `omitempty` rules, and Go's `json.Encoder` output (compact,
//! `<`, `>`, `&`, U+2028 and U+2029 escaped, one trailing newline), so a manifest we write is
//! byte for byte what Ollama would write and a folder can be shared with Ollama. Fields this
//! version does not know are kept and written back after the known ones. It knows nothing
//! about where manifests are stored.
//!
//! Media types: Ollama's `application/vnd.ollama.image.*` for every layer kind. A draft
//! model for speculative decoding (Modelfile `DRAFT`) uses Ollama's own
//! `application/vnd.ollama.image.draft`, so the same manifest means the same thing to both
//! programs. HyperLlama's one media type of its own is the *reference* layer
//! ([`media_type::REFERENCE`], see [`crate::reference`]) of a model whose weights stay
//! outside the store; Ollama does not know it, and such a model has no GGUF weights layer.
//!
//! # Invariants
//!
//! - [`Manifest::from_json`] accepts only `schemaVersion` 2 and `sha256:` digests.
//! - `Manifest::from_json(&m.to_json())` equals `m`, and for a manifest Ollama wrote,
//!   `to_json` gives back the same bytes (known fields first, in Ollama's order).
//! - A manifest's digest is the SHA-256 of its file's bytes (Ollama lists it in hex).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::digest::BlobDigest;

/// The manifest's own media type.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The config layer's media type.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.docker.container.image.v1+json";

/// Layer media types, as Ollama names them.
pub mod media_type {
    /// GGUF weights.
    pub const MODEL: &str = "application/vnd.ollama.image.model";
    /// A multimodal projector (`mmproj` GGUF).
    pub const PROJECTOR: &str = "application/vnd.ollama.image.projector";
    /// A LoRA adapter (GGUF).
    pub const ADAPTER: &str = "application/vnd.ollama.image.adapter";
    /// The prompt template (text).
    pub const TEMPLATE: &str = "application/vnd.ollama.image.template";
    /// The system prompt (text).
    pub const SYSTEM: &str = "application/vnd.ollama.image.system";
    /// The parameters (JSON object).
    pub const PARAMS: &str = "application/vnd.ollama.image.params";
    /// A license (text); a manifest may hold several.
    pub const LICENSE: &str = "application/vnd.ollama.image.license";
    /// Example messages (JSON array of `{role, content}`).
    pub const MESSAGES: &str = "application/vnd.ollama.image.messages";
    /// A draft model for speculative decoding (GGUF); Ollama's type, used for `DRAFT`.
    pub const DRAFT: &str = "application/vnd.ollama.image.draft";
    /// Legacy prompt layer of old Ollama models.
    pub const PROMPT: &str = "application/vnd.ollama.image.prompt";
    /// Legacy embedding layer of old Ollama models.
    pub const EMBED: &str = "application/vnd.ollama.image.embed";
    /// One tensor of a safetensors (MLX) model.
    pub const TENSOR: &str = "application/vnd.ollama.image.tensor";
    /// A config file of a safetensors (MLX) model.
    pub const JSON: &str = "application/vnd.ollama.image.json";
    /// HyperLlama's: weights outside the store (a safetensors folder or a Hugging Face id),
    /// as a small JSON blob ([`crate::reference::ModelReference`]).
    pub const REFERENCE: &str = "application/vnd.hyperllama.model.reference";
}

/// Why bytes are not a manifest or config.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The JSON does not have the expected shape.
    #[error("invalid manifest JSON")]
    Json(#[source] serde_json::Error),
    /// `schemaVersion` is not 2.
    #[error("unsupported manifest schemaVersion {0} (expected 2)")]
    SchemaVersion(u64),
    /// The config blob is not valid JSON of the expected shape.
    #[error("invalid model config JSON")]
    ConfigJson(#[source] serde_json::Error),
}

/// A Docker distribution v2 manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u64,
    /// Normally [`MANIFEST_MEDIA_TYPE`].
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// The config blob.
    pub config: Layer,
    /// The content blobs, in order.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub layers: Vec<Layer>,
    /// Fields this version does not know, kept for writing back.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One blob reference in a manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Layer {
    /// What the blob holds (see [`media_type`]).
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// The blob's digest.
    pub digest: BlobDigest,
    /// The blob's size in bytes.
    pub size: u64,
    /// The model this layer was taken from, if any (Ollama's `from`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from: String,
    /// A tensor or file name (safetensors models only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Fields this version does not know, kept for writing back.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Layer {
    /// A layer with just a media type, digest and size.
    pub fn new(media_type: &str, digest: BlobDigest, size: u64) -> Self {
        Layer {
            media_type: media_type.to_owned(),
            digest,
            size,
            from: String::new(),
            name: String::new(),
            extra: Map::new(),
        }
    }
}

impl Manifest {
    /// A v2 manifest with the given config and layers.
    pub fn new(config: Layer, layers: Vec<Layer>) -> Self {
        Manifest {
            schema_version: 2,
            media_type: MANIFEST_MEDIA_TYPE.to_owned(),
            config,
            layers,
            extra: Map::new(),
        }
    }

    /// Parses a manifest file's bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ManifestError> {
        let manifest: Manifest = serde_json::from_slice(bytes).map_err(ManifestError::Json)?;
        if manifest.schema_version != 2 {
            return Err(ManifestError::SchemaVersion(manifest.schema_version));
        }
        Ok(manifest)
    }

    /// The bytes Ollama would write for this manifest (Go's `json.Encoder` output).
    pub fn to_json(&self) -> Vec<u8> {
        go_json(self)
    }

    /// The total size of the config and all layers, as Ollama's `Manifest.Size`.
    pub fn total_size(&self) -> u64 {
        self.layers
            .iter()
            .fold(self.config.size, |sum, l| sum.saturating_add(l.size))
    }

    /// The first layer of `media_type`.
    pub fn layer(&self, media_type: &str) -> Option<&Layer> {
        self.layers.iter().find(|l| l.media_type == media_type)
    }

    /// All layers of `media_type`, in order.
    pub fn layers_of<'a>(&'a self, media_type: &'a str) -> impl Iterator<Item = &'a Layer> + 'a {
        self.layers
            .iter()
            .filter(move |l| l.media_type == media_type)
    }

    /// The GGUF weights layer.
    pub fn model_layer(&self) -> Option<&Layer> {
        self.layer(media_type::MODEL)
    }

    /// The reference layer of a model whose weights stay outside the store.
    pub fn reference_layer(&self) -> Option<&Layer> {
        self.layer(media_type::REFERENCE)
    }

    /// Every blob this manifest needs: the config, then the layers.
    pub fn digests(&self) -> impl Iterator<Item = BlobDigest> + '_ {
        std::iter::once(self.config.digest).chain(self.layers.iter().map(|l| l.digest))
    }
}

/// Ollama's model config (`types/model/config.go` `ConfigV2`), the JSON in the config blob.
///
/// Fields follow Go's order and `omitempty` rules: empty strings, zero numbers, empty lists
/// and absent structs are left out where Go leaves them out.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// `gguf` (or `safetensors` for MLX models).
    #[serde(default)]
    pub model_format: String,
    /// The architecture family, e.g. `llama` (`general.architecture`).
    #[serde(default)]
    pub model_family: String,
    /// All families (the model's, then adapters' or projectors'); `null` when unset, as Go.
    #[serde(default)]
    pub model_families: Option<Vec<String>>,
    /// The parameter size label, e.g. `8.0B` (Ollama's "Parameter Size").
    #[serde(default)]
    pub model_type: String,
    /// The quantization label, e.g. `Q4_K_M` (Ollama's "Quantization Level").
    #[serde(default)]
    pub file_type: String,
    /// Ollama's prompt renderer name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub renderer: String,
    /// Ollama's output parser name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub parser: String,
    /// The minimum Ollama version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub requires: String,
    /// The host of a remote (cloud) model.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub remote_host: String,
    /// The name of a remote (cloud) model.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub remote_model: String,
    /// Capabilities of a remote model.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub capabilities: Vec<String>,
    /// The context length of a remote model.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub context_length: u64,
    /// The embedding length of a remote model.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub embedding_length: u64,
    /// The base model's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub base_name: String,
    /// The draft model stored in the same manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft: Option<DraftConfig>,
    /// Required by the image spec; Ollama writes the host's (e.g. `amd64`).
    #[serde(default)]
    pub architecture: String,
    /// Required by the image spec; Ollama writes the host's (e.g. `linux`).
    #[serde(default)]
    pub os: String,
    /// The layer list older Ollama versions and the registry write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<RootFs>,
    /// Fields this version does not know, kept for writing back.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Ollama's `Draft`: a draft model kept in the same manifest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DraftConfig {
    /// The draft's format, e.g. `gguf`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model_format: String,
    /// The draft's architecture.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub architecture: String,
    /// The prefix of the draft's tensors when they share a blob with the main model.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tensor_prefix: String,
    /// The draft's config file name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub config: String,
}

/// The image spec's `rootfs`: `{"type":"layers","diff_ids":[...]}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The layers' digests.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub diff_ids: Vec<String>,
}

impl ModelConfig {
    /// Parses a config blob.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ManifestError> {
        serde_json::from_slice(bytes).map_err(ManifestError::ConfigJson)
    }

    /// The bytes Ollama would write for this config.
    pub fn to_json(&self) -> Vec<u8> {
        go_json(self)
    }
}

/// Go's `omitempty` for numbers.
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Reads a JSON `null` (Go's nil slice) as an empty list.
fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// Serialises like Go's `json.NewEncoder(w).Encode(v)`: compact, HTML-sensitive characters
/// escaped as `\u00XX`, U+2028/U+2029 escaped, and a trailing newline.
///
/// The escaped characters can only occur inside JSON strings, so replacing them everywhere
/// in serde_json's output is exact.
pub fn go_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // Serialising these plain structs and maps cannot fail: all keys are strings.
    let compact = serde_json::to_string(value).unwrap_or_default();
    let mut out = String::with_capacity(compact.len() + 1);
    for c in compact.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('\n');
    out.into_bytes()
}

#[cfg(test)]
mod tests;
