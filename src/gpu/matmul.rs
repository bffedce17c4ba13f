//! Quantized matrix kernels: matrix × activations (decode and prefill), the fused attention and
//! feed-forward inputs, and quantized embedding lookup.
//!
//! All of them read weights in their raw GGUF block layout and share the inner loop
//! (`shaders/rowdot.wgsl`): TT tokens (1, 4, 8 or 16) per pass so that prefill reuses every
//! dequantized weight, G threads per row (the adapter's tuning), and an optional RMSNorm of the
//! input folded in (its weight multiplies the weights, its 1/rms the sums).

use super::step::Bind;
use super::variant::{InputPath, MatrixKernel, MatrixShape, MatrixVariant};
use super::weights::TEXTURE_WIDTH_LOG2;
use super::{Defines, DeviceLimits, GpuError, KvLayer, Kernel, Step, WeightMatrix};
use crate::quant::GgmlType;

/// Threads per matrix-kernel workgroup (`matvec_common.wgsl`: WG), but see [`rows4_workgroup`] and
/// [`attn_in_head_workgroup`].
const MATRIX_WORKGROUP: u32 = 64;

/// The activations a matrix kernel reads.
#[derive(Clone, Copy)]
pub struct Input<'b> {
    /// f32 activations: token t's row at element `x_offset + t * x_stride`, k elements.
    pub x: &'b wgpu::Buffer,
    pub n_tokens: u32,
    /// First element of token 0's row (a multiple of 4).
    pub x_offset: u32,
    /// Elements between consecutive tokens' rows (a multiple of 4).
    pub x_stride: u32,
    /// The model's f32 vectors (norm weights, biases; see `model::WeightStore`).
    pub vecs: &'b wgpu::Buffer,
    /// RMSNorm of each input row first: (offset of the weight in `vecs`, a multiple of 4; eps).
    pub norm: Option<(u32, f32)>,
}

impl<'b> Input<'b> {
    /// Dense `[n_tokens, k]` activations, not normalised.
    pub fn dense(x: &'b wgpu::Buffer, vecs: &'b wgpu::Buffer, n_tokens: u32, k: u32) -> Self {
        Input { x, n_tokens, x_offset: 0, x_stride: k, vecs, norm: None }
    }
    /// The same activations RMSNorm-ed with the weight at `vecs[weight ..]`.
    pub fn normed(mut self, weight: u32, eps: f32) -> Self {
        self.norm = Some((weight, eps));
        self
    }
    fn check(&self) -> Result<(), GpuError> {
        let aligned = self.x_offset.is_multiple_of(4) && self.x_stride.is_multiple_of(4) && self.norm.is_none_or(|(w, _)| w.is_multiple_of(4));
        if !aligned || self.n_tokens == 0 {
            return Err(GpuError::Shape(format!(
                "matrix input: {} tokens, offset {}, stride {}, norm {:?} (offsets must be multiples of 4)",
                self.n_tokens, self.x_offset, self.x_stride, self.norm
            )));
        }
        Ok(())
    }
}

/// Workgroup memory the matrix kernels use besides a staged input row (attn_in's head values and
/// the reductions, with room to spare).
const MATRIX_KERNEL_SHARED_BYTES: u32 = 12 << 10;

/// Tokens one pass of a matrix kernel computes (TILE_T): 1 (decode), 4, 8, or 16 for longer
/// prefill chunks, at most `most` (8 or 16).
fn tile(n_tokens: u32, most: u32) -> u32 {
    match n_tokens {
        1 => 1,
        2..=4 => 4,
        _ if n_tokens <= 8 || most <= 8 => 8,
        _ => 16,
    }
}

/// The most tokens of an attn_in tile: it keeps the tile's head values in workgroup memory (2048
/// f32 within WebGPU's 16 KiB), 16 tokens of heads up to 128 dims, 8 of 256-dim heads.
fn attn_in_most_tokens(head_dim: u32) -> u32 {
    if head_dim <= 128 {
        16
    } else {
        8
    }
}

/// How one matrix-kernel call runs: its variant (as it applies to this input), the shader
/// defines, and how it binds the input — for a uniform input in prefill, one dispatch per token
/// tile, each binding its tile's rows.
struct MatrixSetup<'b> {
    /// The shape the variant was chosen for (its `tokens`: the prefill bucket, see [`tile`]).
    shape: MatrixShape,
    /// Tokens per pass (TILE_T): the shape's, or fewer so that a uniform input fits.
    tile: u32,
    variant: MatrixVariant,
    /// Decode with four rows per thread taken together (ROWS4).
    rows4: bool,
    /// Threads per workgroup (WORKGROUP).
    workgroup: u32,
    defines: Defines,
    input: Input<'b>,
    /// Bytes of input one uniform binding covers (a tile's rows).
    uniform_bytes: u64,
    /// The input norm's weight bound as a uniform (XN_UNIFORM: decode with a uniform input and a
    /// norm; bound after the kernel's other buffers).
    norm_weight: Option<Bind<'b>>,
}

/// One dispatch's share of the tokens and its input binding.
struct TokenTile<'b> {
    /// The input binding: the storage buffer, or the tile's rows as a uniform.
    x: Bind<'b>,
    /// `x_offset` as the kernel sees it (0 when the uniform range starts at the tile's first row).
    x_offset: u32,
    /// First token of the tile and how many tokens it has.
    t0: u32,
    n_tokens: u32,
}

impl<'b> MatrixSetup<'b> {
    /// The same with workgroups of `threads` threads.
    fn with_workgroup(mut self, threads: u32) -> Self {
        self.workgroup = threads;
        self.defines = self.defines.constant("WORKGROUP", threads);
        self
    }

    /// Rows one matvec / ffn_in workgroup computes.
    fn rows_per_workgroup(&self) -> u32 {
        self.workgroup / self.variant.row_threads * self.variant.rows_per_thread
    }

    /// The dispatches to make: all tokens at once, or one per tile with a uniform input.
    fn tiles(&self) -> Vec<TokenTile<'b>> {
        let input = &self.input;
        if self.variant.input != InputPath::Uniform {
            return vec![TokenTile { x: Bind::Read(input.x), x_offset: input.x_offset, t0: 0, n_tokens: input.n_tokens }];
        }
        let tile = self.tile;
        (0..input.n_tokens)
            .step_by(tile as usize)
            .map(|t0| {
                let offset = (input.x_offset + t0 * input.x_stride) as u64 * 4;
                TokenTile { x: Bind::Uniform(input.x, offset, self.uniform_bytes), x_offset: 0, t0, n_tokens: tile.min(input.n_tokens - t0) }
            })
            .collect()
    }
}

/// The bytes of input a uniform binding of one `tile`-token tile covers, if every tile's binding
/// fits: within the uniform binding limit, at aligned offsets, inside the buffer.
fn uniform_tile_bytes(ctx: &super::Context, input: &Input, k: u32, tile: u32) -> Option<u64> {
    let tile_rows = tile.min(input.n_tokens);
    let bytes = ((tile_rows - 1) * input.x_stride + k) as u64 * 4;
    let align = ctx.limits.uniform_align as u64;
    let tiles = input.n_tokens.div_ceil(tile);
    let last_end = (input.x_offset as u64 + ((tiles - 1) * tile) as u64 * input.x_stride as u64) * 4 + bytes;
    let fits = bytes <= ctx.limits.max_uniform_binding
        && (input.x_offset as u64 * 4).is_multiple_of(align)
        && (tiles == 1 || (tile as u64 * input.x_stride as u64 * 4).is_multiple_of(align))
        && last_end <= input.x.size();
    fits.then_some(bytes)
}

/// The variant the context picks for `kernel` on a `rows` × `k` matrix of `ty` and this input
/// (tiles of up to `most_tokens`), with the input path made to fit. A uniform input binds a
/// tile's rows (one row in decode) and must fit [`uniform_tile_bytes`]; where the shape's tile
/// does not, the tile shrinks (to 8, then 4) until it does — a uniform 8-token tile is faster than
/// a 16-token one read from storage on the CPU drivers that pick uniform inputs. A staged input needs one token and the workgroup
/// memory. Otherwise the kernel reads storage. Subgroup reductions need subgroups at least G wide.
fn matrix_setup<'b>(step: &Step, kernel: MatrixKernel, ty: GgmlType, rows: u32, input: &Input<'b>, k: u32, most_tokens: u32) -> MatrixSetup<'b> {
    let ctx = step.context();
    let shape = MatrixShape { kernel, ty, rows, k, tokens: tile(input.n_tokens, most_tokens) };
    let mut variant = ctx.matrix_variant(&shape);
    let mut tile = shape.tokens;
    let mut uniform = uniform_tile_bytes(ctx, input, k, tile);
    while variant.input == InputPath::Uniform && uniform.is_none() && tile > 4 {
        tile /= 2;
        uniform = uniform_tile_bytes(ctx, input, k, tile);
    }
    let uniform_bytes = uniform.unwrap_or(0);
    variant.input = match variant.input {
        InputPath::Uniform if uniform.is_some() => InputPath::Uniform,
        InputPath::Uniform | InputPath::Workgroup if input.n_tokens == 1 && k * 4 + MATRIX_KERNEL_SHARED_BYTES <= ctx.limits.max_workgroup_storage => {
            InputPath::Workgroup
        }
        _ => InputPath::Storage,
    };
    if variant.input != InputPath::Uniform {
        tile = shape.tokens;
    }
    let mut d = match tile {
        1 => Defines::new().constant("TILE_T", 1),
        4 => Defines::new().constant("TILE_T", 4).flag("TILE4"),
        8 => Defines::new().constant("TILE_T", 8).flag("TILE4").flag("TILE8"),
        _ => Defines::new().constant("TILE_T", 16).flag("TILE4").flag("TILE8").flag("TILE16"),
    };
    let g = variant.row_threads;
    variant.subgroup &= g > 1 && g <= ctx.limits.subgroup_min_size;
    // Prefill kernels take their passes from the grid (`row_passes` in matvec_common.wgsl): the
    // rows per thread size the dispatch only, and variants differing in it share one pipeline.
    let passes_constant = if tile == 1 { variant.rows_per_thread } else { 1 };
    d = d.constant("ROW_THREADS", g).constant("ROWS_PER_THREAD", passes_constant);
    if variant.subgroup {
        d = d.flag("SG_REDUCE");
    } else if g > 1 {
        d = d.flag("REDUCE");
    }
    // Decode with a uniform input normalises it in every thread (XN_UNIFORM, matvec_common.wgsl)
    // where the norm's weight can be bound as a uniform too; other normalised inputs take the
    // general path (NORM: a reduction per workgroup, the weight read per unit).
    let norm_weight = input.norm.and_then(|(w, _)| {
        let (offset, bytes) = (w as u64 * 4, k as u64 * 4);
        let fits = variant.input == InputPath::Uniform
            && tile == 1
            && offset.is_multiple_of(ctx.limits.uniform_align as u64)
            && bytes <= ctx.limits.max_uniform_binding
            && offset + bytes <= input.vecs.size();
        fits.then_some(Bind::Uniform(input.vecs, offset, bytes))
    });
    let mut rows4 = false;
    if norm_weight.is_some() {
        d = d.flag("XN_UNIFORM");
    }
    if input.norm.is_some() && norm_weight.is_none() {
        d = d.flag("NORM");
    } else if tile == 1 && k.is_multiple_of(32) {
        // Decode rows a block of 32 at a time (`block_dot` in rowdot.wgsl); with four rows per
        // thread, each group of G lanes takes four rows together, sharing each input load
        // (`row_dot4`); attn_in takes a head's rows four at a time.
        d = d.flag("BLOCK32");
        if variant.rows_per_thread == 4 {
            d = d.flag("ROWS4");
            rows4 = true;
        }
    } else if tile > 1 && ctx.tuning.prefill_block_tiles {
        // Prefill tiles read and dequantize whole blocks of 32 once for their tokens, where
        // the weight type has such a reader (`block_weights` in rowdot.wgsl).
        d = d.flag("BLOCK_TILES");
    }
    if ctx.tuning.broadcast_inputs && g == 1 {
        // Lanes share each block's input loads (`load_x32` in rowdot.wgsl): every lane of a
        // subgroup runs the row loops, rows past the matrix included (their sums unused).
        d = d.flag("X_BROADCAST");
    }
    match variant.input {
        InputPath::Storage => {}
        InputPath::Workgroup => d = d.flag("STAGE_X").constant("XS_LEN", k / 4),
        InputPath::Uniform => d = d.flag("X_UNIFORM").constant("XS_LEN", (uniform_bytes / 16) as u32),
    }
    let workgroup = if rows4 && g == 1 && kernel == MatrixKernel::Matvec { rows4_workgroup(rows) } else { MATRIX_WORKGROUP };
    d = d.constant("WORKGROUP", workgroup);
    MatrixSetup { shape, tile, variant, rows4, workgroup, defines: d, input: *input, uniform_bytes, norm_weight }
}

/// Bytes of workgroup memory attn_in declares besides the reduction arrays and a staged input:
/// its head values (2048 f32), the input's norm scales and the heads' (16 f32 each).
const ATTN_IN_FIXED_SHARED_BYTES: u32 = 2048 * 4 + 2 * 16 * 4;

/// Threads of an attn_in workgroup whose rows are shared by G > 1 threads (GPUs): enough for one
/// pass over the head's `rows` (head_dim, or head_dim / 4 groups of four rows with ROWS4) with
/// G threads each (as a power of two, at least 64), within the device's
/// workgroup size and workgroup memory (`reduce_in_memory`: 36 bytes per thread for the
/// cross-lane sums and `workgroup_sum`, else 4; `staged_bytes`: the input row staged). A decode
/// step has only one workgroup per head (48 for Llama 3.2 1B), so the threads of each are what
/// keeps loads in flight: with 64 threads and 16 rows per pass, an H200 took 78 µs per layer's
/// attn_in (3.5 MB of Q4_K; against 16 µs for the output projection's 2.4 MB), one pass 25 µs.
fn attn_in_head_workgroup(rows: u32, g: u32, reduce_in_memory: bool, staged_bytes: u32, limits: &DeviceLimits) -> u32 {
    let per_thread = if reduce_in_memory { 36 } else { 4 };
    let fits = |threads: u32| ATTN_IN_FIXED_SHARED_BYTES + staged_bytes + threads * per_thread <= limits.max_workgroup_storage;
    let most = 1 << limits.max_invocations_per_workgroup.max(MATRIX_WORKGROUP).ilog2();
    let mut threads = (rows * g).next_power_of_two().clamp(MATRIX_WORKGROUP, most);
    while threads > MATRIX_WORKGROUP && !fits(threads) {
        threads /= 2;
    }
    threads
}

/// Threads of an attn_in workgroup taking four rows of its head each (ROWS4, CPU drivers): a
/// quarter of the head's rows, as a power of two (the workgroup sums) from 8 to 64, instead of 64
/// threads of which a 64-dim head kept 16 busy while all 64 computed the input's norm
/// (XN_UNIFORM).
fn attn_in_rows4_workgroup(head_dim: u32) -> u32 {
    head_dim.div_ceil(4).next_power_of_two().clamp(8, MATRIX_WORKGROUP)
}

/// Threads of a matvec workgroup taking four rows each (ROWS4, CPU drivers): 64, or 16 where
/// 64 would make fewer than 8 workgroups, so that the driver's threads share the rows evenly
/// (576 rows in 64-thread workgroups are 3 workgroups: one of two cores does two of them).
/// Measured on lavapipe (kernel_timing, t1r4-uniform, medians of 6 runs): 576 rows of 1536
/// 0.49 -> 0.38 ms, 1536 rows of 576 0.49 -> 0.40 ms; ffn_in's 1536 rows got slower in smaller
/// workgroups (0.63 -> 0.77 ms), so it keeps 64.
fn rows4_workgroup(rows: u32) -> u32 {
    if rows.div_ceil(4 * MATRIX_WORKGROUP) >= 8 {
        MATRIX_WORKGROUP
    } else {
        16
    }
}

/// How a [`matvec`] writes its outputs.
#[derive(Clone, Copy, Debug)]
pub struct Output {
    /// Elements between consecutive tokens' outputs (usually the matrix's row count).
    pub y_stride: u32,
    /// Add to `y` instead of overwriting it (fuses a residual add).
    pub accumulate: bool,
    /// y = c · tanh(y / c) before the add (0 = off; Gemma 2's final logits).
    pub softcap: f32,
}

impl Output {
    pub fn dense(w: &WeightMatrix) -> Self {
        Output { y_stride: w.n_rows, accumulate: false, softcap: 0.0 }
    }
    pub fn accumulate(mut self) -> Self {
        self.accumulate = true;
        self
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct MatvecParams {
    k: u32,
    n_tokens: u32,
    x_offset: u32,
    x_stride: u32,
    norm: u32,
    eps: f32,
    rows: u32,
    row_offset: u32,
    first_row: u32,
    row_bytes: u32,
    y_stride: u32,
    accumulate: u32,
    softcap: f32,
    _pad: [u32; 3],
}

/// y[t, r] (+)= Σ_k W[r, k] · x̂[t, k]    W: [n_rows, k] quantized,  x̂: the input (normalised
/// when asked),  y: [n_tokens, y_stride] f32. One dispatch per row-part of W.
pub fn matvec(step: &mut Step, w: &WeightMatrix, input: &Input, y: &wgpu::Buffer, out: Output) -> Result<(), GpuError> {
    input.check()?;
    let setup = matrix_setup(step, MatrixKernel::Matvec, w.ty, w.n_rows, input, w.k, 16);
    let defines = setup.defines.clone().matrix(0, w);
    let rows_per_workgroup = setup.rows_per_workgroup();
    let (norm, eps) = input.norm.unwrap_or((0, 0.0));
    for tile in setup.tiles() {
        for part in &w.parts {
            let params = MatvecParams {
                k: w.k,
                n_tokens: tile.n_tokens,
                x_offset: tile.x_offset,
                x_stride: input.x_stride,
                norm,
                eps,
                rows: part.rows,
                // The tile's outputs start t0 rows of y further.
                row_offset: part.first_row + tile.t0 * out.y_stride,
                first_row: 0,
                row_bytes: w.row_pitch as u32,
                y_stride: out.y_stride,
                accumulate: out.accumulate as u32,
                softcap: out.softcap,
                _pad: [0; 3],
            };
            let buffers: Vec<Bind> = [tile.x, Bind::Read(input.vecs), part.bind(), Bind::Write(y)].into_iter().chain(setup.norm_weight).collect();
            step.tag_next(setup.shape);
            step.dispatch(Kernel::Matvec, "main", &defines, &params, &buffers, part.rows.div_ceil(rows_per_workgroup))?;
        }
    }
    Ok(())
}

/// Rows `first .. first + count` of a matrix held in one buffer (one row-part): a whole matrix,
/// or a slice of a fused one (Phi-3's QKV or gate/up).
#[derive(Clone, Copy)]
pub struct Rows<'b> {
    pub w: &'b WeightMatrix,
    pub first: u32,
}

impl<'b> Rows<'b> {
    pub fn all(w: &'b WeightMatrix) -> Self {
        Rows { w, first: 0 }
    }
    fn single_part(&self, count: u32, k: u32) -> Result<Bind<'b>, GpuError> {
        let w = self.w;
        if w.parts.len() != 1 || self.first + count > w.n_rows || w.k != k {
            return Err(GpuError::Shape(format!(
                "'{}' ([{}, {}] in {} parts): rows {}..{} of length {k} must lie in one buffer",
                w.name,
                w.n_rows,
                w.k,
                w.parts.len(),
                self.first,
                self.first + count
            )));
        }
        Ok(w.parts[0].bind())
    }
}

/// The gated activation of [`ffn_in`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Glu {
    /// silu(gate) · up
    SwiGlu,
    /// gelu_tanh(gate) · up
    GeGlu,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct FfnParams {
    k: u32,
    n_tokens: u32,
    x_offset: u32,
    x_stride: u32,
    norm: u32,
    eps: f32,
    rows: u32,
    gate_first: u32,
    up_first: u32,
    gate_row_bytes: u32,
    up_row_bytes: u32,
    /// Element of y where this dispatch's first token's outputs go.
    y_offset: u32,
}

/// y[t, r] = act(Σ_k G[r, k] x̂[t, k]) · Σ_k U[r, k] x̂[t, k]  for r < `hidden`
/// G, U: `hidden` rows each (`gate`, `up`),  x̂: the (normalised) input,  y: [n_tokens, hidden] f32.
pub fn ffn_in(step: &mut Step, gate: Rows, up: Rows, hidden: u32, glu: Glu, input: &Input, y: &wgpu::Buffer) -> Result<(), GpuError> {
    input.check()?;
    let k = gate.w.k;
    let (gate_buf, up_buf) = (gate.single_part(hidden, k)?, up.single_part(hidden, k)?);
    let setup = matrix_setup(step, MatrixKernel::FfnIn, gate.w.ty, hidden, input, k, 16);
    let mut defines = setup.defines.clone().matrix(0, gate.w).matrix(1, up.w);
    if glu == Glu::GeGlu {
        defines = defines.flag("GEGLU");
    }
    // (Packed blocks take their own loop, fetching each group's scales once: `row_dot4`.)
    let whole_blocks = |w: &WeightMatrix| super::shader::reads_whole_blocks(w.ty) && !w.interleaved() && !w.packed();
    if setup.rows4 && whole_blocks(gate.w) && whole_blocks(up.w) {
        defines = defines.flag("GATE_UP_X32");
    }
    let (norm, eps) = input.norm.unwrap_or((0, 0.0));
    let rows_per_workgroup = setup.rows_per_workgroup();
    for tile in setup.tiles() {
        let params = FfnParams {
            k,
            n_tokens: tile.n_tokens,
            x_offset: tile.x_offset,
            x_stride: input.x_stride,
            norm,
            eps,
            rows: hidden,
            gate_first: gate.first,
            up_first: up.first,
            gate_row_bytes: gate.w.row_pitch as u32,
            up_row_bytes: up.w.row_pitch as u32,
            y_offset: tile.t0 * hidden,
        };
        let buffers: Vec<Bind> = [tile.x, Bind::Read(input.vecs), gate_buf, up_buf, Bind::Write(y)].into_iter().chain(setup.norm_weight).collect();
        step.tag_next(setup.shape);
        step.dispatch(Kernel::FfnIn, "main", &defines, &params, &buffers, hidden.div_ceil(rows_per_workgroup))?;
    }
    Ok(())
}

/// Rotary embedding: how positions rotate queries and keys.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RopeArgs {
    /// Pairs (i, i + n_rot/2) (GGML NEOX: Qwen, Phi-3, Gemma) instead of (2i, 2i+1) (Llama).
    pub neox: bool,
    /// Rotated dims per head (the rest pass through).
    pub n_rot: u32,
    pub freq_base: f32,
    pub freq_scale: f32,
    /// Per-pair frequency divisors [n_rot / 2] at this offset in the vectors buffer.
    pub factors: Option<u32>,
    /// Multiplies cos and sin (1 unless the scaling says otherwise).
    pub mscale: f32,
}

/// Shapes and options of [`attn_in`].
#[derive(Clone, Copy, Debug)]
pub struct AttnInArgs {
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    /// Positions the KV cache holds.
    pub ctx_len: u32,
    /// KV cache stored as f16 pairs (else f32).
    pub kv_f16: bool,
    /// Bias offsets in the vectors buffer: [n_heads · head_dim], [n_kv · head_dim], [n_kv · head_dim].
    pub q_bias: Option<u32>,
    pub k_bias: Option<u32>,
    pub v_bias: Option<u32>,
    /// Per-head RMSNorm weights [head_dim] of queries and keys, and their eps.
    pub q_norm: Option<u32>,
    pub k_norm: Option<u32>,
    pub head_eps: f32,
    pub rope: RopeArgs,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct AttnInParams {
    k: u32,
    n_tokens: u32,
    x_offset: u32,
    x_stride: u32,
    norm: u32,
    eps: f32,
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    q_first: u32,
    k_first: u32,
    v_first: u32,
    q_row_bytes: u32,
    k_row_bytes: u32,
    v_row_bytes: u32,
    ctx_len: u32,
    q_bias: u32,
    k_bias: u32,
    v_bias: u32,
    q_norm: u32,
    k_norm: u32,
    head_eps: f32,
    n_rot: u32,
    neox: u32,
    freq_base: f32,
    freq_scale: f32,
    rope_factors: u32,
    mscale: f32,
    /// The dispatch's first token (its tile's, with a uniform input bound per tile).
    t_base: u32,
    _pad: [u32; 3],
}

const NONE: u32 = u32::MAX;

/// The attention input of tokens at positions pos0 + t (pos0 from the step state):
/// q = rope(norm(Wq x̂ + bq)) → `q_out` [n_tokens, n_heads, head_dim] f32;
/// k = rope(norm(Wk x̂ + bk)), v = Wv x̂ + bv → the layer's KV cache `kv` at those positions
/// (`gpu::kv`: keys then values, each [ctx_len, n_kv_heads, head_dim], f16 pairs or f32 in a
/// buffer, or f16 in a texture).
#[allow(clippy::too_many_arguments)]
pub fn attn_in(
    step: &mut Step,
    q: Rows,
    k: Rows,
    v: Rows,
    input: &Input,
    q_out: &wgpu::Buffer,
    kv: &KvLayer,
    a: &AttnInArgs,
) -> Result<(), GpuError> {
    input.check()?;
    let d = q.w.k;
    let (hd, q_dim, kv_dim) = (a.head_dim, a.n_heads * a.head_dim, a.n_kv_heads * a.head_dim);
    if hd > 256 || !hd.is_multiple_of(2) || a.rope.n_rot > hd || !a.rope.n_rot.is_multiple_of(2) {
        return Err(GpuError::Shape(format!("attention heads of {hd} dims with {} rotated are not supported (even, at most 256)", a.rope.n_rot)));
    }
    let buffers = [q.single_part(q_dim, d)?, k.single_part(kv_dim, d)?, v.single_part(kv_dim, d)?];
    let mut setup = matrix_setup(step, MatrixKernel::AttnIn, q.w.ty, q_dim + 2 * kv_dim, input, d, attn_in_most_tokens(hd));
    let g = setup.variant.row_threads;
    if setup.rows4 && g == 1 {
        setup = setup.with_workgroup(attn_in_rows4_workgroup(hd));
    } else if g > 1 {
        // A pass covers the head's rows, or its groups of four rows with ROWS4.
        let row_groups = if setup.rows4 { hd.div_ceil(4) } else { hd };
        let reduce_in_memory = !setup.variant.subgroup;
        let staged_bytes = if setup.variant.input == InputPath::Workgroup { d * 4 } else { 0 };
        let threads = attn_in_head_workgroup(row_groups, g, reduce_in_memory, staged_bytes, &step.context().limits);
        setup = setup.with_workgroup(threads);
    }
    // (The head norms take a thread per token at least: `norm_heads` in attn_in.wgsl.)
    debug_assert!(setup.workgroup >= setup.tile, "attn_in: {} threads for {} tokens", setup.workgroup, setup.tile);
    let mut defines = setup.defines.clone().matrix(0, q.w).matrix(1, k.w).matrix(2, v.w);
    if kv.in_texture() {
        if !a.kv_f16 || !hd.is_multiple_of(8) {
            return Err(GpuError::Shape(format!("a KV cache in a texture holds f16 heads of a multiple of 8 dims, not {hd}")));
        }
        defines = defines.flag("KV_TEXTURE").constant("TEX_SHIFT", TEXTURE_WIDTH_LOG2);
    }
    if a.kv_f16 {
        defines = defines.flag("KV_F16");
    }
    let (norm, eps) = input.norm.unwrap_or((0, 0.0));
    let units = a.n_heads + 2 * a.n_kv_heads;
    for tile in setup.tiles() {
        let params = AttnInParams {
            k: d,
            n_tokens: tile.n_tokens,
            x_offset: tile.x_offset,
            x_stride: input.x_stride,
            norm,
            eps,
            n_heads: a.n_heads,
            n_kv_heads: a.n_kv_heads,
            head_dim: hd,
            q_first: q.first,
            k_first: k.first,
            v_first: v.first,
            q_row_bytes: q.w.row_pitch as u32,
            k_row_bytes: k.w.row_pitch as u32,
            v_row_bytes: v.w.row_pitch as u32,
            ctx_len: a.ctx_len,
            q_bias: a.q_bias.unwrap_or(NONE),
            k_bias: a.k_bias.unwrap_or(NONE),
            v_bias: a.v_bias.unwrap_or(NONE),
            q_norm: a.q_norm.unwrap_or(NONE),
            k_norm: a.k_norm.unwrap_or(NONE),
            head_eps: a.head_eps,
            n_rot: a.rope.n_rot,
            neox: a.rope.neox as u32,
            freq_base: a.rope.freq_base,
            freq_scale: a.rope.freq_scale,
            rope_factors: a.rope.factors.unwrap_or(NONE),
            mscale: a.rope.mscale,
            t_base: tile.t0,
            _pad: [0; 3],
        };
        let binds = [
            tile.x,
            Bind::Read(input.vecs),
            buffers[0],
            buffers[1],
            buffers[2],
            Bind::Write(q_out),
            kv.bind_write(),
        ]
        .into_iter()
        .chain(setup.norm_weight)
        .collect::<Vec<_>>();
        step.tag_next(setup.shape);
        step.dispatch(Kernel::AttnIn, "main", &defines, &params, &binds, units * tile.n_tokens.div_ceil(setup.tile))?;
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
    let defines = Defines::new().matrix(0, w);
    for part in &w.parts {
        let params = EmbedParams {
            k: w.k,
            first_row: part.first_row,
            rows: part.rows,
            n_tokens,
            row_bytes: w.row_pitch as u32,
            scale,
            _pad: [0; 2],
        };
        let buffers = [part.bind(), Bind::Read(ids), Bind::Write(out)];
        step.dispatch(Kernel::Embed, "main", &defines, &params, &buffers, n_tokens)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_invocations_per_workgroup: u32, max_workgroup_storage: u32) -> DeviceLimits {
        DeviceLimits {
            max_storage_binding: 128 << 20,
            max_buffer_size: 1 << 30,
            max_workgroups_per_dim: 65535,
            uniform_align: 256,
            max_invocations_per_workgroup,
            max_workgroup_storage,
            max_uniform_binding: 65536,
            max_texture_rows: 8192,
            shader_f16: false,
            subgroups: true,
            subgroup_min_size: 32,
        }
    }

    #[test]
    fn attn_in_head_workgroups_cover_the_head_within_the_limits() {
        let native = limits(1024, 48 << 10);
        // One pass over a 64-dim head: 4 lanes × 64 rows, 16 × 64 (subgroup sums need 4 bytes a
        // thread: 8256 + 4096 bytes fit).
        assert_eq!(attn_in_head_workgroup(64, 4, true, 0, &native), 256);
        assert_eq!(attn_in_head_workgroup(64, 16, false, 0, &native), 1024);
        // Sums in workgroup memory, 36 bytes a thread: 1024 threads need 45120 bytes; with an
        // 8 KiB staged input row they do not fit 48 KiB, 512 do.
        assert_eq!(attn_in_head_workgroup(64, 16, true, 0, &native), 1024);
        assert_eq!(attn_in_head_workgroup(64, 16, true, 8192, &native), 512);
        // Heads of 80 dims round up to a power of two; never fewer than 64 threads, never more
        // than the device's workgroup (WebGPU's default 256) or workgroup memory (16 KiB) allow.
        assert_eq!(attn_in_head_workgroup(80, 2, true, 0, &native), 256);
        assert_eq!(attn_in_head_workgroup(8, 2, true, 0, &native), 64);
        assert_eq!(attn_in_head_workgroup(128, 32, false, 0, &limits(256, 16 << 10)), 256);
        assert_eq!(attn_in_head_workgroup(128, 32, true, 0, &limits(256, 16 << 10)), 128);
        assert_eq!(attn_in_head_workgroup(128, 32, true, 0, &limits(1000, 48 << 10)), 512);
    }
}
