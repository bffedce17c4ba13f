//! Helpers shared by the integration tests: the GPU context, repository paths, fixtures and the
//! model files (SmolLM2, Gemma 3, the zoo). Each test binary includes this with `mod common;` and uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ferrolm::gguf::GgufFile;
use ferrolm::gpu::Context;
use ferrolm::loader::{read_header, FileSource};

/// The GPU context, created once per test process and shared by all tests in it.
pub fn gpu() -> Arc<Context> {
    static CTX: OnceLock<Arc<Context>> = OnceLock::new();
    CTX.get_or_init(|| match pollster::block_on(Context::new()) {
        Ok(ctx) => Arc::new(ctx),
        Err(e) => panic!(
            "no GPU adapter for the tests ({e}): install mesa-vulkan-drivers (lavapipe) or a GPU \
             driver; see README"
        ),
    })
    .clone()
}

/// A path relative to the repository root.
pub fn repo_path(rel: impl AsRef<Path>) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The parsed JSON fixture `tests/fixtures/NAME`.
pub fn fixture(name: &str) -> serde_json::Value {
    let path = repo_path("tests/fixtures").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {} unreadable: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("fixture {} is not valid JSON: {e}", path.display()))
}

/// The SmolLM2-135M-Instruct Q4_1 model. Panics (never skips) when it is missing.
pub fn smollm2_path() -> PathBuf {
    let path = repo_path("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !path.is_file() {
        panic!("model missing: run scripts/setup.sh (see README); expected {}", path.display());
    }
    path
}

/// The Gemma 3 270M Q4_K_M model. Panics (never skips) when it is missing.
pub fn gemma3_path() -> PathBuf {
    let path = repo_path("models/gemma-3-270m-q4_k_m.gguf");
    if !path.is_file() {
        panic!("model missing: run scripts/setup.sh (see README); expected {}", path.display());
    }
    path
}

/// A file of the tiny-model zoo, `tests/fixtures/zoo/NAME`. Panics (never skips) when missing.
pub fn zoo_path(name: &str) -> PathBuf {
    let path = repo_path("tests/fixtures/zoo").join(name);
    if !path.is_file() {
        panic!("zoo file missing: run scripts/setup.sh (see README); expected {}", path.display());
    }
    path
}

/// The parsed GGUF header (metadata and tensor infos) of a model file.
pub fn read_gguf_header(path: &Path) -> GgufFile {
    let mut source = FileSource::open(path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    pollster::block_on(read_header(&mut source)).unwrap_or_else(|e| panic!("cannot read the GGUF header of {}: {e}", path.display()))
}

/// Loads a model file onto the test GPU (weights streamed as the CLI does), with a KV cache of
/// `context_length` tokens. No tokenizer is needed: tests feed token ids.
pub fn load_model(path: &Path, context_length: u32) -> ferrolm::model::Model {
    load_model_with(path, context_length, ferrolm::model::KvType::F32)
}

/// [`load_model`] with a KV cache of `kv_type`.
pub fn load_model_with(path: &Path, context_length: u32, kv_type: ferrolm::model::KvType) -> ferrolm::model::Model {
    let ctx = gpu();
    let mut source = FileSource::open(path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let header = pollster::block_on(read_header(&mut source)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let options = ferrolm::model::LoadOptions { context_length: Some(context_length), kv_type, ..Default::default() };
    let mut model = ferrolm::model::Model::new(ctx, &header, &options).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    pollster::block_on(ferrolm::loader::stream_weights(&mut source, &mut model, &mut |_| {}))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    model
}

/// Token ids of a JSON array.
pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().expect("id array").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

/// The tolerance of a `numpy` reference with an f32 KV cache (shared/fixtures/README).
pub const F32_TOL: f64 = 0.05;
/// The tolerance with an f16 KV cache (the issue that made f16 the default sets it).
pub const F16_TOL: f64 = 0.1;

/// Checks a model against a fixture's `generate` cases with the tolerances of a `numpy`
/// reference: teacher-forced (arg-max where margin >= 0.05, every listed top logit within 0.05)
/// and free-running greedy (exact up to the first step with margin < 0.05). Returns a list of
/// failures (empty when the model conforms).
pub fn conformance_failures(model: &mut ferrolm::model::Model, fixture: &serde_json::Value, label: &str) -> Vec<String> {
    conformance_failures_within(model, fixture, label, F32_TOL)
}

/// [`conformance_failures`] with margin and logit tolerance `tol` (0.05 for f32, 0.1 for f16
/// KV caches), also returning the worst logit error seen.
pub fn conformance_failures_within(model: &mut ferrolm::model::Model, fixture: &serde_json::Value, label: &str, tol: f64) -> Vec<String> {
    conformance_report(model, fixture, label, tol).0
}

/// The failures and the worst |logit − reference| over every listed top logit.
pub fn conformance_report(model: &mut ferrolm::model::Model, fixture: &serde_json::Value, label: &str, tol: f64) -> (Vec<String>, f64) {
    let (margin_min, logit_tol) = (tol, tol);
    let mut worst: f64 = 0.0;
    let mut failures = Vec::new();
    for (case_index, case) in fixture["generate"].as_array().expect("generate cases").iter().enumerate() {
        let prompt = ids(&case["prompt_ids"]);
        let cont = ids(&case["continuation"]);
        let steps = case["steps"].as_array().expect("steps");
        let mut tokens = prompt.clone();
        tokens.extend_from_slice(&cont[..cont.len() - 1]);
        let logits = pollster::block_on(model.forward_logits(&tokens, 0)).unwrap_or_else(|e| panic!("{label}: {e}"));
        for (k, step) in steps.iter().enumerate() {
            let row = &logits[prompt.len() - 1 + k];
            let margin = step["margin"].as_f64().unwrap();
            let argmax = ferrolm::inspect::top_k(row, 1)[0].0;
            if margin >= margin_min && argmax != cont[k] {
                failures.push(format!("{label} case {case_index} step {k}: arg-max {argmax}, reference {} (margin {margin})", cont[k]));
            }
            for pair in step["top"].as_array().unwrap() {
                let (id, logit) = (pair[0].as_u64().unwrap() as usize, pair[1].as_f64().unwrap());
                let ours = row[id] as f64;
                worst = worst.max((ours - logit).abs());
                if (ours - logit).abs() > logit_tol {
                    failures.push(format!("{label} case {case_index} step {k} token {id}: logit {ours:.4}, reference {logit:.4}"));
                }
            }
        }
        // Greedy, free-running, one decode step at a time (the KV cache path).
        let decisive = steps.iter().take_while(|s| s["margin"].as_f64().unwrap() >= margin_min).count();
        let mut generated = Vec::new();
        let mut next = pollster::block_on(model.forward_top_k(&prompt, 0, 1)).unwrap()[0].0;
        while generated.len() < decisive {
            generated.push(next);
            if generated.len() == decisive {
                break;
            }
            let pos = (prompt.len() + generated.len() - 1) as u32;
            next = pollster::block_on(model.forward_top_k(&[next], pos, 1)).unwrap()[0].0;
        }
        if generated[..] != cont[..decisive] {
            failures.push(format!("{label} case {case_index}: greedy {generated:?} != reference {:?}", &cont[..decisive]));
        }
    }
    (failures, worst)
}

/// Runs the `ferrolm` CLI built for these tests.
pub fn run_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ferrolm"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .expect("run ferrolm")
}

/// The stdout of a successful CLI run (panics with its stderr otherwise).
pub fn cli_stdout(out: &std::process::Output) -> String {
    assert!(out.status.success(), "ferrolm failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}
