// Block readers for GGML weights stored raw (their GGUF byte layout) in `wq: array<u32>`.
//
// Every type provides `load32(row_byte, g) -> array<f32, 32>`: the dequantized weights of
// elements [32g, 32g + 32) of the row whose first byte is `row_byte`. Exactly one type flag is
// set per pipeline (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0). The kernel that includes this
// file declares `wq`.

// Byte `b` of the weights.
fn ld_u8(b: u32) -> u32 {
    return (wq[b >> 2u] >> ((b & 3u) * 8u)) & 0xffu;
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

// Sign-extends the low byte of `q`.
fn i8_of(q: u32) -> f32 {
    return f32(bitcast<i32>(q << 24u) >> 24u);
}

#if F32
fn load32(row_byte: u32, g: u32) -> array<f32, 32> {
    var v: array<f32, 32>;
    let base = (row_byte + g * 128u) >> 2u;
    for (var i = 0u; i < 32u; i++) {
        v[i] = bitcast<f32>(wq[base + i]);
    }
    return v;
}
#elif F16
fn load32(row_byte: u32, g: u32) -> array<f32, 32> {
    var v: array<f32, 32>;
    let base = (row_byte + g * 64u) >> 2u;
    for (var i = 0u; i < 16u; i++) {
        let h = unpack2x16float(wq[base + i]);
        v[2u * i] = h.x;
        v[2u * i + 1u] = h.y;
    }
    return v;
}
#elif BF16
fn load32(row_byte: u32, g: u32) -> array<f32, 32> {
    var v: array<f32, 32>;
    let base = (row_byte + g * 64u) >> 2u;
    for (var i = 0u; i < 16u; i++) {
        let w = wq[base + i];
        v[2u * i] = bitcast<f32>(w << 16u);
        v[2u * i + 1u] = bitcast<f32>(w & 0xffff0000u);
    }
    return v;
}
#elif Q4_0
// 18 bytes: f16 d, 16 bytes of nibbles (low nibbles = elements 0..16, high = 16..32); w = (q - 8) d.
fn load32(row_byte: u32, g: u32) -> array<f32, 32> {
    var v: array<f32, 32>;
    let base = row_byte + g * 18u;
    let d = ld_f16(base);
    for (var i = 0u; i < 4u; i++) {
        let w = ld_u32(base + 2u + 4u * i);
        for (var b = 0u; b < 4u; b++) {
            let q = (w >> (8u * b)) & 0xffu;
            v[4u * i + b] = (f32(q & 0xfu) - 8.0) * d;
            v[4u * i + b + 16u] = (f32(q >> 4u) - 8.0) * d;
        }
    }
    return v;
}
#elif Q4_1
// 20 bytes: f16 d, f16 m, 16 bytes of nibbles; w = q d + m.
fn load32(row_byte: u32, g: u32) -> array<f32, 32> {
    var v: array<f32, 32>;
    let base = row_byte + g * 20u;
    let d = ld_f16(base);
    let m = ld_f16(base + 2u);
    for (var i = 0u; i < 4u; i++) {
        let w = ld_u32(base + 4u + 4u * i);
        for (var b = 0u; b < 4u; b++) {
            let q = (w >> (8u * b)) & 0xffu;
            v[4u * i + b] = f32(q & 0xfu) * d + m;
            v[4u * i + b + 16u] = f32(q >> 4u) * d + m;
        }
    }
    return v;
}
#elif Q5_0
// 22 bytes: f16 d, u32 qh (5th bits), 16 bytes of nibbles; w = (q - 16) d.
fn load32(row_byte: u32, g: u32) -> array<f32, 32> {
    var v: array<f32, 32>;
    let base = row_byte + g * 22u;
    let d = ld_f16(base);
    let qh = ld_u32(base + 2u);
    for (var i = 0u; i < 4u; i++) {
        let w = ld_u32(base + 6u + 4u * i);
        for (var b = 0u; b < 4u; b++) {
            let j = 4u * i + b;
            let q = (w >> (8u * b)) & 0xffu;
            let lo = (q & 0xfu) | (((qh >> j) & 1u) << 4u);
            let hi = (q >> 4u) | (((qh >> (j + 16u)) & 1u) << 4u);
            v[j] = (f32(lo) - 16.0) * d;
            v[j + 16u] = (f32(hi) - 16.0) * d;
        }
    }
    return v;
}
#elif Q5_1
// 24 bytes: f16 d, f16 m, u32 qh, 16 bytes of nibbles; w = q d + m.
fn load32(row_byte: u32, g: u32) -> array<f32, 32> {
    var v: array<f32, 32>;
    let base = row_byte + g * 24u;
    let d = ld_f16(base);
    let m = ld_f16(base + 2u);
    let qh = ld_u32(base + 4u);
    for (var i = 0u; i < 4u; i++) {
        let w = ld_u32(base + 8u + 4u * i);
        for (var b = 0u; b < 4u; b++) {
            let j = 4u * i + b;
            let q = (w >> (8u * b)) & 0xffu;
            let lo = (q & 0xfu) | (((qh >> j) & 1u) << 4u);
            let hi = (q >> 4u) | (((qh >> (j + 16u)) & 1u) << 4u);
            v[j] = f32(lo) * d + m;
            v[j + 16u] = f32(hi) * d + m;
        }
    }
    return v;
}
#elif Q8_0
// 34 bytes: f16 d, 32 signed bytes; w = q d.
fn load32(row_byte: u32, g: u32) -> array<f32, 32> {
    var v: array<f32, 32>;
    let base = row_byte + g * 34u;
    let d = ld_f16(base);
    for (var i = 0u; i < 8u; i++) {
        let w = ld_u32(base + 2u + 4u * i);
        for (var b = 0u; b < 4u; b++) {
            v[4u * i + b] = i8_of(w >> (8u * b)) * d;
        }
    }
    return v;
}
#endif
