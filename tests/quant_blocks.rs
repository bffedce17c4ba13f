//! Hand-built and random-block checks of the CPU dequantizers.

use ferrolm::quant::testdata::{random_blocks, Rng};
use ferrolm::quant::{dequantize, GgmlType, QuantError, IQ4_NL_VALUES};
use half::{bf16, f16};

fn h(v: f32) -> [u8; 2] {
    f16::from_f32(v).to_le_bytes()
}

fn deq(ty: GgmlType, data: &[u8]) -> Vec<f32> {
    let n = data.len() / ty.block_bytes() as usize * ty.block_elems() as usize;
    let mut out = vec![f32::NAN; n];
    dequantize(ty, data, &mut out).unwrap();
    out
}

#[test]
fn q4_0_hand_block() {
    let mut b = h(0.5).to_vec();
    b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let y = deq(GgmlType::Q4_0, &b);
    for j in 0..16 {
        assert_eq!(y[j], (j as f32 - 8.0) * 0.5);
        assert_eq!(y[j + 16], (7.0 - j as f32) * 0.5);
    }
    assert_eq!((y[0], y[15], y[16], y[31]), (-4.0, 3.5, 3.5, -4.0));
}

#[test]
fn q4_1_hand_block() {
    let mut b = h(0.25).to_vec();
    b.extend(h(-1.0));
    b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let y = deq(GgmlType::Q4_1, &b);
    for j in 0..16 {
        assert_eq!(y[j], j as f32 * 0.25 - 1.0);
        assert_eq!(y[j + 16], (15 - j) as f32 * 0.25 - 1.0);
    }
    assert_eq!((y[0], y[15], y[16]), (-1.0, 2.75, 2.75));
}

/// Element-oriented Q5 reference: 5th bit of element i is bit i of qh.
fn q5_ref(qh: u32, qs: &[u8], i: usize) -> u32 {
    let low = if i < 16 { qs[i] & 15 } else { qs[i - 16] >> 4 } as u32;
    low | (((qh >> i) & 1) << 4)
}

#[test]
fn q5_0_and_q5_1_hand_blocks() {
    let qh: u32 = 0xA5C3_0F81;
    let qs: Vec<u8> = (0..16u8).map(|j| j.wrapping_mul(37)).collect();
    let mut b0 = h(2.0).to_vec();
    b0.extend(qh.to_le_bytes());
    b0.extend(&qs);
    let y0 = deq(GgmlType::Q5_0, &b0);
    let mut b1 = h(0.5).to_vec();
    b1.extend(h(-3.0));
    b1.extend(qh.to_le_bytes());
    b1.extend(&qs);
    let y1 = deq(GgmlType::Q5_1, &b1);
    for i in 0..32 {
        let q = q5_ref(qh, &qs, i);
        assert_eq!(y0[i], (q as f32 - 16.0) * 2.0, "q5_0 elem {i}");
        assert_eq!(y1[i], q as f32 * 0.5 - 3.0, "q5_1 elem {i}");
    }
    // Spot values: qs[0]=0, qh bit0=1 -> q=16 -> 0; element 16: qs[0]>>4=0, bit16 (0xC3 -> 1) -> 16.
    assert_eq!(y0[0], 0.0);
    assert_eq!(y0[16], 0.0);
    // element 1: qs[1]=37=0x25 -> low 5, bit1 of 0x81 = 0 -> q=5 -> (5-16)*2 = -22
    assert_eq!(y0[1], -22.0);
    // element 17: high nibble of 0x25 = 2, bit 17 of qh (0xC3 bit1) = 1 -> 18 -> 18*0.5-3 = 6
    assert_eq!(y1[17], 6.0);
}

#[test]
fn q8_0_hand_block() {
    let mut b = h(0.125).to_vec();
    b.extend((0..32i32).map(|i| ((i - 16) * 8) as i8 as u8));
    let y = deq(GgmlType::Q8_0, &b);
    for (i, v) in y.iter().enumerate() {
        assert_eq!(*v, i as f32 - 16.0);
    }
}

#[test]
fn float_types_round_trip() {
    let vals = [0.0f32, -0.0, 1.0, -2.5, 0.099_975_586, 65504.0, 1e-4];
    let f32b: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(deq(GgmlType::F32, &f32b), vals);
    let f16b: Vec<u8> = vals.iter().flat_map(|&v| h(v)).collect();
    let back = deq(GgmlType::F16, &f16b);
    for (v, b) in vals.iter().zip(&back) {
        assert_eq!(f16::from_f32(*v).to_f32(), *b);
    }
    assert_eq!(back[..6], vals[..6]);
    let bf: Vec<u8> = vals.iter().flat_map(|&v| bf16::from_f32(v).to_le_bytes()).collect();
    let back = deq(GgmlType::BF16, &bf);
    assert_eq!(back[..4], vals[..4]);
    for (v, b) in vals.iter().zip(&back) {
        assert_eq!(bf16::from_f32(*v).to_f32(), *b);
    }
}

#[test]
fn length_errors_and_unsupported() {
    let b = random_blocks(GgmlType::Q4_0, 2, 1);
    let mut out = vec![0.0; 63];
    assert!(matches!(
        dequantize(GgmlType::Q4_0, &b, &mut out),
        Err(QuantError::LengthMismatch { expected: 64, got: 63, .. })
    ));
    let mut out = vec![0.0; 64];
    assert!(matches!(dequantize(GgmlType::Q4_0, &b[..35], &mut out), Err(QuantError::NotWholeBlocks { .. })));
    assert!(dequantize(GgmlType::Q4_0, &b, &mut out).is_ok());
    let mut out = vec![0.0; 256];
    let e = dequantize(GgmlType::IQ2_XXS, &[0u8; 66], &mut out).unwrap_err();
    assert_eq!(e, QuantError::Unsupported { ty: GgmlType::IQ2_XXS });
    assert!(e.to_string().contains("IQ2_XXS"));
    assert!(dequantize(GgmlType::Q8_0, &[], &mut []).is_ok());
}

#[test]
fn q4_k_hand_block() {
    let mut b = vec![0u8; 144];
    b[0..2].copy_from_slice(&h(1.0));
    b[2..4].copy_from_slice(&h(0.5));
    let s = &mut b[4..16];
    s[0] = 1 | (1 << 6); // sub0 scale 1; top bits -> sub4 scale bits 4..6 = 1
    s[1] = 2; // sub1 scale 2
    s[4] = 3; // sub0 min 3
    s[8] = 0x25; // sub4: scale low nibble 5, min low nibble 2
    b[16] = 7 | (9 << 4); // element 0 (sub0) = 7, element 32 (sub1) = 9
    b[16 + 64] = 3; // element 128 (sub4) = 3
    let y = deq(GgmlType::Q4_K, &b);
    assert_eq!(y[0], 1.0 * 1.0 * 7.0 - 0.5 * 3.0); // 5.5
    assert_eq!(y[1], -1.5); // q = 0
    assert_eq!(y[32], 2.0 * 9.0); // sub1 min = s[5] & 63 = 0
    assert_eq!(y[128], 21.0 * 3.0 - 0.5 * 2.0); // scale 5 | 1<<4 = 21, min 2
}

#[test]
fn q6_k_hand_block() {
    let mut b = vec![0u8; 210];
    b[208..210].copy_from_slice(&h(0.5));
    b[192] = 2; // scale for elements 0..16
    b[194] = (-3i8) as u8; // scale for elements 32..48
    b[0] = 5; // ql[0]: low nibble -> element 0, high nibble -> element 64
    b[128] = 2; // qh[0] bits 0-1 -> element 0's high bits
    let y = deq(GgmlType::Q6_K, &b);
    assert_eq!(y[0], 0.5 * 2.0 * 5.0); // (5 | 2<<4) - 32 = 5
    assert_eq!(y[32], 0.5 * -3.0 * -32.0); // ql[32]=0, qh bits 2-3 = 0 -> -32
    assert_eq!(y[64], 0.0); // scale index 4 is 0
}

fn check_against_reference(ty: GgmlType, reference: impl Fn(&[u8], usize) -> f32) {
    let data = random_blocks(ty, 4, 42);
    let y = deq(ty, &data);
    let bb = ty.block_bytes() as usize;
    for (i, v) in y.iter().enumerate() {
        let blk = &data[bb * (i / 256)..bb * (i / 256 + 1)];
        assert_eq!(*v, reference(blk, i % 256), "{ty} element {i}");
        assert!(v.is_finite());
    }
}

fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

fn k4_scale_min(s: &[u8], j: usize) -> (f32, f32) {
    let (sc, m) = if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        ((s[j + 4] & 15) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
    };
    (sc as f32, m as f32)
}

#[test]
fn k_quants_match_element_reference() {
    check_against_reference(GgmlType::Q4_K, |b, i| {
        let (c, w) = (i / 64, i % 64);
        let byte = b[16 + 32 * c + w % 32];
        let q = if w < 32 { byte & 15 } else { byte >> 4 };
        let (sc, m) = k4_scale_min(&b[4..16], i / 32);
        f16_at(b, 0) * sc * q as f32 - f16_at(b, 2) * m
    });
    check_against_reference(GgmlType::Q5_K, |b, i| {
        let (c, w) = (i / 64, i % 64);
        let byte = b[48 + 32 * c + w % 32];
        let low = if w < 32 { byte & 15 } else { byte >> 4 };
        let hbit = (b[16 + w % 32] >> (i / 32)) & 1;
        let (sc, m) = k4_scale_min(&b[4..16], i / 32);
        f16_at(b, 0) * sc * (low + 16 * hbit) as f32 - f16_at(b, 2) * m
    });
    check_against_reference(GgmlType::Q6_K, |b, i| {
        let (n, r) = (i / 128, i % 128);
        let (k, l) = (r / 32, r % 32);
        let byte = b[64 * n + l + 32 * (k % 2)];
        let low = if k < 2 { byte & 15 } else { byte >> 4 };
        let high = (b[128 + 32 * n + l] >> (2 * k)) & 3;
        let sc = b[192 + 8 * n + l / 16 + 2 * k] as i8;
        f16_at(b, 208) * sc as f32 * ((low | (high << 4)) as i32 - 32) as f32
    });
    check_against_reference(GgmlType::Q2_K, |b, i| {
        let (hf, r) = (i / 128, i % 128);
        let (g, w) = (r / 32, r % 32);
        let q = (b[16 + 32 * hf + w] >> (2 * g)) & 3;
        let sc = b[8 * hf + 2 * g + w / 16];
        f16_at(b, 80) * (sc & 15) as f32 * q as f32 - f16_at(b, 82) * (sc >> 4) as f32
    });
    check_against_reference(GgmlType::Q3_K, |b, i| {
        let (hf, r) = (i / 128, i % 128);
        let (g, w) = (r / 32, r % 32);
        let low = ((b[32 + 32 * hf + w] >> (2 * g)) & 3) as i32;
        let hbit = (b[w] >> (i / 32)) & 1;
        let is = i / 16;
        let sc = &b[96..108];
        let s_low = if is < 8 { sc[is] & 15 } else { sc[is - 8] >> 4 };
        let s_high = (sc[8 + is % 4] >> (2 * (is / 4))) & 3;
        let s = (s_low | (s_high << 4)) as i32 - 32;
        f16_at(b, 108) * s as f32 * (low - if hbit == 1 { 0 } else { 4 }) as f32
    });
    check_against_reference(GgmlType::IQ4_XS, |b, i| {
        let (ib, w) = (i / 32, i % 32);
        let byte = b[8 + 16 * ib + w % 16];
        let nib = if w < 16 { byte & 15 } else { byte >> 4 };
        let sh = u16::from_le_bytes([b[2], b[3]]);
        let ls = ((b[4 + ib / 2] >> (4 * (ib % 2))) & 15) as i32 | ((((sh >> (2 * ib)) & 3) as i32) << 4);
        f16_at(b, 0) * (ls - 32) as f32 * IQ4_NL_VALUES[nib as usize] as f32
    });
    check_against_reference(GgmlType::Q8_K, |b, i| {
        f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * (b[4 + i] as i8) as f32
    });
}

#[test]
fn iq4_nl_hand_block() {
    let mut b = h(0.5).to_vec();
    b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let y = deq(GgmlType::IQ4_NL, &b);
    assert_eq!(y[0], -63.5);
    assert_eq!(y[16], 56.5);
    assert_eq!(y[8], 0.5);
}

#[test]
fn random_blocks_are_valid_and_deterministic() {
    for ty in GgmlType::all() {
        let a = random_blocks(ty, 3, 7);
        assert_eq!(a.len() as u64, 3 * ty.block_bytes(), "{ty}");
        assert_eq!(a, random_blocks(ty, 3, 7));
        assert_ne!(a, random_blocks(ty, 3, 8), "{ty}");
        if ty.has_cpu_dequant() {
            let y = deq(ty, &a);
            assert!(y.iter().all(|v| v.is_finite() && v.abs() < 1e4), "{ty}: {y:?}");
        }
    }
    // Scale fields at known offsets decode to sane magnitudes.
    for (ty, at) in [(GgmlType::Q4_0, 0), (GgmlType::Q6_K, 208), (GgmlType::Q3_K, 108), (GgmlType::TQ2_0, 64)] {
        let b = random_blocks(ty, 50, 3);
        for blk in b.chunks(ty.block_bytes() as usize) {
            let d = f16_at(blk, at).abs();
            assert!((0.0009..=0.1001).contains(&d), "{ty} scale {d}");
        }
    }
    let mut r = Rng::new(5);
    let xs: Vec<f32> = (0..1000).map(|_| r.next_f32()).collect();
    assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
    let mean: f32 = (0..4000).map(|_| r.normal()).sum::<f32>() / 4000.0;
    assert!(mean.abs() < 0.1);
}
