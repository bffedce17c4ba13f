//! Model hyper-parameters read from GGUF metadata. Nothing here is hard-coded per model; per
//! architecture there are only the conventions llama.cpp's converter bakes into the files (RoPE
//! pairing, activation, which layers use a sliding window).

use crate::error::{quote, Error, Result};
use crate::gguf::GgufFile;

use super::rope::{FactorTensors, RopeScaling, ScalingType};

/// The architecture families the forward pass implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// Llama 1-3, SmolLM, Mistral-style models.
    Llama,
    /// Qwen 2 / 2.5 (Q/K/V biases).
    Qwen2,
    /// Qwen 3 (per-head Q/K RMSNorm).
    Qwen3,
    /// Phi-3 / Phi-4-mini (fused QKV and gate/up).
    Phi3,
    /// Gemma 2 (soft-capping, post-norms, alternating sliding window).
    Gemma2,
    /// Gemma 3 (Q/K norm, post-norms, 5 local : 1 global layers with their own RoPE bases).
    Gemma3,
}

/// Names accepted in `general.architecture`.
pub const SUPPORTED_ARCHITECTURES: &str = "llama, qwen2, qwen3, phi3, gemma2, gemma3";

impl Arch {
    pub fn from_name(name: &str) -> Option<Arch> {
        Some(match name {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            "qwen3" => Arch::Qwen3,
            "phi3" => Arch::Phi3,
            "gemma2" => Arch::Gemma2,
            "gemma3" => Arch::Gemma3,
            _ => return None,
        })
    }

    fn is_gemma(self) -> bool {
        matches!(self, Arch::Gemma2 | Arch::Gemma3)
    }
}

/// Rotary embedding convention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeMode {
    /// Pairs (2i, 2i+1): Llama (GGML "NORM").
    Interleaved,
    /// Pairs (i, i + n_rot/2): Qwen, Phi-3, Gemma (GGML "NEOX").
    HalfSplit,
}

/// How positions rotate queries and keys: theta_i = pos · freq_base^(-2i / n_rot) / divisor_i
/// for the first n_rot dims of each head (the rest pass through); every kind of frequency scaling
/// (linear, YaRN, LongRoPE, Llama 3 factors) is in the per-pair divisor table (`model::rope`).
#[derive(Clone, Copy, Debug)]
pub struct Rope {
    pub mode: RopeMode,
    /// Rotated dims per head (pairs 0 .. n_rot/2).
    pub n_rot: u32,
    pub freq_base: f32,
    /// Multiplies cos and sin (LongRoPE's attn_factor, YaRN's magnitude scaling; 1 otherwise).
    pub mscale: f32,
}

/// The gated activation of the feed-forward block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// silu(gate) · up
    SwiGlu,
    /// gelu_tanh(gate) · up
    GeGlu,
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
    /// Dims per attention head (keys, queries and values).
    pub head_dim: u32,
    /// Hidden width F of the feed-forward block.
    pub ffn_dim: u32,
    pub vocab_size: u32,
    /// Context length the model was trained for.
    pub ctx_train: u32,
    pub rms_eps: f32,
    /// RoPE of global-attention layers (its divisor table comes from `rope_scaling`).
    pub rope: Rope,
    /// Frequency scaling of the global-attention layers.
    pub rope_scaling: RopeScaling,
    /// RoPE of sliding-window layers when it differs (Gemma 3: base 10000, no frequency scaling),
    /// with its own scaling.
    pub rope_local: Option<(Rope, RopeScaling)>,
    /// Query scale before the softmax (1/√head_dim unless the file says otherwise).
    pub attn_scale: f32,
    /// Sliding-window length of local layers (0: every layer is global).
    pub sliding_window: u32,
    /// Layer l is local when `l % swa_pattern < swa_pattern - 1` (0: none).
    pub swa_pattern: u32,
    /// Attention-score soft-cap (0: off).
    pub attn_softcap: f32,
    /// Final logit soft-cap (0: off).
    pub final_softcap: f32,
    /// Factor applied to the token embeddings (Gemma: √D).
    pub embed_scale: f32,
    pub activation: Activation,
}

impl Config {
    /// The configuration of `file`, validated (see [`super::validate`]): finite floats in range,
    /// consistent counts and tensor shapes, each bad value named by its key.
    pub fn from_gguf(file: &GgufFile) -> Result<Config> {
        if let Some(arch) = file.architecture().filter(|a| Arch::from_name(a).is_some()) {
            super::validate::metadata(file, arch)?;
        }
        let config = Self::read(file)?;
        super::validate::config(file, &config)?;
        Ok(config)
    }

    fn read(file: &GgufFile) -> Result<Config> {
        let arch_name = file
            .architecture()
            .ok_or_else(|| Error::Unsupported("the file has no general.architecture".into()))?
            .to_string();
        let arch = Arch::from_name(&arch_name).ok_or_else(|| {
            Error::Unsupported(format!("architecture {} is not supported (supported: {SUPPORTED_ARCHITECTURES})", quote(&arch_name)))
        })?;
        let key = |k: &str| format!("{arch_name}.{k}");
        let required = |k: &str| -> Result<u32> {
            let full = key(k);
            let v = file.get_u64(&full)?.ok_or_else(|| Error::Unsupported(format!("missing metadata {}", quote(&full))))?;
            positive_u32(&full, v)
        };
        let optional = |k: &str| -> Result<Option<u32>> {
            let full = key(k);
            file.get_u64(&full)?.map(|v| positive_u32(&full, v)).transpose()
        };
        let float = |k: &str| -> Result<Option<f32>> { Ok(file.get_f32(&key(k))?) };

        let d_model = required("embedding_length")?;
        let n_heads = required("attention.head_count")?;
        let n_kv_heads = optional("attention.head_count_kv")?.unwrap_or(n_heads);
        let head_dim = match optional("attention.key_length")? {
            Some(v) => v,
            None if d_model % n_heads == 0 => d_model / n_heads,
            None => return Err(Error::Unsupported(format!("embedding_length {d_model} is not a multiple of head_count {n_heads}"))),
        };
        if let Some(v) = optional("attention.value_length")? {
            if v != head_dim {
                return Err(Error::Unsupported(format!("value_length {v} differs from key_length {head_dim}")));
            }
        }
        if n_heads % n_kv_heads != 0 {
            let key = quote(&key("attention.head_count_kv"));
            return Err(Error::Unsupported(format!("metadata {key}: {n_heads} query heads cannot share {n_kv_heads} KV heads evenly")));
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
        // Llama keeps the original interleaved pairs; the converter leaves the others half-split.
        let mode = if arch == Arch::Llama { RopeMode::Interleaved } else { RopeMode::HalfSplit };
        let ctx_train = optional("context_length")?.unwrap_or(2048);
        let rope_scaling = RopeScaling::from_gguf(file, &arch_name, ctx_train)?;
        let rope = Rope { mode, n_rot, freq_base: float("rope.freq_base")?.unwrap_or(10000.0), mscale: rope_scaling.mscale() };
        let sliding_window = optional("attention.sliding_window")?.unwrap_or(0);
        let (swa_pattern, rope_local) = match arch {
            Arch::Gemma2 => (2, None),
            Arch::Gemma3 => {
                let base = float("rope.freq_base_swa")?.unwrap_or(10000.0);
                let pattern = optional("attention.sliding_window_pattern")?.unwrap_or(6);
                // llama.cpp: local layers never scale their frequencies.
                let scaling = RopeScaling { kind: ScalingType::None, freq_scale: 1.0, factors: FactorTensors::None, ..rope_scaling.clone() };
                (pattern, Some((Rope { freq_base: base, mscale: scaling.mscale(), ..rope }, scaling)))
            }
            _ => (0, None),
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
            ctx_train,
            rms_eps: float("attention.layer_norm_rms_epsilon")?.unwrap_or(1e-5),
            rope,
            rope_scaling,
            rope_local,
            attn_scale: float("attention.scale")?.unwrap_or(1.0 / (head_dim as f32).sqrt()),
            sliding_window: if swa_pattern > 0 { sliding_window } else { 0 },
            swa_pattern,
            attn_softcap: float("attn_logit_softcapping")?.unwrap_or(0.0),
            final_softcap: float("final_logit_softcapping")?.unwrap_or(0.0),
            embed_scale: if arch.is_gemma() { (d_model as f32).sqrt() } else { 1.0 },
            activation: if arch.is_gemma() { Activation::GeGlu } else { Activation::SwiGlu },
            arch_name,
        })
    }

    /// The KV-cache length used when none is asked: the training context, at most 4096.
    pub fn default_context_length(&self) -> u32 {
        self.ctx_train.min(4096)
    }

    /// Does layer `l` attend only to the last `sliding_window` positions?
    pub fn is_local(&self, l: u32) -> bool {
        self.sliding_window > 0 && self.swa_pattern > 0 && l % self.swa_pattern < self.swa_pattern - 1
    }

    /// The RoPE of layer `l` and its frequency scaling.
    pub fn rope_for(&self, l: u32) -> (&Rope, &RopeScaling) {
        match &self.rope_local {
            Some((rope, scaling)) if self.is_local(l) => (rope, scaling),
            _ => (&self.rope, &self.rope_scaling),
        }
    }
}

fn positive_u32(key: &str, v: u64) -> Result<u32> {
    if v == 0 || v > (1 << 24) {
        return Err(Error::Unsupported(format!("metadata {} = {v} is out of range", quote(key))));
    }
    Ok(v as u32)
}
