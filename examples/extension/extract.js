// Reading the page: Mozilla's Readability (vendor/Readability.js, injected first as a classic
// script into the extension's isolated world) finds the main content; without an article, the
// page's visible text is used. `extractPage` is serialised by `chrome.scripting.executeScript`
// and runs in the page, so it must not use anything from this module's scope.

/** Blocks whose text makes one paragraph each. */
const BLOCKS = "p, li, h1, h2, h3, h4, h5, h6, pre, blockquote, dt, dd, figcaption, td, th";

/** Runs in the page: `{ title, url, text, method }`, the text as paragraphs separated by blank
 * lines ("readability" when the library found an article, else "page text"). */
export function extractPage(blocks = BLOCKS) {
  const clean = (s) => s.replace(/[ \t\u00a0]+/g, " ").replace(/ *\n */g, "\n").trim();
  const paragraphsOf = (root) => {
    const found = Array.from(root.querySelectorAll(blocks))
      // Leaf blocks only: a <li> holding a <p> counts once.
      .filter((el) => !el.querySelector(blocks))
      .map((el) => clean(el.textContent || ""))
      .filter(Boolean);
    return found.length ? found.join("\n\n") : clean(root.textContent || "");
  };
  let title = document.title || "";
  let text = "";
  let method = "page text";
  try {
    // @ts-ignore: defined by vendor/Readability.js in this world
    const article = typeof Readability === "function" ? new Readability(document.cloneNode(true)).parse() : null;
    if (article && article.content) {
      const doc = new DOMParser().parseFromString(article.content, "text/html");
      text = paragraphsOf(doc.body);
      if (text) {
        method = "readability";
        title = article.title || title;
      }
    }
  } catch {
    // Readability failed on this page: the page's text below.
  }
  if (!text && document.body) {
    text = clean(document.body.innerText || "").replace(/\n{2,}/g, "\n\n");
  }
  return { title: clean(title), url: location.href, text, method };
}

/** Reads tab `tabId`: throws with a sentence a person understands when the page is off limits.
 * @param {number} tabId */
export async function readTab(tabId) {
  try {
    await chrome.scripting.executeScript({ target: { tabId }, files: ["vendor/Readability.js"] });
    const [result] = await chrome.scripting.executeScript({ target: { tabId }, func: extractPage, args: [BLOCKS] });
    return /** @type {{ title: string, url: string, text: string, method: string }} */ (result.result);
  } catch (e) {
    throw new Error(`cannot read this page (${e instanceof Error ? e.message : e}); browser pages and the extension store are off limits`);
  }
}
