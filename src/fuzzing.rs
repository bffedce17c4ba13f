//! Entry points of the fuzz targets (`fuzz/`, cargo-fuzz on nightly), kept in the library so
//! that every input a fuzzer once crashed on is replayed by a plain `cargo test` on stable
//! (`tests/hostile.rs` runs `fuzz/regressions/TARGET-*` through [`run`]). Each takes arbitrary
//! bytes and must return without panicking, hanging or allocating without bound. No GPU.

use std::ffi::OsString;
use std::sync::OnceLock;

use crate::chat::{ChatTemplate, Message};
use crate::gguf::writer::Writer;
use crate::gguf::{parse_header, GgufFile, Parsed, Value};
use crate::gpu::DeviceLimits;
use crate::loader::{read_model_header, ByteSource};
use crate::model::Config;
use crate::quant::GgmlType;
use crate::tokenizer::Tokenizer;

/// The targets, by name.
pub const TARGETS: &[&str] = &["gguf", "config", "tokenizer", "template", "cli"];

/// Runs the target `name` on `data` (unknown names do nothing).
pub fn run(name: &str, data: &[u8]) {
    match name {
        "gguf" => gguf(data),
        "config" => config(data),
        "tokenizer" => tokenizer(data),
        "template" => template(data),
        "cli" => cli(data),
        _ => {}
    }
}

/// Bytes in memory, cut into parts (like the shards of a gguf-split model).
struct Parts(Vec<Vec<u8>>);

impl ByteSource for Parts {
    fn len(&self) -> u64 {
        self.0.iter().map(|p| p.len() as u64).sum()
    }
    async fn read(&mut self, offset: u64, len: u64) -> crate::Result<Vec<u8>> {
        let all = self.0.concat();
        Ok(all[offset as usize..(offset + len) as usize].to_vec())
    }
    fn part_lens(&self) -> Vec<u64> {
        self.0.iter().map(|p| p.len() as u64).collect()
    }
}

/// The GGUF parser: the whole input as one file, as a growing prefix, and (first byte: cut
/// points) as a set of shards.
pub fn gguf(data: &[u8]) {
    let len = data.len() as u64;
    let whole = parse_header(data, len);
    // A prefix never completes differently from the whole file.
    if let Ok(Parsed::NeedMore { needed_len }) = parse_header(&data[..data.len() / 2], len) {
        assert!(needed_len <= len);
    }
    if let Ok(Parsed::Complete(file)) = whole {
        describe(&file);
    }
    if let Some((&cuts, rest)) = data.split_first() {
        let n = (cuts % 4) as usize + 1;
        let mut parts = Vec::new();
        let mut at = 0;
        for k in 1..n {
            let next = (rest.len() * k / n).max(at);
            parts.push(rest[at..next].to_vec());
            at = next;
        }
        parts.push(rest[at..].to_vec());
        if let Ok(file) = pollster::block_on(read_model_header(&mut Parts(parts))) {
            describe(&file);
        }
    }
}

/// What the engine derives from a header without a GPU: configuration, tokenizer, template,
/// memory plan.
fn describe(file: &GgufFile) {
    let _ = crate::inspect::describe(file);
    if let Ok(c) = Config::from_gguf(file) {
        for context in [1, c.ctx_train] {
            let opts = crate::model::LoadOptions { context_length: Some(context), ..Default::default() };
            let _ = crate::model::check_fits(file, &c, &opts, &crate::model::memory_need(file, &c, &opts), &LIMITS);
        }
    }
    if let Ok(tokenizer) = Tokenizer::from_gguf(file) {
        let _ = tokenizer.encode("Hello <|im_start|> world", true);
        if let Ok(t) = ChatTemplate::from_gguf(file, &tokenizer) {
            let _ = t.render(&[Message::new("user", "hi")], true);
        }
    }
}

/// lavapipe's limits (128 MiB bindings).
const LIMITS: DeviceLimits = DeviceLimits {
    max_storage_binding: 128 << 20,
    max_buffer_size: 1 << 30,
    max_workgroups_per_dim: 65535,
    uniform_align: 256,
    max_invocations_per_workgroup: 1024,
    max_workgroup_storage: 32768,
    max_uniform_binding: 65536,
    max_texture_rows: 8192,
    shader_f16: false,
    subgroups: false,
    subgroup_min_size: 0,
};

/// Hyper-parameter keys (after `ARCH.`) the model builder reads or validates.
const KEYS: &[&str] = &[
    "block_count",
    "embedding_length",
    "feed_forward_length",
    "context_length",
    "vocab_size",
    "attention.head_count",
    "attention.head_count_kv",
    "attention.key_length",
    "attention.value_length",
    "attention.layer_norm_rms_epsilon",
    "attention.scale",
    "attention.sliding_window",
    "attention.sliding_window_pattern",
    "rope.dimension_count",
    "rope.freq_base",
    "rope.freq_base_swa",
    "rope.scaling.type",
    "rope.scaling.factor",
    "rope.scaling.attn_factor",
    "rope.scaling.original_context_length",
    "rope.scaling.yarn_beta_fast",
    "rope.scaling.yarn_beta_slow",
    "rope.scaling.yarn_ext_factor",
    "attn_logit_softcapping",
    "final_logit_softcapping",
];

const ARCHS: &[&str] = &[
    "llama", "qwen2", "qwen3", "phi3", "gemma2", "gemma3", "mamba",
];

/// Reads the fuzz input as a structured header: an architecture, then (key, typed value)
/// records, then the shapes of a few tensors. The header is written with the GGUF writer and
/// parsed back, so the model builder sees what a real file would give it.
pub fn config(data: &[u8]) {
    let mut r = Reader(data);
    let arch = ARCHS[r.byte() as usize % ARCHS.len()];
    let mut w = Writer::new().kv("general.architecture", Value::String(arch.into()));
    let n_keys = r.byte() % 24;
    for _ in 0..n_keys {
        let key = format!("{arch}.{}", KEYS[r.byte() as usize % KEYS.len()]);
        let value = match r.byte() % 6 {
            0 => Value::U32(r.u32() % 4096),
            1 => Value::U32(r.u32()),
            2 => Value::F32(f32::from_bits(r.u32())),
            3 => Value::F64(f64::from_bits(r.u64())),
            4 => Value::String(if r.byte() % 2 == 0 { "linear" } else { "yarn" }.into()),
            _ => Value::U64(r.u64()),
        };
        w = w.kv(&key, value);
    }
    let names = [
        "token_embd.weight",
        "output.weight",
        "blk.0.attn_q.weight",
        "blk.0.attn_k.weight",
        "blk.0.ffn_down.weight",
        "blk.1.attn_norm.weight",
    ];
    for name in names {
        if r.byte() % 2 == 0 {
            continue;
        }
        let dims = [(r.byte() as u64 % 8 + 1) * 32, r.byte() as u64 % 64 + 1];
        w = w.tensor(
            name,
            &dims,
            GgmlType::F32,
            vec![0; (dims[0] * dims[1] * 4) as usize],
        );
    }
    let bytes = w.build();
    if let Ok(Parsed::Complete(file)) = parse_header(&bytes, bytes.len() as u64) {
        describe(&file);
    }
}

/// Input cursor: reads zeros past the end.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }
    fn u64(&mut self) -> u64 {
        (self.u32() as u64) << 32 | self.u32() as u64
    }
}

/// Vocabularies of the tokenizer target: the models and the zoo of the repository (byte-level
/// BPE and SentencePiece), and llama.cpp's vocabulary fixtures when `FERROLM_VOCAB_DIR` (default
/// `tests/fixtures/vocab`) has them. Loaded once per process.
fn tokenizers() -> &'static [Tokenizer] {
    static TOKENIZERS: OnceLock<Vec<Tokenizer>> = OnceLock::new();
    TOKENIZERS.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut paths = vec![
            root.join("models/SmolLM2-135M-Instruct.Q4_1.gguf"),
            root.join("models/gemma-3-270m-q4_k_m.gguf"),
            root.join("tests/fixtures/zoo/tiny-llama-q8_0.gguf"),
        ];
        let vocab_dir = std::env::var_os("FERROLM_VOCAB_DIR")
            .map(Into::into)
            .unwrap_or_else(|| root.join("tests/fixtures/vocab"));
        if let Ok(entries) = std::fs::read_dir(vocab_dir) {
            let mut found: Vec<_> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
                .collect();
            found.sort();
            paths.extend(found);
        }
        paths
            .iter()
            .filter_map(|p| {
                let mut source = crate::loader::FileSource::open(p).ok()?;
                let file = pollster::block_on(crate::loader::read_header(&mut source)).ok()?;
                Tokenizer::from_gguf(&file).ok()
            })
            .collect()
    })
}

/// Loads what a target needs once, before fuzzing starts (so that it is not timed as an input).
pub fn prepare(name: &str) {
    if name == "tokenizer" {
        tokenizers();
    }
}

/// Both tokenizers: the first byte picks a vocabulary and encode or decode; encode takes the
/// rest as text (lossy UTF-8, special tokens parsed or not), decode as little-endian u16/u32 ids
/// (out-of-range ids included).
pub fn tokenizer(data: &[u8]) {
    let tokenizers = tokenizers();
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    if tokenizers.is_empty() {
        return;
    }
    let t = &tokenizers[(pick >> 2) as usize % tokenizers.len()];
    match pick & 3 {
        0 | 1 => {
            let text = String::from_utf8_lossy(rest);
            let ids = t.encode(&text, pick & 1 == 1);
            // Decoding what was encoded gives valid UTF-8 text back.
            let _ = t.decode(&ids);
        }
        2 => {
            let ids: Vec<u32> = rest
                .chunks(2)
                .map(|c| u16::from_le_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32)
                .collect();
            let _ = t.decode(&ids);
        }
        _ => {
            let ids: Vec<u32> = rest
                .chunks(4)
                .map(|c| c.iter().rev().fold(0u32, |a, &b| a << 8 | b as u32))
                .collect();
            let _ = t.decode(&ids);
        }
    }
}

/// Template rendering with the limits on: the input up to the first 0 byte is the template, the
/// rest are messages (role and content alternately, separated by 0 bytes).
pub fn template(data: &[u8]) {
    let mut fields = data.split(|&b| b == 0).map(String::from_utf8_lossy);
    let Some(source) = fields.next() else { return };
    let rest: Vec<_> = fields.collect();
    let messages: Vec<Message> = rest
        .chunks(2)
        .map(|c| Message::new(&c[0], c.get(1).map_or("", |s| s)))
        .collect();
    if let Ok(t) = ChatTemplate::from_source(&source, "<s>", "</s>") {
        if let Ok(out) = t.render(&messages, true) {
            assert!(out.len() <= crate::chat::MAX_OUTPUT_BYTES);
        }
    }
}

/// The CLI argument parser: arguments are the input split at 0 bytes (any bytes, not only
/// UTF-8), then every accessor the commands use.
pub fn cli(data: &[u8]) {
    let args: Vec<OsString> = data.split(|&b| b == 0).map(os_string).collect();
    if let Ok(a) = crate::cli::parse(args) {
        let _ = (
            a.path(0, "MODEL"),
            a.text(1, "TEXT"),
            a.path_flag("messages"),
            a.all("stop"),
            a.has("json"),
        );
        let _ = (
            a.number("top-k", 0u32),
            a.number("temperature", 1.0f32),
            a.string("prompt"),
        );
    }
}

#[cfg(unix)]
fn os_string(bytes: &[u8]) -> OsString {
    use std::os::unix::ffi::OsStringExt;
    OsString::from_vec(bytes.to_vec())
}

#[cfg(not(unix))]
fn os_string(bytes: &[u8]) -> OsString {
    String::from_utf8_lossy(bytes).into_owned().into()
}
