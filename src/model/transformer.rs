//! The decoder-only transformer shared by every supported family (Llama, Qwen 2/3, Phi-3,
//! Gemma 2/3): pre-norm blocks of RMSNorm → attention (RoPE, grouped-query heads, KV cache) →
//! RMSNorm → gated feed-forward. What differs between families is read from the file: which
//! tensors exist (biases, Q/K norms, post-norms, fused matrices) and the [`Config`].
//! Reads top to bottom like llama2.c's `forward`; every op is one GPU dispatch.

use super::config::Activation;
use super::rope::RopeScaling;
use super::{Config, MatrixId, Model, VectorId, WeightStore};
use crate::error::Result;
use crate::gguf::GgufFile;
use crate::gpu::matmul::{embed, matmul, matmul_rows, MatmulArgs};
use crate::gpu::ops::{attention, elementwise, rms_norm, rope, AttentionArgs, Elementwise, Rope};
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

/// Records the forward pass of `n` tokens (ids already in `state.ids`) at positions `pos0..`.
/// With `logits_from`, the logits of tokens `logits_from..n` land in rows 0.. of `state.logits`.
pub fn record(m: &Model, step: &mut Step, n: u32, pos0: u32, logits_from: Option<u32>) -> Result<()> {
    let (c, s, w, lay) = (&m.config, &m.state, &m.weights, &m.layout);
    let (d, hd, f) = (c.d_model, c.head_dim, c.ffn_dim);
    let (q_dim, kv_dim) = (c.n_heads * hd, c.n_kv_heads * hd);
    // [n, rows] in and out of a projection whose rows are `rows` long.
    let dense = |id: MatrixId| MatmulArgs::dense(w.m(id), n);
    let slice = |rows: u32| MatmulArgs { n_tokens: n, x_offset: 0, x_stride: d, y_stride: rows, accumulate: false };

    embed(step, w.m(lay.token_embd), &s.ids, &s.x, n, c.embed_scale)?;
    for (l, b) in lay.blocks.iter().enumerate() {
        // ---- attention: x += [post_norm] Wo · attend(rope(norm(Wq h + bq)), rope(norm(Wk h + bk)), Wv h + bv)
        rms_norm(step, &s.x, w.v(b.attn_norm), &s.h, d, n, c.rms_eps)?;
        match b.qkv {
            Qkv::Separate { q, k, v } => {
                matmul(step, w.m(q), &s.h, &s.q, dense(q))?;
                matmul(step, w.m(k), &s.h, &s.k, dense(k))?;
                matmul(step, w.m(v), &s.h, &s.v, dense(v))?;
            }
            Qkv::Fused(qkv) => {
                let m = w.m(qkv);
                matmul_rows(step, m, 0..q_dim, &s.h, &s.q, slice(q_dim))?;
                matmul_rows(step, m, q_dim..q_dim + kv_dim, &s.h, &s.k, slice(kv_dim))?;
                matmul_rows(step, m, q_dim + kv_dim..q_dim + 2 * kv_dim, &s.h, &s.v, slice(kv_dim))?;
            }
        }
        for (bias, buf, len) in [(b.q_bias, &s.q, q_dim), (b.k_bias, &s.k, kv_dim), (b.v_bias, &s.v, kv_dim)] {
            if let Some(bias) = bias {
                elementwise(step, Elementwise::AddRows { period: len }, w.v(bias), buf, n * len, 0, 0)?;
            }
        }
        // Per-head Q/K norms write to spare buffers; `q`/`k` name wherever the values now are.
        let (q, attn_out) = match b.q_norm {
            Some(norm) => {
                rms_norm(step, &s.q, w.v(norm), &s.att, hd, n * c.n_heads, c.rms_eps)?;
                (&s.att, &s.q)
            }
            None => (&s.q, &s.att),
        };
        let k = match b.k_norm {
            Some(norm) => {
                rms_norm(step, &s.k, w.v(norm), &s.k_normed, hd, n * c.n_kv_heads, c.rms_eps)?;
                &s.k_normed
            }
            None => &s.k,
        };
        let (rope_l, _) = c.rope_for(l as u32);
        let divisors = match lay.rope_local_divisors {
            Some(local) if c.is_local(l as u32) => w.v(local),
            _ => w.v(lay.rope_divisors),
        };
        rope(step, q, divisors, rope_l, n, c.n_heads, hd, pos0)?;
        rope(step, k, divisors, rope_l, n, c.n_kv_heads, hd, pos0)?;
        elementwise(step, Elementwise::Copy, k, &m.kv.k[l], n * kv_dim, 0, pos0 * kv_dim)?;
        elementwise(step, Elementwise::Copy, &s.v, &m.kv.v[l], n * kv_dim, 0, pos0 * kv_dim)?;
        let args = AttentionArgs {
            n_tokens: n,
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: hd,
            pos0,
            scale: c.attn_scale,
            softcap: c.attn_softcap,
            window: if c.is_local(l as u32) { c.sliding_window } else { 0 },
        };
        attention(step, q, &m.kv.k[l], &m.kv.v[l], attn_out, &args)?;
        add_projection(m, step, b.wo, attn_out, b.post_attn_norm, n)?;

        // ---- feed-forward: x += [post_norm] Wdown · (act(Wgate h) ⊙ Wup h),  h = norm(x)
        rms_norm(step, &s.x, w.v(b.ffn_norm), &s.h, d, n, c.rms_eps)?;
        match b.gate_up {
            GateUp::Separate { gate, up } => {
                matmul(step, w.m(gate), &s.h, &s.gate, dense(gate))?;
                matmul(step, w.m(up), &s.h, &s.up, dense(up))?;
            }
            GateUp::Fused(gate_up) => {
                let m = w.m(gate_up);
                matmul_rows(step, m, 0..f, &s.h, &s.gate, slice(f))?;
                matmul_rows(step, m, f..2 * f, &s.h, &s.up, slice(f))?;
            }
        }
        let act = match c.activation {
            Activation::SwiGlu => Elementwise::SwiGlu,
            Activation::GeGlu => Elementwise::GeGlu,
        };
        elementwise(step, act, &s.up, &s.gate, n * f, 0, 0)?;
        add_projection(m, step, b.down, &s.gate, b.post_ffn_norm, n)?;
    }
    if let Some(first) = logits_from {
        let rows = n - first;
        rms_norm(step, &s.x, w.v(lay.output_norm), &s.h, d, n, c.rms_eps)?;
        let args = MatmulArgs { n_tokens: rows, x_offset: first * d, x_stride: d, y_stride: c.vocab_size, accumulate: false };
        matmul(step, w.m(lay.output), &s.h, &s.logits, args)?;
        if c.final_softcap > 0.0 {
            // Soft-cap reads no x; the placeholder avoids binding the logits twice.
            let unused = step.context().placeholder();
            elementwise(step, Elementwise::Softcap(c.final_softcap), unused, &s.logits, rows * c.vocab_size, 0, 0)?;
        }
    }
    Ok(())
}

/// x += W · input, or x += post_norm(W · input) when the block has a post-norm.
fn add_projection(m: &Model, step: &mut Step, w: MatrixId, input: &wgpu::Buffer, post_norm: Option<VectorId>, n: u32) -> Result<()> {
    let (s, ws, c) = (&m.state, &m.weights, &m.config);
    let args = MatmulArgs::dense(ws.m(w), n);
    match post_norm {
        None => matmul(step, ws.m(w), input, &s.x, args.accumulate())?,
        Some(norm) => {
            matmul(step, ws.m(w), input, &s.h, args)?;
            rms_norm(step, &s.h, ws.v(norm), &s.tmp, c.d_model, n, c.rms_eps)?;
            elementwise(step, Elementwise::Add, &s.tmp, &s.x, n * c.d_model, 0, 0)?;
        }
    }
    Ok(())
}
