//! GGUF (v2 and v3, little-endian) header reader.
//!
//! File layout (all integers little-endian):
//! ```text
//! u32 magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
//! n_kv × { string key | u32 value_type | value }
//! n_tensors × { string name | u32 n_dims | n_dims × u64 ne | u32 ggml_type | u64 offset }
//! padding to `general.alignment` (default 32)  → data section starts here
//! tensor data; each tensor at data_offset + offset (offset % alignment == 0)
//! ```
//! A string is `u64 len` + `len` bytes; an array value is `u32 elem_type` +
//! `u64 len` + `len` values (arrays may nest).
//!
//! [`parse_header`] works on a byte *prefix* of the file, so a loader can
//! fetch the first bytes and grow the prefix while it gets [`Parsed::NeedMore`].
//! It never panics and never allocates based on an unchecked length.
//! Keys and tensor names must be valid UTF-8; string *values* are decoded
//! lossily (invalid sequences become U+FFFD).

mod error;
mod reader;
mod value;
#[cfg(not(target_arch = "wasm32"))]
#[doc(hidden)]
pub mod writer;

pub use error::GgufError;
pub use reader::{DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_ARRAY_DEPTH, MAX_DIMS};
pub use value::{type_id, Value};

use crate::quant::GgmlType;
use reader::Stop;
use std::collections::HashMap;

/// Result of [`parse_header`].
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// The prefix ends inside the header: retry with at least `needed_len`
    /// bytes (a hint: `max(bytes known to be needed, 2 × prefix)`, capped at
    /// the file length, so growing by it converges in O(log n) rounds).
    NeedMore { needed_len: u64 },
    /// The header is complete and valid.
    Complete(GgufFile),
}

/// Parses a GGUF header from `prefix`, the first bytes of a file that is
/// `file_len` bytes long. When `prefix.len() == file_len` a header that
/// needs more bytes is reported as [`GgufError::Truncated`] (or a more
/// specific length error) instead of `NeedMore`.
pub fn parse_header(prefix: &[u8], file_len: u64) -> Result<Parsed, GgufError> {
    let prefix_len = prefix.len() as u64;
    if prefix_len > file_len {
        return Err(GgufError::PrefixLongerThanFile { prefix_len, file_len });
    }
    match reader::parse(prefix, file_len) {
        Ok(f) => Ok(Parsed::Complete(f)),
        Err(Stop::Err(e)) => Err(e),
        Err(Stop::NeedMore(n)) => Ok(Parsed::NeedMore { needed_len: n.max(prefix_len.saturating_mul(2)).min(file_len) }),
    }
}

/// One tensor's description from the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` = ne0 is the innermost (contiguous) dimension.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// ABSOLUTE byte offset of the tensor data in the file.
    pub offset: u64,
    /// Size of the tensor data in bytes.
    pub n_bytes: u64,
    /// Product of `dims`.
    pub n_elements: u64,
}

/// A parsed, validated GGUF header.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufFile {
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Vec<(String, Value)>,
    /// Tensor infos in file order.
    pub tensors: Vec<TensorInfo>,
    /// `general.alignment` or 32.
    pub alignment: u64,
    /// Absolute offset of the tensor data section.
    pub data_offset: u64,
    pub file_len: u64,
    // Lookup indices built at parse time (not updated if the pub fields are mutated).
    kv_index: HashMap<String, usize>,
    tensor_index: HashMap<String, usize>,
}

impl GgufFile {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_parts(
        version: u32,
        metadata: Vec<(String, Value)>,
        kv_index: HashMap<String, usize>,
        tensors: Vec<TensorInfo>,
        tensor_index: HashMap<String, usize>,
        alignment: u64,
        data_offset: u64,
        file_len: u64,
    ) -> Self {
        GgufFile { version, metadata, tensors, alignment, data_offset, file_len, kv_index, tensor_index }
    }

    /// The same header with another tensor list (offsets absolute in the file the caller reads,
    /// e.g. the concatenation of gguf-split shards, whose total length `file_len` already is).
    /// Names must be unique, and every tensor must lie within `file_len`.
    pub fn with_tensors(mut self, tensors: Vec<TensorInfo>) -> Result<Self, GgufError> {
        let mut tensor_index = HashMap::with_capacity(tensors.len());
        for (i, t) in tensors.iter().enumerate() {
            if tensor_index.insert(t.name.clone(), i).is_some() {
                return Err(GgufError::DuplicateTensor { name: t.name.clone() });
            }
        }
        if let Some(t) = tensors.iter().find(|t| t.offset as u128 + t.n_bytes as u128 > self.file_len as u128) {
            let (start, end, file_len) = (t.offset, t.offset as u128 + t.n_bytes as u128, self.file_len);
            return Err(GgufError::TensorOutOfBounds { tensor: t.name.clone(), start, end, file_len });
        }
        self.tensors = tensors;
        self.tensor_index = tensor_index;
        Ok(self)
    }

    /// The metadata value for `key` (O(1)).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.kv_index.get(key).and_then(|&i| self.metadata.get(i)).map(|(_, v)| v)
    }

    fn typed<'a, T>(
        &'a self,
        key: &str,
        expected: &'static str,
        f: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Result<Option<T>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match f(v) {
                Some(t) => Ok(Some(t)),
                None => Err(GgufError::WrongType { key: key.to_owned(), expected, found: describe(v) }),
            },
        }
    }

    /// A string value; `Err(WrongType)` if `key` holds something else.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        self.typed(key, "string", Value::as_str)
    }

    /// Any non-negative integer value, widened to u64.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        self.typed(key, "non-negative integer", Value::as_u64)
    }

    /// Any numeric value, converted to f32.
    pub fn get_f32(&self, key: &str) -> Result<Option<f32>, GgufError> {
        self.typed(key, "number", |v| v.as_f64().map(|x| x as f32))
    }

    /// A bool value.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        self.typed(key, "bool", Value::as_bool)
    }

    /// An array value.
    pub fn get_array(&self, key: &str) -> Result<Option<&[Value]>, GgufError> {
        self.typed(key, "array", Value::as_array)
    }

    /// The tensor named `name` (O(1)).
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).and_then(|&i| self.tensors.get(i))
    }

    /// `general.architecture`, if present and a string.
    pub fn architecture(&self) -> Option<&str> {
        self.get("general.architecture").and_then(Value::as_str)
    }
}

/// "i32 (-5)" for scalars, the type name otherwise.
fn describe(v: &Value) -> String {
    match v {
        Value::String(_) | Value::Array(_) => v.type_name().to_owned(),
        Value::F32(x) => format!("f32 ({x})"),
        Value::F64(x) => format!("f64 ({x})"),
        Value::Bool(x) => format!("bool ({x})"),
        _ => format!("{} ({})", v.type_name(), v.as_i64().map_or_else(|| format!("{v:?}"), |i| i.to_string())),
    }
}
