//! SentencePiece "BPE by score" for `tokenizer.ggml.model == "llama"` vocabularies, with the
//! semantics of llama.cpp's SPM tokenizer session.
//!
//! One text fragment (the text between special tokens) is tokenized like this:
//! 1. normalisation (done by the caller, see [`SpmModel::escape`]): every space U+0020 becomes
//!    `▁` (U+2581), and a leading `▁` is added when the vocabulary asks for a space prefix and
//!    the fragment starts the text or follows a special token;
//! 2. the fragment starts as one symbol per Unicode character;
//! 3. every adjacent pair whose concatenation is a vocabulary entry is a candidate; the
//!    candidate whose merged piece has the highest score is merged (ties: leftmost first), the
//!    new symbol's pairs with its neighbours become candidates, and so on until none is left.
//!    Stale candidates (a side merged away meanwhile) are skipped when popped, so this is
//!    O(n log n) in the fragment length;
//! 4. each remaining symbol is emitted as its token. A symbol with no token is a single
//!    character missing from the vocabulary: it falls back to the `<0xNN>` tokens of its UTF-8
//!    bytes (or, as llama.cpp, to a vocabulary entry spelled as that single ASCII byte); if
//!    some byte has neither, the whole character becomes the unknown token (llama.cpp would
//!    abort here; SentencePiece without byte fallback emits `<unk>`).
//!
//! Every vocabulary entry takes part in merging, whatever its type, with its score, exactly as
//! llama.cpp does.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::TextIndex;

const NONE: u32 = u32::MAX;

/// A symbol of the fragment being tokenized: the byte range `start..start + len` of the
/// escaped text (`len == 0`: merged into its left neighbour), its token id (or [`NONE`]),
/// and its neighbours in the linked list of live symbols.
#[derive(Clone, Copy)]
struct Sym {
    start: u32,
    len: u32,
    id: u32,
    prev: u32,
    next: u32,
}

/// A merge candidate. Ordered for a max-heap: higher score first, then smaller `left`.
#[derive(Clone, Copy)]
struct Bigram {
    score: f32,
    left: u32,
    right: u32,
    /// Byte length of the merged piece, to detect candidates made stale by other merges
    /// (a side that grew or died changes the sum).
    size: u32,
    id: u32,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Bigram {}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Bigram {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// Reusable buffers for [`SpmModel::encode_escaped`].
#[derive(Default)]
pub(crate) struct SpmScratch {
    syms: Vec<Sym>,
    heap: BinaryHeap<Bigram>,
    pub(crate) text: String,
}

pub(crate) struct SpmModel {
    /// Score of each token (`-0.0` normalised to `0.0`, so that ties compare as in C++).
    scores: Vec<f32>,
    /// The token of each byte for byte fallback, or [`NONE`].
    byte_ids: [u32; 256],
    unk_id: Option<u32>,
    pub(crate) add_space_prefix: bool,
}

impl SpmModel {
    /// `scores` must be empty (all zero) or have one entry per token.
    pub(crate) fn new(
        n_vocab: usize,
        scores: &[f32],
        text_to_id: &TextIndex,
        unk_id: Option<u32>,
        add_space_prefix: bool,
    ) -> SpmModel {
        let scores = if scores.is_empty() {
            vec![0.0; n_vocab]
        } else {
            scores.iter().map(|&s| s + 0.0).collect()
        };
        let mut byte_ids = [NONE; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            let hex = format!("<0x{b:02X}>");
            if let Some(id) = text_to_id.get(hex.as_str()) {
                *slot = id;
            } else if b < 0x80 {
                let c = char::from(b as u8);
                if let Some(id) = text_to_id.get(c.encode_utf8(&mut [0u8; 4]) as &str) {
                    *slot = id;
                }
            }
        }
        SpmModel {
            scores,
            byte_ids,
            unk_id,
            add_space_prefix,
        }
    }

    /// Writes the normalised form of `fragment` to `out`: spaces as `▁`, with a leading `▁`
    /// when `prefix` is true.
    pub(crate) fn escape(fragment: &str, prefix: bool, out: &mut String) {
        out.clear();
        out.reserve(fragment.len() + fragment.len() / 4 + 3);
        if prefix {
            out.push('\u{2581}');
        }
        let mut rest = fragment;
        while let Some(pos) = rest.find(' ') {
            out.push_str(&rest[..pos]);
            out.push('\u{2581}');
            rest = &rest[pos + 1..];
        }
        out.push_str(rest);
    }

    /// Tokenizes `scratch.text` (already normalised by [`SpmModel::escape`]) and appends the
    /// ids to `out`.
    pub(crate) fn encode_escaped(&self, text_to_id: &TextIndex, scratch: &mut SpmScratch, out: &mut Vec<u32>) {
        let text = scratch.text.as_str();
        if text.is_empty() {
            return;
        }
        let syms = &mut scratch.syms;
        let heap = &mut scratch.heap;
        syms.clear();
        heap.clear();
        let lookup = |s: &str| text_to_id.get(s).unwrap_or(NONE);

        for (start, c) in text.char_indices() {
            let len = c.len_utf8();
            let i = syms.len() as u32;
            syms.push(Sym {
                start: start as u32,
                len: len as u32,
                id: lookup(&text[start..start + len]),
                prev: i.wrapping_sub(1), // NONE for the first
                next: if start + len == text.len() { NONE } else { i + 1 },
            });
        }
        if syms.len() == 1 {
            self.emit(text, &syms[0], out);
            return;
        }
        for right in 1..syms.len() as u32 {
            self.push_bigram(text, syms, heap, &lookup, right - 1, right);
        }

        while let Some(b) = heap.pop() {
            let (l, r) = (b.left as usize, b.right as usize);
            let (ll, rl) = (syms[l].len, syms[r].len);
            if ll == 0 || rl == 0 || ll + rl != b.size {
                continue; // stale
            }
            syms[l].len += rl;
            syms[l].id = b.id;
            syms[r].len = 0;
            let next = syms[r].next;
            syms[l].next = next;
            if next != NONE {
                syms[next as usize].prev = b.left;
            }
            let prev = syms[l].prev;
            if prev != NONE {
                self.push_bigram(text, syms, heap, &lookup, prev, b.left);
            }
            if next != NONE {
                self.push_bigram(text, syms, heap, &lookup, b.left, next);
            }
        }

        let mut i = 0u32;
        while i != NONE {
            let s = syms[i as usize];
            self.emit(text, &s, out);
            i = s.next;
        }
    }

    fn push_bigram(
        &self,
        text: &str,
        syms: &[Sym],
        heap: &mut BinaryHeap<Bigram>,
        lookup: &impl Fn(&str) -> u32,
        left: u32,
        right: u32,
    ) {
        let (a, b) = (syms[left as usize], syms[right as usize]);
        let size = a.len + b.len;
        let start = a.start as usize;
        let id = lookup(&text[start..start + size as usize]);
        if id == NONE {
            return;
        }
        heap.push(Bigram {
            score: self.scores[id as usize],
            left,
            right,
            size,
            id,
        });
    }

    fn emit(&self, text: &str, s: &Sym, out: &mut Vec<u32>) {
        if s.id != NONE {
            out.push(s.id);
            return;
        }
        // Only single characters can lack a token: merges always produce vocabulary entries.
        let bytes = &text.as_bytes()[s.start as usize..(s.start + s.len) as usize];
        if bytes.iter().all(|&b| self.byte_ids[usize::from(b)] != NONE) {
            out.extend(bytes.iter().map(|&b| self.byte_ids[usize::from(b)]));
        } else if let Some(unk) = self.unk_id {
            out.push(unk);
        }
    }
}
