// Typed errors of the ferrolm API. Every error the API throws is a FerrolmError; the subclass
// says what went wrong and the message says what to do about it.

export class FerrolmError extends Error {}
/** The browser has no WebGPU, or no adapter/device could be opened. */
export class WebGPUUnavailableError extends FerrolmError {}
/** The file is not a valid GGUF model (wrong magic, corrupt or truncated). */
export class ModelFormatError extends FerrolmError {}
/** A valid GGUF that ferrolm cannot run (architecture, tensor type). */
export class UnsupportedModelError extends FerrolmError {}
/** The GPU's limits are too small for the model. */
export class DeviceLimitError extends FerrolmError {}
/** Fetching or reading the model failed (HTTP error, network error, truncated transfer). */
export class NetworkError extends FerrolmError {}
/** The caller's AbortSignal fired. */
export class AbortError extends FerrolmError {}
/** A bad argument: empty prompt, prompt longer than the context, bad option, engine disposed. */
export class InvalidRequestError extends FerrolmError {}
/** The GPU device failed while running (lost device, out of memory). */
export class GPUDeviceError extends FerrolmError {}
/** The GPU device was lost (a driver reset, the GPU process restarting, `device.destroy()`):
 * the engine is gone, every pending and later call rejects with this. `reason` is the
 * browser's ("destroyed" or "unknown"). A new `load()` opens a new device. */
export class DeviceLostError extends GPUDeviceError {
  /** @param {string} message @param {string} [reason] */
  constructor(message, reason = "unknown") {
    super(message);
    /** The browser's `GPUDeviceLostInfo.reason`. */
    this.reason = reason;
  }
}
/** The wasm instance trapped (a Rust panic or a bug): it is poisoned, every pending and later
 * call rejects with this. In the default worker mode a new `load()` starts a fresh worker; on
 * the page's thread (`worker: false`) the page must be reloaded. */
export class EngineCrashedError extends FerrolmError {}
/** The model's bytes are not the file that was asked for (sha256 mismatch): it was not cached
 * and never ran. */
export class IntegrityError extends FerrolmError {}
/** A draft model (`load(url, { draft })`) whose vocabulary is not the model's. */
export class VocabularyMismatchError extends FerrolmError {}

const CLASSES = {
  FerrolmError, WebGPUUnavailableError, ModelFormatError, UnsupportedModelError,
  DeviceLimitError, NetworkError, AbortError, InvalidRequestError, GPUDeviceError, IntegrityError,
  DeviceLostError, EngineCrashedError, VocabularyMismatchError,
};

// Names survive minification: set them explicitly rather than from the class name.
for (const [name, cls] of Object.entries(CLASSES)) {
  Object.defineProperty(cls.prototype, "name", { value: name, writable: true, configurable: true });
}

/** Turns anything thrown (a wasm error carrying a typed name, a DOMException, a message sent
 * from the worker) into a FerrolmError subclass.
 * @param {any} e
 * @returns {FerrolmError} */
export function toTypedError(e) {
  if (e instanceof FerrolmError) return e;
  const name = e && typeof e === "object" ? e.name : undefined;
  const message = e && typeof e === "object" && "message" in e ? String(e.message) : String(e);
  const Cls = (name && Object.prototype.hasOwnProperty.call(CLASSES, name)) ? CLASSES[/** @type {keyof typeof CLASSES} */ (name)] : FerrolmError;
  if (Cls === FerrolmError && name === "AbortError") return new AbortError(message);
  if (isWasmTrap(e)) return new EngineCrashedError(`the engine's wasm instance crashed (${message})`);
  const err = Cls === DeviceLostError ? new DeviceLostError(message, String(e.reason || "unknown")) : new Cls(message);
  if (Cls === FerrolmError && name && name !== "Error") err.message = `${name}: ${message}`;
  return err;
}

/** A trap of the wasm instance (`unreachable` after a Rust panic, out-of-bounds access, stack
 * overflow), as thrown or as posted from the worker.
 * @param {any} e */
export function isWasmTrap(e) {
  const RuntimeError = globalThis.WebAssembly && globalThis.WebAssembly.RuntimeError;
  return (RuntimeError && e instanceof RuntimeError) || (e && typeof e === "object" && e.name === "RuntimeError");
}

/** The one error for a browser without WebGPU (`navigator.gpu` missing). */
export function webgpuMissingError() {
  return new WebGPUUnavailableError(
    "this browser exposes no WebGPU (navigator.gpu is missing): use a recent Chrome or Edge, " +
      "or Firefox/Safari with WebGPU enabled, over https or on localhost");
}

/** A structured-clone-safe form of an error, for posting from the worker.
 * @param {unknown} e */
export function serializeError(e) {
  const t = toTypedError(e);
  return t instanceof DeviceLostError ? { name: t.name, message: t.message, reason: t.reason } : { name: t.name, message: t.message };
}
