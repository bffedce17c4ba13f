//! SentencePiece (`tokenizer.ggml.model = "llama"`) tokenizer tests.
//!
//! Three groups:
//! - synthetic vocabularies built in the test (merge order, byte fallback, unknown fallback,
//!   space prefix around special tokens);
//! - the zoo's 512-token SentencePiece vocabulary with byte fallback
//!   (`tests/fixtures/zoo/tiny-llama-q8_0.gguf`), against the `tokenize` cases of
//!   `tiny-llama-q8_0.json`;
//! - Gemma 3 270M's 262,144-token vocabulary (`models/gemma-3-270m-q4_k_m.gguf`, made by
//!   `scripts/setup.sh`), against `tests/fixtures/gemma-3-270m-q4_k_m.json`.
//!
//! Missing files fail the tests (never skipped).

mod common;

use std::sync::OnceLock;
use std::time::Instant;

use ferrolm::tokenizer::*;
use serde::Deserialize;

// ---------------------------------------------------------------------------------------------
// Data loading
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct Fixture {
    add_bos: bool,
    tokenize: Vec<TokenizeCase>,
    generate: Vec<GenerateCase>,
}

#[derive(Deserialize)]
struct TokenizeCase {
    text: String,
    ids: Vec<u32>,
}

#[derive(Deserialize)]
struct GenerateCase {
    prompt: Option<String>,
    prompt_ids: Vec<u32>,
    continuation: Vec<u32>,
    text: Option<String>,
}

fn load(path: &std::path::Path, what: &str) -> Tokenizer {
    let header = common::read_gguf_header(path);
    let t = Instant::now();
    let tok = Tokenizer::from_gguf(&header).unwrap_or_else(|e| panic!("build the {what} tokenizer: {e}"));
    eprintln!("{what} tokenizer ({} tokens) built in {:?}", tok.vocab_size(), t.elapsed());
    tok
}

fn zoo() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| load(&common::zoo_path("tiny-llama-q8_0.gguf"), "zoo tiny-llama"))
}

fn gemma() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| load(&common::gemma3_path(), "Gemma 3"))
}

fn fixture(name: &str) -> Fixture {
    serde_json::from_value(common::fixture(name))
        .unwrap_or_else(|e| panic!("fixture {name} does not have the expected shape: {e}"))
}

fn check_tokenize_cases(tok: &Tokenizer, cases: &[TokenizeCase]) {
    assert!(!cases.is_empty());
    let mut failures = Vec::new();
    for case in cases {
        let ids = tok.encode(&case.text, true);
        if ids != case.ids {
            failures.push(format!("{:?}\n  want {:?}\n  got  {:?}", case.text, case.ids, ids));
        }
    }
    assert!(failures.is_empty(), "tokenize mismatches:\n{}", failures.join("\n"));
}

/// Deterministic strings made of pieces that stress SentencePiece normalisation: spaces and
/// runs of them, newlines, tabs, accents, combining marks, CJK, emoji (incl. ZWJ sequences),
/// digits, and characters that are unlikely to be vocabulary entries. Not "▁" (U+2581): the
/// escaped space and a literal one are the same to SentencePiece (see `literal_lower_block`).
fn random_strings(count: usize, max_pieces: usize) -> Vec<String> {
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let pieces = [
        " ", "  ", "   ", "\n", "\n\n", "\t", "\r\n", "é", "ü", "ß", "naïve", "日本語", "한국어",
        "Ελληνικά", "русский", "🤖", "👩\u{200D}💻", "\u{0301}", "0", "42", "3.14", "x", "The",
        "the", "Hello", ",", ".", "!", "'", "ＡＢ", "\u{3000}", "\u{E000}", "\u{10FFFD}", "𝔘",
        "<", ">", "|", "<0x41>", "\u{7F}", "\u{1}", "ǅ", "ﬁ",
    ];
    (0..count)
        .map(|_| {
            let n = (next() % max_pieces as u64) as usize + 1;
            (0..n).map(|_| pieces[(next() % pieces.len() as u64) as usize]).collect()
        })
        .collect()
}

const ROUND_TRIP: &[&str] = &[
    "Hello world",
    "Hello, World! 123",
    " leading space",
    "   three leading spaces",
    "trailing spaces   ",
    "runs   of    spaces     here",
    "line one\nline two\n\nline four\n",
    "\n\nstarts with newlines",
    "tabs\tand\r\nCRLF",
    "Ünïcödé: café, naïve, Straße, façade, résumé",
    "日本語のテキスト、中文文本，한국어 텍스트",
    "Emoji 🤖🦀🚀 family 👩‍👩‍👧 flags 🇫🇷",
    "digits 0123456789 3.14159 -42 1,000,000",
    "mixed: x² + y² = z², ∑∫√∞ ≠ ≈",
    "private use \u{E000}\u{F8FF} and plane 16 \u{10FFFD}",
    " ",
    "  ",
    "\n",
    "a",
];

// ---------------------------------------------------------------------------------------------
// Synthetic vocabularies
// ---------------------------------------------------------------------------------------------

/// `<unk>`, `<s>`, `</s>`, optionally the 256 byte tokens, then `extra` as (text, score, type).
fn synthetic(extra: &[(&str, f32, i32)], byte_tokens: bool, add_space_prefix: bool) -> Vocab {
    let mut tokens = vec!["<unk>".to_string(), "<s>".into(), "</s>".into()];
    let mut types = vec![token_type::UNKNOWN, token_type::CONTROL, token_type::CONTROL];
    let mut scores = vec![0.0, 0.0, 0.0];
    if byte_tokens {
        for b in 0..=255u32 {
            tokens.push(format!("<0x{b:02X}>"));
            types.push(token_type::BYTE);
            scores.push(0.0);
        }
    }
    for &(t, s, ty) in extra {
        tokens.push(t.to_string());
        types.push(ty);
        scores.push(s);
    }
    Vocab {
        model: "llama".into(),
        tokens,
        token_types: types,
        scores,
        bos_id: Some(1),
        eos_id: Some(2),
        unk_id: Some(0),
        add_bos: true,
        add_space_prefix,
        ..Vocab::default()
    }
}

const N: i32 = token_type::NORMAL;

#[test]
fn synthetic_merge_by_score() {
    let v = synthetic(
        &[
            ("a", -1.0, N),
            ("b", -1.0, N),
            ("c", -1.0, N),
            ("ab", -5.0, N),
            ("bc", -2.0, N),
            ("aa", -3.0, N),
            ("bcbc", -8.0, N),
        ],
        true,
        false,
    );
    let tok = Tokenizer::new(v).unwrap();
    assert_eq!(tok.model(), TokenizerModel::Spm);
    let id = |s: &str| tok.token_id(s).unwrap();
    // Highest score first, not leftmost: "bc" (-2) beats "ab" (-5).
    assert_eq!(tok.encode("abc", false), [id("a"), id("bc")]);
    assert_eq!(tok.encode("ab", false), [id("ab")]);
    // Merged symbols merge again when their concatenation is a piece.
    assert_eq!(tok.encode("bcbc", false), [id("bcbc")]);
    assert_eq!(tok.encode("abcbc", false), [id("a"), id("bcbc")]);
    // Equal scores: leftmost pair first ("aaa" -> "aa" + "a").
    assert_eq!(tok.encode("aaa", false), [id("aa"), id("a")]);
    assert_eq!(tok.encode("aaaa", false), [id("aa"), id("aa")]);
    assert_eq!(tok.encode("aaaaa", false), [id("aa"), id("aa"), id("a")]);
}

#[test]
fn synthetic_needs_intermediate_pieces() {
    // Merging goes through vocabulary entries only: "xyz" is not reachable without "xy"/"yz".
    let v = synthetic(&[("x", -1.0, N), ("y", -1.0, N), ("z", -1.0, N), ("xyz", 0.0, N)], true, false);
    let tok = Tokenizer::new(v).unwrap();
    let id = |s: &str| tok.token_id(s).unwrap();
    assert_eq!(tok.encode("xyz", false), [id("x"), id("y"), id("z")]);
}

#[test]
fn synthetic_space_prefix_and_specials() {
    let extra = [
        ("▁", -1.0, N),
        ("a", -2.0, N),
        ("▁a", -1.5, N),
        ("<ctl>", 0.0, token_type::CONTROL),
        ("[U]", 0.0, token_type::USER_DEFINED),
    ];
    let tok = Tokenizer::new(synthetic(&extra, true, true)).unwrap();
    assert!(tok.add_space_prefix());
    let id = |s: &str| tok.token_id(s).unwrap();
    let (sp, a, spa, ctl, usr) = (id("▁"), id("a"), id("▁a"), id("<ctl>"), id("[U]"));
    assert_eq!(tok.encode("a", true), [spa]);
    assert_eq!(tok.encode(" a", true), [sp, spa]);
    assert_eq!(tok.encode("a a", true), [spa, spa]);
    // As llama.cpp: the prefix goes before the first fragment and after every special token.
    assert_eq!(tok.encode("<ctl>a", true), [ctl, spa]);
    assert_eq!(tok.encode("a<ctl>a<ctl>", true), [spa, ctl, spa, ctl]);
    assert_eq!(tok.encode("a[U]a", false), [spa, usr, spa]);
    // A text that is only special tokens gets no "▁" at all.
    assert_eq!(tok.encode("<ctl><ctl>", true), [ctl, ctl]);
    // Without parse_special, control text is plain text (byte fallback here).
    let plain = tok.encode("<ctl>", false);
    assert!(!plain.contains(&ctl));
    assert_eq!(tok.decode(&plain), "<ctl>");
    // Empty text: nothing.
    assert!(tok.encode("", true).is_empty());
    // decode drops the prefix space of the first token only.
    assert_eq!(tok.decode(&[spa, spa]), "a a");
    assert_eq!(tok.decode(&[sp, spa]), " a");
    assert_eq!(tok.decode(&[a]), "a");
    assert_eq!(tok.decode(&[1, spa]), "<s> a");
    assert_eq!(tok.token_bytes(spa), b" a");
    assert_eq!(tok.token_bytes(ctl), b"<ctl>");

    // Without add_space_prefix nothing is prepended and nothing stripped.
    let tok = Tokenizer::new(synthetic(&extra, true, false)).unwrap();
    assert!(!tok.add_space_prefix());
    assert_eq!(tok.encode("a a", true), [a, spa]);
    assert_eq!(tok.encode("<ctl>a", true), [ctl, a]);
    assert_eq!(tok.decode(&[spa]), " a");
}

#[test]
fn synthetic_byte_and_unknown_fallback() {
    let extra = [("a", -1.0, N), ("é", -1.0, N)];
    let tok = Tokenizer::new(synthetic(&extra, true, false)).unwrap();
    let id = |s: &str| tok.token_id(s).unwrap();
    // "ü" = C3 BC is not a token: its bytes are.
    assert_eq!(tok.encode("aü", false), [id("a"), id("<0xC3>"), id("<0xBC>")]);
    assert_eq!(tok.encode("é", false), [id("é")]);
    assert_eq!(tok.token_bytes(id("<0xC3>")), [0xC3]);
    assert_eq!(tok.decode(&tok.encode("aü🤖x", false)), "aü🤖x");
    // A space with no "▁" token falls back to the bytes of "▁" (E2 96 81), as in llama.cpp, so
    // it does not come back as a space.
    assert_eq!(
        tok.encode(" ", false),
        [id("<0xE2>"), id("<0x96>"), id("<0x81>")]
    );

    // No byte tokens: an uncovered character becomes <unk> once; a single-byte character can
    // fall back to a vocabulary entry spelled as that byte.
    let tok = Tokenizer::new(synthetic(&[("a", -1.0, N), ("x", -1.0, N)], false, false)).unwrap();
    let id = |s: &str| tok.token_id(s).unwrap();
    assert_eq!(tok.encode("aüx🤖", false), [id("a"), 0, id("x"), 0]);
    // Without an unknown id the character is dropped.
    let mut v = synthetic(&[("a", -1.0, N)], false, false);
    v.unk_id = None;
    let tok = Tokenizer::new(v).unwrap();
    assert_eq!(tok.encode("üaü", false), [tok.token_id("a").unwrap()]);
}

#[test]
fn synthetic_token_types_decode() {
    let extra = [
        ("▁x▁y", -1.0, N),
        ("[U ▁]", 0.0, token_type::USER_DEFINED),
        ("<unused0>", 0.0, token_type::UNUSED),
    ];
    let tok = Tokenizer::new(synthetic(&extra, true, false)).unwrap();
    let id = |s: &str| tok.token_id(s).unwrap();
    assert_eq!(tok.token_bytes(id("▁x▁y")), b" x y");
    // User-defined and control/unknown tokens are literal (no ▁ unescaping).
    assert_eq!(tok.token_bytes(id("[U ▁]")), "[U ▁]".as_bytes());
    assert_eq!(tok.token_bytes(0), b"<unk>");
    // Unused tokens have no text (llama.cpp's token_to_piece).
    assert_eq!(tok.token_bytes(id("<unused0>")), b"");
    assert_eq!(tok.token_bytes(u32::MAX), b"");
}

#[test]
fn synthetic_errors_and_defaults() {
    let mut v = synthetic(&[], true, false);
    v.scores.pop();
    assert!(matches!(Tokenizer::new(v), Err(TokenizerError::InvalidVocab(_))));
    let mut v = synthetic(&[], true, false);
    v.unk_id = Some(100_000);
    assert!(matches!(Tokenizer::new(v), Err(TokenizerError::InvalidVocab(_))));
    // No scores at all: every score is 0, ties go leftmost.
    let mut v = synthetic(&[("a", 0.0, N), ("aa", 0.0, N)], true, false);
    v.scores.clear();
    let tok = Tokenizer::new(v).unwrap();
    let aa = tok.token_id("aa").unwrap();
    let a = tok.token_id("a").unwrap();
    assert_eq!(tok.encode("aaa", false), [aa, a]);
    assert_eq!(tok.pre_tokenizer(), PreTokenizerKind::Default);
    assert_eq!(tok.pre_tokenize("a b"), ["a b"]);
}

// ---------------------------------------------------------------------------------------------
// The zoo's tiny SentencePiece vocabulary
// ---------------------------------------------------------------------------------------------

#[test]
fn zoo_vocab_metadata() {
    let tok = zoo();
    assert_eq!(tok.model(), TokenizerModel::Spm);
    assert_eq!(tok.vocab_size(), 512);
    // The file has no tokenizer.ggml.add_space_prefix: llama.cpp's SPM default (true) applies.
    assert!(tok.add_space_prefix());
    assert_eq!(tok.bos_id(), Some(1));
    assert_eq!(tok.eos_id(), Some(2));
    assert!(tok.add_bos());
    assert_eq!(tok.token_text(259), Some("▁"));
    assert_eq!(tok.token_bytes(259), b" ");
    assert_eq!(tok.token_bytes(tok.token_id("▁the").unwrap()), b" the");
    assert_eq!(tok.token_bytes(tok.token_id("<0xC3>").unwrap()), [0xC3]);
    assert_eq!(tok.token_bytes(13), b"\n"); // <0x0A>
    assert_eq!(tok.token_bytes(0), b"<unk>");
    assert_eq!(tok.token_type(0), Some(token_type::UNKNOWN));
    assert_eq!(tok.token_bytes(506), b"<|end|>");
    assert!(tok.is_control(506));
}

#[test]
fn zoo_fixture_tokenize_cases() {
    let fix = fixture("zoo/tiny-llama-q8_0.json");
    assert!(fix.add_bos);
    check_tokenize_cases(zoo(), &fix.tokenize);
    // decode: exact for text without special tokens; after a special token the text carries
    // the "▁" that encoding added (llama.cpp gives the same).
    for case in &fix.tokenize {
        let want = if case.text == "<|end|>special<|user|>" {
            "<|end|> special<|user|>".to_string()
        } else {
            case.text.clone()
        };
        assert_eq!(zoo().decode(&case.ids), want);
    }
}

#[test]
fn zoo_fixture_prompts_decode() {
    // The generate prompts are ids only; they start with BOS and decode without panicking.
    let fix = fixture("zoo/tiny-llama-q8_0.json");
    for g in &fix.generate {
        assert_eq!(g.prompt_ids[0], 1);
        let _ = zoo().decode(&g.prompt_ids);
        let _ = zoo().decode(&g.continuation);
    }
}

#[test]
fn zoo_round_trips() {
    let tok = zoo();
    for s in ROUND_TRIP {
        let ids = tok.encode(s, false);
        assert_eq!(tok.decode(&ids), *s, "{s:?} -> {ids:?}");
        assert!(ids.iter().all(|&i| (i as usize) < tok.vocab_size()));
    }
    for s in random_strings(300, 12) {
        let ids = tok.encode(&s, false);
        assert_eq!(tok.decode(&ids), s, "{s:?} -> {ids:?}");
    }
}

#[test]
fn literal_lower_block() {
    // SentencePiece writes spaces as "▁"; a "▁" in the input is indistinguishable from an
    // escaped space and decodes as a space (llama.cpp and SentencePiece do the same).
    for tok in [zoo(), gemma()] {
        let ids = tok.encode("a▁b c", false);
        assert_eq!(ids, tok.encode("a b c", false));
        assert_eq!(tok.decode(&ids), "a b c");
    }
}

#[test]
fn zoo_stream_decoding_across_byte_tokens() {
    let tok = zoo();
    // "ü" and "日" are not in the 512-token vocabulary: byte fallback splits them.
    let ids = tok.encode("ü日🤖", false);
    let byte = |b: u8| tok.token_id(&format!("<0x{b:02X}>")).unwrap();
    let mut want = vec![259]; // the "▁" prefix
    want.extend("ü日🤖".bytes().map(byte));
    assert_eq!(ids, want);
    let mut dec = StreamDecoder::new(tok);
    let outs: Vec<String> = ids.iter().map(|&i| dec.push(i)).collect();
    assert_eq!(outs, [" ", "", "ü", "", "", "日", "", "", "", "🤖"]);
    assert_eq!(dec.finish(), "");
    // A character cut short by the end of the stream becomes U+FFFD on finish.
    let mut dec = StreamDecoder::new(tok);
    assert_eq!(dec.push(byte(0xE6)), "");
    assert_eq!(dec.push(byte(0x97)), "");
    assert_eq!(dec.finish(), "\u{FFFD}");
}

// ---------------------------------------------------------------------------------------------
// Gemma 3
// ---------------------------------------------------------------------------------------------

#[test]
fn gemma_vocab_metadata() {
    let tok = gemma();
    assert_eq!(tok.model(), TokenizerModel::Spm);
    assert_eq!(tok.vocab_size(), 262_144);
    // The file says tokenizer.ggml.add_space_prefix = false.
    assert!(!tok.add_space_prefix());
    assert_eq!(tok.bos_id(), Some(2));
    assert_eq!(tok.eos_id(), Some(1));
    assert!(tok.add_bos());
    assert_eq!(tok.token_text(2), Some("<bos>"));
    assert!(tok.is_control(2));
    // Whitespace runs are user-defined tokens with literal text.
    assert_eq!(tok.token_type(107), Some(token_type::USER_DEFINED));
    assert_eq!(tok.token_bytes(107), b"\n");
    assert_eq!(tok.token_bytes(138), b"  ");
    assert_eq!(tok.token_bytes(236743), b" "); // "▁"
    assert_eq!(tok.token_bytes(9259), b"Hello");
    assert_eq!(tok.token_bytes(1902), b" world");
}

#[test]
fn gemma_fixture_tokenize_cases() {
    let fix = fixture("gemma-3-270m-q4_k_m.json");
    check_tokenize_cases(gemma(), &fix.tokenize);
    for case in &fix.tokenize {
        assert_eq!(gemma().decode(&case.ids), case.text, "decode of fixture ids");
    }
}

#[test]
fn gemma_fixture_generate_prompts() {
    let (tok, fix) = (gemma(), fixture("gemma-3-270m-q4_k_m.json"));
    assert!(fix.add_bos);
    assert!(!fix.generate.is_empty());
    for g in &fix.generate {
        let prompt = g.prompt.as_deref().expect("Gemma generate cases have a text prompt");
        let mut ids = vec![tok.bos_id().unwrap()];
        ids.extend(tok.encode(prompt, true));
        assert_eq!(ids, g.prompt_ids, "{prompt:?}");
        assert_eq!(tok.decode(&g.prompt_ids[1..]), prompt);
        if let Some(text) = &g.text {
            assert_eq!(tok.decode(&g.continuation), *text);
            // Streaming gives the same text.
            let mut dec = StreamDecoder::new(tok);
            let streamed: String = g.continuation.iter().map(|&i| dec.push(i)).collect::<String>() + &dec.finish();
            assert_eq!(streamed, *text);
        }
    }
}

#[test]
fn gemma_round_trips() {
    let tok = gemma();
    for s in ROUND_TRIP {
        for parse_special in [false, true] {
            let ids = tok.encode(s, parse_special);
            assert_eq!(tok.decode(&ids), *s, "{s:?} -> {ids:?}");
        }
    }
    // No space prefix: control-token text decodes to itself, so even parsed specials round-trip.
    for s in random_strings(300, 12) {
        let ids = tok.encode(&s, true);
        assert_eq!(tok.decode(&ids), s, "{s:?} -> {ids:?}");
    }
    let with_specials = "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n";
    let ids = tok.encode(with_specials, true);
    assert_eq!(ids[0], tok.token_id("<start_of_turn>").unwrap());
    assert_eq!(tok.decode(&ids), with_specials);
}

#[test]
fn gemma_byte_fallback_streaming() {
    let tok = gemma();
    // Find a character Gemma has no token for (it falls back to <0xNN> byte tokens).
    let candidates = ["\u{10FFFD}", "\u{E000}", "\u{F8FF}", "\u{1D7FF}", "\u{E0100}", "\u{2FA1D}"];
    let c = candidates
        .iter()
        .find(|c| {
            let ids = tok.encode(c, false);
            ids.len() == c.len() && ids.iter().all(|&i| tok.token_type(i) == Some(token_type::BYTE))
        })
        .expect("one of the candidates is byte-encoded");
    let text = format!("a{c}b");
    let ids = tok.encode(&text, false);
    let mut dec = StreamDecoder::new(tok);
    let outs: Vec<String> = ids.iter().map(|&i| dec.push(i)).collect();
    assert_eq!(outs.concat() + &dec.finish(), text);
    // The character appears only once its last byte arrived.
    let pos = outs.iter().position(|o| o.contains(c)).unwrap();
    assert!(outs[pos - c.len() + 1..pos].iter().all(String::is_empty), "{outs:?}");
}

/// About `bytes` of mixed prose, code, numbers, non-Latin scripts and emoji.
fn big_text(bytes: usize) -> String {
    let para = "The quick brown fox jumps over the lazy dog. Numbers: 1234567890, 3.14159; \
                code: fn main() { println!(\"{}\", x + 1); }\n\
                Ünïcödé café naïve Straße — 日本語のテキスト、中文文本，한국어 텍스트, Ελληνικά, русский. \
                Emoji 🤖🦀🚀 and symbols ©®™ ∑∫√.    Indented    text\twith\ttabs.\n\n";
    let mut s = String::with_capacity(bytes + para.len());
    let mut i = 0u32;
    while s.len() < bytes {
        s.push_str(para);
        s.push_str(&i.to_string()); // vary the text a little
        i += 1;
    }
    s
}

#[test]
fn gemma_performance() {
    let header = common::read_gguf_header(&common::gemma3_path());
    let t = Instant::now();
    let tok = Tokenizer::from_gguf(&header).expect("build");
    let build = t.elapsed();
    let text = big_text(100_000);
    let t = Instant::now();
    let ids = tok.encode(&text, true);
    let encode = t.elapsed();
    let t = Instant::now();
    let back = tok.decode(&ids);
    let decode = t.elapsed();
    assert_eq!(back, text);
    eprintln!(
        "Gemma 3: build {build:?}; encode {} bytes -> {} tokens in {encode:?} ({:.1} MB/s); decode {decode:?}",
        text.len(),
        ids.len(),
        text.len() as f64 / encode.as_secs_f64() / 1e6
    );
    if !cfg!(debug_assertions) {
        assert!(build.as_secs_f64() < 1.0, "build too slow: {build:?}");
        assert!(encode.as_secs_f64() < 1.0, "encode too slow: {encode:?}");
    }
}

#[test]
fn degenerate_inputs() {
    let inputs = [
        " ".repeat(20_000),
        " \n".repeat(10_000),
        "\t".repeat(20_000),
        "a".repeat(20_000),
        "ab".repeat(10_000),
        "9".repeat(20_000),
        "<".repeat(20_000),
        "日".repeat(7_000),
        "🤖".repeat(5_000),
        "x ".repeat(10_000) + &" ".repeat(10_000) + "y",
    ];
    for (name, tok) in [("zoo", zoo()), ("gemma", gemma())] {
        let t = Instant::now();
        for s in &inputs {
            let ids = tok.encode(s, true);
            assert_eq!(tok.decode(&ids), *s, "{name}");
        }
        let dt = t.elapsed();
        eprintln!("{name}: degenerate inputs in {dt:?}");
        if !cfg!(debug_assertions) {
            assert!(dt.as_secs_f64() < 2.0, "{name} too slow: {dt:?}");
        }
    }
}
