//! Models whose weights stay outside the store: a safetensors folder (a Hugging Face
//! checkout: `config.json` and `*.safetensors`) or a Hugging Face id, both served by an
//! external engine (vLLM, SGLang, MAX) that reads them itself.
//!
//! Such a model's manifest has, instead of a GGUF weights layer, one *reference* layer
//! ([`crate::manifest::media_type::REFERENCE`]): a small JSON blob with the kind and the
//! absolute folder path or the id, e.g. `{"kind":"safetensors","path":"/models/qwen",
//! "size":988097824,"parameter_count":494032768}` or `{"kind":"huggingface","id":"Qwen/Qwen2.5-0.5B"}`.
//! A Modelfile names a folder as `FROM <folder>` and an id as `FROM hf:ORG/NAME`
//! ([`HF_PREFIX`]); `hf.co/ORG/NAME` is not an id here, because that is a model name
//! (GGUF pulled from hf.co's registry endpoint).
//!
//! [`inspect_folder`] checks a folder before it is referenced and reads what `show` and
//! `list` print: `config.json` (family, context length, width) and every safetensors header
//! (parameter count, dominant dtype), never the tensors.
//!
//! # Invariants
//! - A referenced folder had a `config.json` object and at least one safetensors file whose
//!   header parsed when the model was created; the path is absolute.
//! - A Hugging Face id is `ORG/NAME`, each part 1–96 of `[A-Za-z0-9._-]`, not starting or
//!   ending with `.` or `-` and without `..` or `--`.
//! - `ModelReference::from_json(&r.to_json())` equals `r`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How a Modelfile's `FROM` names a Hugging Face id: `hf:ORG/NAME`.
pub const HF_PREFIX: &str = "hf:";

/// Safetensors headers larger than this are refused (the format's own limit is 100 MB).
const MAX_HEADER: u64 = 100 << 20;

/// Why a folder or an id cannot be referenced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReferenceError {
    /// The folder has no `config.json`.
    #[error("{} has no config.json: a safetensors model folder needs config.json and *.safetensors (a Hugging Face checkout)", path.display())]
    NoConfig {
        /// The folder.
        path: PathBuf,
    },
    /// `config.json` is not a JSON object.
    #[error("{} is not a JSON object", path.display())]
    BadConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The folder has no `*.safetensors` file.
    #[error("{} has no *.safetensors file: a safetensors model folder needs config.json and *.safetensors", path.display())]
    NoSafetensors {
        /// The folder.
        path: PathBuf,
    },
    /// A safetensors file's header is not valid.
    #[error("{} is not a valid safetensors file: {reason}", path.display())]
    BadSafetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `hf:` is followed by something that is not `ORG/NAME`.
    #[error("{value:?} is not a Hugging Face id: {reason} (write FROM hf:ORG/NAME)")]
    BadHfId {
        /// The value as written.
        value: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Weights outside the store, as the reference layer records them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum ModelReference {
    /// A folder with `config.json` and `*.safetensors`.
    #[serde(rename = "safetensors")]
    Safetensors {
        /// The folder, absolute.
        path: PathBuf,
        /// Bytes of its safetensors files when the model was created.
        #[serde(default)]
        size: u64,
        /// Parameters (tensor elements) in its safetensors headers.
        #[serde(default)]
        parameter_count: u64,
    },
    /// A Hugging Face repository id, fetched by the engine itself.
    #[serde(rename = "huggingface")]
    HuggingFace {
        /// `ORG/NAME`.
        id: String,
    },
}

impl ModelReference {
    /// The model's format as `show` and `/api/tags` print it: `safetensors` or `huggingface`.
    pub fn format(&self) -> &'static str {
        match self {
            ModelReference::Safetensors { .. } => "safetensors",
            ModelReference::HuggingFace { .. } => "huggingface",
        }
    }

    /// What an engine command's `{model}` becomes: the folder path or the id.
    pub fn location(&self) -> String {
        match self {
            ModelReference::Safetensors { path, .. } => path.display().to_string(),
            ModelReference::HuggingFace { id } => id.clone(),
        }
    }

    /// The `FROM` value that recreates this reference.
    pub fn modelfile_from(&self) -> String {
        match self {
            ModelReference::Safetensors { path, .. } => path.display().to_string(),
            ModelReference::HuggingFace { id } => format!("{HF_PREFIX}{id}"),
        }
    }

    /// Bytes of the referenced weights, when known (0 for an id).
    pub fn size(&self) -> u64 {
        match self {
            ModelReference::Safetensors { size, .. } => *size,
            ModelReference::HuggingFace { .. } => 0,
        }
    }

    /// Parameters of the referenced weights, when known.
    pub fn parameter_count(&self) -> Option<u64> {
        match self {
            ModelReference::Safetensors {
                parameter_count, ..
            } => Some(*parameter_count).filter(|&n| n > 0),
            ModelReference::HuggingFace { .. } => None,
        }
    }

    /// The layer blob's bytes.
    pub fn to_json(&self) -> Vec<u8> {
        crate::manifest::go_json(self)
    }

    /// Parses a layer blob.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// The id of a `FROM hf:ORG/NAME` value: `None` when the value does not start with
/// [`HF_PREFIX`], an error when what follows is not a valid id.
pub fn parse_hf_id(value: &str) -> Option<Result<String, ReferenceError>> {
    let id = value.strip_prefix(HF_PREFIX)?;
    let bad = |reason| {
        Some(Err(ReferenceError::BadHfId {
            value: value.to_owned(),
            reason,
        }))
    };
    let Some((org, name)) = id.split_once('/') else {
        return bad("it needs ORG/NAME");
    };
    for part in [org, name] {
        if part.is_empty() || part.len() > 96 {
            return bad("each part must be 1 to 96 characters");
        }
        if !part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return bad("only letters, digits, '-', '_' and '.' are allowed, with one '/'");
        }
        if part.starts_with(['-', '.'])
            || part.ends_with(['-', '.'])
            || part.contains("..")
            || part.contains("--")
        {
            return bad("a part may not start or end with '-' or '.', nor hold '..' or '--'");
        }
    }
    Some(Ok(id.to_owned()))
}

/// What a safetensors folder says about its model.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FolderFacts {
    /// Bytes of the safetensors files.
    pub size: u64,
    /// Tensor elements in their headers.
    pub parameter_count: u64,
    /// `model_type` of `config.json` (e.g. `llama`), else its first `architectures` entry.
    pub family: String,
    /// The dtype most elements have (e.g. `BF16`).
    pub dtype: String,
    /// `max_position_embeddings`, when given.
    pub context_length: Option<u64>,
    /// `hidden_size`, when given.
    pub embedding_length: Option<u64>,
}

/// Checks a safetensors folder and reads its facts (see the module docs).
pub fn inspect_folder(dir: &Path) -> Result<FolderFacts, ReferenceError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ReferenceError::Io { path, source }
    };
    let config_path = dir.join("config.json");
    if !config_path.is_file() {
        return Err(ReferenceError::NoConfig {
            path: dir.to_path_buf(),
        });
    }
    let text = std::fs::read(&config_path).map_err(io(&config_path))?;
    let config: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&text)
        .map_err(|source| ReferenceError::BadConfig {
            path: config_path.clone(),
            source,
        })?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors") && p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ReferenceError::NoSafetensors {
            path: dir.to_path_buf(),
        });
    }
    let mut facts = FolderFacts::default();
    let mut by_dtype: BTreeMap<String, u64> = BTreeMap::new();
    for file in &files {
        facts.size += std::fs::metadata(file).map_err(io(file))?.len();
        for (dtype, n) in safetensors_tensors(file)? {
            facts.parameter_count = facts.parameter_count.saturating_add(n);
            *by_dtype.entry(dtype).or_default() += n;
        }
    }
    facts.dtype = by_dtype
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(d, _)| d)
        .unwrap_or_default();
    let text = |k: &str| config.get(k).and_then(serde_json::Value::as_str);
    facts.family = text("model_type")
        .or_else(|| {
            config
                .get("architectures")
                .and_then(|a| a.get(0))
                .and_then(serde_json::Value::as_str)
        })
        .unwrap_or_default()
        .to_owned();
    facts.context_length = config
        .get("max_position_embeddings")
        .and_then(serde_json::Value::as_u64);
    facts.embedding_length = config
        .get("hidden_size")
        .and_then(serde_json::Value::as_u64);
    Ok(facts)
}

/// `(dtype, elements)` of every tensor in a safetensors file's header.
fn safetensors_tensors(path: &Path) -> Result<Vec<(String, u64)>, ReferenceError> {
    let bad = |reason: String| ReferenceError::BadSafetensors {
        path: path.to_path_buf(),
        reason,
    };
    let io = |source| ReferenceError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|_| bad("shorter than its 8-byte header length".into()))?;
    let n = u64::from_le_bytes(len);
    if n > MAX_HEADER || n > file_len.saturating_sub(8) {
        return Err(bad(format!(
            "header length {n} is larger than the file or 100 MB"
        )));
    }
    let mut header = vec![0u8; usize::try_from(n).unwrap_or(0)];
    file.read_exact(&mut header).map_err(io)?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| bad(format!("header is not JSON: {e}")))?;
    let mut out = Vec::new();
    for (name, tensor) in &header {
        if name == "__metadata__" {
            continue;
        }
        let dtype = tensor
            .get("dtype")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| bad(format!("tensor {name:?} has no dtype")))?;
        let shape = tensor
            .get("shape")
            .and_then(serde_json::Value::as_array)
            .ok_or_else(|| bad(format!("tensor {name:?} has no shape")))?;
        let mut elements: u64 = 1;
        for d in shape {
            let d = d
                .as_u64()
                .ok_or_else(|| bad(format!("tensor {name:?} has a bad shape")))?;
            elements = elements.saturating_mul(d);
        }
        out.push((dtype.to_owned(), elements));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid safetensors file with the given `(name, dtype, shape)` tensors (zeros).
    pub(crate) fn write_safetensors(path: &Path, tensors: &[(&str, &str, &[u64])]) {
        let mut header = serde_json::Map::new();
        let mut offset = 0u64;
        for (name, dtype, shape) in tensors {
            let size: u64 = shape.iter().product::<u64>() * 2;
            header.insert(
                (*name).into(),
                serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}),
            );
            offset += size;
        }
        let header = serde_json::to_vec(&header).expect("JSON");
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(&header);
        bytes.resize(bytes.len() + offset as usize, 0);
        std::fs::write(path, bytes).expect("written");
    }

    #[test]
    fn hf_ids_parse_and_bad_ones_say_why() {
        assert!(parse_hf_id("smollm2:135m").is_none());
        assert!(
            parse_hf_id("hf.co/org/name").is_none(),
            "a model name, not an id"
        );
        assert_eq!(
            parse_hf_id("hf:Qwen/Qwen2.5-0.5B-Instruct").map(|r| r.ok()),
            Some(Some("Qwen/Qwen2.5-0.5B-Instruct".into()))
        );
        assert_eq!(
            parse_hf_id("hf:meta-llama/Llama_3.1-8B").map(|r| r.ok()),
            Some(Some("meta-llama/Llama_3.1-8B".into()))
        );
        for bad in [
            "hf:",
            "hf:org",
            "hf:org/",
            "hf:/name",
            "hf:a/b/c",
            "hf:org/na me",
            "hf:-org/name",
            "hf:org/name.",
            "hf:org/a..b",
            "hf:org/a--b",
        ] {
            let err = parse_hf_id(bad)
                .expect("has the prefix")
                .expect_err(bad)
                .to_string();
            assert!(
                err.contains("is not a Hugging Face id") && err.contains("hf:ORG/NAME"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn references_round_trip_through_their_layer_json() {
        let folder = ModelReference::Safetensors {
            path: "/models/qwen".into(),
            size: 988,
            parameter_count: 494,
        };
        let json = folder.to_json();
        assert_eq!(
            String::from_utf8(json.clone()).expect("UTF-8"),
            "{\"kind\":\"safetensors\",\"path\":\"/models/qwen\",\"size\":988,\"parameter_count\":494}\n"
        );
        assert_eq!(ModelReference::from_json(&json).expect("parses"), folder);
        assert_eq!(folder.location(), "/models/qwen");
        assert_eq!(folder.modelfile_from(), "/models/qwen");
        assert_eq!(folder.format(), "safetensors");
        let id = ModelReference::HuggingFace {
            id: "Qwen/Qwen2.5-0.5B".into(),
        };
        let json = id.to_json();
        assert_eq!(
            String::from_utf8(json.clone()).expect("UTF-8"),
            "{\"kind\":\"huggingface\",\"id\":\"Qwen/Qwen2.5-0.5B\"}\n"
        );
        assert_eq!(ModelReference::from_json(&json).expect("parses"), id);
        assert_eq!(id.location(), "Qwen/Qwen2.5-0.5B");
        assert_eq!(id.modelfile_from(), "hf:Qwen/Qwen2.5-0.5B");
        assert!(ModelReference::from_json(b"{\"kind\":\"gguf\"}").is_err());
    }

    #[test]
    fn folders_need_config_and_valid_safetensors() {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let err = inspect_folder(d).expect_err("empty").to_string();
        assert!(err.contains("has no config.json"), "{err}");
        std::fs::write(
            d.join("config.json"),
            r#"{"model_type":"llama","architectures":["LlamaForCausalLM"],"max_position_embeddings":8192,"hidden_size":576}"#,
        )
        .expect("written");
        let err = inspect_folder(d).expect_err("no weights").to_string();
        assert!(err.contains("has no *.safetensors file"), "{err}");
        std::fs::write(
            d.join("model.safetensors"),
            b"\xff\xff\xff\xff\xff\xff\xff\x7f",
        )
        .expect("written");
        let err = inspect_folder(d).expect_err("bad header").to_string();
        assert!(err.contains("is not a valid safetensors file"), "{err}");
        write_safetensors(
            &d.join("model.safetensors"),
            &[
                ("embed.weight", "BF16", &[8, 4]),
                ("norm.weight", "F32", &[4]),
            ],
        );
        let facts = inspect_folder(d).expect("valid");
        assert_eq!(facts.parameter_count, 36);
        assert_eq!(facts.dtype, "BF16");
        assert_eq!(facts.family, "llama");
        assert_eq!(facts.context_length, Some(8192));
        assert_eq!(facts.embedding_length, Some(576));
        assert!(facts.size > 72, "{facts:?}");
        std::fs::write(d.join("config.json"), "[1]").expect("written");
        let err = inspect_folder(d).expect_err("not an object").to_string();
        assert!(err.contains("is not a JSON object"), "{err}");
    }
}
