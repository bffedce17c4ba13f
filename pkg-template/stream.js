// The piece queue behind `generate`'s async iterator, shared by the in-thread engine and the
// worker proxy: the producer pushes pieces and ends the stream; the iterator drains it.

/** A queue that a producer fills while an async generator drains it. */
export function pieceQueue() {
  const pieces = [];
  let wake = null;
  let finished = false;
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
          yield pieces.shift();
          continue;
        }
        if (finished) break;
        await new Promise((resolve) => { wake = resolve; });
      }
      if (failure) throw failure;
    },
  };
}
