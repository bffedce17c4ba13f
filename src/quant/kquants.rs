//! Block readers for the 256-element "K" quants and the IQ4 non-linear types.
//! Layouts follow ggml's `block_*` structs (QK_K = 256); arithmetic follows
//! ggml's `dequantize_row_*` in the same operation order.

use super::dequant::f16_at;

/// ggml's `kvalues_iq4nl`: the 16 non-linear levels of IQ4_NL / IQ4_XS.
pub const IQ4_NL_VALUES: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/// Unpacks the 6-bit (scale, min) pair `j` (0..8) of Q4_K / Q5_K's 12 scale bytes.
/// Pairs 0..4: low 6 bits of `s[j]` / `s[j+4]`; pairs 4..8: a nibble of `s[j+4]`
/// plus the top 2 bits of `s[j-4]` / `s[j]`.
#[inline]
pub fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        ((s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
    }
}

/// Q2_K (84 bytes): `scales[16]` (low nibble scale, high nibble min), `qs[64]`
/// (2-bit), f16 `d` @80, f16 `dmin` @82. value = `d*sc*q - dmin*m`.
pub fn block_q2_k(b: &[u8], y: &mut [f32]) {
    let scales = &b[0..16];
    let d = f16_at(b, 80);
    let min = f16_at(b, 82);
    let mut out = 0;
    let mut is = 0;
    for half in 0..2 {
        let q = &b[16 + 32 * half..16 + 32 * half + 32];
        for shift in [0u32, 2, 4, 6] {
            for part in 0..2 {
                let sc = scales[is];
                is += 1;
                let dl = d * (sc & 0x0F) as f32;
                let ml = min * (sc >> 4) as f32;
                for &qb in &q[16 * part..16 * part + 16] {
                    y[out] = dl * ((qb >> shift) & 3) as f32 - ml;
                    out += 1;
                }
            }
        }
    }
}

/// Q3_K (110 bytes): `hmask[32]`, `qs[64]` (low 2 bits), `scales[12]` (16 × 6-bit,
/// biased by 32), f16 `d` @108. value = `d*(sc-32)*(q2 - (hbit ? 0 : 4))`.
pub fn block_q3_k(b: &[u8], y: &mut [f32]) {
    let hm = &b[0..32];
    let d_all = f16_at(b, 108);
    let sc_raw = &b[96..108];
    let mut scales = [0i8; 16];
    for (j, s) in scales.iter_mut().enumerate() {
        let low = if j < 8 { sc_raw[j] & 0x0F } else { sc_raw[j - 8] >> 4 };
        let high = (sc_raw[8 + j % 4] >> (2 * (j / 4))) & 3;
        *s = (low | (high << 4)) as i8;
    }
    let mut out = 0;
    let mut is = 0;
    let mut m: u8 = 1;
    for half in 0..2 {
        let q = &b[32 + 32 * half..32 + 32 * half + 32];
        for shift in [0u32, 2, 4, 6] {
            for part in 0..2 {
                let dl = d_all * (scales[is] as i32 - 32) as f32;
                is += 1;
                for l in 16 * part..16 * part + 16 {
                    let low = ((q[l] >> shift) & 3) as i32;
                    let sub = if hm[l] & m != 0 { 0 } else { 4 };
                    y[out] = dl * (low - sub) as f32;
                    out += 1;
                }
            }
            m = m.wrapping_shl(1);
        }
    }
}

/// Q4_K (144 bytes): f16 `d`, f16 `dmin`, `scales[12]` (8 × 6-bit scale/min,
/// see [`scale_min_k4`]), `qs[128]`. Each 64-element chunk uses 32 bytes: low
/// nibbles are elements 0..32, high nibbles 32..64. value = `d*sc*q - dmin*m`.
pub fn block_q4_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let min = f16_at(b, 2);
    let scales = &b[4..16];
    for chunk in 0..4 {
        let q = &b[16 + 32 * chunk..16 + 32 * chunk + 32];
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
        let y = &mut y[64 * chunk..64 * chunk + 64];
        for l in 0..32 {
            y[l] = d1 * (q[l] & 0x0F) as f32 - m1;
            y[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
        }
    }
}

/// Q5_K (176 bytes): as Q4_K plus `qh[32]` @16 before `qs[128]` @48; chunk `c`
/// takes its 5th bits from bits `2c` (low nibbles) and `2c+1` (high nibbles) of `qh`.
pub fn block_q5_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let min = f16_at(b, 2);
    let scales = &b[4..16];
    let qh = &b[16..48];
    for chunk in 0..4 {
        let ql = &b[48 + 32 * chunk..48 + 32 * chunk + 32];
        let u1 = 1u8 << (2 * chunk);
        let u2 = 2u8 << (2 * chunk);
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
        let y = &mut y[64 * chunk..64 * chunk + 64];
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            y[l] = d1 * ((ql[l] & 0x0F) + h1) as f32 - m1;
            y[l + 32] = d2 * ((ql[l] >> 4) + h2) as f32 - m2;
        }
    }
}

/// Q6_K (210 bytes): `ql[128]` (low 4 bits), `qh[64]` (high 2 bits), `scales[16]`
/// (i8), f16 `d` @208. value = `d*sc*(q6 - 32)`. Per 128-element half `n`:
/// `ql[64n..]`, `qh[32n..]`, `scales[8n..]`; element `l + 32k` (k=0..4) takes
/// nibble `k/2` of `ql[l + 32*(k%2)]` and bits `2k..2k+2` of `qh[l]`.
pub fn block_q6_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 208);
    for n in 0..2 {
        let ql = &b[64 * n..64 * n + 64];
        let qh = &b[128 + 32 * n..128 + 32 * n + 32];
        let sc = &b[192 + 8 * n..192 + 8 * n + 8];
        let y = &mut y[128 * n..128 * n + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
            y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
            y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
            y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
        }
    }
}

/// Q8_K (292 bytes): f32 `d`, 256 × i8, then 16 × i16 group sums (ignored). value = `d*q`.
pub fn block_q8_k(b: &[u8], y: &mut [f32]) {
    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    for (o, &q) in y.iter_mut().zip(&b[4..260]) {
        *o = d * (q as i8) as f32;
    }
}

/// IQ4_NL (18 bytes / 32): f16 `d`, `qs[16]` laid out as Q4_0;
/// value = `d * IQ4_NL_VALUES[nibble]`.
pub fn block_iq4_nl(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for j in 0..16 {
        let q = b[2 + j];
        y[j] = d * IQ4_NL_VALUES[(q & 0x0F) as usize] as f32;
        y[j + 16] = d * IQ4_NL_VALUES[(q >> 4) as usize] as f32;
    }
}

/// IQ4_XS (136 bytes / 256): f16 `d`, u16 `scales_h`, `scales_l[4]`, `qs[128]`.
/// Sub-block `ib` (32 elements, 16 bytes laid out as IQ4_NL) has 6-bit scale
/// `ls` = nibble `ib%2` of `scales_l[ib/2]` | bits `2ib..2ib+2` of `scales_h` << 4;
/// value = `d*(ls-32) * IQ4_NL_VALUES[nibble]`.
pub fn block_iq4_xs(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let scales_h = u16::from_le_bytes([b[2], b[3]]);
    let scales_l = &b[4..8];
    for ib in 0..8 {
        let lo = (scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0F;
        let hi = ((scales_h >> (2 * ib)) & 3) as u8;
        let ls = (lo | (hi << 4)) as i32;
        let dl = d * (ls - 32) as f32;
        let qs = &b[8 + 16 * ib..8 + 16 * ib + 16];
        let y = &mut y[32 * ib..32 * ib + 32];
        for j in 0..16 {
            y[j] = dl * IQ4_NL_VALUES[(qs[j] & 0x0F) as usize] as f32;
            y[j + 16] = dl * IQ4_NL_VALUES[(qs[j] >> 4) as usize] as f32;
        }
    }
}
