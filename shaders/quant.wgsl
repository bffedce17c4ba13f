// Block readers for GGML weights stored raw (their GGUF byte layout) in `wq: array<u32>`.
//
// Every type provides `load8(row_byte, u) -> W8`: eight dequantized weights of the row whose first
// byte is `row_byte`. Units u = 0 .. k/8 cover every element of the row exactly once; which
// elements a unit holds follows the block layout (W8.ia, W8.ib). Exactly one type flag is set per
// pipeline (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0). The including kernel declares `wq`.
// Everything stays in vec4 registers: no private arrays (slow on CPU Vulkan drivers).

// Weights of elements [ia, ia + 4) in `a` and [ib, ib + 4) in `b`.
struct W8 {
    a: vec4<f32>,
    b: vec4<f32>,
    ia: u32,
    ib: u32,
}

// 4 bytes starting at any byte offset, little-endian.
fn ld_u32(b: u32) -> u32 {
    let w = b >> 2u;
    let s = (b & 3u) * 8u;
    if (s == 0u) {
        return wq[w];
    }
    return (wq[w] >> s) | (wq[w + 1u] << (32u - s));
}

// An f16 at an even byte offset.
fn ld_f16(b: u32) -> f32 {
    let bits = (wq[b >> 2u] >> ((b & 2u) * 8u)) & 0xffffu;
    return unpack2x16float(bits).x;
}

fn bytes4(w: u32) -> vec4<u32> {
    return vec4<u32>(w, w >> 8u, w >> 16u, w >> 24u) & vec4<u32>(0xffu);
}

// Low nibbles of the four bytes of w.
fn nib_lo(w: u32) -> vec4<f32> {
    return vec4<f32>(bytes4(w) & vec4<u32>(0xfu));
}

// High nibbles of the four bytes of w.
fn nib_hi(w: u32) -> vec4<f32> {
    return vec4<f32>(bytes4(w) >> vec4<u32>(4u));
}

// The four bytes of w as signed integers.
fn i8x4(w: u32) -> vec4<f32> {
    return vec4<f32>(vec4<i32>(bitcast<vec4<u32>>(vec4<u32>(w << 24u, w << 16u, w << 8u, w))) >> vec4<u32>(24u));
}

// Bits j .. j+3 of qh, each as 0 or 16 (the fifth bit of 5-bit quants).
fn high_bits(qh: u32, j: u32) -> vec4<f32> {
    return vec4<f32>(((vec4<u32>(qh) >> vec4<u32>(j, j + 1u, j + 2u, j + 3u)) & vec4<u32>(1u)) << vec4<u32>(4u));
}

#if F32
fn load8(row_byte: u32, u: u32) -> W8 {
    let w = (row_byte >> 2u) + 8u * u;
    let a = vec4<f32>(bitcast<f32>(wq[w]), bitcast<f32>(wq[w + 1u]), bitcast<f32>(wq[w + 2u]), bitcast<f32>(wq[w + 3u]));
    let b = vec4<f32>(bitcast<f32>(wq[w + 4u]), bitcast<f32>(wq[w + 5u]), bitcast<f32>(wq[w + 6u]), bitcast<f32>(wq[w + 7u]));
    return W8(a, b, 8u * u, 8u * u + 4u);
}
#elif F16
fn load8(row_byte: u32, u: u32) -> W8 {
    let w = (row_byte >> 2u) + 4u * u;
    let a = vec4<f32>(unpack2x16float(wq[w]), unpack2x16float(wq[w + 1u]));
    let b = vec4<f32>(unpack2x16float(wq[w + 2u]), unpack2x16float(wq[w + 3u]));
    return W8(a, b, 8u * u, 8u * u + 4u);
}
#elif BF16
fn bf16x2(w: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u));
}
fn load8(row_byte: u32, u: u32) -> W8 {
    let w = (row_byte >> 2u) + 4u * u;
    let a = vec4<f32>(bf16x2(wq[w]), bf16x2(wq[w + 1u]));
    let b = vec4<f32>(bf16x2(wq[w + 2u]), bf16x2(wq[w + 3u]));
    return W8(a, b, 8u * u, 8u * u + 4u);
}
#elif Q4_0
// 18 bytes per 32: f16 d, 16 bytes of nibbles (low = elements 0..16, high = 16..32); w = (q - 8) d.
fn load8(row_byte: u32, u: u32) -> W8 {
    let blk = u >> 2u;
    let i = u & 3u;
    let base = row_byte + blk * 18u;
    let d = ld_f16(base);
    let q = ld_u32(base + 2u + 4u * i);
    let ia = blk * 32u + 4u * i;
    return W8((nib_lo(q) - 8.0) * d, (nib_hi(q) - 8.0) * d, ia, ia + 16u);
}
#elif Q4_1
// 20 bytes per 32: f16 d, f16 m, 16 bytes of nibbles; w = q d + m.
fn load8(row_byte: u32, u: u32) -> W8 {
    let blk = u >> 2u;
    let i = u & 3u;
    let base = row_byte + blk * 20u;
    let dm = unpack2x16float(wq[base >> 2u]);
    let q = wq[(base >> 2u) + 1u + i];
    let ia = blk * 32u + 4u * i;
    return W8(nib_lo(q) * dm.x + dm.y, nib_hi(q) * dm.x + dm.y, ia, ia + 16u);
}
#elif Q5_0
// 22 bytes per 32: f16 d, u32 qh (fifth bits), 16 bytes of nibbles; w = (q - 16) d.
fn load8(row_byte: u32, u: u32) -> W8 {
    let blk = u >> 2u;
    let i = u & 3u;
    let base = row_byte + blk * 22u;
    let d = ld_f16(base);
    let qh = ld_u32(base + 2u);
    let q = ld_u32(base + 6u + 4u * i);
    let a = (nib_lo(q) + high_bits(qh, 4u * i) - 16.0) * d;
    let b = (nib_hi(q) + high_bits(qh, 4u * i + 16u) - 16.0) * d;
    let ia = blk * 32u + 4u * i;
    return W8(a, b, ia, ia + 16u);
}
#elif Q5_1
// 24 bytes per 32: f16 d, f16 m, u32 qh, 16 bytes of nibbles; w = q d + m.
fn load8(row_byte: u32, u: u32) -> W8 {
    let blk = u >> 2u;
    let i = u & 3u;
    let w0 = (row_byte + blk * 24u) >> 2u;
    let dm = unpack2x16float(wq[w0]);
    let qh = wq[w0 + 1u];
    let q = wq[w0 + 2u + i];
    let a = (nib_lo(q) + high_bits(qh, 4u * i)) * dm.x + dm.y;
    let b = (nib_hi(q) + high_bits(qh, 4u * i + 16u)) * dm.x + dm.y;
    let ia = blk * 32u + 4u * i;
    return W8(a, b, ia, ia + 16u);
}
#elif Q8_0
// 34 bytes per 32: f16 d, 32 signed bytes; w = q d.
fn load8(row_byte: u32, u: u32) -> W8 {
    let blk = u >> 2u;
    let i = u & 3u;
    let base = row_byte + blk * 34u;
    let d = ld_f16(base);
    let a = i8x4(ld_u32(base + 2u + 8u * i)) * d;
    let b = i8x4(ld_u32(base + 6u + 8u * i)) * d;
    let ia = blk * 32u + 8u * i;
    return W8(a, b, ia, ia + 4u);
}
#endif
