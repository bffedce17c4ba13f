//! Text <-> token ids for GGUF vocabularies.
//!
//! Supported now: `tokenizer.ggml.model == "gpt2"` (byte-level BPE), with llama.cpp's
//! pre-tokenizers (see [`PreTokenizerKind::from_pre`]). `"llama"` (SentencePiece) and other
//! models return [`TokenizerError::Unsupported`].
//!
//! Encoding follows llama.cpp's `llama_tokenize_impl` for BPE vocabularies:
//! 1. special-token partition: control (type 3) and user-defined (type 4) tokens that occur
//!    literally in the text are cut out as single ids, longest token text first. Control and
//!    unknown tokens only when `parse_special` is true; user-defined tokens always (as llama.cpp
//!    and Hugging Face do: they are added *words*, not markup);
//! 2. each remaining text fragment is split by the pre-tokenizer regexes of `pre`;
//! 3. each piece is BPE-merged over its bytes (byte-level alphabet), and symbols that are not
//!    vocabulary entries fall back to the tokens of their characters.
//!
//! Decoding is byte-exact: [`Tokenizer::token_bytes`] gives the raw bytes of a token.
//!
//! `pre` handling: every `tokenizer.ggml.pre` value llama.cpp knows maps to its regex set (see
//! [`PreTokenizerKind::from_pre`]), except `deepseek-llm`, `superbpe`, `kimi-k2` and `afmoe`
//! (custom code or huge literal classes in llama.cpp). A missing `pre` or `"default"` uses
//! llama.cpp's DEFAULT set. Any other value (unknown, or one of those four) falls back to the
//! GPT-2 regex and [`Tokenizer::pre_is_fallback`] reports it; note llama.cpp itself would use
//! its DEFAULT set for unknown names.
//!
//! Known differences from llama.cpp: no `lstrip`/`rstrip` handling of special tokens (GGUF
//! does not carry those flags; llama.cpp hard-codes them for a few models), no
//! `clean_up_tokenization_spaces` on decode, and Unicode categories come from the `regex`
//! crate's tables rather than llama.cpp's (differences only for very recently assigned
//! characters). A byte with no token in the vocabulary is dropped on encode, as llama.cpp does.

mod bpe;
mod bytelevel;
mod pretokenize;
mod stream;
mod gguf_vocab;
pub use gguf_vocab::end_of_generation_ids;

use std::collections::HashMap;

pub use pretokenize::PreTokenizerKind;
pub use stream::{StreamDecoder, Utf8Assembler};

use bpe::{BpeModel, BpeScratch};
use pretokenize::PreTokenizer;

/// GGUF `tokenizer.ggml.token_type` values.
pub mod token_type {
    pub const UNDEFINED: i32 = 0;
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
    pub const BYTE: i32 = 6;
}

/// Tokenizer description, as read from GGUF metadata (`tokenizer.ggml.*`).
#[derive(Debug, Clone, Default)]
pub struct Vocab {
    /// `tokenizer.ggml.model`: `"gpt2"` (byte-level BPE) is supported; `"llama"` later.
    pub model: String,
    /// `tokenizer.ggml.pre`: pre-tokenizer name (`"smollm"`, `"llama-bpe"`, `"qwen2"`, ...).
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type` (see [`token_type`]); empty means all normal.
    pub token_types: Vec<i32>,
    /// `tokenizer.ggml.merges`: `"left right"` rules in rank order.
    pub merges: Vec<String>,
    /// `tokenizer.ggml.scores` (unused by BPE).
    pub scores: Vec<f32>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub add_bos: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("unsupported tokenizer: {0}")]
    Unsupported(String),
    #[error("invalid vocabulary: {0}")]
    InvalidVocab(String),
    #[error("bad pre-tokenizer regex {0}")]
    Regex(String),
}

/// A special token cut out of the text before pre-tokenization.
struct Special {
    text: String,
    id: u32,
    /// Control/unknown tokens are only matched when `parse_special` is true.
    needs_parse_special: bool,
}

pub struct Tokenizer {
    pre_name: Option<String>,
    pre_is_fallback: bool,
    pre: PreTokenizer,
    ignore_merges: bool,
    bpe: BpeModel,
    byte_chars: [char; 256],
    texts: Vec<String>,
    types: Vec<i32>,
    text_to_id: HashMap<String, u32>,
    /// Decoded bytes of all tokens, concatenated; token `i` is `bytes[offsets[i]..offsets[i+1]]`.
    bytes: Vec<u8>,
    offsets: Vec<usize>,
    /// Sorted by text length, longest first (ties by id).
    specials: Vec<Special>,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    add_bos: bool,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.texts.len())
            .field("pre", &self.pre_name)
            .field("pre_kind", &self.pre.kind)
            .field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .field("add_bos", &self.add_bos)
            .finish_non_exhaustive()
    }
}

enum Fragment {
    Text(usize, usize),
    Token(u32),
}

impl Tokenizer {
    /// Builds a tokenizer. Unknown `pre` values fall back to the GPT-2 pre-tokenizer
    /// (see [`Tokenizer::pre_is_fallback`]).
    pub fn new(vocab: Vocab) -> Result<Tokenizer, TokenizerError> {
        match vocab.model.as_str() {
            "gpt2" => {}
            other => {
                return Err(TokenizerError::Unsupported(format!(
                    "tokenizer.ggml.model = {other:?} (only \"gpt2\" byte-level BPE is implemented)"
                )))
            }
        }
        let n = vocab.tokens.len();
        if n == 0 {
            return Err(TokenizerError::InvalidVocab("no tokens".into()));
        }
        if n > u32::MAX as usize / 2 {
            return Err(TokenizerError::InvalidVocab(format!(
                "{n} tokens is too many"
            )));
        }
        if !vocab.token_types.is_empty() && vocab.token_types.len() != n {
            return Err(TokenizerError::InvalidVocab(format!(
                "{} token types for {n} tokens",
                vocab.token_types.len()
            )));
        }
        for (what, id) in [("bos", vocab.bos_id), ("eos", vocab.eos_id)] {
            if let Some(id) = id {
                if id as usize >= n {
                    return Err(TokenizerError::InvalidVocab(format!(
                        "{what} id {id} out of range ({n} tokens)"
                    )));
                }
            }
        }

        let (kind, ignore_merges, pre_is_fallback) =
            match PreTokenizerKind::from_pre(vocab.pre.as_deref()) {
                Some((k, ig)) => (k, ig, false),
                None => (PreTokenizerKind::Gpt2, false, true),
            };
        let pre = PreTokenizer::new(kind)?;

        let types = if vocab.token_types.is_empty() {
            vec![token_type::NORMAL; n]
        } else {
            vocab.token_types
        };

        let mut texts = vocab.tokens;
        for (i, t) in texts.iter_mut().enumerate() {
            if t.is_empty() {
                // As llama.cpp: keep empty entries unreachable from text.
                *t = format!("[EMPTY_{i}]");
            }
        }
        let mut text_to_id = HashMap::with_capacity(n);
        for (i, t) in texts.iter().enumerate() {
            text_to_id.insert(t.clone(), i as u32); // last duplicate wins, as llama.cpp
        }

        let byte_chars = bytelevel::byte_to_char_table();
        let mut bytes = Vec::new();
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        for (t, &ty) in texts.iter().zip(&types) {
            match ty {
                token_type::CONTROL | token_type::USER_DEFINED => {
                    bytes.extend_from_slice(t.as_bytes())
                }
                token_type::BYTE => match parse_byte_token(t) {
                    Some(b) => bytes.push(b),
                    None => bytelevel::decode_token_text(t, &mut bytes),
                },
                _ => bytelevel::decode_token_text(t, &mut bytes),
            }
            offsets.push(bytes.len());
        }

        let mut specials: Vec<Special> = texts
            .iter()
            .zip(&types)
            .enumerate()
            .filter(|(_, (_, &ty))| {
                matches!(
                    ty,
                    token_type::CONTROL | token_type::USER_DEFINED | token_type::UNKNOWN
                )
            })
            .map(|(i, (t, &ty))| Special {
                text: t.clone(),
                id: i as u32,
                needs_parse_special: ty != token_type::USER_DEFINED,
            })
            .collect();
        specials.sort_by(|a, b| b.text.len().cmp(&a.text.len()).then(a.id.cmp(&b.id)));

        let bpe = BpeModel::new(n as u32, &text_to_id, &byte_chars, &vocab.merges);

        Ok(Tokenizer {
            pre_name: vocab.pre,
            pre_is_fallback,
            pre,
            ignore_merges,
            bpe,
            byte_chars,
            texts,
            types,
            text_to_id,
            bytes,
            offsets,
            specials,
            bos_id: vocab.bos_id,
            eos_id: vocab.eos_id,
            add_bos: vocab.add_bos,
        })
    }

    /// Tokenizes `text`. Never adds BOS/EOS. With `parse_special`, control tokens written
    /// literally in the text (e.g. `<|im_start|>`) become their ids; user-defined tokens are
    /// always recognised.
    pub fn encode(&self, text: &str, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 1);
        if text.is_empty() {
            return out;
        }
        let fragments = self.partition_special(text, parse_special);
        let mut pieces = Vec::new();
        let mut scratch_ranges = Vec::new();
        let mut scratch = BpeScratch::default();
        let mut encoded = String::new();
        for frag in fragments {
            match frag {
                Fragment::Token(id) => out.push(id),
                Fragment::Text(start, end) => {
                    let frag_text = &text[start..end];
                    self.pre.split(frag_text, &mut pieces, &mut scratch_ranges);
                    for &(s, e) in &pieces {
                        let word = &frag_text.as_bytes()[s..e];
                        if self.ignore_merges {
                            encoded.clear();
                            encoded.extend(word.iter().map(|&b| self.byte_chars[usize::from(b)]));
                            if let Some(&id) = self.text_to_id.get(&encoded) {
                                out.push(id);
                                continue;
                            }
                        }
                        self.bpe.merge_word(word, &mut scratch, &mut out);
                    }
                }
            }
        }
        out
    }

    /// Splits `text` into raw-text fragments and special-token ids, as llama.cpp's
    /// `tokenizer_st_partition`: for each special token, longest first, every occurrence in
    /// every remaining text fragment is cut out.
    fn partition_special(&self, text: &str, parse_special: bool) -> Vec<Fragment> {
        let mut frags = vec![Fragment::Text(0, text.len())];
        let mut next = Vec::new();
        for sp in &self.specials {
            if sp.needs_parse_special && !parse_special {
                continue;
            }
            let needle = sp.text.as_str();
            if needle.is_empty() || !text.contains(needle) {
                continue;
            }
            next.clear();
            for frag in frags.drain(..) {
                let Fragment::Text(mut start, end) = frag else {
                    next.push(frag);
                    continue;
                };
                // A match of valid UTF-8 inside valid UTF-8 starts and ends on char
                // boundaries, so the slicing below cannot panic.
                while let Some(pos) = text[start..end].find(needle) {
                    let m = start + pos;
                    if m > start {
                        next.push(Fragment::Text(start, m));
                    }
                    next.push(Fragment::Token(sp.id));
                    start = m + needle.len();
                }
                if start < end {
                    next.push(Fragment::Text(start, end));
                }
            }
            std::mem::swap(&mut frags, &mut next);
        }
        frags
    }

    /// The raw bytes token `id` stands for: byte-level decoded for normal tokens, the literal
    /// text for control and user-defined tokens (e.g. `b"<|im_end|>"`). Empty for ids out of
    /// range.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        let i = id as usize;
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&a), Some(&b)) => &self.bytes[a..b],
            _ => &[],
        }
    }

    /// Concatenated token bytes as (lossy) UTF-8. Ids out of range are skipped.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            bytes.extend_from_slice(self.token_bytes(id));
        }
        match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }

    pub fn vocab_size(&self) -> usize {
        self.texts.len()
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }

    /// Whether the model wants BOS prepended (`tokenizer.ggml.add_bos_token`).
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// The id of the vocabulary entry spelled exactly `text` (vocabulary spelling: byte-level
    /// alphabet for normal tokens, e.g. `"Ġthe"`; literal text for special tokens).
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.text_to_id.get(text).copied()
    }

    /// The vocabulary spelling of token `id`.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.texts.get(id as usize).map(String::as_str)
    }

    /// GGUF token type of `id` (see [`token_type`]); `None` out of range.
    pub fn token_type(&self, id: u32) -> Option<i32> {
        self.types.get(id as usize).copied()
    }

    /// Whether `id` is a control token (type 3), e.g. `<|im_end|>`.
    pub fn is_control(&self, id: u32) -> bool {
        self.token_type(id) == Some(token_type::CONTROL)
    }

    /// The pre-tokenizer pieces of `text` (no special-token handling), for inspection and
    /// testing.
    pub fn pre_tokenize<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let (mut pieces, mut scratch) = (Vec::new(), Vec::new());
        self.pre.split(text, &mut pieces, &mut scratch);
        pieces.iter().map(|&(s, e)| &text[s..e]).collect()
    }

    /// The pre-tokenizer family in use.
    pub fn pre_tokenizer(&self) -> PreTokenizerKind {
        self.pre.kind
    }

    /// True when `pre` was not recognised and the GPT-2 pre-tokenizer is used instead.
    pub fn pre_is_fallback(&self) -> bool {
        self.pre_is_fallback
    }
}

/// Parses a SentencePiece-style byte token `<0xAB>`.
fn parse_byte_token(t: &str) -> Option<u8> {
    let hex = t.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn tokenizer_is_send_sync() {
        assert_send_sync::<Tokenizer>();
    }
}
