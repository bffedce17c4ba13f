//! llama.cpp's own tokenizer test vectors (tests/fixtures/vocab, from llama.cpp's `models/`):
//! vocabulary-only GGUF files with `.inp` inputs and the `.out` ids llama.cpp produces
//! (`common_tokenize(ctx, text, add_special = false, parse_special = false)`). Every input must give
//! exactly llama.cpp's ids. The vocabulary-only files also work with the CLI's `tokenize`,
//! `inspect` and `render`, which never need a GPU.

mod common;

use std::path::PathBuf;

use common::{read_gguf_header, repo_path, run_cli};
use ferrolm::tokenizer::Tokenizer;

const VOCABS: [&str; 6] = ["gpt-2", "llama-bpe", "qwen2", "deepseek-coder", "phi-3", "llama-spm"];
const SEPARATOR: &str = "\n__ggml_vocab_test__\n";

fn vocab_path(name: &str) -> PathBuf {
    repo_path("tests/fixtures/vocab").join(format!("ggml-vocab-{name}.gguf"))
}

/// The (input, expected ids) pairs of one vocabulary.
fn cases(name: &str) -> Vec<(String, Vec<u32>)> {
    let path = vocab_path(name);
    let inputs = std::fs::read_to_string(path.with_extension("gguf.inp")).unwrap();
    let outputs = std::fs::read_to_string(path.with_extension("gguf.out")).unwrap();
    let inputs: Vec<&str> = inputs.split(SEPARATOR).collect();
    let outputs: Vec<&str> = outputs.lines().collect();
    // Every input is followed by a separator, so the split leaves one empty tail.
    assert_eq!(inputs.last(), Some(&""), "{name}: .inp ends with a separator");
    assert_eq!(inputs.len() - 1, outputs.len(), "{name}: one .out line per input");
    inputs
        .iter()
        .zip(&outputs)
        .map(|(text, ids)| (text.to_string(), ids.split_whitespace().map(|id| id.parse().unwrap()).collect()))
        .collect()
}

#[test]
fn every_input_gives_llama_cpp_ids() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for name in VOCABS {
        let tokenizer = Tokenizer::from_gguf(&read_gguf_header(&vocab_path(name))).unwrap_or_else(|e| panic!("{name}: {e}"));
        for (text, want) in cases(name) {
            let got = tokenizer.encode(&text, false);
            if got != want {
                failures.push(format!("{name}: {text:?}\n   ours  {got:?}\n   llama {want:?}"));
            }
            checked += 1;
        }
    }
    assert!(checked > 200, "only {checked} cases");
    assert!(failures.is_empty(), "{} of {checked} inputs differ:\n{}", failures.len(), failures.join("\n"));
}

/// The CLI with no usable GPU driver: `tokenize`, `inspect` and `render` still work on a
/// vocabulary-only file, while a command that needs the GPU fails (proving the driver is gone).
#[test]
fn vocab_only_files_work_with_the_cli_without_a_gpu() {
    let no_gpu = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ferrolm"))
            .args(args)
            .env("XDG_RUNTIME_DIR", std::env::temp_dir())
            .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
            .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
            .env("WGPU_BACKEND", "vulkan")
            .output()
            .expect("run ferrolm")
    };
    let messages = std::env::temp_dir().join(format!("ferrolm-vocab-messages-{}.json", std::process::id()));
    std::fs::write(&messages, r#"[{"role": "user", "content": "Hello"}]"#).unwrap();
    for name in VOCABS {
        let path = vocab_path(name);
        let model = path.to_str().unwrap();
        let (text, want) = cases(name).into_iter().find(|(t, _)| t.contains("Hello")).expect("a Hello case");
        let out = no_gpu(&["tokenize", model, &text]);
        assert!(out.status.success(), "{name}: tokenize: {}", String::from_utf8_lossy(&out.stderr));
        let got: Vec<u32> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(got, want, "{name}: CLI tokenize {text:?}");

        let out = no_gpu(&["inspect", model]);
        assert!(out.status.success(), "{name}: inspect: {}", String::from_utf8_lossy(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["tensor_count"], 0, "{name}");
        assert!(json["metadata"]["tokenizer.ggml.model"].is_string(), "{name}");

        let out = no_gpu(&["render", model, "--messages", messages.to_str().unwrap()]);
        let rendered = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && rendered.contains("Hello"), "{name}: render: {rendered} {}", String::from_utf8_lossy(&out.stderr));
    }
    let _ = std::fs::remove_file(&messages);
    // The same environment really has no GPU: loading a model for scoring fails.
    let out = no_gpu(&["score", common::zoo_path("tiny-llama-q8_0.gguf").to_str().unwrap(), "--tokens", "1,2"]);
    assert_eq!(out.status.code(), Some(1), "score without a GPU: {}", String::from_utf8_lossy(&out.stderr));
    assert!(run_cli(&["score", common::zoo_path("tiny-llama-q8_0.gguf").to_str().unwrap(), "--tokens", "1,2"]).status.success());
}
