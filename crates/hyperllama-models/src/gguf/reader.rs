//! The parser: header, metadata and tensor infos from any [`Read`], with every length checked
//! against the bytes left before anything is read or allocated.

use std::collections::HashSet;
use std::io::{self, Read};
use std::path::Path;

use super::types::{type_id, type_name, Array, GgmlType, TensorInfo, Value};
use super::{GgufError, GgufFile, DEFAULT_ALIGNMENT, MAGIC};

/// The longest metadata key or tensor name accepted, in bytes.
const MAX_KEY_LEN: u64 = 64 * 1024;
/// The deepest nesting of arrays accepted; a top-level array is depth 1.
const MAX_ARRAY_DEPTH: u32 = 8;
/// The most dimensions a tensor may have (ggml itself uses 4).
const MAX_DIMS: u32 = 8;
/// The most bytes reserved ahead of reading for one array or string. Beyond this, vectors grow
/// only as elements actually arrive, so memory follows the bytes read, not the counts claimed.
const MAX_PREALLOC_BYTES: usize = 1 << 20;
/// The fewest bytes a key-value pair takes: key length, value type and a one-byte value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// The fewest bytes a tensor info takes: name length, n_dims, ggml type and offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;

type Result<T> = std::result::Result<T, GgufError>;

/// A [`Read`] that knows its position and how many bytes the input holds.
pub(super) struct Reader<'p, R> {
    inner: R,
    /// Bytes consumed so far; never more than `limit`.
    pos: u64,
    /// The input's length in bytes.
    limit: u64,
    /// Named in I/O errors.
    path: &'p Path,
}

impl<'p, R: Read> Reader<'p, R> {
    /// A reader over `inner`, which holds `limit` bytes.
    pub(super) fn new(inner: R, limit: u64, path: &'p Path) -> Self {
        Reader {
            inner,
            pos: 0,
            limit,
            path,
        }
    }

    fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.pos)
    }

    fn invalid(&self, offset: u64, reason: impl Into<String>) -> GgufError {
        GgufError::Invalid {
            offset,
            reason: reason.into(),
        }
    }

    /// Fails with `Truncated` unless `n_bytes` more bytes are left.
    fn need(&self, n_bytes: u64) -> Result<()> {
        if n_bytes > self.remaining() {
            return Err(GgufError::Truncated {
                offset: self.pos,
                needed: n_bytes,
            });
        }
        Ok(())
    }

    /// Turns a failed read of `n_bytes` at the current position into a `GgufError`.
    fn read_error(&self, err: io::Error, n_bytes: u64) -> GgufError {
        if err.kind() == io::ErrorKind::UnexpectedEof {
            // The input was shorter than it claimed (say, a file shrank while being read).
            GgufError::Truncated {
                offset: self.pos,
                needed: n_bytes,
            }
        } else {
            GgufError::Io {
                path: self.path.to_path_buf(),
                source: err,
            }
        }
    }

    fn fill(&mut self, buf: &mut [u8]) -> Result<()> {
        let n_bytes = buf.len() as u64;
        self.need(n_bytes)?;
        self.inner
            .read_exact(buf)
            .map_err(|e| self.read_error(e, n_bytes))?;
        self.pos = self.pos.saturating_add(n_bytes);
        Ok(())
    }

    fn array_of<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut buf = [0u8; N];
        self.fill(&mut buf)?;
        Ok(buf)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.array_of::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        self.array_of().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64> {
        self.array_of().map(u64::from_le_bytes)
    }

    fn bool(&mut self) -> Result<bool> {
        let offset = self.pos;
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(self.invalid(offset, format!("bool value is {other}, not 0 or 1"))),
        }
    }

    /// Reads a length-prefixed UTF-8 string of at most `max_len` bytes; `what` names it in
    /// errors.
    fn string(&mut self, max_len: u64, what: &str) -> Result<String> {
        let offset = self.pos;
        let len = self.u64()?;
        if len > max_len {
            return Err(self.invalid(
                offset,
                format!("{what} is {len} bytes long, over the limit of {max_len}"),
            ));
        }
        self.need(len)?;
        // `need` bounds `len` by the input, but a file can be gigabytes long: reserve a little
        // and let `read_to_end` grow the buffer only as bytes arrive.
        let mut buf = Vec::with_capacity(prealloc::<u8>(len));
        let n_read = (&mut self.inner)
            .take(len)
            .read_to_end(&mut buf)
            .map_err(|e| self.read_error(e, len))?;
        if n_read as u64 != len {
            return Err(GgufError::Truncated {
                offset: self.pos,
                needed: len,
            });
        }
        self.pos = self.pos.saturating_add(len);
        String::from_utf8(buf)
            .map_err(|_| self.invalid(offset, format!("{what} is not valid UTF-8")))
    }

    /// Reads `n` elements with `read`, after checking that `n` elements of at least
    /// `min_elem_bytes` each fit in the bytes left.
    fn vec_of<T>(
        &mut self,
        n: u64,
        min_elem_bytes: u64,
        mut read: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.need(n.saturating_mul(min_elem_bytes))?;
        let mut out = Vec::with_capacity(prealloc::<T>(n));
        for _ in 0..n {
            out.push(read(self)?);
        }
        Ok(out)
    }

    /// Reads a value of GGUF type `ty`, found at `offset`; `depth` is how many arrays enclose it.
    fn value(&mut self, ty: u32, offset: u64, depth: u32) -> Result<Value> {
        Ok(match ty {
            type_id::U8 => Value::U8(self.u8()?),
            type_id::I8 => Value::I8(i8::from_le_bytes(self.array_of()?)),
            type_id::U16 => Value::U16(u16::from_le_bytes(self.array_of()?)),
            type_id::I16 => Value::I16(i16::from_le_bytes(self.array_of()?)),
            type_id::U32 => Value::U32(self.u32()?),
            type_id::I32 => Value::I32(i32::from_le_bytes(self.array_of()?)),
            type_id::F32 => Value::F32(f32::from_le_bytes(self.array_of()?)),
            type_id::BOOL => Value::Bool(self.bool()?),
            type_id::STRING => Value::String(self.string(u64::MAX, "string value")?),
            type_id::ARRAY => Value::Array(self.array(depth + 1)?),
            type_id::U64 => Value::U64(self.u64()?),
            type_id::I64 => Value::I64(i64::from_le_bytes(self.array_of()?)),
            type_id::F64 => Value::F64(f64::from_le_bytes(self.array_of()?)),
            other => return Err(self.invalid(offset, format!("unknown value type {other}"))),
        })
    }

    /// Reads an array's element type, count and elements; `depth` counts this array.
    fn array(&mut self, depth: u32) -> Result<Array> {
        let offset = self.pos;
        if depth > MAX_ARRAY_DEPTH {
            return Err(self.invalid(
                offset,
                format!("arrays nest deeper than {MAX_ARRAY_DEPTH} levels"),
            ));
        }
        let elem_ty = self.u32()?;
        let n = self.u64()?;
        macro_rules! scalars {
            ($variant:ident, $t:ty) => {
                Array::$variant(self.vec_of(n, size_of::<$t>() as u64, |r| {
                    r.array_of().map(<$t>::from_le_bytes)
                })?)
            };
        }
        Ok(match elem_ty {
            type_id::U8 => scalars!(U8, u8),
            type_id::I8 => scalars!(I8, i8),
            type_id::U16 => scalars!(U16, u16),
            type_id::I16 => scalars!(I16, i16),
            type_id::U32 => scalars!(U32, u32),
            type_id::I32 => scalars!(I32, i32),
            type_id::F32 => scalars!(F32, f32),
            type_id::BOOL => Array::Bool(self.vec_of(n, 1, |r| r.bool())?),
            type_id::STRING => {
                Array::String(self.vec_of(n, 8, |r| r.string(u64::MAX, "string value"))?)
            }
            type_id::ARRAY => Array::Array(self.vec_of(n, 4 + 8, |r| r.array(depth + 1))?),
            type_id::U64 => scalars!(U64, u64),
            type_id::I64 => scalars!(I64, i64),
            type_id::F64 => scalars!(F64, f64),
            other => {
                return Err(self.invalid(offset, format!("unknown array element type {other}")))
            }
        })
    }

    /// Reads the magic, failing with `NotGguf` as soon as the bytes present disagree with it.
    fn magic(&mut self) -> Result<()> {
        let mut magic = [0u8; 4];
        let n_present = self.remaining().min(4) as usize;
        let present = magic.get_mut(..n_present).unwrap_or_default();
        self.fill(present)?;
        if magic.get(..n_present) != MAGIC.get(..n_present) {
            return Err(GgufError::NotGguf { magic });
        }
        self.need(4 - n_present as u64)
    }

    fn tensor_info(&mut self, alignment: u64) -> Result<TensorInfo> {
        let offset = self.pos;
        let name = self.string(MAX_KEY_LEN, "tensor name")?;
        let n_dims_offset = self.pos;
        let n_dims = self.u32()?;
        if n_dims > MAX_DIMS {
            return Err(self.invalid(
                n_dims_offset,
                format!("tensor '{name}' has {n_dims} dimensions, over the limit of {MAX_DIMS}"),
            ));
        }
        let dims = self.vec_of(n_dims.into(), 8, |r| r.u64())?;
        let ggml_type = GgmlType::from_id(self.u32()?);
        let data_offset = self.u64()?;
        let info = TensorInfo {
            name,
            dims,
            ggml_type,
            offset: data_offset,
        };
        let bad = |reason: &str| self.invalid(offset, format!("tensor '{}' {reason}", info.name));
        if info.n_elements().is_none() {
            return Err(bad("has more elements than fit in 64 bits"));
        }
        if let Some((n_block_elems, _)) = ggml_type.block_layout() {
            if info.n_bytes().is_none() {
                let reason = format!(
                    "of type {ggml_type} needs rows of whole {n_block_elems}-element blocks \
                     and a size below 2^64 bytes"
                );
                return Err(bad(&reason));
            }
        }
        if data_offset % alignment != 0 {
            return Err(bad(&format!(
                "has offset {data_offset}, not a multiple of the alignment {alignment}"
            )));
        }
        Ok(info)
    }

    /// Parses header, metadata and tensor infos, leaving the reader just past the tensor infos.
    /// With `file_len`, also checks that every tensor's data lies inside the file.
    pub(super) fn parse(&mut self, file_len: Option<u64>) -> Result<GgufFile> {
        self.magic()?;
        let version = self.u32()?;
        if version != 2 && version != 3 {
            return Err(GgufError::UnsupportedVersion(version));
        }
        let n_tensors = self.u64()?;
        let n_kv = self.u64()?;
        self.need(
            n_kv.saturating_mul(MIN_KV_BYTES)
                .saturating_add(n_tensors.saturating_mul(MIN_TENSOR_INFO_BYTES)),
        )?;

        let mut alignment = DEFAULT_ALIGNMENT;
        let mut keys = HashSet::new();
        let mut metadata = Vec::with_capacity(prealloc::<(String, Value)>(n_kv));
        for _ in 0..n_kv {
            let offset = self.pos;
            let key = self.string(MAX_KEY_LEN, "metadata key")?;
            if !keys.insert(key.clone()) {
                return Err(self.invalid(offset, format!("duplicate metadata key '{key}'")));
            }
            let value_offset = self.pos;
            let ty = self.u32()?;
            let value = self.value(ty, value_offset, 0)?;
            if key == "general.alignment" {
                alignment = match value {
                    Value::U32(a) if a.is_power_of_two() => a.into(),
                    Value::U32(a) => {
                        return Err(self.invalid(
                            value_offset,
                            format!("general.alignment is {a}, not a power of two"),
                        ))
                    }
                    _ => {
                        return Err(self.invalid(
                            value_offset,
                            format!("general.alignment is a {}, not a u32", type_name(ty)),
                        ))
                    }
                };
            }
            metadata.push((key, value));
        }

        let mut names = HashSet::new();
        let mut tensors = Vec::with_capacity(prealloc::<TensorInfo>(n_tensors));
        let mut n_params = 0u64;
        for _ in 0..n_tensors {
            let offset = self.pos;
            let info = self.tensor_info(alignment)?;
            if !names.insert(info.name.clone()) {
                return Err(self.invalid(offset, format!("duplicate tensor name '{}'", info.name)));
            }
            n_params = info
                .n_elements()
                .and_then(|n| n_params.checked_add(n))
                .ok_or_else(|| {
                    self.invalid(offset, "the tensors hold more than 2^64 elements in all")
                })?;
            tensors.push(info);
        }

        let info_end = self.pos;
        let data_offset = info_end
            .checked_next_multiple_of(alignment)
            .ok_or_else(|| self.invalid(info_end, "data section starts past 2^64 bytes"))?;
        if let Some(file_len) = file_len {
            for t in &tensors {
                let Some(n_bytes) = t.n_bytes() else { continue };
                let start = data_offset.checked_add(t.offset);
                if start
                    .and_then(|s| s.checked_add(n_bytes))
                    .is_none_or(|end| end > file_len)
                {
                    let offset = start.unwrap_or(u64::MAX);
                    return Err(GgufError::TensorOutOfBounds {
                        name: t.name.clone(),
                        offset,
                        n_bytes,
                        file_len,
                    });
                }
            }
        }
        Ok(GgufFile {
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
        })
    }
}

/// How many elements of `T` to reserve for `n` announced ones: all of them up to
/// `MAX_PREALLOC_BYTES`, then no more.
fn prealloc<T>(n: u64) -> usize {
    let cap = MAX_PREALLOC_BYTES / size_of::<T>().max(1);
    usize::try_from(n).map_or(cap, |n| n.min(cap))
}
