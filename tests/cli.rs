//! The `ferrolm` CLI against the SmolLM2 conformance fixture (exact f32 numpy reference), and its
//! handling of bad input: exit status 2 and one clear line on stderr, never a panic.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{fixture, smollm2_path};
use serde_json::Value;

/// The fixture's tolerance for `numpy` references (see tests/fixtures and shared/fixtures/README).
const MARGIN: f64 = 0.05;
const LOGIT_TOL: f64 = 0.05;

use common::{cli_stdout as stdout_of, ids, run_cli as ferrolm};

fn join(ids: &[u32]) -> String {
    ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}

fn model() -> String {
    smollm2_path().display().to_string()
}

const SMOLLM2_FIXTURE: &str = "smollm2-135m-instruct-q4_1.json";
const GEMMA3_FIXTURE: &str = "gemma-3-270m-q4_k_m.json";

fn gemma3() -> String {
    common::gemma3_path().display().to_string()
}

#[test]
fn tokenize_matches_fixture() {
    check_tokenize(&model(), SMOLLM2_FIXTURE);
}

#[test]
fn gemma3_tokenize_matches_fixture() {
    check_tokenize(&gemma3(), GEMMA3_FIXTURE);
}

#[test]
fn score_matches_fixture_teacher_forced() {
    check_score(&model(), SMOLLM2_FIXTURE);
}

#[test]
fn gemma3_score_matches_fixture_teacher_forced() {
    check_score(&gemma3(), GEMMA3_FIXTURE);
}

#[test]
fn greedy_generation_reproduces_fixture() {
    check_generate(&model(), SMOLLM2_FIXTURE);
}

#[test]
fn gemma3_greedy_generation_reproduces_fixture() {
    check_generate(&gemma3(), GEMMA3_FIXTURE);
}

fn check_tokenize(model: &str, fixture_name: &str) {
    let fx = fixture(fixture_name);
    for case in fx["tokenize"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let out = stdout_of(&ferrolm(&["tokenize", model, text]));
        let got: Value = serde_json::from_str(out.trim()).expect("tokenize prints JSON");
        assert_eq!(ids(&got), ids(&case["ids"]), "tokenize {text:?}");
    }
}

fn check_score(model: &str, fixture_name: &str) {
    let fx = fixture(fixture_name);
    for case in fx["generate"].as_array().unwrap() {
        let prompt = ids(&case["prompt_ids"]);
        let cont = ids(&case["continuation"]);
        let mut tokens = prompt.clone();
        tokens.extend_from_slice(&cont[..cont.len() - 1]);
        let out = stdout_of(&ferrolm(&["score", model, "--tokens", &join(&tokens), "--top-k", "10", "--kv-type", "f32"]));
        let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).expect("score line is JSON")).collect();
        assert_eq!(lines.len(), tokens.len(), "one line per position");
        for (k, step) in case["steps"].as_array().unwrap().iter().enumerate() {
            let pos = prompt.len() - 1 + k;
            let line = &lines[pos];
            assert_eq!(line["pos"].as_u64(), Some(pos as u64));
            let ours: Vec<(u64, f64)> = line["top"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap()))
                .collect();
            let margin = step["margin"].as_f64().unwrap();
            if margin >= MARGIN {
                assert_eq!(ours[0].0, cont[k] as u64, "case {:?} step {k}: arg-max (margin {margin})", case["prompt"]);
            }
            for reference in step["top"].as_array().unwrap() {
                let (id, logit) = (reference[0].as_u64().unwrap(), reference[1].as_f64().unwrap());
                let mine = ours.iter().find(|(i, _)| *i == id).map(|(_, l)| *l);
                let mine = mine.unwrap_or_else(|| panic!("step {k}: reference top token {id} is not in our top 10"));
                assert!(
                    (mine - logit).abs() <= LOGIT_TOL,
                    "case {:?} step {k} token {id}: ours {mine} vs reference {logit}",
                    case["prompt"]
                );
            }
        }
    }
}

fn check_generate(model: &str, fixture_name: &str) {
    let fx = fixture(fixture_name);
    let header = common::read_gguf_header(Path::new(model));
    let tokenizer = ferrolm::tokenizer::Tokenizer::from_gguf(&header).unwrap();
    for case in fx["generate"].as_array().unwrap() {
        let prompt_ids = ids(&case["prompt_ids"]);
        // Chat cases: the rendered prompt is the decoded prompt ids (special tokens parse back).
        let prompt = match case["prompt"].as_str() {
            Some(p) => p.to_string(),
            None => tokenizer.decode(&prompt_ids),
        };
        let out = stdout_of(&ferrolm(&[
            "generate", model, "--prompt", &prompt, "--temperature", "0", "--ignore-eos", "--max-tokens", "32", "--json", "--kv-type", "f32",
        ]));
        let got: Value = serde_json::from_str(out.trim()).expect("generate --json prints one JSON object");
        assert_eq!(ids(&got["prompt_ids"]), prompt_ids, "prompt ids of {prompt:?}");
        let tokens = ids(&got["tokens"]);
        let cont = ids(&case["continuation"]);
        assert_eq!(tokens.len(), 32);
        // Exact up to the first step whose margin is below the tolerance.
        let exact = case["steps"].as_array().unwrap().iter().take_while(|s| s["margin"].as_f64().unwrap() >= MARGIN).count();
        assert!(exact > 0);
        assert_eq!(tokens[..exact], cont[..exact], "continuation of {prompt:?} (first {exact} steps are decisive)");
        if exact == cont.len() {
            assert_eq!(got["text"].as_str(), case["text"].as_str());
        }
        assert!(got["decode_tokens_per_s"].as_f64().unwrap() > 0.0);
        assert!(got["prefill_tokens_per_s"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn inspect_describes_the_model() {
    let out = stdout_of(&ferrolm(&["inspect", &model()]));
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["architecture"], "llama");
    assert_eq!(v["tensor_count"], 272);
    let types: Vec<&str> = v["quant_types"].as_object().unwrap().keys().map(|s| s.as_str()).collect();
    assert_eq!(types, ["F32", "Q4_1", "Q8_0"]);
    assert_eq!(v["metadata"]["llama.embedding_length"], 576);
    assert_eq!(v["metadata"]["tokenizer.ggml.tokens"]["elided"], true, "token lists are elided");
    assert_eq!(v["unsupported_tensors"].as_array().unwrap().len(), 0);
}

#[test]
fn bench_reports_one_submit_and_a_small_readback_per_token() {
    let out = stdout_of(&ferrolm(&["bench", &model(), "--prompt-tokens", "8", "--gen-tokens", "4"]));
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["submits_per_token"].as_f64(), Some(1.0), "{v}");
    assert!(v["readback_bytes_per_token"].as_u64().unwrap() <= 512, "{v}");
    assert!(v["dispatches_per_token"].as_u64().unwrap() > 30, "{v}");
    assert!(v["decode_tokens_per_s"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["adapter"].as_str().is_some_and(|a| !a.is_empty()), "{v}");
}

#[test]
fn bench_profile_splits_each_step_over_its_kernels() {
    let args = ["bench", &model(), "--prompt-tokens", "20", "--gen-tokens", "2", "--context", "256", "--profile"];
    let v: Value = serde_json::from_str(stdout_of(&ferrolm(&args)).trim()).unwrap();
    for (step, tokens, dispatches) in [("decode", 1, v["dispatches_per_token"].as_u64().unwrap()), ("prefill_chunk", 20, 0)] {
        let p = &v["profile"][step];
        assert_eq!(p["tokens"], tokens, "{p}");
        let kernels = p["kernels"].as_array().expect("kernels");
        let labels: Vec<&str> = kernels.iter().map(|k| k["label"].as_str().unwrap()).collect();
        // Every group once, slowest first, each with its dispatches and a time that fits the step.
        let unique: std::collections::BTreeSet<&&str> = labels.iter().collect();
        assert_eq!(unique.len(), labels.len(), "{p}");
        let ms: Vec<f64> = kernels.iter().map(|k| k["ms"].as_f64().unwrap()).collect();
        assert!(ms.windows(2).all(|w| w[0] >= w[1]), "{p}");
        let step_ms = p["step_ms"].as_f64().unwrap();
        assert!(step_ms > 0.0 && ms.iter().all(|&m| (0.0..=step_ms * 2.0).contains(&m)), "{p}");
        let total: u64 = kernels.iter().map(|k| k["dispatches"].as_u64().unwrap()).sum();
        if dispatches > 0 {
            assert_eq!(total, dispatches, "{p}");
        }
        // SmolLM2's 30 blocks: one attention dispatch each, and its matrix shapes by name.
        let attention = kernels.iter().find(|k| k["label"].as_str().unwrap().starts_with("Attention attend")).expect("attention");
        assert_eq!(attention["dispatches"], 30, "{p}");
        let shape = if tokens == 1 { "matvec Q8_0 49152x576 t1" } else { "ffn_in Q4_1 1536x576 t16" };
        assert!(labels.contains(&shape), "{shape} in {labels:?}");
    }
}

#[test]
fn bench_of_a_synthetic_model_reports_bandwidth_and_the_tuned_kernels() {
    let spec = "arch=llama,layers=2,d=64,ffn=128,heads=4,kv_heads=2,vocab=256,type=q8_0";
    let args = ["bench", "--synthetic", spec, "--prompt-tokens", "8", "--gen-tokens", "4", "--context", "64"];
    let v: Value = serde_json::from_str(stdout_of(&ferrolm(&args)).trim()).unwrap();
    // Per block Q, K, V, O, gate, up, down (64·64 + 2·32·64 + 64·64 + 3·128·64 elements), the
    // output matrix (256·64), one row of the embedding (64); Q8_0 is 34 bytes per 32 elements.
    let elements = 2 * (64 * 64 + 2 * 32 * 64 + 64 * 64 + 3 * 128 * 64) + 256 * 64 + 64;
    assert_eq!(v["weight_bytes_per_token"].as_u64(), Some(elements / 32 * 34), "{v}");
    // The memory speed is the faster of the copy command and the copy shader (both counting bytes
    // read and written).
    let copy = v["copy_gb_per_s"].as_f64().unwrap();
    let (by_command, by_shader) = (v["copy_command_gb_per_s"].as_f64().unwrap(), v["copy_shader_gb_per_s"].as_f64().unwrap());
    assert!(by_command > 0.0 && by_shader > 0.0 && copy == by_command.max(by_shader), "{v}");
    let decode = v["decode_tokens_per_s"].as_f64().unwrap();
    assert!(decode > 0.0, "{v}");
    let fraction = elements as f64 / 32.0 * 34.0 * decode / (copy * 1e9);
    assert!((v["bandwidth_fraction"].as_f64().unwrap() - fraction).abs() <= 1e-9 * fraction.max(1.0), "{v}");
    // Five decode shapes (attention input, output projection, feed-forward input, down
    // projection, output head) and four of a prefill chunk, each with a variant the tuner tried.
    let variants = v["kernel_variants"].as_object().expect("kernel_variants");
    assert_eq!(variants.len(), 9, "{v}");
    assert_eq!(variants.keys().filter(|k| k.ends_with(" t1")).count(), 5, "{v}");
    assert!(v["model"].as_str().unwrap().contains(spec));

    let forced = [&args[..], &["--kernel", "t1r1-storage"]].concat();
    let v: Value = serde_json::from_str(stdout_of(&ferrolm(&forced)).trim()).unwrap();
    assert_eq!(v["kernel_forced"], "t1r1-storage", "{v}");
    assert_eq!(v["tune"]["timed"], 0, "{v}");
}

#[test]
fn bad_kernel_variants_and_synthetic_specs_are_usage_errors() {
    assert_bad_input(&ferrolm(&["bench", &model(), "--kernel", "t3r1-fast"]), "bad variant", "t3r1-fast");
    assert_bad_input(&ferrolm(&["bench", "--synthetic", "layers=1,d=64"]), "incomplete spec", "missing");
    assert_bad_input(&ferrolm(&["bench", "--synthetic", "d=576,layers=1,ffn=64,heads=9,vocab=9,type=q4_k"]), "rows not whole blocks", "576");
    assert_bad_input(&ferrolm(&["bench", &model(), "--synthetic", "layers=1"]), "both a model and a spec", "not both");
    assert_bad_input(&ferrolm(&["bench", &model(), "--rounds", "3"]), "rounds without speculation", "--speculative");
    assert_bad_input(&ferrolm(&["bench", &model(), "--speculative", "prompt-lookup", "--rounds", "0"]), "zero rounds", "--rounds");
}

#[test]
fn speculative_bench_alternates_rounds_and_compares_their_tokens() {
    let prompt = "one two three four one two three four one two three four one two";
    let args = ["bench", &model(), "--prompt", prompt, "--gen-tokens", "6", "--speculative", "prompt-lookup", "--rounds", "2"];
    let v: Value = serde_json::from_str(stdout_of(&ferrolm(&args)).trim()).unwrap();
    assert_eq!(v["rounds"], 2, "{v}");
    assert_eq!(v["identical_tokens"], true, "{v}");
    let per_round: Vec<f64> = v["speedup_per_round"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    assert_eq!(per_round.len(), 2, "{v}");
    // Two rounds: the median is their mean.
    let speedup = v["speedup"].as_f64().unwrap();
    assert!((speedup - (per_round[0] + per_round[1]) / 2.0).abs() < 1e-9, "{v}");
    assert!(v["plain_decode_tokens_per_s"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["drafted_tokens"].as_u64().is_some(), "{v}");
}

// ---------------------------------------------------------------------------------------------
// Bad input: exit status 2, one line on stderr naming the problem.
// ---------------------------------------------------------------------------------------------

fn assert_bad_input(out: &Output, what: &str, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{what}: exit status (stderr: {stderr})");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: one line on stderr, got {stderr:?}");
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    assert!(
        stderr.to_lowercase().contains(&needle.to_lowercase()),
        "{what}: stderr should mention {needle:?}: {stderr}"
    );
}

/// A scratch directory for corrupted model files, removed at the end of the test.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("ferrolm-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run_on(path: &Path, command: &str) -> Output {
    let p = path.display().to_string();
    match command {
        "generate" => ferrolm(&["generate", &p, "--prompt", "hi", "--max-tokens", "1"]),
        other => ferrolm(&[other, &p]),
    }
}

#[test]
fn truncated_models_are_rejected_cleanly() {
    let bytes = std::fs::read(smollm2_path()).unwrap();
    let header = common::read_gguf_header(&smollm2_path());
    let data_start = header.data_offset as usize;
    let scratch = Scratch::new("truncated");
    // 10 cuts inside the header (magic, counts, metadata, tensor infos), 10 inside the weights.
    let mut cuts: Vec<usize> = vec![0, 3, 7, 15, 23, 40, 1000, data_start / 3, data_start / 2, data_start - 1];
    cuts.extend((1..=10).map(|i| data_start + (bytes.len() - data_start) * i / 11));
    for (i, &cut) in cuts.iter().enumerate() {
        let path = scratch.write(&format!("cut{i}.gguf"), &bytes[..cut]);
        for command in ["inspect", "generate"] {
            let out = run_on(&path, command);
            // Header cuts read as truncation; weight cuts as tensor data past the end.
            let needle = if cut < data_start { "" } else { "past the end" };
            assert_bad_input(&out, &format!("{command} on a file cut at byte {cut}"), needle);
        }
    }
}

#[test]
fn hostile_headers_are_rejected_cleanly() {
    let bytes = std::fs::read(smollm2_path()).unwrap();
    // The header alone (the real tensor infos follow the metadata, so counts stay plausible).
    let head = &bytes[..2_000_000];
    let scratch = Scratch::new("hostile");
    // GGUF v3 header: magic (4), version u32 (4), tensor count u64 @8, kv count u64 @16,
    // then the first key: length u64 @24.
    let patch = |offset: usize, value: &[u8]| {
        let mut b = head.to_vec();
        b[offset..offset + value.len()].copy_from_slice(value);
        b
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("wrong magic", patch(0, b"GGML"), "magic"),
        ("string length 2^63", patch(24, &(1u64 << 63).to_le_bytes()), "string"),
        ("tensor count 2^40", patch(8, &(1u64 << 40).to_le_bytes()), "tensor"),
        ("metadata count 2^40", patch(16, &(1u64 << 40).to_le_bytes()), "metadata"),
        ("version 99", patch(4, &99u32.to_le_bytes()), "version"),
    ];
    for (what, data, needle) in cases {
        let path = scratch.write("hostile.gguf", &data);
        for command in ["inspect", "generate"] {
            assert_bad_input(&run_on(&path, command), &format!("{command}: {what}"), needle);
        }
    }
}

#[test]
fn tensor_data_past_the_end_is_rejected() {
    use ferrolm::gguf::writer::Writer;
    use ferrolm::gguf::Value as V;
    use ferrolm::quant::GgmlType;
    let file = Writer::new()
        .kv("general.architecture", V::String("llama".into()))
        .tensor("a.weight", &[32], GgmlType::F32, vec![0u8; 128])
        .tensor("b.weight", &[64], GgmlType::F32, vec![0u8; 256])
        .build();
    let scratch = Scratch::new("pastend");
    // Drop the last 100 bytes: b.weight now extends past the end of the file.
    let path = scratch.write("short.gguf", &file[..file.len() - 100]);
    for command in ["inspect", "generate"] {
        assert_bad_input(&run_on(&path, command), &format!("{command}: tensor past EOF"), "b.weight");
    }
}

#[test]
fn unusable_input_gives_exit_2() {
    assert_bad_input(&ferrolm(&["inspect", "/nonexistent/model.gguf"]), "missing file", "does not exist");
    assert_bad_input(&ferrolm(&["frobnicate"]), "unknown command", "unknown command");
    assert_bad_input(&ferrolm(&["score", &model(), "--tokens", "1,x"]), "bad token list", "not a token id");
    assert_bad_input(&ferrolm(&["score", &model(), "--tokens", "1,999999"]), "token outside the vocabulary", "vocabulary");
    let long: String = "word ".repeat(300);
    assert_bad_input(
        &ferrolm(&["generate", &model(), "--prompt", &long, "--context", "64"]),
        "prompt longer than the context",
        "context",
    );
}

#[test]
fn unsupported_tensor_types_are_named() {
    use ferrolm::gguf::writer::Writer;
    use ferrolm::gguf::Value as V;
    use ferrolm::quant::GgmlType;
    // A llama-shaped header whose embedding is Q8_1 (no GPU kernel): 64-dim, 4 tokens.
    let tokens: Vec<V> = ["a", "b", "c", "d"].iter().map(|t| V::String(t.to_string())).collect();
    let n = 64u64 * 4;
    let q8_1 = vec![0u8; (n / 32 * GgmlType::Q8_1.block_bytes()) as usize];
    let file = Writer::new()
        .kv("general.architecture", V::String("llama".into()))
        .kv("llama.embedding_length", V::U32(64))
        .kv("llama.attention.head_count", V::U32(1))
        .kv("llama.block_count", V::U32(1))
        .kv("llama.feed_forward_length", V::U32(64))
        .kv("tokenizer.ggml.model", V::String("gpt2".into()))
        .kv("tokenizer.ggml.tokens", V::Array(tokens))
        .tensor("token_embd.weight", &[64, 4], GgmlType::Q8_1, q8_1)
        .build();
    let scratch = Scratch::new("unsupported");
    let path = scratch.write("q8_1.gguf", &file);
    let p = path.display().to_string();
    let described: Value = serde_json::from_str(stdout_of(&ferrolm(&["inspect", &p])).trim()).unwrap();
    assert_eq!(described["unsupported_tensors"], serde_json::json!([{ "tensor": "token_embd.weight", "type": "Q8_1" }]));
    let out = ferrolm(&["generate", &p, "--prompt", "a"]);
    assert_bad_input(&out, "generate with a Q8_1 tensor", "token_embd.weight");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Q8_1"));

    let other = Writer::new().kv("general.architecture", V::String("mamba".into())).build();
    let path = scratch.write("mamba.gguf", &other);
    assert_bad_input(&ferrolm(&["generate", &path.display().to_string(), "--prompt", "a"]), "unknown architecture", "mamba");
}
