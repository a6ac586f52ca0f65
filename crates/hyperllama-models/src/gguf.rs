//! GGUF metadata: reading the header, key-value metadata and tensor table of a model file.
//!
//! This module owns the GGUF format on the reading side ([`read_file`], [`parse`]) and a small
//! writer for tests and fixtures ([`GgufBuilder`]). It reads GGUF versions 2 and 3 (version 1,
//! with 32-bit counts, is refused), little-endian only, and never reads tensor data: a
//! multi-gigabyte model costs only the few megabytes its metadata takes (mostly the token
//! table).
//!
//! Layout: magic `GGUF`, `u32` version, `u64` tensor count, `u64` key-value count; the
//! key-value pairs (string key, `u32` value type, value); the tensor infos (string name,
//! `u32` n_dims, n_dims × `u64` dims, `u32` ggml type, `u64` offset); then the data section,
//! which starts at the next multiple of `general.alignment` (default 32) after the tensor
//! infos. Tensor offsets are relative to the data section.
//!
//! # Invariants
//!
//! - Parsing never panics and never reads past the end of the input, whatever the bytes.
//! - No allocation is larger than the bytes left in the input justify: every count and length
//!   from the file is checked against the bytes left (count × smallest element size) before
//!   anything is reserved, and no more than 1 MiB is reserved ahead of the data actually
//!   read, so memory use follows the bytes consumed, not the sizes claimed.
//! - All offset and size arithmetic is checked; an overflow is an error, never a wrap.
//! - Keys and tensor names are at most 64 KiB; arrays nest at most 8 deep; tensors have at
//!   most 8 dimensions; keys and tensor names are unique; `general.alignment` is a nonzero
//!   power of two stored as `u32`.
//! - A parsed [`GgufFile`] has tensors with aligned offsets, element counts (also in total)
//!   that fit in `u64`, and, for known ggml types, whole blocks per row. When the file length
//!   is known, the data of every tensor of a known type lies inside the file. Tensors of
//!   ggml types this reader does not know are kept as [`GgmlType::Unknown`] without size
//!   checks.
//! - Metadata keeps the file's order.

mod reader;
#[cfg(test)]
mod tests;
mod types;
mod writer;

use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

pub use types::{Array, GgmlType, TensorInfo, Value};
pub use writer::GgufBuilder;

/// The four bytes every GGUF file starts with.
const MAGIC: [u8; 4] = *b"GGUF";
/// The data alignment when `general.alignment` is absent.
const DEFAULT_ALIGNMENT: u64 = 32;

/// Why a GGUF file could not be read. Every message is one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// The file could not be opened or read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file does not start with `GGUF`.
    #[error("not a GGUF file (it starts with {magic:02x?}, not \"GGUF\")")]
    NotGguf {
        /// The first bytes of the input (zero where the input is shorter).
        magic: [u8; 4],
    },
    /// The version is not 2 or 3.
    #[error("unsupported GGUF version {0}: only versions 2 and 3 are supported")]
    UnsupportedVersion(u32),
    /// The input ends before a field it announces (or the counts it declares cannot fit).
    #[error("file is truncated: {needed} more bytes needed at offset {offset}")]
    Truncated {
        /// Where the missing bytes start.
        offset: u64,
        /// How many bytes were needed from there.
        needed: u64,
    },
    /// The bytes are present but break the format or one of the limits.
    #[error("invalid GGUF file at offset {offset}: {reason}")]
    Invalid {
        /// Where the offending field starts.
        offset: u64,
        /// What is wrong, in a few words.
        reason: String,
    },
    /// A tensor's data extends past the end of the file.
    #[error("tensor '{name}' ({n_bytes} bytes at offset {offset}) runs past the end of the file ({file_len} bytes)")]
    TensorOutOfBounds {
        /// The tensor's name.
        name: String,
        /// The absolute offset of its data (saturated at `u64::MAX`).
        offset: u64,
        /// The size of its data.
        n_bytes: u64,
        /// The file's length.
        file_len: u64,
    },
}

/// The metadata of a GGUF file: header, key-value pairs and tensor infos.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufFile {
    /// The format version: 2 or 3.
    pub version: u32,
    /// The key-value pairs, in file order.
    pub metadata: Vec<(String, Value)>,
    /// The tensor infos, in file order.
    pub tensors: Vec<TensorInfo>,
    /// The data alignment in bytes (`general.alignment`, default 32).
    pub alignment: u64,
    /// The absolute file offset where the data section starts.
    pub data_offset: u64,
}

/// Reads the metadata of the GGUF file at `path`, without reading tensor data.
///
/// The file is read through a buffer up to the end of the tensor infos; its length bounds
/// every count and is used to check that tensors lie inside it.
pub fn read_file(path: &Path) -> Result<GgufFile, GgufError> {
    let io_error = |source| GgufError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_error)?;
    let file_len = file.metadata().map_err(io_error)?.len();
    let buffered = BufReader::with_capacity(256 * 1024, file);
    reader::Reader::new(buffered, file_len, path).parse(Some(file_len))
}

/// Parses GGUF metadata from the start of a file held in memory.
///
/// `bytes` may be the whole file or just its beginning; `file_len` is the whole file's
/// length, if known, to check that tensors lie inside it (a `file_len` shorter than `bytes`
/// also limits what is read).
pub fn parse(bytes: &[u8], file_len: Option<u64>) -> Result<GgufFile, GgufError> {
    let n_bytes = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    let limit = file_len.map_or(n_bytes, |len| len.min(n_bytes));
    reader::Reader::new(bytes, limit, Path::new("<memory>")).parse(file_len)
}

impl GgufFile {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The value of `key`, if it is a string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key)?.as_str()
    }

    /// The value of `key`, if it is an integer of any width and sign that fits in `u64`.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key)?.as_u64()
    }

    /// `general.architecture`, e.g. `llama` or `gemma3`.
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }

    /// `{arch}.{suffix}` as an integer.
    fn arch_u64(&self, suffix: &str) -> Option<u64> {
        let arch = self.architecture()?;
        self.get_u64(&format!("{arch}.{suffix}"))
    }

    /// The context length the model was trained with (`{arch}.context_length`).
    pub fn context_length(&self) -> Option<u64> {
        self.arch_u64("context_length")
    }

    /// The embedding width (`{arch}.embedding_length`).
    pub fn embedding_length(&self) -> Option<u64> {
        self.arch_u64("embedding_length")
    }

    /// The number of transformer blocks (`{arch}.block_count`).
    pub fn block_count(&self) -> Option<u64> {
        self.arch_u64("block_count")
    }

    /// The Jinja chat template (`tokenizer.chat_template`).
    pub fn chat_template(&self) -> Option<&str> {
        self.get_str("tokenizer.chat_template")
    }

    /// The raw `general.file_type` (llama.cpp's `llama_ftype`).
    pub fn file_type(&self) -> Option<u64> {
        self.get_u64("general.file_type")
    }

    /// The quantization as usually written in file names (`Q4_K_M`, `Q8_0`, `F16`), from
    /// `general.file_type`; `None` when absent or unknown.
    pub fn quantization_label(&self) -> Option<&'static str> {
        file_type_label(self.file_type()?)
    }

    /// The number of parameters: the sum of all tensors' element counts. It saturates at
    /// `u64::MAX`, which [`parse`] guarantees a parsed file does not reach.
    pub fn parameter_count(&self) -> u64 {
        self.tensors.iter().fold(0u64, |sum, t| {
            sum.saturating_add(t.n_elements().unwrap_or(u64::MAX))
        })
    }
}

/// The usual label of a `llama_ftype` (llama.h), as in llama.cpp's file names.
fn file_type_label(file_type: u64) -> Option<&'static str> {
    Some(match file_type {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        4 => "Q4_1_SOME_F16",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        39 => "NVFP4",
        40 => "Q1_0",
        41 => "Q2_0",
        _ => return None,
    })
}
