//! Creating a model from a Modelfile: what Ollama's `ollama create` and `POST /api/create` do,
//! on the local store.
//!
//! [`create_model`] turns a parsed [`Modelfile`] into blobs and a manifest:
//!
//! 1. `FROM` is a GGUF file (a path relative to the Modelfile's directory, or absolute) or
//!    the name of a model in the store. A file is checked with our GGUF reader *before* it is
//!    copied, so a corrupt file leaves nothing behind; it is then copied into `blobs/` (once:
//!    blobs are deduplicated by digest) and parsed again from the blob. A model name
//!    contributes all of that model's layers (their `from` set to its name) and its config.
//!    A folder with `config.json` and `*.safetensors`, or `hf:ORG/NAME`, becomes a
//!    *reference* layer instead of weights ([`crate::reference`]): the folder is checked
//!    (config and safetensors headers), never copied, and recorded by its absolute path.
//! 2. `ADAPTER` files become adapter layers, `DRAFT` (a GGUF file or a model name, whose
//!    weights are used) the draft layer. A draft whose token table or BOS/EOS ids differ from
//!    the weights' is refused ([`CreateError::DraftVocabulary`]) before anything is copied.
//! 3. `TEMPLATE`, `SYSTEM` and `MESSAGE` replace the base model's layers of the same kind;
//!    `LICENSE` adds to them; `PARAMETER`s are merged into the base's params (the Modelfile
//!    wins), as Ollama's `setParameters` does.
//! 4. The config blob (Ollama's `ConfigV2`: format, family, parameter size, quantization)
//!    and, last, the manifest are written.
//!
//! Progress is reported as Ollama's client prints it ([`CreateEvent::status`]). This module
//! knows nothing about the SQLite index: the caller indexes the new model afterwards
//! ([`crate::registry::Registry::index`]). It is synchronous file IO; an async caller runs it
//! on a blocking thread.
//!
//! # Invariants
//!
//! - Nothing is visible under a name before every blob is present: the manifest is written
//!   last and atomically by [`Store::write_manifest`]. A failure or a kill at any point
//!   leaves at most unreferenced blobs or temporary files, which [`Store::prune`] collects.
//! - A file that our GGUF reader refuses is never copied into the store.
//! - Blobs that already exist are reused (and touched, so a concurrent prune keeps them),
//!   never rewritten.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::digest::{BlobDigest, DigestWriter};
use crate::gguf::{self, GgufError, GgufFile};
use crate::manifest::CONFIG_MEDIA_TYPE;
use crate::manifest::{go_json, media_type, Layer, Manifest, ModelConfig, RootFs};
use crate::modelfile::{Command, Modelfile, Parameters};
use crate::name::{ModelName, NameError};
use crate::reference::{inspect_folder, parse_hf_id, FolderFacts, ModelReference, ReferenceError};
use crate::store::{Store, StoreError, StoredManifest};

/// Why a model could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    /// A file named by `FROM`, `ADAPTER` or `DRAFT` does not exist.
    #[error("{instruction} file {} not found", path.display())]
    FileNotFound {
        /// `FROM`, `ADAPTER` or `DRAFT`.
        instruction: &'static str,
        /// The path, resolved against the Modelfile's directory.
        path: PathBuf,
    },
    /// `ADAPTER` or `DRAFT` names a directory (only `FROM` takes a safetensors folder).
    #[error("{} is a directory: only GGUF files can be used here", path.display())]
    Directory {
        /// The directory.
        path: PathBuf,
    },
    /// A value is neither an existing file nor a valid model name.
    #[error("{instruction} {value:?} is neither an existing file nor a model name")]
    BadReference {
        /// `FROM` or `DRAFT`.
        instruction: &'static str,
        /// The value as written.
        value: String,
        /// Why it is not a model name.
        #[source]
        source: NameError,
    },
    /// `FROM` or `DRAFT` names a model the store does not have.
    #[error("base model '{}' not found", name.display_shortest())]
    BaseModelNotFound {
        /// The name.
        name: Box<ModelName>,
    },
    /// A base model has no GGUF weights layer.
    #[error("base model '{}' has no model layer", name.display_shortest())]
    NoModelLayer {
        /// The name.
        name: Box<ModelName>,
    },
    /// A file is not a GGUF model our reader accepts.
    #[error("{} is not a valid GGUF file", path.display())]
    InvalidGguf {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: GgufError,
    },
    /// The base model's params layer is not a JSON object.
    #[error("the params layer {digest} of the base model is invalid")]
    BadParams {
        /// The layer's blob.
        digest: BlobDigest,
        /// Why it does not parse.
        #[source]
        source: serde_json::Error,
    },
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The `DRAFT` model's vocabulary differs from the `FROM` model's.
    #[error("DRAFT {draft} cannot draft for FROM {from}: {reason}; a draft model needs the same vocabulary")]
    DraftVocabulary {
        /// `DRAFT` as written.
        draft: String,
        /// `FROM` as written.
        from: String,
        /// The first difference found.
        reason: String,
    },
    /// A safetensors folder or Hugging Face id cannot be referenced.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// `DRAFT` names a model whose weights are not GGUF.
    #[error("DRAFT {value:?} is a {format} model: a draft must be GGUF")]
    DraftNotGguf {
        /// The value as written.
        value: String,
        /// Its format.
        format: &'static str,
    },
    /// The store refused an operation.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One step of a create, as Ollama's client prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CreateEvent {
    /// Reading the Modelfile's inputs.
    GatheringComponents,
    /// Copying a file into the store: `completed` of `total` bytes.
    CopyingFile {
        /// The file's digest.
        digest: BlobDigest,
        /// Its size.
        total: u64,
        /// Bytes copied so far.
        completed: u64,
    },
    /// Reading the GGUF metadata of the weights.
    ParsingGguf,
    /// A layer whose blob the store already had.
    UsingExistingLayer(BlobDigest),
    /// A layer whose blob was just written.
    CreatingNewLayer(BlobDigest),
    /// Writing the manifest.
    WritingManifest,
    /// Done.
    Success,
}

impl CreateEvent {
    /// The status text Ollama prints (`copying file sha256:<hex> 42%`, ...).
    pub fn status(&self) -> String {
        match self {
            CreateEvent::GatheringComponents => "gathering model components".to_owned(),
            CreateEvent::CopyingFile {
                digest,
                total,
                completed,
            } => {
                let percent = completed
                    .saturating_mul(100)
                    .checked_div(*total)
                    .unwrap_or(100);
                format!("copying file {digest} {percent}%")
            }
            CreateEvent::ParsingGguf => "parsing GGUF".to_owned(),
            CreateEvent::UsingExistingLayer(d) => format!("using existing layer {d}"),
            CreateEvent::CreatingNewLayer(d) => format!("creating new layer {d}"),
            CreateEvent::WritingManifest => "writing manifest".to_owned(),
            CreateEvent::Success => "success".to_owned(),
        }
    }
}

/// Ollama's parameter size label (`format.HumanNumber`): `134.52M`, `8.0B`, `7B`, `512K`.
pub fn parameter_size_label(n: u64) -> String {
    const THOUSAND: f64 = 1e3;
    const MILLION: f64 = 1e6;
    const BILLION: f64 = 1e9;
    let x = n as f64;
    if x >= BILLION {
        let v = x / BILLION;
        if v.fract() == 0.0 {
            format!("{v:.0}B")
        } else {
            format!("{v:.1}B")
        }
    } else if x >= MILLION {
        let v = x / MILLION;
        if v.fract() == 0.0 {
            format!("{v:.0}M")
        } else {
            format!("{v:.2}M")
        }
    } else if x >= THOUSAND {
        format!("{:.0}K", x / THOUSAND)
    } else {
        n.to_string()
    }
}

/// Where a `FROM` or `DRAFT` value points.
enum Source {
    /// A GGUF file.
    File(PathBuf),
    /// A model in the store.
    Model(Box<StoredManifest>),
    /// Weights outside the store, with the facts for the config.
    Reference(ModelReference, FolderFacts),
}

/// Creates (or replaces) the model `name` from `modelfile`. Relative file paths are resolved
/// against `base_dir` (the Modelfile's directory). Returns the manifest written.
pub fn create_model(
    store: &Store,
    name: &ModelName,
    modelfile: &Modelfile,
    base_dir: &Path,
    progress: &mut dyn FnMut(CreateEvent),
) -> Result<StoredManifest, CreateError> {
    progress(CreateEvent::GatheringComponents);
    let from = modelfile.from().unwrap_or_default();
    let mut layers: Vec<(Layer, bool)> = Vec::new();
    // The weights' blob, for the draft model's vocabulary check.
    let weights;
    let mut config;
    match locate(store, base_dir, "FROM", from)? {
        Source::File(path) => {
            check_gguf(&path)?;
            let (digest, size) = import(store, &path, progress)?;
            progress(CreateEvent::ParsingGguf);
            let blob_path = store.blob_path(&digest);
            let file = gguf::read_file(&blob_path).map_err(|source| CreateError::InvalidGguf {
                path: blob_path.clone(),
                source,
            })?;
            config = config_for(&file);
            weights = Some(blob_path);
            layers.push((Layer::new(media_type::MODEL, digest, size), false));
        }
        Source::Reference(reference, facts) => {
            config = reference_config(&reference, &facts);
            weights = None;
            let json = reference.to_json();
            layers.push(text_layer(store, media_type::REFERENCE, &json)?);
        }
        Source::Model(base) => {
            if base.manifest.model_layer().is_none() && base.manifest.reference_layer().is_none() {
                return Err(CreateError::NoModelLayer {
                    name: Box::new(base.name),
                });
            }
            let base_name = base.name.display_shortest();
            weights = base
                .manifest
                .model_layer()
                .map(|l| store.blob_path(&l.digest));
            config = read_config(store, &base.manifest).unwrap_or_default();
            for layer in &base.manifest.layers {
                // Touched so that a prune running meanwhile keeps it.
                store.touch_blob(&layer.digest)?;
                let mut layer = layer.clone();
                layer.from.clone_from(&base_name);
                layers.push((layer, false));
            }
        }
    }

    let mut params = modelfile.parameters();
    let mut messages = Vec::new();
    for command in &modelfile.commands {
        match command {
            Command::Adapter(value) => {
                let path = existing_file(base_dir, "ADAPTER", value)?;
                check_gguf(&path)?;
                let (digest, size) = import(store, &path, progress)?;
                layers.push((Layer::new(media_type::ADAPTER, digest, size), false));
            }
            Command::License(text) => {
                layers.push(text_layer(store, media_type::LICENSE, text.as_bytes())?);
            }
            Command::Message { role, content } => messages.push(serde_json::json!({
                "role": role.as_str(),
                "content": content,
            })),
            _ => {}
        }
    }
    if let Some(value) = modelfile.draft() {
        let layer = match locate(store, base_dir, "DRAFT", value)? {
            Source::File(path) => {
                check_gguf(&path)?;
                if let Some(w) = &weights {
                    check_draft_vocabulary(w, &path, value, from)?;
                }
                let (digest, size) = import(store, &path, progress)?;
                Layer::new(media_type::DRAFT, digest, size)
            }
            Source::Reference(reference, _) => {
                return Err(CreateError::DraftNotGguf {
                    value: value.to_owned(),
                    format: reference.format(),
                })
            }
            Source::Model(draft) => {
                let Some(d) = draft.manifest.model_layer() else {
                    return Err(CreateError::NoModelLayer {
                        name: Box::new(draft.name),
                    });
                };
                if let Some(w) = &weights {
                    check_draft_vocabulary(w, &store.blob_path(&d.digest), value, from)?;
                }
                store.touch_blob(&d.digest)?;
                Layer::new(media_type::DRAFT, d.digest, d.size)
            }
        };
        replace(&mut layers, media_type::DRAFT, Some((layer, false)));
    }
    if let Some(template) = modelfile.template() {
        let layer = text_layer(store, media_type::TEMPLATE, template.as_bytes())?;
        replace(&mut layers, media_type::TEMPLATE, Some(layer));
    }
    if let Some(system) = modelfile.system() {
        let layer = if system.is_empty() {
            None
        } else {
            Some(text_layer(store, media_type::SYSTEM, system.as_bytes())?)
        };
        replace(&mut layers, media_type::SYSTEM, layer);
    }
    if !messages.is_empty() {
        let layer = text_layer(store, media_type::MESSAGES, &go_json(&messages))?;
        replace(&mut layers, media_type::MESSAGES, Some(layer));
    }
    merge_base_params(store, &layers, &mut params)?;
    if !params.is_empty() {
        let layer = text_layer(store, media_type::PARAMS, &params.to_json())?;
        replace(&mut layers, media_type::PARAMS, Some(layer));
    }

    for (layer, created) in &layers {
        progress(if *created {
            CreateEvent::CreatingNewLayer(layer.digest)
        } else {
            CreateEvent::UsingExistingLayer(layer.digest)
        });
    }
    let layers: Vec<Layer> = layers.into_iter().map(|(l, _)| l).collect();
    config.rootfs = Some(RootFs {
        kind: "layers".to_owned(),
        diff_ids: layers.iter().map(|l| l.digest.to_string()).collect(),
    });
    let config_bytes = config.to_json();
    let config_blob = store.write_blob_from_reader(
        &mut config_bytes.as_slice(),
        Some(&digest_of(&config_bytes)),
    )?;
    let config_layer = Layer::new(CONFIG_MEDIA_TYPE, config_blob.digest, config_blob.size);
    progress(CreateEvent::WritingManifest);
    store.write_manifest(name, &Manifest::new(config_layer, layers))?;
    let stored = store.read_manifest(name)?;
    progress(CreateEvent::Success);
    Ok(stored)
}

/// The digest of in-memory bytes.
fn digest_of(bytes: &[u8]) -> BlobDigest {
    BlobDigest::of_bytes(bytes)
}

/// Replaces every layer of `media_type` with `layer` (appended last), or removes them.
fn replace(layers: &mut Vec<(Layer, bool)>, media_type: &str, layer: Option<(Layer, bool)>) {
    layers.retain(|(l, _)| l.media_type != media_type);
    layers.extend(layer);
}

/// Stores a small text or JSON layer; the flag says whether its blob is new.
fn text_layer(store: &Store, media_type: &str, bytes: &[u8]) -> Result<(Layer, bool), CreateError> {
    let digest = digest_of(bytes);
    let blob = store.write_blob_from_reader(&mut &bytes[..], Some(&digest))?;
    Ok((Layer::new(media_type, blob.digest, blob.size), blob.created))
}

/// Adds the base model's parameters that the Modelfile does not set.
fn merge_base_params(
    store: &Store,
    layers: &[(Layer, bool)],
    params: &mut Parameters,
) -> Result<(), CreateError> {
    for (layer, _) in layers
        .iter()
        .filter(|(l, _)| l.media_type == media_type::PARAMS)
    {
        let path = store.blob_path(&layer.digest);
        let bytes = std::fs::read(&path).map_err(|source| CreateError::Io {
            path: path.clone(),
            source,
        })?;
        let base = Parameters::from_json(&bytes).map_err(|source| CreateError::BadParams {
            digest: layer.digest,
            source,
        })?;
        params.merge_missing(&base);
    }
    Ok(())
}

/// The config of a base model, if its config blob is readable.
fn read_config(store: &Store, manifest: &Manifest) -> Option<ModelConfig> {
    let bytes = std::fs::read(store.blob_path(&manifest.config.digest)).ok()?;
    ModelConfig::from_json(&bytes).ok()
}

/// Ollama's config for GGUF weights.
fn config_for(file: &GgufFile) -> ModelConfig {
    let family = file.architecture().unwrap_or_default().to_owned();
    ModelConfig {
        model_format: "gguf".to_owned(),
        model_families: Some(vec![family.clone()]),
        model_family: family,
        model_type: parameter_size_label(file.parameter_count()),
        file_type: file.quantization_label().unwrap_or_default().to_owned(),
        architecture: go_arch().to_owned(),
        os: std::env::consts::OS.to_owned(),
        ..ModelConfig::default()
    }
}

/// The config of a referenced model: its format, and what the folder said.
fn reference_config(reference: &ModelReference, facts: &FolderFacts) -> ModelConfig {
    let family = facts.family.clone();
    ModelConfig {
        model_format: reference.format().to_owned(),
        model_families: (!family.is_empty()).then(|| vec![family.clone()]),
        model_family: family,
        model_type: reference
            .parameter_count()
            .map(parameter_size_label)
            .unwrap_or_default(),
        file_type: facts.dtype.clone(),
        context_length: facts.context_length.unwrap_or(0),
        embedding_length: facts.embedding_length.unwrap_or(0),
        architecture: go_arch().to_owned(),
        os: std::env::consts::OS.to_owned(),
        ..ModelConfig::default()
    }
}

/// The machine architecture as Go names it (Ollama writes `runtime.GOARCH`).
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// Resolves a `FROM`/`DRAFT` value: `hf:ORG/NAME`, an existing file or safetensors folder
/// (relative to `base_dir`), else a model name in the store. A value that looks like a path
/// (`.gguf`, a leading `.`, `/` or `~`) but names nothing is reported as a missing file.
fn locate(
    store: &Store,
    base_dir: &Path,
    instruction: &'static str,
    value: &str,
) -> Result<Source, CreateError> {
    if let Some(id) = parse_hf_id(value) {
        let reference = ModelReference::HuggingFace { id: id? };
        return Ok(Source::Reference(reference, FolderFacts::default()));
    }
    let path = resolve_path(base_dir, value);
    if path.is_dir() {
        let facts = inspect_folder(&path)?;
        let path = std::fs::canonicalize(&path).map_err(|source| CreateError::Io {
            path: path.clone(),
            source,
        })?;
        let reference = ModelReference::Safetensors {
            path,
            size: facts.size,
            parameter_count: facts.parameter_count,
        };
        return Ok(Source::Reference(reference, facts));
    }
    if path.is_file() {
        return Ok(Source::File(path));
    }
    let looks_like_path = value.to_ascii_lowercase().ends_with(".gguf")
        || value.starts_with(['.', '/', '~'])
        || value.contains('\\');
    if looks_like_path {
        return Err(CreateError::FileNotFound { instruction, path });
    }
    let name = ModelName::parse(value).map_err(|source| CreateError::BadReference {
        instruction,
        value: value.to_owned(),
        source,
    })?;
    match store.read_manifest(&name) {
        Ok(stored) => Ok(Source::Model(Box::new(stored))),
        Err(StoreError::ModelNotFound { .. }) => Err(CreateError::BaseModelNotFound {
            name: Box::new(name),
        }),
        Err(e) => Err(e.into()),
    }
}

/// An existing file named by `instruction`.
fn existing_file(
    base_dir: &Path,
    instruction: &'static str,
    value: &str,
) -> Result<PathBuf, CreateError> {
    let path = resolve_path(base_dir, value);
    if path.is_dir() {
        return Err(CreateError::Directory { path });
    }
    if !path.is_file() {
        return Err(CreateError::FileNotFound { instruction, path });
    }
    Ok(path)
}

/// `value` relative to `base_dir` (absolute paths stay as they are).
fn resolve_path(base_dir: &Path, value: &str) -> PathBuf {
    base_dir.join(value)
}

/// Refuses a file our GGUF reader does not accept.
fn check_gguf(path: &Path) -> Result<(), CreateError> {
    gguf::read_file(path)
        .map(drop)
        .map_err(|source| CreateError::InvalidGguf {
            path: path.to_path_buf(),
            source,
        })
}

/// Refuses a draft model whose token table (`tokenizer.ggml.tokens`) or BOS/EOS ids differ
/// from the model's. A file without a token table passes: the engine checks the loaded
/// vocabularies again.
fn check_draft_vocabulary(
    weights: &Path,
    draft: &Path,
    draft_value: &str,
    from_value: &str,
) -> Result<(), CreateError> {
    let read = |path: &Path| {
        gguf::read_file(path).map_err(|source| CreateError::InvalidGguf {
            path: path.to_path_buf(),
            source,
        })
    };
    let (ours, theirs) = (read(weights)?, read(draft)?);
    let mismatch = |reason: String| {
        Err(CreateError::DraftVocabulary {
            draft: draft_value.to_owned(),
            from: from_value.to_owned(),
            reason,
        })
    };
    let tokens = |f: &GgufFile| match f.get("tokenizer.ggml.tokens") {
        Some(gguf::Value::Array(gguf::Array::String(t))) => Some(t.clone()),
        _ => None,
    };
    if let (Some(a), Some(b)) = (tokens(&ours), tokens(&theirs)) {
        if a.len() != b.len() {
            return mismatch(format!(
                "its vocabulary has {} tokens, the model's {}",
                b.len(),
                a.len()
            ));
        }
        if let Some(i) = a.iter().zip(&b).position(|(x, y)| x != y) {
            return mismatch(format!(
                "token {i} is {:?} in the draft model but {:?} in the model",
                b[i], a[i]
            ));
        }
    }
    for key in ["tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"] {
        if let (Some(a), Some(b)) = (ours.get_u64(key), theirs.get_u64(key)) {
            if a != b {
                return mismatch(format!("its {key} is {b}, the model's {a}"));
            }
        }
    }
    Ok(())
}

/// Copies a file into the store (once per digest), reporting progress while it copies.
fn import(
    store: &Store,
    path: &Path,
    progress: &mut dyn FnMut(CreateEvent),
) -> Result<(BlobDigest, u64), CreateError> {
    let open = || {
        File::open(path).map_err(|source| CreateError::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    let mut hasher = DigestWriter::new();
    io::copy(&mut open()?, &mut hasher).map_err(|source| CreateError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let total = hasher.n_bytes();
    let digest = hasher.finish();
    if store.has_blob(&digest) {
        let blob = store.write_blob_from_reader(&mut io::empty(), Some(&digest))?;
        return Ok((blob.digest, blob.size));
    }
    let mut reader = ProgressReader {
        inner: open()?,
        digest,
        total,
        completed: 0,
        last_percent: None,
        progress,
    };
    let blob = store.write_blob_from_reader(&mut reader, Some(&digest))?;
    Ok((blob.digest, blob.size))
}

/// Reports [`CreateEvent::CopyingFile`] at each whole percent read.
struct ProgressReader<'a> {
    inner: File,
    digest: BlobDigest,
    total: u64,
    completed: u64,
    last_percent: Option<u64>,
    progress: &'a mut dyn FnMut(CreateEvent),
}

impl Read for ProgressReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.completed = self.completed.saturating_add(n as u64);
        let percent = self
            .completed
            .saturating_mul(100)
            .checked_div(self.total)
            .unwrap_or(100);
        if self.last_percent != Some(percent) && (n > 0 || self.last_percent.is_none()) {
            self.last_percent = Some(percent);
            (self.progress)(CreateEvent::CopyingFile {
                digest: self.digest,
                total: self.total,
                completed: self.completed,
            });
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
