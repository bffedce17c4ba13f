//! Deterministic test data: a tiny RNG and valid random quantized blocks.
//!
//! Used by unit tests here and by GPU kernel tests elsewhere, so it is public (hidden from the
//! docs, and not built into the wasm). Not cryptographic, not for production use.

use super::GgmlType;
use half::{bf16, f16};

pub use crate::rng::Rng;

fn put_f16(b: &mut [u8], at: usize, v: f32) {
    b[at..at + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
}

/// `n_blocks` random blocks of `ty`, each valid: every f16/f32/E8M0/UE4M3
/// scale is finite with magnitude in about `[0.001, 0.1]` (mins likewise),
/// quants are uniformly random, and derived fields (Q8_1 `s`, Q8_K `bsums`)
/// are consistent. Plain float types get `N(0, 0.5²)` values; integer types
/// get random bytes. Deterministic in `(ty, n_blocks, seed)`.
pub fn random_blocks(ty: GgmlType, n_blocks: usize, seed: u64) -> Vec<u8> {
    use GgmlType::*;
    let mut rng = Rng::new(seed ^ ((ty.id() as u64) << 56));
    let bb = ty.block_bytes() as usize;
    let mut data = vec![0u8; bb * n_blocks];
    rng.fill_bytes(&mut data);
    for b in data.chunks_exact_mut(bb) {
        match ty {
            F32 => b.copy_from_slice(&(rng.normal() * 0.5).to_le_bytes()),
            F64 => b.copy_from_slice(&(rng.normal() as f64 * 0.5).to_le_bytes()),
            F16 => b.copy_from_slice(&f16::from_f32(rng.normal() * 0.5).to_le_bytes()),
            BF16 => b.copy_from_slice(&bf16::from_f32(rng.normal() * 0.5).to_le_bytes()),
            I8 | I16 | I32 | I64 => {}
            Q4_0 | Q5_0 | Q8_0 | IQ4_NL | IQ4_XS | IQ2_XXS | IQ2_XS | IQ3_XXS | IQ1_S | IQ3_S
            | IQ2_S | Q1_0 | Q2_0 => put_f16(b, 0, rng.scale()),
            Q4_1 | Q5_1 | Q4_K | Q5_K => {
                put_f16(b, 0, rng.scale());
                put_f16(b, 2, rng.scale());
            }
            Q8_1 => {
                let d = f16::from_f32(rng.scale());
                let sum: i32 = b[4..36].iter().map(|&q| q as i8 as i32).sum();
                b[0..2].copy_from_slice(&d.to_le_bytes());
                put_f16(b, 2, d.to_f32() * sum as f32);
            }
            Q2_K => {
                put_f16(b, 80, rng.scale());
                put_f16(b, 82, rng.scale());
            }
            Q3_K => put_f16(b, 108, rng.scale()),
            Q6_K => put_f16(b, 208, rng.scale()),
            TQ1_0 => put_f16(b, 52, rng.scale()),
            TQ2_0 => put_f16(b, 64, rng.scale()),
            Q8_K => {
                b[0..4].copy_from_slice(&rng.scale().to_le_bytes());
                for g in 0..16 {
                    let s: i32 = b[4 + 16 * g..20 + 16 * g].iter().map(|&q| q as i8 as i32).sum();
                    b[260 + 2 * g..262 + 2 * g].copy_from_slice(&(s as i16).to_le_bytes());
                }
            }
            IQ1_M => {
                // The f16 block scale is spread over the top nibbles of the
                // four u16 `scales` words (bytes 48..56).
                let d = f16::from_f32(rng.scale().abs()).to_bits();
                for k in 0..4 {
                    let at = 48 + 2 * k;
                    let w = u16::from_le_bytes([b[at], b[at + 1]]);
                    let w = (w & 0x0FFF) | (((d >> (4 * k)) & 0xF) << 12);
                    b[at..at + 2].copy_from_slice(&w.to_le_bytes());
                }
            }
            // E8M0 exponent: 2^(e-127); keep it well inside the finite range.
            MXFP4 => b[0] = 115 + rng.below(11) as u8,
            // UE4M3 (bias 7), sign bit clear, exponent 3..=8 so never NaN (0x7F).
            NVFP4 => {
                for s in &mut b[0..4] {
                    *s = ((3 + rng.below(6) as u8) << 3) | (rng.below(8) as u8);
                }
            }
        }
    }
    data
}
