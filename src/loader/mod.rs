//! Byte sources for model files and the two loading phases every source shares:
//! 1. [`read_header`]: read a growing prefix until the GGUF header parses;
//! 2. [`stream_weights`]: read the tensor data in bounded chunks, in file order, straight into
//!    the model's GPU buffers. Nothing holds the whole file.

#[cfg(not(target_arch = "wasm32"))]
mod native;
#[cfg(not(target_arch = "wasm32"))]
pub use native::{shard_paths, FileSource};
#[cfg(target_arch = "wasm32")]
pub mod web;
#[cfg(target_arch = "wasm32")]
pub mod web_cache;
pub mod cache;

use crate::error::{quote, Error, Result};
use crate::gguf::{parse_header, GgufFile, Parsed};
use crate::model::Model;

/// First prefix read for the header; it doubles until the header fits.
const FIRST_PREFIX: u64 = 1 << 20;
/// Largest header we accept (vocabularies of 256k tokens take a few MB).
const MAX_HEADER: u64 = 256 << 20;
/// Bytes read per chunk while streaming weights.
pub const CHUNK_BYTES: u64 = 8 << 20;

/// Random-access bytes of one model file (a local file, a set of URLs, a Blob).
#[allow(async_fn_in_trait, clippy::len_without_is_empty)]
pub trait ByteSource {
    /// Total length in bytes.
    fn len(&self) -> u64;
    /// Reads `[offset, offset + len)`; the range is within `len()`.
    async fn read(&mut self, offset: u64, len: u64) -> Result<Vec<u8>>;
    /// Lengths of the files (URLs) the bytes come from, in order; they add up to `len()`.
    /// Matters only for llama.cpp `gguf-split` shards (see [`read_model_header`]).
    fn part_lens(&self) -> Vec<u64> {
        vec![self.len()]
    }
    /// Called once the weights are in: a source that checks the whole file (the model cache's
    /// sha256) reads what is left and fails when the bytes are not the expected file.
    async fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A window `[base, base + len)` of another source.
struct Window<'a, S> {
    inner: &'a mut S,
    base: u64,
    len: u64,
}

impl<S: ByteSource> ByteSource for Window<'_, S> {
    fn len(&self) -> u64 {
        self.len
    }
    async fn read(&mut self, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.inner.read(self.base + offset, len).await
    }
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

/// The model's header: [`read_header`], except for llama.cpp `gguf-split` shards (each part a
/// GGUF of its own, with `split.no`/`split.count` metadata): when the source's parts are all the
/// shards in order, their headers are merged into one whose tensor offsets address the shards'
/// concatenation (metadata from the first shard), which is how the source reads them.
pub async fn read_model_header<S: ByteSource>(source: &mut S) -> Result<GgufFile> {
    let first = read_header(source).await?;
    let count = match first.get_u64("split.count")? {
        Some(n) if n > 1 => n,
        _ => return Ok(first),
    };
    let no = first.get_u64("split.no")?.unwrap_or(0);
    let parts = source.part_lens();
    if no != 0 || parts.len() as u64 != count {
        return Err(Error::Unsupported(format!(
            "this is shard {} of {count} of a model split with gguf-split, but {} part(s) were given: \
             give all {count} shard URLs in order, or all {count} shard files to the CLI (or merge them with llama-gguf-split --merge)",
            no + 1,
            parts.len()
        )));
    }
    // The first shard's header was parsed against the whole concatenation: its tensors must also
    // lie within its own part.
    if let Some(t) = first.tensors.iter().find(|t| t.offset + t.n_bytes > parts[0]) {
        return Err(Error::Unsupported(format!("tensor {} of shard 1 lies past the end of its part", quote(&t.name))));
    }
    let mut tensors = first.tensors.clone();
    let mut base = parts[0];
    for (k, &part_len) in parts.iter().enumerate().skip(1) {
        let shard = read_header(&mut Window { inner: &mut *source, base, len: part_len }).await?;
        let shard_no = shard.get_u64("split.no")?;
        if shard_no != Some(k as u64) || shard.get_u64("split.count")? != Some(count) {
            return Err(Error::Unsupported(format!(
                "part {} is not shard {} of {count} (it says split.no = {shard_no:?}): give the shards in order",
                k + 1,
                k + 1
            )));
        }
        tensors.extend(shard.tensors.into_iter().map(|mut t| {
            t.offset += base;
            t
        }));
        base += part_len;
    }
    if let Some(expected) = first.get_u64("split.tensors.count")? {
        if expected != tensors.len() as u64 {
            return Err(Error::Unsupported(format!("the shards hold {} tensors but split.tensors.count says {expected}", tensors.len())));
        }
    }
    first.with_tensors(tensors).map_err(Error::from)
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
    source.finish().await?;
    model.finish_load()
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::gguf::writer::Writer;
    use crate::gguf::Value;
    use crate::quant::GgmlType;

    /// Bytes in memory, made of parts (like several URLs).
    struct Parts(Vec<Vec<u8>>);

    impl ByteSource for Parts {
        fn len(&self) -> u64 {
            self.0.iter().map(|p| p.len() as u64).sum()
        }
        async fn read(&mut self, offset: u64, len: u64) -> Result<Vec<u8>> {
            let all: Vec<u8> = self.0.concat();
            Ok(all[offset as usize..(offset + len) as usize].to_vec())
        }
        fn part_lens(&self) -> Vec<u64> {
            self.0.iter().map(|p| p.len() as u64).collect()
        }
    }

    fn shard(no: u16, count: u16, total: i32, tensors: &[(&str, f32)], general: bool) -> Vec<u8> {
        let mut w = Writer::new();
        if general {
            w = w.kv("general.architecture", Value::String("llama".into()));
        }
        w = w.kv("split.no", Value::U16(no)).kv("split.count", Value::U16(count)).kv("split.tensors.count", Value::I32(total));
        for (name, x) in tensors {
            w = w.tensor(name, &[4], GgmlType::F32, [*x; 4].iter().flat_map(|v| v.to_le_bytes()).collect());
        }
        w.build()
    }

    fn block<F: std::future::Future>(f: F) -> F::Output {
        pollster::block_on(f)
    }

    #[test]
    fn gguf_split_shards_merge_into_one_header() {
        let parts = vec![
            shard(0, 3, 4, &[("a", 1.0)], true),
            shard(1, 3, 4, &[("b", 2.0), ("c", 3.0)], false),
            shard(2, 3, 4, &[("d", 4.0)], false),
        ];
        let mut source = Parts(parts.clone());
        let header = block(read_model_header(&mut source)).unwrap();
        assert_eq!(header.architecture(), Some("llama"));
        let names: Vec<&str> = header.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        // Every tensor's offset addresses its bytes in the concatenation.
        for (t, x) in header.tensors.iter().zip([1.0f32, 2.0, 3.0, 4.0]) {
            let bytes = block(source.read(t.offset, t.n_bytes)).unwrap();
            assert_eq!(bytes, [x; 4].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(), "{}", t.name);
            assert_eq!(header.tensor(&t.name).unwrap().offset, t.offset);
        }
        assert_eq!(header.file_len, source.len());

        // One shard alone, or shards out of order: a clear error.
        let e = block(read_model_header(&mut Parts(vec![parts[0].clone()]))).unwrap_err();
        assert!(e.to_string().contains("shard 1 of 3") && e.to_string().contains("give all 3 shard URLs in order"), "{e}");
        let e = block(read_model_header(&mut Parts(vec![parts[0].clone(), parts[2].clone(), parts[1].clone()]))).unwrap_err();
        assert!(e.to_string().contains("part 2 is not shard 2 of 3"), "{e}");
        // A plain file is read as it is.
        let plain = Writer::new().kv("general.architecture", Value::String("llama".into())).tensor("a", &[4], GgmlType::F32, vec![0; 16]).build();
        assert_eq!(block(read_model_header(&mut Parts(vec![plain]))).unwrap().tensors.len(), 1);
    }
}
