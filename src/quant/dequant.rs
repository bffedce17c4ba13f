//! CPU reference dequantization: one block reader per supported type.
//!
//! Each reader takes exactly one block (`block_bytes()` bytes) and writes
//! exactly `block_elems()` floats, reproducing ggml's `dequantize_row_*`
//! arithmetic in the same operation order (bit-identical to ggml's C reference
//! unless the C compiler contracts multiply-adds into FMAs).
//! Adding a type = writing one `fn(&[u8], &mut [f32])` and registering it in
//! [`block_dequantizer`].

use super::{kquants, GgmlType};
use half::{bf16, f16};

/// Errors from [`dequantize`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantError {
    /// The type is known but has no CPU block reader.
    #[error("dequantizing {ty} on the CPU is not supported")]
    Unsupported { ty: GgmlType },
    /// `data.len()` is not a whole number of blocks.
    #[error("{ty} data of {data_len} bytes is not a whole number of {block_bytes}-byte blocks")]
    NotWholeBlocks { ty: GgmlType, data_len: usize, block_bytes: u64 },
    /// `out.len()` differs from the element count implied by `data.len()`.
    #[error("{ty} data of {data_len} bytes holds {expected} elements but the output has room for {got}")]
    LengthMismatch { ty: GgmlType, data_len: usize, expected: usize, got: usize },
}

/// Reads one block of `block_bytes()` bytes into `block_elems()` floats.
pub type BlockFn = fn(&[u8], &mut [f32]);

/// The per-type block reader table; `None` for types without CPU support.
pub fn block_dequantizer(ty: GgmlType) -> Option<BlockFn> {
    use GgmlType::*;
    Some(match ty {
        F32 => block_f32,
        F16 => block_f16,
        BF16 => block_bf16,
        Q4_0 => block_q4_0,
        Q4_1 => block_q4_1,
        Q5_0 => block_q5_0,
        Q5_1 => block_q5_1,
        Q8_0 => block_q8_0,
        Q2_K => kquants::block_q2_k,
        Q3_K => kquants::block_q3_k,
        Q4_K => kquants::block_q4_k,
        Q5_K => kquants::block_q5_k,
        Q6_K => kquants::block_q6_k,
        Q8_K => kquants::block_q8_k,
        IQ4_NL => kquants::block_iq4_nl,
        IQ4_XS => kquants::block_iq4_xs,
        _ => return None,
    })
}

/// Dequantizes whole blocks of `ty` from `data` into `out`.
///
/// `data.len()` must be a multiple of `ty.block_bytes()` and `out.len()` must
/// equal `data.len() / block_bytes * block_elems`.
pub fn dequantize(ty: GgmlType, data: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    let f = block_dequantizer(ty).ok_or(QuantError::Unsupported { ty })?;
    let bb = ty.block_bytes() as usize;
    let be = ty.block_elems() as usize;
    if !data.len().is_multiple_of(bb) {
        return Err(QuantError::NotWholeBlocks { ty, data_len: data.len(), block_bytes: bb as u64 });
    }
    let expected = (data.len() / bb).saturating_mul(be);
    if out.len() != expected {
        return Err(QuantError::LengthMismatch { ty, data_len: data.len(), expected, got: out.len() });
    }
    for (block, o) in data.chunks_exact(bb).zip(out.chunks_exact_mut(be)) {
        f(block, o);
    }
    Ok(())
}

/// Little-endian f16 at byte `at` (caller guarantees `at + 2 <= b.len()`).
#[inline]
pub(crate) fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

fn block_f32(b: &[u8], y: &mut [f32]) {
    y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
}

fn block_f16(b: &[u8], y: &mut [f32]) {
    y[0] = f16_at(b, 0);
}

fn block_bf16(b: &[u8], y: &mut [f32]) {
    y[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32();
}

/// Q4_0 (18 bytes / 32): f16 `d`, `qs[16]`; element `j` = low nibble of
/// `qs[j]`, element `j + 16` = high nibble; value = `(q - 8) * d`.
fn block_q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qs = &b[2..18];
    for j in 0..16 {
        y[j] = ((qs[j] & 0x0F) as i32 - 8) as f32 * d;
        y[j + 16] = ((qs[j] >> 4) as i32 - 8) as f32 * d;
    }
}

/// Q4_1 (20 bytes / 32): f16 `d`, f16 `m`, `qs[16]` as Q4_0; value = `q * d + m`.
fn block_q4_1(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qs = &b[4..20];
    for j in 0..16 {
        y[j] = (qs[j] & 0x0F) as f32 * d + m;
        y[j + 16] = (qs[j] >> 4) as f32 * d + m;
    }
}

/// Q5_0 (22 bytes / 32): f16 `d`, u32 `qh` (bit `i` = 5th bit of element `i`),
/// `qs[16]` as Q4_0; value = `(q5 - 16) * d`.
fn block_q5_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    for j in 0..16 {
        let h0 = (((qh >> j) << 4) & 0x10) as u8;
        let h1 = ((qh >> (j + 12)) & 0x10) as u8;
        y[j] = (((qs[j] & 0x0F) | h0) as i32 - 16) as f32 * d;
        y[j + 16] = (((qs[j] >> 4) | h1) as i32 - 16) as f32 * d;
    }
}

/// Q5_1 (24 bytes / 32): f16 `d`, f16 `m`, u32 `qh`, `qs[16]`; value = `q5 * d + m`.
fn block_q5_1(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let qs = &b[8..24];
    for j in 0..16 {
        let h0 = (((qh >> j) << 4) & 0x10) as u8;
        let h1 = ((qh >> (j + 12)) & 0x10) as u8;
        y[j] = ((qs[j] & 0x0F) | h0) as f32 * d + m;
        y[j + 16] = ((qs[j] >> 4) | h1) as f32 * d + m;
    }
}

/// Q8_0 (34 bytes / 32): f16 `d`, 32 × i8; value = `q * d`.
fn block_q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (o, &q) in y.iter_mut().zip(&b[2..34]) {
        *o = (q as i8) as f32 * d;
    }
}
