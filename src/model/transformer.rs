//! The decoder-only transformer shared by every supported family (Llama, Qwen 2/3, Phi-3,
//! Gemma 2/3): pre-norm blocks of RMSNorm → attention (RoPE, grouped-query heads, KV cache) →
//! RMSNorm → gated feed-forward. What differs between families is read from the file: which
//! tensors exist (biases, Q/K norms, post-norms, fused matrices) and the [`Config`].
//! Reads top to bottom like llama2.c's `forward`. The ops are fused so that a decode step of a
//! block is 6 dispatches (8 with Gemma's post-norms): attention input (norm, Q/K/V, biases, Q/K
//! norms, RoPE, KV-cache write), attention (split-K) and its combine, the output projection with
//! the residual add, the feed-forward input (norm, gate, up, activation), the down projection
//! with the residual add.

use super::config::{Activation, Rope, RopeMode};
use super::rope::RopeScaling;
use super::{Config, MatrixId, Model, VectorId, WeightStore};
use crate::error::Result;
use crate::gguf::GgufFile;
use crate::gpu::matmul::{attn_in, embed, ffn_in, matvec, AttnInArgs, Glu, Input, Output, RopeArgs, Rows};
use crate::gpu::ops::{attention, post_norm_add, rms_norm, AttentionArgs};
use crate::gpu::{Context, Step};

/// Query, key and value projections: three matrices, or one fused [q_dim + 2 kv_dim, D] (Phi-3).
enum Qkv {
    /// W: [q_dim, D], [kv_dim, D], [kv_dim, D]
    Separate { q: MatrixId, k: MatrixId, v: MatrixId },
    /// W: [q_dim + 2 kv_dim, D], rows in the order q, k, v
    Fused(MatrixId),
}

/// Gate and up projections: two [F, D] matrices, or one fused [2F, D] with the gate first.
enum GateUp {
    Separate { gate: MatrixId, up: MatrixId },
    Fused(MatrixId),
}

/// Weights of one transformer block (GGUF names `blk.{l}.*`). Vectors are f32.
pub struct Block {
    /// [D]
    attn_norm: VectorId,
    qkv: Qkv,
    /// Biases [q_dim], [kv_dim], [kv_dim] (Qwen 2).
    q_bias: Option<VectorId>,
    k_bias: Option<VectorId>,
    v_bias: Option<VectorId>,
    /// Per-head RMSNorm weights [head_dim] (Qwen 3, Gemma 3).
    q_norm: Option<VectorId>,
    k_norm: Option<VectorId>,
    /// W: [D, q_dim]
    wo: MatrixId,
    /// [D], applied to the attention output before the residual add (Gemma 2/3).
    post_attn_norm: Option<VectorId>,
    /// [D]
    ffn_norm: VectorId,
    gate_up: GateUp,
    /// W: [D, F]
    down: MatrixId,
    /// [D], applied to the feed-forward output before the residual add (Gemma 2/3).
    post_ffn_norm: Option<VectorId>,
}

/// Which tensors make the model.
pub struct Layout {
    /// W: [vocab, D]
    token_embd: MatrixId,
    /// RoPE frequency divisors [n_rot / 2] of the global layers (see `model::rope`).
    rope_divisors: VectorId,
    /// The same for sliding-window layers when their RoPE differs (Gemma 3).
    rope_local_divisors: Option<VectorId>,
    blocks: Vec<Block>,
    /// [D]
    output_norm: VectorId,
    /// W: [vocab, D]; the embedding itself when the model ties them.
    output: MatrixId,
}

impl Layout {
    pub fn token_embedding(&self) -> MatrixId {
        self.token_embd
    }

    pub fn output_matrix(&self) -> MatrixId {
        self.output
    }

    /// The tensors of the model in `file`, run with a KV cache of `context` tokens (which picks
    /// LongRoPE's factors).
    pub fn new(ctx: &Context, file: &GgufFile, c: &Config, context: u32, w: &mut WeightStore) -> Result<Layout> {
        let (d, q_dim, kv_dim, f) = (c.d_model, c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim, c.ffn_dim);
        let token_embd = w.matrix(ctx, file, "token_embd.weight", d, c.vocab_size)?;
        let rope_divisors = rope_table(ctx, file, w, &c.rope, &c.rope_scaling, context)?;
        let rope_local_divisors = match &c.rope_local {
            Some((rope, scaling)) => Some(rope_table(ctx, file, w, rope, scaling, context)?),
            None => None,
        };
        let mut blocks = Vec::with_capacity(c.n_layers as usize);
        for l in 0..c.n_layers {
            let name = |t: &str| format!("blk.{l}.{t}");
            let has = |t: &str| file.tensor(&name(t)).is_some();
            let mut vector = |t: &str, n: u32| w.vector(ctx, file, &name(t), n);
            let attn_norm = vector("attn_norm.weight", d)?;
            let ffn_norm = vector("ffn_norm.weight", d)?;
            let post_attn_norm = if has("post_attention_norm.weight") { Some(vector("post_attention_norm.weight", d)?) } else { None };
            let post_ffn_norm = if has("post_ffw_norm.weight") { Some(vector("post_ffw_norm.weight", d)?) } else { None };
            let q_norm = if has("attn_q_norm.weight") { Some(vector("attn_q_norm.weight", c.head_dim)?) } else { None };
            let k_norm = if has("attn_k_norm.weight") { Some(vector("attn_k_norm.weight", c.head_dim)?) } else { None };
            let q_bias = if has("attn_q.bias") { Some(vector("attn_q.bias", q_dim)?) } else { None };
            let k_bias = if has("attn_k.bias") { Some(vector("attn_k.bias", kv_dim)?) } else { None };
            let v_bias = if has("attn_v.bias") { Some(vector("attn_v.bias", kv_dim)?) } else { None };
            let mut matrix = |t: &str, k: u32, n: u32| w.matrix(ctx, file, &name(t), k, n);
            let qkv = if has("attn_qkv.weight") {
                Qkv::Fused(matrix("attn_qkv.weight", d, q_dim + 2 * kv_dim)?)
            } else {
                Qkv::Separate {
                    q: matrix("attn_q.weight", d, q_dim)?,
                    k: matrix("attn_k.weight", d, kv_dim)?,
                    v: matrix("attn_v.weight", d, kv_dim)?,
                }
            };
            let gate_up = if has("ffn_gate.weight") {
                GateUp::Separate { gate: matrix("ffn_gate.weight", d, f)?, up: matrix("ffn_up.weight", d, f)? }
            } else {
                GateUp::Fused(matrix("ffn_up.weight", d, 2 * f)?)
            };
            blocks.push(Block {
                attn_norm,
                qkv,
                q_bias,
                k_bias,
                v_bias,
                q_norm,
                k_norm,
                wo: matrix("attn_output.weight", q_dim, d)?,
                post_attn_norm,
                ffn_norm,
                gate_up,
                down: matrix("ffn_down.weight", f, d)?,
                post_ffn_norm,
            });
        }
        let output_norm = w.vector(ctx, file, "output_norm.weight", d)?;
        let output = w.optional_matrix(ctx, file, "output.weight", d, c.vocab_size)?.unwrap_or(token_embd);
        Ok(Layout { token_embd, rope_divisors, rope_local_divisors, blocks, output_norm, output })
    }
}

/// The divisor table [n_rot / 2] of `rope`: computed now, or from the frequency-factor tensor
/// the scaling uses at runtime context `context` once its bytes have arrived.
fn rope_table(ctx: &Context, file: &GgufFile, w: &mut WeightStore, rope: &Rope, scaling: &RopeScaling, context: u32) -> Result<VectorId> {
    let (n_rot, base) = (rope.n_rot, rope.freq_base);
    match scaling.factor_tensor(context) {
        Some(tensor) => {
            let scaling = scaling.clone();
            w.derived_vector(ctx, file, tensor, n_rot / 2, Box::new(move |factors| scaling.divisors(n_rot, base, Some(factors))))
        }
        None => w.constant_vector(ctx, "rope divisors", &scaling.divisors(n_rot, base, None)),
    }
}

/// What one recorded forward pass computes besides the KV-cache entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Logits {
    /// None (a prefill chunk before the last).
    None,
    /// The last token's logits, in row 0 of the logits buffer.
    Last,
    /// Every token's logits, rows 0.. (scoring; n ≤ the logits buffer's rows).
    All,
}

/// Records the forward pass of `n` tokens (ids in `state.ids`) at positions pos0.. (pos0 comes
/// from the step state when the recording runs).
pub fn record(m: &Model, step: &mut Step, n: u32, logits: Logits) -> Result<()> {
    let (c, s, w, lay) = (&m.config, &m.state, &m.weights, &m.layout);
    let (hd, f) = (c.head_dim, c.ffn_dim);
    let (q_dim, kv_dim) = (c.n_heads * hd, c.n_kv_heads * hd);
    let kv_f16 = m.kv.f16;

    embed(step, w.m(lay.token_embd), &s.ids, &s.x, n, c.embed_scale)?;
    for (l, b) in lay.blocks.iter().enumerate() {
        // ---- attention: x += [post_norm] Wo · attend(rope(norm(Wq h + bq)), rope(norm(Wk h + bk)), Wv h + bv),  h = norm(x)
        let (q, k, v) = match b.qkv {
            Qkv::Separate { q, k, v } => (Rows::all(w.m(q)), Rows::all(w.m(k)), Rows::all(w.m(v))),
            Qkv::Fused(qkv) => {
                let m = w.m(qkv);
                (Rows { w: m, first: 0 }, Rows { w: m, first: q_dim }, Rows { w: m, first: q_dim + kv_dim })
            }
        };
        let (rope, _) = c.rope_for(l as u32);
        let divisors = match lay.rope_local_divisors {
            Some(local) if c.is_local(l as u32) => w.v(local),
            _ => w.v(lay.rope_divisors),
        };
        let args = AttnInArgs {
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: hd,
            ctx_len: m.context_length,
            kv_f16,
            q_bias: b.q_bias.map(|v| w.v(v)),
            k_bias: b.k_bias.map(|v| w.v(v)),
            v_bias: b.v_bias.map(|v| w.v(v)),
            q_norm: b.q_norm.map(|v| w.v(v)),
            k_norm: b.k_norm.map(|v| w.v(v)),
            head_eps: c.rms_eps,
            rope: RopeArgs {
                neox: rope.mode == RopeMode::HalfSplit,
                n_rot: rope.n_rot,
                freq_base: rope.freq_base,
                freq_scale: 1.0,
                factors: Some(divisors),
                mscale: rope.mscale,
            },
        };
        let kv = &m.kv.layers[l];
        let input = norm_input(m, step, 0, n, b.attn_norm, (c.n_heads + 2 * c.n_kv_heads) * c.head_dim)?;
        attn_in(step, q, k, v, &input, &s.q, kv, &args)?;
        let attn = AttentionArgs {
            n_tokens: n,
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: hd,
            ctx_len: m.context_length,
            kv_f16,
            scale: c.attn_scale,
            softcap: c.attn_softcap,
            window: if c.is_local(l as u32) { c.sliding_window } else { 0 },
            splits: m.attention.splits(n),
            q_block: if n == 1 { 1 } else { m.context().tuning.attention_q_block },
            thread_per_row: m.attention.thread_per_row,
        };
        attention(step, &s.q, kv, &s.scratch, &s.att, &attn)?;
        add_projection(m, step, b.wo, &s.att, b.post_attn_norm, n)?;

        // ---- feed-forward: x += [post_norm] Wdown · (act(Wgate h) ⊙ Wup h),  h = norm(x)
        let (gate, up) = match b.gate_up {
            GateUp::Separate { gate, up } => (Rows::all(w.m(gate)), Rows::all(w.m(up))),
            GateUp::Fused(gate_up) => (Rows { w: w.m(gate_up), first: 0 }, Rows { w: w.m(gate_up), first: f }),
        };
        let glu = match c.activation {
            Activation::SwiGlu => Glu::SwiGlu,
            Activation::GeGlu => Glu::GeGlu,
        };
        let input = norm_input(m, step, 0, n, b.ffn_norm, f)?;
        ffn_in(step, gate, up, f, glu, &input, &s.gate)?;
        add_projection(m, step, b.down, &s.gate, b.post_ffn_norm, n)?;
    }
    let first = match logits {
        Logits::None => return Ok(()),
        Logits::Last => n - 1,
        Logits::All => 0,
    };
    let input = norm_input(m, step, first, n, lay.output_norm, c.vocab_size)?;
    let out = Output { y_stride: c.vocab_size, accumulate: false, softcap: c.final_softcap };
    matvec(step, w.m(lay.output), &input, &s.logits, out)?;
    Ok(())
}

/// Decode folds the input norm into matrix kernels of at most this many rows
/// (`Tuning::fuse_decode_norm`). Each thread of four rows recomputes 1/rms over the whole row,
/// a cost that grows with the rows: on lavapipe it added ~5 ms to SmolLM2's 49152-row output
/// head (13 -> 18 ms, `examples/kernel_timing`) against ~0.1 ms for the separate dispatch, and
/// about what the dispatch costs to its 1536-row ffn_in.
const FUSED_NORM_MAX_ROWS: u32 = 4096;

/// Rows `first .. n` of the residual stream RMSNorm-ed with `weight`, as the input of a matrix
/// kernel of `rows` rows: normalised into `normed` by one small dispatch when the adapter's
/// tuning says so (`Tuning::separate_input_norm`), else folded into the matrix kernel.
fn norm_input<'m>(m: &'m Model, step: &mut Step, first: u32, n: u32, weight: VectorId, rows: u32) -> Result<Input<'m>> {
    let (s, w, c) = (&m.state, &m.weights, &m.config);
    let d = c.d_model;
    let tuning = &m.context().tuning;
    let fuse = tuning.fuse_decode_norm && n - first == 1 && rows <= FUSED_NORM_MAX_ROWS;
    if tuning.separate_input_norm && !fuse {
        rms_norm(step, w.vectors(), w.v(weight), &s.x, first, &s.normed, d, n - first, c.rms_eps)?;
        return Ok(Input::dense(&s.normed, w.vectors(), n - first, d));
    }
    let rows = Input { x_offset: first * d, ..Input::dense(&s.x, w.vectors(), n - first, d) };
    Ok(rows.normed(w.v(weight), c.rms_eps))
}

/// x += W · input, or x += post_norm(W · input) when the block has a post-norm.
fn add_projection(m: &Model, step: &mut Step, w: MatrixId, input: &wgpu::Buffer, post_norm: Option<VectorId>, n: u32) -> Result<()> {
    let (s, ws, c) = (&m.state, &m.weights, &m.config);
    let matrix = ws.m(w);
    let input = Input::dense(input, ws.vectors(), n, matrix.k);
    match post_norm {
        None => matvec(step, matrix, &input, &s.x, Output::dense(matrix).accumulate())?,
        Some(norm) => {
            matvec(step, matrix, &input, &s.tmp, Output::dense(matrix))?;
            post_norm_add(step, ws.vectors(), ws.v(norm), &s.tmp, &s.x, c.d_model, n, c.rms_eps)?;
        }
    }
    Ok(())
}
