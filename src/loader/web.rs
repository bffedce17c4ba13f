//! Byte sources in the browser (compiled only for wasm32).
//!
//! - [`UrlSource`]: one model file behind one or more URLs. Several URLs are raw byte chunks of
//!   one file, in order (`model.gguf.part00`, `.part01`, ...): global offsets are mapped onto the
//!   parts. Each part is probed once with a 1-byte Range request (its length comes from
//!   `Content-Range`, or from a HEAD request when that header is hidden); reads are Range
//!   requests of at most the caller's chunk size. A server that ignores `Range` (answers 200)
//!   still works: its body is read sequentially, serving increasing offsets and skipping the
//!   bytes between them; a read behind the stream's position starts the body again.
//! - [`BlobSource`]: a `File` or `Blob` (`Blob.slice` + `arrayBuffer` per read).
//!
//! Every read first checks the `AbortSignal`, and every fetch carries it. Only the bytes of the
//! read in progress are held (in JS and in wasm): never the whole file.

use js_sys::{Promise, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortSignal, Blob, ReadableStreamDefaultReader, Request, RequestInit, Response};

use super::ByteSource;
use crate::error::{Error, Result};

#[wasm_bindgen]
extern "C" {
    /// The global `fetch` (a window's or a worker's).
    #[wasm_bindgen(js_name = fetch)]
    fn global_fetch(request: &Request) -> Promise;
}

/// The caller's abort signal, checked before every read.
#[derive(Clone, Default)]
pub struct Abort(pub Option<AbortSignal>);

impl Abort {
    pub fn aborted(&self) -> bool {
        self.0.as_ref().is_some_and(|s| s.aborted())
    }

    pub fn check(&self) -> Result<()> {
        if self.aborted() {
            Err(Error::Io("loading was aborted".into()))
        } else {
            Ok(())
        }
    }
}

/// A one-line description of a thrown JS value (a `TypeError: Failed to fetch`, ...).
pub fn js_message(value: &JsValue) -> String {
    if let Some(e) = value.dyn_ref::<js_sys::Error>() {
        let name: String = e.name().into();
        let message: String = e.message().into();
        return format!("{name}: {message}");
    }
    value.as_string().unwrap_or_else(|| format!("{value:?}"))
}

/// Sends a request (a Range request when `range` is given, `end` exclusive) and returns the
/// answer whatever its status.
pub(super) async fn send(url: &str, method: &str, range: Option<(u64, u64)>, abort: &Abort) -> Result<Response> {
    abort.check()?;
    let init = RequestInit::new();
    init.set_method(method);
    init.set_signal(abort.0.as_ref());
    if range.is_none() {
        // A whole body, read sequentially and possibly started again: keep the HTTP cache out
        // of it (it would otherwise store a partial entry and add requests of its own).
        init.set_cache(web_sys::RequestCache::NoStore);
    }
    let request = Request::new_with_str_and_init(url, &init).map_err(|e| Error::Io(format!("bad model URL '{url}': {}", js_message(&e))))?;
    if let Some((start, end)) = range {
        // `end` is exclusive here, inclusive in the header.
        let _ = request.headers().set("Range", &format!("bytes={start}-{}", end - 1));
    }
    let response = JsFuture::from(global_fetch(&request)).await.map_err(|e| {
        if abort.aborted() {
            Error::Io("loading was aborted".into())
        } else {
            Error::Io(format!(
                "fetching '{url}' failed ({}): check the URL, that the server is up, and that it allows cross-origin requests (CORS)",
                js_message(&e)
            ))
        }
    })?;
    Ok(response.unchecked_into())
}

/// [`send`], with any status but 2xx and 416 turned into an error.
async fn fetch(url: &str, method: &str, range: Option<(u64, u64)>, abort: &Abort) -> Result<Response> {
    let response = send(url, method, range, abort).await?;
    let status = response.status();
    if !(200..300).contains(&status) && status != 416 {
        let _ = cancel_body(&response);
        return Err(Error::Io(format!("HTTP {status} {} for '{url}'", response.status_text()).replace("  ", " ")));
    }
    Ok(response)
}

pub(super) fn cancel_body(response: &Response) -> Option<()> {
    let body = response.body()?;
    let _ = body.cancel();
    Some(())
}

pub(super) fn header_u64(response: &Response, name: &str) -> Option<u64> {
    response.headers().get(name).ok().flatten().and_then(|v| v.trim().parse().ok())
}

/// Total length from `Content-Range: bytes 0-0/12345`.
pub(super) fn content_range_total(response: &Response) -> Option<u64> {
    let value = response.headers().get("Content-Range").ok().flatten()?;
    value.rsplit('/').next()?.trim().parse().ok()
}

/// Start offset from `Content-Range: bytes 100-199/12345`.
pub(super) fn content_range_start(response: &Response) -> Option<u64> {
    let value = response.headers().get("Content-Range").ok().flatten()?;
    let range = value.trim().strip_prefix("bytes")?.trim();
    range.split('-').next()?.trim().parse().ok()
}

/// A response body read front to back.
struct BodyStream {
    reader: ReadableStreamDefaultReader,
    /// Offset (within the part) of the body's first byte (a Range response's start).
    base: u64,
    /// Offset (within the body) of the next byte the stream yields.
    pos: u64,
    /// The unread rest of the last chunk the stream gave.
    pending: Option<Uint8Array>,
}

impl BodyStream {
    fn new(response: &Response, url: &str, base: u64) -> Result<BodyStream> {
        let body = response.body().ok_or_else(|| Error::Io(format!("the response for '{url}' has no body")))?;
        let reader = ReadableStreamDefaultReader::new(&body).map_err(|e| Error::Io(format!("cannot read '{url}': {}", js_message(&e))))?;
        Ok(BodyStream { reader, base, pos: 0, pending: None })
    }

    /// The next bytes of the body (at most `max`), or None at its end.
    async fn next(&mut self, max: u64, url: &str, abort: &Abort) -> Result<Option<Uint8Array>> {
        let chunk = match self.pending.take() {
            Some(c) => c,
            None => {
                abort.check()?;
                let result = JsFuture::from(self.reader.read()).await.map_err(|e| {
                    if abort.aborted() {
                        Error::Io("loading was aborted".into())
                    } else {
                        Error::Io(format!("reading '{url}' failed at byte {}: {}", self.base + self.pos, js_message(&e)))
                    }
                })?;
                let done = js_sys::Reflect::get(&result, &"done".into()).map(|d| d.is_truthy()).unwrap_or(true);
                if done {
                    return Ok(None);
                }
                let value = js_sys::Reflect::get(&result, &"value".into()).map_err(|_| Error::Io(format!("reading '{url}' failed")))?;
                value.dyn_into::<Uint8Array>().map_err(|_| Error::Io(format!("reading '{url}' gave no bytes")))?
            }
        };
        let n = chunk.length() as u64;
        if n > max {
            self.pending = Some(chunk.subarray(max as u32, n as u32));
            self.pos += max;
            Ok(Some(chunk.subarray(0, max as u32)))
        } else {
            self.pos += n;
            Ok(Some(chunk))
        }
    }

    /// Fills `out` with the bytes at `offset..` (not before `self.pos`), skipping what lies between.
    async fn read_at(&mut self, offset: u64, out: &mut [u8], url: &str, abort: &Abort) -> Result<()> {
        while self.pos < offset {
            if self.next(offset - self.pos, url, abort).await?.is_none() {
                return Err(Error::Io(format!("'{url}' ended at byte {} (the model file is truncated)", self.base + self.pos)));
            }
        }
        let mut filled = 0usize;
        while filled < out.len() {
            let Some(chunk) = self.next((out.len() - filled) as u64, url, abort).await? else {
                return Err(Error::Io(format!("'{url}' ended at byte {} (the model file is truncated)", self.base + self.pos)));
            };
            let n = chunk.length() as usize;
            chunk.copy_to(&mut out[filled..filled + n]);
            filled += n;
        }
        Ok(())
    }

    fn cancel(&self) {
        let _ = self.reader.cancel();
    }
}

/// How a part is read.
enum Mode {
    /// The server honours `Range`.
    Ranged,
    /// The server ignores `Range`: the body, read front to back (None until it is started).
    Sequential(Option<BodyStream>),
}

struct Part {
    url: String,
    /// Global offset of the part's first byte.
    start: u64,
    len: u64,
    mode: Mode,
    /// `ETag` and `Last-Modified` of the probe's answer (when the server sends them).
    etag: Option<String>,
    last_modified: Option<String>,
}

/// One model file behind one or more URLs (raw byte chunks in order).
pub struct UrlSource {
    parts: Vec<Part>,
    len: u64,
    abort: Abort,
    /// Requests made so far (for tests and diagnostics).
    requests: std::cell::Cell<u32>,
}

impl UrlSource {
    /// Probes every part for its length and Range support.
    pub async fn open(urls: &[String], abort: Abort) -> Result<UrlSource> {
        if urls.is_empty() {
            return Err(Error::BadRequest("no model URL given".into()));
        }
        let mut parts = Vec::with_capacity(urls.len());
        let mut start = 0u64;
        let requests = std::cell::Cell::new(0);
        for url in urls {
            let (len, mode, n, response) = probe(url, &abort).await?;
            requests.set(requests.get() + n);
            let header = |name: &str| response.headers().get(name).ok().flatten();
            let (etag, last_modified) = (header("ETag"), header("Last-Modified"));
            parts.push(Part { url: url.clone(), start, len, mode, etag, last_modified });
            start += len;
        }
        Ok(UrlSource { parts, len: start, abort, requests })
    }

    /// What the server said about each part: URL, size, ETag, Last-Modified.
    pub fn part_infos(&self) -> Vec<super::cache::PartInfo> {
        self.parts
            .iter()
            .map(|p| super::cache::PartInfo { url: p.url.clone(), bytes: p.len, etag: p.etag.clone(), last_modified: p.last_modified.clone() })
            .collect()
    }


    /// HTTP requests made so far.
    pub fn requests(&self) -> u32 {
        self.requests.get()
    }

    /// Whether every part honours Range requests.
    pub fn ranged(&self) -> bool {
        self.parts.iter().all(|p| matches!(p.mode, Mode::Ranged))
    }

    /// Reads `out.len()` bytes at `offset` within part `i`.
    async fn read_part(&mut self, i: usize, offset: u64, out: &mut [u8]) -> Result<()> {
        let abort = self.abort.clone();
        let requests = &self.requests;
        let part = &mut self.parts[i];
        let end = offset + out.len() as u64;
        if let Mode::Ranged = part.mode {
            requests.set(requests.get() + 1);
            let response = fetch(&part.url, "GET", Some((offset, end)), &abort).await?;
            match response.status() {
                206 => {
                    if content_range_start(&response).is_some_and(|s| s != offset) {
                        let _ = cancel_body(&response);
                        return Err(Error::Io(format!("'{}' answered a Range request for byte {offset} with other bytes", part.url)));
                    }
                    let mut body = BodyStream::new(&response, &part.url, offset)?;
                    body.read_at(0, out, &part.url, &abort).await?;
                    body.cancel();
                    return Ok(());
                }
                _ => {
                    // The server ignored Range this time: go on reading its body sequentially.
                    part.mode = Mode::Sequential(Some(BodyStream::new(&response, &part.url, 0)?));
                }
            }
        }
        let Mode::Sequential(stream) = &mut part.mode else { unreachable!("ranged parts returned above") };
        if stream.as_ref().is_some_and(|s| s.pos > offset) {
            // A read behind the stream: start the body again.
            if let Some(s) = stream.take() {
                s.cancel();
            }
        }
        if stream.is_none() {
            requests.set(requests.get() + 1);
            let response = fetch(&part.url, "GET", None, &abort).await?;
            *stream = Some(BodyStream::new(&response, &part.url, 0)?);
        }
        let s = stream.as_mut().expect("started above");
        s.read_at(offset, out, &part.url, &abort).await
    }
}

impl Drop for UrlSource {
    /// Stops the bodies still being read sequentially (a server without Range support would
    /// otherwise go on sending the whole file after a probe or a failed load).
    fn drop(&mut self) {
        for part in &self.parts {
            if let Mode::Sequential(Some(stream)) = &part.mode {
                stream.cancel();
            }
        }
    }
}

/// Length, read mode, request count and the answer (for its headers) of one URL.
async fn probe(url: &str, abort: &Abort) -> Result<(u64, Mode, u32, Response)> {
    let response = fetch(url, "GET", Some((0, 1)), abort).await?;
    match response.status() {
        206 => {
            let _ = cancel_body(&response);
            if let Some(total) = content_range_total(&response) {
                return Ok((total, Mode::Ranged, 1, response));
            }
            // Content-Range hidden (cross-origin without Access-Control-Expose-Headers): ask HEAD.
            let head = fetch(url, "HEAD", None, abort).await?;
            match header_u64(&head, "Content-Length") {
                Some(len) => Ok((len, Mode::Ranged, 2, head)),
                None => Err(Error::Io(format!("'{url}' does not say how long it is (no Content-Range or Content-Length visible)"))),
            }
        }
        // Range not satisfiable: an empty file.
        416 => Ok((0, Mode::Ranged, 1, response)),
        _ => match header_u64(&response, "Content-Length") {
            // No Range support: keep this body as the sequential stream.
            Some(len) => {
                let stream = BodyStream::new(&response, url, 0)?;
                Ok((len, Mode::Sequential(Some(stream)), 1, response))
            }
            None => {
                let _ = cancel_body(&response);
                Err(Error::Io(format!(
                    "'{url}' supports no Range requests and sends no Content-Length: its size is unknown"
                )))
            }
        },
    }
}

impl ByteSource for UrlSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn part_lens(&self) -> Vec<u64> {
        self.parts.iter().map(|p| p.len).collect()
    }

    async fn read(&mut self, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.abort.check()?;
        let end = offset.checked_add(len).filter(|&e| e <= self.len).ok_or_else(|| Error::Io(format!("read past the end of the model ({} bytes)", self.len)))?;
        let mut out = vec![0u8; len as usize];
        for i in 0..self.parts.len() {
            let (p_start, p_end) = (self.parts[i].start, self.parts[i].start + self.parts[i].len);
            let (a, b) = (offset.max(p_start), end.min(p_end));
            if a < b {
                let slice = &mut out[(a - offset) as usize..(b - offset) as usize];
                self.read_part(i, a - p_start, slice).await?;
            }
        }
        Ok(out)
    }
}

/// A `File` or `Blob`.
pub struct BlobSource {
    blob: Blob,
    len: u64,
    abort: Abort,
}

impl BlobSource {
    pub fn new(blob: Blob, abort: Abort) -> BlobSource {
        let len = blob.size() as u64;
        BlobSource { blob, len, abort }
    }
}

impl ByteSource for BlobSource {
    fn len(&self) -> u64 {
        self.len
    }

    async fn read(&mut self, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.abort.check()?;
        let end = offset.checked_add(len).filter(|&e| e <= self.len).ok_or_else(|| Error::Io(format!("read past the end of the model ({} bytes)", self.len)))?;
        let slice = self.blob.slice_with_f64_and_f64(offset as f64, end as f64).map_err(|e| Error::Io(format!("cannot slice the file: {}", js_message(&e))))?;
        let buffer = JsFuture::from(slice.array_buffer()).await.map_err(|e| Error::Io(format!("reading the file failed: {}", js_message(&e))))?;
        let bytes = Uint8Array::new(&buffer);
        if bytes.length() as u64 != len {
            return Err(Error::Io(format!("reading the file gave {} bytes at {offset}, expected {len}", bytes.length())));
        }
        let mut out = vec![0u8; len as usize];
        bytes.copy_to(&mut out);
        Ok(out)
    }
}
