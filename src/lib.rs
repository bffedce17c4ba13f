//! ferrolm: run small language models from GGUF files on WebGPU (wgpu natively, the browser's
//! WebGPU in wasm).
//!
//! Layout: `gguf` (the file format), `quant` (GGML block layouts and the CPU reference),
//! `gpu` (runtime and kernels), `model` (architectures, weights, KV cache), `tokenizer`,
//! `sampler`, `engine` (load + generate), `loader` (byte sources), `synthetic` (benchmark models
//! of any shape), `web` (the wasm-bindgen
//! exports, wasm32 only).

pub mod chat;
#[cfg(not(target_arch = "wasm32"))]
pub mod cli;
pub mod engine;
pub mod error;
#[cfg(not(target_arch = "wasm32"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod gguf;
pub mod gpu;
pub mod inspect;
pub mod loader;
pub mod logits;
pub mod model;
pub mod quant;
pub mod rng;
pub mod sampler;
#[cfg(not(target_arch = "wasm32"))]
pub mod synthetic;
pub mod speculative;
pub mod tokenizer;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{Error, Result};
