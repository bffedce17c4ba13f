//! Local files as a [`ByteSource`]: one file, or several read as their concatenation (the shards
//! of a model split with llama.cpp's `gguf-split`, which [`super::read_model_header`] merges).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::ByteSource;
use crate::error::{quote, Error, Result};

/// Most shards one model may have (gguf-split numbers them with 5 digits).
const MAX_SHARDS: u32 = 99_999;

struct Part {
    file: File,
    len: u64,
    name: String,
}

pub struct FileSource {
    parts: Vec<Part>,
    len: u64,
}

impl FileSource {
    /// One file.
    pub fn open(path: &Path) -> Result<FileSource> {
        Self::open_parts(&[path.to_path_buf()])
    }

    /// The model at `paths`: several paths are the shards in order; one path named like
    /// `NAME-00001-of-00003.gguf` brings its sibling shards along (see [`shard_paths`]).
    pub fn open_model(paths: &[PathBuf]) -> Result<FileSource> {
        match paths {
            [one] => Self::open_parts(&shard_paths(one)?),
            many => Self::open_parts(many),
        }
    }

    /// The concatenation of `paths`, in order.
    pub fn open_parts(paths: &[PathBuf]) -> Result<FileSource> {
        if paths.is_empty() {
            return Err(Error::BadRequest("no model file given".into()));
        }
        let mut parts = Vec::with_capacity(paths.len());
        for path in paths {
            // Paths may hold any bytes: quoted (escaped, cut when long) wherever they are shown.
            let name = quote(&path.to_string_lossy());
            let file = File::open(path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::BadRequest(format!("model file {name} does not exist")),
                _ => Error::Io(format!("cannot open {name}: {e}")),
            })?;
            let len = file.metadata().map_err(|e| Error::Io(format!("cannot read {name}: {e}")))?.len();
            parts.push(Part { file, len, name });
        }
        let len = parts.iter().map(|p| p.len).sum();
        Ok(FileSource { parts, len })
    }
}

/// The shard paths of a model whose file `path` is named `PREFIX-NNNNN-of-MMMMM.gguf` (llama.cpp's
/// `gguf-split` naming): `PREFIX-00001-of-MMMMM.gguf` … `PREFIX-MMMMM-of-MMMMM.gguf`, each checked
/// to exist. Any other name is the model by itself.
pub fn shard_paths(path: &Path) -> Result<Vec<PathBuf>> {
    let Some((prefix, count)) = path.file_name().and_then(|n| n.to_str()).and_then(split_name) else {
        return Ok(vec![path.to_path_buf()]);
    };
    let paths: Vec<PathBuf> = (1..=count).map(|i| path.with_file_name(format!("{prefix}-{i:05}-of-{count:05}.gguf"))).collect();
    if let Some(missing) = paths.iter().find(|p| !p.is_file()) {
        return Err(Error::BadRequest(format!(
            "{} is a shard of a {count}-part model (by its name), but {} does not exist",
            quote(&path.to_string_lossy()),
            quote(&missing.to_string_lossy())
        )));
    }
    Ok(paths)
}

/// (PREFIX, count) of a name `PREFIX-NNNNN-of-MMMMM.gguf` with 1 ≤ NNNNN ≤ MMMMM.
fn split_name(name: &str) -> Option<(&str, u32)> {
    let stem = name.strip_suffix(".gguf")?;
    let (rest, count) = stem.rsplit_once("-of-")?;
    let (prefix, no) = rest.rsplit_once('-')?;
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(no) || !digits(count) || prefix.is_empty() {
        return None;
    }
    let (no, count): (u32, u32) = (no.parse().ok()?, count.parse().ok()?);
    (1..=MAX_SHARDS).contains(&count).then_some(())?;
    (1..=count).contains(&no).then_some((prefix, count))
}

impl ByteSource for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    async fn read(&mut self, offset: u64, len: u64) -> Result<Vec<u8>> {
        let end = offset.checked_add(len).filter(|&e| e <= self.len);
        if end.is_none() {
            return Err(Error::Io(format!("read past the end of {}", self.parts[0].name)));
        }
        let mut buf = vec![0u8; len as usize];
        let (mut base, mut filled) = (0u64, 0usize);
        for part in &mut self.parts {
            let (lo, hi) = ((offset + filled as u64).max(base), (offset + len).min(base + part.len));
            if lo < hi {
                let n = (hi - lo) as usize;
                part.file
                    .seek(SeekFrom::Start(lo - base))
                    .and_then(|_| part.file.read_exact(&mut buf[filled..filled + n]))
                    .map_err(|e| Error::Io(format!("reading {} at {}: {e}", part.name, lo - base)))?;
                filled += n;
            }
            base += part.len;
        }
        Ok(buf)
    }

    fn part_lens(&self) -> Vec<u64> {
        self.parts.iter().map(|p| p.len).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_gguf_split_names() {
        assert_eq!(split_name("model-00001-of-00003.gguf"), Some(("model", 3)));
        assert_eq!(split_name("a-b-00003-of-00003.gguf"), Some(("a-b", 3)));
        for plain in ["model.gguf", "model-00004-of-00003.gguf", "model-00000-of-00003.gguf", "model-1-of-3.gguf", "-00001-of-00002.gguf", "model-00001-of-00002.bin"] {
            assert_eq!(split_name(plain), None, "{plain}");
        }
    }
}
