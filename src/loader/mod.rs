//! Byte sources for model files and the two loading phases every source shares:
//! 1. [`read_header`]: read a growing prefix until the GGUF header parses;
//! 2. [`stream_weights`]: read the tensor data in bounded chunks, in file order, straight into
//!    the model's GPU buffers. Nothing holds the whole file.

#[cfg(not(target_arch = "wasm32"))]
mod native;
#[cfg(not(target_arch = "wasm32"))]
pub use native::FileSource;
#[cfg(target_arch = "wasm32")]
pub mod web;

use crate::error::{Error, Result};
use crate::gguf::{parse_header, GgufFile, Parsed};
use crate::model::Model;

/// First prefix read for the header; it doubles until the header fits.
const FIRST_PREFIX: u64 = 1 << 20;
/// Largest header we accept (vocabularies of 256k tokens take a few MB).
const MAX_HEADER: u64 = 256 << 20;
/// Bytes read per chunk while streaming weights.
pub const CHUNK_BYTES: u64 = 8 << 20;

/// Random-access bytes of one model file (a local file, a set of URLs, a Blob).
#[allow(async_fn_in_trait)]
pub trait ByteSource {
    /// Total length in bytes.
    fn len(&self) -> u64;
    /// Reads `[offset, offset + len)`; the range is within `len()`.
    async fn read(&mut self, offset: u64, len: u64) -> Result<Vec<u8>>;
}

/// Loading phases reported to progress callbacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Header,
    Weights,
    /// Compiling the GPU pipelines (a warm-up step; the browser loader reports it).
    Shaders,
    Ready,
}

/// A progress report: bytes done of bytes total within the phase.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Progress {
    pub phase: Phase,
    pub done: u64,
    pub total: u64,
}

/// Reads the smallest prefix that holds the whole GGUF header and parses it.
pub async fn read_header<S: ByteSource>(source: &mut S) -> Result<GgufFile> {
    let file_len = source.len();
    let mut prefix = source.read(0, FIRST_PREFIX.min(file_len)).await?;
    loop {
        match parse_header(&prefix, file_len)? {
            Parsed::Complete(file) => return Ok(file),
            Parsed::NeedMore { needed_len } => {
                let want = needed_len.max(prefix.len() as u64 * 2).min(file_len);
                if want > MAX_HEADER {
                    return Err(Error::Unsupported(format!("the GGUF header is larger than {} MiB", MAX_HEADER >> 20)));
                }
                if want <= prefix.len() as u64 {
                    return Err(Error::Io("the model file ended inside its header".into()));
                }
                let more = source.read(prefix.len() as u64, want - prefix.len() as u64).await?;
                prefix.extend_from_slice(&more);
            }
        }
    }
}

/// Streams every tensor the model needs from `source` into its GPU buffers.
pub async fn stream_weights<S: ByteSource>(source: &mut S, model: &mut Model, progress: &mut dyn FnMut(Progress)) -> Result<()> {
    let ranges = model.weights_mut().needed_ranges();
    let total: u64 = ranges.iter().map(|(s, e)| e - s).sum();
    let mut done = 0;
    progress(Progress { phase: Phase::Weights, done, total });
    for (start, end) in ranges {
        let mut offset = start;
        while offset < end {
            let len = CHUNK_BYTES.min(end - offset);
            let data = source.read(offset, len).await?;
            model.feed(offset, &data)?;
            offset += len;
            done += len;
            progress(Progress { phase: Phase::Weights, done, total });
        }
    }
    model.finish_load()
}
