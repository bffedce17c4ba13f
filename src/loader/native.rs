//! A local file as a [`ByteSource`].

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::ByteSource;
use crate::error::{quote, Error, Result};

pub struct FileSource {
    file: File,
    len: u64,
    name: String,
}

impl FileSource {
    pub fn open(path: &Path) -> Result<FileSource> {
        let name = quote(&path.to_string_lossy());
        let file = File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::BadRequest(format!("model file {name} does not exist")),
            _ => Error::Io(format!("cannot open {name}: {e}")),
        })?;
        let len = file.metadata().map_err(|e| Error::Io(format!("cannot read {name}: {e}")))?.len();
        Ok(FileSource { file, len, name })
    }
}

impl ByteSource for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    async fn read(&mut self, offset: u64, len: u64) -> Result<Vec<u8>> {
        let end = offset.checked_add(len).filter(|&e| e <= self.len);
        if end.is_none() {
            return Err(Error::Io(format!("read past the end of {}", self.name)));
        }
        let mut buf = vec![0u8; len as usize];
        self.file
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.file.read_exact(&mut buf))
            .map_err(|e| Error::Io(format!("reading {} at {offset}: {e}", self.name)))?;
        Ok(buf)
    }
}
