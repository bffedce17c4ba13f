//! GPT-2 "byte-level" alphabet: every byte 0..=255 is represented in the vocabulary by one
//! printable Unicode character. Printable Latin-1 bytes map to themselves; the others
//! (control characters, space, DEL, NBSP, soft hyphen, ...) are shifted to U+0100 and up, in
//! byte order. E.g. b' ' -> 'Ġ' (U+0120), b'\n' -> 'Ċ' (U+010A).

/// Is `b` one of the bytes that the byte-level alphabet keeps as itself?
fn is_self_mapped(b: u8) -> bool {
    matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// Table byte -> char of the byte-level alphabet.
pub(crate) fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut shifted = 0u32;
    for b in 0..=255u8 {
        let cp = if is_self_mapped(b) {
            u32::from(b)
        } else {
            shifted += 1;
            255 + shifted
        };
        // All values are < 0x144, hence valid scalar values.
        table[usize::from(b)] = char::from_u32(cp).unwrap_or('\u{FFFD}');
    }
    table
}

/// Inverse of [`byte_to_char_table`]: the byte a byte-level character stands for.
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    let cp = u32::from(c);
    if cp < 256 {
        let b = cp as u8;
        return is_self_mapped(b).then_some(b);
    }
    // The shifted characters are U+0100 + n for the n-th non-self-mapped byte; those bytes
    // are, in order, 0x00..=0x20 (33 bytes), 0x7F..=0xA0 (34 bytes) and 0xAD.
    match cp - 256 {
        n @ 0..=32 => Some(n as u8),
        n @ 33..=66 => Some((0x7F + (n - 33)) as u8),
        67 => Some(0xAD),
        _ => None,
    }
}

/// Decodes a byte-level token text into the raw bytes it stands for. Characters outside the
/// byte-level alphabet (which a well-formed GPT-2 vocabulary never contains) are kept as
/// their own UTF-8 encoding instead of failing.
pub(crate) fn decode_token_text(text: &str, out: &mut Vec<u8>) {
    for c in text.chars() {
        match char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_all_bytes() {
        let t = byte_to_char_table();
        assert_eq!(t[usize::from(b' ')], 'Ġ');
        assert_eq!(t[usize::from(b'\n')], 'Ċ');
        assert_eq!(t[usize::from(b'a')], 'a');
        let mut distinct = std::collections::HashSet::new();
        for b in 0..=255u8 {
            let c = t[usize::from(b)];
            assert!(distinct.insert(c));
            assert_eq!(char_to_byte(c), Some(b));
        }
        assert_eq!(char_to_byte('€'), None);
    }
}
