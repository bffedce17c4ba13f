// Model sources: URLs are resolved against the page here (a worker would resolve them against
// itself), so that a load and the `cache` API name a model by the same absolute URLs.

import { InvalidRequestError } from "./errors.js";

/**
 * The absolute URL (or URLs) of a model source; a Blob is returned as it is.
 * @param {string | URL | Array<string | URL> | Blob} source
 * @returns {string | string[] | Blob}
 */
export function normalizeSource(source) {
  const base = globalThis.location ? globalThis.location.href : undefined;
  /** @param {unknown} u */
  const resolve = (u) => {
    if (typeof u !== "string" && !(u instanceof URL)) {
      throw new InvalidRequestError("every element of a model URL array must be a string");
    }
    try {
      return new URL(String(u), base).href;
    } catch {
      throw new InvalidRequestError(`'${u}' is not a valid URL`);
    }
  };
  if (typeof source === "string" || source instanceof URL) return resolve(source);
  if (Array.isArray(source)) {
    if (source.length === 0) throw new InvalidRequestError("the model URL array is empty");
    return source.map(resolve);
  }
  if (typeof Blob !== "undefined" && source instanceof Blob) return source;
  throw new InvalidRequestError("the model source must be a URL string, an array of URL strings, a File or a Blob");
}

/**
 * The URL list a model is cached under.
 * @param {string | URL | Array<string | URL>} source
 * @returns {string[]}
 */
export function sourceUrls(source) {
  const normalized = normalizeSource(source);
  if (typeof normalized === "string") return [normalized];
  if (Array.isArray(normalized)) return normalized;
  throw new InvalidRequestError("a File or Blob is never cached: name the model by its URL");
}
