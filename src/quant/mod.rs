//! GGML tensor types and CPU reference dequantization.
//!
//! * [`GgmlType`]: every ggml type id with its block geometry.
//! * [`dequantize`]: CPU reference (ggml's operation order) for F32, F16, BF16, Q4_0, Q4_1,
//!   Q5_0, Q5_1, Q8_0, Q2_K..Q6_K, Q8_K, IQ4_NL and IQ4_XS
//!   (see [`GgmlType::has_cpu_dequant`]).
//! * [`testdata`]: deterministic RNG and valid random blocks for kernel tests.

mod dequant;
mod kquants;
#[cfg(not(target_arch = "wasm32"))]
#[doc(hidden)]
pub mod testdata;
mod types;

pub use dequant::{block_dequantizer, dequantize, BlockFn, QuantError};
pub use kquants::IQ4_NL_VALUES;
pub use types::GgmlType;
