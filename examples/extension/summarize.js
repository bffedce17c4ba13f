// Summarising a page with the engine (in the offscreen document): the page text is split at
// paragraph boundaries into chunks that fit the context (counted with the model's tokenizer),
// each chunk is summarised through the model's chat template, and the partial summaries are
// combined (map-reduce; again in chunks when they do not fit together).

const SYSTEM = "You summarise web pages. Write a short, faithful summary in plain sentences. Do not add facts.";
/** Tokens kept free besides the prompt and the reply (template edge effects). */
const MARGIN = 8;

/**
 * @typedef {{ title: string, url: string, text: string }} Page
 * @typedef {{ stage: "single" | "part" | "combine", part: number, parts: number }} Stage
 * @typedef {{ maxTokens: number, signal: AbortSignal, onStage(s: Stage): void, onText(t: string): void,
 *   onPromptTokens?(n: number, s: Stage): void }} Handlers
 */

/** The chat messages asking for a summary of `text`. @param {Page} page @param {string} text @param {string} ask */
function messages(page, text, ask) {
  return [
    { role: "system", content: SYSTEM },
    { role: "user", content: `${ask}\n\nTitle: ${page.title}\nURL: ${page.url}\n\n${text}` },
  ];
}

/** @param {number} part @param {number} parts */
function askFor(part, parts) {
  return parts === 1 ? "Summarise this web page." : `Summarise part ${part} of ${parts} of this web page.`;
}
const COMBINE = "These are summaries of the parts of one web page, in order. Combine them into one summary of the page.";

/** Splits `text` into paragraphs (blank-line separated; single lines when there are none). @param {string} text */
export function paragraphs(text) {
  const blocks = text.split(/\n\s*\n/).map((p) => p.trim()).filter(Boolean);
  return blocks.length > 1 ? blocks : text.split("\n").map((p) => p.trim()).filter(Boolean);
}

/**
 * Packs paragraphs into chunks of at most `budget` tokens (counted by `count`); a paragraph
 * longer than the budget is cut at sentences, then at words.
 * @param {string[]} paras
 * @param {number} budget
 * @param {(text: string) => Promise<number>} count
 * @returns {Promise<string[]>}
 */
export async function packChunks(paras, budget, count) {
  /** @type {string[]} */
  const chunks = [];
  let current = "";
  /** @param {string} piece */
  const add = async (piece) => {
    const joined = current ? `${current}\n\n${piece}` : piece;
    if (await count(joined) <= budget) {
      current = joined;
      return;
    }
    if (await count(piece) <= budget) {
      if (current) chunks.push(current);
      current = piece;
      return;
    }
    // Too long alone: cut at sentence ends, else at the middle word, and pack the halves.
    const sentences = piece.split(/(?<=[.!?])\s+/);
    const words = piece.split(/\s+/);
    const [a, b] = sentences.length > 1
      ? [sentences.slice(0, sentences.length >> 1).join(" "), sentences.slice(sentences.length >> 1).join(" ")]
      : words.length > 1
        ? [words.slice(0, words.length >> 1).join(" "), words.slice(words.length >> 1).join(" ")]
        : [piece.slice(0, piece.length >> 1), piece.slice(piece.length >> 1)];
    await add(a);
    await add(b);
  };
  for (const p of paras) await add(p);
  if (current) chunks.push(current);
  return chunks;
}

/**
 * Streams one summary: returns its text.
 * @param {any} engine @param {{ role: string, content: string }[]} msgs @param {Stage} stage @param {Handlers} h
 */
async function complete(engine, msgs, stage, h) {
  h.onStage(stage);
  const stream = await engine.chat.completions.create({
    messages: msgs, stream: true, max_tokens: h.maxTokens, temperature: 0, signal: h.signal,
  });
  let text = "";
  for await (const chunk of stream) {
    const delta = chunk.choices[0].delta.content;
    if (delta) {
      text += delta;
      h.onText(delta);
    }
    if (chunk.usage && h.onPromptTokens) h.onPromptTokens(chunk.usage.prompt_tokens, stage);
  }
  return text.trim();
}

/**
 * Summarises `page` (map-reduce over chunks when it does not fit the context).
 * @param {any} engine a loaded ferrolm engine
 * @param {Page} page
 * @param {Handlers} h
 * @returns {Promise<{ summary: string, parts: number }>}
 */
export async function summarizePage(engine, page, h) {
  const context = engine.info.contextLength;
  /** Tokens left for page text in one request whose instruction is `ask`. @param {string} ask */
  const budgetFor = async (ask) => {
    const overhead = (await engine.applyChatTemplate(messages(page, "", ask))).ids.length;
    return context - h.maxTokens - overhead - MARGIN;
  };
  const count = (/** @type {string} */ t) => engine.countTokens(t);
  // The instruction of a part is at most as long as "part 99 of 99".
  const budget = await budgetFor(askFor(99, 99));
  if (budget < 16) {
    throw new Error(`the model's context (${context} tokens) is too small for a summary of ${h.maxTokens} tokens`);
  }
  const chunks = await packChunks(paragraphs(page.text), budget, count);
  if (chunks.length === 1) {
    const summary = await complete(engine, messages(page, chunks[0], askFor(1, 1)), { stage: "single", part: 1, parts: 1 }, h);
    return { summary, parts: 1 };
  }
  /** @type {string[]} */
  const partials = [];
  for (let i = 0; i < chunks.length; i++) {
    const stage = /** @type {Stage} */ ({ stage: "part", part: i + 1, parts: chunks.length });
    partials.push(await complete(engine, messages(page, chunks[i], askFor(i + 1, chunks.length)), stage, h));
  }
  // Reduce: combine the partial summaries, in groups that fit, until one is left.
  const combineBudget = await budgetFor(COMBINE);
  let level = partials.map((s, i) => `Part ${i + 1}: ${s || "(nothing)"}`);
  for (;;) {
    const groups = await packChunks(level, combineBudget, count);
    /** @type {string[]} */
    const next = [];
    for (let i = 0; i < groups.length; i++) {
      const stage = /** @type {Stage} */ ({ stage: "combine", part: i + 1, parts: groups.length });
      next.push(await complete(engine, messages(page, groups[i], COMBINE), stage, h));
    }
    if (next.length === 1) return { summary: next[0], parts: chunks.length };
    if (next.length >= level.length) throw new Error("the partial summaries do not shrink: choose a shorter summary length");
    level = next;
  }
}
