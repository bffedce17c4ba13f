// The demo's chat: a conversation with the loaded engine through `chat.completions.create`
// (streaming, greedy or sampled), with a system prompt, Stop, Copy and Clear. Each turn shows how
// much of the prompt came from the KV cache (a turn only prefills its new text), the tokens/s
// while generating, and the messages left out when the conversation outgrows the context
// (`context_overflow: "drop_oldest"`).
import { AbortError } from "../pkg/index.js";

const $ = (id) => document.getElementById(id);

/**
 * @param {{ engine(): any, busy(on: boolean): void, temperature(): number, maxTokens(): number, fail(e: Error): void }} host
 *   the page: the loaded engine (or null), the page-wide busy state, the sampling settings
 */
export function createChat(host) {
  const ui = {
    system: $("system"), log: $("chat-log"), input: $("chat-input"), send: $("send"),
    stop: $("chat-stop"), copy: $("copy-chat"), clear: $("clear-chat"), stats: $("chat-stats"),
  };
  /** The conversation so far (the system prompt is added per request). */
  let messages = [];
  /** @type {AbortController | null} */
  let running = null;

  /** @param {string} role @param {string} text */
  function bubble(role, text) {
    const li = document.createElement("li");
    li.className = role;
    li.textContent = text;
    ui.log.append(li);
    li.scrollIntoView({ block: "end" });
    return li;
  }

  function setEnabled(enabled) {
    ui.send.disabled = !enabled || !!running;
    ui.stop.disabled = !running;
    ui.clear.disabled = !!running;
    ui.copy.disabled = !!running || messages.length === 0;
  }

  async function send() {
    const engine = host.engine();
    const text = ui.input.value.trim();
    if (!engine || running || !text) return;
    const controller = new AbortController();
    running = controller;
    host.busy(true);
    setEnabled(false);
    ui.input.value = "";
    messages.push({ role: "user", content: text });
    bubble("user", text);
    const reply = bubble("assistant", "");
    reply.classList.add("writing");
    const system = ui.system.value.trim();
    const request = {
      messages: system ? [{ role: "system", content: system }, ...messages] : messages,
      stream: true, max_tokens: host.maxTokens(), temperature: host.temperature(),
      seed: Math.floor(Math.random() * 2 ** 32), context_overflow: "drop_oldest", signal: controller.signal,
    };
    const t0 = performance.now();
    let count = 0;
    let usage = null;
    let stopped = false;
    try {
      for await (const chunk of await engine.chat.completions.create(request)) {
        const delta = chunk.choices[0].delta.content;
        if (delta) {
          reply.textContent += delta;
          count++;
          ui.stats.textContent = `${count} tokens, ${(count / ((performance.now() - t0) / 1000)).toFixed(2)} tokens/s`;
        }
        if (chunk.usage) usage = chunk.usage;
      }
    } catch (e) {
      if (e instanceof AbortError) stopped = true;
      else host.fail(e);
    }
    reply.classList.remove("writing");
    messages.push({ role: "assistant", content: reply.textContent });
    const st = engine.stats;
    if (!usage && stopped && st) {
      // A stopped stream ends without its usage chunk: the engine's figures of the run.
      usage = { prompt_tokens: st.promptTokens, prefilled_tokens: st.prefilledTokens, completion_tokens: st.generatedTokens, dropped_messages: 0 };
    }
    if (usage && st) {
      // The messages the engine left out are gone from the conversation too (grayed out here).
      const dropped = usage.dropped_messages || 0;
      if (dropped > 0) {
        messages = messages.slice(dropped);
        const gone = ui.log.querySelectorAll("li:not(.dropped)");
        for (let i = 0; i < dropped; i++) gone[i].classList.add("dropped");
      }
      const reused = usage.prompt_tokens - usage.prefilled_tokens;
      Object.assign(ui.stats.dataset, { prompt: usage.prompt_tokens, reused, prefilled: usage.prefilled_tokens, dropped });
      ui.stats.textContent = `prompt ${usage.prompt_tokens} tokens: ${reused} reused from the KV cache, ${usage.prefilled_tokens} prefilled · ` +
        `${usage.completion_tokens} tokens at ${st.decodeTokensPerS.toFixed(2)} tokens/s` +
        (dropped ? ` · ${dropped} old message${dropped > 1 ? "s" : ""} left out to fit the context` : "") +
        (stopped ? " · stopped" : "");
    }
    running = null;
    host.busy(false);
  }

  function clear() {
    if (running) return;
    messages = [];
    ui.log.replaceChildren();
    ui.stats.textContent = "";
    for (const k of Object.keys(ui.stats.dataset)) delete ui.stats.dataset[k];
    setEnabled(!!host.engine());
  }

  function copy() {
    const text = messages.map((m) => `${m.role}: ${m.content}`).join("\n\n");
    navigator.clipboard.writeText(text).catch(() => {});
  }

  ui.send.addEventListener("click", send);
  ui.stop.addEventListener("click", () => running && running.abort());
  ui.clear.addEventListener("click", clear);
  ui.copy.addEventListener("click", copy);
  ui.input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      send();
    }
  });
  return { setEnabled, clear };
}
