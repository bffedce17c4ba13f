//! The wasm-bindgen boundary (compiled only for wasm32): [`WasmEngine`] loads a model from URLs
//! or a `Blob` with the streaming loaders of `loader::web`, generates with the shared
//! [`Engine`], and reports errors as JS `Error`s whose `name` is the typed error the JS wrapper
//! throws (`ModelFormatError`, `NetworkError`, ...). The JS wrapper (pkg-template/) adds the
//! worker proxy, the async iterator and the call queue; this side is deliberately small.

mod alloc;

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use js_sys::{Function, Promise};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::future_to_promise;
use web_sys::{AbortSignal, Blob};

use crate::engine::{Clock, Engine, FinishReason, GenerateOptions, Piece};
use crate::error::Error;
use crate::gpu::variant::{KernelChoices, MatrixVariant};
use crate::gpu::{Context, GpuError};
use crate::loader::web::{Abort, BlobSource, UrlSource};
use crate::loader::web_cache::{CacheOptions, CacheReport, CachedSource, ChunkStore, SharedReport};
use crate::loader::{ByteSource, Phase, Progress};
use crate::model::{KvType, LoadOptions, Tune};
use crate::sampler::SamplerOptions;

/// The JS error class name for an engine error (`aborted`: the caller's signal fired).
fn error_name(e: &Error, aborted: bool) -> &'static str {
    if aborted {
        return "AbortError";
    }
    match e {
        Error::Format(_) => "ModelFormatError",
        Error::Unsupported(_) | Error::Gpu(GpuError::UnsupportedType { .. } | GpuError::Shape(_)) => "UnsupportedModelError",
        Error::Gpu(GpuError::Limit(_)) => "DeviceLimitError",
        Error::Gpu(GpuError::NoAdapter(_) | GpuError::NoDevice(_)) => "WebGPUUnavailableError",
        Error::Gpu(GpuError::Device(_)) => "GPUDeviceError",
        Error::Io(_) => "NetworkError",
        Error::BadRequest(_) => "InvalidRequestError",
        Error::Integrity(_) => "IntegrityError",
        Error::VocabularyMismatch(_) => "VocabularyMismatchError",
    }
}

/// What the user can do about an error, appended to its message.
fn error_hint(name: &str) -> &'static str {
    match name {
        "ModelFormatError" => " (the file is not a valid GGUF model, or it is truncated: check the URL or download it again)",
        "UnsupportedModelError" => " (this GGUF is valid but ferrolm cannot run it yet: try a llama-architecture model such as SmolLM2)",
        "DeviceLimitError" => " (this GPU's WebGPU limits are too small for the model: try a smaller model or a shorter contextLength)",
        "WebGPUUnavailableError" => " (WebGPU is unavailable: use a recent Chrome/Edge, or Firefox/Safari with WebGPU enabled, on a machine with a supported GPU)",
        _ => "",
    }
}

fn to_js_error(e: &Error, aborted: bool) -> JsValue {
    let name = error_name(e, aborted);
    let message = if aborted { "the operation was aborted".to_string() } else { format!("{e}{}", error_hint(name)) };
    let err = js_sys::Error::new(&message);
    err.set_name(name);
    err.into()
}

fn bad_request(message: String) -> JsValue {
    to_js_error(&Error::BadRequest(message), false)
}

/// Serialises to a plain JS object (maps as objects, u64 as numbers).
fn to_js<T: Serialize>(value: &T) -> JsValue {
    let serializer = serde_wasm_bindgen::Serializer::new().serialize_maps_as_objects(true);
    value.serialize(&serializer).unwrap_or(JsValue::NULL)
}

/// The size of the wasm linear memory in bytes (it only grows).
fn wasm_memory_bytes() -> f64 {
    wasm_bindgen::memory().unchecked_into::<js_sys::WebAssembly::Memory>().buffer().unchecked_into::<js_sys::ArrayBuffer>().byte_length() as f64
}

/// Options of `load` (camelCase in JS; unknown keys are ignored). The JS wrapper opens the
/// cache's storage (`cache` option) and hands it over separately.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct JsLoadOptions {
    context_length: Option<u32>,
    max_batch: Option<u32>,
    /// "f16" (default) or "f32": how the KV cache stores keys and values.
    kv_type: Option<KvType>,
    /// A matrix-kernel variant for every shape instead of the autotuned ones (like the CLI's
    /// --kernel), e.g. "t1r4-uniform".
    kernel_variant: Option<String>,
    /// Autotune the matrix kernels at load (default true).
    tune: bool,
    /// Choices cached by earlier loads: `{ adapter key: { shape: variant } }` (the wrapper keeps it
    /// in localStorage).
    kernel_cache: Option<serde_json::Value>,
    /// Load only from the cache, with no request.
    offline: bool,
    /// Expected sha256 of the whole file (hex).
    sha256: Option<String>,
    /// Range requests in flight while downloading into the cache.
    parallel: u32,
    /// Retries of a failed request (network error, 5xx, 429).
    retries: u32,
    // `draft` (a URL, URL array, File or Blob of a draft model) is read from the options object
    // as it is: see `draft_source`.
}

impl Default for JsLoadOptions {
    fn default() -> Self {
        JsLoadOptions {
            context_length: None,
            max_batch: None,
            kv_type: None,
            kernel_variant: None,
            tune: true,
            kernel_cache: None,
            offline: false,
            sha256: None,
            parallel: 4,
            retries: 3,
        }
    }
}

/// A load progress report: the loader's [`Progress`] and what the cache did.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LoadReport<'a> {
    phase: Phase,
    done: u64,
    total: u64,
    /// File bytes read from the cache / fetched from the network so far.
    from_cache: u64,
    from_network: u64,
    /// "writing" | "hit" | "skipped: <why>".
    cache: &'a str,
}

/// A source that counts the bytes it reads as network bytes (a URL source without the cache).
struct Counted<S> {
    inner: S,
    report: SharedReport,
}

impl<S: ByteSource> ByteSource for Counted<S> {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn part_lens(&self) -> Vec<u64> {
        self.inner.part_lens()
    }
    async fn read(&mut self, offset: u64, len: u64) -> crate::error::Result<Vec<u8>> {
        let bytes = self.inner.read(offset, len).await?;
        self.report.borrow_mut().from_network += len;
        Ok(bytes)
    }
}

/// Options of `generate` (camelCase in JS); see [`SamplerOptions`] for their meaning.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct JsGenerateOptions {
    max_tokens: u32,
    temperature: f32,
    top_k: u32,
    top_p: f32,
    min_p: f32,
    repetition_penalty: f32,
    presence_penalty: f32,
    frequency_penalty: f32,
    penalty_window: u32,
    seed: f64,
    ignore_eos: bool,
    /// One stop string or several.
    stop: StopStrings,
    /// "prompt-lookup" or "draft" (needs `load(url, { draft })`): speculative decoding.
    speculative: Option<crate::speculative::Speculation>,
}

#[derive(Deserialize, Default)]
#[serde(untagged)]
enum StopStrings {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl Default for JsGenerateOptions {
    fn default() -> Self {
        let d = GenerateOptions::default();
        let s = d.sampler;
        JsGenerateOptions {
            max_tokens: d.max_tokens,
            temperature: s.temperature,
            top_k: s.top_k,
            top_p: s.top_p,
            min_p: s.min_p,
            repetition_penalty: s.repeat_penalty,
            presence_penalty: s.presence_penalty,
            frequency_penalty: s.frequency_penalty,
            penalty_window: s.penalty_window,
            seed: s.seed as f64,
            ignore_eos: d.ignore_eos,
            stop: StopStrings::None,
            speculative: None,
        }
    }
}

impl JsGenerateOptions {
    fn into_options(self) -> GenerateOptions {
        GenerateOptions {
            max_tokens: self.max_tokens,
            ignore_eos: self.ignore_eos,
            sampler: SamplerOptions {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                min_p: self.min_p,
                repeat_penalty: self.repetition_penalty,
                presence_penalty: self.presence_penalty,
                frequency_penalty: self.frequency_penalty,
                penalty_window: self.penalty_window,
                seed: self.seed as u64,
            },
            stop: match self.stop {
                StopStrings::None => Vec::new(),
                StopStrings::One(s) => vec![s],
                StopStrings::Many(v) => v,
            },
            speculative: self.speculative,
            ..Default::default()
        }
    }
}

/// `engine.info`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Info {
    architecture: String,
    context_length: u32,
    trained_context_length: u32,
    /// RoPE frequency scaling in use: none, linear, yarn, longrope-short, longrope-long.
    rope_scaling: &'static str,
    vocab_size: u32,
    layers: u32,
    embedding_length: u32,
    heads: u32,
    kv_heads: u32,
    quant_types: BTreeMap<&'static str, u32>,
    file_bytes: u64,
    parts: usize,
    gpu_bytes: u64,
    kv_type: KvType,
    kv_bytes: u64,
    load_seconds: f64,
    adapter: AdapterInfo,
    kernels: KernelsInfo,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AdapterInfo {
    name: String,
    backend: String,
    limits: JsDeviceLimits,
}

/// `info.kernels`: the matrix-kernel variant per shape and what the autotuner did.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KernelsInfo {
    /// What the choices are cached under (adapter, driver, ferrolm version).
    adapter_key: String,
    /// `{ "matvec Q4_1 576x1536 t1": "t1r4-uniform", ... }`.
    choices: serde_json::Value,
    /// The variant forced with `kernelVariant`, if any.
    forced: Option<String>,
    tune: crate::model::TuneReport,
}

/// The adapter's [`crate::gpu::DeviceLimits`] with camelCase keys, like the rest of the JS API.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsDeviceLimits {
    max_storage_binding: u64,
    max_buffer_size: u64,
    max_workgroups_per_dim: u32,
    uniform_align: u32,
    max_invocations_per_workgroup: u32,
    max_workgroup_storage: u32,
    shader_f16: bool,
    subgroups: bool,
}

impl From<&crate::gpu::DeviceLimits> for JsDeviceLimits {
    fn from(l: &crate::gpu::DeviceLimits) -> Self {
        JsDeviceLimits {
            max_storage_binding: l.max_storage_binding,
            max_buffer_size: l.max_buffer_size,
            max_workgroups_per_dim: l.max_workgroups_per_dim,
            uniform_align: l.uniform_align,
            max_invocations_per_workgroup: l.max_invocations_per_workgroup,
            max_workgroup_storage: l.max_workgroup_storage,
            shader_f16: l.shader_f16,
            subgroups: l.subgroups,
        }
    }
}

/// `engine.stats`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Stats {
    prompt_tokens: u32,
    prefilled_tokens: u32,
    generated_tokens: u32,
    prefill_seconds: f64,
    decode_seconds: f64,
    prefill_tokens_per_s: f64,
    decode_tokens_per_s: f64,
    /// Speculative decoding: tokens proposed, confirmed, their ratio, and generated tokens per
    /// decode step of the model.
    drafted_tokens: u32,
    accepted_tokens: u32,
    acceptance_rate: f64,
    tokens_per_target_step: f64,
    finish_reason: FinishReason,
}

thread_local! {
    /// The JS callbacks told of a lost device, by engine: wgpu's device-lost callback must be
    /// `Send`, so it carries the engine's key and finds the (thread-bound) JS function here.
    static LOST_HOOKS: RefCell<BTreeMap<u32, Function>> = const { RefCell::new(BTreeMap::new()) };
    static NEXT_LOST_HOOK: std::cell::Cell<u32> = const { std::cell::Cell::new(1) };
    /// Set by [`test_arm_trap`]: the next generated piece executes a wasm trap.
    static TRAP_ARMED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Calls `on_lost(reason, message)` once when `ctx`'s device is lost (reason "destroyed" or
/// "unknown", as the browser's `GPUDeviceLostInfo`); returns the key that [`forget_lost_hook`]
/// takes (an intended destroy, on dispose, is not reported).
fn watch_device_loss(ctx: &Context, on_lost: Function) -> u32 {
    let key = NEXT_LOST_HOOK.with(|n| {
        let k = n.get();
        n.set(k + 1);
        k
    });
    LOST_HOOKS.with(|h| h.borrow_mut().insert(key, on_lost));
    ctx.device.set_device_lost_callback(move |reason, message| {
        let reason = match reason {
            wgpu::DeviceLostReason::Destroyed => "destroyed",
            _ => "unknown",
        };
        if let Some(f) = LOST_HOOKS.with(|h| h.borrow_mut().remove(&key)) {
            let _ = f.call2(&JsValue::NULL, &JsValue::from_str(reason), &JsValue::from_str(&message));
        }
    });
    key
}

fn forget_lost_hook(key: u32) {
    LOST_HOOKS.with(|h| h.borrow_mut().remove(&key));
}

/// Test support, not part of the package's API (index.js does not export it): arms a wasm trap
/// (`unreachable`) that fires inside the next generated piece of this instance, the way a Rust
/// panic (panic = abort) or a bug in the wasm would, mid-generation, inside an async task. The
/// browser tests use it to check that a trapped instance becomes `EngineCrashedError`.
#[wasm_bindgen(js_name = __testArmTrap)]
pub fn test_arm_trap() {
    TRAP_ARMED.with(|t| t.set(true));
}

/// A loaded model in this thread, driven by the JS wrapper.
#[wasm_bindgen]
pub struct WasmEngine {
    engine: Rc<RefCell<Option<Engine>>>,
    info: JsValue,
    /// GPU bytes the engine holds: fixed at load (everything is allocated then), 0 once disposed;
    /// kept here so that `gpuBytes` answers while a generation holds the engine.
    gpu_bytes: std::cell::Cell<f64>,
    /// The key of the device-lost callback (0: none).
    lost_hook: u32,
}

/// The `draft` load option, as given: a URL, an array of shard URLs, a File or a Blob of a draft
/// model for speculative decoding (same vocabulary; not cached). `None` when absent; any other
/// kind of value is refused before anything is fetched.
fn draft_source(options: &JsValue) -> Result<Option<JsValue>, Error> {
    if !options.is_object() {
        return Ok(None);
    }
    let Some(draft) = js_sys::Reflect::get(options, &JsValue::from_str("draft")).ok().filter(|d| !d.is_undefined() && !d.is_null()) else {
        return Ok(None);
    };
    if draft.as_string().is_some() || js_sys::Array::is_array(&draft) || draft.dyn_ref::<Blob>().is_some() {
        Ok(Some(draft))
    } else {
        Err(Error::BadRequest("the draft option must be a URL string, an array of URL strings, a File or a Blob".into()))
    }
}

/// Opens the byte source `source` names: a URL string, an array of URL strings (raw byte chunks
/// of one file, in order), or a `Blob`/`File`. URLs go through the model cache when `store` is
/// given (or `offline` is set).
async fn open_source(
    source: &JsValue,
    store: Option<ChunkStore>,
    options: &JsLoadOptions,
    abort: &Abort,
    report: &SharedReport,
) -> Result<(Box<dyn AnySource>, usize), Error> {
    if let Some(blob) = source.dyn_ref::<Blob>() {
        report.borrow_mut().status = "skipped: a File or Blob is local already".into();
        return Ok((Box::new(BlobSource::new(blob.clone(), abort.clone())), 1));
    }
    let urls: Vec<String> = if let Some(url) = source.as_string() {
        vec![url]
    } else if js_sys::Array::is_array(source) {
        let array: &js_sys::Array = source.unchecked_ref();
        array
            .iter()
            .map(|v| v.as_string().ok_or_else(|| Error::BadRequest("every element of the model URL array must be a string".into())))
            .collect::<Result<_, _>>()?
    } else {
        return Err(Error::BadRequest("the model source must be a URL string, an array of URL strings, a File or a Blob".into()));
    };
    let n = urls.len();
    if store.is_none() && !options.offline {
        report.borrow_mut().status = "skipped: disabled (cache: false)".into();
        let inner = UrlSource::open(&urls, abort.clone()).await?;
        return Ok((Box::new(Counted { inner, report: report.clone() }), n));
    }
    let cache_options = CacheOptions { offline: options.offline, sha256: options.sha256.clone(), parallel: options.parallel, retries: options.retries };
    Ok((Box::new(CachedSource::open(&urls, store, cache_options, abort.clone(), report.clone()).await?), n))
}

/// The URL and Blob sources behind one type.
trait AnySource {
    fn len(&self) -> u64;
    fn load<'a>(
        &'a mut self,
        ctx: Arc<Context>,
        options: &'a LoadOptions,
        progress: &'a mut dyn FnMut(Progress),
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Engine, Error>> + 'a>>;
    /// Loads this source as the draft model of `engine` (speculative decoding).
    fn load_draft<'a>(
        &'a mut self,
        engine: &'a mut Engine,
        progress: &'a mut dyn FnMut(Progress),
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Error>> + 'a>>;
}

impl<S: ByteSource + 'static> AnySource for S {
    fn len(&self) -> u64 {
        ByteSource::len(self)
    }
    fn load<'a>(
        &'a mut self,
        ctx: Arc<Context>,
        options: &'a LoadOptions,
        progress: &'a mut dyn FnMut(Progress),
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Engine, Error>> + 'a>> {
        Box::pin(Engine::load(ctx, self, options, progress))
    }
    fn load_draft<'a>(
        &'a mut self,
        engine: &'a mut Engine,
        progress: &'a mut dyn FnMut(Progress),
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Error>> + 'a>> {
        Box::pin(engine.load_draft(self, progress))
    }
}

#[wasm_bindgen]
impl WasmEngine {
    /// Loads a model: `source` is a URL, an array of URLs or a Blob; `options` is
    /// `{ contextLength?, maxBatch?, offline?, sha256?, parallel?, retries? }`;
    /// `on_progress({ phase, done, total, fromCache, fromNetwork, cache })` is called with the
    /// phases header, weights, shaders, ready; `signal` aborts loading between chunks; `store`
    /// (pkg-template/cache.js) is the model's cache entry, absent when not caching;
    /// `on_lost(reason, message)` is called once if the GPU device is lost (not on dispose).
    pub async fn load(
        source: JsValue,
        options: JsValue,
        on_progress: Option<Function>,
        signal: Option<AbortSignal>,
        store: Option<ChunkStore>,
        on_lost: Option<Function>,
    ) -> Result<WasmEngine, JsValue> {
        let abort = Abort(signal);
        let mut lost_hook = 0;
        let result = Self::load_inner(&source, options, on_progress, &abort, store, on_lost, &mut lost_hook).await;
        result.map_err(|e| {
            forget_lost_hook(lost_hook);
            to_js_error(&e, abort.aborted())
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn load_inner(
        source: &JsValue,
        options: JsValue,
        on_progress: Option<Function>,
        abort: &Abort,
        store: Option<ChunkStore>,
        on_lost: Option<Function>,
        lost_hook: &mut u32,
    ) -> Result<WasmEngine, Error> {
        let clock = Clock::start();
        let draft = draft_source(&options)?;
        let options: JsLoadOptions = if options.is_undefined() || options.is_null() {
            JsLoadOptions::default()
        } else {
            serde_wasm_bindgen::from_value(options).map_err(|e| Error::BadRequest(format!("bad load options: {e}")))?
        };
        let cache_report: SharedReport = Rc::new(RefCell::new(CacheReport::default()));
        let mut load_options = LoadOptions { context_length: options.context_length, kv_type: options.kv_type.unwrap_or_default(), ..Default::default() };
        if let Some(b) = options.max_batch {
            load_options.max_batch = b.max(1);
        }
        let report = |p: Progress| {
            if let Some(f) = &on_progress {
                let c = cache_report.borrow();
                let r = LoadReport { phase: p.phase, done: p.done, total: p.total, from_cache: c.from_cache, from_network: c.from_network, cache: &c.status };
                let _ = f.call1(&JsValue::NULL, &to_js(&r));
            }
        };
        report(Progress { phase: Phase::Header, done: 0, total: 0 });
        let (mut source, parts) = open_source(source, store, &options, abort, &cache_report).await?;
        abort.check()?;
        let ctx = Context::new().await?;
        if let Some(f) = on_lost {
            *lost_hook = watch_device_loss(&ctx, f);
        }
        if let Some(name) = &options.kernel_variant {
            ctx.force_variant(Some(MatrixVariant::parse(name).map_err(Error::BadRequest)?));
        }
        if options.tune {
            let cached = options.kernel_cache.as_ref().and_then(|all| all.get(ctx.adapter_key())).map(KernelChoices::from_json).unwrap_or_default();
            load_options.tune = Tune::Auto { cached };
        }
        // The engine shares the context through an Arc (natively across threads); in the
        // browser everything stays on one thread.
        #[allow(clippy::arc_with_non_send_sync)]
        let ctx = Arc::new(ctx);
        let mut forward = |p: Progress| {
            // The engine says Ready after the weights; the warm-up below comes first.
            if p.phase != Phase::Ready {
                report(p)
            }
        };
        let mut engine = source.load(ctx.clone(), &load_options, &mut forward).await?;
        abort.check()?;
        if let Some(draft) = draft {
            let (mut draft, _) = open_source(&draft, None, &JsLoadOptions::default(), abort, &cache_report)
                .await
                .map_err(|e| match e {
                    Error::BadRequest(m) => Error::BadRequest(format!("the draft model: {m}")),
                    e => e,
                })?;
            draft.load_draft(&mut engine, &mut |_| {}).await?;
            abort.check()?;
        }

        // Warm-up: one decode step compiles the pipelines of a generation step.
        report(Progress { phase: Phase::Shaders, done: 0, total: 1 });
        let first = engine.tokenizer().bos_id().unwrap_or(0);
        engine.model_mut().forward_top_k(&[first], 0, 1).await?;
        engine.reset();
        let file_bytes = source.len();
        report(Progress { phase: Phase::Ready, done: file_bytes, total: file_bytes });

        let c = &engine.model().config;
        let mut quant_types = BTreeMap::new();
        for t in &engine.header().tensors {
            *quant_types.entry(t.ty.name()).or_insert(0) += 1;
        }
        let info = Info {
            architecture: c.arch_name.clone(),
            context_length: engine.model().context_length,
            trained_context_length: c.ctx_train,
            rope_scaling: c.rope_scaling.variant(engine.model().context_length).name(),
            vocab_size: c.vocab_size,
            layers: c.n_layers,
            embedding_length: c.d_model,
            heads: c.n_heads,
            kv_heads: c.n_kv_heads,
            quant_types,
            file_bytes,
            parts,
            gpu_bytes: engine.model().gpu_bytes(),
            kv_type: engine.model().kv_type(),
            kv_bytes: engine.model().kv_bytes(),
            load_seconds: clock.seconds(),
            adapter: AdapterInfo {
                name: ctx.adapter_name.clone(),
                backend: ctx.backend.clone(),
                limits: (&ctx.limits).into(),
            },
            kernels: KernelsInfo {
                adapter_key: ctx.adapter_key(),
                choices: ctx.kernel_choices().to_json(),
                forced: ctx.kernel_choices().forced.map(|v| v.to_string()),
                tune: engine.model().tune_report.clone(),
            },
        };
        let gpu_bytes = std::cell::Cell::new(engine.model().gpu_bytes() as f64);
        Ok(WasmEngine { engine: Rc::new(RefCell::new(Some(engine))), info: to_js(&info), gpu_bytes, lost_hook: *lost_hook })
    }

    /// `{ architecture, contextLength, quantTypes, adapter: { name, limits, ... }, ... }`.
    #[wasm_bindgen(getter)]
    pub fn info(&self) -> JsValue {
        self.info.clone()
    }

    /// Token ids of `text` (special tokens parsed, no BOS).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, JsValue> {
        let guard = self.engine.try_borrow().map_err(|_| bad_request("the engine is busy generating".into()))?;
        let engine = guard.as_ref().ok_or_else(|| bad_request("the engine was disposed".into()))?;
        Ok(engine.tokenizer().encode(text, true))
    }

    /// Text of token ids (control tokens included as their text).
    pub fn detokenize(&self, ids: Vec<u32>) -> Result<String, JsValue> {
        let guard = self.engine.try_borrow().map_err(|_| bad_request("the engine is busy generating".into()))?;
        let engine = guard.as_ref().ok_or_else(|| bad_request("the engine was disposed".into()))?;
        Ok(engine.tokenizer().decode(&ids))
    }

    /// Generates from `prompt` (a string, tokenized with BOS when the model asks for it, or an
    /// array of token ids). Calls `on_piece(text, token)` for every token; a falsy return stops.
    /// Resolves to the run's stats (`finishReason` "stop" | "length" | "abort"). Rejects with a
    /// clear error when another generation is running: the JS wrapper queues calls.
    #[allow(clippy::await_holding_refcell_ref)]
    pub fn generate(&self, prompt: JsValue, options: JsValue, on_piece: Function) -> Promise {
        let cell = self.engine.clone();
        future_to_promise(async move {
            let options: JsGenerateOptions = if options.is_undefined() || options.is_null() {
                JsGenerateOptions::default()
            } else {
                serde_wasm_bindgen::from_value(options).map_err(|e| bad_request(format!("bad generate options: {e}")))?
            };
            if !(options.temperature >= 0.0 && options.temperature.is_finite()) {
                return Err(bad_request("temperature must be a finite number >= 0".into()));
            }
            if !(options.seed >= 0.0 && options.seed.fract() == 0.0) {
                return Err(bad_request("seed must be a non-negative integer".into()));
            }
            // Held across the awaits on purpose: every other call only try-borrows, so a call
            // made while this generation runs gets a clear "busy" error, never a panic.
            let mut guard = cell
                .try_borrow_mut()
                .map_err(|_| bad_request("another generation is running on this engine: await it (or abort it) first".into()))?;
            let engine = guard.as_mut().ok_or_else(|| bad_request("the engine was disposed".into()))?;
            let ids = if let Some(text) = prompt.as_string() {
                engine.prompt_ids(&text)
            } else if js_sys::Array::is_array(&prompt) || prompt.is_instance_of::<js_sys::Uint32Array>() {
                serde_wasm_bindgen::from_value::<Vec<u32>>(prompt).map_err(|e| bad_request(format!("bad prompt token ids: {e}")))?
            } else {
                return Err(bad_request("the prompt must be a string or an array of token ids".into()));
            };
            let generate = options.into_options();
            let mut callback_error = None;
            let mut on = |piece: Piece| -> bool {
                if TRAP_ARMED.with(|t| t.replace(false)) {
                    core::arch::wasm32::unreachable();
                }
                match on_piece.call2(&JsValue::NULL, &JsValue::from_str(piece.text), &piece.token.map_or(JsValue::from(-1), JsValue::from)) {
                    Ok(v) => v.is_truthy(),
                    Err(e) => {
                        callback_error = Some(e);
                        false
                    }
                }
            };
            let (stats, finish) = engine.generate(&ids, &generate, &mut on).await.map_err(|e| to_js_error(&e, false))?;
            if let Some(e) = callback_error {
                return Err(e);
            }
            Ok(to_js(&Stats {
                prompt_tokens: stats.prompt_tokens,
                prefilled_tokens: stats.prefilled_tokens,
                generated_tokens: stats.generated_tokens,
                prefill_seconds: stats.prefill_seconds,
                decode_seconds: stats.decode_seconds,
                prefill_tokens_per_s: stats.prefill_tokens_per_s,
                decode_tokens_per_s: stats.decode_tokens_per_s,
                drafted_tokens: stats.drafted_tokens,
                accepted_tokens: stats.accepted_tokens,
                acceptance_rate: stats.acceptance_rate,
                tokens_per_target_step: stats.tokens_per_target_step,
                finish_reason: finish,
            }))
        })
    }

    /// Renders chat `messages` ([{role, content}]) with the model's template (assistant turn
    /// opened): `{ text, ids }`.
    #[wasm_bindgen(js_name = applyChatTemplate)]
    pub fn apply_chat_template(&self, messages: JsValue) -> Result<JsValue, JsValue> {
        let messages: Vec<crate::chat::Message> = serde_wasm_bindgen::from_value(messages)
            .map_err(|e| bad_request(format!("messages must be an array of {{role, content}} strings: {e}")))?;
        let guard = self.engine.try_borrow().map_err(|_| bad_request("the engine is busy generating".into()))?;
        let engine = guard.as_ref().ok_or_else(|| bad_request("the engine was disposed".into()))?;
        let (text, ids) = engine.chat_prompt(&messages).map_err(|e| to_js_error(&e, false))?;
        #[derive(Serialize)]
        struct Rendered {
            text: String,
            ids: Vec<u32>,
        }
        Ok(to_js(&Rendered { text, ids }))
    }

    /// Forgets the KV cache (the next generation prefills its whole prompt).
    pub fn reset(&self) -> Result<(), JsValue> {
        let mut guard = self.engine.try_borrow_mut().map_err(|_| bad_request("the engine is busy generating".into()))?;
        if let Some(engine) = guard.as_mut() {
            engine.reset();
        }
        Ok(())
    }

    /// GPU bytes this engine holds (0 after dispose), also while a generation runs.
    #[wasm_bindgen(js_name = gpuBytes)]
    pub fn gpu_bytes(&self) -> f64 {
        self.gpu_bytes.get()
    }

    /// Frees the GPU buffers. Fails while a generation runs.
    pub fn dispose(&self) -> Result<(), JsValue> {
        let mut guard = self.engine.try_borrow_mut().map_err(|_| bad_request("cannot dispose while a generation runs: abort it first".into()))?;
        if let Some(engine) = guard.take() {
            forget_lost_hook(self.lost_hook);
            self.gpu_bytes.set(0.0);
            let ctx = engine.model().context().clone();
            drop(engine);
            ctx.device.destroy();
        }
        Ok(())
    }
}

/// `{ wasmHeapBytes, allocatedBytes, peakAllocatedBytes }` of this wasm instance: the linear
/// memory size (it never shrinks, so it is also its peak) and the bytes the Rust allocator holds
/// now and held at most.
#[wasm_bindgen(js_name = wasmMemory)]
pub fn wasm_memory() -> JsValue {
    let o = js_sys::Object::new();
    let set = |k: &str, v: f64| {
        let _ = js_sys::Reflect::set(&o, &k.into(), &v.into());
    };
    set("wasmHeapBytes", wasm_memory_bytes());
    set("allocatedBytes", alloc::live_bytes() as f64);
    set("peakAllocatedBytes", alloc::peak_bytes() as f64);
    o.into()
}

/// The sha256 (lower-case hex) of `bytes`, with the hash the model cache uses (a utility, and
/// how the tests measure its cost).
#[wasm_bindgen(js_name = sha256Hex)]
pub fn sha256_hex(bytes: &[u8]) -> String {
    crate::loader::cache::sha256_hex(bytes)
}
