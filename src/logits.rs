//! The logits stage: what happens to a step's logits on the GPU before the host sees them —
//! repetition penalties, then the top-k selection whose k pairs are all a step reads back (its
//! best id also goes where the next step's embedding reads it, for pipelined decoding).
//! The model records it at the end of a step; the sampler chooses among its candidates. Neither
//! knows the other.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::gpu::ops::{penalize, TopK};
use crate::gpu::{Context, Step, StepState};

pub use crate::gpu::ops::MAX_TOP_K;

/// Most distinct recent tokens the repetition penalties cover.
pub const MAX_PENALTY_WINDOW: u32 = 1024;

/// Penalties for the next step: recent tokens with their counts, and the strengths
/// (llama.cpp's semantics: a positive logit is divided by `repeat`, a negative one multiplied,
/// then count × `frequency` + `presence` is subtracted).
#[derive(Clone, Debug, PartialEq)]
pub struct Penalties {
    /// (token id, occurrences in the window), ids unique.
    pub counts: Vec<(u32, u32)>,
    pub repeat: f32,
    pub presence: f32,
    pub frequency: f32,
}

/// The GPU buffers of the logits stage of one model.
pub struct LogitsStage {
    vocab: u32,
    /// (token id, count) pairs of the repetition penalties: [MAX_PENALTY_WINDOW, 2] u32.
    penalty_pairs: wgpu::Buffer,
    /// One selection per (k, rows) asked for.
    topk: HashMap<(u32, u32), TopK>,
}

impl LogitsStage {
    pub fn new(ctx: &Context, vocab: u32) -> Result<LogitsStage> {
        let penalty_pairs = ctx.storage_buffer("penalty pairs", MAX_PENALTY_WINDOW as u64 * 8)?;
        Ok(LogitsStage { vocab, penalty_pairs, topk: HashMap::new() })
    }

    /// Records, after a step's logits (row 0 of `logits`): the penalties when `penalties`, then
    /// the top-k selection, whose best id is written to `next_id[0]`.
    pub fn record(&mut self, ctx: &Context, step: &mut Step, logits: &wgpu::Buffer, next_id: &wgpu::Buffer, k: u32, penalties: bool) -> Result<()> {
        if penalties {
            penalize(step, &self.penalty_pairs, logits, 0)?;
        }
        if !self.topk.contains_key(&(k, 1)) {
            self.topk.insert((k, 1), TopK::new(ctx, self.vocab, k)?);
        }
        self.topk[&(k, 1)].record(step, logits, 0, next_id)?;
        Ok(())
    }

    /// Records the top-k selection of each of the first `rows` rows of `logits`: [rows, vocab]
    /// (no penalties: the verify step of speculative decoding).
    pub fn record_rows(&mut self, ctx: &Context, step: &mut Step, logits: &wgpu::Buffer, next_id: &wgpu::Buffer, k: u32, rows: u32) -> Result<()> {
        if !self.topk.contains_key(&(k, rows)) {
            self.topk.insert((k, rows), TopK::with_rows(ctx, self.vocab, k, rows)?);
        }
        self.topk[&(k, rows)].record_rows(step, logits, next_id)?;
        Ok(())
    }

    /// Uploads `penalties` for the next run of a step recorded with them, and sets their counts
    /// and strengths in its `state`.
    pub fn set_penalties(&self, ctx: &Context, penalties: &Penalties, state: &mut StepState) -> Result<()> {
        if penalties.counts.len() > MAX_PENALTY_WINDOW as usize || penalties.counts.iter().any(|&(id, _)| id >= self.vocab) {
            return Err(Error::BadRequest(format!("penalties cover at most {MAX_PENALTY_WINDOW} distinct tokens of the vocabulary")));
        }
        let words: Vec<u32> = penalties.counts.iter().flat_map(|&(id, c)| [id, c]).collect();
        ctx.queue.write_buffer(&self.penalty_pairs, 0, bytemuck::cast_slice(&words));
        state.penalty_pairs = penalties.counts.len() as u32;
        state.repeat = penalties.repeat;
        state.presence = penalties.presence;
        state.frequency = penalties.frequency;
        Ok(())
    }

    /// The result buffer of the top-k selection for `k` over `rows` rows (after
    /// [`LogitsStage::record`] or [`LogitsStage::record_rows`]): the k best of each row as
    /// (f32 bits, token id) pairs, `8 k rows` bytes.
    pub fn result(&self, k: u32, rows: u32) -> Option<&wgpu::Buffer> {
        self.topk.get(&(k, rows)).map(|t| &t.result)
    }

    /// Bytes of GPU memory held.
    pub fn gpu_bytes(&self) -> u64 {
        self.penalty_pairs.size() + self.topk.values().map(|t| t.gpu_bytes()).sum::<u64>()
    }
}
