//! The synthetic zoo (tests/fixtures/zoo, from shared/fixtures/zoo): tiny random-weight models of
//! every supported architecture in many llama.cpp quantization presets, each with an exact f32
//! reference. Every model must meet the `numpy` tolerances (see tests/common).

mod common;

use common::{conformance_failures, conformance_report, load_model, load_model_with, repo_path, F16_TOL, F32_TOL};
use ferrolm::model::KvType;

/// Checks both KV-cache types: f32 at the reference's tolerance, f16 at the f16 tolerance.
fn check(name: &str) {
    let dir = repo_path("tests/fixtures/zoo");
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap()).unwrap();
    for (kv, tol) in [(KvType::F32, F32_TOL), (KvType::F16, F16_TOL)] {
        let mut model = load_model_with(&dir.join(format!("{name}.gguf")), 128, kv);
        let (failures, worst) = conformance_report(&mut model, &fixture, name, tol);
        println!("{name} kv {kv:?}: worst logit error {worst:.4}");
        assert!(failures.is_empty(), "kv {kv:?}: {} failures:\n{}", failures.len(), failures.join("\n"));
    }
}

/// A model whose reference depends on the runtime context (Phi-4-mini's LongRoPE picks its short or
/// long factors by the KV-cache length): `NAME.ctxN.json` holds `"context": N` and runs at N.
fn check_at_context(name: &str, context: u32) {
    let dir = repo_path("tests/fixtures/zoo");
    let label = format!("{name}.ctx{context}");
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{label}.json"))).unwrap()).unwrap();
    assert_eq!(fixture["context"].as_u64(), Some(context as u64), "{label}: fixture context");
    for (kv, tol) in [(KvType::F32, F32_TOL), (KvType::F16, F16_TOL)] {
        let mut model = load_model_with(&dir.join(format!("{name}.gguf")), context, kv);
        let (failures, _) = conformance_report(&mut model, &fixture, &label, tol);
        assert!(failures.is_empty(), "kv {kv:?}: {} failures:\n{}", failures.len(), failures.join("\n"));
    }
}

macro_rules! zoo {
    ($($test:ident => $name:literal,)*) => {
        $(#[test] fn $test() { check($name); })*
    };
}

zoo! {
    llama_f16 => "tiny-llama-f16",
    llama_bf16 => "tiny-llama-bf16",
    llama_q8_0 => "tiny-llama-q8_0",
    llama_q4_0 => "tiny-llama-q4_0",
    llama_q4_1 => "tiny-llama-q4_1",
    llama_q5_0 => "tiny-llama-q5_0",
    llama_q5_1 => "tiny-llama-q5_1",
    llama_q2_k => "tiny-llama-q2_k",
    llama_q3_k_m => "tiny-llama-q3_k_m",
    llama_q4_k_m => "tiny-llama-q4_k_m",
    llama_q5_k_m => "tiny-llama-q5_k_m",
    llama_q6_k => "tiny-llama-q6_k",
    llama_iq4_nl => "tiny-llama-iq4_nl",
    llama_iq4_xs => "tiny-llama-iq4_xs",
    qwen2_q8_0 => "tiny-qwen2-q8_0",
    qwen2_q4_k_m => "tiny-qwen2-q4_k_m",
    qwen2_q6_k => "tiny-qwen2-q6_k",
    qwen3_q8_0 => "tiny-qwen3-q8_0",
    qwen3_q4_k_m => "tiny-qwen3-q4_k_m",
    qwen3_q5_k_m => "tiny-qwen3-q5_k_m",
    phi3_q8_0 => "tiny-phi3-q8_0",
    phi3_q4_k_m => "tiny-phi3-q4_k_m",
    phi3_q3_k_m => "tiny-phi3-q3_k_m",
    gemma2_q8_0 => "tiny-gemma2-q8_0",
    gemma2_q4_k_m => "tiny-gemma2-q4_k_m",
    gemma2_q2_k => "tiny-gemma2-q2_k",
}

macro_rules! zoo_at_context {
    ($($test:ident => $name:literal at $context:literal,)*) => {
        $(#[test] fn $test() { check_at_context($name, $context); })*
    };
}

zoo_at_context! {
    phi4mini_q8_0_short_factors => "tiny-phi4mini-q8_0" at 256,
    phi4mini_q8_0_long_factors => "tiny-phi4mini-q8_0" at 2048,
    phi4mini_q4_k_m_short_factors => "tiny-phi4mini-q4_k_m" at 256,
    phi4mini_q4_k_m_long_factors => "tiny-phi4mini-q4_k_m" at 2048,
}

/// The two factor sets really differ: the long-context reference fails at the short context.
#[test]
fn phi4mini_factors_follow_the_context() {
    let dir = repo_path("tests/fixtures/zoo");
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tiny-phi4mini-q8_0.ctx2048.json")).unwrap()).unwrap();
    let mut model = load_model(&dir.join("tiny-phi4mini-q8_0.gguf"), 256);
    assert!(!conformance_failures(&mut model, &fixture, "ctx2048 reference at context 256").is_empty());
}

#[test]
fn every_zoo_model_has_a_test() {
    let dir = repo_path("tests/fixtures/zoo");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".gguf").map(str::to_string))
        .collect();
    names.sort();
    let source = std::fs::read_to_string(file!()).unwrap();
    for name in names {
        assert!(source.contains(&format!("\"{name}\"")), "zoo model {name} has no test");
    }
}
