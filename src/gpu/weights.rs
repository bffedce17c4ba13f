//! Weight matrices on the GPU, split by rows into parts that each fit one storage binding.
//!
//! Two layouts (`shaders/quant.wgsl`'s `row_start`): the raw GGUF bytes, or — meant for CPU
//! drivers, whose SIMD lanes each compute one row; `Tuning::interleave_rows` — rows interleaved in
//! groups of 8 at word granularity, so that 8 lanes read 8 consecutive words instead of gathering
//! from 8 rows. The interleaved layout
//! is filled on the GPU: each chunk of file bytes is uploaded as it arrives and a kernel scatters
//! its words (`shaders/interleave.wgsl`), so nothing but the chunk is staged.

use super::step::Bind;
use super::{Context, GpuError, Kernel, Step};
use crate::quant::GgmlType;

/// Largest part we create, whatever the device allows: kernels address bytes with u32.
const MAX_PART_BYTES: u64 = 1 << 31;

/// One storage buffer holding rows `[first_row, first_row + rows)` of a matrix.
pub struct WeightPart {
    pub buffer: wgpu::Buffer,
    pub first_row: u32,
    pub rows: u32,
    /// Byte offset of this part's first row within the tensor's data.
    pub byte_start: u64,
    pub byte_len: u64,
}

/// A GGML matrix W: [n_rows, k] (GGUF dims `[k, n_rows]`, row-major, each row `row_bytes` long).
pub struct WeightMatrix {
    pub name: String,
    pub ty: GgmlType,
    pub k: u32,
    pub n_rows: u32,
    pub row_bytes: u64,
    pub parts: Vec<WeightPart>,
    /// Rows interleaved in groups of [`INTERLEAVE`] (else the raw layout).
    interleaved: bool,
}

/// Rows per interleaved group (a CPU driver's SIMD width in 32-bit lanes).
pub const INTERLEAVE: u64 = 8;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct InterleaveParams {
    words: u32,
    first_word: u32,
    row_words: u32,
    _pad: u32,
}

/// Which GGML types the GPU kernels can read.
pub fn gpu_supports(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(ty, F32 | F16 | BF16 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | IQ4_NL | IQ4_XS)
}

impl WeightMatrix {
    /// Allocates GPU parts for a `[n_rows, k]` matrix of type `ty` (contents are written later with
    /// [`WeightMatrix::write`]). Errors if the type has no GPU kernel or one row exceeds a binding.
    pub fn allocate(ctx: &Context, name: &str, ty: GgmlType, k: u64, n_rows: u64) -> Result<WeightMatrix, GpuError> {
        let max_part = ctx.limits.max_storage_binding.min(ctx.limits.max_buffer_size).min(MAX_PART_BYTES);
        Self::allocate_with_part_limit(ctx, name, ty, k, n_rows, max_part)
    }

    /// [`WeightMatrix::allocate`] with parts of at most `max_part` bytes (tests use small limits
    /// to exercise splitting).
    pub fn allocate_with_part_limit(
        ctx: &Context,
        name: &str,
        ty: GgmlType,
        k: u64,
        n_rows: u64,
        max_part: u64,
    ) -> Result<WeightMatrix, GpuError> {
        if !gpu_supports(ty) {
            return Err(GpuError::UnsupportedType { tensor: name.to_string(), ty: ty.name() });
        }
        if !k.is_multiple_of(32) || k > u32::MAX as u64 || n_rows > u32::MAX as u64 || n_rows == 0 {
            return Err(GpuError::Shape(format!(
                "tensor '{name}' has shape [{k}, {n_rows}]; matrices need a row length that is a multiple of 32"
            )));
        }
        let row_bytes = ty
            .row_bytes(k)
            .ok_or_else(|| GpuError::Shape(format!("tensor '{name}': row of {k} elements is not whole blocks")))?;
        // Interleaved where the adapter wants it and rows are whole words.
        let interleaved = ctx.tuning.interleave_rows && row_bytes.is_multiple_of(4) && max_part / row_bytes >= INTERLEAVE;
        // Parts start at whole rows (whole groups when interleaved) and at 4-byte boundaries
        // (buffer writes are 4-byte aligned).
        let align_rows = if interleaved { INTERLEAVE } else { (4 / gcd(row_bytes, 4)).max(1) };
        let mut rows_per_part = (max_part / row_bytes) / align_rows * align_rows;
        if rows_per_part == 0 {
            return Err(GpuError::Limit(format!(
                "tensor '{name}': one row is {row_bytes} bytes but the device binds at most {max_part} bytes"
            )));
        }
        rows_per_part = rows_per_part.min(n_rows);
        let mut parts = Vec::new();
        let mut first = 0u64;
        while first < n_rows {
            let rows = rows_per_part.min(n_rows - first);
            let byte_len = rows * row_bytes;
            let buffer_len = if interleaved { rows.next_multiple_of(INTERLEAVE) * row_bytes } else { byte_len };
            let buffer = ctx.storage_buffer(name, buffer_len)?;
            parts.push(WeightPart { buffer, first_row: first as u32, rows: rows as u32, byte_start: first * row_bytes, byte_len });
            first += rows;
        }
        Ok(WeightMatrix { name: name.to_string(), ty, k: k as u32, n_rows: n_rows as u32, row_bytes, parts, interleaved })
    }

    /// Whether the rows are interleaved (see the module docs).
    pub fn interleaved(&self) -> bool {
        self.interleaved
    }

    /// Total bytes of the tensor's data.
    pub fn byte_len(&self) -> u64 {
        self.row_bytes * self.n_rows as u64
    }

    /// Writes `data`, which holds tensor bytes `[offset, offset + data.len())`, into the parts
    /// (scattered into the interleaved layout on the GPU where it applies). `offset` must be a
    /// multiple of 4; a tail that is not is zero-padded.
    pub fn write(&self, ctx: &Context, offset: u64, data: &[u8]) {
        let queue = &ctx.queue;
        let end = offset + data.len() as u64;
        for part in &self.parts {
            let lo = offset.max(part.byte_start);
            let hi = end.min(part.byte_start + part.byte_len);
            if lo >= hi {
                continue;
            }
            let chunk = &data[(lo - offset) as usize..(hi - offset) as usize];
            let dst = lo - part.byte_start;
            let padded;
            let chunk = if chunk.len().is_multiple_of(4) {
                chunk
            } else {
                padded = [chunk, &[0u8; 3][..chunk.len().next_multiple_of(4) - chunk.len()]].concat();
                &padded[..]
            };
            if self.interleaved {
                self.scatter(ctx, part, dst, chunk);
            } else {
                queue.write_buffer(&part.buffer, dst, chunk);
            }
        }
    }

    /// Uploads raw words of `part` starting at part byte `dst` and scatters them into the
    /// interleaved layout. A failure (out of memory) surfaces as the device's error.
    fn scatter(&self, ctx: &Context, part: &WeightPart, dst: u64, chunk: &[u8]) {
        let Ok(staging) = ctx.storage_buffer("weights upload", chunk.len() as u64) else {
            // Larger than a binding: upload in halves.
            let half = (chunk.len() / 2).next_multiple_of(4);
            self.scatter(ctx, part, dst, &chunk[..half]);
            self.scatter(ctx, part, dst + half as u64, &chunk[half..]);
            return;
        };
        ctx.queue.write_buffer(&staging, 0, chunk);
        let words = (chunk.len() / 4) as u32;
        let params = InterleaveParams { words, first_word: (dst / 4) as u32, row_words: (self.row_bytes / 4) as u32, _pad: 0 };
        let mut step = Step::new(ctx);
        let buffers = [Bind::Read(&staging), Bind::Write(&part.buffer)];
        // Recording only fails for a shader that does not compile (a bug): the device error says so.
        if step.dispatch(Kernel::Interleave, "main", &Default::default(), &params, &buffers, words.div_ceil(64)).is_ok() {
            step.submit(None);
        }
    }

    /// Bytes of GPU memory held.
    pub fn gpu_bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.buffer.size()).sum()
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}
