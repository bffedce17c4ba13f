//! The small kernels: RMSNorm, RoPE, attention, element-wise ops, top-k.
//! Each function states the shapes of its buffers; all activations are f32.

use super::{Context, Defines, GpuError, Kernel, Step};

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
    _pad: u32,
}

/// y[r, :] = x[r, :] / rms(x[r, :]) · w     x, y: [n_rows, n]   w: [n]
pub fn rms_norm(step: &mut Step, x: &wgpu::Buffer, w: &wgpu::Buffer, y: &wgpu::Buffer, n: u32, n_rows: u32, eps: f32) -> Result<(), GpuError> {
    let params = NormParams { n, n_rows, eps, _pad: 0 };
    step.dispatch(Kernel::Norm, "rms_norm", no_defines(), &params, &[x, w, y], n_rows)
}

/// Rotary embedding convention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeMode {
    /// Pairs (2i, 2i+1): Llama (GGML "NORM").
    Interleaved,
    /// Pairs (i, i + n_rot/2): Qwen, Phi-3, Gemma (GGML "NEOX").
    HalfSplit,
}

/// How positions rotate q and k. Frequency scaling of any kind (linear, YaRN, LongRoPE, Llama 3
/// factors) comes as a per-pair divisor table computed at load time (`model::rope`).
#[derive(Clone, Copy, Debug)]
pub struct Rope {
    pub mode: RopeMode,
    /// Rotated dims per head (pairs 0 .. n_rot/2); dims past it pass through.
    pub n_rot: u32,
    pub freq_base: f32,
    /// Multiplies cos and sin (LongRoPE's attn_factor, YaRN's magnitude scaling; 1 otherwise).
    pub mscale: f32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RopeParams {
    n_tokens: u32,
    n_heads: u32,
    head_dim: u32,
    n_rot: u32,
    pos0: u32,
    neox: u32,
    freq_base: f32,
    mscale: f32,
}

/// Rotates x in place: x: [n_tokens, n_heads, head_dim], token t at position pos0 + t, pair i by
/// theta_i = pos · freq_base^(-2i / n_rot) / divisors[i], cos and sin scaled by `rope.mscale`.
/// divisors: [n_rot / 2] f32.
#[allow(clippy::too_many_arguments)]
pub fn rope(
    step: &mut Step,
    x: &wgpu::Buffer,
    divisors: &wgpu::Buffer,
    rope: &Rope,
    n_tokens: u32,
    n_heads: u32,
    head_dim: u32,
    pos0: u32,
) -> Result<(), GpuError> {
    let params = RopeParams {
        n_tokens,
        n_heads,
        head_dim,
        n_rot: rope.n_rot,
        pos0,
        neox: (rope.mode == RopeMode::HalfSplit) as u32,
        freq_base: rope.freq_base,
        mscale: rope.mscale,
    };
    let threads = n_tokens * n_heads * (rope.n_rot / 2);
    step.dispatch(Kernel::Rope, "rope", no_defines(), &params, &[x, divisors], threads.div_ceil(64))
}

/// Attention shape and options.
#[derive(Clone, Copy, Debug)]
pub struct AttentionArgs {
    pub n_tokens: u32,
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    /// Position of the first query token; the cache holds positions 0 ..= pos0 + n_tokens - 1.
    pub pos0: u32,
    pub scale: f32,
    /// Logit soft-cap (0 = off).
    pub softcap: f32,
    /// Sliding window in positions (0 = off).
    pub window: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct AttentionParams {
    n_tokens: u32,
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    pos0: u32,
    window: u32,
    scale: f32,
    softcap: f32,
}

/// Causal GQA attention.  q, out: [n_tokens, n_heads, head_dim];  k_cache, v_cache: [ctx, n_kv_heads, head_dim].
pub fn attention(step: &mut Step, q: &wgpu::Buffer, k_cache: &wgpu::Buffer, v_cache: &wgpu::Buffer, out: &wgpu::Buffer, a: &AttentionArgs) -> Result<(), GpuError> {
    if a.head_dim > 256 || a.n_kv_heads == 0 || !a.n_heads.is_multiple_of(a.n_kv_heads) {
        return Err(GpuError::Shape(format!(
            "attention with {} heads, {} KV heads of {} dims is not supported (head_dim <= 256, heads a multiple of KV heads)",
            a.n_heads, a.n_kv_heads, a.head_dim
        )));
    }
    let params = AttentionParams {
        n_tokens: a.n_tokens,
        n_heads: a.n_heads,
        n_kv_heads: a.n_kv_heads,
        head_dim: a.head_dim,
        pos0: a.pos0,
        window: a.window,
        scale: a.scale,
        softcap: a.softcap,
    };
    step.dispatch(Kernel::Attention, "attend", no_defines(), &params, &[q, k_cache, v_cache, out], a.n_tokens * a.n_heads)
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ElementwiseParams {
    n: u32,
    x_offset: u32,
    y_offset: u32,
    period: u32,
    scalar: f32,
    _pad: [u32; 3],
}

/// An element-wise op of `elementwise.wgsl` over n elements.
#[derive(Clone, Copy, Debug)]
pub enum Elementwise {
    /// y += x
    Add,
    /// y[i] += x[i % period]: a bias of `period` elements added to every row.
    AddRows { period: u32 },
    /// y = x
    Copy,
    /// y = silu(y) · x
    SwiGlu,
    /// y = gelu_tanh(y) · x
    GeGlu,
    /// y = c · tanh(y / c) (x is not read)
    Softcap(f32),
}

/// Applies `op` to y[y_offset .. y_offset + n] with x[x_offset ..].
pub fn elementwise(step: &mut Step, op: Elementwise, x: &wgpu::Buffer, y: &wgpu::Buffer, n: u32, x_offset: u32, y_offset: u32) -> Result<(), GpuError> {
    let (entry, period, scalar) = match op {
        Elementwise::Add => ("add", n, 0.0),
        Elementwise::AddRows { period } => ("add", period.max(1), 0.0),
        Elementwise::Copy => ("copy", 0, 0.0),
        Elementwise::SwiGlu => ("swiglu", 0, 0.0),
        Elementwise::GeGlu => ("geglu", 0, 0.0),
        Elementwise::Softcap(c) => ("softcap", 0, c),
    };
    let params = ElementwiseParams { n, x_offset, y_offset, period, scalar, _pad: [0; 3] };
    step.dispatch(Kernel::Elementwise, entry, no_defines(), &params, &[x, y], n.div_ceil(256))
}

/// Largest k [`TopK`] selects.
pub const MAX_TOP_K: u32 = 256;
const TOPK_CHUNK: u32 = 1024;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct TopKParams {
    n: u32,
    k: u32,
    offset: u32,
    _pad: u32,
    repeat: f32,
    presence: f32,
    frequency: f32,
    _pad2: u32,
}

impl TopKParams {
    fn new(n: u32, k: u32, offset: u32) -> Self {
        TopKParams { n, k, offset, _pad: 0, repeat: 1.0, presence: 0.0, frequency: 0.0, _pad2: 0 }
    }
}

/// Repetition penalties applied to a logits row before selection (llama.cpp semantics).
#[derive(Clone, Copy, Debug)]
pub struct PenaltyArgs {
    /// Number of (token id, count) pairs in the list buffer.
    pub n: u32,
    /// Positive logits are divided by it, negative ones multiplied (1 = off).
    pub repeat: f32,
    /// Subtracted once from every listed token.
    pub presence: f32,
    /// Subtracted `count` times.
    pub frequency: f32,
}

/// Penalises logits[offset + id] for each (id, count) in `pairs`: [n, 2] u32 (ids unique).
pub fn penalize(step: &mut Step, pairs: &wgpu::Buffer, logits: &wgpu::Buffer, offset: u32, args: PenaltyArgs) -> Result<(), GpuError> {
    let params = TopKParams { repeat: args.repeat, presence: args.presence, frequency: args.frequency, ..TopKParams::new(args.n, 0, offset) };
    step.dispatch(Kernel::TopK, "penalize", no_defines(), &params, &[pairs, logits], 1)
}

/// Scratch and result buffers of a top-k selection over rows of `n` logits.
pub struct TopK {
    pub n: u32,
    pub k: u32,
    candidates: wgpu::Buffer,
    /// The k best as (f32 bits, token id) u32 pairs: [k, 2].
    pub result: wgpu::Buffer,
    readback: wgpu::Buffer,
}

impl TopK {
    pub fn new(ctx: &Context, n: u32, k: u32) -> Result<TopK, GpuError> {
        if k == 0 || k > MAX_TOP_K {
            return Err(GpuError::Shape(format!("top-k of {k}: k must be between 1 and {MAX_TOP_K}")));
        }
        let chunks = n.div_ceil(TOPK_CHUNK) as u64;
        Ok(TopK {
            n,
            k,
            candidates: ctx.storage_buffer("topk candidates", chunks * k as u64 * 8)?,
            result: ctx.storage_buffer("topk result", k as u64 * 8)?,
            readback: ctx.readback_buffer("topk readback", k as u64 * 8),
        })
    }

    /// Records the selection of the k largest of logits[offset .. offset + n].
    pub fn record(&self, step: &mut Step, logits: &wgpu::Buffer, offset: u32) -> Result<(), GpuError> {
        let chunks = self.n.div_ceil(TOPK_CHUNK);
        let p1 = TopKParams::new(self.n, self.k, offset);
        step.dispatch(Kernel::TopK, "chunk_topk", no_defines(), &p1, &[logits, &self.candidates], chunks)?;
        let p2 = TopKParams::new(chunks * self.k, self.k, 0);
        step.dispatch(Kernel::TopK, "merge_topk", no_defines(), &p2, &[&self.candidates, &self.result], 1)
    }

    /// Submits `step` (copying the result out in the same submission) and reads the k best
    /// (token id, logit), best first.
    pub async fn submit_and_read(&self, step: Step<'_>) -> Result<Vec<(u32, f32)>, GpuError> {
        let ctx = step.context();
        let bytes = self.k as u64 * 8;
        step.submit(Some((&self.result, &self.readback, bytes)));
        let data = ctx.read_mapped(&self.readback, bytes).await?;
        let words: Vec<u32> = bytemuck::pod_collect_to_vec(&data);
        Ok(words
            .chunks_exact(2)
            .filter(|pair| pair[1] != u32::MAX)
            .map(|pair| (pair[1], f32::from_bits(pair[0])))
            .collect())
    }
}
