//! The model cache in front of [`UrlSource`] (compiled only for wasm32): [`CachedSource`] is a
//! [`ByteSource`] that walks the file chunk by chunk ([`CACHE_CHUNK`] bytes, see `loader::cache`)
//! in file order, whatever the loader asks for:
//!
//! - a chunk the cache holds is read back from the [`ChunkStore`] and checked against its sha256
//!   in the manifest (a corrupted or truncated chunk is dropped and fetched again);
//! - a missing chunk is fetched with Range requests, `parallel` chunks in flight (each a task
//!   whose bytes stay in JS memory until its turn: the reorder buffer holds at most `parallel`
//!   chunks), retried with backoff on network errors, 5xx and 429, checked (206, the right
//!   `Content-Range`, not HTML, the full length) and written to the store before the manifest
//!   marks it complete;
//! - every byte goes through the whole-file sha256 in file order; [`ByteSource::finish`] walks
//!   the chunks after the last tensor and compares the digest with the expected one.
//!
//! Only the chunk under the cursor is held in wasm memory (plus the loader's own read).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use js_sys::{Promise, Uint8Array};
use sha2::{Digest, Sha256};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

use super::cache::{hex, is_sha256_hex, sha256_hex, Manifest};
use super::web::{cancel_body, content_range_total, js_message, send, Abort, UrlSource};
use super::ByteSource;
use crate::error::{Error, Result};

#[wasm_bindgen]
extern "C" {
    /// One model's cache entry in the browser's storage (pkg-template/cache.js: OPFS sync access
    /// handles in a worker, the Cache API elsewhere). Offsets are file offsets.
    pub type ChunkStore;
    /// Why this store cannot be used (`undefined` when it can).
    #[wasm_bindgen(method, getter)]
    fn unavailable(this: &ChunkStore) -> Option<String>;
    /// The manifest's JSON, or null.
    #[wasm_bindgen(method, catch, js_name = readManifest)]
    async fn read_manifest(this: &ChunkStore) -> std::result::Result<JsValue, JsValue>;
    #[wasm_bindgen(method, catch, js_name = writeManifest)]
    async fn write_manifest(this: &ChunkStore, json: &str) -> std::result::Result<JsValue, JsValue>;
    /// The bytes of chunk `index` (`[start, start + len)`), or null.
    #[wasm_bindgen(method, catch, js_name = readChunk)]
    async fn read_chunk(this: &ChunkStore, index: u32, start: f64, len: f64) -> std::result::Result<JsValue, JsValue>;
    #[wasm_bindgen(method, catch, js_name = writeChunk)]
    async fn write_chunk(this: &ChunkStore, index: u32, start: f64, bytes: &Uint8Array) -> std::result::Result<JsValue, JsValue>;
    /// Asks for room for `bytes` more: null when there is, else why not.
    #[wasm_bindgen(method, catch, js_name = checkSpace)]
    async fn check_space(this: &ChunkStore, bytes: f64) -> std::result::Result<JsValue, JsValue>;
    /// Deletes the entry.
    #[wasm_bindgen(method, catch)]
    async fn remove(this: &ChunkStore) -> std::result::Result<JsValue, JsValue>;
}

/// The `load` options of the cache and the downloads.
#[derive(Clone, Debug)]
pub struct CacheOptions {
    /// Load only from the cache; make no request.
    pub offline: bool,
    /// The expected sha256 of the whole file (lower-case hex).
    pub sha256: Option<String>,
    /// Range requests in flight.
    pub parallel: u32,
    /// Retries of a failed request (network error, 5xx, 429).
    pub retries: u32,
}

/// What the progress report says about the cache: bytes from each side, and
/// `"writing"`, `"hit"` or `"skipped: <why>"`.
#[derive(Clone, Debug, Default)]
pub struct CacheReport {
    pub from_cache: u64,
    pub from_network: u64,
    pub status: String,
}

pub type SharedReport = Rc<RefCell<CacheReport>>;

/// A model file read through the cache (see the module doc).
pub struct CachedSource {
    manifest: Manifest,
    /// Opened when the network is needed (never offline, only on a repair after a cache hit).
    net: Option<UrlSource>,
    /// None: not caching (disabled, unavailable, out of space, or a storage error).
    store: Option<ChunkStore>,
    options: CacheOptions,
    abort: Abort,
    report: SharedReport,
    /// Chunks before this one went through the file hash (and the store) in order.
    next_chunk: u32,
    /// The last chunk walked, in wasm memory.
    current: Option<(u32, Vec<u8>)>,
    /// The whole-file hash; None on a full cache hit (each chunk is checked instead).
    file_hash: Option<Sha256>,
    /// Network chunks in flight, in file order: the reorder buffer.
    in_flight: VecDeque<(u32, Promise)>,
    /// Chunks below this one were considered for prefetching.
    scheduled: u32,
}

impl CachedSource {
    /// Opens the model at `urls` through the cache: a complete entry is used after one small
    /// revalidation request (none offline, and a failed one still uses it); a partial one is
    /// resumed when the server still has the same file, else dropped.
    pub async fn open(urls: &[String], store: Option<ChunkStore>, mut options: CacheOptions, abort: Abort, report: SharedReport) -> Result<CachedSource> {
        if urls.is_empty() {
            return Err(Error::BadRequest("no model URL given".into()));
        }
        if let Some(h) = &mut options.sha256 {
            *h = h.trim().to_ascii_lowercase();
            if !is_sha256_hex(h) {
                return Err(Error::BadRequest(format!("sha256 must be 64 hex digits, got '{h}'")));
            }
        }
        options.parallel = options.parallel.clamp(1, 16);
        let mut store = store;
        let mut status = "writing".to_string();
        if let Some(why) = store.as_ref().and_then(ChunkStore::unavailable) {
            status = format!("skipped: {why}");
            store = None;
        }
        let mut stored = match &store {
            Some(s) => read_stored_manifest(s, urls).await,
            None => None,
        };
        if options.offline {
            let Some(manifest) = stored.filter(|m| m.complete) else {
                let why = if store.is_none() { "the cache is not available" } else { "it is not completely in the cache" };
                return Err(Error::Io(format!("offline: cannot load '{}': {why} (load it once online first)", urls[0])));
            };
            return Self::from_cache(manifest, store, options, abort, report).await;
        }
        if let Some(manifest) = stored.clone().filter(|m| m.complete) {
            // One small request: has the file changed on the server?
            match UrlSource::open(&urls[..1], abort.clone()).await {
                Ok(first) if manifest.parts[0].same_file(&first.part_infos()[0]) => {
                    return Self::from_cache(manifest, store, options, abort, report).await;
                }
                Ok(_) => {
                    remove_entry(store.as_ref()).await;
                    stored = None;
                }
                Err(e) if abort.aborted() => return Err(e),
                // The server is unreachable: the complete cached copy is the file.
                Err(_) => return Self::from_cache(manifest, store, options, abort, report).await,
            }
        }
        let net = UrlSource::open(urls, abort.clone()).await?;
        let probed = net.part_infos();
        let mut manifest = match stored {
            Some(m) if m.same_file(&probed) => m,
            Some(_) => {
                remove_entry(store.as_ref()).await;
                Manifest::new(probed)
            }
            None => Manifest::new(probed),
        };
        manifest.expected_sha256 = options.sha256.clone();
        manifest.verified = false;
        if let Some(s) = &store {
            let missing = manifest.bytes - manifest.stored_bytes();
            match s.check_space(missing as f64).await {
                Ok(v) if v.is_null() || v.is_undefined() => {}
                Ok(why) => {
                    status = format!("skipped: {}", why.as_string().unwrap_or_else(|| "no room".into()));
                    store = None;
                }
                Err(e) => {
                    status = format!("skipped: {}", js_message(&e));
                    store = None;
                }
            }
        }
        report.borrow_mut().status = status;
        let mut source = Self::new(manifest, Some(net), store, options, abort, report);
        source.file_hash = Some(Sha256::new());
        Ok(source)
    }

    fn new(manifest: Manifest, net: Option<UrlSource>, store: Option<ChunkStore>, options: CacheOptions, abort: Abort, report: SharedReport) -> CachedSource {
        CachedSource { manifest, net, store, options, abort, report, next_chunk: 0, current: None, file_hash: None, in_flight: VecDeque::new(), scheduled: 0 }
    }

    /// A complete entry: checked against the expected hash before anything is read.
    async fn from_cache(mut manifest: Manifest, store: Option<ChunkStore>, options: CacheOptions, abort: Abort, report: SharedReport) -> Result<CachedSource> {
        if let Some(expected) = &options.sha256 {
            let cached = manifest.sha256.clone().unwrap_or_default();
            if &cached != expected {
                remove_entry(store.as_ref()).await;
                return Err(Error::Integrity(format!(
                    "the cached model's sha256 is {cached}, not the expected {expected}: the cache entry was removed"
                )));
            }
            manifest.verified = true;
            manifest.expected_sha256 = Some(expected.clone());
        }
        report.borrow_mut().status = "hit".into();
        Ok(Self::new(manifest, None, store, options, abort, report))
    }

    /// The network source, opened on first use.
    async fn net(&mut self) -> Result<&mut UrlSource> {
        if self.options.offline {
            return Err(Error::Io("offline: a cached chunk was damaged and the network may not be used: load online to repair it".into()));
        }
        if self.net.is_none() {
            let net = UrlSource::open(&self.manifest.urls(), self.abort.clone()).await?;
            if !self.manifest.same_file(&net.part_infos()) {
                remove_entry(self.store.as_ref()).await;
                return Err(Error::Io("the model changed on the server while its cached copy was being read: load it again".into()));
            }
            self.net = Some(net);
        }
        Ok(self.net.as_mut().expect("opened above"))
    }

    /// Starts the fetch of chunk `k`: a task whose result (a Uint8Array) waits in JS memory.
    fn spawn_fetch(&self, k: u32) -> Promise {
        let (start, end) = self.manifest.chunk_range(k);
        let segments: Vec<Segment> = self
            .manifest
            .segments(start, end)
            .into_iter()
            .map(|(i, a, b)| Segment { url: self.manifest.parts[i].url.clone(), start: a, end: b, part_len: self.manifest.parts[i].bytes })
            .collect();
        let (retries, abort) = (self.options.retries, self.abort.clone());
        future_to_promise(async move {
            fetch_segments(&segments, retries, &abort).await.map(JsValue::from).map_err(|e| JsValue::from_str(&e.to_string()))
        })
    }

    /// Keeps up to `parallel` fetches of missing chunks from `from` on in flight.
    fn prefetch(&mut self, from: u32) {
        if !self.net.as_ref().is_some_and(UrlSource::ranged) {
            return;
        }
        self.scheduled = self.scheduled.max(from);
        while self.in_flight.len() < self.options.parallel as usize && self.scheduled < self.manifest.n_chunks() {
            let k = self.scheduled;
            if !self.manifest.has_chunk(k) {
                let task = self.spawn_fetch(k);
                self.in_flight.push_back((k, task));
            }
            self.scheduled += 1;
        }
    }

    /// The bytes of chunk `k` from the network.
    async fn fetch_chunk(&mut self, k: u32) -> Result<Uint8Array> {
        self.net().await?;
        self.prefetch(k);
        let task = match self.in_flight.iter().position(|(i, _)| *i == k) {
            Some(at) => self.in_flight.remove(at).expect("found above").1,
            None if self.net.as_ref().is_some_and(UrlSource::ranged) => self.spawn_fetch(k),
            None => {
                // A server without Range support: read its body in order.
                let (start, end) = self.manifest.chunk_range(k);
                let bytes = self.net().await?.read(start, end - start).await?;
                return Ok(Uint8Array::from(&bytes[..]));
            }
        };
        let data = JsFuture::from(task).await.map_err(|e| if self.abort.aborted() { Error::Io("loading was aborted".into()) } else { Error::Io(js_message(&e)) })?;
        Ok(data.unchecked_into())
    }

    /// Chunk `k` from the store, when it holds it intact.
    async fn cached_chunk(&self, k: u32) -> Option<Vec<u8>> {
        let store = self.store.as_ref()?;
        let want = self.manifest.chunks.get(k as usize)?.as_ref()?;
        let (start, end) = self.manifest.chunk_range(k);
        let value = store.read_chunk(k, start as f64, (end - start) as f64).await.ok()?;
        let bytes = value.dyn_into::<Uint8Array>().ok()?;
        if bytes.length() as u64 != end - start {
            return None;
        }
        let bytes = bytes.to_vec();
        (&sha256_hex(&bytes) == want).then_some(bytes)
    }

    /// Chunk `k`: from the cache when it holds it intact, else from the network (then stored).
    async fn chunk(&mut self, k: u32) -> Result<Vec<u8>> {
        let (start, end) = self.manifest.chunk_range(k);
        let recorded = self.manifest.chunks[k as usize].clone();
        // Keep the network busy with the missing chunks ahead while cached ones are read.
        self.prefetch(k);
        if recorded.is_some() {
            if let Some(bytes) = self.cached_chunk(k).await {
                self.report.borrow_mut().from_cache += end - start;
                return Ok(bytes);
            }
            // Damaged or gone: forget it, fetch it again.
            self.manifest.chunks[k as usize] = None;
            self.manifest.complete = false;
            self.save_manifest().await;
        }
        let data = self.fetch_chunk(k).await?;
        let bytes = data.to_vec();
        let hash = sha256_hex(&bytes);
        if recorded.as_ref().is_some_and(|r| r != &hash) {
            remove_entry(self.store.take().as_ref()).await;
            return Err(Error::Integrity(format!(
                "bytes {start}..{end} from the network differ from the cached copy's (the file changed on the server?): the cache entry was removed"
            )));
        }
        self.report.borrow_mut().from_network += end - start;
        if let Some(store) = &self.store {
            match store.write_chunk(k, start as f64, &data).await {
                Ok(_) => {
                    self.manifest.chunks[k as usize] = Some(hash);
                    self.save_manifest().await;
                }
                Err(e) => self.stop_caching(&e).await,
            }
        }
        Ok(bytes)
    }

    /// Walks chunks in file order up to `k` (hashing them), leaving `k` under the cursor.
    async fn advance_to(&mut self, k: u32) -> Result<()> {
        while self.next_chunk <= k {
            self.abort.check()?;
            let j = self.next_chunk;
            self.current = None;
            let bytes = self.chunk(j).await?;
            if let Some(h) = &mut self.file_hash {
                h.update(&bytes);
            }
            self.current = Some((j, bytes));
            self.next_chunk += 1;
        }
        Ok(())
    }

    /// Writes the manifest (a failure stops caching).
    async fn save_manifest(&mut self) {
        self.manifest.last_used = js_sys::Date::now();
        let Some(store) = &self.store else { return };
        if let Err(e) = store.write_manifest(&self.manifest.to_json()).await {
            self.stop_caching(&e).await;
        }
    }

    /// A storage write failed (quota, ...): drop the entry and load on without caching.
    async fn stop_caching(&mut self, error: &JsValue) {
        // A DOMException (QuotaExceededError) or an Error: both have a name.
        let name = js_sys::Reflect::get(error, &"name".into()).ok().and_then(|v| v.as_string()).unwrap_or_default();
        let why = if name == "QuotaExceededError" {
            "skipped: the storage quota was exceeded (loading without caching)".to_string()
        } else {
            format!("skipped: storage error ({})", js_message(error))
        };
        remove_entry(self.store.take().as_ref()).await;
        self.report.borrow_mut().status = why;
    }
}

/// Reads the stored manifest for `urls`; a damaged or foreign one is removed.
async fn read_stored_manifest(store: &ChunkStore, urls: &[String]) -> Option<Manifest> {
    let json = store.read_manifest().await.ok()?.as_string()?;
    match Manifest::parse(&json) {
        Some(m) if m.urls() == urls => Some(m),
        _ => {
            remove_entry(Some(store)).await;
            None
        }
    }
}

async fn remove_entry(store: Option<&ChunkStore>) {
    if let Some(s) = store {
        let _ = s.remove().await;
    }
}

impl ByteSource for CachedSource {
    fn len(&self) -> u64 {
        self.manifest.bytes
    }

    fn part_lens(&self) -> Vec<u64> {
        self.manifest.parts.iter().map(|p| p.bytes).collect()
    }

    async fn read(&mut self, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.abort.check()?;
        let end = offset.checked_add(len).filter(|&e| e <= self.manifest.bytes).ok_or_else(|| Error::Io(format!("read past the end of the model ({} bytes)", self.manifest.bytes)))?;
        let mut out = Vec::with_capacity(len as usize);
        let mut pos = offset;
        while pos < end {
            let k = self.manifest.chunk_of(pos);
            let (start, chunk_end) = self.manifest.chunk_range(k);
            let b = end.min(chunk_end);
            if k >= self.next_chunk {
                self.advance_to(k).await?;
            }
            match &self.current {
                Some((c, bytes)) if *c == k => out.extend_from_slice(&bytes[(pos - start) as usize..(b - start) as usize]),
                // Behind the cursor (gguf-split headers are read before the first shard's
                // tensors): read it again.
                _ => {
                    let bytes = match self.cached_chunk(k).await {
                        Some(bytes) => bytes,
                        None => self.fetch_chunk(k).await?.to_vec(),
                    };
                    out.extend_from_slice(&bytes[(pos - start) as usize..(b - start) as usize]);
                }
            }
            pos = b;
        }
        Ok(out)
    }

    async fn finish(&mut self) -> Result<()> {
        let n = self.manifest.n_chunks();
        if n > 0 {
            self.advance_to(n - 1).await?;
        }
        self.current = None;
        if let Some(h) = self.file_hash.take() {
            let digest = hex(&h.finalize());
            if let Some(expected) = self.options.sha256.clone() {
                if digest != expected {
                    remove_entry(self.store.take().as_ref()).await;
                    self.report.borrow_mut().status = "skipped: sha256 mismatch".into();
                    return Err(Error::Integrity(format!(
                        "the model's sha256 is {digest}, not the expected {expected}: it was not cached and will not run"
                    )));
                }
                self.manifest.verified = true;
            }
            self.manifest.sha256 = Some(digest);
        }
        self.manifest.complete = self.manifest.all_stored();
        self.save_manifest().await;
        Ok(())
    }
}

/// A byte range `[start, end)` of one URL whose file is `part_len` bytes long.
struct Segment {
    url: String,
    start: u64,
    end: u64,
    part_len: u64,
}

/// The bytes of `segments`, one after the other, in one JS array.
async fn fetch_segments(segments: &[Segment], retries: u32, abort: &Abort) -> Result<Uint8Array> {
    let total: u64 = segments.iter().map(|s| s.end - s.start).sum();
    let out = Uint8Array::new_with_length(total as u32);
    let mut at = 0u32;
    for s in segments {
        let mut attempt = 0;
        let bytes = loop {
            match fetch_range(s, abort).await {
                Ok(bytes) => break bytes,
                Err(Failure::Retry(_)) if attempt < retries && !abort.aborted() => {
                    // Backoff: 250 ms, 500 ms, 1 s, ...
                    sleep_ms(250 << attempt.min(6)).await;
                    attempt += 1;
                }
                Err(Failure::Retry(why)) if attempt > 0 => return Err(Error::Io(format!("{why} (after {} attempts)", attempt + 1))),
                Err(Failure::Retry(why) | Failure::Fatal(why)) => return Err(Error::Io(why)),
            }
        };
        out.set(&bytes, at);
        at += bytes.length();
    }
    Ok(out)
}

/// Why a range request failed: worth retrying (network, 5xx, 429, cut body) or not.
enum Failure {
    Retry(String),
    Fatal(String),
}

/// One Range request, checked: a 206 whose `Content-Range` (when visible) is exactly the range
/// asked for out of the expected size, not an HTML page, and a body of the full length.
async fn fetch_range(s: &Segment, abort: &Abort) -> std::result::Result<Uint8Array, Failure> {
    let (url, want) = (&s.url, s.end - s.start);
    let response = send(url, "GET", Some((s.start, s.end)), abort).await.map_err(|e| Failure::Retry(e.to_string()))?;
    let status = response.status();
    let what = format!("'{url}' bytes {}-{}", s.start, s.end - 1);
    if status >= 500 || status == 429 {
        let _ = cancel_body(&response);
        return Err(Failure::Retry(format!("HTTP {status} for {what}")));
    }
    let content_type = response.headers().get("Content-Type").ok().flatten().unwrap_or_default();
    if content_type.to_ascii_lowercase().contains("text/html") {
        let _ = cancel_body(&response);
        return Err(Failure::Fatal(format!("{what} came back as an HTML page, not model bytes: nothing was cached from it")));
    }
    if status != 206 {
        let _ = cancel_body(&response);
        return Err(Failure::Fatal(format!("HTTP {status} for {what} (expected 206 Partial Content): nothing was cached from it")));
    }
    let range = response.headers().get("Content-Range").ok().flatten();
    if let Some(range) = range {
        if range.trim() != format!("bytes {}-{}/{}", s.start, s.end - 1, s.part_len) || content_range_total(&response) != Some(s.part_len) {
            let _ = cancel_body(&response);
            return Err(Failure::Fatal(format!("{what} came back with Content-Range '{range}', which disagrees with the file's size {}", s.part_len)));
        }
    }
    let buffer = JsFuture::from(response.array_buffer().map_err(|e| Failure::Retry(js_message(&e)))?)
        .await
        .map_err(|e| Failure::Retry(format!("reading {what} failed: {}", js_message(&e))))?;
    let bytes = Uint8Array::new(&buffer);
    if bytes.length() as u64 != want {
        return Err(Failure::Retry(format!("{what} ended after {} of {want} bytes", bytes.length())));
    }
    Ok(bytes)
}

/// Resolves after `ms` milliseconds (`setTimeout` of the window or worker).
async fn sleep_ms(ms: u32) {
    let promise = Promise::new(&mut |resolve, _| {
        let set_timeout = js_sys::Reflect::get(&js_sys::global(), &"setTimeout".into()).ok().and_then(|f| f.dyn_into::<js_sys::Function>().ok());
        match set_timeout {
            Some(f) => {
                let _ = f.call2(&JsValue::NULL, &resolve, &JsValue::from(ms));
            }
            None => {
                let _ = resolve.call0(&JsValue::NULL);
            }
        }
    });
    let _ = JsFuture::from(promise).await;
}
