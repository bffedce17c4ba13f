//! Models: configuration from metadata, weights on the GPU, the KV cache, and the forward pass.
//!
//! Loading is two-phase so that native and web loaders share it: [`Model::new`] reads the parsed
//! header, checks every tensor's shape and type and allocates GPU memory; the loader then streams
//! the file's bytes into [`Model::weights_mut`] and calls [`Model::finish_load`].

mod config;
mod fit;
pub mod profile;
pub mod rope;
mod transformer;
pub mod tune;
pub mod validate;
mod weights;

pub use config::{Activation, Arch, Config, Rope, RopeMode, SUPPORTED_ARCHITECTURES};
pub use fit::{check_fits, memory_need, MemoryNeed};
pub use transformer::Logits;
pub use tune::{Tune, TuneReport};
pub use weights::{MatrixId, VectorId, WeightStore};

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::gpu::ops::{AttentionArgs, TopK, MAX_SPLITS};
use crate::gpu::{Context, KvLayer, Recording, Step, StepState};
use crate::logits::{LogitsStage, Penalties, MAX_TOP_K};

/// How the KV cache stores keys and values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KvType {
    /// Two f16 per 32-bit word (`pack2x16float`; no `shader-f16` needed): half the memory.
    #[default]
    F16,
    /// f32: exact, twice the memory.
    F32,
}

impl std::str::FromStr for KvType {
    type Err = Error;
    fn from_str(s: &str) -> Result<KvType> {
        match s {
            "f16" => Ok(KvType::F16),
            "f32" => Ok(KvType::F32),
            _ => Err(Error::BadRequest(format!("KV-cache type '{s}' is not one of f16, f32"))),
        }
    }
}

/// Options chosen at load time.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// KV-cache length in tokens (default: the model's training context, capped at 4096).
    pub context_length: Option<u32>,
    /// Most tokens one forward step processes; longer prompts are prefilled in chunks.
    pub max_batch: u32,
    pub kv_type: KvType,
    /// Whether the matrix kernels are autotuned once the weights are in (see [`Tune`]).
    pub tune: Tune,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { context_length: None, max_batch: 128, kv_type: KvType::default(), tune: Tune::Off }
    }
}

/// Activation buffers for up to `batch` tokens (all f32).
struct RunState {
    batch: u32,
    /// Token ids of the step: [batch] u32. The top-k selection writes its best id to ids[0], where
    /// the next decode step reads it (pipelined greedy decoding).
    ids: wgpu::Buffer,
    /// Residual stream: [batch, d_model].
    x: wgpu::Buffer,
    /// Queries: [batch, n_heads, head_dim].
    q: wgpu::Buffer,
    /// Attention partial results: [batch, n_heads, splits, head_dim + 2].
    scratch: wgpu::Buffer,
    /// Attention output: [batch, n_heads, head_dim].
    att: wgpu::Buffer,
    /// A projection's output before its post-norm (Gemma): [batch, d_model].
    tmp: wgpu::Buffer,
    /// The residual stream RMSNorm-ed as a matrix kernel's input (`Tuning::separate_input_norm`):
    /// [batch, d_model].
    normed: wgpu::Buffer,
    /// Feed-forward hidden activations: [batch, ffn_dim].
    gate: wgpu::Buffer,
    /// Logits of up to `logit_rows` tokens: [logit_rows, vocab].
    logits: wgpu::Buffer,
    logit_rows: u32,
    /// Two mappable copies of a step's top-k result, so a step can run while the previous one's
    /// result is read: [MAX_VERIFY_TOKENS, MAX_TOP_K, 2] u32 each (a verify step reads a top-k
    /// per token).
    readback: [wgpu::Buffer; 2],
}

/// Keys and values of every layer, one buffer or texture per layer: keys then values, each
/// [context_length, n_kv_heads, head_dim], as f16 pairs or f32 (`gpu::kv`).
struct KvCache {
    layers: Vec<KvLayer>,
    f16: bool,
}

/// How the model's attention runs (see `gpu::ops::attention`).
#[derive(Clone, Copy, Debug)]
struct AttentionPlan {
    /// Slices a decode step splits the cached positions into.
    decode_splits: u32,
    /// Slices a step of several tokens splits them into.
    prefill_splits: u32,
    /// One thread per (token, head, slice) (`attend_rows`) rather than a workgroup.
    thread_per_row: bool,
    /// The KV cache lives in textures, read by `attend_lanes` (CPU drivers, where it fits).
    kv_in_textures: bool,
}

impl AttentionPlan {
    /// `kv_elems`: elements of one layer's cache (keys and values).
    fn new(ctx: &Context, config: &Config, context_length: u32, kv_f16: bool, kv_elems: u64) -> AttentionPlan {
        // CPU drivers run a thread per row, in as many slices as lavapipe's loop limit needs
        // (while that is possible), else a workgroup per row.
        let rows = AttentionArgs {
            n_tokens: 1,
            n_heads: config.n_heads,
            n_kv_heads: config.n_kv_heads,
            head_dim: config.head_dim,
            ctx_len: context_length,
            kv_f16: true,
            scale: 1.0,
            softcap: 0.0,
            window: 0,
            splits: 1,
            q_block: 1,
            thread_per_row: ctx.tuning.attention_thread_per_row,
        };
        let thread_per_row = rows.uses_thread_per_row() && rows.min_splits() <= MAX_SPLITS;
        let prefill_splits = if thread_per_row { rows.min_splits() } else { 1 };
        // Decode splits the cached positions so that one head is many workgroups (GPUs) or
        // threads (CPU drivers). Slices of at least 64.
        let decode_splits = ctx.tuning.attention_splits.min(context_length.div_ceil(64)).max(prefill_splits).clamp(1, MAX_SPLITS);
        let kv_in_textures = ctx.tuning.kv_in_textures
            && AttentionArgs { kv_f16, ..rows }.kv_texture_fits()
            && KvLayer::texture_rows(kv_elems) <= ctx.limits.max_texture_rows as u64;
        AttentionPlan { decode_splits, prefill_splits, thread_per_row, kv_in_textures }
    }

    /// Slices a step of `n_tokens` tokens splits the cached positions into.
    fn splits(&self, n_tokens: u32) -> u32 {
        if n_tokens == 1 {
            self.decode_splits
        } else {
            self.prefill_splits
        }
    }
}

/// What a recorded step computes; steps of the same shape share one [`Recording`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct StepShape {
    n_tokens: u32,
    logits: Logits,
    /// Top-k selected after the logits (0 = none).
    top_k: u32,
    penalties: bool,
}

/// Recordings kept at most (the decode step, the prefill chunk sizes seen recently).
const MAX_RECORDINGS: usize = 16;

/// Most tokens one verify step ([`Model::verify`]) checks.
pub const MAX_VERIFY_TOKENS: u32 = 16;

/// A step submitted but not read yet: its top-k result lands in `readback[slot]`.
#[must_use]
pub struct PendingStep {
    slot: usize,
    k: u32,
    /// Rows with a top-k each (1, or the tokens of a verify step).
    rows: u32,
    submission: wgpu::SubmissionIndex,
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
    logits_stage: LogitsStage,
    recordings: HashMap<StepShape, Recording>,
    /// How attention runs and into how many slices it splits the cached positions.
    attention: AttentionPlan,
    next_slot: usize,
    /// Dispatches recorded by the last step.
    pub last_dispatches: u32,
    /// Bytes read back from the GPU by the last step.
    pub last_readback_bytes: u64,
    /// What the kernel autotuner did at load.
    pub tune_report: TuneReport,
}

impl Model {
    /// Validates the header against what the engine can run and allocates all GPU memory.
    pub fn new(ctx: Arc<Context>, file: &GgufFile, opts: &LoadOptions) -> Result<Model> {
        let config = Config::from_gguf(file)?;
        let context_length = opts.context_length.unwrap_or(config.default_context_length());
        if context_length == 0 || context_length > config.ctx_train {
            return Err(Error::BadRequest(format!(
                "context length {context_length} is not valid: the model supports 1 to {} tokens",
                config.ctx_train
            )));
        }
        // Everything the model will need must fit the device before anything is allocated.
        // Fail before any weight byte is fetched when a buffer cannot fit the device's limits.
        check_fits(file, &config, opts, &memory_need(file, &config, opts), &ctx.limits)?;
        let mut weights = WeightStore::default();
        let layout = transformer::Layout::new(&ctx, file, &config, context_length, &mut weights)?;
        weights.allocate_vectors(&ctx)?;
        let batch = opts.max_batch.clamp(1, context_length);
        let c = &config;
        let f = 4u64;
        let vocab_bytes = c.vocab_size as u64 * f;
        let logit_rows = (ctx.limits.max_storage_binding / vocab_bytes).clamp(1, batch.min(32) as u64) as u32;
        let f16 = opts.kv_type == KvType::F16;
        let kv_elems = 2 * context_length as u64 * (c.n_kv_heads * c.head_dim) as u64;
        let attention = AttentionPlan::new(&ctx, &config, context_length, f16, kv_elems);
        let buf = |name: &str, elems: u64| ctx.storage_buffer(name, elems * f);
        let b = batch as u64;
        let (q_dim, hd) = ((c.n_heads * c.head_dim) as u64, c.head_dim as u64);
        let scratch_rows = (b * attention.prefill_splits as u64).max(attention.decode_splits as u64);
        let state = RunState {
            batch,
            ids: buf("ids", b)?,
            x: buf("x", b * c.d_model as u64)?,
            q: buf("q", b * q_dim)?,
            scratch: buf("attention partials", scratch_rows * c.n_heads as u64 * (hd + 2))?,
            att: buf("att", b * q_dim)?,
            tmp: buf("tmp", b * c.d_model as u64)?,
            normed: buf("normed input", b * c.d_model as u64)?,
            gate: buf("gate", b * c.ffn_dim as u64)?,
            logits: buf("logits", logit_rows as u64 * c.vocab_size as u64)?,
            logit_rows,
            readback: [0, 1].map(|i| ctx.readback_buffer(&format!("top-k readback {i}"), (MAX_VERIFY_TOKENS * MAX_TOP_K) as u64 * 8)),
        };
        let mut kv = KvCache { layers: Vec::new(), f16 };
        for l in 0..c.n_layers {
            let name = format!("kv_cache.{l}");
            kv.layers.push(if attention.kv_in_textures {
                KvLayer::texture(&ctx, &name, kv_elems)?
            } else {
                KvLayer::buffer(&ctx, &name, kv_elems / if f16 { 2 } else { 1 })?
            });
        }
        let logits_stage = LogitsStage::new(&ctx, config.vocab_size)?;
        Ok(Model {
            logits_stage,
            config,
            context_length,
            ctx,
            weights,
            layout,
            state,
            kv,
            recordings: HashMap::new(),
            attention,
            next_slot: 0,
            last_dispatches: 0,
            last_readback_bytes: 0,
            tune_report: TuneReport::default(),
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

    /// Ends loading: checks that all tensor data arrived, uploads the small tensors, and records
    /// the greedy decode step.
    pub fn finish_load(&mut self) -> Result<()> {
        let ctx = self.ctx.clone();
        self.weights.finish(&ctx)?;
        self.prepare_decode(1, false)
    }

    /// Records the decode step for `k` candidates (with penalties or not) unless it exists, so
    /// that decoding creates no bind group.
    pub fn prepare_decode(&mut self, k: u32, penalties: bool) -> Result<()> {
        self.recording(StepShape { n_tokens: 1, logits: Logits::Last, top_k: k, penalties }).map(|_| ())
    }

    /// Most tokens one step (a prefill chunk) processes.
    pub fn max_step_tokens(&self) -> u32 {
        self.state.batch
    }

    /// Bytes of GPU memory held (weights, KV cache, activations).
    pub fn gpu_bytes(&self) -> u64 {
        let s = &self.state;
        let state: u64 = [&s.ids, &s.x, &s.q, &s.scratch, &s.att, &s.tmp, &s.normed, &s.gate, &s.logits].iter().map(|b| b.size()).sum();
        self.weights.gpu_bytes() + state + self.kv_bytes() + self.logits_stage.gpu_bytes()
    }

    /// Weight bytes one decode step reads: every matrix, except that of the token embedding
    /// (unless it is also the output matrix) only one row.
    pub fn weight_bytes_per_token(&self) -> u64 {
        self.weights.bytes_read_per_token(self.layout.token_embedding(), self.layout.output_matrix())
    }

    /// Bytes of GPU memory the KV cache holds.
    pub fn kv_bytes(&self) -> u64 {
        self.kv.layers.iter().map(KvLayer::gpu_bytes).sum()
    }

    /// The KV cache's element type.
    pub fn kv_type(&self) -> KvType {
        if self.kv.f16 { KvType::F16 } else { KvType::F32 }
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

    /// The recording of a step of `shape`, recorded on first use.
    fn recording(&mut self, shape: StepShape) -> Result<&Recording> {
        if !self.recordings.contains_key(&shape) {
            let ctx = self.ctx.clone();
            let mut step = Step::new(&ctx);
            transformer::record(self, &mut step, shape.n_tokens, shape.logits)?;
            if shape.top_k > 0 && shape.logits == Logits::All {
                self.logits_stage.record_rows(&ctx, &mut step, &self.state.logits, &self.state.ids, shape.top_k, shape.n_tokens)?;
            } else if shape.top_k > 0 {
                self.logits_stage.record(&ctx, &mut step, &self.state.logits, &self.state.ids, shape.top_k, shape.penalties)?;
            }
            if self.recordings.len() >= MAX_RECORDINGS {
                // The decode and verify steps stay (at most MAX_VERIFY_TOKENS per k).
                self.recordings.retain(|s, _| s.n_tokens == 1 || (s.logits == Logits::All && s.top_k > 0));
            }
            self.recordings.insert(shape, step.finish());
        }
        Ok(&self.recordings[&shape])
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
        let batch = self.state.batch as usize;
        let mut pos = pos0;
        for (i, chunk) in tokens.chunks(batch).enumerate() {
            let last = (i + 1) * batch >= tokens.len();
            let shape = StepShape {
                n_tokens: chunk.len() as u32,
                logits: if last { Logits::Last } else { Logits::None },
                top_k: if last { k } else { 0 },
                penalties: last && penalties.is_some(),
            };
            let pending = self.submit(shape, Some(chunk), pos, if last { penalties } else { None })?;
            pos += chunk.len() as u32;
            if let Some(pending) = pending {
                return self.read_step(pending).await;
            }
        }
        unreachable!("tokens is not empty")
    }

    /// Submits one decode step at position `pos`: the token is `token`, or — `None` — the best
    /// candidate the previous step chose on the GPU (pipelined greedy decoding: the next step can
    /// be submitted before this one's result is read). Read the k candidates with [`Model::read_step`].
    pub fn submit_decode(&mut self, token: Option<u32>, pos: u32, k: u32) -> Result<PendingStep> {
        let tokens = token.map(|t| [t]);
        self.check_request(&[token.unwrap_or(0)], pos)?;
        let shape = StepShape { n_tokens: 1, logits: Logits::Last, top_k: k, penalties: false };
        let pending = self.submit(shape, tokens.as_ref().map(|t| &t[..]), pos, None)?;
        Ok(pending.expect("a step with top-k has a result"))
    }

    /// Runs the step of `shape` at `pos0` (writing `tokens` to the ids first when given).
    fn submit(&mut self, shape: StepShape, tokens: Option<&[u32]>, pos0: u32, penalties: Option<&Penalties>) -> Result<Option<PendingStep>> {
        let mut state = StepState::at(pos0);
        if let Some(p) = penalties {
            self.logits_stage.set_penalties(&self.ctx, p, &mut state)?;
        }
        if let Some(tokens) = tokens {
            self.ctx.queue.write_buffer(&self.state.ids, 0, bytemuck::cast_slice(tokens));
        }
        self.recording(shape)?;
        let (ctx, recording) = (&self.ctx, &self.recordings[&shape]);
        self.last_dispatches = recording.dispatches();
        if shape.top_k == 0 {
            recording.run(ctx, &state, None);
            return Ok(None);
        }
        let slot = self.next_slot;
        self.next_slot = 1 - slot;
        let rows = if shape.logits == Logits::All { shape.n_tokens } else { 1 };
        let bytes = shape.top_k as u64 * rows as u64 * 8;
        let result = self.logits_stage.result(shape.top_k, rows).expect("recorded with this k");
        let submission = recording.run(ctx, &state, Some((result, &self.state.readback[slot], bytes)));
        self.last_readback_bytes = bytes;
        Ok(Some(PendingStep { slot, k: shape.top_k, rows, submission }))
    }

    /// Waits for a submitted step and reads its k candidates (token id, logit), best first.
    pub async fn read_step(&self, pending: PendingStep) -> Result<Vec<(u32, f32)>> {
        Ok(self.read_rows(pending).await?.swap_remove(0))
    }

    /// Waits for a submitted step and reads the k candidates of each of its rows.
    async fn read_rows(&self, pending: PendingStep) -> Result<Vec<Vec<(u32, f32)>>> {
        let row_bytes = pending.k as usize * 8;
        let bytes = (row_bytes * pending.rows as usize) as u64;
        let data = self.ctx.read_mapped_after(&self.state.readback[pending.slot], bytes, Some(pending.submission)).await?;
        Ok(data.chunks_exact(row_bytes).map(TopK::decode).collect())
    }

    /// Records the verify steps of every size for `k` candidates per token unless they exist,
    /// so that speculative decoding creates no bind group (and compiles no pipeline) mid-way.
    pub fn prepare_verify(&mut self, k: u32) -> Result<()> {
        for n in 2..=self.max_verify_tokens() {
            self.recording(StepShape { n_tokens: n, logits: Logits::All, top_k: k, penalties: false })?;
        }
        Ok(())
    }

    /// Most tokens one [`Model::verify`] step takes.
    pub fn max_verify_tokens(&self) -> u32 {
        MAX_VERIFY_TOKENS.min(self.state.logit_rows).min(self.state.batch)
    }

    /// The verify step of speculative decoding: runs `tokens` (the last accepted token, then the
    /// proposed ones) at positions `pos0..` in one step, writing their keys and values, and
    /// returns the `k` most likely next tokens after each of them: [tokens.len()][k] (id, logit),
    /// best first. Only those pairs are read back, never the logits. At most
    /// [`Model::max_verify_tokens`] tokens; no penalties.
    pub async fn verify(&mut self, tokens: &[u32], pos0: u32, k: u32) -> Result<Vec<Vec<(u32, f32)>>> {
        self.check_request(tokens, pos0)?;
        if tokens.len() as u32 > self.max_verify_tokens() {
            return Err(Error::BadRequest(format!("a verify step takes at most {} tokens", self.max_verify_tokens())));
        }
        let shape = StepShape { n_tokens: tokens.len() as u32, logits: Logits::All, top_k: k, penalties: false };
        let pending = self.submit(shape, Some(tokens), pos0, None)?.expect("a step with top-k has a result");
        self.read_rows(pending).await
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
            let shape = StepShape { n_tokens: chunk.len() as u32, logits: Logits::All, top_k: 0, penalties: false };
            self.submit(shape, Some(chunk), pos, None)?;
            let flat = ctx.read_f32(&self.state.logits, chunk.len() * vocab).await?;
            self.last_readback_bytes = (flat.len() * 4) as u64;
            out.extend(flat.chunks_exact(vocab).map(|row| row.to_vec()));
            pos += chunk.len() as u32;
        }
        Ok(out)
    }
}
