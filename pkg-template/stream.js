// The piece queue behind `generate`'s async iterator, shared by the in-thread engine and the
// worker proxy: the producer pushes pieces and ends the stream; the iterator drains it. Also the
// one check of `generate`'s prompt, for both.

import { InvalidRequestError } from "./errors.js";

/**
 * `generate`'s prompt as sent to the engine: a string, or token ids as a plain array.
 * @param {unknown} prompt
 * @returns {string | number[]}
 */
export function promptInput(prompt) {
  if (typeof prompt === "string") return prompt;
  if (Array.isArray(prompt) || prompt instanceof Uint32Array) {
    const ids = Array.from(prompt);
    if (ids.every((t) => Number.isInteger(t) && t >= 0 && t <= 0xffffffff)) return ids;
    throw new InvalidRequestError("prompt token ids must be integers from 0 to 2^32 - 1");
  }
  throw new InvalidRequestError("the prompt must be a string or an array of token ids");
}

/**
 * A queue that a producer fills while an async generator drains it.
 * @template T
 * @returns {{ push(piece: T): void, end(error?: unknown): void, drain(): AsyncGenerator<T, void, undefined> }}
 */
export function pieceQueue() {
  /** @type {T[]} */
  const pieces = [];
  /** @type {(() => void) | null} */
  let wake = null;
  let finished = false;
  /** @type {unknown} */
  let failure = null;
  const notify = () => { if (wake) { const w = wake; wake = null; w(); } };
  return {
    push(piece) {
      pieces.push(piece);
      notify();
    },
    /** Ends the stream once the queued pieces are read; `error` (if any) is thrown after them. */
    end(error = null) {
      failure = error;
      finished = true;
      notify();
    },
    async *drain() {
      for (;;) {
        if (pieces.length) {
          yield /** @type {T} */ (pieces.shift());
          continue;
        }
        if (finished) break;
        await new Promise((resolve) => { wake = () => resolve(undefined); });
      }
      if (failure) throw failure;
    },
  };
}
