//! The GPU runtime: wgpu context, pipelines, weight buffers and one module per kernel family.
//! Model code asks for ops here and never builds a bind group itself.

mod context;
mod kv;
pub mod matmul;
pub mod ops;
mod shader;
mod step;
pub mod variant;
mod weights;

pub use context::{Context, CopyBandwidth, DeviceLimits, Tuning};
pub use kv::{KvLayer, KV_TEXEL_ELEMS};
pub use shader::{instance, preprocess, Access, Defines, Kernel, PipelineCache};
pub use step::{fold_workgroups, Bind, Recording, Step, StepState};
pub use weights::{gpu_supports, PartMemory, WeightMatrix, WeightPart};

/// Errors from the GPU runtime. Display is one line naming the problem.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no WebGPU/Vulkan adapter found: {0}")]
    NoAdapter(String),
    #[error("could not open the GPU device: {0}")]
    NoDevice(String),
    #[error("device limit: {0}")]
    Limit(String),
    #[error("tensor '{tensor}' has type {ty}, which the GPU kernels cannot run yet")]
    UnsupportedType { tensor: String, ty: &'static str },
    #[error("unsupported shape: {0}")]
    Shape(String),
    #[error("GPU error: {0}")]
    Device(String),
}
