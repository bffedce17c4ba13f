//! The GPU memory a model needs, sized from its parsed header and the load options alone, so
//! that a model that cannot fit the device fails before any weight byte is fetched.
//!
//! The sizes follow [`super::Model::new`]: weights (as stored in the file; bigger tensors are
//! split into parts no larger than one binding), one KV-cache buffer per layer of
//! `[context, 2 (K and V), n_kv_heads, head_dim]` f16 pairs or f32, and f32 activation buffers
//! for up to `max_batch` tokens.

use super::{Config, KvType, LoadOptions};
use crate::error::{quote, Error, Result};
use crate::gguf::GgufFile;
use crate::gpu::{DeviceLimits, GpuError};

/// What a model needs from the GPU at a context length, in bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryNeed {
    pub context_length: u32,
    /// All tensor data of the file.
    pub weights: u64,
    /// The whole KV cache (all layers).
    pub kv_cache: u64,
    /// One layer's KV-cache buffer: the largest buffer that grows with the context.
    pub kv_layer: u64,
    /// Activation buffers (residual, queries, feed-forward, logits, ...).
    pub activations: u64,
    /// The largest single buffer that cannot be split (a KV layer, an activation buffer).
    pub largest_buffer: u64,
}

impl MemoryNeed {
    pub fn total(&self) -> u64 {
        self.weights + self.kv_cache + self.activations
    }
}

/// KV-cache bytes per token of one layer.
fn kv_bytes_per_token(c: &Config, kv: KvType) -> u64 {
    let element = if kv == KvType::F16 { 2 } else { 4 };
    2 * (c.n_kv_heads * c.head_dim) as u64 * element
}

/// Sizes the GPU memory of `file`'s model at `opts` (the context length defaults as in
/// [`super::Model::new`]).
pub fn memory_need(file: &GgufFile, config: &Config, opts: &LoadOptions) -> MemoryNeed {
    let c = config;
    let context_length = opts.context_length.unwrap_or(c.ctx_train.min(4096)).max(1);
    let batch = opts.max_batch.clamp(1, context_length) as u64;
    let kv_layer = context_length as u64 * kv_bytes_per_token(c, opts.kv_type);
    let f = 4u64;
    let q_dim = (c.n_heads * c.head_dim) as u64;
    let buffers = [
        batch * c.d_model as u64 * f * 2,                   // residual and projection output
        batch * q_dim * f * 2,                              // queries and attention output
        batch * c.n_heads as u64 * (c.head_dim as u64 + 2) * f, // attention partials
        batch * c.ffn_dim as u64 * f,                       // feed-forward hidden
        batch.min(32) * c.vocab_size as u64 * f,            // logits (rows shrink to fit a binding)
    ];
    let largest_activation = [batch * c.ffn_dim as u64 * f, batch * q_dim * f, batch * c.d_model as u64 * f, c.vocab_size as u64 * f]
        .into_iter()
        .max()
        .unwrap_or(0);
    MemoryNeed {
        context_length,
        weights: file.tensors.iter().map(|t| t.n_bytes).sum(),
        kv_cache: kv_layer * c.n_layers as u64,
        kv_layer,
        activations: buffers.iter().sum(),
        largest_buffer: kv_layer.max(largest_activation),
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// Checks `need` against the device's limits: a buffer over `maxBufferSize` or
/// `maxStorageBufferBindingSize` is a [`GpuError::Limit`] that names the limit, the need, and
/// the largest context that fits. (WebGPU does not expose the device's total memory: an
/// allocation that fails later is caught by an out-of-memory error scope while loading.)
/// Every tensor's row (the unit a matrix is split by) must fit a binding too.
pub fn check_fits(file: &GgufFile, config: &Config, opts: &LoadOptions, need: &MemoryNeed, limits: &DeviceLimits) -> Result<()> {
    let (limit_name, limit) = if limits.max_storage_binding <= limits.max_buffer_size {
        ("maxStorageBufferBindingSize", limits.max_storage_binding)
    } else {
        ("maxBufferSize", limits.max_buffer_size)
    };
    // An invalid context length is reported by `Model::new`, with the range that is valid.
    if need.context_length > config.ctx_train {
        return Ok(());
    }
    // Matrices are split into parts of whole rows: one row must fit a binding.
    for t in &file.tensors {
        let unit = if t.dims.len() == 1 { t.n_elements.saturating_mul(4) } else { t.ty.row_bytes(t.dims[0]).unwrap_or(u64::MAX) };
        if unit > limit {
            return Err(Error::Gpu(GpuError::Limit(format!(
                "tensor {} needs {} per row, over this GPU's {limit_name} of {}; a smaller quant type might fit",
                quote(&t.name),
                mib(unit),
                mib(limit)
            ))));
        }
    }
    if need.largest_buffer <= limit {
        return Ok(());
    }
    let total = format!("{} in all: {} of weights, {} of KV cache", mib(need.total()), mib(need.weights), mib(need.kv_cache));
    let message = if need.kv_layer > limit {
        let fits = limit / kv_bytes_per_token(config, opts.kv_type);
        let f16 = if opts.kv_type == KvType::F32 { ", or kvType \"f16\" (half the size)" } else { "" };
        format!(
            "the model's KV cache at {} tokens needs {} per layer buffer, over this GPU's {limit_name} of {} ({total}); \
             a context of at most {fits} tokens fits{f16}",
            need.context_length,
            mib(need.kv_layer),
            mib(limit)
        )
    } else {
        format!(
            "the model needs a {} activation buffer (vocabulary {}, feed-forward {}), over this GPU's {limit_name} of {} ({total}); \
             try a smaller maxBatch or a smaller model",
            mib(need.largest_buffer),
            config.vocab_size,
            config.ffn_dim,
            mib(limit)
        )
    };
    Err(Error::Gpu(GpuError::Limit(message)))
}
