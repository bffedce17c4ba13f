//! Pre-tokenization: splitting text into "words" before BPE, by the regular expressions that
//! llama.cpp associates with each `tokenizer.ggml.pre` value (`llama-vocab.cpp`).
//!
//! Semantics (same as llama.cpp's `unicode_regex_split`): the expressions of a pre-tokenizer
//! are applied one after another. Each one runs separately on every piece produced by the
//! previous one (so look-arounds and `$` see the piece's edges as the end of the input) and
//! splits it into its matches *and* the unmatched text between them; nothing is dropped.
//!
//! The patterns are llama.cpp's (its "adapted" forms, e.g. `(?:'[sS]|...)` instead of
//! `(?i:'s|...)`, and the `[^a-z]`/`[^A-Z]` look-ahead forms instead of `\p{Lu}`/`\p{Ll}`), run
//! with `fancy-regex`, which supports the look-aheads and Unicode classes they use. Where
//! llama.cpp's regex engine gives a pattern another meaning, the pattern here is written the way
//! llama.cpp runs it:
//! - patterns with `\p{..}` run on a "collapsed" text in which `\p{Lu}`, `\p{Ll}`, `\p{Lt}`,
//!   `\p{Lm}` and `\p{Lo}` all mean *any letter*; so they are written `\p{L}` here (youtu,
//!   tiny_aya);
//! - patterns without `\p{..}` run on `std::wregex`, where `\d` and `\b` are ASCII and a
//!   non-ASCII space is seen as `\x0B` (so U+3000 never matches a class that lists it:
//!   deepseek-llm);
//! - the custom splitters of `unicode.cpp` (GPT-2, LLaMA-3, Kimi-K2, AFMoE digits) are matched by
//!   equivalent expressions or by [`Rule`]s written out in code. The split-keeps-gaps rule makes
//!   the GPT-2 pattern's missing trailing `|\s+` alternative irrelevant.
//!
//! Four names run BPE over raw UTF-8 instead of GPT-2's byte-level alphabet
//! ([`PreTokenizerKind::byte_level`] is false: `gemma4`, `granite-embed-multi-311m`, `sarvam-moe`,
//! `whitespace`), the first three with spaces written `▁` ([`PreTokenizerKind::escapes_spaces`]).
//! A name llama.cpp does not know is refused, as llama.cpp refuses it:
//! [`PreTokenizerKind::from_pre`] returns `None` and the tokenizer reports `Unsupported` naming it.

use fancy_regex::Regex;

use super::TokenizerError;

/// GPT-2's pattern (llama.cpp's spelling, without the trailing `|\s+`).
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

/// Case-insensitive English contractions, llama.cpp's adapted `(?i:'s|'t|'re|'ve|'m|'ll|'d)`.
macro_rules! contractions {
    () => {
        r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
    };
}

const LLAMA3: &str = concat!(contractions!(), r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+");

const JAIS2: &str = concat!(
    contractions!(),
    r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+",
    r"|\s{512}(?!\S)|\s{256}(?!\S)|\s{128}(?!\S)|\s{64}(?!\S)|\s{32}(?!\S)|\s{16}(?!\S)|\s{8}(?!\S)|\s{4}(?!\S)|\s{1,2}(?!\S)|\s{1}"
);

const QWEN2: &str = concat!(contractions!(), r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+");

/// Qwen 3.5: letters with their combining marks, marks never in the punctuation run.
const QWEN35: &str =
    concat!(contractions!(), r"|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+");

/// Qwen 2 without the contractions (Turkish apostrophe suffixes stay attached).
const UFAKZEKA: &str = r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const MINICPM5: &str = concat!(contractions!(), r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+");

const EXAONE_MOE: &str =
    concat!(contractions!(), r"|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+");

const SEED_CODER: &str = concat!(contractions!(), r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+");

const BAILINGMOE: &str = r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+";

const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const GPT4O: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+",
    contractions!(),
    r"?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*",
    contractions!(),
    r"?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
);

/// GPT-4o's look-aheads with combining marks attached to their letters.
const GRANITE_EMB_MULTI: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))*((?=[\p{L}\p{M}])([^A-Z]))+",
    contractions!(),
    r"?|[^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))+((?=[\p{L}\p{M}])([^A-Z]))*",
    contractions!(),
    r"?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
);

/// Tiny Aya's main pattern as llama.cpp runs it: its `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+`
/// (and the mirrored alternative) mean `[\p{L}\p{M}]*[\p{L}\p{M}]+` there, which matches exactly
/// what `[\p{L}\p{M}]+` matches.
const TINY_AYA: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+",
    contractions!(),
    r"?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
);

/// Youtu's main pattern, likewise (its digits are single).
const YOUTU: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+",
    contractions!(),
    r"?|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
);

/// Hangul, CJK punctuation, Bopomofo, CJK ideographs and kana runs (youtu's first pass).
const YOUTU_CJK: &str = r"[\x{AC00}-\x{D7A3}\x{3131}-\x{318E}]+|[\x{FF01}\x{2026}\x{201C}\x{201D}\x{2018}\x{2019}\x{2014}\x{FF1A}\x{FF1B}\x{FF0C}\x{3001}-\x{303F}\x{FE30}-\x{FE4F}]+|[\x{3105}-\x{312F}]+|[\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+";

const DEEPSEEK3_CJK: &str = r"[\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+";

const DEEPSEEK3_MAIN: &str = r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##;

/// Spark 2.5: DeepSeek-V3's main pattern with single line breaks and no line breaks after punctuation.
const SPARK2_5_MAIN: &str = r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+|[\r\n]|\s+(?!\S)|\s+"##;

/// AFMoE's CJK and South-East Asian script blocks.
const AFMOE_SCRIPTS: &str = r"[\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{F900}-\x{FAFF}\x{3040}-\x{309F}\x{30A0}-\x{30FF}\x{FF65}-\x{FF9F}\x{2F00}-\x{2FDF}\x{0E00}-\x{0E7F}\x{0E80}-\x{0EFF}\x{1780}-\x{17FF}\x{1000}-\x{109F}\x{AA60}-\x{AA7F}\x{A9E0}-\x{A9FF}\x{AC00}-\x{D7AF}\x{1100}-\x{11FF}]+";

/// DeepSeek LLM's letters: the cased letters (Lu, Ll, Lt) of its tokenizer.json, written out.
const DEEPSEEK_LLM_LETTERS: &str = r"\s?[A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293}\x{295}-\x{2AF}\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}\x{388}-\x{38A}\x{38C}\x{38E}-\x{3A1}\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-\x{556}\x{10A0}-\x{10C5}\x{13A0}-\x{13F5}\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}\x{1CBD}-\x{1CBF}\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A}\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D}\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B}\x{1F5D}\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4}\x{1FC6}-\x{1FCC}\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4}\x{1FF6}-\x{1FFC}\x{2102}\x{2107}\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124}\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134}\x{2139}\x{213C}-\x{213F}\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184}\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4}\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D}\x{A680}-\x{A69B}\x{A722}-\x{A76F}\x{A771}-\x{A787}\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF}\x{FB00}-\x{FB06}\x{FB13}-\x{FB17}\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A}\x{10400}-\x{1044F}\x{104B0}-\x{104D3}\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2}\x{118A0}-\x{118DF}\x{1E900}-\x{1E943}]+";

/// DeepSeek LLM's ASCII and full-width punctuation; its class also lists U+3000, which
/// llama.cpp's wregex never sees (a non-ASCII space becomes `\x0B`), so it starts at U+3001.
const DEEPSEEK_LLM_PUNCT: &str = r"\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3001}-\x{3002}]+";

const CJK_HANGUL: &str = r"[\x{4E00}-\x{9FA5}\x{0800}-\x{4E00}\x{AC00}-\x{D7FF}]+";

/// The Han ranges of llama.cpp's `unicode_cpt_is_han`.
macro_rules! han {
    () => {
        r"\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{20000}-\x{2A6DF}\x{2A700}-\x{2B73F}\x{2B740}-\x{2B81F}\x{2B820}-\x{2CEAF}\x{2CEB0}-\x{2EBEF}\x{F900}-\x{FAFF}\x{2F800}-\x{2FA1F}"
    };
}

/// Kimi-K2's custom splitter (`unicode_regex_split_custom_kimi_k2`) as one expression: Han runs,
/// then words of non-Han letters with an optional contraction, digits by three, the rest as LLaMA-3.
const KIMI_K2: &str = concat!(
    "[",
    han!(),
    r"]+|[^\r\n\p{L}\p{N}]?[\p{L}--[",
    han!(),
    "]]+",
    contractions!(),
    r"?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
);

const PORO: &str = r" ?[^(\s|.,!?\x{2026}\x{3002}\x{FF0C}\x{3001}\x{0964}\x{06D4}\x{060C})]+";

/// One pass of a pre-tokenizer: a regular expression, or a split llama.cpp writes out in code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    Regex(&'static str),
    /// AFMoE's `\p{AFMoE_digits}`: each run of digits in groups of three from its end (the
    /// leading 1–2 digits first); the text before a run stays glued to the run's first group.
    AfmoeDigits,
    /// SuperBPE's `(?=(\d{3})+(?!\d))`: an empty match (a cut) before every group of three ASCII
    /// digits counted from the end of their run.
    CutsBeforeThousands,
    /// Tiny Aya's `\d{1,3}(?=(?:\d{3})*\b)`: runs of ASCII digits that end at an ASCII word
    /// boundary, in groups of three from the end.
    DigitGroupsAtBoundary,
}

use Rule::Regex as R;

/// The pre-tokenizer families this module knows, named after llama.cpp's
/// `LLAMA_VOCAB_PRE_TYPE_*` (one family can serve several `tokenizer.ggml.pre` values; families
/// with the same expressions are merged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PreTokenizerKind {
    /// llama.cpp's `DEFAULT` (missing `pre`, or `"default"`).
    Default,
    Gpt2,
    /// `\p{N}` then GPT-2: smollm, starcoder, refact, command-r, codeshell, exaone, minerva-7b, mellum2.
    Smollm,
    Llama3,
    Jais2,
    Qwen2,
    Qwen35,
    Falcon,
    DeepseekLlm,
    DeepseekCoder,
    Deepseek3,
    Spark25,
    Youtu,
    Poro,
    Viking,
    Tekken,
    Chameleon,
    Gpt4o,
    GraniteEmbMulti,
    TinyAya,
    KimiK2,
    SuperBpe,
    SeedCoder,
    BailingMoe,
    Ufakzeka,
    Afmoe,
    Laguna,
    ExaoneMoe,
    Minicpm5,
    /// Gemma 4 style: lines only, raw UTF-8 with `▁` for spaces; a word of line breaks that is a
    /// token is taken whole.
    Gemma4,
    /// Sarvam: as Gemma 4 without the line-break rule.
    SarvamMoe,
    /// Runs of non-space characters, raw UTF-8.
    Whitespace,
}

impl PreTokenizerKind {
    /// Every family, for tests.
    pub const ALL: [PreTokenizerKind; 32] = {
        use PreTokenizerKind::*;
        [
            Default, Gpt2, Smollm, Llama3, Jais2, Qwen2, Qwen35, Falcon, DeepseekLlm, DeepseekCoder, Deepseek3, Spark25,
            Youtu, Poro, Viking, Tekken, Chameleon, Gpt4o, GraniteEmbMulti, TinyAya, KimiK2, SuperBpe, SeedCoder,
            BailingMoe, Ufakzeka, Afmoe, Laguna, ExaoneMoe, Minicpm5, Gemma4, SarvamMoe, Whitespace,
        ]
    };

    /// False for the families llama.cpp runs over raw UTF-8 (`byte_encode = false`): the
    /// vocabulary holds UTF-8 strings and `<0xXX>` byte tokens, not GPT-2's byte alphabet.
    pub fn byte_level(self) -> bool {
        !matches!(self, PreTokenizerKind::Gemma4 | PreTokenizerKind::SarvamMoe | PreTokenizerKind::Whitespace)
    }

    /// True when spaces are written `▁` before splitting (llama.cpp's `escape_whitespaces`).
    pub fn escapes_spaces(self) -> bool {
        matches!(self, PreTokenizerKind::Gemma4 | PreTokenizerKind::SarvamMoe)
    }

    /// Maps a `tokenizer.ggml.pre` value to its family as llama.cpp's `llama_vocab::impl::load`
    /// does, plus a flag saying whether BPE merges are skipped for words that are whole
    /// vocabulary entries (llama.cpp's `ignore_merges`). `None` for names llama.cpp does not know.
    pub fn from_pre(pre: Option<&str>) -> Option<(PreTokenizerKind, bool)> {
        use PreTokenizerKind::*;
        let Some(pre) = pre else {
            return Some((Default, false));
        };
        let kind = match pre {
            "" | "default" => (Default, false),
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2"
            | "jina-v5-nano" => (Llama3, true),
            "dbrx" | "smaug-bpe" | "glm4" | "chatglm-bpe" => (Llama3, false),
            "minicpm5" => (Minicpm5, true),
            "jais-2" => (Jais2, false),
            "deepseek-llm" => (DeepseekLlm, false),
            "deepseek-coder" => (DeepseekCoder, false),
            "deepseek-v3" | "hunyuan-dense" | "hy_v4" | "joyai-llm" => (Deepseek3, false),
            "spark2_5" => (Spark25, false),
            "youtu" => (Youtu, true),
            "falcon" => (Falcon, false),
            "gpt-2" | "mpt" | "olmo" | "jais" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es"
            | "jina-v2-de" | "a.x-4.0" | "mellum" | "modern-bert" | "jina-v1-en" | "jina-v2-code" | "roberta-bpe"
            | "exaone4" | "trillion" | "granite-docling" => (Gpt2, false),
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => {
                (Smollm, false)
            }
            "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "stablelm2" | "megrez" | "hunyuan" | "grok-2"
            | "solar-open" => (Qwen2, false),
            "qwen35" => (Qwen35, false),
            "poro-chat" | "bloom" | "gpt3-finnish" => (Poro, false),
            "viking" => (Viking, false),
            "tekken" => (Tekken, true),
            "chameleon" => (Chameleon, false),
            "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => (Gpt4o, false),
            "granite-embed-multi-97m" => (GraniteEmbMulti, true),
            "tiny_aya" | "cohere2moe" => (TinyAya, false),
            "kimi-k2" => (KimiK2, false),
            "superbpe" => (SuperBpe, false),
            "seed-coder" => (SeedCoder, false),
            "bailingmoe" | "bailingmoe2" | "llada-moe" => (BailingMoe, false),
            "ufakzeka" => (Ufakzeka, false),
            "afmoe" => (Afmoe, false),
            "laguna" => (Laguna, false),
            "exaone-moe" => (ExaoneMoe, false),
            "gemma4" | "granite-embed-multi-311m" => (Gemma4, false),
            "sarvam-moe" => (SarvamMoe, false),
            "whitespace" => (Whitespace, false),
            _ => return None,
        };
        Some(kind)
    }

    /// Whether llama.cpp adds BOS for this `tokenizer.ggml.pre` value when the file has no
    /// `tokenizer.ggml.add_bos_token` (its `add_bos = true` in `llama_vocab::impl::load`).
    pub fn adds_bos_by_default(pre: &str) -> bool {
        matches!(
            pre,
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2" | "jina-v5-nano"
                | "tekken" | "chameleon"
        )
    }

    fn rules(self) -> Vec<Rule> {
        use PreTokenizerKind::*;
        match self {
            Default => vec![R(r"[\p{P}\$\+<=>\^~\|]+"), R(GPT2), R(r"\p{N}+"), R(r"[0-9][0-9][0-9]")],
            Gpt2 => vec![R(GPT2)],
            Smollm => vec![R(r"\p{N}"), R(GPT2)],
            Llama3 => vec![R(LLAMA3)],
            Jais2 => vec![R(JAIS2)],
            Qwen2 => vec![R(QWEN2)],
            Qwen35 => vec![R(QWEN35)],
            Falcon => vec![R(r"[\p{P}\$\+<=>\^~\|`]+"), R(GPT2), R(r"[0-9][0-9][0-9]")],
            DeepseekLlm => vec![
                R(r"[\r\n]"),
                R(DEEPSEEK_LLM_LETTERS),
                R(DEEPSEEK_LLM_PUNCT),
                R(r"\s+$"),
                R(CJK_HANGUL),
                R(r"\p{N}+"),
            ],
            DeepseekCoder => vec![R(r"[\r\n]"), R(r"\s?\p{L}+"), R(r"\s?\p{P}+"), R(CJK_HANGUL), R(r"\p{N}")],
            Deepseek3 => vec![R(r"\p{N}{1,3}"), R(DEEPSEEK3_CJK), R(DEEPSEEK3_MAIN)],
            Spark25 => vec![R(r"\p{N}{1,3}"), R(DEEPSEEK3_CJK), R(SPARK2_5_MAIN), R(r"\p{N}")],
            Youtu => vec![R(YOUTU_CJK), R(YOUTU)],
            Poro => vec![R(PORO)],
            Viking => vec![R(PORO), R(r"\p{N}")],
            Tekken => vec![R(TEKKEN)],
            Chameleon => vec![
                R(r"<sentinel:[0-9]+>"),
                R(r"(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z"),
                R("([\t\n]|    |  )"),
                R(r"\p{N}"),
                R(r"[\p{P}!-/:-@\[-`{-~]"),
                R(GPT2),
            ],
            Gpt4o => vec![R(GPT4O)],
            GraniteEmbMulti => vec![R(GRANITE_EMB_MULTI)],
            TinyAya => vec![Rule::DigitGroupsAtBoundary, R(TINY_AYA)],
            KimiK2 => vec![R(KIMI_K2)],
            SuperBpe => vec![R(r"\p{N}+"), Rule::CutsBeforeThousands],
            SeedCoder => vec![R(SEED_CODER)],
            BailingMoe => vec![R(BAILINGMOE)],
            Ufakzeka => vec![R(UFAKZEKA)],
            Afmoe => vec![Rule::AfmoeDigits, R(AFMOE_SCRIPTS), R(DEEPSEEK3_MAIN)],
            Laguna => vec![R(r"[^\n]+|[\n]+"), R(QWEN2)],
            ExaoneMoe => vec![R(EXAONE_MOE)],
            Minicpm5 => vec![R(r"\p{N}{1,3}"), R(MINICPM5)],
            Gemma4 | SarvamMoe => vec![R(r"[^\n]+|[\n]+")],
            Whitespace => vec![R(r"\S+")],
        }
    }
}

/// A compiled [`Rule`].
enum Splitter {
    Regex(Regex),
    /// Holds the expression of a run of numbers, `\p{N}+`.
    AfmoeDigits(Regex),
    CutsBeforeThousands,
    DigitGroupsAtBoundary,
}

impl Splitter {
    /// The matches of this pass in `piece`, as byte ranges in order (empty ones are cuts).
    fn matches(&self, piece: &str, out: &mut Vec<(usize, usize)>) {
        out.clear();
        match self {
            Splitter::Regex(re) => {
                for m in re.find_iter(piece) {
                    match m {
                        Ok(m) => out.push((m.start(), m.end())),
                        // Only possible when the backtracking limit is hit (pathological input):
                        // keep the rest of the piece whole rather than failing.
                        Err(_) => break,
                    }
                }
            }
            Splitter::AfmoeDigits(numbers) => {
                let mut glued = 0; // start of the text before the run, glued to its first group
                let runs = numbers.find_iter(piece).map_while(Result::ok).map(|m| (m.start(), m.end()));
                for (start, end) in runs {
                    let groups = digit_groups(piece, start, end);
                    let (first, rest) = groups.split_first().expect("a run has a group");
                    out.push((glued, first.1));
                    out.extend_from_slice(rest);
                    glued = end;
                }
            }
            Splitter::CutsBeforeThousands => {
                for (start, end) in runs(piece, |c| c.is_ascii_digit()) {
                    // Cuts at start + r, start + r + 3, …, never at the run's end.
                    let mut cut = start + (end - start) % 3;
                    while cut < end {
                        out.push((cut, cut));
                        cut += 3;
                    }
                }
            }
            Splitter::DigitGroupsAtBoundary => {
                for (start, end) in runs(piece, |c| c.is_ascii_digit()) {
                    let next = piece[end..].chars().next();
                    if next.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_')) {
                        out.extend(digit_groups(piece, start, end));
                    }
                }
            }
        }
    }
}

/// Maximal runs of characters satisfying `pred` in `s`, as byte ranges.
fn runs(s: &str, pred: impl Fn(char) -> bool) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in s.char_indices() {
        match (pred(c), start) {
            (true, None) => start = Some(i),
            (false, Some(st)) => {
                out.push((st, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(st) = start {
        out.push((st, s.len()));
    }
    out
}

/// A run of digits `s[start..end]` in groups of three counted from its end: the leading 1–2
/// digits first when the count is not a multiple of three.
fn digit_groups(s: &str, start: usize, end: usize) -> Vec<(usize, usize)> {
    let bounds: Vec<usize> = s[start..end].char_indices().map(|(i, _)| start + i).chain([end]).collect();
    let n = bounds.len() - 1;
    let first = if n.is_multiple_of(3) { 3 } else { n % 3 };
    let mut out = vec![(bounds[0], bounds[first.min(n)])];
    let mut k = first;
    while k < n {
        out.push((bounds[k], bounds[k + 3]));
        k += 3;
    }
    out
}

/// A compiled pre-tokenizer: the regex cascade of one [`PreTokenizerKind`].
pub(crate) struct PreTokenizer {
    pub(crate) kind: PreTokenizerKind,
    passes: Vec<Splitter>,
}

impl PreTokenizer {
    pub(crate) fn new(kind: PreTokenizerKind) -> Result<PreTokenizer, TokenizerError> {
        let passes = kind
            .rules()
            .into_iter()
            .map(|rule| match rule {
                Rule::Regex(p) => Regex::new(p).map(Splitter::Regex).map_err(|e| TokenizerError::Regex(format!("{p:?}: {e}"))),
                Rule::AfmoeDigits => Ok(Splitter::AfmoeDigits(Regex::new(r"\p{N}+").expect("a valid expression"))),
                Rule::CutsBeforeThousands => Ok(Splitter::CutsBeforeThousands),
                Rule::DigitGroupsAtBoundary => Ok(Splitter::DigitGroupsAtBoundary),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PreTokenizer { kind, passes })
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
        let mut matches = Vec::new();
        for pass in &self.passes {
            scratch.clear();
            for &(start, end) in out.iter() {
                pass.matches(&text[start..end], &mut matches);
                split_piece(&matches, start, end, scratch);
            }
            std::mem::swap(out, scratch);
        }
    }
}

/// Splits the piece `[start, end)` at `matches` (byte ranges within the piece, in order),
/// keeping the unmatched gaps; empty matches only cut.
fn split_piece(matches: &[(usize, usize)], start: usize, end: usize, out: &mut Vec<(usize, usize)>) {
    let mut last = 0usize;
    for &(m_start, m_end) in matches {
        if m_start > last {
            out.push((start + last, start + m_start));
        }
        if m_end > m_start {
            out.push((start + m_start, start + m_end));
        }
        last = last.max(m_end);
    }
    if start + last < end {
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
        for k in PreTokenizerKind::ALL {
            PreTokenizer::new(k).unwrap_or_else(|e| panic!("{k:?}: {e}"));
        }
    }

    /// Every name of llama.cpp's `llama_vocab::impl::load` maps; anything else does not.
    #[test]
    fn every_llama_cpp_name_maps() {
        let names = "default llama3 llama-v3 llama-bpe falcon3 falcon-h1 pixtral midm-2.0 lfm2 jina-v5-nano minicpm5 \
             deepseek-llm deepseek-coder deepseek-v3 spark2_5 youtu falcon mpt starcoder gpt-2 phi-2 jina-es jina-de \
             gigachat jina-v2-es jina-v2-de a.x-4.0 mellum modern-bert jais-2 jina-v1-en jina-v2-code roberta-bpe \
             refact command-r qwen2 deepseek-r1-qwen kormo f2llmv2 qwen35 stablelm2 olmo dbrx smaug-bpe poro-chat \
             glm4 chatglm-bpe viking jais tekken smollm codeshell bloom gpt3-finnish exaone exaone4 exaone-moe \
             chameleon minerva-7b megrez gpt-4o llama4 kanana2 talkie granite-embed-multi-97m tiny_aya cohere2moe \
             superbpe trillion granite-docling bailingmoe bailingmoe2 llada-moe seed-coder hunyuan hunyuan-dense \
             hy_v4 joyai-llm kimi-k2 ufakzeka grok-2 afmoe laguna minimax-m2 solar-open mellum2 gemma4 \
             granite-embed-multi-311m sarvam-moe whitespace";
        let mut families = std::collections::HashSet::new();
        for name in names.split_whitespace() {
            let (kind, _) = PreTokenizerKind::from_pre(Some(name)).unwrap_or_else(|| panic!("{name} does not map"));
            families.insert(kind);
        }
        assert_eq!(families.len(), PreTokenizerKind::ALL.len(), "every family is reachable");
        for name in ["gpt2", "qwen3", "Llama3", "no-such-pre", "gemma-4", "Whitespace"] {
            assert_eq!(PreTokenizerKind::from_pre(Some(name)), None, "{name}");
        }
        assert_eq!(PreTokenizerKind::from_pre(Some("llama-bpe")), Some((PreTokenizerKind::Llama3, true)));
        assert_eq!(PreTokenizerKind::from_pre(Some("dbrx")), Some((PreTokenizerKind::Llama3, false)));
        assert!(PreTokenizerKind::adds_bos_by_default("llama-bpe") && PreTokenizerKind::adds_bos_by_default("tekken"));
        assert!(!PreTokenizerKind::adds_bos_by_default("qwen2") && !PreTokenizerKind::adds_bos_by_default("dbrx"));
    }

    #[test]
    fn deepseek_llm_splits() {
        // The example of the issue: the space stays with the number, not with '½' (a number
        // that is not a letter or ASCII punctuation, so it is a gap piece of its own).
        assert_eq!(pieces(PreTokenizerKind::DeepseekLlm, "ied 4 ½ months"), ["ied", " ", "4", " ", "½", " months"]);
        assert_eq!(pieces(PreTokenizerKind::DeepseekLlm, "Hello, world!\n  "), ["Hello", ",", " world", "!", "\n", "  "]);
        // Its punctuation class `[!-/:-~…]` spans the ASCII letters too, so that pass cuts a
        // word after a non-ASCII letter (llama.cpp applies it to every piece alike).
        assert_eq!(pieces(PreTokenizerKind::DeepseekLlm, "\u{3A9}mega 你好 123"), ["\u{3A9}", "mega", " ", "你好", " ", "123"]);
        // Its "CJK" pass spans U+0800..U+4E00, which holds the Greek extended letters.
        assert_eq!(pieces(PreTokenizerKind::DeepseekLlm, "\u{3A9}\u{3B1} \u{1F7D}"), ["\u{3A9}\u{3B1}", " ", "\u{1F7D}"]);
        // U+3000 is not punctuation for llama.cpp's wregex: it goes with the following word.
        assert_eq!(pieces(PreTokenizerKind::DeepseekLlm, "a\u{3000}、b"), ["a", "\u{3000}、", "b"]);
    }

    #[test]
    fn qwen35_marks_and_contractions() {
        // Combining marks stay with their letters; contractions are case-insensitive.
        assert_eq!(pieces(PreTokenizerKind::Qwen35, "cafe\u{301} IT'S 42"), ["cafe\u{301}", " IT", "'S", " ", "4", "2"]);
        assert_eq!(pieces(PreTokenizerKind::Qwen2, "cafe\u{301}x"), ["cafe", "\u{301}x"]);
        assert_eq!(pieces(PreTokenizerKind::Qwen35, "a \n\n b"), ["a", " \n\n", " b"]);
    }

    #[test]
    fn digit_rules() {
        // AFMoE: groups of three from the end of a run; text before a run is glued to its first group.
        assert_eq!(pieces(PreTokenizerKind::Afmoe, "ab1234567"), ["ab", "1", "234", "567"]);
        let p = PreTokenizer::new(PreTokenizerKind::Afmoe).unwrap();
        let mut m = Vec::new();
        p.passes[0].matches("ab1234567 x", &mut m);
        assert_eq!(m, [(0, 3), (3, 6), (6, 9)]);
        // SuperBPE: cuts before thousands, whole runs of numbers otherwise.
        assert_eq!(pieces(PreTokenizerKind::SuperBpe, "x1234567 89"), ["x", "1", "234", "567", " ", "89"]);
        // Tiny Aya: only digit runs that end at a word boundary are grouped.
        // (the main pattern then splits the ungrouped run by three from its start).
        assert_eq!(pieces(PreTokenizerKind::TinyAya, "1234567 12345abc"), ["1", "234", "567", " ", "123", "45", "abc"]);
    }

    #[test]
    fn kimi_k2_han_runs() {
        assert_eq!(pieces(PreTokenizerKind::KimiK2, "Hello你好world's 1234"), ["Hello", "你好", "world's", " ", "123", "4"]);
    }

    #[test]
    fn case_classes_mean_any_letter_as_in_llama_cpp() {
        // llama.cpp collapses \p{Lu}/\p{Ll} to "letter": a word is one piece whatever its case.
        assert_eq!(pieces(PreTokenizerKind::TinyAya, "helloWorld"), ["helloWorld"]);
        // GPT-4o's look-ahead form does split at the case change.
        assert_eq!(pieces(PreTokenizerKind::Gpt4o, "helloWorld"), ["hello", "World"]);
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
