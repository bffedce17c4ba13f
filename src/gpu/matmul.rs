//! Quantized matrix × activations (decode and prefill) and quantized embedding lookup.

use super::{Defines, GpuError, Kernel, Step, WeightMatrix};

/// Threads per matmul workgroup (`matmul.wgsl`).
const MATMUL_WORKGROUP: u32 = 64;


#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct MatmulParams {
    k: u32,
    rows: u32,
    row_offset: u32,
    n_tokens: u32,
    x_offset: u32,
    x_stride: u32,
    y_stride: u32,
    accumulate: u32,
    row_bytes: u32,
    first_row: u32,
    _pad: [u32; 2],
}

/// Where a matmul reads its activations and how it writes its outputs.
#[derive(Clone, Copy, Debug)]
pub struct MatmulArgs {
    pub n_tokens: u32,
    /// First element of token 0's input row in `x`.
    pub x_offset: u32,
    /// Elements between consecutive tokens' inputs (usually `k`).
    pub x_stride: u32,
    /// Elements between consecutive tokens' outputs (usually `n_rows`).
    pub y_stride: u32,
    /// Add to `y` instead of overwriting it (fuses a residual add).
    pub accumulate: bool,
}

impl MatmulArgs {
    /// Dense `[n_tokens, k]` in, dense `[n_tokens, n_rows]` out.
    pub fn dense(w: &WeightMatrix, n_tokens: u32) -> Self {
        MatmulArgs { n_tokens, x_offset: 0, x_stride: w.k, y_stride: w.n_rows, accumulate: false }
    }
    pub fn accumulate(mut self) -> Self {
        self.accumulate = true;
        self
    }
}

/// y[t, r] (+)= Σ_k W[r, k] · x[t, k]   W: [n_rows, k] quantized,  x: [n_tokens, k] f32,
/// y: [n_tokens, n_rows] f32 (strides and offsets from `args`).
pub fn matmul(step: &mut Step, w: &WeightMatrix, x: &wgpu::Buffer, y: &wgpu::Buffer, args: MatmulArgs) -> Result<(), GpuError> {
    matmul_rows(step, w, 0..w.n_rows, x, y, args)
}

/// [`matmul`] with only rows `rows` of W (a slice of a fused matrix such as Phi-3's QKV):
/// y[t, r - rows.start] (+)= Σ_k W[r, k] · x[t, k] for r in `rows`.
pub fn matmul_rows(
    step: &mut Step,
    w: &WeightMatrix,
    rows: std::ops::Range<u32>,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    args: MatmulArgs,
) -> Result<(), GpuError> {
    if rows.end > w.n_rows || rows.start >= rows.end {
        return Err(GpuError::Shape(format!("rows {rows:?} of '{}' ({} rows)", w.name, w.n_rows)));
    }
    if !args.x_offset.is_multiple_of(4) || !args.x_stride.is_multiple_of(4) {
        return Err(GpuError::Shape(format!("matmul input offset {} / stride {} must be multiples of 4", args.x_offset, args.x_stride)));
    }
    // Prefill handles 4 or 8 tokens per pass so each dequantized weight is reused.
    let mut defines = Defines::new().flag(w.ty.name());
    defines = match args.n_tokens {
        1 => defines.constant("TILE_T", 1),
        2..=4 => defines.constant("TILE_T", 4).flag("TILE4"),
        _ => defines.constant("TILE_T", 8).flag("TILE4").flag("TILE8"),
    };
    let row_threads = step.context().tuning.matmul_row_threads;
    defines = defines.constant("ROW_THREADS", row_threads);
    if row_threads > 1 {
        defines = defines.flag("REDUCE");
    }
    let rows_per_workgroup = MATMUL_WORKGROUP / row_threads;
    for part in &w.parts {
        // The rows of this part that fall in `rows`.
        let lo = rows.start.max(part.first_row);
        let hi = rows.end.min(part.first_row + part.rows);
        if lo >= hi {
            continue;
        }
        let params = MatmulParams {
            k: w.k,
            rows: hi - lo,
            row_offset: lo - rows.start,
            n_tokens: args.n_tokens,
            x_offset: args.x_offset,
            x_stride: args.x_stride,
            y_stride: args.y_stride,
            accumulate: args.accumulate as u32,
            row_bytes: w.row_bytes as u32,
            first_row: lo - part.first_row,
            _pad: [0; 2],
        };
        step.dispatch(Kernel::Matmul, "main", &defines, &params, &[&part.buffer, x, y], (hi - lo).div_ceil(rows_per_workgroup))?;
    }
    Ok(())
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct EmbedParams {
    k: u32,
    first_row: u32,
    rows: u32,
    n_tokens: u32,
    row_bytes: u32,
    scale: f32,
    _pad: [u32; 2],
}

/// out[t, :] = scale · W[ids[t], :]    W: [vocab, k] quantized, ids: [n_tokens] u32, out: [n_tokens, k] f32.
pub fn embed(step: &mut Step, w: &WeightMatrix, ids: &wgpu::Buffer, out: &wgpu::Buffer, n_tokens: u32, scale: f32) -> Result<(), GpuError> {
    let defines = Defines::new().flag(w.ty.name());
    for part in &w.parts {
        let params = EmbedParams {
            k: w.k,
            first_row: part.first_row,
            rows: part.rows,
            n_tokens,
            row_bytes: w.row_bytes as u32,
            scale,
            _pad: [0; 2],
        };
        step.dispatch(Kernel::Embed, "main", &defines, &params, &[&part.buffer, ids, out], n_tokens)?;
    }
    Ok(())
}
