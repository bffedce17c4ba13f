// The extension's settings (chrome.storage.local), shared by the popup, the options page and
// the offscreen document. DEFAULT_MODEL_URL comes from config.js, written by
// scripts/build-extension.sh (--model-url).
import { DEFAULT_MODEL_URL } from "./config.js";

/** Summary lengths offered on the options page: the reply's token budget. */
export const LENGTHS = { short: 64, medium: 128, long: 256 };

/** @returns {Promise<{ modelUrl: string, length: keyof typeof LENGTHS }>} */
export async function readSettings() {
  const stored = await chrome.storage.local.get(["modelUrl", "length"]);
  return {
    modelUrl: stored.modelUrl || DEFAULT_MODEL_URL,
    length: stored.length in LENGTHS ? stored.length : "medium",
  };
}

/** @param {{ modelUrl?: string, length?: string }} settings */
export function saveSettings(settings) {
  return chrome.storage.local.set(settings);
}

export { DEFAULT_MODEL_URL };
