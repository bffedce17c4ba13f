//! The crate-wide error: every failure the engine reports, typed, with a one-line message.

use crate::gguf::GgufError;
use crate::gpu::GpuError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file is not a valid GGUF (corrupt, truncated, hostile).
    #[error("invalid GGUF: {0}")]
    Format(#[from] GgufError),
    /// A valid GGUF that this engine cannot run (architecture, tensor type, shape).
    #[error("unsupported model: {0}")]
    Unsupported(String),
    /// A request the model cannot serve (prompt longer than the context, bad token id, bad option).
    #[error("{0}")]
    BadRequest(String),
    /// Reading the model bytes failed (missing file, I/O error, network error, abort).
    #[error("{0}")]
    Io(String),
    /// The GPU said no.
    #[error("{0}")]
    Gpu(#[from] GpuError),
    /// The model's bytes are not the file that was asked for (a sha256 mismatch).
    #[error("{0}")]
    Integrity(String),
}

impl Error {
    /// True when the caller's input is at fault (CLI exit status 2) rather than the environment.
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::Format(_) | Error::Unsupported(_) | Error::BadRequest(_) => true,
            Error::Gpu(GpuError::UnsupportedType { .. } | GpuError::Shape(_) | GpuError::Limit(_)) => true,
            Error::Io(_) | Error::Gpu(_) | Error::Integrity(_) => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
