//! Byte-level BPE merging (GPT-2 style, as llama.cpp's `llm_tokenizer_bpe_session`).
//!
//! A word (one pre-tokenizer piece) starts as one symbol per byte. Adjacent pairs that have a
//! merge rule are kept in a min-heap keyed by (rank, left position); the lowest-ranked pair is
//! merged, its neighbours' pairs are pushed, and stale heap entries are skipped when popped.
//! That is O(n log n) per word.
//!
//! Symbols are token ids. Strings that appear in merge rules or in the byte alphabet but not in
//! the vocabulary get "virtual" ids past the end of the vocabulary, so merging works exactly
//! as with strings; a virtual symbol left at the end is emitted as the tokens of its
//! individual characters (llama.cpp's fallback), skipping characters that have no token.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use super::TextIndex;

/// Small multiplicative hasher for the integer keys of the merge table (SipHash is needlessly
/// slow here and the keys are not attacker-chosen in a way that matters).
#[derive(Default, Clone, Copy)]
pub(crate) struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
}

type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

const NONE: u32 = u32::MAX;

/// A symbol not in the vocabulary nor in any merge rule (raw UTF-8 vocabularies only).
const UNKNOWN: u32 = u32::MAX - 1;

#[derive(Clone, Copy)]
struct Sym {
    id: u32,
    /// Bytes of the word it covers.
    len: u32,
    prev: u32,
    next: u32,
    alive: bool,
}

/// A candidate merge in the heap: ordered by (rank, left) like llama.cpp; `left_id`/`right_id`
/// detect entries made stale by other merges.
type HeapEntry = Reverse<(u32, u32, u32, u32, u32)>; // (rank, left, right, left_id, right_id)

/// Reusable buffers for [`BpeModel::merge_word`].
#[derive(Default)]
pub(crate) struct BpeScratch {
    syms: Vec<Sym>,
    heap: BinaryHeap<HeapEntry>,
}

pub(crate) struct BpeModel {
    n_vocab: u32,
    /// Symbol id of each single byte.
    byte_sym: [u32; 256],
    /// (left id, right id) -> (rank, merged id).
    merges: IntMap<u64, (u32, u32)>,
    /// For each virtual id (`n_vocab + i`): the tokens to emit if it survives merging.
    virtual_fallback: Vec<Vec<u32>>,
    /// Raw UTF-8 vocabularies: the virtual ids of strings that are in merge rules only.
    virtual_ids: HashMap<String, u32>,
}

impl BpeModel {
    /// `text_to_id` maps vocabulary strings (byte-level alphabet) to ids; `byte_chars` is the
    /// byte-level alphabet, or `None` for vocabularies of raw UTF-8 strings (see
    /// [`BpeModel::merge_raw_word`]); `merges` are "left right" rules in rank order.
    pub(crate) fn new(
        n_vocab: u32,
        text_to_id: &TextIndex,
        byte_chars: Option<&[char; 256]>,
        merges: &[String],
    ) -> BpeModel {
        let mut virtual_ids: HashMap<String, u32> = HashMap::new();
        let mut virtual_fallback: Vec<Vec<u32>> = Vec::new();
        let mut intern = |s: &str| -> u32 {
            if let Some(id) = text_to_id.get(s) {
                return id;
            }
            if let Some(&id) = virtual_ids.get(s) {
                return id;
            }
            let id = n_vocab.saturating_add(virtual_fallback.len() as u32);
            let fallback = s
                .chars()
                .filter_map(|c| {
                    text_to_id
                        .get(c.encode_utf8(&mut [0u8; 4]) as &str)
                })
                .collect();
            virtual_fallback.push(fallback);
            virtual_ids.insert(s.to_string(), id);
            id
        };

        let mut byte_sym = [UNKNOWN; 256];
        if let Some(byte_chars) = byte_chars {
            for (b, slot) in byte_sym.iter_mut().enumerate() {
                *slot = intern(byte_chars[b].encode_utf8(&mut [0u8; 4]));
            }
        }

        let mut table: IntMap<u64, (u32, u32)> = IntMap::default();
        table.reserve(merges.len());
        let mut merged = String::new();
        for (rank, rule) in merges.iter().enumerate() {
            // llama.cpp splits at the first space after the first byte.
            // (A space byte is always a char boundary, so the slicing below is safe.)
            let Some(pos) = rule.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1) else {
                continue;
            };
            let (left, right) = (&rule[..pos], &rule[pos + 1..]);
            if left.is_empty() || right.is_empty() {
                continue;
            }
            let (l, r) = (intern(left), intern(right));
            merged.clear();
            merged.push_str(left);
            merged.push_str(right);
            let m = intern(&merged);
            // The first rule for a pair wins (llama.cpp uses map::emplace).
            table.entry(pair_key(l, r)).or_insert((rank as u32, m));
        }

        BpeModel {
            n_vocab,
            byte_sym,
            merges: table,
            virtual_fallback,
            virtual_ids: if byte_chars.is_none() { virtual_ids } else { HashMap::new() },
        }
    }

    /// Runs BPE on the raw bytes of one word and appends the resulting token ids to `out`.
    pub(crate) fn merge_word(&self, bytes: &[u8], scratch: &mut BpeScratch, out: &mut Vec<u32>) {
        if bytes.len() == 1 {
            self.emit(self.byte_sym[usize::from(bytes[0])], out);
            return;
        }
        self.merge(bytes.iter().map(|&b| (self.byte_sym[usize::from(b)], 1)), scratch);
        let mut i = 0u32;
        while i != NONE {
            let s = scratch.syms[i as usize];
            self.emit(s.id, out);
            i = s.next;
        }
    }

    /// BPE over the characters of `word` for vocabularies of raw UTF-8 strings (llama.cpp's
    /// `byte_encode = false`): each character starts as its own symbol; a symbol left that is not
    /// a token becomes the `<0xXX>` tokens of its bytes (`byte_tokens`; bytes without one are
    /// dropped, as in llama.cpp).
    pub(crate) fn merge_raw_word(
        &self,
        word: &str,
        vocab: &TextIndex,
        byte_tokens: &[Option<u32>; 256],
        scratch: &mut BpeScratch,
        out: &mut Vec<u32>,
    ) {
        if word.is_empty() {
            return;
        }
        let symbol = |c: &str| vocab.get(c).or_else(|| self.virtual_ids.get(c).copied()).unwrap_or(UNKNOWN);
        self.merge(word.char_indices().map(|(i, c)| (symbol(&word[i..i + c.len_utf8()]), c.len_utf8() as u32)), scratch);
        let (mut i, mut start) = (0u32, 0usize);
        while i != NONE {
            let s = scratch.syms[i as usize];
            let end = start + s.len as usize;
            if s.id < self.n_vocab {
                out.push(s.id);
            } else {
                out.extend(word.as_bytes()[start..end].iter().filter_map(|&b| byte_tokens[usize::from(b)]));
            }
            (i, start) = (s.next, end);
        }
    }

    /// Merges the symbols `(id, byte length)` of one word (at least one) into `scratch.syms`,
    /// a list linked from index 0.
    fn merge(&self, symbols: impl Iterator<Item = (u32, u32)>, scratch: &mut BpeScratch) {
        let syms = &mut scratch.syms;
        let heap = &mut scratch.heap;
        syms.clear();
        heap.clear();
        for (i, (id, len)) in symbols.enumerate() {
            let i = i as u32;
            syms.push(Sym { id, len, prev: if i == 0 { NONE } else { i - 1 }, next: i + 1, alive: true });
        }
        if let Some(last) = syms.last_mut() {
            last.next = NONE;
        }
        for i in 1..syms.len() {
            self.push_pair(syms, heap, (i - 1) as u32, i as u32);
        }

        while let Some(Reverse((_, left, right, left_id, right_id))) = heap.pop() {
            let (l, r) = (left as usize, right as usize);
            if !syms[l].alive
                || !syms[r].alive
                || syms[l].next != right
                || syms[l].id != left_id
                || syms[r].id != right_id
            {
                continue; // stale
            }
            let Some(&(_, merged)) = self.merges.get(&pair_key(left_id, right_id)) else {
                continue;
            };
            syms[l].id = merged;
            syms[l].len += syms[r].len;
            syms[r].alive = false;
            let next = syms[r].next;
            syms[l].next = next;
            if next != NONE {
                syms[next as usize].prev = left;
            }
            let prev = syms[l].prev;
            if prev != NONE {
                self.push_pair(syms, heap, prev, left);
            }
            if next != NONE {
                self.push_pair(syms, heap, left, next);
            }
        }
    }

    fn push_pair(&self, syms: &[Sym], heap: &mut BinaryHeap<HeapEntry>, left: u32, right: u32) {
        let (lid, rid) = (syms[left as usize].id, syms[right as usize].id);
        if let Some(&(rank, _)) = self.merges.get(&pair_key(lid, rid)) {
            heap.push(Reverse((rank, left, right, lid, rid)));
        }
    }

    fn emit(&self, id: u32, out: &mut Vec<u32>) {
        if id < self.n_vocab {
            out.push(id);
        } else if let Some(fallback) = self.virtual_fallback.get((id - self.n_vocab) as usize) {
            out.extend_from_slice(fallback);
        }
    }
}

fn pair_key(l: u32, r: u32) -> u64 {
    (u64::from(l) << 32) | u64::from(r)
}
