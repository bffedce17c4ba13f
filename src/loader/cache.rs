//! The model cache's bookkeeping, independent of where the bytes are stored (the browser's
//! storage backends live in pkg-template/cache.js; the byte flow in `loader::web_cache`).
//!
//! A cached model is one file (one URL, or several URLs that are raw chunks or `gguf-split`
//! shards of it, concatenated) cut into fixed chunks of [`CACHE_CHUNK`] bytes:
//! chunk `k` is the file's bytes `[k * CACHE_CHUNK, min((k + 1) * CACHE_CHUNK, len))`.
//! Its [`Manifest`] says where the file came from (URLs, sizes, ETag/Last-Modified), which chunks
//! are stored (each with its own sha256, checked whenever it is read back), and the sha256 of the
//! whole file once every byte went through it in file order.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::CHUNK_BYTES;

/// Bytes per cached chunk (the loader's chunk size).
pub const CACHE_CHUNK: u64 = CHUNK_BYTES;
/// Version of the manifest layout; a manifest of another version is dropped.
pub const MANIFEST_VERSION: u32 = 1;

/// One URL a model comes from, as the server described it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PartInfo {
    pub url: String,
    pub bytes: u64,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl PartInfo {
    /// Whether `probed` (what the server says now) is still the file this part was cached from:
    /// the same size, and the same ETag (or Last-Modified, when there is no ETag) when the server
    /// sends one.
    pub fn same_file(&self, probed: &PartInfo) -> bool {
        if self.url != probed.url || self.bytes != probed.bytes {
            return false;
        }
        match (&self.etag, &probed.etag) {
            (Some(a), Some(b)) => return a == b,
            (Some(_), None) | (None, Some(_)) => return false,
            (None, None) => {}
        }
        match (&self.last_modified, &probed.last_modified) {
            (Some(a), Some(b)) => a == b,
            (None, None) => true,
            _ => false,
        }
    }
}

/// What the cache knows about one model file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub version: u32,
    pub parts: Vec<PartInfo>,
    /// File length: the parts' lengths added up.
    pub bytes: u64,
    pub chunk_bytes: u64,
    /// sha256 (hex) of each stored chunk; `None` while the chunk is missing.
    pub chunks: Vec<Option<String>>,
    /// sha256 (hex) of the whole file, once it went through the hash in file order.
    pub sha256: Option<String>,
    /// The hash the app asked for, when it gave one.
    pub expected_sha256: Option<String>,
    /// The whole file matched `expected_sha256`.
    pub verified: bool,
    /// Every chunk is stored and the whole-file hash is known.
    pub complete: bool,
    /// Last load that used this entry, in milliseconds since the Unix epoch.
    pub last_used: f64,
}

impl Manifest {
    /// An empty entry for the file made of `parts`.
    pub fn new(parts: Vec<PartInfo>) -> Manifest {
        let bytes: u64 = parts.iter().map(|p| p.bytes).sum();
        let n = bytes.div_ceil(CACHE_CHUNK) as usize;
        Manifest {
            version: MANIFEST_VERSION,
            parts,
            bytes,
            chunk_bytes: CACHE_CHUNK,
            chunks: vec![None; n],
            sha256: None,
            expected_sha256: None,
            verified: false,
            complete: false,
            last_used: 0.0,
        }
    }

    /// Parses a stored manifest; `None` when it is not one this version wrote or does not add up
    /// (the entry is then dropped and downloaded again).
    pub fn parse(json: &str) -> Option<Manifest> {
        let m: Manifest = serde_json::from_str(json).ok()?;
        let consistent = m.version == MANIFEST_VERSION
            && m.chunk_bytes == CACHE_CHUNK
            && !m.parts.is_empty()
            && m.bytes == m.parts.iter().map(|p| p.bytes).sum::<u64>()
            && m.chunks.len() as u64 == m.bytes.div_ceil(CACHE_CHUNK)
            && m.chunks.iter().flatten().all(|h| is_sha256_hex(h))
            && (!m.complete || (m.sha256.is_some() && m.chunks.iter().all(Option::is_some)));
        consistent.then_some(m)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a manifest always serialises")
    }

    pub fn urls(&self) -> Vec<String> {
        self.parts.iter().map(|p| p.url.clone()).collect()
    }

    pub fn n_chunks(&self) -> u32 {
        self.chunks.len() as u32
    }

    /// `[start, end)` of chunk `k` in the file.
    pub fn chunk_range(&self, k: u32) -> (u64, u64) {
        let start = k as u64 * CACHE_CHUNK;
        (start, (start + CACHE_CHUNK).min(self.bytes))
    }

    /// Chunk index of file offset `offset`.
    pub fn chunk_of(&self, offset: u64) -> u32 {
        (offset / CACHE_CHUNK) as u32
    }

    pub fn has_chunk(&self, k: u32) -> bool {
        self.chunks.get(k as usize).is_some_and(Option::is_some)
    }

    /// Bytes of the chunks stored.
    pub fn stored_bytes(&self) -> u64 {
        (0..self.n_chunks()).filter(|&k| self.has_chunk(k)).map(|k| self.chunk_range(k)).map(|(a, b)| b - a).sum()
    }

    /// Whether this entry was cached from the same file as `probed` describes.
    pub fn same_file(&self, probed: &[PartInfo]) -> bool {
        self.parts.len() == probed.len() && self.parts.iter().zip(probed).all(|(a, b)| a.same_file(b))
    }

    /// Every chunk stored and the whole file hashed.
    pub fn all_stored(&self) -> bool {
        self.chunks.iter().all(Option::is_some) && self.sha256.is_some()
    }

    /// The file range `[start, end)` mapped onto the parts: `(part index, start, end)` within each
    /// part it touches, in order.
    pub fn segments(&self, start: u64, end: u64) -> Vec<(usize, u64, u64)> {
        let mut out = Vec::new();
        let mut base = 0;
        for (i, p) in self.parts.iter().enumerate() {
            let (a, b) = (start.max(base), end.min(base + p.bytes));
            if a < b {
                out.push((i, a - base, b - base));
            }
            base += p.bytes;
        }
        out
    }
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `s` looks like a sha256 in hex (64 hex digits).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(url: &str, bytes: u64, etag: Option<&str>) -> PartInfo {
        PartInfo { url: url.into(), bytes, etag: etag.map(Into::into), last_modified: None }
    }

    #[test]
    fn chunks_cover_the_file_and_segments_map_onto_parts() {
        let m = Manifest::new(vec![part("a", CACHE_CHUNK + 10, None), part("b", 5, None)]);
        assert_eq!(m.bytes, CACHE_CHUNK + 15);
        assert_eq!(m.n_chunks(), 2);
        assert_eq!(m.chunk_range(0), (0, CACHE_CHUNK));
        assert_eq!(m.chunk_range(1), (CACHE_CHUNK, CACHE_CHUNK + 15));
        assert_eq!(m.chunk_of(CACHE_CHUNK + 3), 1);
        // Chunk 1 spans the end of part a and all of part b.
        assert_eq!(m.segments(CACHE_CHUNK, CACHE_CHUNK + 15), vec![(0, CACHE_CHUNK, CACHE_CHUNK + 10), (1, 0, 5)]);
        assert_eq!(m.segments(0, 4), vec![(0, 0, 4)]);
    }

    #[test]
    fn a_manifest_round_trips_and_inconsistent_ones_are_refused() {
        let mut m = Manifest::new(vec![part("a", 3 * CACHE_CHUNK - 1, Some("\"x\""))]);
        m.chunks[1] = Some(sha256_hex(b"chunk"));
        assert_eq!(Manifest::parse(&m.to_json()), Some(m.clone()));
        assert_eq!(m.stored_bytes(), CACHE_CHUNK);
        // A chunk list that does not match the size, a bad hash, "complete" with holes, junk.
        let mut bad = m.clone();
        bad.chunks.pop();
        assert_eq!(Manifest::parse(&bad.to_json()), None);
        let mut bad = m.clone();
        bad.chunks[0] = Some("zz".into());
        assert_eq!(Manifest::parse(&bad.to_json()), None);
        let mut bad = m.clone();
        bad.complete = true;
        bad.sha256 = Some(sha256_hex(b""));
        assert_eq!(Manifest::parse(&bad.to_json()), None);
        assert_eq!(Manifest::parse("<html>not found</html>"), None);
    }

    #[test]
    fn a_changed_etag_or_size_is_another_file() {
        let m = Manifest::new(vec![part("a", 100, Some("\"v1\""))]);
        assert!(m.same_file(&[part("a", 100, Some("\"v1\""))]));
        assert!(!m.same_file(&[part("a", 100, Some("\"v2\""))]));
        assert!(!m.same_file(&[part("a", 101, Some("\"v1\""))]));
        assert!(!m.same_file(&[part("a", 100, None)]));
        assert!(!m.same_file(&[part("a", 100, Some("\"v1\"")), part("b", 1, None)]));
        let lm = |s: &str| PartInfo { last_modified: Some(s.into()), ..part("a", 100, None) };
        assert!(lm("Mon").same_file(&lm("Mon")));
        assert!(!lm("Mon").same_file(&lm("Tue")));
    }

    #[test]
    fn sha256_matches_the_standard_vector() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(is_sha256_hex(&sha256_hex(b"")));
        assert!(!is_sha256_hex("abc"));
    }
}
