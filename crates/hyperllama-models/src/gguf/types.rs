//! The values a GGUF file holds: metadata values, typed arrays, ggml tensor types and tensor
//! descriptions. Nothing here reads or writes bytes.

use std::fmt;

/// GGUF metadata value type ids, as stored in the file.
pub(super) mod type_id {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// GGUF type 0.
    U8(u8),
    /// GGUF type 1.
    I8(i8),
    /// GGUF type 2.
    U16(u16),
    /// GGUF type 3.
    I16(i16),
    /// GGUF type 4.
    U32(u32),
    /// GGUF type 5.
    I32(i32),
    /// GGUF type 6.
    F32(f32),
    /// GGUF type 7, stored as one byte that is 0 or 1.
    Bool(bool),
    /// GGUF type 8, UTF-8.
    String(String),
    /// GGUF type 9: a homogeneous array, possibly of arrays.
    Array(Array),
    /// GGUF type 10.
    U64(u64),
    /// GGUF type 11.
    I64(i64),
    /// GGUF type 12.
    F64(f64),
}

/// A homogeneous GGUF array. Elements are stored unboxed, so memory stays proportional to the
/// bytes of the file (a 262,144-entry `f32` score table costs 1 MiB, not 8 MiB of `Value`s).
#[derive(Debug, Clone, PartialEq)]
pub enum Array {
    /// Array of `u8`.
    U8(Vec<u8>),
    /// Array of `i8`.
    I8(Vec<i8>),
    /// Array of `u16`.
    U16(Vec<u16>),
    /// Array of `i16`.
    I16(Vec<i16>),
    /// Array of `u32`.
    U32(Vec<u32>),
    /// Array of `i32`.
    I32(Vec<i32>),
    /// Array of `f32`.
    F32(Vec<f32>),
    /// Array of `bool`.
    Bool(Vec<bool>),
    /// Array of strings (token tables, merges).
    String(Vec<String>),
    /// Array of arrays; each inner array has its own element type.
    Array(Vec<Array>),
    /// Array of `u64`.
    U64(Vec<u64>),
    /// Array of `i64`.
    I64(Vec<i64>),
    /// Array of `f64`.
    F64(Vec<f64>),
}

/// Expands `$body` once with `$v` bound to the inner `Vec` of whichever variant `$array` is.
macro_rules! each_array {
    ($array:expr, $v:ident => $body:expr) => {
        match $array {
            Array::U8($v) => $body,
            Array::I8($v) => $body,
            Array::U16($v) => $body,
            Array::I16($v) => $body,
            Array::U32($v) => $body,
            Array::I32($v) => $body,
            Array::F32($v) => $body,
            Array::Bool($v) => $body,
            Array::String($v) => $body,
            Array::Array($v) => $body,
            Array::U64($v) => $body,
            Array::I64($v) => $body,
            Array::F64($v) => $body,
        }
    };
}

impl Array {
    /// The number of elements.
    pub fn len(&self) -> usize {
        each_array!(self, v => v.len())
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The GGUF element type id.
    pub(super) fn elem_type_id(&self) -> u32 {
        match self {
            Array::U8(_) => type_id::U8,
            Array::I8(_) => type_id::I8,
            Array::U16(_) => type_id::U16,
            Array::I16(_) => type_id::I16,
            Array::U32(_) => type_id::U32,
            Array::I32(_) => type_id::I32,
            Array::F32(_) => type_id::F32,
            Array::Bool(_) => type_id::BOOL,
            Array::String(_) => type_id::STRING,
            Array::Array(_) => type_id::ARRAY,
            Array::U64(_) => type_id::U64,
            Array::I64(_) => type_id::I64,
            Array::F64(_) => type_id::F64,
        }
    }

    /// The element type's name, as [`Value::type_name`] spells it.
    pub fn elem_type_name(&self) -> &'static str {
        type_name(self.elem_type_id())
    }
}

/// The name of a GGUF value type id (for messages and summaries).
pub(super) fn type_name(id: u32) -> &'static str {
    match id {
        type_id::U8 => "u8",
        type_id::I8 => "i8",
        type_id::U16 => "u16",
        type_id::I16 => "i16",
        type_id::U32 => "u32",
        type_id::I32 => "i32",
        type_id::F32 => "f32",
        type_id::BOOL => "bool",
        type_id::STRING => "string",
        type_id::ARRAY => "array",
        type_id::U64 => "u64",
        type_id::I64 => "i64",
        type_id::F64 => "f64",
        _ => "unknown",
    }
}

impl Value {
    /// The GGUF value type id.
    pub(super) fn type_id(&self) -> u32 {
        match self {
            Value::U8(_) => type_id::U8,
            Value::I8(_) => type_id::I8,
            Value::U16(_) => type_id::U16,
            Value::I16(_) => type_id::I16,
            Value::U32(_) => type_id::U32,
            Value::I32(_) => type_id::I32,
            Value::F32(_) => type_id::F32,
            Value::Bool(_) => type_id::BOOL,
            Value::String(_) => type_id::STRING,
            Value::Array(_) => type_id::ARRAY,
            Value::U64(_) => type_id::U64,
            Value::I64(_) => type_id::I64,
            Value::F64(_) => type_id::F64,
        }
    }

    /// The type's name: `u8`, `i32`, `f32`, `bool`, `string`, `array`, ...
    pub fn type_name(&self) -> &'static str {
        type_name(self.type_id())
    }

    /// The string, if this is a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as `u64`, if it is an integer of any width and sign whose value fits.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(x) => Some(x.into()),
            Value::U16(x) => Some(x.into()),
            Value::U32(x) => Some(x.into()),
            Value::U64(x) => Some(x),
            Value::I8(x) => u64::try_from(x).ok(),
            Value::I16(x) => u64::try_from(x).ok(),
            Value::I32(x) => u64::try_from(x).ok(),
            Value::I64(x) => u64::try_from(x).ok(),
            _ => None,
        }
    }

    /// The array, if this is an array value.
    pub fn as_array(&self) -> Option<&Array> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The [`Display`](fmt::Display) form cut to at most `max_chars` characters, ending in `…`
    /// when cut. Meant for listings such as `show --verbose`, where chat templates are long.
    pub fn summary(&self, max_chars: usize) -> String {
        let full = self.to_string();
        if full.chars().count() <= max_chars {
            return full;
        }
        let mut cut: String = full.chars().take(max_chars.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// Scalars print plainly, strings quoted and escaped, arrays as a summary such as
/// `[49152 × string]`.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::U8(x) => write!(f, "{x}"),
            Value::I8(x) => write!(f, "{x}"),
            Value::U16(x) => write!(f, "{x}"),
            Value::I16(x) => write!(f, "{x}"),
            Value::U32(x) => write!(f, "{x}"),
            Value::I32(x) => write!(f, "{x}"),
            Value::F32(x) => write!(f, "{x}"),
            Value::Bool(x) => write!(f, "{x}"),
            Value::String(s) => write!(f, "{s:?}"),
            Value::Array(a) => write!(f, "{a}"),
            Value::U64(x) => write!(f, "{x}"),
            Value::I64(x) => write!(f, "{x}"),
            Value::F64(x) => write!(f, "{x}"),
        }
    }
}

/// A summary: `[len × element type]`.
impl fmt::Display for Array {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{} × {}]", self.len(), self.elem_type_name())
    }
}

macro_rules! value_from {
    ($($t:ty => $variant:ident),* $(,)?) => {
        $(impl From<$t> for Value {
            fn from(x: $t) -> Self {
                Value::$variant(x.into())
            }
        })*
    };
}

value_from!(
    u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32, f32 => F32,
    bool => Bool, String => String, &str => String, Array => Array, u64 => U64, i64 => I64,
    f64 => F64,
);

/// Declares [`GgmlType`] from one table: variant, ggml id, block size (elements), block size
/// (bytes). The sizes are `blck_size` and `type_size` of ggml's `type_traits` (ggml.c) for the
/// vendored llama.cpp.
macro_rules! ggml_types {
    ($($name:ident = $id:literal, $n_block_elems:literal, $n_block_bytes:literal;)*) => {
        /// A ggml tensor element type (`enum ggml_type` in ggml.h).
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum GgmlType {
            $(
                #[doc = concat!("`GGML_TYPE_", stringify!($name), "` (id ", stringify!($id), ").")]
                $name,
            )*
            /// A type id this reader does not know; tensors of it skip the size checks.
            Unknown(u32),
        }

        impl GgmlType {
            /// The type for a ggml id; ids this reader does not know give `Unknown(id)`.
            pub fn from_id(id: u32) -> Self {
                match id {
                    $($id => GgmlType::$name,)*
                    other => GgmlType::Unknown(other),
                }
            }

            /// The ggml id.
            pub fn id(self) -> u32 {
                match self {
                    $(GgmlType::$name => $id,)*
                    GgmlType::Unknown(id) => id,
                }
            }

            /// The ggml name (`"Q4_K"`), or `None` for an unknown type.
            pub fn name(self) -> Option<&'static str> {
                match self {
                    $(GgmlType::$name => Some(stringify!($name)),)*
                    GgmlType::Unknown(_) => None,
                }
            }

            /// `(elements per block, bytes per block)`, or `None` for an unknown type.
            pub fn block_layout(self) -> Option<(u64, u64)> {
                match self {
                    $(GgmlType::$name => Some(($n_block_elems, $n_block_bytes)),)*
                    GgmlType::Unknown(_) => None,
                }
            }
        }
    };
}

ggml_types! {
    F32 = 0, 1, 4;
    F16 = 1, 1, 2;
    Q4_0 = 2, 32, 18;
    Q4_1 = 3, 32, 20;
    Q5_0 = 6, 32, 22;
    Q5_1 = 7, 32, 24;
    Q8_0 = 8, 32, 34;
    Q8_1 = 9, 32, 36;
    Q2_K = 10, 256, 84;
    Q3_K = 11, 256, 110;
    Q4_K = 12, 256, 144;
    Q5_K = 13, 256, 176;
    Q6_K = 14, 256, 210;
    Q8_K = 15, 256, 292;
    IQ2_XXS = 16, 256, 66;
    IQ2_XS = 17, 256, 74;
    IQ3_XXS = 18, 256, 98;
    IQ1_S = 19, 256, 50;
    IQ4_NL = 20, 32, 18;
    IQ3_S = 21, 256, 110;
    IQ2_S = 22, 256, 82;
    IQ4_XS = 23, 256, 136;
    I8 = 24, 1, 1;
    I16 = 25, 1, 2;
    I32 = 26, 1, 4;
    I64 = 27, 1, 8;
    F64 = 28, 1, 8;
    IQ1_M = 29, 256, 56;
    BF16 = 30, 1, 2;
    TQ1_0 = 34, 256, 54;
    TQ2_0 = 35, 256, 66;
    MXFP4 = 39, 32, 17;
    NVFP4 = 40, 64, 36;
    Q1_0 = 41, 128, 18;
    Q2_0 = 42, 64, 18;
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "unknown ggml type {}", self.id()),
        }
    }
}

/// One tensor's description from the tensor info table. Its data is not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor's name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// The dimensions, innermost (contiguous) first, as ggml's `ne`.
    pub dims: Vec<u64>,
    /// The element type.
    pub ggml_type: GgmlType,
    /// The data's offset from the start of the data section (not from the start of the file).
    pub offset: u64,
}

impl TensorInfo {
    /// The number of elements, or `None` if the product overflows `u64`. No dimensions means
    /// one element, as in ggml.
    pub fn n_elements(&self) -> Option<u64> {
        self.dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
    }

    /// The size of the data in bytes, or `None` for an unknown type, on overflow, or when the
    /// first dimension is not a whole number of blocks (ggml requires that it is).
    pub fn n_bytes(&self) -> Option<u64> {
        let (n_block_elems, n_block_bytes) = self.ggml_type.block_layout()?;
        let row_len = self.dims.first().copied().unwrap_or(1);
        if row_len % n_block_elems != 0 {
            return None;
        }
        (self.n_elements()? / n_block_elems).checked_mul(n_block_bytes)
    }
}
