//! The ggml tensor type ids as stored in GGUF files, with their block geometry.

/// Every tensor type id that ggml (and therefore GGUF) knows about.
///
/// Ids are the `ggml_type` enum values; gaps (4, 5, 31..=33, 36..=38) are
/// types that were removed from ggml and can no longer appear in GGUF files.
/// Knowing a type does not mean it can be dequantized: see
/// [`GgmlType::has_cpu_dequant`].
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum GgmlType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ2_XXS = 16,
    IQ2_XS = 17,
    IQ3_XXS = 18,
    IQ1_S = 19,
    IQ4_NL = 20,
    IQ3_S = 21,
    IQ2_S = 22,
    IQ4_XS = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    IQ1_M = 29,
    BF16 = 30,
    TQ1_0 = 34,
    TQ2_0 = 35,
    /// 32 elements: one E8M0 scale byte + 16 bytes of packed E2M1 nibbles.
    MXFP4 = 39,
    /// 64 elements: four UE4M3 scale bytes (one per 16) + 32 bytes of E2M1 nibbles.
    NVFP4 = 40,
    /// 128 elements: f16 scale + 16 bytes of sign bits.
    Q1_0 = 41,
    /// 64 elements: f16 scale + 16 bytes of 2-bit codes.
    Q2_0 = 42,
}

/// (type, name, elements per block, bytes per block)
const TABLE: &[(GgmlType, &str, u64, u64)] = &[
    (GgmlType::F32, "F32", 1, 4),
    (GgmlType::F16, "F16", 1, 2),
    (GgmlType::Q4_0, "Q4_0", 32, 18),
    (GgmlType::Q4_1, "Q4_1", 32, 20),
    (GgmlType::Q5_0, "Q5_0", 32, 22),
    (GgmlType::Q5_1, "Q5_1", 32, 24),
    (GgmlType::Q8_0, "Q8_0", 32, 34),
    (GgmlType::Q8_1, "Q8_1", 32, 36),
    (GgmlType::Q2_K, "Q2_K", 256, 84),
    (GgmlType::Q3_K, "Q3_K", 256, 110),
    (GgmlType::Q4_K, "Q4_K", 256, 144),
    (GgmlType::Q5_K, "Q5_K", 256, 176),
    (GgmlType::Q6_K, "Q6_K", 256, 210),
    (GgmlType::Q8_K, "Q8_K", 256, 292),
    (GgmlType::IQ2_XXS, "IQ2_XXS", 256, 66),
    (GgmlType::IQ2_XS, "IQ2_XS", 256, 74),
    (GgmlType::IQ3_XXS, "IQ3_XXS", 256, 98),
    (GgmlType::IQ1_S, "IQ1_S", 256, 50),
    (GgmlType::IQ4_NL, "IQ4_NL", 32, 18),
    (GgmlType::IQ3_S, "IQ3_S", 256, 110),
    (GgmlType::IQ2_S, "IQ2_S", 256, 82),
    (GgmlType::IQ4_XS, "IQ4_XS", 256, 136),
    (GgmlType::I8, "I8", 1, 1),
    (GgmlType::I16, "I16", 1, 2),
    (GgmlType::I32, "I32", 1, 4),
    (GgmlType::I64, "I64", 1, 8),
    (GgmlType::F64, "F64", 1, 8),
    (GgmlType::IQ1_M, "IQ1_M", 256, 56),
    (GgmlType::BF16, "BF16", 1, 2),
    (GgmlType::TQ1_0, "TQ1_0", 256, 54),
    (GgmlType::TQ2_0, "TQ2_0", 256, 66),
    (GgmlType::MXFP4, "MXFP4", 32, 17),
    (GgmlType::NVFP4, "NVFP4", 64, 36),
    (GgmlType::Q1_0, "Q1_0", 128, 18),
    (GgmlType::Q2_0, "Q2_0", 64, 18),
];

impl GgmlType {
    /// All known types, in id order.
    pub fn all() -> impl Iterator<Item = GgmlType> {
        TABLE.iter().map(|e| e.0)
    }

    /// The type for a ggml type id, or `None` for ids ggml does not define.
    pub fn from_id(id: u32) -> Option<Self> {
        TABLE.iter().find(|e| e.0 as u32 == id).map(|e| e.0)
    }

    /// The ggml type id (as stored in GGUF tensor infos).
    pub fn id(self) -> u32 {
        self as u32
    }

    fn entry(self) -> &'static (GgmlType, &'static str, u64, u64) {
        // Every variant has exactly one table row (checked by a unit test);
        // fall back to the first row rather than panic.
        TABLE.iter().find(|e| e.0 == self).unwrap_or(&TABLE[0])
    }

    /// Upper-case name as ggml prints it, e.g. `"Q4_K"`, `"F32"`, `"BF16"`.
    pub fn name(self) -> &'static str {
        self.entry().1
    }

    /// Elements per block (1 for plain scalar types).
    pub fn block_elems(self) -> u64 {
        self.entry().2
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> u64 {
        self.entry().3
    }

    /// Bytes taken by `n_elems` contiguous elements; `None` if `n_elems` is not
    /// a multiple of [`block_elems`](Self::block_elems) or the size overflows.
    pub fn row_bytes(self, n_elems: u64) -> Option<u64> {
        let be = self.block_elems();
        if !n_elems.is_multiple_of(be) {
            return None;
        }
        (n_elems / be).checked_mul(self.block_bytes())
    }

    /// Whether [`crate::quant::dequantize`] supports this type.
    pub fn has_cpu_dequant(self) -> bool {
        super::dequant::block_dequantizer(self).is_some()
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        for (i, e) in TABLE.iter().enumerate() {
            assert_eq!(GgmlType::from_id(e.0 as u32), Some(e.0));
            assert_eq!(e.0.name(), e.1);
            assert!(TABLE[..i].iter().all(|p| p.0 != e.0 && p.1 != e.1));
        }
        for id in [4, 5, 31, 32, 33, 36, 37, 38, 43, 255, u32::MAX] {
            assert_eq!(GgmlType::from_id(id), None);
        }
        assert_eq!(GgmlType::Q4_K.row_bytes(512), Some(288));
        assert_eq!(GgmlType::Q4_K.row_bytes(100), None);
        assert_eq!(GgmlType::F32.row_bytes(u64::MAX), None);
    }
}
