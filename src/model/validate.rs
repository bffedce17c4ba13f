//! Hyper-parameter validation. Every number the forward pass uses comes from an untrusted file:
//! floats must be finite and in a sane range, counts and dimensions must agree with each other
//! and with the tensor shapes. A bad value is reported with its metadata key (exit 2 on the CLI,
//! `UnsupportedModelError` in the browser) before any GPU work.
//!
//! Ranges are wide on purpose: they reject what cannot be a real model (NaN, a negative epsilon,
//! a 2^40 head count), never an unusual but valid one.

use crate::error::{quote, Error, Result};
use crate::gguf::{GgufFile, Value};

use super::Config;

/// Float hyper-parameters (key after `{arch}.`) and their accepted range `[min, max]`. Keys that
/// other model families or RoPE-scaling variants add are checked here by name, so the check does
/// not depend on which of them the forward pass reads.
const FLOAT_RANGES: &[(&str, f64, f64)] = &[
    ("attention.layer_norm_rms_epsilon", 1e-12, 1.0),
    ("attention.layer_norm_epsilon", 1e-12, 1.0),
    ("rope.freq_base", 1.0, 1e12),
    ("rope.freq_base_swa", 1.0, 1e12),
    ("rope.scaling.factor", 1e-6, 1e6),
    ("rope.scaling.attn_factor", 1e-6, 1e3),
    ("rope.scaling.yarn_attn_factor", 1e-6, 1e3),
    ("rope.scaling.yarn_log_multiplier", 0.0, 1e3),
    ("rope.scaling.yarn_beta_fast", 0.0, 1e6),
    ("rope.scaling.yarn_beta_slow", 0.0, 1e6),
    ("rope.scaling.beta_fast", 0.0, 1e6),
    ("rope.scaling.beta_slow", 0.0, 1e6),
    ("rope.scaling.yarn_ext_factor", -1.0, 1e3),
    ("rope.scaling.ext_factor", -1.0, 1e3),
    ("attention.scale", 1e-9, 1e3),
    ("attn_logit_softcapping", 0.0, 1e6),
    ("final_logit_softcapping", 0.0, 1e6),
    ("embedding_scale", 1e-9, 1e6),
    ("residual_scale", 1e-9, 1e6),
    ("logit_scale", 1e-9, 1e6),
];

/// Integer hyper-parameters with a range beyond "positive" (already checked when read).
const INT_RANGES: &[(&str, u64, u64)] = &[
    ("rope.scaling.original_context_length", 1, 1 << 24),
    ("attention.sliding_window", 1, 1 << 24),
    ("attention.sliding_window_pattern", 1, 1 << 16),
];

/// Largest residual width, FFN width, head count or head size accepted (far above real models).
pub const MAX_DIM: u32 = 1 << 20;
/// Largest layer count accepted.
pub const MAX_LAYERS: u32 = 1 << 12;
/// Largest per-head size accepted.
pub const MAX_HEAD_DIM: u32 = 1 << 12;

/// Checks the raw metadata under `{arch}.`: every float (scalar or array element) is finite, and
/// the known keys are in range. Runs before the configuration is read.
pub fn metadata(file: &GgufFile, arch: &str) -> Result<()> {
    let prefix = format!("{arch}.");
    for (key, value) in &file.metadata {
        if key.starts_with(&prefix) && !all_finite(value) {
            return Err(bad(key, "is not a finite number"));
        }
    }
    for &(suffix, min, max) in FLOAT_RANGES {
        let key = format!("{prefix}{suffix}");
        if let Some(v) = file.get(&key) {
            let x = v.as_f64().ok_or_else(|| bad(&key, &format!("has type {}, expected a number", v.type_name())))?;
            if !(min..=max).contains(&x) {
                return Err(bad(&key, &format!("= {x} is outside the accepted range [{min}, {max}]")));
            }
        }
    }
    for &(suffix, min, max) in INT_RANGES {
        let key = format!("{prefix}{suffix}");
        if let Some(x) = file.get_u64(&key)? {
            if !(min..=max).contains(&x) {
                return Err(bad(&key, &format!("= {x} is outside the accepted range [{min}, {max}]")));
            }
        }
    }
    Ok(())
}

/// Checks the configuration read from the metadata: sizes bounded, counts consistent with each
/// other and with the shapes of the tensors every architecture has.
pub fn config(file: &GgufFile, c: &Config) -> Result<()> {
    let key = |k: &str| format!("{}.{k}", c.arch_name);
    let at_most = |k: &str, v: u32, max: u32| if v > max { Err(bad(&key(k), &format!("= {v} is larger than {max}"))) } else { Ok(()) };
    at_most("embedding_length", c.d_model, MAX_DIM)?;
    at_most("feed_forward_length", c.ffn_dim, MAX_DIM)?;
    at_most("attention.head_count", c.n_heads, MAX_DIM)?;
    at_most("attention.key_length", c.head_dim, MAX_HEAD_DIM)?;
    at_most("block_count", c.n_layers, MAX_LAYERS)?;
    if c.n_kv_heads > c.n_heads {
        return Err(bad(&key("attention.head_count_kv"), &format!("= {} exceeds head_count {}", c.n_kv_heads, c.n_heads)));
    }
    if c.n_heads as u64 * c.head_dim as u64 > MAX_DIM as u64 {
        return Err(bad(&key("attention.head_count"), &format!("× key_length = {} × {} is larger than {MAX_DIM}", c.n_heads, c.head_dim)));
    }
    if !c.head_dim.is_multiple_of(2) {
        return Err(bad(&key("attention.key_length"), &format!("= {} is odd (RoPE rotates pairs)", c.head_dim)));
    }
    // (A file without any layer tensors is reported by the first tensor found missing.)
    let last = c.n_layers - 1;
    let has_layer = |prefix: &str| file.tensors.iter().any(|t| t.name.starts_with(prefix));
    if has_layer("blk.") && !has_layer(&format!("blk.{last}.")) {
        return Err(bad(&key("block_count"), &format!("= {} but the file has no tensors of layer {last}", c.n_layers)));
    }
    // GPU writes start at 4-byte aligned offsets: tensor data must too (a file that says
    // `general.alignment = 1` may start it anywhere).
    if let Some(t) = file.tensors.iter().find(|t| !t.offset.is_multiple_of(4)) {
        return Err(Error::Unsupported(format!(
            "tensor {} starts at byte {}, which is not a multiple of 4 (general.alignment = {}): tensor data must be 4-byte aligned",
            quote(&t.name),
            t.offset,
            file.alignment
        )));
    }
    let (d, q, kv, f) = (c.d_model as u64, (c.n_heads * c.head_dim) as u64, (c.n_kv_heads * c.head_dim) as u64, c.ffn_dim as u64);
    let expected: [(&str, [u64; 2], &str); 6] = [
        ("token_embd.weight", [d, c.vocab_size as u64], "embedding_length, vocab_size"),
        ("output.weight", [d, c.vocab_size as u64], "embedding_length, vocab_size"),
        ("blk.0.attn_q.weight", [d, q], "embedding_length, head_count × key_length"),
        ("blk.0.attn_k.weight", [d, kv], "embedding_length, head_count_kv × key_length"),
        ("blk.0.attn_output.weight", [q, d], "head_count × key_length, embedding_length"),
        ("blk.0.ffn_down.weight", [f, d], "feed_forward_length, embedding_length"),
    ];
    for (name, dims, keys) in expected {
        if let Some(t) = file.tensor(name) {
            if t.dims != dims {
                return Err(Error::Unsupported(format!(
                    "tensor {} has shape {:?} but the metadata ({keys}) says {dims:?}",
                    quote(name),
                    t.dims
                )));
            }
        }
    }
    Ok(())
}

fn all_finite(v: &Value) -> bool {
    match v {
        Value::F32(x) => x.is_finite(),
        Value::F64(x) => x.is_finite(),
        Value::Array(items) => items.iter().all(all_finite),
        _ => true,
    }
}

fn bad(key: &str, what: &str) -> Error {
    Error::Unsupported(format!("metadata {} {what}", quote(key)))
}
