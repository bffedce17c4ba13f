// The model cache's storage and the public `cache` API. The bookkeeping (manifest, chunk hashes,
// the whole-file sha256, resume, retries) is in Rust (src/loader/cache.rs, web_cache.rs); this
// file only stores bytes.
//
// An entry is keyed by the sha256 of the model's URL list and lives in one of two backends:
// - OPFS with sync access handles (only in dedicated workers, where the engine runs by default):
//   the folder `ferrolm-cache/<key>/` holds `data` (the file's bytes at their own offsets) and
//   `manifest.json`;
// - the Cache API (the page's own thread, extension service workers): the responses
//   `https://ferrolm.cache/<key>/chunk-<k>` and `.../manifest` in the cache `ferrolm-models-v1`
//   (Cache API keys must be http(s) URLs; these are never fetched).
// A chunk is written (and flushed) before the manifest says it is there, so an interrupted
// write leaves at worst a chunk the manifest does not list.

import { sourceUrls } from "./source.js";

const DIR = "ferrolm-cache";
const CACHE_NAME = "ferrolm-models-v1";
const PREFIX = "https://ferrolm.cache/";

/**
 * @typedef {{ url: string, bytes: number, etag: string | null, lastModified: string | null }} PartInfo
 * @typedef {{ version: number, parts: PartInfo[], bytes: number, chunkBytes: number,
 *   chunks: (string | null)[], sha256: string | null, expectedSha256: string | null,
 *   verified: boolean, complete: boolean, lastUsed: number }} Manifest
 * @typedef {import("./index.js").CachedModel} CachedModel
 * @typedef {{ read(into: Uint8Array, at: { at: number }): number, write(from: Uint8Array, at: { at: number }): number,
 *   flush(): void, truncate(size: number): void, getSize(): number, close(): void }} SyncHandle
 *   An OPFS FileSystemSyncAccessHandle (dedicated workers only; not in TypeScript's DOM types)
 */

/** Whether this context has OPFS (the async API; sync handles are checked apart). */
function hasOpfs() {
  return typeof globalThis.navigator?.storage?.getDirectory === "function";
}

/** @param {FileSystemFileHandle} file @returns {Promise<SyncHandle>} */
function openSyncHandle(file) {
  return /** @type {any} */ (file).createSyncAccessHandle();
}

/** @param {string[]} urls */
async function keyOf(urls) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(JSON.stringify(urls)));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** @param {unknown} e */
function describeError(e) {
  return e instanceof Error || (e && typeof e === "object" && "message" in e)
    ? `${/** @type {Error} */ (e).name}: ${/** @type {Error} */ (e).message}` : String(e);
}

/** OPFS sync access handles exist only in dedicated workers. */
function syncHandlesAvailable() {
  return "FileSystemSyncAccessHandle" in globalThis && hasOpfs();
}

/** @param {boolean} create */
async function opfsFolder(create) {
  const root = await navigator.storage.getDirectory();
  return root.getDirectoryHandle(DIR, { create });
}

/** Asks the browser for room for `bytes` more: null when there is, else why not. */
async function checkSpace(/** @type {number} */ bytes) {
  const storage = globalThis.navigator?.storage;
  if (!storage || typeof storage.estimate !== "function") return null;
  const { usage = 0, quota = Infinity } = await storage.estimate();
  const free = quota - usage;
  if (free < bytes) {
    const mb = (/** @type {number} */ n) => `${(n / 1e6).toFixed(0)} MB`;
    return `not enough storage (the model needs ${mb(bytes)}, ${mb(Math.max(0, free))} free): loading without caching`;
  }
  return null;
}

/** A model's entry in OPFS, written through sync access handles. */
class OpfsStore {
  /** @param {string} key */
  static async open(key) {
    const folder = await opfsFolder(true);
    const dir = await folder.getDirectoryHandle(key, { create: true });
    const data = await openSyncHandle(await dir.getFileHandle("data", { create: true }));
    try {
      const manifest = await openSyncHandle(await dir.getFileHandle("manifest.json", { create: true }));
      return new OpfsStore(folder, key, data, manifest);
    } catch (e) {
      data.close();
      throw e;
    }
  }

  /**
   * @param {FileSystemDirectoryHandle} folder
   * @param {string} key
   * @param {SyncHandle} data
   * @param {SyncHandle} manifest
   */
  constructor(folder, key, data, manifest) {
    this.folder = folder;
    this.key = key;
    this.data = data;
    this.manifest = manifest;
    this.closed = false;
    /** @type {string | undefined} */
    this.unavailable = undefined;
  }

  async readManifest() {
    const size = this.manifest.getSize();
    if (!size) return null;
    const bytes = new Uint8Array(size);
    this.manifest.read(bytes, { at: 0 });
    return new TextDecoder().decode(bytes);
  }

  /** @param {string} json */
  async writeManifest(json) {
    const bytes = new TextEncoder().encode(json);
    this.manifest.truncate(0);
    this.manifest.write(bytes, { at: 0 });
    this.manifest.flush();
  }

  /** @param {number} _index @param {number} start @param {number} len */
  async readChunk(_index, start, len) {
    if (start + len > this.data.getSize()) return null;
    const bytes = new Uint8Array(len);
    return this.data.read(bytes, { at: start }) === len ? bytes : null;
  }

  /** @param {number} _index @param {number} start @param {Uint8Array} bytes */
  async writeChunk(_index, start, bytes) {
    const n = this.data.write(bytes, { at: start });
    if (n !== bytes.length) throw new Error(`OPFS wrote ${n} of ${bytes.length} bytes`);
    this.data.flush();
  }

  checkSpace(/** @type {number} */ bytes) {
    return checkSpace(bytes);
  }

  async remove() {
    this.close();
    await this.folder.removeEntry(this.key, { recursive: true }).catch(() => {});
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.data.close();
    this.manifest.close();
  }
}

/** @param {Cache} c @param {string} key */
async function removeCacheApiEntry(c, key) {
  let removed = false;
  for (const request of await c.keys()) {
    if (request.url.startsWith(`${PREFIX}${key}/`)) removed = (await c.delete(request)) || removed;
  }
  return removed;
}

/** A model's entry in the Cache API, one response per chunk. */
class CacheApiStore {
  /** @param {string} key */
  static async open(key) {
    return new CacheApiStore(await caches.open(CACHE_NAME), key);
  }

  /** @param {Cache} c @param {string} key */
  constructor(c, key) {
    this.cache = c;
    this.key = key;
    /** @type {string | undefined} */
    this.unavailable = undefined;
  }

  /** @param {string} name */
  url(name) {
    return `${PREFIX}${this.key}/${name}`;
  }

  async readManifest() {
    const r = await this.cache.match(this.url("manifest"));
    return r ? r.text() : null;
  }

  /** @param {string} json */
  async writeManifest(json) {
    await this.cache.put(this.url("manifest"), new Response(json, { headers: { "Content-Type": "application/json" } }));
  }

  /** @param {number} index */
  async readChunk(index) {
    const r = await this.cache.match(this.url(`chunk-${index}`));
    return r ? new Uint8Array(await r.arrayBuffer()) : null;
  }

  /** @param {number} index @param {number} _start @param {Uint8Array} bytes */
  async writeChunk(index, _start, bytes) {
    await this.cache.put(this.url(`chunk-${index}`), new Response(/** @type {Uint8Array<ArrayBuffer>} */ (bytes)));
  }

  checkSpace(/** @type {number} */ bytes) {
    return checkSpace(bytes);
  }

  async remove() {
    await removeCacheApiEntry(this.cache, this.key);
  }

  close() {}
}

/**
 * The storage for one load of `urls`: OPFS in a dedicated worker, else the Cache API. When
 * neither works, an object whose `unavailable` says why (the model then loads uncached).
 * @param {string[]} urls
 * @returns {Promise<{ unavailable?: string, close(): void }>}
 */
export async function openStore(urls) {
  /** @param {string} why */
  const unavailable = (why) => ({ unavailable: why, close() {} });
  try {
    if (!globalThis.crypto?.subtle) return unavailable("no crypto.subtle here (not a secure context)");
    const key = await keyOf(urls);
    if (syncHandlesAvailable()) {
      try {
        return await OpfsStore.open(key);
      } catch (e) {
        if (/** @type {Error} */ (e).name === "NoModificationAllowedError") {
          return unavailable("another load is writing this model's cache entry");
        }
        if (!globalThis.caches) throw e;
      }
    }
    if (globalThis.caches) return await CacheApiStore.open(key);
    return unavailable("this context has neither OPFS sync access handles nor the Cache API");
  } catch (e) {
    return unavailable(`the storage cannot be opened (${describeError(e)})`);
  }
}

/**
 * Every cache entry, from both backends.
 * @returns {Promise<{ key: string, storage: "opfs" | "cache-api", manifest: Manifest }[]>}
 */
async function entries() {
  /** @type {{ key: string, storage: "opfs" | "cache-api", manifest: Manifest }[]} */
  const out = [];
  if (hasOpfs()) {
    let folder = null;
    try {
      folder = await opfsFolder(false);
    } catch {
      folder = null;
    }
    if (folder) {
      // @ts-ignore: FileSystemDirectoryHandle is async-iterable in browsers; TS's DOM lib lacks it.
      for await (const [key, handle] of folder.entries()) {
        if (handle.kind !== "directory") continue;
        try {
          const file = await (await handle.getFileHandle("manifest.json")).getFile();
          out.push({ key, storage: "opfs", manifest: JSON.parse(await file.text()) });
        } catch {
          // No manifest yet, or in use by a load: not listed.
        }
      }
    }
  }
  if (globalThis.caches && (await caches.has(CACHE_NAME))) {
    const c = await caches.open(CACHE_NAME);
    for (const request of await c.keys()) {
      if (!request.url.startsWith(PREFIX) || !request.url.endsWith("/manifest")) continue;
      const key = request.url.slice(PREFIX.length, -"/manifest".length);
      try {
        const r = await c.match(request);
        if (r) out.push({ key, storage: "cache-api", manifest: await r.json() });
      } catch {
        // Unreadable: not listed.
      }
    }
  }
  return out;
}

/** Bytes of the chunks an entry holds. @param {Manifest} m */
function storedBytes(m) {
  return m.chunks.reduce((sum, hash, k) => sum + (hash ? Math.min(m.chunkBytes, m.bytes - k * m.chunkBytes) : 0), 0);
}

/** @param {{ storage: "opfs" | "cache-api", manifest: Manifest }} e @returns {CachedModel} */
function describe(e) {
  const m = e.manifest;
  return {
    url: m.parts.length === 1 ? m.parts[0].url : m.parts.map((p) => p.url),
    bytes: m.bytes,
    storedBytes: storedBytes(m),
    complete: !!m.complete,
    verified: !!m.verified,
    sha256: m.sha256,
    lastUsed: m.lastUsed,
    storage: e.storage,
  };
}

/** Removes the entry `key` from both backends; true when something was removed. @param {string} key */
async function removeKey(key) {
  let removed = false;
  if (hasOpfs()) {
    try {
      await (await opfsFolder(false)).removeEntry(key, { recursive: true });
      removed = true;
    } catch {
      // Not there.
    }
  }
  if (globalThis.caches && (await caches.has(CACHE_NAME))) {
    removed = (await removeCacheApiEntry(await caches.open(CACHE_NAME), key)) || removed;
  }
  return removed;
}

/** The models this origin has cached (see index.d.ts). */
export const cache = {
  /**
   * Whether the model is completely cached (and verified, when a hash was given to `load`).
   * @param {string | URL | Array<string | URL>} source
   */
  async has(source) {
    const key = await keyOf(sourceUrls(source));
    return (await entries()).some((e) => e.key === key && e.manifest.complete && (!e.manifest.expectedSha256 || e.manifest.verified));
  },
  /** Every cached model, complete or not. */
  async list() {
    return (await entries()).map(describe);
  },
  /**
   * Removes a model from the cache: true when it was there.
   * @param {string | URL | Array<string | URL>} source
   */
  async delete(source) {
    return removeKey(await keyOf(sourceUrls(source)));
  },
  /** Removes every cached model. */
  async clear() {
    if (hasOpfs()) {
      const root = await navigator.storage.getDirectory();
      await root.removeEntry(DIR, { recursive: true }).catch(() => {});
    }
    if (globalThis.caches) await caches.delete(CACHE_NAME);
  },
  /** Bytes the cached models take, and the origin's storage quota. */
  async usage() {
    const bytes = (await entries()).reduce((sum, e) => sum + storedBytes(e.manifest), 0);
    const estimate = typeof globalThis.navigator?.storage?.estimate === "function" ? await navigator.storage.estimate() : {};
    return { bytes, quota: estimate.quota ?? 0 };
  },
};
