//! Byte-level BPE tokenizer tests.
//!
//! Two groups:
//! - synthetic vocabularies built in the test;
//! - the real SmolLM2-135M-Instruct vocabulary, read from the GGUF model
//!   (`models/SmolLM2-135M-Instruct.Q4_1.gguf`, made by `scripts/setup.sh`) with
//!   `Tokenizer::from_gguf`, checked against the conformance fixture
//!   `tests/fixtures/smollm2-135m-instruct-q4_1.json`. A missing model fails the tests.

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
    chat: Vec<ChatCase>,
    generate: Vec<GenerateCase>,
}

#[derive(Deserialize)]
struct TokenizeCase {
    text: String,
    ids: Vec<u32>,
}

#[derive(Deserialize, Clone, PartialEq, Debug)]
struct Message {
    role: String,
    content: String,
}

#[derive(Deserialize)]
struct ChatCase {
    messages: Vec<Message>,
    text: String,
}

#[derive(Deserialize)]
struct GenerateCase {
    prompt: Option<String>,
    messages: Option<Vec<Message>>,
    prompt_ids: Vec<u32>,
    continuation: Vec<u32>,
    text: String,
}

fn smollm() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let header = common::read_gguf_header(&common::smollm2_path());
        let t = Instant::now();
        let tok = Tokenizer::from_gguf(&header).expect("build the SmolLM2 tokenizer from the GGUF");
        eprintln!("SmolLM2 tokenizer built in {:?}", t.elapsed());
        tok
    })
}

fn fixture() -> &'static Fixture {
    static FIX: OnceLock<Fixture> = OnceLock::new();
    FIX.get_or_init(|| {
        serde_json::from_value(common::fixture("smollm2-135m-instruct-q4_1.json"))
            .expect("fixture smollm2-135m-instruct-q4_1.json has the expected shape")
    })
}

// ---------------------------------------------------------------------------------------------
// Real vocabulary: SmolLM2
// ---------------------------------------------------------------------------------------------

#[test]
fn smollm_vocab_metadata() {
    let tok = smollm();
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(tok.pre_tokenizer(), PreTokenizerKind::Smollm);
    assert_eq!(tok.bos_id(), Some(1));
    assert_eq!(tok.eos_id(), Some(2));
    assert!(!tok.add_bos());
    assert_eq!(tok.token_id("<|im_start|>"), Some(1));
    assert_eq!(tok.token_id("<|im_end|>"), Some(2));
    assert!(tok.is_control(2));
    assert!(!tok.is_control(260));
    assert_eq!(tok.token_bytes(2), b"<|im_end|>");
    assert_eq!(tok.token_bytes(198), b"\n");
    assert_eq!(tok.token_text(216), Some("Ġ"));
    assert_eq!(tok.token_bytes(216), b" ");
    assert_eq!(tok.token_bytes(u32::MAX), b"");
    assert_eq!(tok.token_type(0), Some(token_type::CONTROL));
}

#[test]
fn smollm_fixture_tokenize_cases() {
    let (tok, fix) = (smollm(), fixture());
    assert!(!fix.add_bos);
    let mut failures = Vec::new();
    for case in &fix.tokenize {
        let ids = tok.encode(&case.text, true);
        if ids != case.ids {
            failures.push(format!(
                "{:?}\n  want {:?}\n  got  {:?}",
                case.text, case.ids, ids
            ));
        }
        assert_eq!(tok.decode(&case.ids), case.text, "decode of fixture ids");
    }
    assert!(
        failures.is_empty(),
        "tokenize mismatches:\n{}",
        failures.join("\n")
    );
}

#[test]
fn smollm_fixture_chat_and_generate_prompts() {
    let (tok, fix) = (smollm(), fixture());
    for chat in &fix.chat {
        let ids = tok.encode(&chat.text, true);
        assert_eq!(ids[0], 1, "chat text starts with <|im_start|>");
        assert_eq!(
            ids.iter().filter(|&&i| i == 1).count(),
            chat.text.matches("<|im_start|>").count()
        );
        assert_eq!(
            ids.iter().filter(|&&i| i == 2).count(),
            chat.text.matches("<|im_end|>").count()
        );
        assert_eq!(tok.decode(&ids), chat.text);
    }

    // The single-user-message chat case shows how the template renders one user turn; the
    // generate cases with messages use the same template with other content.
    let template = fix
        .chat
        .iter()
        .find(|c| c.messages.len() == 1 && c.messages[0].role == "user")
        .expect("a single-user-message chat case");
    let mut checked = 0;
    for g in &fix.generate {
        let text = match (&g.prompt, &g.messages) {
            (Some(p), _) => p.clone(),
            (None, Some(m)) => {
                assert_eq!(m.len(), 1);
                assert_eq!(m[0].role, "user");
                let user = &template.messages[0].content;
                assert_eq!(template.text.matches(user.as_str()).count(), 1);
                template.text.replace(user.as_str(), &m[0].content)
            }
            (None, None) => panic!("generate case without prompt or messages"),
        };
        // add_bos is false for this model: prompt_ids are exactly the encoded text.
        assert_eq!(tok.encode(&text, true), g.prompt_ids, "prompt {text:?}");
        checked += 1;

        // The fixture's continuation text omits control tokens.
        let visible: Vec<u32> = g
            .continuation
            .iter()
            .copied()
            .filter(|&i| !tok.is_control(i))
            .collect();
        assert_eq!(tok.decode(&visible), g.text);
    }
    assert_eq!(checked, fix.generate.len());
}

const ROUND_TRIP: &[&str] = &[
    "",
    " ",
    "a",
    "Hello, world!",
    "  leading and trailing  ",
    "\t\ttabs\t and\n\n\nnewlines \r\n\r\n",
    "                                        many spaces",
    "emoji: 🤖🦀🚀👩‍👩‍👧‍👦 🇫🇷 ✨",
    "CJK: 日本語のテキスト、中文字符，한국어 텍스트",
    "accents: café naïve résumé Straße Ångström ñ",
    "digits 0123456789 ٣٤٥ ５６ ½ Ⅻ 3.14159e-10",
    "mixed  \u{3000}ideographic\u{00A0}nbsp\u{2009}thin\u{200B}zwsp",
    "don't DON'T it's we've they'd I'm you're 'quoted'",
    "def f(x):\n    return {'a': [1, 2, 3]}  # comment\n",
    "<|im_start|>not special when parsed as text<|im_end|>",
    "\u{0}\u{1}\u{7f}\u{80}\u{ad}\u{feff}",
    "Ελληνικά русский עברית العربية हिन्दी ไทย",
    "a\u{0301}e\u{0301}\u{0308}",
    "\u{10FFFF}\u{E000}\u{FFFD}",
];

#[test]
fn smollm_round_trip() {
    let tok = smollm();
    for s in ROUND_TRIP {
        for parse_special in [false, true] {
            let ids = tok.encode(s, parse_special);
            assert_eq!(
                tok.decode(&ids),
                *s,
                "round trip of {s:?} (parse_special={parse_special})"
            );
            assert!(ids.iter().all(|&i| (i as usize) < tok.vocab_size()));
        }
    }
}

#[test]
fn smollm_pretokenizer_behaviour() {
    let tok = smollm();
    let pieces = |s: &str| -> Vec<String> {
        tok.encode(s, false)
            .iter()
            .map(|&i| String::from_utf8_lossy(tok.token_bytes(i)).into_owned())
            .collect()
    };
    // Digits are split one by one (`\p{N}` first), including non-ASCII digits.
    assert_eq!(pieces("2024"), ["2", "0", "2", "4"]);
    assert_eq!(pieces("x 42"), ["x", " ", "4", "2"]);
    // Whitespace runs: all but the last space stay together, the last joins the next word.
    assert_eq!(tok.decode(&tok.encode("a     b", false)), "a     b");
    let ids = tok.encode("a     b", false);
    assert_eq!(tok.token_bytes(*ids.last().unwrap()), b" b");
    // Contractions are split off.
    assert_eq!(pieces("don't"), ["don", "'t"]);
}

#[test]
fn smollm_parse_special_switch() {
    let tok = smollm();
    let s = "<|im_start|>user\nHi<|im_end|>";
    let with = tok.encode(s, true);
    assert_eq!(with[0], 1);
    assert_eq!(*with.last().unwrap(), 2);
    let without = tok.encode(s, false);
    assert!(
        !without.contains(&1) && !without.contains(&2),
        "{without:?}"
    );
    assert!(without.len() > with.len());
    assert_eq!(tok.decode(&without), s);
    assert_eq!(tok.decode(&with), s);
    // Only the special token itself, and special tokens back to back.
    assert_eq!(tok.encode("<|im_end|>", true), [2]);
    assert_eq!(
        tok.encode("<|im_end|><|im_end|><|endoftext|>", true),
        [2, 2, 0]
    );
    // A partial special token is plain text.
    let partial = tok.encode("<|im_end", true);
    assert!(!partial.contains(&2));
}

#[test]
fn smollm_stream_decoder_multibyte() {
    let tok = smollm();
    // 🤖 (4 bytes) is spread over several byte-level tokens in this vocab.
    let ids = tok.encode("I 🤖 you", false);
    let robot: Vec<u32> = tok.encode(" 🤖", false);
    assert!(robot.len() >= 2, "{robot:?}");
    let mut dec = StreamDecoder::new(tok);
    let mut outputs = Vec::new();
    for &id in &ids {
        outputs.push(dec.push(id));
    }
    outputs.push(dec.finish());
    let joined: String = outputs.concat();
    assert_eq!(joined, "I 🤖 you");
    // The robot shows up whole, in one output, and no output contains U+FFFD.
    assert_eq!(outputs.iter().filter(|o| o.contains('🤖')).count(), 1);
    assert!(outputs.iter().all(|o| !o.contains('\u{FFFD}')));
    // At least one push returned nothing because the character was incomplete.
    assert!(outputs[..ids.len()].iter().any(|o| o.is_empty()));

    // Truncated character at the end: flushed as U+FFFD by finish().
    let mut dec = StreamDecoder::new(tok);
    let mut s = String::new();
    for &id in &robot[..robot.len() - 1] {
        s += &dec.push(id);
    }
    s += &dec.finish();
    assert!(s.ends_with('\u{FFFD}'), "{s:?}");

    // Matches decode() on every fixture case.
    for case in &fixture().tokenize {
        let mut dec = StreamDecoder::new(tok);
        let mut s: String = case.ids.iter().map(|&i| dec.push(i)).collect();
        s += &dec.finish();
        assert_eq!(s, case.text);
    }
}

/// Deterministic pseudo-random strings mixing ASCII, whitespace, digits, multi-byte characters
/// and special-token fragments.
fn random_strings(count: usize, max_len: usize) -> Vec<String> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let pieces = [
        " ",
        "  ",
        "\n",
        "\t",
        "\r\n",
        "'s",
        "'",
        "<|im_start|>",
        "<|im_end|>",
        "<|",
        "|>",
        "é",
        "日本",
        "🤖",
        "\u{200D}",
        "\u{0301}",
        "0",
        "42",
        "x",
        "The",
        "ＡＢ",
        "\u{3000}",
        "\u{85}",
    ];
    (0..count)
        .map(|_| {
            let len = (next() % max_len as u64) as usize;
            let mut s = String::new();
            for _ in 0..len {
                let r = next();
                match r % 4 {
                    0 => s.push_str(pieces[(r >> 8) as usize % pieces.len()]),
                    1 => s.push(char::from((r >> 8) as u8 % 95 + 32)),
                    _ => {
                        let cp = ((r >> 8) % 0x11_0000) as u32;
                        if let Some(c) = char::from_u32(cp) {
                            s.push(c);
                        }
                    }
                }
            }
            s
        })
        .collect()
}

/// SmolLM2's vocab has no token for a few bytes (0x04, 0x06, 0x13, 0x14, 0x16, 0x1D, the lead
/// bytes 0xF1/0xF2 of planes 4-11, and bytes that never occur in UTF-8); like llama.cpp, those
/// bytes are dropped by encode, so decode(encode(s)) is s without them.
#[test]
fn smollm_random_strings_round_trip_without_panics() {
    let tok = smollm();
    let chars = byte_chars();
    let missing: Vec<u8> = (0..=255u8)
        .filter(|&b| tok.token_id(&chars[usize::from(b)]).is_none())
        .collect();
    assert_eq!(
        missing,
        [
            0x04, 0x06, 0x13, 0x14, 0x16, 0x1D, 0xC0, 0xC1, 0xF1, 0xF2, 0xF5, 0xF6, 0xF7, 0xF8,
            0xF9, 0xFA, 0xFB, 0xFC, 0xFD, 0xFE, 0xFF
        ]
    );
    let mut lossy = 0;
    for s in random_strings(300, 60) {
        let kept: Vec<u8> = s.bytes().filter(|b| !missing.contains(b)).collect();
        let expect = String::from_utf8_lossy(&kept).into_owned();
        lossy += usize::from(expect != s);
        let plain = tok.encode(&s, false);
        assert_eq!(tok.decode(&plain), expect);
        let special = tok.encode(&s, true);
        assert_eq!(tok.decode(&special), expect);
        let mut dec = StreamDecoder::new(tok);
        let mut streamed: String = special.iter().map(|&i| dec.push(i)).collect();
        streamed += &dec.finish();
        assert_eq!(streamed, expect);
    }
    assert!(lossy < 300, "most random strings should round-trip exactly");
}

#[test]
fn smollm_speed_100kb() {
    let tok = smollm();
    let base = "The quick brown fox jumps over the lazy dog; 1234 numbers, café 日本語 🤖\n\
                def f(x):\n    return x * 2  # comment   \n<|im_start|>user\nHi<|im_end|>\n";
    let mut text = String::new();
    while text.len() < 100_000 {
        text.push_str(base);
    }
    let t = Instant::now();
    let ids = tok.encode(&text, true);
    let dt = t.elapsed();
    eprintln!(
        "encoded {} bytes -> {} tokens in {:?}",
        text.len(),
        ids.len(),
        dt
    );
    assert_eq!(tok.decode(&ids), text);
    if !cfg!(debug_assertions) {
        assert!(dt.as_secs_f64() < 0.5, "too slow: {dt:?}");
    }

    // Degenerate inputs: one huge word, one huge whitespace run, one huge digit run.
    for s in [
        "a".repeat(50_000),
        " ".repeat(50_000),
        "7".repeat(50_000),
        "\u{1F916}".repeat(10_000),
    ] {
        let t = Instant::now();
        let ids = tok.encode(&s, true);
        eprintln!(
            "degenerate {} bytes -> {} tokens in {:?}",
            s.len(),
            ids.len(),
            t.elapsed()
        );
        assert_eq!(tok.decode(&ids), s);
    }
}

// ---------------------------------------------------------------------------------------------
// Synthetic vocabularies
// ---------------------------------------------------------------------------------------------

/// The 256 byte-level characters, in byte order.
fn byte_chars() -> Vec<String> {
    let mut out = Vec::new();
    let mut n = 0u32;
    for b in 0..=255u32 {
        let keep =
            (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
        let cp = if keep {
            b
        } else {
            n += 1;
            255 + n
        };
        out.push(char::from_u32(cp).unwrap().to_string());
    }
    out
}

/// A vocab of the 256 byte tokens plus `extra` tokens, with the given merges.
fn synthetic(extra: &[(&str, i32)], merges: &[&str], pre: Option<&str>) -> Vocab {
    let mut tokens = byte_chars();
    let mut types = vec![token_type::NORMAL; 256];
    for &(t, ty) in extra {
        tokens.push(t.to_string());
        types.push(ty);
    }
    Vocab {
        model: "gpt2".into(),
        pre: pre.map(String::from),
        tokens,
        token_types: types,
        merges: merges.iter().map(|s| s.to_string()).collect(),
        scores: vec![],
        bos_id: None,
        eos_id: None,
        add_bos: false,
        ..Vocab::default()
    }
}

#[test]
fn synthetic_merge_order_and_ties() {
    // "a a" has the best rank; in "aaa" the leftmost pair merges first (llama.cpp/HF order).
    let v = synthetic(
        &[("aa", 1), ("aaa", 1), ("ab", 1)],
        &["a a", "aa a", "a b"],
        Some("gpt-2"),
    );
    let tok = Tokenizer::new(v).unwrap();
    let id = |s: &str| tok.token_id(s).unwrap();
    assert_eq!(tok.encode("aaa", false), [id("aaa")]);
    assert_eq!(tok.encode("aaaa", false), [id("aa"), id("aa")]);
    assert_eq!(tok.encode("aab", false), [id("aa"), id("b")]);
    assert_eq!(tok.encode("ab", false), [id("ab")]);
    // Space is the byte-level 'Ġ'; no merge for it here.
    assert_eq!(tok.encode(" a", false), [id("Ġ"), id("a")]);
}

#[test]
fn synthetic_merge_through_missing_intermediate() {
    // "xy" is not in the vocab but "xyz" is: merging must still reach "xyz"; a word that stops
    // at "xy" falls back to the character tokens.
    let v = synthetic(&[("xyz", 1)], &["x y", "xy z"], Some("gpt-2"));
    let tok = Tokenizer::new(v).unwrap();
    let id = |s: &str| tok.token_id(s).unwrap();
    assert_eq!(tok.encode("xyz", false), [id("xyz")]);
    assert_eq!(tok.encode("xy", false), [id("x"), id("y")]);
}

#[test]
fn synthetic_special_tokens() {
    let v = synthetic(
        &[
            ("<ctl>", token_type::CONTROL),
            ("<ctl>x", token_type::CONTROL),
            ("[USR]", token_type::USER_DEFINED),
            ("", token_type::CONTROL),
        ],
        &[],
        Some("gpt-2"),
    );
    let tok = Tokenizer::new(v).unwrap();
    let ctl = tok.token_id("<ctl>").unwrap();
    let ctlx = tok.token_id("<ctl>x").unwrap();
    let usr = tok.token_id("[USR]").unwrap();
    // Longest special token first.
    assert_eq!(tok.encode("<ctl>x<ctl>", true), [ctlx, ctl]);
    // Control tokens only with parse_special; user-defined tokens always.
    let plain = tok.encode("a<ctl>b", false);
    assert!(!plain.contains(&ctl));
    assert_eq!(tok.decode(&plain), "a<ctl>b");
    assert_eq!(tok.encode("[USR]", false), [usr]);
    assert_eq!(tok.encode("[USR]", true), [usr]);
    assert_eq!(tok.token_bytes(usr), b"[USR]");
    assert!(tok.is_control(ctl) && !tok.is_control(usr));
    // The empty control token is never matched and does not loop.
    assert_eq!(tok.decode(&tok.encode("abc", true)), "abc");
}

#[test]
fn synthetic_pre_tokenizers() {
    let cases: &[(Option<&str>, PreTokenizerKind)] = &[
        (Some("smollm"), PreTokenizerKind::Smollm),
        (Some("llama-bpe"), PreTokenizerKind::Llama3),
        (Some("llama3"), PreTokenizerKind::Llama3),
        (Some("qwen2"), PreTokenizerKind::Qwen2),
        (Some("gpt-2"), PreTokenizerKind::Gpt2),
        (Some("default"), PreTokenizerKind::Default),
        (None, PreTokenizerKind::Default),
        (Some("tekken"), PreTokenizerKind::Tekken),
        (Some("gpt-4o"), PreTokenizerKind::Gpt4o),
        (Some("deepseek-v3"), PreTokenizerKind::Deepseek3),
    ];
    let strings = random_strings(40, 40);
    for &(pre, kind) in cases {
        let tok = Tokenizer::new(synthetic(&[], &[], pre)).unwrap();
        assert_eq!(tok.pre_tokenizer(), kind);
        for s in &strings {
            // Without merges every byte is one token, whatever the split.
            let ids = tok.encode(s, false);
            assert_eq!(ids.len(), s.len(), "{pre:?} {s:?}");
            assert_eq!(tok.decode(&ids), *s);
        }
    }
    // A name llama.cpp does not know (it spells GPT-2 "gpt-2"), or one it runs without byte-level
    // encoding, is refused by name instead of silently split some other way.
    for (pre, why) in [("no-such-pre", "not a pre-tokenizer llama.cpp knows"), ("gpt2", "not a pre-tokenizer")] {
        match Tokenizer::new(synthetic(&[], &[], Some(pre))) {
            Err(ferrolm::tokenizer::TokenizerError::Unsupported(m)) => {
                assert!(m.contains(&format!("{pre:?}")) && m.contains(why), "{m}")
            }
            other => panic!("{pre}: {:?}", other.map(|t| t.pre_tokenizer())),
        }
    }
}

/// llama.cpp's `byte_encode = false` pre-tokenizers: a vocabulary of raw UTF-8 strings with `▁`
/// for spaces and `<0xXX>` byte tokens (Gemma 4 style).
fn raw_utf8_vocab(pre: &str) -> Vocab {
    let mut tokens: Vec<String> = (0..256).map(|b| format!("<0x{b:02X}>")).collect();
    let mut types = vec![token_type::BYTE; 256];
    for t in ["\u{2581}", "h", "e", "l", "o", "he", "ll", "hell", "hello", "\u{2581}hello", "\n", "\n\n", "é", " ", "x"] {
        tokens.push(t.to_string());
        types.push(token_type::NORMAL);
    }
    Vocab {
        model: "gpt2".into(),
        pre: Some(pre.into()),
        tokens,
        token_types: types,
        merges: ["h e", "l l", "he ll", "hell o", "\u{2581} hello", "\u{2581} x"].iter().map(|s| s.to_string()).collect(),
        ..Vocab::default()
    }
}

#[test]
fn raw_utf8_pre_tokenizers() {
    for pre in ["gemma4", "granite-embed-multi-311m", "sarvam-moe", "whitespace"] {
        let tok = Tokenizer::new(raw_utf8_vocab(pre)).unwrap();
        let id = |s: &str| tok.token_id(s).unwrap();
        let byte = |b: u8| b as u32;
        if pre == "whitespace" {
            // Runs of non-spaces; the space between is a piece of its own (a token here).
            assert_eq!(tok.encode("hello hello", false), [id("hello"), id(" "), id("hello")]);
            continue;
        }
        // Spaces become ▁ and merge with the following word; lines are split.
        assert_eq!(tok.encode("hello hello", false), [id("hello"), id("\u{2581}hello")]);
        assert_eq!(tok.decode(&tok.encode("hello hello", false)), "hello hello");
        // Characters that are no token become their <0xXX> byte tokens ("€" is E2 82 AC); a
        // symbol merged through "▁x" (in the merges, not the vocabulary) falls back to bytes too.
        assert_eq!(tok.encode("€é", false), [byte(0xE2), byte(0x82), byte(0xAC), id("é")]);
        assert_eq!(tok.encode(" x", false), [byte(0xE2), byte(0x96), byte(0x81), byte(b'x')]);
        assert_eq!(tok.decode(&tok.encode("€é hello", false)), "€é hello");
        // Gemma 4 takes a run of line breaks whole when it is a token; Sarvam merges it.
        let newlines = tok.encode("hello\n\nhello", false);
        match pre {
            "sarvam-moe" => assert_eq!(newlines, [id("hello"), id("\n"), id("\n"), id("hello")]),
            _ => assert_eq!(newlines, [id("hello"), id("\n\n"), id("hello")]),
        }
    }
}

#[test]
fn degenerate_inputs_every_pre_tokenizer() {
    // One name per family of llama.cpp's pre-tokenizers.
    let pres = [
        "default", "gpt-2", "smollm", "llama-bpe", "jais-2", "qwen2", "qwen35", "falcon", "deepseek-llm",
        "deepseek-coder", "deepseek-v3", "spark2_5", "youtu", "poro-chat", "viking", "tekken", "chameleon",
        "gpt-4o", "granite-embed-multi-97m", "tiny_aya", "kimi-k2", "superbpe", "seed-coder", "bailingmoe",
        "ufakzeka", "afmoe", "laguna", "exaone-moe", "minicpm5",
    ];
    let inputs = [
        " ".repeat(20_000),
        " \n".repeat(10_000),
        "\t".repeat(20_000),
        "a".repeat(20_000),
        "aB".repeat(10_000),
        "9".repeat(20_000),
        "!".repeat(20_000),
        "'".repeat(20_000),
        "日".repeat(7_000),
        "x ".repeat(10_000) + &" ".repeat(10_000) + "y",
    ];
    for pre in pres {
        let tok = Tokenizer::new(synthetic(&[], &[], Some(pre))).unwrap();
        let t = Instant::now();
        for s in &inputs {
            let ids = tok.encode(s, true);
            assert_eq!(ids.len(), s.len(), "{pre}");
            assert_eq!(tok.decode(&ids), *s);
        }
        let dt = t.elapsed();
        eprintln!("{pre}: degenerate inputs in {dt:?}");
        if !cfg!(debug_assertions) {
            assert!(dt.as_secs_f64() < 2.0, "{pre} too slow: {dt:?}");
        }
    }
}

#[test]
fn stream_decoder_over_arc() {
    let tok = std::sync::Arc::new(Tokenizer::new(synthetic(&[], &[], Some("gpt-2"))).unwrap());
    let ids = tok.encode("añ€🤖", false);
    assert_eq!(ids.len(), 1 + 2 + 3 + 4);
    let mut dec = StreamDecoder::new(std::sync::Arc::clone(&tok));
    let outs: Vec<String> = ids.iter().map(|&i| dec.push(i)).collect();
    assert_eq!(outs, ["a", "", "ñ", "", "", "€", "", "", "", "🤖"]);
    assert_eq!(dec.finish(), "");
    // Invalid sequences become U+FFFD without panicking.
    let cont = tok.encode("\u{80}", false); // C2 80
    let mut dec = StreamDecoder::new(&*tok);
    assert_eq!(dec.push(cont[1]), "\u{FFFD}");
    assert_eq!(dec.push(cont[0]), "");
    assert_eq!(dec.push(tok.encode("a", false)[0]), "\u{FFFD}a");
}

#[test]
fn synthetic_llama3_ignore_merges() {
    // With llama-bpe, a word that is itself a vocab entry is taken whole even if the merges
    // would not build it.
    let v = synthetic(&[("hello", 1)], &[], Some("llama-bpe"));
    let tok = Tokenizer::new(v).unwrap();
    assert_eq!(tok.encode("hello", false), [tok.token_id("hello").unwrap()]);
    let v = synthetic(&[("hello", 1)], &[], Some("qwen2"));
    let tok = Tokenizer::new(v).unwrap();
    assert_eq!(tok.encode("hello", false).len(), 5);
}

#[test]
fn errors() {
    // "llama" (SentencePiece) is implemented (tests/tokenizer_spm.rs); "t5" (Unigram) is not.
    let mut v = synthetic(&[], &[], None);
    v.model = "t5".into();
    assert!(matches!(
        Tokenizer::new(v),
        Err(TokenizerError::Unsupported(m)) if m.contains("\"t5\"")
    ));
    let mut v = synthetic(&[], &[], None);
    v.model = "bert".into();
    assert!(matches!(
        Tokenizer::new(v),
        Err(TokenizerError::Unsupported(_))
    ));
    let mut v = synthetic(&[], &[], None);
    v.token_types.pop();
    assert!(matches!(
        Tokenizer::new(v),
        Err(TokenizerError::InvalidVocab(_))
    ));
    let mut v = synthetic(&[], &[], None);
    v.bos_id = Some(100_000);
    assert!(matches!(
        Tokenizer::new(v),
        Err(TokenizerError::InvalidVocab(_))
    ));
    let mut v = synthetic(&[], &[], None);
    v.tokens.clear();
    v.token_types.clear();
    assert!(matches!(
        Tokenizer::new(v),
        Err(TokenizerError::InvalidVocab(_))
    ));
}

#[test]
fn incomplete_vocab_does_not_panic() {
    // Missing byte tokens and junk merge rules: ids stay in range, nothing panics.
    let v = Vocab {
        model: "gpt2".into(),
        pre: Some("smollm".into()),
        tokens: vec!["a".into(), "b".into(), "ab".into(), "Ġ".into()],
        token_types: vec![],
        merges: vec![
            "a b".into(),
            "".into(),
            " ".into(),
            "nospace".into(),
            "a  b".into(),
            "ab Ġ".into(),
        ],
        ..Vocab::default()
    };
    let tok = Tokenizer::new(v).unwrap();
    assert_eq!(tok.encode("ab", false), [2]);
    assert_eq!(tok.encode("abc ab", false), [2, 3, 2]);
    for s in random_strings(50, 30) {
        let ids = tok.encode(&s, true);
        assert!(ids.iter().all(|&i| i < 4));
    }
}
