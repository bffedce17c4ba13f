//! The GPU memory a model needs, computed from its header alone (before any weight is fetched or
//! uploaded), and the check of that need against the device limits. A model that cannot fit
//! fails fast with a device-limit error (`DeviceLimitError` in the browser, exit 2 natively) that
//! names the limit, the need, and what would fit.

use crate::error::{quote, Error, Result};
use crate::gguf::{GgufFile, TensorInfo};
use crate::gpu::{DeviceLimits, GpuError};

use super::{Config, KvType};

/// Bytes per KV-cache element.
fn kv_bytes(kv_type: KvType) -> u64 {
    match kv_type {
        KvType::F16 => 2,
        KvType::F32 => 4,
    }
}

/// What the model needs on the GPU at a given context length, in bytes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MemoryPlan {
    pub context_length: u32,
    /// Matrices in their file layout, 1-D tensors as f32.
    pub weights: u64,
    /// Keys and values of every layer.
    pub kv_cache: u64,
    /// One layer's buffer of keys and values: 2 × [context_length, n_kv_heads, head_dim].
    pub kv_layer_buffer: u64,
    /// KV-cache bytes per token and layer (keys and values).
    pub kv_layer_bytes_per_token: u64,
    /// Activations of one batch and the logits of one row.
    pub activations: u64,
    pub total: u64,
}

/// The GPU memory `file` needs with a KV cache of `context_length` tokens of `kv_type` and
/// batches of up to `max_batch` tokens.
pub fn plan(file: &GgufFile, c: &Config, context_length: u32, max_batch: u32, kv_type: KvType) -> MemoryPlan {
    let weights = file.tensors.iter().map(gpu_bytes).fold(0u64, u64::saturating_add);
    let kv_dim = c.n_kv_heads as u64 * c.head_dim as u64;
    let kv_layer_bytes_per_token = 2 * kv_dim * kv_bytes(kv_type);
    let kv_layer_buffer = (context_length as u64).saturating_mul(kv_layer_bytes_per_token);
    let kv_cache = kv_layer_buffer.saturating_mul(c.n_layers as u64);
    let q_dim = c.n_heads as u64 * c.head_dim as u64;
    let batch = max_batch.clamp(1, context_length.max(1)) as u64;
    let per_token = 4 * c.d_model as u64 + 2 * q_dim + 3 * kv_dim + 2 * c.ffn_dim as u64 + 1;
    let activations = batch.saturating_mul(per_token).saturating_add(c.vocab_size as u64).saturating_mul(4);
    MemoryPlan { context_length, weights, kv_cache, kv_layer_buffer, kv_layer_bytes_per_token, activations, total: weights.saturating_add(kv_cache).saturating_add(activations) }
}

/// Checks `plan` against the device: every buffer within `max_buffer_size` and
/// `max_storage_buffer_binding_size`, and the total within `total_limit` when the caller knows
/// one (wgpu does not report the device's memory natively).
pub fn check(file: &GgufFile, c: &Config, plan: &MemoryPlan, limits: &DeviceLimits, total_limit: Option<u64>) -> Result<()> {
    let (limit_name, limit) = if limits.max_storage_binding <= limits.max_buffer_size {
        ("max_storage_buffer_binding_size", limits.max_storage_binding)
    } else {
        ("max_buffer_size", limits.max_buffer_size)
    };
    let per_token = plan.kv_layer_bytes_per_token;
    if plan.kv_layer_buffer > limit {
        return Err(limit_error(format!(
            "one layer's KV cache needs {} at context {} but {limit_name} is {}; a context of at most {} tokens fits",
            mib(plan.kv_layer_buffer),
            plan.context_length,
            mib(limit),
            limit / per_token
        )));
    }
    if c.vocab_size as u64 * 4 > limit {
        return Err(limit_error(format!("one row of logits needs {} but {limit_name} is {}", mib(c.vocab_size as u64 * 4), mib(limit))));
    }
    for t in &file.tensors {
        // Matrices are split into parts of whole rows; one row must fit a binding.
        let unit = if t.dims.len() == 1 { gpu_bytes(t) } else { t.ty.row_bytes(t.dims[0]).unwrap_or(u64::MAX) };
        if unit > limit {
            return Err(limit_error(format!(
                "tensor {} needs {} per row but {limit_name} is {}; a smaller quant type might fit",
                quote(&t.name),
                mib(unit),
                mib(limit)
            )));
        }
    }
    if let Some(total) = total_limit.filter(|&total| plan.total > total) {
        let fixed = plan.weights.saturating_add(plan.activations);
        let fits = if fixed < total {
            format!("a context of at most {} tokens fits", (total - fixed) / (c.n_layers as u64 * per_token).max(1))
        } else {
            "the weights alone do not fit: a smaller quant type or model is needed".to_string()
        };
        return Err(limit_error(format!(
            "the model needs {} of GPU memory at context {} (weights {}, KV cache {}) but the device has {}; {fits}",
            mib(plan.total),
            plan.context_length,
            mib(plan.weights),
            mib(plan.kv_cache),
            mib(total)
        )));
    }
    Ok(())
}

/// GPU bytes of one tensor: matrices keep their file layout, 1-D tensors become f32.
fn gpu_bytes(t: &TensorInfo) -> u64 {
    if t.dims.len() == 1 {
        t.n_elements.saturating_mul(4)
    } else {
        t.n_bytes
    }
}

fn limit_error(message: String) -> Error {
    Error::Gpu(GpuError::Limit(message))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}
