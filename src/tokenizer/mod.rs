//! Text <-> token ids for GGUF vocabularies.
//!
//! Supported: `tokenizer.ggml.model == "gpt2"` (byte-level BPE), with llama.cpp's
//! pre-tokenizers (see [`PreTokenizerKind::from_pre`]), and `"llama"` (SentencePiece BPE by
//! score with byte fallback, see `spm.rs`). Other models return
//! [`TokenizerError::Unsupported`].
//!
//! Encoding follows llama.cpp's `llama_vocab::impl::tokenize`:
//! 1. special-token partition (both models): control (type 3), user-defined (type 4) and
//!    unknown (type 2) tokens that occur literally in the text are cut out as single ids,
//!    longest token text first. Control and unknown tokens only when `parse_special` is true;
//!    user-defined tokens always (as llama.cpp and Hugging Face do: they are added *words*, not
//!    markup);
//! 2. BPE (`gpt2`): each remaining text fragment is split by the pre-tokenizer regexes of
//!    `pre`; each piece is BPE-merged over its bytes (byte-level alphabet), and symbols that are
//!    not vocabulary entries fall back to the tokens of their characters;
//! 3. SPM (`llama`): each remaining text fragment has its spaces replaced by `▁` and, when
//!    `add_space_prefix` is set and the fragment is the first one or follows a special token
//!    (llama.cpp's `is_prev_special`, which is true after *every* special token, not only at
//!    the start of the text), a `▁` prepended; then it is merged by score as a whole (no
//!    pre-tokenizer), with `<0xNN>` byte fallback.
//!
//! Decoding is byte-exact: [`Tokenizer::token_bytes`] gives the raw bytes of a token (SPM: `▁`
//! becomes a space, `<0xNN>` the byte). [`Tokenizer::decode`] additionally drops the space
//! prefix of the first token for SPM vocabularies with `add_space_prefix`, as llama.cpp's
//! detokenizer does.
//!
//! `pre` handling: every `tokenizer.ggml.pre` value llama.cpp's `llama-vocab.cpp` knows maps to
//! its split rules and flags (see [`PreTokenizerKind::from_pre`]). A missing `pre` or `"default"`
//! uses llama.cpp's DEFAULT set. Any other value is [`TokenizerError::Unsupported`] naming it, as
//! llama.cpp refuses it too; so are the names llama.cpp runs without byte-level encoding
//! (`gemma4`, `granite-embed-multi-311m`, `sarvam-moe`, `whitespace`).
//!
//! Known differences from llama.cpp: no `lstrip`/`rstrip` handling of special tokens (GGUF
//! does not carry those flags; llama.cpp hard-codes them for a few models), no
//! `clean_up_tokenization_spaces` on decode, and Unicode categories come from the `regex`
//! crate's tables rather than llama.cpp's (differences only for very recently assigned
//! characters). BPE: a byte with no token in the vocabulary is dropped on encode, as llama.cpp
//! does. SPM: a character with neither a token nor byte tokens becomes the unknown token
//! (llama.cpp aborts there); `remove_extra_whitespaces` and the Unigram/`precompiled_charsmap`
//! normalisers are not applied (llama.cpp's SPM path does not apply them either). As in
//! llama.cpp and SentencePiece, a literal `▁` in the text is the same as a space.
//!
//! Special tokens are found with one pass of a byte trie over the text (Gemma 3 has ~6,400
//! control/user-defined tokens), then cut out in llama.cpp's order.

mod bpe;
mod bytelevel;
mod gguf_vocab;
mod index;
mod pretokenize;
mod spm;
mod stream;
pub use gguf_vocab::end_of_generation_ids;

pub use pretokenize::PreTokenizerKind;
pub use stream::{StreamDecoder, Utf8Assembler};

use bpe::{BpeModel, BpeScratch};
use index::TextIndex;
use pretokenize::PreTokenizer;
use spm::{SpmModel, SpmScratch};

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
    /// `tokenizer.ggml.model`: `"gpt2"` (byte-level BPE) or `"llama"` (SentencePiece).
    pub model: String,
    /// `tokenizer.ggml.pre`: pre-tokenizer name (`"smollm"`, `"llama-bpe"`, `"qwen2"`, ...).
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type` (see [`token_type`]); empty means all normal.
    pub token_types: Vec<i32>,
    /// `tokenizer.ggml.merges`: `"left right"` rules in rank order.
    pub merges: Vec<String>,
    /// `tokenizer.ggml.scores`: merge priorities for SPM (empty: all 0); unused by BPE.
    pub scores: Vec<f32>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    /// `tokenizer.ggml.unknown_token_id`: emitted by SPM for a character that has neither a
    /// token nor byte tokens. Unused by BPE.
    pub unk_id: Option<u32>,
    pub add_bos: bool,
    /// `tokenizer.ggml.add_space_prefix` (SPM only): prepend `▁` to the text. Note that
    /// `Vocab::default()` has `false`, while [`Tokenizer::from_gguf`] uses llama.cpp's default
    /// `true` for `llama` vocabularies whose file lacks the key.
    pub add_space_prefix: bool,
}

/// Which tokenization algorithm a [`Tokenizer`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerModel {
    /// `tokenizer.ggml.model == "gpt2"`: byte-level BPE with merge ranks.
    Bpe,
    /// `tokenizer.ggml.model == "llama"`: SentencePiece BPE by score with byte fallback.
    Spm,
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

/// The model-specific part of a [`Tokenizer`].
enum Algo {
    Bpe {
        pre: PreTokenizer,
        ignore_merges: bool,
        bpe: BpeModel,
        byte_chars: Box<[char; 256]>,
        /// Set for vocabularies of raw UTF-8 strings (no byte-level alphabet).
        raw: Option<Box<RawUtf8>>,
    },
    Spm(SpmModel),
}

/// How llama.cpp's `byte_encode = false` pre-tokenizers run BPE (Gemma 4 style).
struct RawUtf8 {
    /// Spaces are written `▁` before splitting.
    escape_spaces: bool,
    /// A word made of line breaks only is taken whole when it is a token (Gemma 4).
    newline_words: bool,
    /// The `<0xXX>` token of each byte, for symbols that are not tokens.
    byte_tokens: [Option<u32>; 256],
}

pub struct Tokenizer {
    pre_name: Option<String>,
    algo: Algo,
    /// The vocabulary texts and the text -> id index.
    vocab: TextIndex,
    types: Vec<i32>,
    /// Decoded bytes of all tokens, concatenated; token `i` is `bytes[offsets[i]..offsets[i+1]]`.
    bytes: Vec<u8>,
    offsets: Vec<usize>,
    /// Sorted by text length, longest first (ties by id).
    specials: Vec<Special>,
    /// Byte trie over the special token texts, to find which ones occur in a text.
    special_trie: SpecialTrie,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    add_bos: bool,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab.len())
            .field("model", &self.model())
            .field("pre", &self.pre_name)
            .field("pre_kind", &self.pre_tokenizer())
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
    /// Builds a tokenizer for `vocab.model` `"gpt2"` (byte-level BPE) or `"llama"`
    /// (SentencePiece); other models are [`TokenizerError::Unsupported`]. For BPE, a `pre`
    /// value llama.cpp does not run as byte-level BPE is [`TokenizerError::Unsupported`] too;
    /// SPM ignores `pre`.
    pub fn new(vocab: Vocab) -> Result<Tokenizer, TokenizerError> {
        let model = match vocab.model.as_str() {
            "gpt2" => TokenizerModel::Bpe,
            "llama" => TokenizerModel::Spm,
            other => {
                return Err(TokenizerError::Unsupported(format!(
                    "tokenizer.ggml.model = {other:?} (implemented: \"gpt2\" byte-level BPE, \
                     \"llama\" SentencePiece)"
                )))
            }
        };
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
        if model == TokenizerModel::Spm && !vocab.scores.is_empty() && vocab.scores.len() != n {
            return Err(TokenizerError::InvalidVocab(format!(
                "{} scores for {n} tokens",
                vocab.scores.len()
            )));
        }
        for (what, id) in [("bos", vocab.bos_id), ("eos", vocab.eos_id), ("unk", vocab.unk_id)] {
            if let Some(id) = id {
                if id as usize >= n {
                    return Err(TokenizerError::InvalidVocab(format!(
                        "{what} id {id} out of range ({n} tokens)"
                    )));
                }
            }
        }

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
        let text_to_id = TextIndex::new(texts); // last duplicate wins, as llama.cpp
        let texts = text_to_id.texts();

        let mut bytes = Vec::new();
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        let algo = match model {
            TokenizerModel::Bpe => {
                let Some((kind, ignore_merges)) = PreTokenizerKind::from_pre(vocab.pre.as_deref()) else {
                    let name = vocab.pre.as_deref().unwrap_or_default();
                    return Err(TokenizerError::Unsupported(format!(
                        "tokenizer.ggml.pre = {name:?}: it is not a pre-tokenizer llama.cpp knows"
                    )));
                };
                let pre = PreTokenizer::new(kind)?;
                let byte_chars = bytelevel::byte_to_char_table();
                for (t, &ty) in texts.iter().zip(&types) {
                    match ty {
                        token_type::CONTROL | token_type::USER_DEFINED => {
                            bytes.extend_from_slice(t.as_bytes())
                        }
                        // llama.cpp's token_to_piece for raw UTF-8 vocabularies that escape spaces.
                        token_type::NORMAL if kind.escapes_spaces() => unescape_spaces(t, &mut bytes),
                        token_type::BYTE => match parse_byte_token(t) {
                            Some(b) => bytes.push(b),
                            None => bytelevel::decode_token_text(t, &mut bytes),
                        },
                        _ => bytelevel::decode_token_text(t, &mut bytes),
                    }
                    offsets.push(bytes.len());
                }
                let raw = (!kind.byte_level()).then(|| {
                    let mut byte_tokens = [None; 256];
                    for (b, slot) in byte_tokens.iter_mut().enumerate() {
                        *slot = text_to_id.get(&format!("<0x{b:02X}>"));
                    }
                    Box::new(RawUtf8 { escape_spaces: kind.escapes_spaces(), newline_words: kind == PreTokenizerKind::Gemma4, byte_tokens })
                });
                let alphabet = raw.is_none().then_some(&byte_chars);
                let bpe = BpeModel::new(n as u32, &text_to_id, alphabet, &vocab.merges);
                Algo::Bpe {
                    pre,
                    ignore_merges,
                    bpe,
                    byte_chars: Box::new(byte_chars),
                    raw,
                }
            }
            TokenizerModel::Spm => {
                // As llama.cpp's token_to_piece for SPM: normal tokens with `▁` as space,
                // control/user-defined/unknown tokens as their literal text, byte tokens as
                // the byte; unused and undefined tokens have no text.
                bytes.reserve(texts.iter().map(String::len).sum());
                for (t, &ty) in texts.iter().zip(&types) {
                    match ty {
                        token_type::NORMAL => unescape_spaces(t, &mut bytes),
                        token_type::CONTROL | token_type::USER_DEFINED | token_type::UNKNOWN => {
                            bytes.extend_from_slice(t.as_bytes())
                        }
                        token_type::BYTE => match parse_byte_token(t) {
                            Some(b) => bytes.push(b),
                            None => unescape_spaces(t, &mut bytes),
                        },
                        _ => {}
                    }
                    offsets.push(bytes.len());
                }
                let spm = SpmModel::new(
                    n,
                    &vocab.scores,
                    &text_to_id,
                    vocab.unk_id,
                    vocab.add_space_prefix,
                );
                Algo::Spm(spm)
            }
        };

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
        let special_trie = SpecialTrie::new(specials.iter().map(|s| s.text.as_str()));

        Ok(Tokenizer {
            pre_name: vocab.pre,
            algo,
            vocab: text_to_id,
            types,
            bytes,
            offsets,
            specials,
            special_trie,
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
        match &self.algo {
            Algo::Bpe {
                pre,
                ignore_merges,
                bpe,
                byte_chars,
                raw,
            } => {
                let mut pieces = Vec::new();
                let mut scratch_ranges = Vec::new();
                let mut scratch = BpeScratch::default();
                let mut encoded = String::new();
                for frag in fragments {
                    match frag {
                        Fragment::Token(id) => out.push(id),
                        Fragment::Text(start, end) if raw.is_some() => {
                            let raw = raw.as_deref().expect("checked");
                            let frag_text = &text[start..end];
                            let escaped = if raw.escape_spaces { frag_text.replace(' ', "\u{2581}") } else { frag_text.to_string() };
                            pre.split(&escaped, &mut pieces, &mut scratch_ranges);
                            for &(s, e) in &pieces {
                                let word = &escaped[s..e];
                                if raw.newline_words && word.bytes().all(|b| b == b'\n') {
                                    if let Some(id) = self.vocab.get(word) {
                                        out.push(id);
                                        continue;
                                    }
                                }
                                bpe.merge_raw_word(word, &self.vocab, &raw.byte_tokens, &mut scratch, &mut out);
                            }
                        }
                        Fragment::Text(start, end) => {
                            let frag_text = &text[start..end];
                            pre.split(frag_text, &mut pieces, &mut scratch_ranges);
                            for &(s, e) in &pieces {
                                let word = &frag_text.as_bytes()[s..e];
                                if *ignore_merges {
                                    encoded.clear();
                                    encoded.extend(word.iter().map(|&b| byte_chars[usize::from(b)]));
                                    if let Some(id) = self.vocab.get(&encoded) {
                                        out.push(id);
                                        continue;
                                    }
                                }
                                bpe.merge_word(word, &mut scratch, &mut out);
                            }
                        }
                    }
                }
            }
            Algo::Spm(spm) => {
                let mut scratch = SpmScratch::default();
                // llama.cpp: the space prefix goes before the first fragment and before every
                // fragment that follows a special token.
                let mut prev_special = true;
                for frag in fragments {
                    match frag {
                        Fragment::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                        Fragment::Text(start, end) => {
                            let prefix = spm.add_space_prefix && prev_special;
                            SpmModel::escape(&text[start..end], prefix, &mut scratch.text);
                            spm.encode_escaped(&self.vocab, &mut scratch, &mut out);
                            prev_special = false;
                        }
                    }
                }
            }
        }
        out
    }

    /// Splits `text` into raw-text fragments and special-token ids, as llama.cpp's
    /// `tokenizer_st_partition`: for each special token, longest first, every occurrence in
    /// every remaining text fragment is cut out. Only the special tokens that occur somewhere
    /// in `text` (found in one pass with a trie) are tried, which does not change the result.
    fn partition_special(&self, text: &str, parse_special: bool) -> Vec<Fragment> {
        let mut frags = vec![Fragment::Text(0, text.len())];
        let present = self.special_trie.present(text.as_bytes());
        if present.is_empty() {
            return frags;
        }
        let mut next = Vec::new();
        for &si in &present {
            let sp = &self.specials[si as usize];
            if sp.needs_parse_special && !parse_special {
                continue;
            }
            let needle = sp.text.as_str();
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

    /// The raw bytes token `id` stands for. BPE: the byte-level decoded text for normal
    /// tokens. SPM: the text with `▁` turned back into spaces for normal tokens, the byte for
    /// `<0xNN>` byte tokens, nothing for unused tokens. Both: the literal text for control and
    /// user-defined tokens (e.g. `b"<|im_end|>"`). Empty for ids out of range.
    ///
    /// This is the raw piece: for SPM vocabularies with `add_space_prefix`, the first token of
    /// an encoded text starts with the space that encoding added (`"▁Hello"` gives
    /// `b" Hello"`); [`Tokenizer::decode`] drops it, streaming callers that start from the
    /// first token may want to as well (see [`Tokenizer::add_space_prefix`]).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        let i = id as usize;
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&a), Some(&b)) => &self.bytes[a..b],
            _ => &[],
        }
    }

    /// Concatenated token bytes as (lossy) UTF-8. Ids out of range are skipped.
    ///
    /// For SPM vocabularies with `add_space_prefix`, one leading space of the first token is
    /// dropped, as llama.cpp's `llama_detokenize` does (so `decode(encode(s)) == s` for text
    /// without special tokens). As there, only `ids[0]` is looked at: a first token without a
    /// leading space (e.g. BOS) disables the stripping.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            let piece = self.token_bytes(id);
            let strip = i == 0 && self.add_space_prefix() && piece.first() == Some(&b' ');
            bytes.extend_from_slice(if strip { &piece[1..] } else { piece });
        }
        match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }

    /// Which algorithm this tokenizer runs (from `tokenizer.ggml.model`).
    pub fn model(&self) -> TokenizerModel {
        match self.algo {
            Algo::Bpe { .. } => TokenizerModel::Bpe,
            Algo::Spm(_) => TokenizerModel::Spm,
        }
    }

    /// SPM with `tokenizer.ggml.add_space_prefix`: encoding prepends `▁` to the text (and to
    /// text after a special token). Always false for BPE.
    pub fn add_space_prefix(&self) -> bool {
        match &self.algo {
            Algo::Spm(spm) => spm.add_space_prefix,
            Algo::Bpe { .. } => false,
        }
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
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
        self.vocab.get(text)
    }

    /// The vocabulary spelling of token `id`.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.texts().get(id as usize).map(String::as_str)
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
    /// testing. SPM does not pre-tokenize: the whole text is one piece.
    pub fn pre_tokenize<'t>(&self, text: &'t str) -> Vec<&'t str> {
        match &self.algo {
            Algo::Bpe { pre, .. } => {
                let (mut pieces, mut scratch) = (Vec::new(), Vec::new());
                pre.split(text, &mut pieces, &mut scratch);
                pieces.iter().map(|&(s, e)| &text[s..e]).collect()
            }
            Algo::Spm(_) => {
                if text.is_empty() {
                    Vec::new()
                } else {
                    vec![text]
                }
            }
        }
    }

    /// The pre-tokenizer family in use. SPM vocabularies report `Default` (llama.cpp's
    /// pre-type for them), although SPM does not split the text at all.
    pub fn pre_tokenizer(&self) -> PreTokenizerKind {
        match &self.algo {
            Algo::Bpe { pre, .. } => pre.kind,
            Algo::Spm(_) => PreTokenizerKind::Default,
        }
    }
}

/// Appends `t` with every `▁` (U+2581) replaced by a space.
fn unescape_spaces(t: &str, out: &mut Vec<u8>) {
    let mut rest = t;
    while let Some(pos) = rest.find('\u{2581}') {
        out.extend_from_slice(&rest.as_bytes()[..pos]);
        out.push(b' ');
        rest = &rest[pos + '\u{2581}'.len_utf8()..];
    }
    out.extend_from_slice(rest.as_bytes());
}

/// A byte trie over the special token texts, answering "which of them occur in this text"
/// in one pass over the text (instead of one substring search per special token: Gemma 3
/// has some 6,400 of them).
struct SpecialTrie {
    /// Children of node `i`: `edges[first[i]..first[i + 1]]`, sorted by byte.
    first: Vec<u32>,
    edges: Vec<(u8, u32)>,
    /// Special-token indices ending at node `i`: `ends[end_first[i]..end_first[i + 1]]`.
    end_first: Vec<u32>,
    ends: Vec<u32>,
    /// Number of special tokens indexed.
    n: usize,
}

impl SpecialTrie {
    /// `texts[i]` is special token `i` (in [`Tokenizer::specials`] order).
    fn new<'a>(texts: impl Iterator<Item = &'a str>) -> SpecialTrie {
        // Build with per-node sorted child lists, then flatten.
        let mut children: Vec<Vec<(u8, u32)>> = vec![Vec::new()];
        let mut node_ends: Vec<Vec<u32>> = vec![Vec::new()];
        let mut n = 0;
        for (i, t) in texts.enumerate() {
            n = i + 1;
            if t.is_empty() {
                continue;
            }
            let mut node = 0usize;
            for &b in t.as_bytes() {
                node = match children[node].binary_search_by_key(&b, |&(c, _)| c) {
                    Ok(k) => children[node][k].1 as usize,
                    Err(k) => {
                        let new = children.len();
                        children[node].insert(k, (b, new as u32));
                        children.push(Vec::new());
                        node_ends.push(Vec::new());
                        new
                    }
                };
            }
            node_ends[node].push(i as u32);
        }
        let mut first = Vec::with_capacity(children.len() + 1);
        let mut edges = Vec::new();
        for c in &children {
            first.push(edges.len() as u32);
            edges.extend_from_slice(c);
        }
        first.push(edges.len() as u32);
        let mut end_first = Vec::with_capacity(children.len() + 1);
        let mut ends = Vec::new();
        for e in &node_ends {
            end_first.push(ends.len() as u32);
            ends.extend_from_slice(e);
        }
        end_first.push(ends.len() as u32);
        SpecialTrie {
            first,
            edges,
            end_first,
            ends,
            n,
        }
    }

    fn child(&self, node: usize, b: u8) -> Option<usize> {
        let kids = &self.edges[self.first[node] as usize..self.first[node + 1] as usize];
        kids.binary_search_by_key(&b, |&(c, _)| c)
            .ok()
            .map(|k| kids[k].1 as usize)
    }

    /// Indices of the special tokens that occur in `text`, ascending.
    fn present(&self, text: &[u8]) -> Vec<u32> {
        if self.edges.is_empty() {
            return Vec::new();
        }
        let mut seen = vec![false; self.n];
        let mut any = false;
        for start in 0..text.len() {
            let mut node = 0usize;
            for &b in &text[start..] {
                let Some(next) = self.child(node, b) else {
                    break;
                };
                node = next;
                for &i in &self.ends[self.end_first[node] as usize..self.end_first[node + 1] as usize] {
                    seen[i as usize] = true;
                    any = true;
                }
            }
        }
        if !any {
            return Vec::new();
        }
        (0..seen.len() as u32).filter(|&i| seen[i as usize]).collect()
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
