//! Incremental GGUF header parser over a byte prefix of the file.
//!
//! Every length read from the file is checked against the bytes the *file*
//! still has (→ hard error) before it is checked against the bytes the
//! *prefix* has (→ `NeedMore`). Allocations are bounded by the prefix bytes
//! actually present, never by a number read from the file.

use super::value::{min_encoded_size, type_id, Value};
use super::{GgufError, GgufFile, TensorInfo};
use crate::quant::GgmlType;
use std::collections::HashMap;

/// `"GGUF"` read as a little-endian u32.
pub const GGUF_MAGIC: u32 = 0x4655_4747;
/// Alignment used when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// GGML_MAX_DIMS.
pub const MAX_DIMS: u32 = 4;
/// Deepest accepted array nesting (an array of arrays has depth 2).
pub const MAX_ARRAY_DEPTH: u32 = 8;
/// Smallest possible metadata entry: key length (8) + type (4) + 1-byte value.
const MIN_KV_BYTES: u64 = 13;
/// Smallest possible tensor info: name length (8) + n_dims (4) + 1 dim (8)
/// + type (4) + offset (8).
const MIN_TENSOR_INFO_BYTES: u64 = 32;

/// Why parsing stopped early.
pub(crate) enum Stop {
    /// The prefix must be at least this long (always `<= file_len`).
    NeedMore(u64),
    Err(GgufError),
}

impl From<GgufError> for Stop {
    fn from(e: GgufError) -> Self {
        Stop::Err(e)
    }
}

type R<T> = Result<T, Stop>;

struct Cursor<'a> {
    buf: &'a [u8],
    pos: u64,
    file_len: u64,
}

impl<'a> Cursor<'a> {
    /// Bytes of the file after the cursor.
    fn file_left(&self) -> u64 {
        self.file_len.saturating_sub(self.pos)
    }

    /// Bytes of the prefix after the cursor.
    fn prefix_left(&self) -> u64 {
        (self.buf.len() as u64).saturating_sub(self.pos)
    }

    fn take(&mut self, n: u64, what: &'static str) -> R<&'a [u8]> {
        let end = match self.pos.checked_add(n) {
            Some(end) if end <= self.file_len => end,
            _ => {
                return Err(Stop::Err(GgufError::Truncated {
                    what,
                    offset: self.pos,
                    needed: n,
                    file_len: self.file_len,
                }))
            }
        };
        let range = usize::try_from(self.pos).ok().zip(usize::try_from(end).ok());
        match range.and_then(|(a, b)| self.buf.get(a..b)) {
            Some(s) => {
                self.pos = end;
                Ok(s)
            }
            None => Err(Stop::NeedMore(end)),
        }
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> R<[u8; N]> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &'static str) -> R<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &'static str) -> R<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A GGUF string: u64 length + bytes (not validated as UTF-8 here).
    fn string(&mut self, what: &'static str) -> R<(u64, &'a [u8])> {
        let at = self.pos;
        let len = self.u64(what)?;
        let available = self.file_left();
        if len > available {
            return Err(GgufError::StringTooLong { offset: at, len, available }.into());
        }
        Ok((at, self.take(len, what)?))
    }

    fn utf8_string(&mut self, what: &'static str) -> R<String> {
        let (at, bytes) = self.string(what)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(GgufError::InvalidUtf8 { what, offset: at }.into()),
        }
    }

    /// One metadata value of GGUF type `ty`; `depth` counts enclosing arrays.
    fn value(&mut self, ty: u32, key: &str, depth: u32, at: u64) -> R<Value> {
        use type_id::*;
        let v = match ty {
            U8 => Value::U8(self.array::<1>("u8 value")?[0]),
            I8 => Value::I8(i8::from_le_bytes(self.array("i8 value")?)),
            U16 => Value::U16(u16::from_le_bytes(self.array("u16 value")?)),
            I16 => Value::I16(i16::from_le_bytes(self.array("i16 value")?)),
            U32 => Value::U32(self.u32("u32 value")?),
            I32 => Value::I32(i32::from_le_bytes(self.array("i32 value")?)),
            U64 => Value::U64(self.u64("u64 value")?),
            I64 => Value::I64(i64::from_le_bytes(self.array("i64 value")?)),
            F32 => Value::F32(f32::from_le_bytes(self.array("f32 value")?)),
            F64 => Value::F64(f64::from_le_bytes(self.array("f64 value")?)),
            BOOL => Value::Bool(self.array::<1>("bool value")?[0] != 0),
            // Values are decoded lossily: invalid UTF-8 becomes U+FFFD.
            STRING => Value::String(String::from_utf8_lossy(self.string("string value")?.1).into_owned()),
            ARRAY => self.array_value(key, depth + 1)?,
            other => {
                return Err(GgufError::UnknownValueType { key: key.to_owned(), offset: at, type_id: other }.into())
            }
        };
        Ok(v)
    }

    fn array_value(&mut self, key: &str, depth: u32) -> R<Value> {
        if depth > MAX_ARRAY_DEPTH {
            return Err(GgufError::NestingTooDeep { key: key.to_owned(), max_depth: MAX_ARRAY_DEPTH }.into());
        }
        let ty_at = self.pos;
        let elem_ty = self.u32("array element type")?;
        let Some(min) = min_encoded_size(elem_ty) else {
            return Err(GgufError::UnknownValueType { key: key.to_owned(), offset: ty_at, type_id: elem_ty }.into());
        };
        let len_at = self.pos;
        let len = self.u64("array length")?;
        let min_bytes = len as u128 * min as u128;
        let available = self.file_left();
        if min_bytes > available as u128 {
            let key = key.to_owned();
            return Err(GgufError::ArrayTooLong { key, offset: len_at, len, min_bytes, available }.into());
        }
        let mut items = Vec::with_capacity(len.min(self.prefix_left() / min) as usize);
        for _ in 0..len {
            let at = self.pos;
            items.push(self.value(elem_ty, key, depth, at)?);
        }
        Ok(Value::Array(items))
    }
}

/// Parses the whole header; see [`super::parse_header`].
pub(crate) fn parse(prefix: &[u8], file_len: u64) -> R<GgufFile> {
    let mut c = Cursor { buf: prefix, pos: 0, file_len };
    let magic = c.u32("magic")?;
    if magic != GGUF_MAGIC {
        return Err(GgufError::BadMagic { found: magic }.into());
    }
    let version = c.u32("version")?;
    if !(2..=3).contains(&version) {
        if (1..=3).contains(&version.swap_bytes()) {
            return Err(GgufError::BigEndian { version }.into());
        }
        return Err(GgufError::UnsupportedVersion { version }.into());
    }
    let n_tensors = c.u64("tensor count")?;
    let max = c.file_left() / MIN_TENSOR_INFO_BYTES;
    if n_tensors > max {
        return Err(GgufError::TooManyTensors { count: n_tensors, max }.into());
    }
    let n_kv = c.u64("metadata count")?;
    let max = c.file_left() / MIN_KV_BYTES;
    if n_kv > max {
        return Err(GgufError::TooManyKv { count: n_kv, max }.into());
    }

    let mut metadata = Vec::with_capacity(n_kv.min(c.prefix_left() / MIN_KV_BYTES) as usize);
    let mut kv_index = HashMap::with_capacity(metadata.capacity());
    for _ in 0..n_kv {
        let key = c.utf8_string("metadata key")?;
        let ty_at = c.pos;
        let ty = c.u32("metadata value type")?;
        let value = c.value(ty, &key, 0, ty_at)?;
        if kv_index.insert(key.clone(), metadata.len()).is_some() {
            return Err(GgufError::DuplicateKey { key }.into());
        }
        metadata.push((key, value));
    }

    let alignment = match kv_index.get("general.alignment").and_then(|&i| metadata.get(i)) {
        None => DEFAULT_ALIGNMENT,
        Some((key, v)) => match v.as_u64() {
            Some(a) if a.is_power_of_two() => a,
            Some(a) => return Err(GgufError::BadAlignment { value: a }.into()),
            None => {
                let found = v.type_name().to_owned();
                return Err(GgufError::WrongType { key: key.clone(), expected: "unsigned integer", found }.into());
            }
        },
    };

    let mut tensors: Vec<TensorInfo> =
        Vec::with_capacity(n_tensors.min(c.prefix_left() / MIN_TENSOR_INFO_BYTES) as usize);
    let mut tensor_index = HashMap::with_capacity(tensors.capacity());
    for _ in 0..n_tensors {
        let t = tensor_info(&mut c, alignment)?;
        if tensor_index.insert(t.name.clone(), tensors.len()).is_some() {
            return Err(GgufError::DuplicateTensor { name: t.name }.into());
        }
        tensors.push(t);
    }

    let data_offset = c
        .pos
        .checked_add(alignment - 1)
        .map(|p| p / alignment * alignment)
        .ok_or(GgufError::DataOffsetOverflow)?;
    for t in &mut tensors {
        let start = data_offset as u128 + t.offset as u128;
        let end = start + t.n_bytes as u128;
        if end > file_len as u128 {
            let start = u64::try_from(start).unwrap_or(u64::MAX);
            return Err(GgufError::TensorOutOfBounds { tensor: t.name.clone(), start, end, file_len }.into());
        }
        t.offset = start as u64; // end <= file_len, so start fits
    }
    Ok(GgufFile::from_parts(version, metadata, kv_index, tensors, tensor_index, alignment, data_offset, file_len))
}

/// One tensor info; `offset` is still relative to the data section.
fn tensor_info(c: &mut Cursor<'_>, alignment: u64) -> R<TensorInfo> {
    let name = c.utf8_string("tensor name")?;
    let n_dims = c.u32("tensor dimension count")?;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(GgufError::TooManyDims { tensor: name, n_dims }.into());
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        dims.push(c.u64("tensor dimension")?);
    }
    let type_id = c.u32("tensor type")?;
    let offset = c.u64("tensor offset")?;

    if dims.contains(&0) {
        return Err(GgufError::ZeroDim { tensor: name, dims }.into());
    }
    // ggml stores dims as int64_t: the element count must fit in i64.
    let n_elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= i64::MAX as u64);
    let Some(n_elements) = n_elements else {
        return Err(GgufError::DimsOverflow { tensor: name, dims }.into());
    };
    let Some(ty) = GgmlType::from_id(type_id) else {
        return Err(GgufError::UnknownTensorType { tensor: name, type_id }.into());
    };
    let ne0 = dims.first().copied().unwrap_or(1);
    if !ne0.is_multiple_of(ty.block_elems()) {
        let block = ty.block_elems();
        return Err(GgufError::BlockMismatch { tensor: name, ty: ty.name(), ne0, block }.into());
    }
    let Some(n_bytes) = ty.row_bytes(n_elements) else {
        return Err(GgufError::DimsOverflow { tensor: name, dims }.into());
    };
    if !offset.is_multiple_of(alignment) {
        return Err(GgufError::MisalignedTensor { tensor: name, offset, alignment }.into());
    }
    Ok(TensorInfo { name, dims, ty, offset, n_bytes, n_elements })
}
