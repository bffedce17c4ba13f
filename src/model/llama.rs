//! The Llama-family forward pass (pre-norm, RMSNorm, RoPE, grouped-query attention, SwiGLU).
//! Reads top to bottom like llama2.c's `forward`; every op is one GPU dispatch.

use super::{Config, MatrixId, Model, VectorId, WeightStore};
use crate::error::Result;
use crate::gguf::GgufFile;
use crate::gpu::matmul::{embed, matmul, MatmulArgs};
use crate::gpu::ops::{attention, elementwise, rms_norm, rope, AttentionArgs, Elementwise};
use crate::gpu::{Context, Step};

/// Weights of one transformer block (GGUF names `blk.{l}.*`).
pub struct Block {
    /// [d_model]
    attn_norm: VectorId,
    /// W: [n_heads * head_dim, d_model]
    wq: MatrixId,
    /// W: [n_kv_heads * head_dim, d_model]
    wk: MatrixId,
    /// W: [n_kv_heads * head_dim, d_model]
    wv: MatrixId,
    /// W: [d_model, n_heads * head_dim]
    wo: MatrixId,
    /// [d_model]
    ffn_norm: VectorId,
    /// W: [ffn_dim, d_model]
    gate: MatrixId,
    /// W: [ffn_dim, d_model]
    up: MatrixId,
    /// W: [d_model, ffn_dim]
    down: MatrixId,
}

/// Which tensors make the model.
pub struct Layout {
    /// W: [vocab, d_model]
    token_embd: MatrixId,
    blocks: Vec<Block>,
    /// [d_model]
    output_norm: VectorId,
    /// W: [vocab, d_model]; the embedding itself when the model ties them.
    output: MatrixId,
}

impl Layout {
    pub fn new(ctx: &Context, file: &GgufFile, c: &Config, w: &mut WeightStore) -> Result<Layout> {
        let (d, q_dim, kv_dim) = (c.d_model, c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim);
        let token_embd = w.matrix(ctx, file, "token_embd.weight", d, c.vocab_size)?;
        let mut blocks = Vec::with_capacity(c.n_layers as usize);
        for l in 0..c.n_layers {
            let name = |t: &str| format!("blk.{l}.{t}.weight");
            blocks.push(Block {
                attn_norm: w.vector(ctx, file, &name("attn_norm"), d)?,
                wq: w.matrix(ctx, file, &name("attn_q"), d, q_dim)?,
                wk: w.matrix(ctx, file, &name("attn_k"), d, kv_dim)?,
                wv: w.matrix(ctx, file, &name("attn_v"), d, kv_dim)?,
                wo: w.matrix(ctx, file, &name("attn_output"), q_dim, d)?,
                ffn_norm: w.vector(ctx, file, &name("ffn_norm"), d)?,
                gate: w.matrix(ctx, file, &name("ffn_gate"), d, c.ffn_dim)?,
                up: w.matrix(ctx, file, &name("ffn_up"), d, c.ffn_dim)?,
                down: w.matrix(ctx, file, &name("ffn_down"), c.ffn_dim, d)?,
            });
        }
        let output_norm = w.vector(ctx, file, "output_norm.weight", d)?;
        let output = w.optional_matrix(ctx, file, "output.weight", d, c.vocab_size)?.unwrap_or(token_embd);
        Ok(Layout { token_embd, blocks, output_norm, output })
    }
}

/// Records the forward pass of `n` tokens (ids already in `state.ids`) at positions `pos0..`.
pub fn record(m: &Model, step: &mut Step, n: u32, pos0: u32, logits_from: Option<u32>) -> Result<()> {
    let (c, s, w, lay) = (&m.config, &m.state, &m.weights, &m.layout);
    let d = c.d_model;
    let kv_dim = c.n_kv_heads * c.head_dim;
    let dense = |id: MatrixId| MatmulArgs::dense(w.m(id), n);

    embed(step, w.m(lay.token_embd), &s.ids, &s.x, n, 1.0)?;
    for (l, b) in lay.blocks.iter().enumerate() {
        // Attention: x += Wo · attend(rope(Wq h), rope(Wk h), Wv h),  h = rmsnorm(x)
        rms_norm(step, &s.x, w.v(b.attn_norm), &s.h, d, n, c.rms_eps)?;
        matmul(step, w.m(b.wq), &s.h, &s.q, dense(b.wq))?;
        matmul(step, w.m(b.wk), &s.h, &s.k, dense(b.wk))?;
        matmul(step, w.m(b.wv), &s.h, &s.v, dense(b.wv))?;
        rope(step, &s.q, &c.rope, n, c.n_heads, c.head_dim, pos0)?;
        rope(step, &s.k, &c.rope, n, c.n_kv_heads, c.head_dim, pos0)?;
        elementwise(step, Elementwise::Copy, &s.k, &m.kv.k[l], n * kv_dim, 0, pos0 * kv_dim)?;
        elementwise(step, Elementwise::Copy, &s.v, &m.kv.v[l], n * kv_dim, 0, pos0 * kv_dim)?;
        let args = AttentionArgs {
            n_tokens: n,
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: c.head_dim,
            pos0,
            scale: 1.0 / (c.head_dim as f32).sqrt(),
            softcap: 0.0,
            window: 0,
        };
        attention(step, &s.q, &m.kv.k[l], &m.kv.v[l], &s.att, &args)?;
        matmul(step, w.m(b.wo), &s.att, &s.x, dense(b.wo).accumulate())?;

        // Feed-forward: x += Wdown · (silu(Wgate h) ⊙ Wup h),  h = rmsnorm(x)
        rms_norm(step, &s.x, w.v(b.ffn_norm), &s.h, d, n, c.rms_eps)?;
        matmul(step, w.m(b.gate), &s.h, &s.gate, dense(b.gate))?;
        matmul(step, w.m(b.up), &s.h, &s.up, dense(b.up))?;
        elementwise(step, Elementwise::SwiGlu, &s.up, &s.gate, n * c.ffn_dim, 0, 0)?;
        matmul(step, w.m(b.down), &s.gate, &s.x, dense(b.down).accumulate())?;
    }
    if let Some(first) = logits_from {
        let rows = n - first;
        rms_norm(step, &s.x, w.v(lay.output_norm), &s.h, d, n, c.rms_eps)?;
        let out = w.m(lay.output);
        let args = MatmulArgs { n_tokens: rows, x_offset: first * d, x_stride: d, y_stride: c.vocab_size, accumulate: false };
        matmul(step, out, &s.h, &s.logits, args)?;
    }
    Ok(())
}
