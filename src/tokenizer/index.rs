//! The vocabulary texts and a text -> id hash index over them.
//!
//! An open-addressing table of ids (linear probing, load factor at most 1/2) that compares
//! against the owned texts, so building it allocates two vectors instead of one `String` copy
//! per token (a `HashMap<String, u32>` took most of the ~0.3 s build time of Gemma 3's
//! 262,144-token vocabulary).

const EMPTY: u32 = u32::MAX;

pub(crate) struct TextIndex {
    texts: Vec<String>,
    slots: Vec<u32>,
    mask: usize,
}

/// A fast, non-cryptographic string hash (word-at-a-time multiply-rotate, then a final mix so
/// that the low bits used for the slot depend on every input byte).
fn hash(s: &str) -> u64 {
    const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
    let bytes = s.as_bytes();
    let mut h = bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    // splitmix64 finaliser
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl TextIndex {
    /// Indexes `texts`; for duplicate texts the last id wins (as llama.cpp's `token_to_id`).
    /// `texts.len()` must be below `u32::MAX / 2`.
    pub(crate) fn new(texts: Vec<String>) -> TextIndex {
        let cap = (texts.len() * 2).next_power_of_two().max(8);
        let mask = cap - 1;
        let mut slots = vec![EMPTY; cap];
        for (id, t) in texts.iter().enumerate() {
            let mut i = hash(t) as usize & mask;
            loop {
                let s = slots[i];
                if s == EMPTY || texts[s as usize] == *t {
                    slots[i] = id as u32;
                    break;
                }
                i = (i + 1) & mask;
            }
        }
        TextIndex { texts, slots, mask }
    }

    /// The id of the token spelled exactly `s`.
    #[inline]
    pub(crate) fn get(&self, s: &str) -> Option<u32> {
        let mut i = hash(s) as usize & self.mask;
        loop {
            let id = self.slots[i];
            if id == EMPTY {
                return None;
            }
            if self.texts[id as usize] == s {
                return Some(id);
            }
            i = (i + 1) & self.mask;
        }
    }

    pub(crate) fn texts(&self) -> &[String] {
        &self.texts
    }

    pub(crate) fn len(&self) -> usize {
        self.texts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_and_duplicates() {
        let texts: Vec<String> = ["a", "b", "", "abcdefghij", "a", "日本"].iter().map(|s| s.to_string()).collect();
        let idx = TextIndex::new(texts);
        assert_eq!(idx.get("a"), Some(4)); // last duplicate wins
        assert_eq!(idx.get("b"), Some(1));
        assert_eq!(idx.get(""), Some(2));
        assert_eq!(idx.get("abcdefghij"), Some(3));
        assert_eq!(idx.get("abcdefghi"), None);
        assert_eq!(idx.get("日本"), Some(5));
        assert_eq!(idx.get("c"), None);
        let many: Vec<String> = (0..10_000).map(|i| format!("t{i}")).collect();
        let idx = TextIndex::new(many);
        for i in 0..10_000u32 {
            assert_eq!(idx.get(&format!("t{i}")), Some(i));
        }
        assert_eq!(idx.get("t10000"), None);
    }
}
