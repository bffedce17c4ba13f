//! Where the model's tensors live on the GPU, and the stream that fills them from file bytes.
//!
//! Matrices stay in their raw GGUF block layout ([`WeightMatrix`]); 1-D tensors (norm weights,
//! biases) are dequantized on the CPU to f32 — they are tiny. The loader hands file bytes to
//! [`WeightStore::feed`] in file order, in chunks of any size; nothing holds the whole file.

use crate::error::{quote, Error, Result};
use crate::gguf::{GgufFile, TensorInfo};
use crate::gpu::{Context, WeightMatrix};
use crate::quant;

/// A matrix in the store.
#[derive(Clone, Copy, Debug)]
pub struct MatrixId(usize);
/// An f32 vector in the store: its first element in the vectors buffer (a multiple of 4).
#[derive(Clone, Copy, Debug)]
pub struct VectorId(u32);

/// Computes an uploaded vector from a tensor's f32 values once they have all arrived.
pub type Derive = Box<dyn FnOnce(&[f32]) -> Vec<f32> + Send + Sync>;

enum Target {
    Matrix(usize),
    /// Bytes are gathered, then dequantized to f32 (and passed through `derive` when given) and
    /// written at element `offset` of the vectors buffer.
    Vector { offset: u32, n: usize, bytes: Vec<u8>, derive: Option<Derive> },
}

struct Pending {
    name: String,
    info: TensorInfo,
    received: u64,
    target: Target,
}

/// Elements every vector's offset in the vectors buffer is a multiple of: 256 bytes, the largest
/// uniform-binding offset alignment WebGPU allows, so that a norm weight can be bound as a
/// uniform (`gpu::matmul`'s fused decode norm).
const VECTOR_ALIGN: u32 = 64;

/// All weights of a model on the GPU, and the bookkeeping to fill them.
#[derive(Default)]
pub struct WeightStore {
    matrices: Vec<WeightMatrix>,
    /// Every 1-D tensor, f32, each starting at a multiple of 4 elements (16 bytes): kernels take
    /// them as offsets into this one buffer, so a fused kernel binds one buffer for all of its
    /// norm weights and biases. Allocated by [`WeightStore::allocate_vectors`].
    vectors: Option<wgpu::Buffer>,
    /// Elements the vectors buffer holds.
    vector_elems: u32,
    /// Vectors computed at load (no file data), written by [`WeightStore::allocate_vectors`].
    constants: Vec<(u32, Vec<f32>)>,
    pending: Vec<Pending>,
    /// Bytes held back so that every GPU write starts at a 4-byte aligned file offset.
    carry: Vec<u8>,
    carry_offset: u64,
}

impl WeightStore {
    pub fn m(&self, id: MatrixId) -> &WeightMatrix {
        &self.matrices[id.0]
    }

    /// The element offset of a vector in [`WeightStore::vectors`].
    pub fn v(&self, id: VectorId) -> u32 {
        id.0
    }

    /// The buffer of all vectors (after [`WeightStore::allocate_vectors`]).
    pub fn vectors(&self) -> &wgpu::Buffer {
        self.vectors.as_ref().expect("vectors are allocated when the model is built")
    }

    /// Allocates the buffer of every vector registered so far (16 bytes when there are none).
    pub fn allocate_vectors(&mut self, ctx: &Context) -> Result<()> {
        let vectors = ctx.storage_buffer("vectors", self.vector_elems.max(4) as u64 * 4)?;
        for (offset, values) in self.constants.drain(..) {
            ctx.queue.write_buffer(&vectors, offset as u64 * 4, bytemuck::cast_slice(&values));
        }
        self.vectors = Some(vectors);
        Ok(())
    }

    /// Registers the matrix `name` of GGUF shape [k, n_rows] (W: [n_rows, k]).
    pub fn matrix(&mut self, ctx: &Context, file: &GgufFile, name: &str, k: u32, n_rows: u32) -> Result<MatrixId> {
        let info = find(file, name, &[k as u64, n_rows as u64])?;
        let m = WeightMatrix::allocate(ctx, name, info.ty, k as u64, n_rows as u64)?;
        self.matrices.push(m);
        let id = self.matrices.len() - 1;
        self.pending.push(Pending { name: name.into(), info, received: 0, target: Target::Matrix(id) });
        Ok(MatrixId(id))
    }

    /// The matrix `name` if the file has it.
    pub fn optional_matrix(&mut self, ctx: &Context, file: &GgufFile, name: &str, k: u32, n_rows: u32) -> Result<Option<MatrixId>> {
        match file.tensor(name) {
            Some(_) => self.matrix(ctx, file, name, k, n_rows).map(Some),
            None => Ok(None),
        }
    }

    /// Registers the 1-D tensor `name` of `n` elements (uploaded as f32).
    pub fn vector(&mut self, ctx: &Context, file: &GgufFile, name: &str, n: u32) -> Result<VectorId> {
        self.register_vector(ctx, file, name, n, None)
    }

    /// Registers an f32 vector computed by `derive` from the 1-D tensor `name` of `n` elements
    /// when loading ends; `derive` must return `n` values.
    pub fn derived_vector(&mut self, ctx: &Context, file: &GgufFile, name: &str, n: u32, derive: Derive) -> Result<VectorId> {
        self.register_vector(ctx, file, name, n, Some(derive))
    }

    /// Registers `values`, which need no file data, as a vector (written when the vectors
    /// buffer is allocated).
    pub fn constant_vector(&mut self, ctx: &Context, name: &str, values: &[f32]) -> Result<VectorId> {
        let _ = ctx;
        let offset = self.reserve_vector(name, values.len() as u32)?;
        self.constants.push((offset, values.to_vec()));
        Ok(VectorId(offset))
    }

    /// Reserves `n` elements of the vectors buffer, at an offset that is a multiple of
    /// [`VECTOR_ALIGN`].
    fn reserve_vector(&mut self, name: &str, n: u32) -> Result<u32> {
        let offset = self.vector_elems;
        self.vector_elems = offset
            .checked_add(n.next_multiple_of(VECTOR_ALIGN))
            .ok_or_else(|| Error::Unsupported(format!("tensor '{name}': too many vector elements")))?;
        Ok(offset)
    }

    fn register_vector(&mut self, ctx: &Context, file: &GgufFile, name: &str, n: u32, derive: Option<Derive>) -> Result<VectorId> {
        let info = find(file, name, &[n as u64])?;
        if !info.ty.has_cpu_dequant() {
            return Err(Error::Unsupported(format!("tensor {} has type {}, which cannot be read yet", quote(name), info.ty.name())));
        }
        let _ = ctx;
        let offset = self.reserve_vector(name, n)?;
        let bytes = Vec::with_capacity(info.n_bytes as usize);
        let target = Target::Vector { offset, n: n as usize, bytes, derive };
        self.pending.push(Pending { name: name.into(), info, received: 0, target });
        Ok(VectorId(offset))
    }

    /// File byte ranges `[start, end)` the store needs, sorted, adjacent ranges merged.
    pub fn needed_ranges(&self) -> Vec<(u64, u64)> {
        let mut ranges: Vec<(u64, u64)> = self.pending.iter().map(|p| (p.info.offset, p.info.offset + p.info.n_bytes)).collect();
        ranges.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
        for (s, e) in ranges {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        merged
    }

    /// Accepts file bytes `[offset, offset + data.len())`, in file order, in chunks of any size.
    /// GPU writes must start at 4-byte aligned offsets, so an unaligned remainder is held back
    /// until the next chunk (or [`WeightStore::finish`]).
    pub fn feed(&mut self, ctx: &Context, offset: u64, data: &[u8]) -> Result<()> {
        let mut joined;
        let (start, bytes) = if !self.carry.is_empty() && self.carry_offset + self.carry.len() as u64 == offset {
            joined = std::mem::take(&mut self.carry);
            joined.extend_from_slice(data);
            (self.carry_offset, &joined[..])
        } else {
            self.flush_carry(ctx);
            if !offset.is_multiple_of(4) {
                // Tensor data starts aligned, so bytes before the next aligned offset are padding.
                let skip = ((4 - offset % 4) as usize).min(data.len());
                (offset + skip as u64, &data[skip..])
            } else {
                (offset, data)
            }
        };
        let whole = bytes.len() / 4 * 4;
        self.deliver(ctx, start, &bytes[..whole]);
        self.carry = bytes[whole..].to_vec();
        self.carry_offset = start + whole as u64;
        Ok(())
    }

    fn flush_carry(&mut self, ctx: &Context) {
        let carry = std::mem::take(&mut self.carry);
        self.deliver(ctx, self.carry_offset, &carry);
    }

    /// Routes bytes starting at an aligned file offset to the tensors they belong to.
    fn deliver(&mut self, ctx: &Context, offset: u64, data: &[u8]) {
        let end = offset + data.len() as u64;
        for p in &mut self.pending {
            let lo = offset.max(p.info.offset + p.received);
            let hi = end.min(p.info.offset + p.info.n_bytes);
            if lo >= hi {
                continue;
            }
            let chunk = &data[(lo - offset) as usize..(hi - offset) as usize];
            match &mut p.target {
                Target::Matrix(i) => self.matrices[*i].write(ctx, lo - p.info.offset, chunk),
                Target::Vector { bytes, .. } => bytes.extend_from_slice(chunk),
            }
            p.received += chunk.len() as u64;
        }
    }

    /// Uploads the gathered vectors and checks that every tensor was received whole.
    pub fn finish(&mut self, ctx: &Context) -> Result<()> {
        self.flush_carry(ctx);
        let vectors = self.vectors.as_ref().expect("vectors are allocated when the model is built");
        for p in self.pending.drain(..) {
            if p.received != p.info.n_bytes {
                return Err(Error::Io(format!(
                    "tensor {} received {} of {} bytes: the model data ended early",
                    quote(&p.name), p.received, p.info.n_bytes
                )));
            }
            if let Target::Vector { offset, n, bytes, derive } = p.target {
                let mut values = vec![0f32; n];
                quant::dequantize(p.info.ty, &bytes, &mut values)
                    .map_err(|e| Error::Unsupported(format!("tensor {}: {e}", quote(&p.name))))?;
                if let Some(derive) = derive {
                    values = derive(&values);
                }
                values.truncate(n);
                ctx.queue.write_buffer(vectors, offset as u64 * 4, bytemuck::cast_slice(&values));
            }
        }
        Ok(())
    }

    /// Matrix bytes a decode step reads: all of every matrix but `embedding`, of which one row
    /// (all of it when it is also `output`, tied embeddings).
    pub fn bytes_read_per_token(&self, embedding: MatrixId, output: MatrixId) -> u64 {
        let all: u64 = self.matrices.iter().map(|m| m.byte_len()).sum();
        let e = &self.matrices[embedding.0];
        if embedding.0 == output.0 { all } else { all - e.byte_len() + e.row_bytes }
    }

    /// Bytes of GPU memory held by the weights.
    pub fn gpu_bytes(&self) -> u64 {
        self.matrices.iter().map(|m| m.gpu_bytes()).sum::<u64>() + self.vectors.as_ref().map_or(0, |v| v.size())
    }
}

/// The tensor `name`, checked to have exactly the GGUF dims `dims`.
fn find(file: &GgufFile, name: &str, dims: &[u64]) -> Result<TensorInfo> {
    let info = file.tensor(name).ok_or_else(|| Error::Unsupported(format!("the model has no tensor {}", quote(name))))?;
    if info.dims != dims {
        return Err(Error::Unsupported(format!("tensor {} has shape {:?}, expected {:?}", quote(name), info.dims, dims)));
    }
    Ok(info.clone())
}
