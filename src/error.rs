//! The crate-wide error: every failure the engine reports, typed, with a one-line message.

use crate::gguf::GgufError;
use crate::gpu::GpuError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file is not a valid GGUF (corrupt, truncated, hostile).
    #[error("invalid GGUF: {0}")]
    Format(#[from] GgufError),
    /// A valid GGUF that this engine cannot run (architecture, tensor type, shape).
    #[error("unsupported model: {0}")]
    Unsupported(String),
    /// A request the model cannot serve (prompt longer than the context, bad token id, bad option).
    #[error("{0}")]
    BadRequest(String),
    /// Reading the model bytes failed (missing file, I/O error, network error, abort).
    #[error("{0}")]
    Io(String),
    /// The GPU said no.
    #[error("{0}")]
    Gpu(#[from] GpuError),
    /// The model's bytes are not the file that was asked for (a sha256 mismatch).
    #[error("{0}")]
    Integrity(String),
    /// A draft model for speculative decoding whose vocabulary is not the target's.
    #[error("the draft model's vocabulary does not match the target's: {0}")]
    VocabularyMismatch(String),
}

impl Error {
    /// True when the caller's input is at fault (CLI exit status 2) rather than the environment.
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::Format(_) | Error::Unsupported(_) | Error::BadRequest(_) | Error::VocabularyMismatch(_) => true,
            Error::Gpu(GpuError::UnsupportedType { .. } | GpuError::Shape(_) | GpuError::Limit(_)) => true,
            Error::Io(_) | Error::Gpu(_) | Error::Integrity(_) => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Longest quoted value, in escaped characters, before it is cut.
const QUOTE_CHARS: usize = 64;

/// Quotes text that came from a file (or a command line) for a one-line message: in single
/// quotes, escaped by [`printable`], and cut to a short prefix plus the value's length when
/// long: `'abc…' (70000 bytes)`.
pub fn quote(text: &str) -> String {
    match escape_prefix(text, QUOTE_CHARS) {
        (shown, false) => format!("'{shown}'"),
        (shown, true) => format!("'{shown}…' ({} bytes)", text.len()),
    }
}

/// `text` made safe for a one-line terminal message: control characters (newline, CR, ESC, …)
/// and invisible formatting characters (bidirectional overrides, zero-width marks) become Rust's
/// `escape_debug` escapes (`\n`, `\u{1b}`), so a file can never move the cursor or rewrite the
/// user's terminal; cut after `max_chars` characters with its length.
pub fn printable(text: &str, max_chars: usize) -> String {
    match escape_prefix(text, max_chars) {
        (shown, false) => shown,
        (shown, true) => format!("{shown}… ({} bytes)", text.len()),
    }
}

/// The escaped text, at most `max_chars` characters of it, and whether it was cut.
fn escape_prefix(text: &str, max_chars: usize) -> (String, bool) {
    let mut out = String::with_capacity(max_chars.min(text.len()) + 8);
    let mut shown = 0;
    for c in text.chars() {
        let invisible = c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}');
        for e in c.escape_debug().filter(|_| invisible).chain(Some(c).filter(|_| !invisible)) {
            if shown == max_chars {
                return (out, true);
            }
            out.push(e);
            shown += 1;
        }
    }
    (out, false)
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quote_escapes_and_cuts() {
        assert_eq!(quote("llama"), "'llama'");
        assert_eq!(quote("a\nb\r\u{1b}[2J"), "'a\\nb\\r\\u{1b}[2J'");
        let long = "x".repeat(70_000);
        assert_eq!(quote(&long), format!("'{}…' (70000 bytes)", "x".repeat(64)));
        assert!(quote(&"\n".repeat(1000)).len() < 100);
        assert_eq!(quote("it's \u{202e}"), "'it's \\u{202e}'");
        assert_eq!(super::printable("a\nb", 2), "a\\… (3 bytes)");
    }
}
