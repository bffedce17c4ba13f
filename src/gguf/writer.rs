//! Minimal GGUF v3 writer for tests: builds a valid file in memory (which
//! tests may then corrupt). Not meant for production use.

use super::value::{type_id, Value};
use super::DEFAULT_ALIGNMENT;
use crate::quant::GgmlType;

/// A tensor to write; `type_id` is raw so tests can write unknown types.
#[derive(Debug, Clone)]
pub struct WTensor {
    pub name: String,
    pub dims: Vec<u64>,
    pub type_id: u32,
    pub data: Vec<u8>,
}

/// Builder for a GGUF v3 byte vector.
#[derive(Debug, Clone, Default)]
pub struct Writer {
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<WTensor>,
    /// Alignment used for layout; set via [`Writer::alignment`] to also write
    /// `general.alignment`.
    pub align: Option<u64>,
}

/// The built file plus where things landed, for tests that corrupt it.
#[derive(Debug, Clone)]
pub struct Built {
    pub bytes: Vec<u8>,
    /// Offset of the `u64 n_tensors` field (`u64 n_kv` follows).
    pub n_tensors_at: usize,
    /// Offset of each metadata entry (its key's u64 length field).
    pub kv_at: Vec<usize>,
    /// Offset of each metadata value (just after its u32 value type).
    pub kv_value_at: Vec<usize>,
    /// Offset of each tensor info (its name's u64 length field).
    pub tensor_info_at: Vec<usize>,
    /// Offset of each tensor info's u64 relative data offset field.
    pub tensor_offset_field_at: Vec<usize>,
    pub data_offset: usize,
    /// Absolute offset of each tensor's data.
    pub tensor_data_at: Vec<usize>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a metadata entry (arrays must be homogeneous).
    pub fn kv(mut self, key: &str, value: Value) -> Self {
        self.metadata.push((key.to_owned(), value));
        self
    }

    /// Uses `a` for layout and records it as `general.alignment` (u32).
    pub fn alignment(mut self, a: u32) -> Self {
        self.align = Some(a.into());
        self.kv("general.alignment", Value::U32(a))
    }

    /// Adds a tensor; `data` should be `ty.row_bytes(n_elements)` bytes.
    pub fn tensor(self, name: &str, dims: &[u64], ty: GgmlType, data: Vec<u8>) -> Self {
        self.tensor_raw(name, dims, ty.id(), data)
    }

    /// Adds a tensor with a raw type id (may be invalid on purpose).
    pub fn tensor_raw(mut self, name: &str, dims: &[u64], type_id: u32, data: Vec<u8>) -> Self {
        self.tensors.push(WTensor { name: name.to_owned(), dims: dims.to_vec(), type_id, data });
        self
    }

    /// Serializes the file.
    pub fn build(&self) -> Vec<u8> {
        self.build_layout().bytes
    }

    /// Serializes the file and reports where each part went.
    pub fn build_layout(&self) -> Built {
        let align = self.align.unwrap_or(DEFAULT_ALIGNMENT).max(1) as usize;
        let mut b = Vec::new();
        b.extend_from_slice(b"GGUF");
        b.extend_from_slice(&3u32.to_le_bytes());
        let n_tensors_at = b.len();
        b.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        b.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        let (mut kv_at, mut kv_value_at) = (Vec::new(), Vec::new());
        for (k, v) in &self.metadata {
            kv_at.push(b.len());
            put_str(&mut b, k);
            b.extend_from_slice(&v.gguf_type_id().to_le_bytes());
            kv_value_at.push(b.len());
            put_value(&mut b, v);
        }
        // Relative offsets: each tensor padded to the alignment.
        let mut rel = Vec::new();
        let mut next = 0usize;
        for t in &self.tensors {
            rel.push(next);
            next = pad(next + t.data.len(), align);
        }
        let (mut tensor_info_at, mut tensor_offset_field_at) = (Vec::new(), Vec::new());
        for (t, &r) in self.tensors.iter().zip(&rel) {
            tensor_info_at.push(b.len());
            put_str(&mut b, &t.name);
            b.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                b.extend_from_slice(&d.to_le_bytes());
            }
            b.extend_from_slice(&t.type_id.to_le_bytes());
            tensor_offset_field_at.push(b.len());
            b.extend_from_slice(&(r as u64).to_le_bytes());
        }
        let data_offset = pad(b.len(), align);
        b.resize(data_offset, 0);
        let mut tensor_data_at = Vec::new();
        for (t, &r) in self.tensors.iter().zip(&rel) {
            b.resize(data_offset + r, 0);
            tensor_data_at.push(b.len());
            b.extend_from_slice(&t.data);
        }
        b.resize(data_offset + next, 0);
        Built { bytes: b, n_tensors_at, kv_at, kv_value_at, tensor_info_at, tensor_offset_field_at, data_offset, tensor_data_at }
    }
}

fn pad(x: usize, a: usize) -> usize {
    x.div_ceil(a) * a
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as u64).to_le_bytes());
    b.extend_from_slice(s.as_bytes());
}

/// Writes a value's payload (no type id). Arrays write their element type
/// (from the first element; u8 when empty) and length first.
fn put_value(b: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => b.push(*x),
        Value::I8(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => b.push(*x as u8),
        Value::String(s) => put_str(b, s),
        Value::Array(items) => {
            let elem = items.first().map_or(type_id::U8, Value::gguf_type_id);
            assert!(items.iter().all(|i| i.gguf_type_id() == elem), "GGUF arrays must be homogeneous");
            b.extend_from_slice(&elem.to_le_bytes());
            b.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for i in items {
                put_value(b, i);
            }
        }
    }
}
