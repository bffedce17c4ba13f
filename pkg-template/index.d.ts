// Type declarations of the ferrolm browser API.

/** Where a model comes from: one URL, several URLs that are raw byte chunks of one file in
 * order (`model.gguf.part00`, `.part01`, ...), or a local File/Blob. */
export type ModelSource = string | URL | Array<string | URL> | Blob;

/** Loading phases, in order. */
export type LoadPhase = "header" | "weights" | "shaders" | "ready";

export interface LoadProgress {
  phase: LoadPhase;
  /** Bytes done within the phase (header: 0; weights: tensor bytes uploaded to the GPU). */
  done: number;
  /** Bytes in the phase (weights: all tensor bytes; ready: the file size). */
  total: number;
  /** File bytes read from the model cache so far. */
  fromCache: number;
  /** File bytes fetched from the network so far. */
  fromNetwork: number;
  /** What the model cache does: "writing" (downloading into it), "hit" (reading from it), or
   * "skipped: <why>" (disabled, a File/Blob, no storage, out of space, a storage error). */
  cache: "writing" | "hit" | `skipped: ${string}` | "";
}

export interface LoadOptions {
  /** Called as loading goes on: header, weights (many times), shaders, ready. */
  onProgress?: (progress: LoadProgress) => void;
  /** KV-cache length in tokens (default: the model's training context, capped at 4096). */
  contextLength?: number;
  /** Aborts loading (checked between chunks; fetches are given the signal): rejects with AbortError. */
  signal?: AbortSignal;
  /** Run the engine in a dedicated Web Worker (default true). `false` runs it on the calling
   * thread (extension offscreen documents, tests). */
  worker?: boolean;
  /** Most tokens one forward step processes (prompt prefill chunk; default 128). */
  maxBatch?: number;
  /** How the KV cache stores keys and values: "f16" (default: half the memory, logits within
   * 0.1 of f32) or "f32". */
  kvType?: "f16" | "f32";
  /** Autotune the matrix kernels on this device at load (default true): each distinct matrix
   * shape of the decode step is timed with a few kernel variants and the fastest is kept. The
   * choices are cached in localStorage (`ferrolm.kernels`) per adapter, driver and ferrolm
   * version, so later loads skip the timing. `info.kernels` shows the choices and the time. */
  tune?: boolean;
  /** Run every matrix shape with this kernel variant instead (no tuning), e.g. "t1r4-uniform":
   * `t{threads per row}r{rows per thread}-{storage|workgroup|uniform}[-sg]`. */
  kernelVariant?: string;
  /** The cached choices to start from (default: this origin's localStorage entry). */
  kernelCache?: Record<string, Record<string, string>>;
  /** Where to fetch the .wasm from (default: next to the package's wasm/ferrolm.js). */
  wasmUrl?: string | URL;
  /** Keep the model in the origin's storage and load it from there next time (default true).
   * URL sources only: a File/Blob is local already. */
  cache?: boolean;
  /** Load only from the cache and make no request: rejects with NetworkError when the model is
   * not completely cached (default false). */
  offline?: boolean;
  /** The expected sha256 of the whole model file (64 hex digits): a mismatch rejects with
   * IntegrityError, removes the cache entry and never runs the model. */
  sha256?: string;
  /** Range requests in flight while downloading (default 4). */
  parallel?: number;
  /** Retries of a request that failed with a network error, 5xx or 429, with backoff (default 3). */
  retries?: number;
  /** Ask the browser to keep the cache under storage pressure (`navigator.storage.persist()`). */
  persist?: boolean;
  /** A smaller model with the same vocabulary, loaded beside this one for speculative decoding
   * (`generate(…, { speculative: "draft" })`): a URL, an array of shard URLs, or a File or Blob
   * (e.g. from a file picker). Not cached. A model with another vocabulary rejects with
   * VocabularyMismatchError; any other kind of value with InvalidRequestError, before anything
   * is fetched. */
  draft?: string | string[] | Blob;
}

/** Speculative decoding: "prompt-lookup" proposes the tokens that followed the last 3, 2 or 1
 * tokens earlier in the prompt or output; "draft" asks the draft model (`load(url, { draft })`).
 * One batched step checks the proposals; the tokens are exactly those without speculation.
 * Repetition penalties turn it off. */
export type Speculation = "prompt-lookup" | "draft";

export interface GenerateOptions {
  /** Most tokens to generate (default 128). */
  maxTokens?: number;
  /** 0 (default) is greedy; above 0 samples from the top-k candidates. */
  temperature?: number;
  /** Candidates to sample from when temperature > 0 (default 40, at most 256; 0 = 256). */
  topK?: number;
  /** Nucleus sampling: the smallest set of candidates with this much probability (default 1 = off). */
  topP?: number;
  /** Drop candidates less likely than minP × the most likely one (default 0 = off). */
  minP?: number;
  /** Divides positive / multiplies negative logits of recent tokens (default 1 = off). */
  repetitionPenalty?: number;
  /** Subtracted from the logits of tokens present in the penalty window (default 0). */
  presencePenalty?: number;
  /** Subtracted count × this from the logits of recent tokens (default 0). */
  frequencyPenalty?: number;
  /** How many recent tokens (prompt included) the penalties look at (default 64, at most 1024). */
  penaltyWindow?: number;
  /** Strings that end the output (not included), even when they span tokens. */
  stop?: string | string[];
  /** RNG seed for sampling (default 0): the same seed on the same device gives the same text. */
  seed?: number;
  /** Keep generating past end-of-generation tokens (default false). */
  ignoreEos?: boolean;
  /** Speculative decoding (default off): same tokens, often faster on text that repeats. */
  speculative?: Speculation;
  /** Stops the generation: the iterator then throws AbortError. */
  signal?: AbortSignal;
}

export interface ChatMessage {
  role: "system" | "user" | "assistant" | string;
  content: string;
}

/** An OpenAI-style chat completion request (snake_case, like the OpenAI API). */
export interface ChatCompletionRequest {
  messages: ChatMessage[];
  stream?: boolean;
  model?: string;
  max_tokens?: number;
  max_completion_tokens?: number;
  /** Default 1, as in the OpenAI API. */
  temperature?: number;
  top_p?: number;
  stop?: string | string[];
  seed?: number;
  presence_penalty?: number;
  frequency_penalty?: number;
  /** Only 1. */
  n?: number;
  /** Extensions. */
  top_k?: number;
  min_p?: number;
  repetition_penalty?: number;
  ignore_eos?: boolean;
  speculative?: Speculation;
  signal?: AbortSignal;
  /** What to do when the prompt plus `max_tokens` (default 128) does not fit the context:
   * "error" (default: the request goes as it is, and a prompt longer than the context rejects
   * with InvalidRequestError) or "drop_oldest" (the oldest messages after the leading system
   * message(s) are left out until it fits; the last message always stays; `usage.dropped_messages`
   * says how many). Budget ahead with `engine.countTokens(text)` and `engine.info.contextLength`. */
  context_overflow?: "error" | "drop_oldest";
}

export type FinishReason = "stop" | "length" | "abort";

export interface ChatCompletionUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** Prompt tokens actually computed (the others came from the KV cache). */
  prefilled_tokens: number;
  /** With `context_overflow: "drop_oldest"` only: messages left out to fit the context. */
  dropped_messages?: number;
}

export interface ChatCompletion {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  choices: { index: 0; message: { role: "assistant"; content: string }; logprobs: null; finish_reason: FinishReason }[];
  usage: ChatCompletionUsage;
}

export interface ChatCompletionChunk {
  id: string;
  object: "chat.completion.chunk";
  created: number;
  model: string;
  choices: { index: 0; delta: { role?: "assistant"; content?: string }; logprobs: null; finish_reason: FinishReason | null }[];
  /** On the last chunk only. */
  usage?: ChatCompletionUsage;
}

export interface Piece {
  /** New text: valid UTF-8, possibly empty (an incomplete character, or a control token). */
  text: string;
  /** The token id (-1 for a last piece that only flushes an incomplete UTF-8 sequence). */
  token: number;
}

export interface GenerateStats {
  promptTokens: number;
  /** Prompt tokens actually run (the rest were reused from the KV cache). */
  prefilledTokens: number;
  generatedTokens: number;
  prefillSeconds: number;
  decodeSeconds: number;
  prefillTokensPerS: number;
  decodeTokensPerS: number;
  /** Speculative decoding: tokens proposed, confirmed, their ratio (0 without speculation). */
  draftedTokens: number;
  acceptedTokens: number;
  acceptanceRate: number;
  /** Generated tokens per decode step of the model (1 without speculation). */
  tokensPerTargetStep: number;
  finishReason: "stop" | "length" | "abort";
}

export interface DeviceLimits {
  /** Largest range of one storage-buffer binding in bytes. */
  maxStorageBinding: number;
  maxBufferSize: number;
  maxWorkgroupsPerDim: number;
  uniformAlign: number;
  maxInvocationsPerWorkgroup: number;
  maxWorkgroupStorage: number;
  shaderF16: boolean;
  subgroups: boolean;
}

export interface EngineInfo {
  /** `general.architecture` (e.g. "llama"). */
  architecture: string;
  /** KV-cache length in tokens. */
  contextLength: number;
  trainedContextLength: number;
  vocabSize: number;
  layers: number;
  embeddingLength: number;
  heads: number;
  kvHeads: number;
  /** Tensor count per GGML type, e.g. { Q4_1: 211, F32: 61 }. */
  quantTypes: Record<string, number>;
  fileBytes: number;
  /** URLs the model came from (1 for a single file or a Blob). */
  parts: number;
  gpuBytes: number;
  /** RoPE frequency scaling in use: "none", "linear", "yarn", "longrope-short" or "longrope-long". */
  ropeScaling: string;
  /** The KV cache's element type and size in bytes. */
  kvType: "f16" | "f32";
  kvBytes: number;
  loadSeconds: number;
  /** The matrix-kernel variant per shape ("matvec Q4_1 576x1536 t1": "t1r4-uniform", …) and
   * what the autotuner did: seconds spent, shapes timed now and taken from the cache. */
  kernels: {
    adapterKey: string;
    choices: Record<string, string>;
    forced: string | null;
    tune: { seconds: number; timed: number; cached: number; candidates: string[] };
  };
  adapter: {
    name: string;
    backend: string;
    limits: DeviceLimits;
    /** What the browser says about the adapter (GPUAdapterInfo). */
    browser: { vendor: string; architecture: string; device: string; description: string; isFallbackAdapter: boolean };
  };
}

export interface MemoryInfo {
  /** Size of the wasm linear memory now (bytes). */
  wasmHeapBytes: number;
  /** Largest size of the wasm linear memory seen (it never shrinks). */
  peakWasmHeapBytes: number;
  /** GPU memory this engine holds: weights, KV cache, activations. */
  gpuBytes: number;
  /** Bytes the Rust allocator holds now. */
  allocatedBytes: number;
  /** Most bytes the Rust allocator held at once. */
  peakAllocatedBytes: number;
}

export interface Engine {
  /** Streams the completion of `prompt` (a string, BOS added when the model asks for it, or
   * token ids). Calls are queued: a generate issued while another runs starts after it. */
  generate(prompt: string | number[] | Uint32Array, options?: GenerateOptions): AsyncGenerator<Piece, void, undefined>;
  /** Figures of the last finished generation (null before the first). */
  readonly stats: GenerateStats | null;
  /** OpenAI-style chat completions: the model's chat template, then `generate`. A conversation's
   * next turn prefills only what the KV cache does not hold yet. */
  readonly chat: {
    completions: {
      create(request: ChatCompletionRequest & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>>;
      create(request: ChatCompletionRequest & { stream?: false }): Promise<ChatCompletion>;
    };
  };
  /** Renders chat messages with the model's template (assistant turn opened). */
  applyChatTemplate(messages: ChatMessage[]): Promise<{ text: string; ids: number[] }>;
  /** Token ids of `text` (special tokens parsed, no BOS). */
  tokenize(text: string): Promise<number[]>;
  /** The number of tokens of `text` (as `tokenize` counts them). */
  countTokens(text: string): Promise<number>;
  /** Text of token ids. */
  detokenize(ids: number[] | Uint32Array): Promise<string>;
  /** Forgets the KV cache (generations reuse the longest common prompt prefix otherwise). */
  reset(): Promise<void>;
  readonly info: EngineInfo;
  /** Memory figures; answered at once, also while a generation runs (never queued behind it). */
  memory(): Promise<MemoryInfo>;
  /** Stops the running generation and the queued calls (they reject with AbortError), then
   * frees the GPU memory (and the worker). Later calls reject with InvalidRequestError. */
  dispose(): Promise<void>;
  /** Resolves if the GPU device is lost (driver reset, GPU process restart, `destroy()`); from
   * then on every call rejects with DeviceLostError. Never resolves after `dispose()`. */
  readonly lost: Promise<DeviceLostInfo>;
}

/** The browser's `GPUDeviceLostInfo`. */
export interface DeviceLostInfo {
  reason: "destroyed" | "unknown" | string;
  message: string;
}

/** Loads a GGUF model: reads the header with Range requests, then streams the weights to the
 * GPU in 8 MiB chunks (the whole file is never held in memory). */
export function load(source: ModelSource, options?: LoadOptions): Promise<Engine>;

export class FerrolmError extends Error {}
export class WebGPUUnavailableError extends FerrolmError {}
export class ModelFormatError extends FerrolmError {}
export class UnsupportedModelError extends FerrolmError {}
export class DeviceLimitError extends FerrolmError {}
export class NetworkError extends FerrolmError {}
export class AbortError extends FerrolmError {}
export class InvalidRequestError extends FerrolmError {}
/** The GPU device failed while running (out of memory, a GPU error). */
export class GPUDeviceError extends FerrolmError {}
/** The GPU device was lost: the engine is gone (every pending and later call rejects with
 * this); a new `load()` opens a new device. */
export class DeviceLostError extends GPUDeviceError {
  readonly reason: DeviceLostInfo["reason"];
}
/** The wasm instance trapped (a panic or a bug) and is poisoned. Worker mode: a new `load()`
 * starts a fresh worker. `worker: false`: reload the page. */
export class EngineCrashedError extends FerrolmError {}
/** The model's bytes are not the file asked for (the `sha256` option): not cached, never run. */
export class IntegrityError extends FerrolmError {}
/** A draft model (`load(url, { draft })`) whose vocabulary is not the model's. */
export class VocabularyMismatchError extends FerrolmError {}

/** A model in the cache. */
export interface CachedModel {
  /** The URL it was loaded from (an array for a model split over several URLs). */
  url: string | string[];
  /** File size. */
  bytes: number;
  /** Bytes stored so far (less than `bytes` while incomplete: the next load resumes). */
  storedBytes: number;
  /** Every byte stored and the whole file hashed. */
  complete: boolean;
  /** The whole file matched the `sha256` given to `load`. */
  verified: boolean;
  /** sha256 (hex) of the whole file, once known. */
  sha256: string | null;
  /** Last load that used it (milliseconds since the Unix epoch). */
  lastUsed: number;
  /** "opfs" (written from the engine's worker) or "cache-api" (written on the page's thread). */
  storage: "opfs" | "cache-api";
}

/** The models this origin has cached. */
export const cache: {
  /** True only when the model is completely cached (and verified, when `load` was given a hash). */
  has(url: string | URL | Array<string | URL>): Promise<boolean>;
  list(): Promise<CachedModel[]>;
  /** Removes a model: true when it was cached. */
  delete(url: string | URL | Array<string | URL>): Promise<boolean>;
  /** Removes every cached model. */
  clear(): Promise<void>;
  /** Bytes the cached models take, and the origin's storage quota. */
  usage(): Promise<{ bytes: number; quota: number }>;
};
