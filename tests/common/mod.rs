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
