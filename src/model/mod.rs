//! Models: configuration from metadata, weights on the GPU, the KV cache, and the forward pass.
//!
//! Loading is two-phase so that native and web loaders share it: [`Model::new`] reads the parsed
//! header, checks every tensor's shape and type and allocates GPU memory; the loader then streams
//! the file's bytes into [`Model::weights_mut`] and calls [`Model::finish_load`].

mod config;
pub mod memory;
mod transformer;
pub mod validate;
mod weights;

pub use config::{Activation, Arch, Config, SUPPORTED_ARCHITECTURES};
pub use weights::{MatrixId, VectorId, WeightStore};

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::gpu::ops::{penalize, PenaltyArgs, TopK};
use crate::sampler::{Penalties, MAX_PENALTY_WINDOW};
use crate::gpu::{Context, Step};

/// Options chosen at load time.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// KV-cache length in tokens (default: the model's training context, capped at 4096).
    pub context_length: Option<u32>,
    /// Most tokens one forward step processes; longer prompts are prefilled in chunks.
    pub max_batch: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { context_length: None, max_batch: 128 }
    }
}

/// Activation buffers for up to `batch` tokens (all f32).
struct RunState {
    batch: u32,
    /// Token ids of the step: [batch] u32.
    ids: wgpu::Buffer,
    /// Residual stream: [batch, d_model].
    x: wgpu::Buffer,
    /// Normalised residual: [batch, d_model].
    h: wgpu::Buffer,
    /// Queries: [batch, n_heads, head_dim].
    q: wgpu::Buffer,
    /// New keys / values: [batch, n_kv_heads, head_dim].
    k: wgpu::Buffer,
    v: wgpu::Buffer,
    /// Keys after a per-head norm: [batch, n_kv_heads, head_dim].
    k_normed: wgpu::Buffer,
    /// A projection's output before its post-norm: [batch, d_model].
    tmp: wgpu::Buffer,
    /// Attention output: [batch, n_heads, head_dim].
    att: wgpu::Buffer,
    /// FFN gate and up projections: [batch, ffn_dim].
    gate: wgpu::Buffer,
    up: wgpu::Buffer,
    /// Logits of up to `logit_rows` tokens: [logit_rows, vocab].
    logits: wgpu::Buffer,
    logit_rows: u32,
}

/// Keys and values of every layer: k[l], v[l]: [context_length, n_kv_heads, head_dim] f32.
struct KvCache {
    k: Vec<wgpu::Buffer>,
    v: Vec<wgpu::Buffer>,
}

/// A loaded model, ready to run forward steps.
pub struct Model {
    pub config: Config,
    /// Tokens the KV cache holds.
    pub context_length: u32,
    ctx: Arc<Context>,
    weights: WeightStore,
    layout: transformer::Layout,
    state: RunState,
    kv: KvCache,
    topk: HashMap<u32, TopK>,
    /// (token id, count) pairs of the repetition penalties: [MAX_PENALTY_WINDOW, 2] u32.
    penalty_pairs: wgpu::Buffer,
    /// Dispatches recorded by the last step.
    pub last_dispatches: u32,
    /// Bytes read back from the GPU by the last step.
    pub last_readback_bytes: u64,
}

impl Model {
    /// Validates the header against what the engine can run and allocates all GPU memory.
    pub fn new(ctx: Arc<Context>, file: &GgufFile, opts: &LoadOptions) -> Result<Model> {
        let config = Config::from_gguf(file)?;
        let context_length = opts.context_length.unwrap_or(config.ctx_train.min(4096));
        if context_length == 0 || context_length > config.ctx_train {
            return Err(Error::BadRequest(format!(
                "context length {context_length} is not valid: the model supports 1 to {} tokens",
                config.ctx_train
            )));
        }
        // Everything the model will need must fit the device before anything is allocated.
        let plan = memory::plan(file, &config, context_length, opts.max_batch);
        memory::check(file, &config, &plan, &ctx.limits, None)?;
        let mut weights = WeightStore::default();
        let layout = transformer::Layout::new(&ctx, file, &config, &mut weights)?;
        let batch = opts.max_batch.clamp(1, context_length);
        let c = &config;
        let f = 4u64;
        let vocab_bytes = c.vocab_size as u64 * f;
        let logit_rows = (ctx.limits.max_storage_binding / vocab_bytes).clamp(1, batch.min(32) as u64) as u32;
        let buf = |name: &str, elems: u64| ctx.storage_buffer(name, elems * f);
        let b = batch as u64;
        let state = RunState {
            batch,
            ids: buf("ids", b)?,
            x: buf("x", b * c.d_model as u64)?,
            h: buf("h", b * c.d_model as u64)?,
            q: buf("q", b * (c.n_heads * c.head_dim) as u64)?,
            k: buf("k", b * (c.n_kv_heads * c.head_dim) as u64)?,
            v: buf("v", b * (c.n_kv_heads * c.head_dim) as u64)?,
            k_normed: buf("k_normed", b * (c.n_kv_heads * c.head_dim) as u64)?,
            tmp: buf("tmp", b * c.d_model as u64)?,
            att: buf("att", b * (c.n_heads * c.head_dim) as u64)?,
            gate: buf("gate", b * c.ffn_dim as u64)?,
            up: buf("up", b * c.ffn_dim as u64)?,
            logits: buf("logits", logit_rows as u64 * c.vocab_size as u64)?,
            logit_rows,
        };
        let kv_elems = context_length as u64 * (c.n_kv_heads * c.head_dim) as u64;
        let mut kv = KvCache { k: Vec::new(), v: Vec::new() };
        for l in 0..c.n_layers {
            kv.k.push(buf(&format!("k_cache.{l}"), kv_elems)?);
            kv.v.push(buf(&format!("v_cache.{l}"), kv_elems)?);
        }
        let penalty_pairs = ctx.storage_buffer("penalty pairs", MAX_PENALTY_WINDOW as u64 * 8)?;
        Ok(Model {
            config,
            context_length,
            ctx,
            weights,
            layout,
            state,
            kv,
            topk: HashMap::new(),
            penalty_pairs,
            last_dispatches: 0,
            last_readback_bytes: 0,
        })
    }

    pub fn weights_mut(&mut self) -> &mut WeightStore {
        &mut self.weights
    }

    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// Feeds model file bytes `[offset, offset + data.len())` (in file order) to the GPU.
    pub fn feed(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        let ctx = self.ctx.clone();
        self.weights.feed(&ctx, offset, data)
    }

    /// Ends loading: checks that all tensor data arrived and uploads the small tensors.
    pub fn finish_load(&mut self) -> Result<()> {
        let ctx = self.ctx.clone();
        self.weights.finish(&ctx)
    }

    /// Bytes of GPU memory held (weights, KV cache, activations).
    pub fn gpu_bytes(&self) -> u64 {
        let s = &self.state;
        let state: u64 = [&s.ids, &s.x, &s.h, &s.q, &s.k, &s.v, &s.k_normed, &s.tmp, &s.att, &s.gate, &s.up, &s.logits].iter().map(|b| b.size()).sum();
        let kv: u64 = self.kv.k.iter().chain(&self.kv.v).map(|b| b.size()).sum();
        self.weights.gpu_bytes() + state + kv
    }

    fn check_request(&self, tokens: &[u32], pos0: u32) -> Result<()> {
        if tokens.is_empty() {
            return Err(Error::BadRequest("no tokens to process".into()));
        }
        let end = pos0 as u64 + tokens.len() as u64;
        if end > self.context_length as u64 {
            return Err(Error::BadRequest(format!(
                "{} tokens at position {pos0} exceed the context length of {} tokens",
                tokens.len(),
                self.context_length
            )));
        }
        if let Some(bad) = tokens.iter().find(|&&t| t >= self.config.vocab_size) {
            return Err(Error::BadRequest(format!("token id {bad} is outside the vocabulary of {}", self.config.vocab_size)));
        }
        Ok(())
    }

    /// Runs `tokens` at positions `pos0..` (writing their keys and values into the cache) and
    /// returns the `k` most likely next tokens after the last one as (id, logit), best first.
    /// Each chunk of up to `max_batch` tokens is one queue submission; the last one reads back
    /// only the k pairs.
    pub async fn forward_top_k(&mut self, tokens: &[u32], pos0: u32, k: u32) -> Result<Vec<(u32, f32)>> {
        self.forward_candidates(tokens, pos0, k, None).await
    }

    /// [`Model::forward_top_k`] with repetition penalties applied to the logits first.
    pub async fn forward_candidates(
        &mut self,
        tokens: &[u32],
        pos0: u32,
        k: u32,
        penalties: Option<&Penalties>,
    ) -> Result<Vec<(u32, f32)>> {
        self.check_request(tokens, pos0)?;
        if let Some(p) = penalties {
            if p.counts.len() > MAX_PENALTY_WINDOW as usize || p.counts.iter().any(|&(id, _)| id >= self.config.vocab_size) {
                return Err(Error::BadRequest(format!(
                    "penalties cover at most {MAX_PENALTY_WINDOW} distinct tokens of the vocabulary"
                )));
            }
            let words: Vec<u32> = p.counts.iter().flat_map(|&(id, c)| [id, c]).collect();
            self.ctx.queue.write_buffer(&self.penalty_pairs, 0, bytemuck::cast_slice(&words));
        }
        let ctx = self.ctx.clone();
        if !self.topk.contains_key(&k) {
            self.topk.insert(k, TopK::new(&ctx, self.config.vocab_size, k)?);
        }
        let chunks: Vec<&[u32]> = tokens.chunks(self.state.batch as usize).collect();
        let mut pos = pos0;
        for (i, chunk) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            let mut step = Step::new(&ctx);
            let n = chunk.len() as u32;
            // Only the last token's logits are needed.
            self.record_forward(&mut step, chunk, pos, if last { Some(n - 1) } else { None })?;
            pos += n;
            if last {
                if let Some(p) = penalties {
                    let args = PenaltyArgs { n: p.counts.len() as u32, repeat: p.repeat, presence: p.presence, frequency: p.frequency };
                    penalize(&mut step, &self.penalty_pairs, &self.state.logits, 0, args)?;
                }
                let topk = &self.topk[&k];
                topk.record(&mut step, &self.state.logits, 0)?;
                self.last_dispatches = step.dispatches;
                self.last_readback_bytes = k as u64 * 8;
                return Ok(topk.submit_and_read(step).await?);
            }
            step.submit(None);
        }
        unreachable!("tokens is not empty")
    }

    /// Runs `tokens` at positions `pos0..` and returns the full logits after every token:
    /// [tokens.len()][vocab]. Reads everything back: for scoring and tests, not generation.
    pub async fn forward_logits(&mut self, tokens: &[u32], pos0: u32) -> Result<Vec<Vec<f32>>> {
        self.check_request(tokens, pos0)?;
        let ctx = self.ctx.clone();
        let vocab = self.config.vocab_size as usize;
        let mut out = Vec::with_capacity(tokens.len());
        let mut pos = pos0;
        for chunk in tokens.chunks(self.state.logit_rows as usize) {
            let mut step = Step::new(&ctx);
            self.record_forward(&mut step, chunk, pos, Some(0))?;
            step.submit(None);
            let flat = ctx.read_f32(&self.state.logits, chunk.len() * vocab).await?;
            self.last_readback_bytes = (flat.len() * 4) as u64;
            out.extend(flat.chunks_exact(vocab).map(|row| row.to_vec()));
            pos += chunk.len() as u32;
        }
        Ok(out)
    }

    /// Records the forward pass of `tokens` (≤ batch) at `pos0..`; when `logits_from` is given,
    /// the logits of tokens `logits_from..` land in rows 0.. of the logits buffer.
    fn record_forward(&self, step: &mut Step, tokens: &[u32], pos0: u32, logits_from: Option<u32>) -> Result<()> {
        self.ctx.queue.write_buffer(&self.state.ids, 0, bytemuck::cast_slice(tokens));
        transformer::record(self, step, tokens.len() as u32, pos0, logits_from)
    }
}
