//! [`GgufBuilder`]: writes small GGUF files, for tests and fixtures.

use std::io;
use std::path::Path;

use super::types::{Array, GgmlType, Value};
use super::DEFAULT_ALIGNMENT;

/// Builds a GGUF file in memory, for tests and fixtures (other crates' tests use it to make
/// tiny model files); it is not meant for real models.
///
/// The layout follows llama.cpp's writer: metadata, tensor infos, padding to the alignment,
/// then each tensor's data padded to the alignment. The alignment is `general.alignment` when
/// that is set to a `u32` power of two, else 32.
///
/// The builder checks nothing, so tests can also produce broken files: any version number
/// (all written in the version 2/3 layout), duplicate keys, an invalid `general.alignment`,
/// or tensor data that does not match the dimensions.
#[derive(Debug, Clone)]
pub struct GgufBuilder {
    pub(super) version: u32,
    pub(super) metadata: Vec<(String, Value)>,
    pub(super) tensors: Vec<Tensor>,
}

/// A tensor waiting to be written.
#[derive(Debug, Clone)]
pub(super) struct Tensor {
    pub(super) name: String,
    pub(super) dims: Vec<u64>,
    pub(super) ggml_type: GgmlType,
    pub(super) data: Vec<u8>,
}

impl GgufBuilder {
    /// An empty file of the given format version (normally 3).
    pub fn new(version: u32) -> Self {
        GgufBuilder {
            version,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// Appends a key-value pair.
    pub fn kv(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.metadata.push((key.into(), value.into()));
        self
    }

    /// Appends a tensor with its raw data; dims are innermost first, as ggml's `ne`.
    pub fn tensor(
        mut self,
        name: impl Into<String>,
        dims: Vec<u64>,
        ggml_type: GgmlType,
        data: Vec<u8>,
    ) -> Self {
        self.tensors.push(Tensor {
            name: name.into(),
            dims,
            ggml_type,
            data,
        });
        self
    }

    /// The alignment the layout uses.
    fn alignment(&self) -> usize {
        let declared = self.metadata.iter().find(|(k, _)| k == "general.alignment");
        match declared {
            Some((_, Value::U32(a))) if a.is_power_of_two() => usize::try_from(*a).unwrap_or(1),
            _ => DEFAULT_ALIGNMENT as usize,
        }
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let alignment = self.alignment();
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_str(&mut out, key);
            out.extend_from_slice(&value.type_id().to_le_bytes());
            put_value(&mut out, value);
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            put_str(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.ggml_type.id().to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offset += t.data.len().next_multiple_of(alignment) as u64;
        }
        for t in &self.tensors {
            pad(&mut out, alignment);
            out.extend_from_slice(&t.data);
        }
        pad(&mut out, alignment);
        out
    }

    /// Writes the file to `path`.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        std::fs::write(path, self.to_bytes())
    }
}

fn pad(out: &mut Vec<u8>, alignment: usize) {
    out.resize(out.len().next_multiple_of(alignment), 0);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(s) => put_str(out, s),
        Value::Array(a) => put_array(out, a),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

fn put_array(out: &mut Vec<u8>, array: &Array) {
    out.extend_from_slice(&array.elem_type_id().to_le_bytes());
    out.extend_from_slice(&(array.len() as u64).to_le_bytes());
    macro_rules! scalars {
        ($v:expr) => {
            $v.iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes()))
        };
    }
    match array {
        Array::U8(v) => out.extend_from_slice(v),
        Array::I8(v) => scalars!(v),
        Array::U16(v) => scalars!(v),
        Array::I16(v) => scalars!(v),
        Array::U32(v) => scalars!(v),
        Array::I32(v) => scalars!(v),
        Array::F32(v) => scalars!(v),
        Array::Bool(v) => v.iter().for_each(|x| out.push(u8::from(*x))),
        Array::String(v) => v.iter().for_each(|s| put_str(out, s)),
        Array::Array(v) => v.iter().for_each(|a| put_array(out, a)),
        Array::U64(v) => scalars!(v),
        Array::I64(v) => scalars!(v),
        Array::F64(v) => scalars!(v),
    }
}
