//! Model hyper-parameters read from GGUF metadata. Nothing here is hard-coded per model.

use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::gpu::ops::{Rope, RopeMode};

/// The architecture families the forward pass implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Llama,
}

impl Arch {
    pub fn from_name(name: &str) -> Option<Arch> {
        match name {
            "llama" => Some(Arch::Llama),
            _ => None,
        }
    }
}

/// Transformer shape and numerics.
#[derive(Clone, Debug)]
pub struct Config {
    pub arch: Arch,
    /// `general.architecture`, the prefix of every hyper-parameter key.
    pub arch_name: String,
    pub n_layers: u32,
    /// Residual stream width D.
    pub d_model: u32,
    /// Query heads H.
    pub n_heads: u32,
    /// Key/value heads (H for MHA, fewer for GQA).
    pub n_kv_heads: u32,
    /// Dims per attention head.
    pub head_dim: u32,
    /// Hidden width F of the feed-forward block.
    pub ffn_dim: u32,
    pub vocab_size: u32,
    /// Context length the model was trained for.
    pub ctx_train: u32,
    pub rms_eps: f32,
    pub rope: Rope,
}

impl Config {
    pub fn from_gguf(file: &GgufFile) -> Result<Config> {
        let arch_name = file
            .architecture()
            .ok_or_else(|| Error::Unsupported("the file has no general.architecture".into()))?
            .to_string();
        let arch = Arch::from_name(&arch_name).ok_or_else(|| {
            Error::Unsupported(format!("architecture '{arch_name}' is not supported (supported: llama)"))
        })?;
        let key = |k: &str| format!("{arch_name}.{k}");
        let required = |k: &str| -> Result<u32> {
            let full = key(k);
            let v = file.get_u64(&full)?.ok_or_else(|| Error::Unsupported(format!("missing metadata '{full}'")))?;
            positive_u32(&full, v)
        };
        let optional = |k: &str| -> Result<Option<u32>> {
            let full = key(k);
            file.get_u64(&full)?.map(|v| positive_u32(&full, v)).transpose()
        };
        let d_model = required("embedding_length")?;
        let n_heads = required("attention.head_count")?;
        let n_kv_heads = optional("attention.head_count_kv")?.unwrap_or(n_heads);
        let head_dim = match optional("attention.key_length")? {
            Some(v) => v,
            None if d_model % n_heads == 0 => d_model / n_heads,
            None => return Err(Error::Unsupported(format!("embedding_length {d_model} is not a multiple of head_count {n_heads}"))),
        };
        if n_heads % n_kv_heads != 0 {
            return Err(Error::Unsupported(format!("{n_heads} query heads cannot share {n_kv_heads} KV heads evenly")));
        }
        let n_rot = optional("rope.dimension_count")?.unwrap_or(head_dim);
        if n_rot > head_dim || n_rot % 2 != 0 {
            return Err(Error::Unsupported(format!("rope.dimension_count {n_rot} does not fit head_dim {head_dim}")));
        }
        let vocab_size = match optional("vocab_size")? {
            Some(v) => v,
            None => file
                .tensor("token_embd.weight")
                .and_then(|t| t.dims.get(1).copied())
                .map(|v| positive_u32("token_embd.weight rows", v))
                .transpose()?
                .ok_or_else(|| Error::Unsupported("cannot tell the vocabulary size".into()))?,
        };
        let freq_base = file.get_f32(&key("rope.freq_base"))?.unwrap_or(10000.0);
        let freq_scale = match file.get_f32(&key("rope.scaling.factor"))? {
            Some(f) if f > 0.0 => 1.0 / f,
            _ => 1.0,
        };
        Ok(Config {
            arch,
            n_layers: required("block_count")?,
            d_model,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn_dim: required("feed_forward_length")?,
            vocab_size,
            ctx_train: optional("context_length")?.unwrap_or(2048),
            rms_eps: file.get_f32(&key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5),
            rope: Rope { mode: RopeMode::Interleaved, n_rot, freq_base, freq_scale },
            arch_name,
        })
    }
}

fn positive_u32(key: &str, v: u64) -> Result<u32> {
    if v == 0 || v > (1 << 24) {
        return Err(Error::Unsupported(format!("metadata '{key}' = {v} is out of range")));
    }
    Ok(v as u32)
}
