//! Incremental detokenization: turning a stream of token ids into text as it is generated,
//! when one UTF-8 character can be split across several byte-level tokens.

use std::borrow::Borrow;

use super::Tokenizer;

/// Assembles a byte stream into UTF-8 text, holding back an incomplete trailing character.
///
/// The concatenation of everything returned by [`push`](Utf8Assembler::push) and
/// [`finish`](Utf8Assembler::finish) equals `String::from_utf8_lossy` of all the bytes: each
/// maximal invalid sequence becomes one U+FFFD as soon as it is known to be invalid. At most 3
/// bytes are ever held back.
#[derive(Debug, Default, Clone)]
pub struct Utf8Assembler {
    pending: Vec<u8>,
}

impl Utf8Assembler {
    pub fn new() -> Utf8Assembler {
        Utf8Assembler::default()
    }

    /// Adds bytes; returns the text completed by them (possibly empty).
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // `rest[..valid]` is valid UTF-8 (that is what valid_up_to means).
                    out.push_str(std::str::from_utf8(&rest[..valid]).unwrap_or_default());
                    match e.error_len() {
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            rest = &rest[valid + bad..];
                        }
                        None => {
                            // Incomplete character at the end: wait for more bytes.
                            rest = &rest[valid..];
                            break;
                        }
                    }
                }
            }
        }
        let keep = rest.len();
        let start = self.pending.len() - keep;
        self.pending.drain(..start);
        out
    }

    /// Flushes held-back bytes (an incomplete character becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }

    /// Number of bytes currently held back.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

/// Streaming detokenizer over a [`Tokenizer`] held by reference or by smart pointer
/// (`&Tokenizer`, `Arc<Tokenizer>`, `Rc<Tokenizer>`, or an owned `Tokenizer`).
///
/// ```text
/// let mut dec = StreamDecoder::new(&tokenizer);
/// for id in generated { print!("{}", dec.push(id)); }
/// print!("{}", dec.finish());
/// ```
#[derive(Debug, Clone)]
pub struct StreamDecoder<T: Borrow<Tokenizer>> {
    tokenizer: T,
    utf8: Utf8Assembler,
}

impl<T: Borrow<Tokenizer>> StreamDecoder<T> {
    pub fn new(tokenizer: T) -> StreamDecoder<T> {
        StreamDecoder {
            tokenizer,
            utf8: Utf8Assembler::new(),
        }
    }

    /// Adds one token; returns the newly completed text (possibly empty). Unknown ids add
    /// nothing.
    pub fn push(&mut self, id: u32) -> String {
        let bytes = self.tokenizer.borrow().token_bytes(id);
        self.utf8.push(bytes)
    }

    /// Flushes held-back bytes of an incomplete character (as U+FFFD) and resets the decoder.
    pub fn finish(&mut self) -> String {
        self.utf8.finish()
    }

    /// Drops held-back bytes without emitting them.
    pub fn reset(&mut self) {
        self.utf8 = Utf8Assembler::new();
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        self.tokenizer.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(chunks: &[&[u8]]) -> String {
        let mut a = Utf8Assembler::new();
        let mut s = String::new();
        for c in chunks {
            s += &a.push(c);
        }
        s + &a.finish()
    }

    #[test]
    fn matches_lossy_on_every_split() {
        let samples: Vec<Vec<u8>> = vec![
            "héllo 🤖 日本".as_bytes().to_vec(),
            vec![0xF0, 0x9F, 0xA4, b'x', 0xFF, 0xC3, 0xA9, 0xE2, 0x82],
            vec![0xED, 0xA0, 0x80, b'a', 0x80, 0x80, 0xF4, 0x90, 0x80, 0x80],
            vec![0xC3],
        ];
        for bytes in &samples {
            let expect = String::from_utf8_lossy(bytes).into_owned();
            for i in 0..=bytes.len() {
                for j in i..=bytes.len() {
                    let got = feed(&[&bytes[..i], &bytes[i..j], &bytes[j..]]);
                    assert_eq!(got, expect, "split {i} {j} of {bytes:?}");
                }
            }
            let singles: Vec<&[u8]> = bytes.chunks(1).collect();
            assert_eq!(feed(&singles), expect);
        }
    }

    #[test]
    fn holds_back_incomplete_char() {
        let mut a = Utf8Assembler::new();
        assert_eq!(a.push(&[b'a', 0xF0, 0x9F]), "a");
        assert_eq!(a.pending_len(), 2);
        assert_eq!(a.push(&[0xA4]), "");
        assert_eq!(a.push(&[0x96, b'b']), "🤖b");
        assert_eq!(a.finish(), "");
    }
}
