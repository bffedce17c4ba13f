//! Deterministic test data: a tiny RNG and valid random quantized blocks.
//!
//! Used by unit tests here and by GPU kernel tests elsewhere, so it is public
//! and has no dependencies. Not cryptographic, not for production use.

use super::GgmlType;
use half::{bf16, f16};

/// SplitMix64: small, fast, deterministic across platforms.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator whose output depends only on `seed`.
    pub fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// Next 64 uniformly distributed bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Next 32 uniformly distributed bits.
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// Uniform in `[0, 1)` (24 bits of precision).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// Uniform integer in `[0, n)`; returns 0 when `n == 0`.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            ((self.next_u64() as u128 * n as u128) >> 64) as u64
        }
    }

    /// Uniform in `[lo, hi)`.
    pub fn range_f32(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.next_f32()
    }

    /// Standard normal sample (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = 1.0 - self.next_f32(); // (0, 1]
        let u2 = self.next_f32();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }

    /// Fills `buf` with random bytes.
    pub fn fill_bytes(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let r = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }

    /// A scale with random sign and magnitude log-uniform in `[0.001, 0.1]`.
    pub fn scale(&mut self) -> f32 {
        let mag = 0.001 * 100f32.powf(self.next_f32());
        if self.next_u64() & 1 == 0 {
            mag
        } else {
            -mag
        }
    }
}

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
