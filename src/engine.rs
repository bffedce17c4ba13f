//! Load + generate, shared by the CLI and the browser: tokenizer, model, sampler and KV reuse.

use std::sync::Arc;

use crate::chat::{ChatTemplate, Message};
use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::gpu::Context;
use crate::loader::{read_model_header, stream_weights, ByteSource, Phase, Progress};
use crate::model::{LoadOptions, Model, PendingStep};
use crate::sampler::{Sampler, SamplerOptions};
use crate::speculative::{accepted_prefix, prompt_lookup, AdaptiveK, Speculation, SpeculationStats};
use crate::tokenizer::{end_of_generation_ids, Tokenizer, Utf8Assembler};

/// What a generation should do.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub max_tokens: u32,
    pub sampler: SamplerOptions,
    /// Keep going past end-of-generation tokens.
    pub ignore_eos: bool,
    /// Strings that end the output (not included in it), even when they span tokens.
    pub stop: Vec<String>,
    /// Pipelined decoding (the default): for greedy decoding without penalties the GPU picks
    /// each token itself and the step after it is submitted before the token is read back, so
    /// the GPU never waits for the host. Sampling (temperature > 0) and penalties need the host's
    /// choice first and always wait. The tokens are the same either way.
    pub pipelined: bool,
    /// Speculative decoding: proposals checked several at a time by one verify step
    /// ([`crate::speculative`]). The tokens are the same as without it. Repetition penalties
    /// turn it off (their state changes with every accepted token): such runs decode plainly.
    pub speculative: Option<Speculation>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 128,
            sampler: SamplerOptions::default(),
            ignore_eos: false,
            stop: Vec::new(),
            pipelined: true,
            speculative: None,
        }
    }
}

/// Why generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
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
    /// Speculative decoding: tokens proposed and confirmed, and the target's decode steps.
    pub drafted_tokens: u32,
    pub accepted_tokens: u32,
    /// accepted / drafted (0 without speculation).
    pub acceptance_rate: f64,
    /// Generated tokens per decode step of the target (1 without speculation).
    pub tokens_per_target_step: f64,
}

/// A generated token as the callback sees it.
pub struct Piece<'a> {
    /// The token id; `None` for a final piece that only flushes held-back text (an incomplete
    /// UTF-8 sequence, the start of a stop string that did not complete).
    pub token: Option<u32>,
    /// New valid UTF-8 text (possibly empty while a character is incomplete; control tokens such
    /// as `<|im_end|>` add none).
    pub text: &'a str,
}

/// A model ready to generate.
pub struct Engine {
    model: Model,
    tokenizer: Tokenizer,
    header: GgufFile,
    /// Tokens that end generation (EOS/EOT and the chat template's turn end).
    end_ids: Vec<u32>,
    /// The chat template, or why the model's template cannot be used.
    chat: std::result::Result<ChatTemplate, String>,
    /// Tokens whose keys and values are in the KV cache, in order from position 0.
    cached: Vec<u32>,
    /// The draft model of speculative decoding, if one is loaded.
    draft: Option<DraftModel>,
    /// The proposal length of each kind of speculation, with the step times it measured.
    adaptive: std::collections::HashMap<Speculation, AdaptiveK>,
}

/// A smaller model with the target's vocabulary that proposes tokens, with its own KV cache.
struct DraftModel {
    model: Model,
    /// Tokens in the draft's KV cache, from position 0.
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
        let (header, tokenizer, model) = load_model(ctx, source, options, progress).await?;
        let mut end_ids = end_of_generation_ids(&header)?;
        let chat = ChatTemplate::from_gguf(&header, &tokenizer).map_err(|e| e.to_string());
        if let Ok(template) = &chat {
            for id in template.turn_end_tokens(&tokenizer) {
                if !end_ids.contains(&id) {
                    end_ids.push(id);
                }
            }
        }
        Ok(Engine { model, tokenizer, header, end_ids, chat, cached: Vec::new(), draft: None, adaptive: Default::default() })
    }

    /// Loads a draft model for speculative decoding ([`Speculation::Draft`]) on the target's
    /// device, with the target's context length. Its vocabulary must be the target's (the same
    /// bytes for every token id): otherwise [`Error::VocabularyMismatch`], and the engine keeps
    /// its previous draft (if any).
    pub async fn load_draft<S: ByteSource>(&mut self, source: &mut S, progress: &mut dyn FnMut(Progress)) -> Result<()> {
        let header = read_model_header(source).await?;
        check_same_vocabulary(&self.tokenizer, &Tokenizer::from_gguf(&header)?)?;
        let ctx = self.model.context().clone();
        let options = LoadOptions { context_length: Some(self.model.context_length), ..Default::default() };
        let (_, _, model) = load_model(ctx, source, &options, progress).await?;
        self.draft = Some(DraftModel { model, cached: Vec::new() });
        self.adaptive.remove(&Speculation::Draft);
        Ok(())
    }

    /// True when a draft model is loaded.
    pub fn has_draft(&self) -> bool {
        self.draft.is_some()
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The model, for direct forward passes (scoring, tests). Running it changes the KV cache
    /// behind the engine's back: call [`Engine::reset`] before generating again.
    pub fn model_mut(&mut self) -> &mut Model {
        self.cached.clear();
        &mut self.model
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The parsed GGUF header (metadata and tensor table).
    pub fn header(&self) -> &GgufFile {
        &self.header
    }

    /// Tokens that end generation (EOS/EOT and the chat template's turn end).
    pub fn end_ids(&self) -> &[u32] {
        &self.end_ids
    }

    /// The ids of `text` (special tokens parsed), with BOS first when the model asks for it and
    /// the text does not already start with it (as rendered chat templates often do).
    pub fn prompt_ids(&self, text: &str) -> Vec<u32> {
        let mut ids = self.tokenizer.encode(text, true);
        if let (true, Some(bos)) = (self.tokenizer.add_bos(), self.tokenizer.bos_id()) {
            if ids.first() != Some(&bos) {
                ids.insert(0, bos);
            }
        }
        ids
    }

    /// The chat template (the model's or the fallback for its architecture).
    pub fn chat_template(&self) -> Result<&ChatTemplate> {
        self.chat.as_ref().map_err(|e| Error::Unsupported(format!("the model's chat template cannot be used: {e}")))
    }

    /// Renders a conversation with the assistant's turn opened: (prompt text, prompt ids).
    pub fn chat_prompt(&self, messages: &[Message]) -> Result<(String, Vec<u32>)> {
        let text = self.chat_template()?.render(messages, true)?;
        let ids = self.prompt_ids(&text);
        Ok((text, ids))
    }

    /// Tokens currently in the KV cache (the conversation so far).
    pub fn cached_tokens(&self) -> &[u32] {
        &self.cached
    }

    /// Forgets the KV cache contents.
    pub fn reset(&mut self) {
        self.cached.clear();
        if let Some(d) = &mut self.draft {
            d.cached.clear();
        }
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
        options.sampler.validate().map_err(Error::BadRequest)?;
        if options.speculative == Some(Speculation::Draft) && self.draft.is_none() {
            return Err(Error::BadRequest("speculation with a draft model needs a draft model loaded".into()));
        }
        let sampler = Sampler::new(options.sampler.clone());
        let k = sampler.candidates_needed();
        // Reuse the longest cached prefix; always run at least the last prompt token for its logits.
        let reuse = common_prefix(&self.cached, prompt).min(prompt.len() - 1);
        self.cached.truncate(reuse);
        let mut stats = GenerateStats { prompt_tokens: prompt.len() as u32, prefilled_tokens: (prompt.len() - reuse) as u32, ..Default::default() };

        let clock = Clock::start();
        let penalties = sampler.penalties(prompt);
        if let Err(e) = self.model.prepare_decode(k, penalties.is_some()) {
            self.cached.clear();
            return Err(e);
        }
        let speculative = options.speculative.filter(|_| penalties.is_none());
        if let Some(kind) = speculative {
            if let Err(e) = self.model.prepare_verify(k) {
                self.cached.clear();
                return Err(e);
            }
            let max = self.model.max_verify_tokens() - 1;
            self.adaptive.entry(kind).or_insert_with(|| AdaptiveK::new(max)).restart();
        }
        let result = self.model.forward_candidates(&prompt[reuse..], reuse as u32, k, penalties.as_ref()).await;
        let candidates = match result {
            Ok(c) => c,
            Err(e) => {
                self.cached.clear();
                return Err(e);
            }
        };
        self.cached.extend_from_slice(&prompt[reuse..]);
        stats.prefill_seconds = clock.seconds();

        let mut decoder = Utf8Assembler::new();
        let mut stop = StopFilter::new(&options.stop);
        let decode_clock = Clock::start();
        let mut finish = FinishReason::Length;
        // Pipelined greedy decoding: the GPU writes its best token where the next step's
        // embedding reads it, so step t+1 is in flight while step t's token is read. A step
        // submitted past the end (EOS, a stop string, max_tokens, an abort) is simply not read:
        // its KV entry is not counted as cached.
        // (With speculation, its plain steps are pipelined the same way.)
        let pipelined = options.pipelined && k == 1 && penalties.is_none();
        let mut in_flight: std::collections::VecDeque<PendingStep> = Default::default();
        let mut spec_stats = SpeculationStats::default();
        // Chosen tokens not yet emitted; the KV entries of all but the last are already written
        // (by a verify step that confirmed them).
        let mut ready: std::collections::VecDeque<u32> = Default::default();
        let Some(first) = sampler.sample_at(&candidates, prompt.len()) else {
            return Err(Error::Gpu(crate::gpu::GpuError::Device("the GPU returned no candidates".into())));
        };
        ready.push_back(first);
        // max_tokens 0: the prompt is prefilled (and cached), nothing is generated.
        while stats.generated_tokens < options.max_tokens {
            let token = ready.pop_front().expect("a chosen token is ready");
            if !options.ignore_eos && self.end_ids.contains(&token) {
                finish = FinishReason::Stop;
                break;
            }
            stats.generated_tokens += 1;
            // Control tokens (<|im_end|>, <eos>, ...) carry no text for the reader.
            let bytes = if self.tokenizer.is_control(token) { &[][..] } else { self.tokenizer.token_bytes(token) };
            let (text, stopped) = stop.push(&decoder.push(bytes));
            let keep_going = on_piece(Piece { token: Some(token), text: &text });
            if stopped {
                finish = FinishReason::Stop;
                break;
            }
            if !keep_going {
                finish = FinishReason::Abort;
                break;
            }
            if stats.generated_tokens >= options.max_tokens || self.cached.len() + 1 >= ctx_len {
                break;
            }
            let pos = self.cached.len() as u32;
            self.cached.push(token);
            if !ready.is_empty() {
                continue;
            }
            spec_stats.target_steps += 1;
            // Proposals never run past the context or past max_tokens.
            let room = (ctx_len - 1 - pos as usize).min((options.max_tokens - stats.generated_tokens) as usize);
            let more = stats.generated_tokens < options.max_tokens.saturating_sub(1);
            let result = match speculative {
                Some(kind) => {
                    let pipeline = pipelined.then_some((&mut in_flight, more));
                    self.speculative_step(kind, &sampler, &mut spec_stats, room, k, &mut ready, pipeline).await
                }
                None => {
                    let candidates = if pipelined {
                        self.pipelined_step(&mut in_flight, token, pos, more).await
                    } else {
                        let penalties = sampler.penalties(&self.cached);
                        self.model.forward_candidates(&[token], pos, k, penalties.as_ref()).await
                    };
                    candidates.and_then(|c| choose(&sampler, &c, pos as usize + 1).map(|t| ready.push_back(t)))
                }
            };
            if let Err(e) = result {
                self.cached.clear();
                return Err(e);
            }
        }
        stats.drafted_tokens = spec_stats.drafted;
        stats.accepted_tokens = spec_stats.accepted;
        stats.acceptance_rate = spec_stats.acceptance_rate();
        stats.tokens_per_target_step = if spec_stats.target_steps > 0 {
            stats.generated_tokens.saturating_sub(1) as f64 / spec_stats.target_steps as f64
        } else {
            1.0
        };
        if finish != FinishReason::Stop || !stop.stopped {
            let (rest, _) = stop.push(&decoder.finish());
            let rest = rest + &stop.finish();
            if !rest.is_empty() {
                on_piece(Piece { token: None, text: &rest });
            }
        }
        stats.decode_seconds = decode_clock.seconds();
        stats.prefill_tokens_per_s = rate(stats.prefilled_tokens, stats.prefill_seconds);
        // The first generated token came out of the prefill step.
        stats.decode_tokens_per_s = rate(stats.generated_tokens.saturating_sub(1), stats.decode_seconds);
        Ok((stats, finish))
    }
}

impl Engine {
    /// One decode step with speculation: the last emitted token (the last of `self.cached`, its
    /// KV entry not written yet) plus up to `room - 1` proposed tokens run in one verify step;
    /// pushes the target's choices to `ready`: the confirmed proposals, then the target's own
    /// next token. Without a proposal it is a plain step, pipelined when `pipeline` gives the
    /// steps in flight (and whether more tokens may follow).
    #[allow(clippy::too_many_arguments)]
    async fn speculative_step(
        &mut self,
        kind: Speculation,
        sampler: &Sampler,
        stats: &mut SpeculationStats,
        room: usize,
        k: u32,
        ready: &mut std::collections::VecDeque<u32>,
        pipeline: Option<(&mut std::collections::VecDeque<PendingStep>, bool)>,
    ) -> Result<()> {
        let clock = Clock::start();
        let pos = self.cached.len() - 1;
        let adaptive = self.adaptive.get_mut(&kind).expect("set up by generate");
        let want = (adaptive.next_k() as usize).min(room.saturating_sub(1));
        let draft = match (want, kind) {
            (0, _) => Vec::new(),
            (_, Speculation::PromptLookup) => prompt_lookup(&self.cached, want, 1),
            (_, Speculation::Draft) => self.draft_tokens(want).await?,
        };
        let mut tokens = vec![self.cached[pos]];
        tokens.extend_from_slice(&draft);
        let rows = match pipeline {
            Some((in_flight, more)) if draft.is_empty() => {
                // The step after this one is submitted ahead only when it will be plain too.
                let ahead = more && self.adaptive[&kind].pausing();
                vec![self.pipelined_step(in_flight, tokens[0], pos as u32, ahead).await?]
            }
            pipeline => {
                // A step still in flight ran the GPU's own pick at pos: the same token and KV
                // entry this step writes again. It is not read.
                if let Some((in_flight, _)) = pipeline {
                    in_flight.clear();
                }
                if draft.is_empty() {
                    vec![self.model.forward_candidates(&tokens, pos as u32, k, None).await?]
                } else {
                    self.model.verify(&tokens, pos as u32, k).await?
                }
            }
        };
        let mut choices = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let choice = choose(sampler, row, pos + 1 + i)?;
            choices.push(choice);
            if draft.get(i) != Some(&choice) {
                break;
            }
        }
        let accepted = accepted_prefix(&draft, &choices) as u32;
        let adaptive = self.adaptive.get_mut(&kind).expect("set up by generate");
        adaptive.record(draft.len() as u32, accepted, clock.seconds());
        stats.drafted += draft.len() as u32;
        stats.accepted += accepted;
        ready.extend(choices);
        Ok(())
    }

    /// Up to `k` tokens the draft model proposes (greedily) after `self.cached`; the draft's KV
    /// cache keeps what it shares with `self.cached` and runs the rest.
    async fn draft_tokens(&mut self, k: usize) -> Result<Vec<u32>> {
        let vocab = self.model.config.vocab_size;
        let history = &self.cached;
        let Some(d) = self.draft.as_mut() else { return Ok(Vec::new()) };
        let result = async {
            let reuse = common_prefix(&d.cached, history).min(history.len() - 1);
            d.cached.truncate(reuse);
            let mut candidates = d.model.forward_candidates(&history[reuse..], reuse as u32, 1, None).await?;
            d.cached.extend_from_slice(&history[reuse..]);
            let mut out = Vec::with_capacity(k);
            while let Some(&(t, _)) = candidates.first() {
                if t >= vocab {
                    break;
                }
                out.push(t);
                if out.len() == k || d.cached.len() + 1 >= d.model.context_length as usize {
                    break;
                }
                let pos = d.cached.len() as u32;
                d.cached.push(t);
                candidates = d.model.forward_candidates(&[t], pos, 1, None).await?;
            }
            Ok(out)
        }
        .await;
        if result.is_err() {
            d.cached.clear();
        }
        result
    }

    /// One step of pipelined greedy decoding: `token` (at `pos`) was just accepted. Makes sure
    /// the step that consumes it is in flight (it is, when the previous call submitted it with
    /// the GPU's own pick), submits the step after it when `more` tokens may follow, and reads
    /// the candidates that follow `token`.
    async fn pipelined_step(&mut self, in_flight: &mut std::collections::VecDeque<PendingStep>, token: u32, pos: u32, more: bool) -> Result<Vec<(u32, f32)>> {
        if in_flight.is_empty() {
            in_flight.push_back(self.model.submit_decode(Some(token), pos, 1)?);
        }
        if more && pos + 2 < self.model.context_length {
            in_flight.push_back(self.model.submit_decode(None, pos + 1, 1)?);
        }
        let pending = in_flight.pop_front().expect("a step is in flight");
        self.model.read_step(pending).await
    }
}

/// Holds back output that may be the start of a stop string; cuts the output at the first one.
struct StopFilter<'a> {
    stops: &'a [String],
    pending: String,
    stopped: bool,
}

impl<'a> StopFilter<'a> {
    fn new(stops: &'a [String]) -> Self {
        StopFilter { stops, pending: String::new(), stopped: false }
    }

    /// Adds new text; returns the text that can be shown now and whether a stop string appeared
    /// (everything from it on is dropped).
    fn push(&mut self, text: &str) -> (String, bool) {
        if self.stopped {
            return (String::new(), true);
        }
        self.pending.push_str(text);
        let first_stop = self.stops.iter().filter(|s| !s.is_empty()).filter_map(|s| self.pending.find(s.as_str())).min();
        if let Some(at) = first_stop {
            self.stopped = true;
            let out = self.pending[..at].to_string();
            self.pending.clear();
            return (out, true);
        }
        // The longest tail of the pending text that a stop string starts with stays pending.
        let mut hold = 0;
        for s in self.stops {
            for (k, _) in s.char_indices().skip(1) {
                if k > hold && self.pending.ends_with(&s[..k]) {
                    hold = k;
                }
            }
        }
        let cut = self.pending.len() - hold;
        let out = self.pending[..cut].to_string();
        self.pending.drain(..cut);
        (out, false)
    }

    fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

/// The sampler's choice at sequence `position` from the GPU's candidates.
fn choose(sampler: &Sampler, candidates: &[(u32, f32)], position: usize) -> Result<u32> {
    sampler.sample_at(candidates, position).ok_or_else(|| Error::Gpu(crate::gpu::GpuError::Device("the GPU returned no candidates".into())))
}

/// Reads a model's header, checks that it can run, allocates its GPU memory and streams its
/// weights: (header, tokenizer, model).
async fn load_model<S: ByteSource>(
    ctx: Arc<Context>,
    source: &mut S,
    options: &LoadOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<(GgufFile, Tokenizer, Model)> {
    progress(Progress { phase: Phase::Header, done: 0, total: source.len() });
    let header = read_model_header(source).await?;
    // The architecture first: it is the most basic reason a file cannot run.
    // (Model::new then checks that every buffer fits the device before any weight is fetched.)
    crate::model::Config::from_gguf(&header)?;
    let tokenizer = Tokenizer::from_gguf(&header)?;
    // Allocation failures (the model or its KV cache does not fit the GPU) are reported as a
    // device-limit error instead of poisoning the device.
    let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let model = Model::new(ctx.clone(), &header, options);
    let out_of_memory = scope.pop().await;
    let mut model = model?;
    if let Some(e) = out_of_memory {
        return Err(Error::Gpu(crate::gpu::GpuError::Limit(format!(
            "the model needs {} MiB of GPU memory (weights and a {}-token KV cache) and the device could not provide it \
             ({e}); try a smaller context length or model",
            model.gpu_bytes() >> 20,
            model.context_length
        ))));
    }
    stream_weights(source, &mut model, progress).await?;
    if options.tune != crate::model::Tune::Off {
        model.tune_report = model.tune(&options.tune).await?;
        model.prepare_decode(1, false)?;
    }
    progress(Progress { phase: Phase::Ready, done: source.len(), total: source.len() });
    Ok((header, tokenizer, model))
}

/// Checks that a draft model's tokenizer gives every token id the same bytes as the target's.
fn check_same_vocabulary(target: &Tokenizer, draft: &Tokenizer) -> Result<()> {
    if target.vocab_size() != draft.vocab_size() {
        return Err(Error::VocabularyMismatch(format!(
            "the draft model's vocabulary has {} tokens, the target's {}",
            draft.vocab_size(),
            target.vocab_size()
        )));
    }
    if let Some(id) = (0..target.vocab_size() as u32).find(|&id| target.token_bytes(id) != draft.token_bytes(id)) {
        return Err(Error::VocabularyMismatch(format!(
            "token {id} is {} in the draft model and {} in the target",
            crate::error::quote(&String::from_utf8_lossy(draft.token_bytes(id))),
            crate::error::quote(&String::from_utf8_lossy(target.token_bytes(id)))
        )));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::StopFilter;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut f = StopFilter::new(&stops);
        let mut out = String::new();
        for p in pieces {
            let (text, stopped) = f.push(p);
            out += &text;
            if stopped {
                return (out, true);
            }
        }
        out += &f.finish();
        (out, false)
    }

    #[test]
    fn stop_strings_across_token_boundaries() {
        assert_eq!(run(&["END"], &["abc E", "N", "D more"]), ("abc ".into(), true));
        assert_eq!(run(&["END"], &["abc E", "N", "x"]), ("abc ENx".into(), false));
        assert_eq!(run(&["\n\n", "User:"], &["Hi", " there", "\nUs", "er: x"]), ("Hi there\n".into(), true));
        assert_eq!(run(&["é!"], &["caf", "é", "!"]), ("caf".into(), true));
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
    }
}
