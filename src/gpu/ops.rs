//! The small kernels: attention over the KV cache, RMSNorm (a matrix kernel's input, Gemma's
//! post-norm), repetition penalties and top-k. Each function states the shapes of its buffers; all activations are f32.

use super::step::Bind;
use super::weights::TEXTURE_WIDTH_LOG2;
use super::{Context, Defines, GpuError, KvLayer, Kernel, Step};

fn no_defines() -> &'static Defines {
    static EMPTY: std::sync::OnceLock<Defines> = std::sync::OnceLock::new();
    EMPTY.get_or_init(Defines::new)
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct NormParams {
    n: u32,
    n_rows: u32,
    eps: f32,
    w: u32,
    src_offset: u32,
    _pad: [u32; 3],
}

/// x[r, :] += y[r, :] / rms(y[r, :]) · w     x, y: [n_rows, n]   w: vecs[w ..][0 .. n]
#[allow(clippy::too_many_arguments)]
pub fn post_norm_add(step: &mut Step, vecs: &wgpu::Buffer, w: u32, y: &wgpu::Buffer, x: &wgpu::Buffer, n: u32, n_rows: u32, eps: f32) -> Result<(), GpuError> {
    let params = NormParams { n, n_rows, eps, w, src_offset: 0, _pad: [0; 3] };
    dispatch_norm(step, "post_norm_add", &params, &[Bind::Read(vecs), Bind::Read(y), Bind::Write(x)])
}

/// Threads of a norm workgroup with one thread per row (`shaders/norm.wgsl`, THREAD_PER_ROW).
const NORM_ROWS_WORKGROUP: u32 = 64;

/// Records the norm kernel's `entry` over `params.n_rows` rows of `params.n`: one thread per row
/// where the tuning says so (`Tuning::norm_thread_per_row`) and a row's two loops stay under
/// lavapipe's loop limit, else one workgroup per row.
fn dispatch_norm(step: &mut Step, entry: &'static str, params: &NormParams, buffers: &[Bind]) -> Result<(), GpuError> {
    static THREAD_PER_ROW: std::sync::OnceLock<Defines> = std::sync::OnceLock::new();
    let (n, n_rows) = (params.n, params.n_rows);
    let (defines, workgroups) = if step.context().tuning.norm_thread_per_row && 2 * n < LAVAPIPE_LOOP_LIMIT {
        (THREAD_PER_ROW.get_or_init(|| Defines::new().flag("THREAD_PER_ROW")), n_rows.div_ceil(NORM_ROWS_WORKGROUP))
    } else {
        (no_defines(), n_rows)
    };
    step.dispatch(Kernel::Norm, entry, defines, params, buffers, workgroups)
}

/// out[r, :] = x[r, :] / rms(x[r, :]) · w, the RMSNorm of rows `first_row .. first_row + n_rows`
/// of x (the input of a matrix kernel, normalised once per token instead of in every workgroup).
/// x: [first_row + n_rows, n]   out: [n_rows, n]   w: vecs[w ..][0 .. n]
#[allow(clippy::too_many_arguments)]
pub fn rms_norm(step: &mut Step, vecs: &wgpu::Buffer, w: u32, x: &wgpu::Buffer, first_row: u32, out: &wgpu::Buffer, n: u32, n_rows: u32, eps: f32) -> Result<(), GpuError> {
    let params = NormParams { n, n_rows, eps, w, src_offset: first_row * n, _pad: [0; 3] };
    dispatch_norm(step, "rms_norm", &params, &[Bind::Read(vecs), Bind::Read(x), Bind::Write(out)])
}

/// Attention shape and options.
#[derive(Clone, Copy, Debug)]
pub struct AttentionArgs {
    pub n_tokens: u32,
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    /// Positions the KV cache holds.
    pub ctx_len: u32,
    /// KV cache stored as f16 pairs (else f32).
    pub kv_f16: bool,
    pub scale: f32,
    /// Logit soft-cap (0 = off).
    pub softcap: f32,
    /// Sliding window in positions (0 = off).
    pub window: u32,
    /// Slices each (token, head) row of the cache is split into (1 ..= [`MAX_SPLITS`]).
    pub splits: u32,
    /// Query tokens one workgroup handles in turn (prefill; 1 for decode).
    pub q_block: u32,
    /// One thread per (token, head, slice) instead of one workgroup (`attend_rows`: for CPU
    /// drivers; `q_block` is then unused). Taken when head_dim is a multiple of 16, else the
    /// workgroup kernel runs; `splits` must then be at least [`AttentionArgs::min_splits`].
    pub thread_per_row: bool,
}

/// Threads of an `attend_rows` workgroup (`shaders/attention.wgsl`).
const ATTEND_ROWS_WORKGROUP: u32 = 16;

/// Threads of an `attend_lanes` workgroup, each one slice of a (token, head) row.
pub const ATTEND_LANES: u32 = 8;

/// Most cached positions one `attend_lanes` thread may go through: one loop iteration each,
/// under lavapipe's limit with room for the combine's loops (at most 80 iterations).
const ATTEND_LANES_MAX_KEYS: u32 = LAVAPIPE_LOOP_LIMIT - 128;

/// Most slices [`attention`] splits the cached positions into.
pub const MAX_SPLITS: u32 = 64;

/// Loop iterations after which lavapipe ends a shader invocation (its guard against endless
/// loops, counted over all the invocation's loops; the results are then wrong, silently).
const LAVAPIPE_LOOP_LIMIT: u32 = 65535;

/// Most cached positions one `attend_rows` thread can go through on lavapipe: each group of 4
/// costs it up to 5 · head_dim / 16 + 1 loop iterations (scores and values 8 dimensions per
/// iteration, a rescale 16; with a margin for the loops before and after).
pub fn attend_rows_max_keys(head_dim: u32) -> u32 {
    4 * ((LAVAPIPE_LOOP_LIMIT - head_dim / 4 - 64) / (5 * head_dim / 16 + 1))
}

impl AttentionArgs {
    /// Does this run `attend_rows` (asked for, and a head size it takes)?
    pub fn uses_thread_per_row(&self) -> bool {
        self.thread_per_row && self.head_dim.is_multiple_of(16)
    }

    /// Fewest slices that keep each `attend_rows` thread under lavapipe's loop limit at any
    /// position (1 for the workgroup kernel).
    pub fn min_splits(&self) -> u32 {
        if !self.uses_thread_per_row() {
            return 1;
        }
        self.max_span().div_ceil(attend_rows_max_keys(self.head_dim)).max(1)
    }

    /// Can the cache of this shape live in a texture ([`KvLayer::texture`], read by
    /// `attend_lanes`)? f16, head_dim a multiple of 8 up to 256, and each of the kernel's
    /// [`ATTEND_LANES`] threads under lavapipe's loop limit at any position.
    pub fn kv_texture_fits(&self) -> bool {
        self.kv_f16 && self.head_dim.is_multiple_of(8) && self.head_dim <= 256 && self.max_span().div_ceil(ATTEND_LANES) <= ATTEND_LANES_MAX_KEYS
    }

    /// Most positions a query sees: the context, or the sliding window within it.
    fn max_span(&self) -> u32 {
        if self.window > 0 { self.window.min(self.ctx_len) } else { self.ctx_len }
    }

    /// Scratch f32 elements [`attention`] needs for its partial results.
    pub fn scratch_elems(&self) -> u64 {
        self.n_tokens as u64 * self.n_heads as u64 * self.splits as u64 * (self.head_dim as u64 + 2)
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct AttentionParams {
    n_tokens: u32,
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    ctx_len: u32,
    splits: u32,
    window: u32,
    q_block: u32,
    scale: f32,
    softcap: f32,
    _pad1: [u32; 2],
}

impl AttentionParams {
    fn new(a: &AttentionArgs, splits: u32, q_block: u32) -> Self {
        AttentionParams {
            n_tokens: a.n_tokens,
            n_heads: a.n_heads,
            n_kv_heads: a.n_kv_heads,
            head_dim: a.head_dim,
            ctx_len: a.ctx_len,
            splits,
            window: a.window,
            q_block,
            scale: a.scale,
            softcap: a.softcap,
            _pad1: [0; 2],
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct CombineParams {
    n_tokens: u32,
    n_heads: u32,
    head_dim: u32,
    splits: u32,
}

/// Causal GQA attention of queries at positions pos0 + t (pos0 from the step state), split over
/// the cached positions (flash-decoding: one workgroup — or with `thread_per_row` one thread — per
/// (token, head, slice), then a combine; a thread per row in a single slice writes the output
/// itself, in one dispatch). A cache in a texture runs `attend_lanes` instead: a workgroup per
/// (token, head) whose [`ATTEND_LANES`] threads take a slice each and combine them in the same
/// dispatch (`splits`, `q_block`, `thread_per_row` and `scratch` unused).
/// q, out: [n_tokens, n_heads, head_dim];  kv: the layer's cache (`gpu::kv`);
/// scratch: at least [`AttentionArgs::scratch_elems`] f32.
pub fn attention(step: &mut Step, q: &wgpu::Buffer, kv: &KvLayer, scratch: &wgpu::Buffer, out: &wgpu::Buffer, a: &AttentionArgs) -> Result<(), GpuError> {
    if a.head_dim > 256 || !a.head_dim.is_multiple_of(2) || a.n_kv_heads == 0 || !a.n_heads.is_multiple_of(a.n_kv_heads) {
        return Err(GpuError::Shape(format!(
            "attention with {} heads, {} KV heads of {} dims is not supported (even head_dim <= 256, heads a multiple of KV heads)",
            a.n_heads, a.n_kv_heads, a.head_dim
        )));
    }
    if kv.in_texture() {
        return attend_lanes(step, q, kv, out, a);
    }
    if a.splits == 0 || a.splits > MAX_SPLITS || scratch.size() < a.scratch_elems() * 4 {
        return Err(GpuError::Shape(format!("attention split {} ways needs {} scratch bytes", a.splits, a.scratch_elems() * 4)));
    }
    if a.splits < a.min_splits() {
        return Err(GpuError::Shape(format!(
            "attention with one thread per row over {} positions of {} dims needs at least {} slices, not {}",
            a.ctx_len,
            a.head_dim,
            a.min_splits(),
            a.splits
        )));
    }
    let params = AttentionParams::new(a, a.splits, a.q_block.max(1));
    let defines = if a.kv_f16 { Defines::new().flag("KV_F16") } else { Defines::new() };
    let rows = a.n_tokens * a.n_heads;
    let buffers = [Bind::Read(q), kv.bind_read(), Bind::Write(scratch)];
    if a.uses_thread_per_row() && a.splits == 1 {
        // Each thread holds a whole row: it writes the output, no combine.
        let buffers = [Bind::Read(q), kv.bind_read(), Bind::Write(out)];
        return step.dispatch(Kernel::Attention, "attend_rows", &defines.clone().flag("SINGLE_SLICE"), &params, &buffers, rows.div_ceil(ATTEND_ROWS_WORKGROUP));
    }
    if a.uses_thread_per_row() {
        step.dispatch(Kernel::Attention, "attend_rows", &defines, &params, &buffers, (rows * a.splits).div_ceil(ATTEND_ROWS_WORKGROUP))?;
    } else {
        let blocks = a.n_tokens.div_ceil(a.q_block.max(1));
        step.dispatch(Kernel::Attention, "attend", &defines, &params, &buffers, blocks * a.n_heads * a.splits)?;
    }
    let combine = CombineParams { n_tokens: a.n_tokens, n_heads: a.n_heads, head_dim: a.head_dim, splits: a.splits };
    step.dispatch(Kernel::AttentionCombine, "combine", no_defines(), &combine, &[Bind::Read(scratch), Bind::Write(out)], rows)
}

/// [`attention`] over a cache in a texture (see there).
fn attend_lanes(step: &mut Step, q: &wgpu::Buffer, kv: &KvLayer, out: &wgpu::Buffer, a: &AttentionArgs) -> Result<(), GpuError> {
    if !a.kv_texture_fits() {
        return Err(GpuError::Shape(format!(
            "a KV cache in a texture needs f16 values, head_dim a multiple of 8 up to 256 and at most {} positions per slice (head_dim {}, {} positions)",
            ATTEND_LANES_MAX_KEYS,
            a.head_dim,
            a.ctx_len
        )));
    }
    let defines = Defines::new()
        .flag("KV_TEXTURE")
        .constant("TEX_SHIFT", TEXTURE_WIDTH_LOG2)
        .constant("HEAD_TEXELS", a.head_dim / 8)
        .constant("LANE_VEC4S", ATTEND_LANES * a.head_dim / 4);
    let buffers = [Bind::Read(q), kv.bind_read(), Bind::Write(out)];
    if step.context().tuning.broadcast_inputs && a.n_tokens >= ATTEND_LANES && a.max_span() + ATTEND_LANES <= ATTEND_LANES_MAX_KEYS {
        // Prefill: a block of ATTEND_LANES query tokens per workgroup, each position's key and
        // value fetched once for the block and shared by subgroup broadcasts (each thread goes
        // through every position its block sees, hence the span's limit).
        let params = AttentionParams::new(a, 1, ATTEND_LANES);
        let defines = defines.flag("QUERY_LANES").constant("LANE_TEXELS", (a.head_dim / 8).div_ceil(ATTEND_LANES));
        return step.dispatch(Kernel::Attention, "attend_queries", &defines, &params, &buffers, a.n_tokens.div_ceil(ATTEND_LANES) * a.n_heads);
    }
    let params = AttentionParams::new(a, ATTEND_LANES, 1);
    step.dispatch(Kernel::Attention, "attend_lanes", &defines, &params, &buffers, a.n_tokens * a.n_heads)
}

/// Largest k [`TopK`] selects.
pub const MAX_TOP_K: u32 = 256;
const TOPK_CHUNK: u32 = 1024;
/// Most chunks `merge_topk` merges (256 threads following 4 sorted lists each).
const TOPK_MAX_CHUNKS: u32 = 1024;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct TopKParams {
    n: u32,
    k: u32,
    offset: u32,
    _pad: u32,
}

impl TopKParams {
    fn new(n: u32, k: u32, offset: u32) -> Self {
        TopKParams { n, k, offset, _pad: 0 }
    }
}

/// Penalises logits[offset + id] for each (id, count) in `pairs`: [n, 2] u32 (ids unique), with
/// n and the strengths from the step state ([`super::StepState`]: llama.cpp's repetition,
/// presence and frequency penalties).
pub fn penalize(step: &mut Step, pairs: &wgpu::Buffer, logits: &wgpu::Buffer, offset: u32) -> Result<(), GpuError> {
    let params = TopKParams::new(0, 0, offset);
    step.dispatch(Kernel::TopK, "penalize", no_defines(), &params, &[Bind::Read(pairs), Bind::Write(logits)], 1)
}

/// Scratch and result buffers of a top-k selection over rows of `n` logits.
pub struct TopK {
    pub n: u32,
    pub k: u32,
    /// Rows selected from (each independently).
    pub rows: u32,
    candidates: wgpu::Buffer,
    /// The k best of each row as (f32 bits, token id) u32 pairs: [rows, k, 2].
    pub result: wgpu::Buffer,
}

impl TopK {
    /// A selection of the k best of one row.
    pub fn new(ctx: &Context, n: u32, k: u32) -> Result<TopK, GpuError> {
        Self::with_rows(ctx, n, k, 1)
    }

    /// A selection of the k best of each of `rows` rows (the verify step of speculative decoding).
    pub fn with_rows(ctx: &Context, n: u32, k: u32, rows: u32) -> Result<TopK, GpuError> {
        if k == 0 || k > MAX_TOP_K || rows == 0 {
            return Err(GpuError::Shape(format!("top-k of {k} over {rows} rows: k must be between 1 and {MAX_TOP_K}")));
        }
        if n.div_ceil(TOPK_CHUNK) > TOPK_MAX_CHUNKS {
            return Err(GpuError::Shape(format!("top-k over {n} logits: at most {} are supported", TOPK_MAX_CHUNKS * TOPK_CHUNK)));
        }
        let chunks = n.div_ceil(TOPK_CHUNK) as u64;
        Ok(TopK {
            n,
            k,
            rows,
            candidates: ctx.storage_buffer("topk candidates", chunks * k as u64 * 8)?,
            result: ctx.storage_buffer("topk result", rows as u64 * k as u64 * 8)?,
        })
    }

    /// Records the selection of each row r < `rows` of logits: [rows, n] into result row r (the
    /// rows run one after the other and share the scratch); row 0's best id goes to `next_id[0]`.
    pub fn record_rows(&self, step: &mut Step, logits: &wgpu::Buffer, next_id: &wgpu::Buffer) -> Result<(), GpuError> {
        let chunks = self.n.div_ceil(TOPK_CHUNK);
        for r in 0..self.rows {
            let p1 = TopKParams::new(self.n, self.k, r * self.n);
            self.record_chunks(step, logits, &p1, chunks)?;
            let p2 = TopKParams::new(chunks * self.k, self.k, 2 * self.k * r);
            let buffers = [Bind::Read(&self.candidates), Bind::Write(&self.result), Bind::Write(next_id)];
            step.dispatch(Kernel::TopK, "merge_topk", no_defines(), &p2, &buffers, 1)?;
        }
        Ok(())
    }

    /// Records the selection of the k largest of logits[offset .. offset + n]; the best id also
    /// goes to `next_id[0]` (where the next step's embedding reads it).
    pub fn record(&self, step: &mut Step, logits: &wgpu::Buffer, offset: u32, next_id: &wgpu::Buffer) -> Result<(), GpuError> {
        let chunks = self.n.div_ceil(TOPK_CHUNK);
        let p1 = TopKParams::new(self.n, self.k, offset);
        self.record_chunks(step, logits, &p1, chunks)?;
        let p2 = TopKParams::new(chunks * self.k, self.k, 0);
        let buffers = [Bind::Read(&self.candidates), Bind::Write(&self.result), Bind::Write(next_id)];
        step.dispatch(Kernel::TopK, "merge_topk", no_defines(), &p2, &buffers, 1)
    }

    /// The first stage: each chunk's k best into `candidates`. CPU drivers whose subgroups hold 8
    /// threads (those that share loads by broadcasts) run it without barriers (`chunk_topk_lanes`).
    fn record_chunks(&self, step: &mut Step, logits: &wgpu::Buffer, params: &TopKParams, chunks: u32) -> Result<(), GpuError> {
        let buffers = [Bind::Read(logits), Bind::Write(&self.candidates)];
        if step.context().tuning.broadcast_inputs {
            step.dispatch(Kernel::TopK, "chunk_topk_lanes", &Defines::new().flag("LANES_TOPK"), params, &buffers, chunks)
        } else {
            step.dispatch(Kernel::TopK, "chunk_topk", no_defines(), params, &buffers, chunks)
        }
    }

    /// Bytes of GPU memory held.
    pub fn gpu_bytes(&self) -> u64 {
        self.candidates.size() + self.result.size()
    }

    /// The k best (token id, logit), best first, from the result's bytes.
    pub fn decode(bytes: &[u8]) -> Vec<(u32, f32)> {
        let words: Vec<u32> = bytemuck::pod_collect_to_vec(bytes);
        words
            .chunks_exact(2)
            .filter(|pair| pair[1] != u32::MAX)
            .map(|pair| (pair[1], f32::from_bits(pair[0])))
            .collect()
    }
}
