//! Load + generate, shared by the CLI and the browser: tokenizer, model, sampler and KV reuse.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::gpu::Context;
use crate::loader::{read_model_header, stream_weights, ByteSource, Phase, Progress};
use crate::model::{LoadOptions, Model};
use crate::sampler::{Sampler, SamplerOptions};
use crate::tokenizer::{end_of_generation_ids, Tokenizer, Utf8Assembler};

/// What a generation should do.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub max_tokens: u32,
    pub sampler: SamplerOptions,
    /// Keep going past end-of-generation tokens.
    pub ignore_eos: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions { max_tokens: 128, sampler: SamplerOptions::default(), ignore_eos: false }
    }
}

/// Why generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// An end-of-generation token.
    Stop,
    /// `max_tokens` or the context length reached.
    Length,
    /// The caller asked to stop.
    Abort,
}

/// Figures of the last generation.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct GenerateStats {
    pub prompt_tokens: u32,
    /// Prompt tokens actually run (the rest were already in the KV cache).
    pub prefilled_tokens: u32,
    pub generated_tokens: u32,
    pub prefill_seconds: f64,
    pub decode_seconds: f64,
    pub prefill_tokens_per_s: f64,
    pub decode_tokens_per_s: f64,
}

/// A generated token as the callback sees it.
pub struct Piece<'a> {
    pub token: u32,
    /// New valid UTF-8 text (possibly empty while a character is incomplete; control tokens such
    /// as `<|im_end|>` add none).
    pub text: &'a str,
}

/// A model ready to generate.
pub struct Engine {
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub header: GgufFile,
    /// Tokens that end generation (EOS/EOT).
    pub end_ids: Vec<u32>,
    /// Tokens whose keys and values are in the KV cache, in order from position 0.
    cached: Vec<u32>,
}

impl Engine {
    /// Reads the header, checks that the model can run, then streams the weights to the GPU.
    pub async fn load<S: ByteSource>(
        ctx: Arc<Context>,
        source: &mut S,
        options: &LoadOptions,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Engine> {
        progress(Progress { phase: Phase::Header, done: 0, total: source.len() });
        let header = read_model_header(source).await?;
        let tokenizer = Tokenizer::from_gguf(&header)?;
        let end_ids = end_of_generation_ids(&header)?;
        let mut model = Model::new(ctx, &header, options)?;
        stream_weights(source, &mut model, progress).await?;
        progress(Progress { phase: Phase::Ready, done: source.len(), total: source.len() });
        Ok(Engine { model, tokenizer, header, end_ids, cached: Vec::new() })
    }

    /// The ids of `text` (special tokens parsed), with BOS first when the model asks for it.
    pub fn prompt_ids(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        if self.tokenizer.add_bos() {
            ids.extend(self.tokenizer.bos_id());
        }
        ids.extend(self.tokenizer.encode(text, true));
        ids
    }

    /// Forgets the KV cache contents.
    pub fn reset(&mut self) {
        self.cached.clear();
    }

    /// Generates from `prompt` ids. `on_piece` receives every token with its new text and returns
    /// false to stop. Only prompt tokens not already in the KV cache are prefilled.
    pub async fn generate(
        &mut self,
        prompt: &[u32],
        options: &GenerateOptions,
        on_piece: &mut dyn FnMut(Piece) -> bool,
    ) -> Result<(GenerateStats, FinishReason)> {
        if prompt.is_empty() {
            return Err(Error::BadRequest("the prompt is empty (and the model adds no BOS token)".into()));
        }
        let ctx_len = self.model.context_length as usize;
        if prompt.len() >= ctx_len {
            return Err(Error::BadRequest(format!(
                "the prompt has {} tokens but the context holds {ctx_len}: shorten it or load with a longer context",
                prompt.len()
            )));
        }
        let mut sampler = Sampler::new(options.sampler.clone());
        let k = sampler.candidates_needed();
        // Reuse the longest cached prefix; always run at least the last prompt token for its logits.
        let reuse = common_prefix(&self.cached, prompt).min(prompt.len() - 1);
        self.cached.truncate(reuse);
        let mut stats = GenerateStats { prompt_tokens: prompt.len() as u32, prefilled_tokens: (prompt.len() - reuse) as u32, ..Default::default() };

        let clock = Clock::start();
        let result = self.model.forward_top_k(&prompt[reuse..], reuse as u32, k).await;
        let mut candidates = match result {
            Ok(c) => c,
            Err(e) => {
                self.cached.clear();
                return Err(e);
            }
        };
        self.cached.extend_from_slice(&prompt[reuse..]);
        stats.prefill_seconds = clock.seconds();

        let mut decoder = Utf8Assembler::new();
        let decode_clock = Clock::start();
        let mut finish = FinishReason::Length;
        loop {
            let Some(token) = sampler.sample(&candidates) else {
                return Err(Error::Gpu(crate::gpu::GpuError::Device("the GPU returned no candidates".into())));
            };
            if !options.ignore_eos && self.end_ids.contains(&token) {
                finish = FinishReason::Stop;
                break;
            }
            stats.generated_tokens += 1;
            // Control tokens (<|im_end|>, <eos>, ...) carry no text for the reader.
            let bytes = if self.tokenizer.is_control(token) { &[][..] } else { self.tokenizer.token_bytes(token) };
            let text = decoder.push(bytes);
            if !on_piece(Piece { token, text: &text }) {
                finish = FinishReason::Abort;
                break;
            }
            if stats.generated_tokens >= options.max_tokens || self.cached.len() + 1 >= ctx_len {
                break;
            }
            let pos = self.cached.len() as u32;
            match self.model.forward_top_k(&[token], pos, k).await {
                Ok(c) => candidates = c,
                Err(e) => {
                    self.cached.clear();
                    return Err(e);
                }
            }
            self.cached.push(token);
        }
        let rest = decoder.finish();
        if !rest.is_empty() {
            on_piece(Piece { token: u32::MAX, text: &rest });
        }
        stats.decode_seconds = decode_clock.seconds();
        stats.prefill_tokens_per_s = rate(stats.prefilled_tokens, stats.prefill_seconds);
        // The first generated token came out of the prefill step.
        stats.decode_tokens_per_s = rate(stats.generated_tokens.saturating_sub(1), stats.decode_seconds);
        Ok((stats, finish))
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn rate(n: u32, seconds: f64) -> f64 {
    if seconds > 0.0 { n as f64 / seconds } else { 0.0 }
}

/// Wall-clock timer that works natively and in the browser.
pub struct Clock {
    #[cfg(not(target_arch = "wasm32"))]
    start: std::time::Instant,
    #[cfg(target_arch = "wasm32")]
    start: f64,
}

impl Clock {
    pub fn start() -> Clock {
        #[cfg(not(target_arch = "wasm32"))]
        return Clock { start: std::time::Instant::now() };
        #[cfg(target_arch = "wasm32")]
        return Clock { start: js_sys::Date::now() };
    }
    pub fn seconds(&self) -> f64 {
        #[cfg(not(target_arch = "wasm32"))]
        return self.start.elapsed().as_secs_f64();
        #[cfg(target_arch = "wasm32")]
        return (js_sys::Date::now() - self.start) / 1000.0;
    }
}
