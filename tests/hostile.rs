//! Hostile files and arguments (issue 15, items 1-7 and the native side of 10): each ends with
//! exit status 2 and one printable line of at most 300 characters on stderr, never a panic, an
//! abort, raw file bytes on the terminal, or a late failure while streaming weights.

mod common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Output;

use ferrolm::gguf::writer::Writer;
use ferrolm::gguf::{parse_header, Parsed, Value};

/// Runs the CLI with raw OS-string arguments.
fn ferrolm_os(args: &[OsString]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ferrolm"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .expect("run ferrolm")
}

fn ferrolm(args: &[&str]) -> Output {
    ferrolm_os(&args.iter().map(OsString::from).collect::<Vec<_>>())
}

/// Exit 2 and one printable line (≤ 300 characters) on stderr that contains `needle`.
fn assert_one_line_error(out: &Output, what: &str, needle: &str) -> String {
    let stderr = String::from_utf8(out.stderr.clone())
        .unwrap_or_else(|_| panic!("{what}: stderr is not UTF-8: {:?}", out.stderr));
    assert_eq!(
        out.status.code(),
        Some(2),
        "{what}: exit status {:?}, stderr {stderr:?}",
        out.status
    );
    let line = stderr
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("{what}: stderr does not end with a newline: {stderr:?}"));
    assert!(
        !line.contains('\n'),
        "{what}: more than one line: {stderr:?}"
    );
    assert!(
        !line.chars().any(|c| c.is_control()),
        "{what}: control characters on stderr: {stderr:?}"
    );
    assert!(
        line.chars().count() <= 300,
        "{what}: {} characters: {line}",
        line.chars().count()
    );
    assert!(
        !line.contains("panicked") && !line.contains("internal error"),
        "{what}: {line}"
    );
    assert!(
        line.to_lowercase().contains(&needle.to_lowercase()),
        "{what}: stderr should mention {needle:?}: {line}"
    );
    line.to_string()
}

/// A scratch directory removed at the end of the test.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("ferrolm-hostile-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn write(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The tiny Llama of the zoo rewritten with its metadata edited by `edit` and the given
/// alignment (tensor data copied unchanged).
fn rewrite(edit: impl FnOnce(&mut Vec<(String, Value)>), alignment: Option<u32>) -> Vec<u8> {
    let path = common::zoo_path("tiny-llama-q8_0.gguf");
    let bytes = std::fs::read(&path).unwrap();
    let Ok(Parsed::Complete(header)) = parse_header(&bytes, bytes.len() as u64) else {
        panic!("cannot parse {}", path.display())
    };
    let mut metadata: Vec<(String, Value)> = header
        .metadata
        .iter()
        .filter(|(k, _)| k != "general.alignment")
        .cloned()
        .collect();
    edit(&mut metadata);
    let mut w = Writer::new();
    if let Some(a) = alignment {
        w = w.alignment(a);
    }
    for (k, v) in metadata {
        w = w.kv(&k, v);
    }
    for t in &header.tensors {
        let data = bytes[t.offset as usize..(t.offset + t.n_bytes) as usize].to_vec();
        w = w.tensor_raw(&t.name, &t.dims, t.ty.id(), data);
    }
    w.build()
}

fn set(metadata: &mut [(String, Value)], key: &str, value: Value) {
    match metadata.iter_mut().find(|(k, _)| k == key) {
        Some((_, v)) => *v = value,
        None => panic!("no metadata {key}"),
    }
}

fn generate(path: &str) -> Output {
    ferrolm(&["generate", path, "--prompt", "a", "--max-tokens", "1"])
}

fn model() -> String {
    common::zoo_path("tiny-llama-q8_0.gguf")
        .display()
        .to_string()
}

#[cfg(unix)]
#[test]
fn non_utf8_arguments_are_named_and_paths_may_be_any_bytes() {
    use std::os::unix::ffi::OsStringExt;
    let bad = || OsString::from_vec(vec![0xff, 0xfe]);
    let out = ferrolm_os(&["tokenize".into(), model().into(), bad()]);
    assert_one_line_error(&out, "non-UTF-8 text", "argument 3 is not valid UTF-8");
    let out = ferrolm_os(&["generate".into(), model().into(), "--prompt".into(), bad()]);
    assert_one_line_error(&out, "non-UTF-8 prompt", "argument 4 is not valid UTF-8");
    // A non-UTF-8 path is a path: it is opened (and here does not exist).
    let out = ferrolm_os(&[
        "inspect".into(),
        OsString::from_vec(b"/nonexistent/\xff\n.gguf".to_vec()),
    ]);
    assert_one_line_error(&out, "non-UTF-8 path", "does not exist");
    // A real file under a non-UTF-8 name works.
    let scratch = Scratch::new("names");
    let path = scratch.0.join(OsString::from_vec(b"m\xff.gguf".to_vec()));
    std::fs::copy(model(), &path).unwrap();
    let out = ferrolm_os(&["tokenize".into(), path.into_os_string(), "hello".into()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn extra_positional_arguments_are_refused() {
    assert_one_line_error(
        &ferrolm(&["tokenize", &model(), "a", "b"]),
        "extra argument",
        "unexpected argument 'b'",
    );
    assert_one_line_error(
        &ferrolm(&["inspect", &model(), "x\n\u{1b}[2J"]),
        "escaped extra argument",
        "unexpected argument 'x\\n\\u{1b}[2J'",
    );
}

#[test]
fn raw_file_bytes_never_reach_the_terminal() {
    let scratch = Scratch::new("escape");
    let evil = "evil\nkey\r\u{1b}[2J\u{7}";
    let file = rewrite(
        |m| {
            m.extend([
                (evil.to_string(), Value::U8(1)),
                (evil.to_string(), Value::U8(2)),
            ])
        },
        None,
    );
    let path = scratch.write("dup.gguf", &file);
    for command in ["inspect", "generate"] {
        let out = if command == "inspect" {
            ferrolm(&["inspect", &path])
        } else {
            generate(&path)
        };
        let line = assert_one_line_error(
            &out,
            "duplicate key with control bytes",
            "duplicate metadata key",
        );
        assert!(line.contains("'evil\\nkey\\r\\u{1b}[2J\\u{7}'"), "{line}");
    }
    let file = rewrite(
        |m| {
            set(
                m,
                "general.architecture",
                Value::String("llama\nrm -rf ~".into()),
            )
        },
        None,
    );
    let line = assert_one_line_error(
        &generate(&scratch.write("arch.gguf", &file)),
        "architecture with a newline",
        "unsupported model",
    );
    assert!(line.contains("'llama\\nrm -rf ~'"), "{line}");
    // A huge key is cut to a prefix and its length.
    let long = "k".repeat(100_000);
    let file = rewrite(
        |m| m.extend([(long.clone(), Value::U8(1)), (long.clone(), Value::U8(2))]),
        None,
    );
    let line = assert_one_line_error(
        &ferrolm(&["inspect", &scratch.write("long.gguf", &file)]),
        "100 kB key",
        "(100000 bytes)",
    );
    assert!(line.len() < 200, "{line}");
}

#[test]
fn non_finite_and_inconsistent_hyperparameters_name_their_key() {
    let scratch = Scratch::new("hparams");
    type Edit = Box<dyn Fn(&mut Vec<(String, Value)>)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "NaN epsilon",
            Box::new(|m| {
                set(
                    m,
                    "llama.attention.layer_norm_rms_epsilon",
                    Value::F32(f32::NAN),
                )
            }),
            "llama.attention.layer_norm_rms_epsilon",
        ),
        (
            "negative epsilon",
            Box::new(|m| {
                set(
                    m,
                    "llama.attention.layer_norm_rms_epsilon",
                    Value::F32(-1e-5),
                )
            }),
            "layer_norm_rms_epsilon",
        ),
        (
            "infinite RoPE base",
            Box::new(|m| set(m, "llama.rope.freq_base", Value::F32(f32::INFINITY))),
            "llama.rope.freq_base",
        ),
        (
            "NaN YaRN beta",
            Box::new(|m| {
                m.push((
                    "llama.rope.scaling.yarn_beta_fast".into(),
                    Value::F32(f32::NAN),
                ))
            }),
            "yarn_beta_fast",
        ),
        (
            "zero scaling factor",
            Box::new(|m| m.push(("llama.rope.scaling.factor".into(), Value::F32(0.0)))),
            "llama.rope.scaling.factor",
        ),
        (
            "NaN soft-cap",
            Box::new(|m| m.push(("llama.final_logit_softcapping".into(), Value::F64(f64::NAN)))),
            "final_logit_softcapping",
        ),
        (
            "NaN in a float array",
            Box::new(|m| {
                m.push((
                    "llama.rope.scaling.long_factor".into(),
                    Value::Array(vec![Value::F32(1.0), Value::F32(f32::NAN)]),
                ))
            }),
            "long_factor",
        ),
        (
            "more KV heads than heads",
            Box::new(|m| set(m, "llama.attention.head_count_kv", Value::U32(8))),
            "head_count",
        ),
        (
            "more layers than tensors",
            Box::new(|m| set(m, "llama.block_count", Value::U32(3))),
            "llama.block_count",
        ),
        (
            "width against the tensors",
            Box::new(|m| set(m, "llama.embedding_length", Value::U32(512))),
            "embedding_length",
        ),
        (
            "FFN width against the tensors",
            Box::new(|m| set(m, "llama.feed_forward_length", Value::U32(256))),
            "feed_forward_length",
        ),
        (
            "huge head count",
            Box::new(|m| set(m, "llama.attention.head_count", Value::U32(1 << 23))),
            "head_count",
        ),
    ];
    for (what, edit, needle) in cases {
        let path = scratch.write("h.gguf", &rewrite(edit, None));
        assert_one_line_error(&generate(&path), what, needle);
    }
}

#[test]
fn tensor_data_that_cannot_be_streamed_is_refused_before_gpu_work() {
    let scratch = Scratch::new("align");
    // general.alignment = 1 packs tensor data without padding; a one-byte key of odd length
    // makes sure some tensor starts off a 4-byte boundary.
    for pad in 0..4 {
        let file = rewrite(|m| m.push(("p".repeat(pad + 1), Value::U8(0))), Some(1));
        let Ok(Parsed::Complete(h)) = parse_header(&file, file.len() as u64) else {
            panic!("unparsable rewrite")
        };
        let Some(t) = h.tensors.iter().find(|t| t.offset % 4 != 0) else {
            continue;
        };
        let path = scratch.write("a1.gguf", &file);
        let line = assert_one_line_error(&generate(&path), "general.alignment = 1", &t.name);
        assert!(
            line.contains("4-byte aligned") && !line.contains("ended early"),
            "{line}"
        );
        // The header itself is valid: inspect still describes it.
        assert!(ferrolm(&["inspect", &path]).status.success());
        return;
    }
    panic!("no layout with an unaligned tensor");
}

#[test]
fn hostile_templates_are_refused_with_one_line() {
    let scratch = Scratch::new("templates");
    let messages = scratch.write("m.json", br#"[{"role": "user", "content": "hi"}]"#);
    let long_sum = format!("{{{{ {} }}}}", vec!["1"; 25_000].join(" + "));
    let doubling = "{% set ns = namespace(s='ab') %}{% for i in range(31) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}";
    let cases = [
        (long_sum.as_str(), "tokens"),
        (doubling, "concatenates"),
        // The fuzzer's find: a namespace printed into its own attribute re-escapes its quotes
        // every round (exponential growth from a single mention).
        ("{% set ns = namespace(t='') %}{% for i in range(40) %}{% set ns.t = ns ~ 'x' %}{% endfor %}{{ ns.t|length }}", "concatenates"),
        ("{% for i in range(100000) %}{% for j in range(100000) %}xxxxxxxxxxxxxxxx{% endfor %}{% endfor %}", "bytes"),
        ("{{ 'x' * 50000000 }}", "bytes"),
        ("{% for i in range(3) %}{{ raise_exception('bad\n\u{1b}[2Jrole') }}{% endfor %}", "bad\\n"),
    ];
    for (template, needle) in cases {
        let file = rewrite(
            |m| {
                m.push((
                    "tokenizer.chat_template".into(),
                    Value::String(template.into()),
                ))
            },
            None,
        );
        let path = scratch.write("t.gguf", &file);
        assert_one_line_error(
            &ferrolm(&["render", &path, "--messages", &messages]),
            &template[..template.len().min(40)],
            needle,
        );
    }
}

#[test]
fn a_model_that_cannot_fit_fails_fast_and_says_what_fits() {
    let scratch = Scratch::new("limit");
    // A 2^24-token training context: one layer's KV cache at full context is 2^24 × 2 KV heads ×
    // 64 × 4 bytes = 8 GiB, more than any device binds.
    let file = rewrite(
        |m| set(m, "llama.context_length", Value::U32(1 << 24)),
        None,
    );
    let path = scratch.write("big.gguf", &file);
    let out = ferrolm(&["score", &path, "--tokens", "1,2", "--context", "16777216"]);
    let line = assert_one_line_error(&out, "8 GiB KV cache", "device limit");
    assert!(
        line.contains("8192.0 MiB") && (line.contains("maxStorageBufferBindingSize") || line.contains("maxBufferSize")),
        "{line}"
    );
    // The context it says fits does fit.
    let fits: String = line
        .split("at most ")
        .nth(1)
        .unwrap()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let out = ferrolm(&["score", &path, "--tokens", "1,2", "--context", &fits]);
    assert!(
        out.status.success(),
        "context {fits}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ferrolm(&[
        "score",
        &path,
        "--tokens",
        "1,2",
        "--context",
        &(fits.parse::<u64>().unwrap() + 1).to_string(),
    ]);
    assert_one_line_error(&out, "one token more", "device limit");
}

/// Every input that once crashed a fuzz target, replayed through the same entry points on
/// stable (see fuzz/README.md): each must give an error or a value, never a panic.
#[test]
fn fuzz_regression_inputs_stay_fixed() {
    let dir = common::repo_path("fuzz/regressions");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        replay(&path);
    }
}

fn replay(path: &Path) {
    let data = std::fs::read(path).unwrap();
    let target = path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .split('-')
        .next()
        .unwrap_or("")
        .to_string();
    ferrolm::fuzzing::run(&target, &data);
}

/// The chat templates of the models (and of llama.cpp's vocabulary fixtures when
/// `FERROLM_VOCAB_DIR`, default `../shared/fixtures/vocab`, has them) pass the template limits
/// and render; the fixture's byte-exact renders are checked in tests/chat.rs.
#[test]
fn real_templates_pass_the_limits() {
    use ferrolm::chat::{ChatTemplate, Message};
    let vocab_dir = std::env::var_os("FERROLM_VOCAB_DIR").map(PathBuf::from).unwrap_or_else(|| common::repo_path("../shared/fixtures/vocab"));
    let mut paths = vec![common::smollm2_path(), common::gemma3_path()];
    if let Ok(entries) = std::fs::read_dir(vocab_dir) {
        paths.extend(entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "gguf")));
    }
    let messages = [Message::new("system", "Be brief."), Message::new("user", "hi"), Message::new("assistant", "hello"), Message::new("user", "bye")];
    let mut rendered = 0;
    for path in paths {
        let header = common::read_gguf_header(&path);
        let Some(source) = header.get_str("tokenizer.chat_template").unwrap() else { continue };
        let template = ChatTemplate::from_source(source, "<s>", "</s>").unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let text = template.render(&messages, true).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(text.contains("bye"), "{}: {text}", path.display());
        rendered += 1;
    }
    assert!(rendered >= 1);
}

/// Writes the GGUF seeds of the fuzz corpus (`fuzz/corpus/gguf`): the metadata of every zoo
/// architecture with one small tensor of each of its types, and a two-shard gguf-split file.
#[test]
#[ignore = "writes fuzz seeds"]
fn write_gguf_fuzz_seeds() {
    use ferrolm::quant::GgmlType;
    let dir = common::repo_path("fuzz/corpus/gguf");
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["tiny-llama-q4_k_m", "tiny-qwen2-q8_0", "tiny-qwen3-q5_k_m", "tiny-phi3-q3_k_m", "tiny-gemma2-q2_k"] {
        let bytes = std::fs::read(common::zoo_path(&format!("{name}.gguf"))).unwrap();
        let Ok(Parsed::Complete(h)) = parse_header(&bytes, bytes.len() as u64) else { panic!("{name}") };
        let mut w = Writer::new();
        for (k, v) in &h.metadata {
            // Keep the seed small: the first 64 entries of the vocabulary arrays.
            let v = match v {
                Value::Array(items) if items.len() > 64 => Value::Array(items[..64].to_vec()),
                v => v.clone(),
            };
            w = w.kv(k, v);
        }
        let mut types: Vec<GgmlType> = h.tensors.iter().map(|t| t.ty).collect();
        types.dedup();
        for (i, ty) in types.iter().enumerate() {
            let n = ty.block_elems();
            w = w.tensor(&format!("blk.{i}.t.weight"), &[n], *ty, vec![0; ty.row_bytes(n).unwrap() as usize]);
        }
        std::fs::write(dir.join(name), w.build()).unwrap();
    }
    let shard = |no: u16| {
        Writer::new()
            .kv("general.architecture", Value::String("llama".into()))
            .kv("split.no", Value::U16(no))
            .kv("split.count", Value::U16(2))
            .kv("split.tensors.count", Value::I32(2))
            .tensor(&format!("t{no}"), &[8], GgmlType::F32, vec![0; 32])
            .build()
    };
    std::fs::write(dir.join("split-2"), [vec![1u8], shard(0), shard(1)].concat()).unwrap();
}
