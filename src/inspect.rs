//! Describing a GGUF file for `ferrolm inspect`, and small helpers on logits.

use std::collections::BTreeMap;

use crate::gguf::GgufFile;
use crate::gpu::gpu_supports;

/// Metadata arrays longer than this are elided (token lists, merges, scores).
const MAX_ARRAY_SHOWN: usize = 64;

/// [`describe`] plus `"rope"`: the RoPE in use at the runtime context `context` (default: the
/// engine's default context), `null` when the file is not a model the engine can run.
pub fn describe_with_context(file: &GgufFile, context: Option<u32>) -> serde_json::Value {
    let mut out = describe(file);
    out["rope"] = match crate::model::Config::from_gguf(file) {
        Ok(c) => rope_json(&c, context.unwrap_or_else(|| c.default_context_length())),
        Err(_) => serde_json::Value::Null,
    };
    out
}

/// `{"scaling": none|linear|yarn|longrope-short|longrope-long, "factors": tensor name or null,
/// "context", "n_rot", "head_dim", "freq_base", "mscale"}`.
pub fn rope_json(c: &crate::model::Config, context: u32) -> serde_json::Value {
    serde_json::json!({
        "scaling": c.rope_scaling.variant(context).name(),
        "factors": c.rope_scaling.factor_tensor(context),
        "context": context,
        "n_rot": c.rope.n_rot,
        "head_dim": c.head_dim,
        "freq_base": c.rope.freq_base,
        "mscale": c.rope.mscale,
    })
}

/// `{"architecture", "tensor_count", "quant_types": {type: count}, "unsupported_types": [...],
/// "metadata": {...}}` with long arrays elided.
pub fn describe(file: &GgufFile) -> serde_json::Value {
    let mut quant_types: BTreeMap<&str, u64> = BTreeMap::new();
    for t in &file.tensors {
        *quant_types.entry(t.ty.name()).or_default() += 1;
    }
    let mut unsupported: Vec<serde_json::Value> = Vec::new();
    for t in &file.tensors {
        if !gpu_supports(t.ty) {
            unsupported.push(serde_json::json!({ "tensor": t.name, "type": t.ty.name() }));
        }
    }
    let metadata: serde_json::Map<String, serde_json::Value> =
        file.metadata.iter().map(|(k, v)| (k.clone(), v.to_json(Some(MAX_ARRAY_SHOWN)))).collect();
    serde_json::json!({
        "architecture": file.architecture(),
        "version": file.version,
        "tensor_count": file.tensors.len(),
        "quant_types": quant_types,
        "unsupported_tensors": unsupported,
        "metadata": metadata,
    })
}

/// The `k` largest logits as (token id, logit), best first; ties go to the lower id.
pub fn top_k(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    let key = |i: &u32| logits[*i as usize];
    let k = k.min(idx.len());
    if k == 0 {
        return Vec::new();
    }
    idx.select_nth_unstable_by(k - 1, |a, b| key(b).total_cmp(&key(a)).then(a.cmp(b)));
    idx.truncate(k);
    idx.sort_by(|a, b| key(b).total_cmp(&key(a)).then(a.cmp(b)));
    idx.into_iter().map(|i| (i, logits[i as usize])).collect()
}
