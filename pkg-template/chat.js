// `engine.chat.completions.create(request)`: the OpenAI chat-completions request and response
// shapes on top of `applyChatTemplate` + `generate`, for both the worker proxy and the in-thread
// engine (any object with those two methods, `stats` and `info`).

import { InvalidRequestError } from "./errors.js";

/**
 * @typedef {import("./index.js").ChatCompletionRequest} ChatCompletionRequest
 * @typedef {import("./index.js").GenerateOptions} GenerateOptions
 * @typedef {import("./index.js").GenerateStats} GenerateStats
 * @typedef {import("./index.js").FinishReason} FinishReason
 * @typedef {Pick<import("./index.js").Engine, "applyChatTemplate" | "generate" | "stats" | "info">} ChatEngine
 */

let sequence = 0;

/** `generate`'s default `maxTokens`: what a request without `max_tokens` reserves for the reply. */
const DEFAULT_MAX_TOKENS = 128;
const CONTEXT_OVERFLOW = ["error", "drop_oldest"];

/** Maps an OpenAI-style request onto `generate` options (extensions: top_k, min_p, ...).
 * @param {ChatCompletionRequest} request
 * @returns {GenerateOptions} */
function generateOptions(request) {
  /** @type {Record<string, unknown>} */
  const options = {};
  const map = {
    max_tokens: "maxTokens",
    max_completion_tokens: "maxTokens",
    temperature: "temperature",
    top_p: "topP",
    top_k: "topK",
    min_p: "minP",
    seed: "seed",
    stop: "stop",
    presence_penalty: "presencePenalty",
    frequency_penalty: "frequencyPenalty",
    repetition_penalty: "repetitionPenalty",
    ignore_eos: "ignoreEos",
    speculative: "speculative",
    signal: "signal",
  };
  for (const [from, to] of Object.entries(map)) {
    const value = /** @type {Record<string, unknown>} */ (/** @type {unknown} */ (request))[from];
    if (value !== undefined && value !== null) options[to] = value;
  }
  // OpenAI's default temperature is 1.
  if (options.temperature === undefined) options.temperature = 1;
  return /** @type {GenerateOptions} */ (options);
}

/** @param {ChatCompletionRequest} request */
function validate(request) {
  if (!request || !Array.isArray(request.messages) || request.messages.length === 0) {
    throw new InvalidRequestError("chat.completions.create needs a non-empty `messages` array");
  }
  for (const m of request.messages) {
    if (!m || typeof m.role !== "string" || typeof m.content !== "string") {
      throw new InvalidRequestError("every message needs a string `role` and a string `content`");
    }
  }
  if (request.n !== undefined && request.n !== 1) {
    throw new InvalidRequestError("only n = 1 is supported");
  }
  const overflow = request.context_overflow;
  if (overflow !== undefined && !CONTEXT_OVERFLOW.includes(/** @type {string} */ (overflow))) {
    throw new InvalidRequestError(`context_overflow must be "error" or "drop_oldest", not ${JSON.stringify(overflow)}`);
  }
}

/** Renders the conversation; with `context_overflow: "drop_oldest"`, drops the oldest messages
 * after the leading system message(s) until the prompt plus the reply's `maxTokens` fits the
 * context (the last message always stays). Returns the rendered prompt and how many messages
 * were dropped.
 * @param {ChatEngine} engine @param {ChatCompletionRequest} request @param {GenerateOptions} options
 * @returns {Promise<{ rendered: { text: string, ids: number[] }, dropped: number }>} */
async function renderWithin(engine, request, options) {
  const messages = request.messages.map((m) => ({ role: m.role, content: m.content }));
  let rendered = await engine.applyChatTemplate(messages);
  if (request.context_overflow !== "drop_oldest") return { rendered, dropped: 0 };
  const budget = engine.info.contextLength - (options.maxTokens ?? DEFAULT_MAX_TOKENS);
  const firstTurn = Math.max(0, messages.findIndex((m) => m.role !== "system"));
  let dropped = 0;
  while (rendered.ids.length > budget && messages.length > firstTurn + 1) {
    messages.splice(firstTurn, 1);
    dropped++;
    rendered = await engine.applyChatTemplate(messages);
  }
  return { rendered, dropped };
}

/** @param {GenerateStats | null} stats @param {number | undefined} dropped set with "drop_oldest" */
function usage(stats, dropped) {
  const prompt = stats ? stats.promptTokens : 0;
  const completion = stats ? stats.generatedTokens : 0;
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    // Extension: prompt tokens actually computed (the rest came from the KV cache).
    prefilled_tokens: stats ? stats.prefilledTokens : 0,
    // Extension, with context_overflow "drop_oldest": messages left out to fit the context.
    ...(dropped === undefined ? {} : { dropped_messages: dropped }),
  };
}

/** @param {ChatEngine} engine @param {ChatCompletionRequest} request */
async function create(engine, request) {
  validate(request);
  const options = generateOptions(request);
  const { rendered, dropped } = await renderWithin(engine, request, options);
  const droppedReport = request.context_overflow === "drop_oldest" ? dropped : undefined;
  const id = `chatcmpl-${Date.now().toString(36)}${(sequence++).toString(36)}`;
  const created = Math.floor(Date.now() / 1000);
  const model = request.model || "ferrolm";
  /** @param {{ role?: "assistant", content?: string }} delta @param {FinishReason | null} finishReason */
  const chunk = (delta, finishReason) => ({
    id, object: "chat.completion.chunk", created, model,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
  });
  if (request.stream) {
    return (async function* stream() {
      yield chunk({ role: "assistant", content: "" }, null);
      for await (const piece of engine.generate(rendered.ids, options)) {
        if (piece.text) yield chunk({ content: piece.text }, null);
      }
      const stats = engine.stats;
      yield { ...chunk({}, stats ? stats.finishReason : "stop"), usage: usage(stats, droppedReport) };
    })();
  }
  let content = "";
  for await (const piece of engine.generate(rendered.ids, options)) content += piece.text;
  const stats = engine.stats;
  return {
    id, object: "chat.completion", created, model,
    choices: [{ index: 0, message: { role: "assistant", content }, logprobs: null, finish_reason: stats ? stats.finishReason : "stop" }],
    usage: usage(stats, droppedReport),
  };
}

/** The `chat` namespace of an engine.
 * @param {ChatEngine} engine
 * @returns {import("./index.js").Engine["chat"]} */
export function chatNamespace(engine) {
  // One implementation behind both overloads (stream: true / false) of the declared type.
  return { completions: { create: /** @type {any} */ ((/** @type {ChatCompletionRequest} */ request) => create(engine, request)) } };
}
