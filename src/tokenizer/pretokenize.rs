//! Pre-tokenization: splitting text into "words" before BPE, by the regular expressions that
//! llama.cpp associates with each `tokenizer.ggml.pre` value.
//!
//! Semantics (same as llama.cpp's `unicode_regex_split`): the expressions of a pre-tokenizer
//! are applied one after another. Each one runs separately on every piece produced by the
//! previous one (so look-arounds and `$` see the piece's edges as the end of the input) and
//! splits it into its matches *and* the unmatched text between them; nothing is dropped.
//!
//! The patterns are llama.cpp's (its "adapted" forms, e.g. `(?:'[sS]|...)` instead of
//! `(?i:'s|...)`, and the `[^a-z]`/`[^A-Z]` look-ahead forms instead of `\p{Lu}`/`\p{Ll}`), run
//! with `fancy-regex`, which supports the look-aheads and Unicode classes they use. llama.cpp
//! runs the GPT-2 and LLaMA-3 patterns through hand-written matchers equivalent to the
//! regexes; the split-keeps-gaps rule makes the GPT-2 pattern's missing trailing `|\s+`
//! alternative irrelevant (an unmatched single whitespace character becomes its own piece
//! either way).

use fancy_regex::Regex;

use super::TokenizerError;

/// GPT-2's pattern (llama.cpp's spelling, without the trailing `|\s+`).
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const SEED_CODER: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+";

const BAILINGMOE: &str = r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+";

const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const DEEPSEEK3_MAIN: &str = r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##;

const PORO: &str = r" ?[^(\s|.,!?\x{2026}\x{3002}\x{FF0C}\x{3001}\x{0964}\x{06D4}\x{060C})]+";

/// The pre-tokenizer families this module knows, named after llama.cpp's
/// `LLAMA_VOCAB_PRE_TYPE_*` (one family can serve several `tokenizer.ggml.pre` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizerKind {
    /// llama.cpp's `DEFAULT` (missing `pre`, or `"default"`).
    Default,
    Gpt2,
    /// `\p{N}` then GPT-2: smollm, starcoder, refact, command-r, codeshell, exaone, minerva-7b.
    Smollm,
    Llama3,
    Qwen2,
    Falcon,
    DeepseekCoder,
    Deepseek3,
    Poro,
    Viking,
    Tekken,
    Chameleon,
    Gpt4o,
    SeedCoder,
    BailingMoe,
}

impl PreTokenizerKind {
    /// Maps a `tokenizer.ggml.pre` value to its family as llama.cpp does, plus a flag saying
    /// whether BPE merges are skipped for words that are whole vocabulary entries
    /// (llama.cpp's `ignore_merges`). `None` when the name is not known here.
    pub fn from_pre(pre: Option<&str>) -> Option<(PreTokenizerKind, bool)> {
        use PreTokenizerKind::*;
        let Some(pre) = pre else {
            return Some((Default, false));
        };
        let kind = match pre {
            "" | "default" => (Default, false),
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral"
            | "midm-2.0" | "lfm2" => (Llama3, true),
            "dbrx" | "smaug-bpe" | "glm4" | "chatglm-bpe" => (Llama3, false),
            "deepseek-coder" => (DeepseekCoder, false),
            "deepseek-v3" | "hunyuan-dense" => (Deepseek3, false),
            "falcon" => (Falcon, false),
            "gpt2" | "gpt-2" | "mpt" | "olmo" | "jais" | "phi-2" | "jina-es" | "jina-de"
            | "gigachat" | "jina-v2-es" | "jina-v2-de" | "a.x-4.0" | "mellum" | "jina-v1-en"
            | "jina-v2-code" | "roberta-bpe" | "exaone4" | "trillion" | "granite-docling" => {
                (Gpt2, false)
            }
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva-7b" => (Smollm, false),
            "qwen2" | "deepseek-r1-qwen" | "kormo" | "stablelm2" | "megrez" | "hunyuan"
            | "grok-2" => (Qwen2, false),
            "poro-chat" | "bloom" | "gpt3-finnish" => (Poro, false),
            "viking" => (Viking, false),
            "tekken" => (Tekken, true),
            "chameleon" => (Chameleon, false),
            "gpt-4o" | "llama4" | "minimax-m2" => (Gpt4o, false),
            "seed-coder" => (SeedCoder, false),
            "bailingmoe" | "bailingmoe2" | "llada-moe" => (BailingMoe, false),
            _ => return None,
        };
        Some(kind)
    }

    fn patterns(self) -> Vec<&'static str> {
        use PreTokenizerKind::*;
        match self {
            Default => vec![r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"],
            Gpt2 => vec![GPT2],
            Smollm => vec![r"\p{N}", GPT2],
            Llama3 => vec![LLAMA3],
            Qwen2 => vec![QWEN2],
            Falcon => vec![r"[\p{P}\$\+<=>\^~\|`]+", GPT2, r"[0-9][0-9][0-9]"],
            DeepseekCoder => vec![
                r"[\r\n]",
                r"\s?\p{L}+",
                r"\s?\p{P}+",
                r"[\x{4E00}-\x{9FA5}\x{0800}-\x{4E00}\x{AC00}-\x{D7FF}]+",
                r"\p{N}",
            ],
            Deepseek3 => vec![
                r"\p{N}{1,3}",
                r"[\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+",
                DEEPSEEK3_MAIN,
            ],
            Poro => vec![PORO],
            Viking => vec![PORO, r"\p{N}"],
            Tekken => vec![TEKKEN],
            Chameleon => vec![
                r"<sentinel:[0-9]+>",
                r"(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
                "([\t\n]|    |  )",
                r"\p{N}",
                r"[\p{P}!-/:-@\[-`{-~]",
                GPT2,
            ],
            Gpt4o => vec![GPT4O],
            SeedCoder => vec![SEED_CODER],
            BailingMoe => vec![BAILINGMOE],
        }
    }
}

/// A compiled pre-tokenizer: the regex cascade of one [`PreTokenizerKind`].
pub(crate) struct PreTokenizer {
    pub(crate) kind: PreTokenizerKind,
    regexes: Vec<Regex>,
}

impl PreTokenizer {
    pub(crate) fn new(kind: PreTokenizerKind) -> Result<PreTokenizer, TokenizerError> {
        let regexes = kind
            .patterns()
            .into_iter()
            .map(|p| Regex::new(p).map_err(|e| TokenizerError::Regex(format!("{p:?}: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PreTokenizer { kind, regexes })
    }

    /// Splits `text` into pieces, returned as byte ranges that tile `text` in order (empty
    /// pieces are dropped). `scratch` is a reusable buffer.
    pub(crate) fn split(
        &self,
        text: &str,
        out: &mut Vec<(usize, usize)>,
        scratch: &mut Vec<(usize, usize)>,
    ) {
        out.clear();
        if text.is_empty() {
            return;
        }
        out.push((0, text.len()));
        for re in &self.regexes {
            scratch.clear();
            for &(start, end) in out.iter() {
                split_piece(re, text, start, end, scratch);
            }
            std::mem::swap(out, scratch);
        }
    }
}

/// Splits `text[start..end]` by the matches of `re`, keeping the unmatched gaps.
fn split_piece(re: &Regex, text: &str, start: usize, end: usize, out: &mut Vec<(usize, usize)>) {
    let piece = &text[start..end];
    let mut last = 0usize;
    for m in re.find_iter(piece) {
        let m = match m {
            Ok(m) => m,
            // Only possible when the backtracking limit is hit (pathological input): keep
            // the rest of the piece whole rather than failing.
            Err(_) => break,
        };
        if m.start() > last {
            out.push((start + last, start + m.start()));
        }
        if m.end() > m.start() {
            out.push((start + m.start(), start + m.end()));
        }
        last = last.max(m.end());
    }
    if last < piece.len() {
        out.push((start + last, end));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(kind: PreTokenizerKind, text: &str) -> Vec<String> {
        let p = PreTokenizer::new(kind).unwrap();
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        p.split(text, &mut out, &mut scratch);
        out.iter().map(|&(s, e)| text[s..e].to_string()).collect()
    }

    #[test]
    fn all_patterns_compile() {
        use PreTokenizerKind::*;
        for k in [
            Default,
            Gpt2,
            Smollm,
            Llama3,
            Qwen2,
            Falcon,
            DeepseekCoder,
            Deepseek3,
            Poro,
            Viking,
            Tekken,
            Chameleon,
            Gpt4o,
            SeedCoder,
            BailingMoe,
        ] {
            PreTokenizer::new(k).unwrap();
        }
    }

    #[test]
    fn gpt2_whitespace_and_contractions() {
        let p = pieces(PreTokenizerKind::Gpt2, "Hello  world's\n\n  x   ");
        assert_eq!(p, ["Hello", " ", " world", "'s", "\n\n ", " x", "   "]);
    }

    #[test]
    fn smollm_digits() {
        let p = pieces(PreTokenizerKind::Smollm, "ab 123 x1");
        assert_eq!(p, ["ab", " ", "1", "2", "3", " x", "1"]);
    }

    #[test]
    fn llama3_digits_and_newlines() {
        let p = pieces(PreTokenizerKind::Llama3, "x 12345\n\n  y's");
        assert_eq!(p, ["x", " ", "123", "45", "\n\n", " ", " y", "'s"]);
    }
}
