// One row of a quantized matrix times the activations; instanced per matrix with the block
// readers in front of it (see gpu/shader.rs: `row_dot` becomes `row_dot_0`, `row_dot_1`, ...).

// Σ of the unit's 8 weights times the inputs of the x row starting at element xo.
fn dot8(w: W8, xo: u32) -> f32 {
    return dot(w.a, x4(xo, w.ia)) + dot(w.b, x4(xo, w.ib));
}

// Elements e .. e + 4 of the input row starting at element xo (the staged row with STAGE_X;
// times the norm weight with XN_UNIFORM).
fn x4(xo: u32, e: u32) -> vec4<f32> {
#if STAGE_X
    return xs[e >> 2u];
#elif XN_UNIFORM
    return x[(xo + e) >> 2u] * xn[e >> 2u];
#else
    return x[(xo + e) >> 2u];
#endif
}

// Elements 32b .. 32b + 32 of the input row at xo, loaded once for every row that uses them
// (CPU drivers load each per lane, even when all lanes read the same address).
struct X32 {
    a0: vec4<f32>,
    a1: vec4<f32>,
    a2: vec4<f32>,
    a3: vec4<f32>,
    b0: vec4<f32>,
    b1: vec4<f32>,
    b2: vec4<f32>,
    b3: vec4<f32>,
}

fn load_x32(xo: u32, b: u32) -> X32 {
    let e = b * 32u;
#if X_BROADCAST
    return broadcast_x32(x4(xo, e + 4u * subgroup_lane));
#else
    return X32(x4(xo, e), x4(xo, e + 4u), x4(xo, e + 8u), x4(xo, e + 12u), x4(xo, e + 16u), x4(xo, e + 20u), x4(xo, e + 24u), x4(xo, e + 28u));
#endif
}

#if X_BROADCAST
// The 32 inputs the lanes j = 0 .. 8 of this lane's subgroup loaded as `v`, elements 4j .. 4j + 4
// of them (see matvec_common.wgsl).
fn broadcast_x32(v: vec4<f32>) -> X32 {
    return X32(subgroupBroadcast(v, 0u), subgroupBroadcast(v, 1u), subgroupBroadcast(v, 2u), subgroupBroadcast(v, 3u),
        subgroupBroadcast(v, 4u), subgroupBroadcast(v, 5u), subgroupBroadcast(v, 6u), subgroupBroadcast(v, 7u));
}
#endif

#if TILE_BLOCKS
// Σ of 32 weights times 32 inputs (block_weights, block_inputs).
fn dot32(w: X32, x: X32) -> f32 {
    return dot(w.a0, x.a0) + dot(w.a1, x.a1) + dot(w.a2, x.a2) + dot(w.a3, x.a3)
        + dot(w.b0, x.b0) + dot(w.b1, x.b1) + dot(w.b2, x.b2) + dot(w.b3, x.b3);
}
#endif

#if Q4_1
// Σ of block b's 32 weights times the inputs xs: d · Σ q x + m · Σ x (20-byte blocks: f16 d,
// f16 m, then 4 words of nibbles, low nibbles elements 0 .. 16; read with q4_1_block).
fn block_dot_x(row_byte: u32, b: u32, xs: X32) -> f32 {
    return q4_1_dot(q4_1_block(row_byte, b), xs);
}

fn q4_1_dot(blk: Q41Block, xs: X32) -> f32 {
    let dm = blk.dm;
    let q0 = blk.q.x;
    let q1 = blk.q.y;
    let q2 = blk.q.z;
    let q3 = blk.q.w;
    let qx = nib_lo(q0) * xs.a0 + nib_lo(q1) * xs.a1 + nib_lo(q2) * xs.a2 + nib_lo(q3) * xs.a3
        + nib_hi(q0) * xs.b0 + nib_hi(q1) * xs.b1 + nib_hi(q2) * xs.b2 + nib_hi(q3) * xs.b3;
    let sx = xs.a0 + xs.a1 + xs.a2 + xs.a3 + xs.b0 + xs.b1 + xs.b2 + xs.b3;
    return dm.x * dot(qx, vec4<f32>(1.0)) + dm.y * dot(sx, vec4<f32>(1.0));
}

// Block b's 32 weights, in load_x32's order: q d + m.
fn block_weights(row_byte: u32, b: u32) -> X32 {
    let blk = q4_1_block(row_byte, b);
    let d = blk.dm.x;
    let m = blk.dm.y;
    return X32(nib_lo(blk.q.x) * d + m, nib_lo(blk.q.y) * d + m, nib_lo(blk.q.z) * d + m, nib_lo(blk.q.w) * d + m,
        nib_hi(blk.q.x) * d + m, nib_hi(blk.q.y) * d + m, nib_hi(blk.q.z) * d + m, nib_hi(blk.q.w) * d + m);
}
#elif Q8_0
// Σ of block b's 32 weights times the inputs xs: d · Σ q x (34-byte blocks: f16 d, then the 32
// quants, read with q8_0_block).
fn block_dot_x(row_byte: u32, b: u32, xs: X32) -> f32 {
    return q8_0_dot(q8_0_block(row_byte, b), xs);
}

fn q8_0_dot(blk: F16Words8, xs: X32) -> f32 {
    let s = dot(i8x4(blk.lo.x), xs.a0) + dot(i8x4(blk.lo.y), xs.a1) + dot(i8x4(blk.lo.z), xs.a2) + dot(i8x4(blk.lo.w), xs.a3)
        + dot(i8x4(blk.hi.x), xs.b0) + dot(i8x4(blk.hi.y), xs.b1) + dot(i8x4(blk.hi.z), xs.b2) + dot(i8x4(blk.hi.w), xs.b3);
    return blk.d * s;
}

// Block b's 32 weights, in load_x32's order: q d.
fn block_weights(row_byte: u32, b: u32) -> X32 {
    let blk = q8_0_block(row_byte, b);
    let d = blk.d;
    return X32(i8x4(blk.lo.x) * d, i8x4(blk.lo.y) * d, i8x4(blk.lo.z) * d, i8x4(blk.lo.w) * d,
        i8x4(blk.hi.x) * d, i8x4(blk.hi.y) * d, i8x4(blk.hi.z) * d, i8x4(blk.hi.w) * d);
}
#elif Q5_0
// Σ of block b's 32 weights times the inputs xs: d · (Σ q x − 16 Σ x), q the 5-bit quants
// (22-byte blocks: f16 d, u32 qh of fifth bits, 16 bytes of nibbles, low nibbles elements
// 0 .. 16; read with f16_words8, from a texture three texel fetches instead of about twenty).
fn block_dot_x(row_byte: u32, b: u32, xs: X32) -> f32 {
    let blk = f16_words8(row_byte + b * 22u);
    let qh = blk.lo.x;
    let q0 = blk.lo.y;
    let q1 = blk.lo.z;
    let q2 = blk.lo.w;
    let q3 = blk.hi.x;
    let qx = (nib_lo(q0) + high_bits(qh, 0u)) * xs.a0 + (nib_lo(q1) + high_bits(qh, 4u)) * xs.a1
        + (nib_lo(q2) + high_bits(qh, 8u)) * xs.a2 + (nib_lo(q3) + high_bits(qh, 12u)) * xs.a3
        + (nib_hi(q0) + high_bits(qh, 16u)) * xs.b0 + (nib_hi(q1) + high_bits(qh, 20u)) * xs.b1
        + (nib_hi(q2) + high_bits(qh, 24u)) * xs.b2 + (nib_hi(q3) + high_bits(qh, 28u)) * xs.b3;
    let sx = xs.a0 + xs.a1 + xs.a2 + xs.a3 + xs.b0 + xs.b1 + xs.b2 + xs.b3;
    return blk.d * (dot(qx, vec4<f32>(1.0)) - 16.0 * dot(sx, vec4<f32>(1.0)));
}

// Block b's 32 weights, in load_x32's order: (q − 16) d.
fn block_weights(row_byte: u32, b: u32) -> X32 {
    let blk = f16_words8(row_byte + b * 22u);
    let qh = blk.lo.x;
    let d = blk.d;
    let o = -16.0 * d;
    return X32((nib_lo(blk.lo.y) + high_bits(qh, 0u)) * d + o, (nib_lo(blk.lo.z) + high_bits(qh, 4u)) * d + o,
        (nib_lo(blk.lo.w) + high_bits(qh, 8u)) * d + o, (nib_lo(blk.hi.x) + high_bits(qh, 12u)) * d + o,
        (nib_hi(blk.lo.y) + high_bits(qh, 16u)) * d + o, (nib_hi(blk.lo.z) + high_bits(qh, 20u)) * d + o,
        (nib_hi(blk.lo.w) + high_bits(qh, 24u)) * d + o, (nib_hi(blk.hi.x) + high_bits(qh, 28u)) * d + o);
}
#endif

#if GROUP_X32
// Q4_K and Q5_K in the raw layout from a texture or bound as vec4 words (VEC4, GPUs), read 32
// weights at a time in 16-byte loads (`wq_vec4`): a Q4_K block is 9 such groups (d, dmin and
// the scales, then 8 of nibbles), a Q5_K block 11 (the same with the 32 bytes of fifth bits
// qh as groups 1 and 2). Group b of a row's 32-weight groups is block b / 8, chunk
// c = (b / 2) % 4, half h = b % 2: nibble group b % 8 of the block, whose low nibbles are
// elements group_first(b) .. + 16 and high nibbles the 16 from group_first(b) + 32 (Q5_K: their
// fifth bits are bits 2c and 2c + 1 of the bytes of qh group h).
#if Q6_K
// Q6_K (packed in a texture, gpu::weights): group b is block b / 8, n = (b / 4) % 2,
// k = (b / 2) % 2, h = b % 2: the 16 bytes of ql[64n + 32k + 16h ..], whose low nibbles are
// elements group_first(b) .. + 16 and high nibbles the 16 from group_first(b) + 64
// (GROUP_GAP), their top two bits from qh[32n + 16h ..] (bits 2k and 2k + 4), scales
// 8n + 2k + h and that + 4.
const GROUP_GAP: u32 = 64u;
fn group_first(b: u32) -> u32 {
    return (b >> 3u) * 256u + ((b >> 2u) & 1u) * 128u + ((b >> 1u) & 1u) * 32u + (b & 1u) * 16u;
}
#else
// Second 16 elements of a group: 32 after the first.
const GROUP_GAP: u32 = 32u;
fn group_first(b: u32) -> u32 {
    return (b >> 3u) * 256u + ((b >> 1u) & 3u) * 64u + (b & 1u) * 16u;
}
#endif

// Group b's 32 quants as floats (X32: a0..a3 the low-nibble elements, b0..b3 the high ones, in
// load_x16x2's order) and the factors f of its two halves: the weights are q f.x − f.z (low) and
// q f.y − f.w (high). Each type's `group_quants` reads them; `group_dot_x` and `block_weights`
// below use them.
struct GroupQuants {
    f: vec4<f32>,
    q: X32,
}

#if Q6_K
// The 6-bit quants of one ql word (low or high nibbles, `hi` 0 or 4) with their qh bits.
fn q6_quants(ql: u32, qh: u32, hi: u32, shift: u32) -> vec4<f32> {
    return vec4<f32>(((bytes4(ql) >> vec4<u32>(hi)) & vec4<u32>(0xfu)) | (((bytes4(qh) >> vec4<u32>(shift)) & vec4<u32>(3u)) << vec4<u32>(4u)));
}

// The signed 8-bit scale i (< 16) of the scales texel sc.
fn q6_scale(sc: vec4<u32>, i: u32) -> f32 {
    return f32(bitcast<i32>(texel_word(sc, i >> 2u) << (24u - 8u * (i & 3u))) >> 24u);
}

// Four texels (the d's, ql, qh, scales); f = (d sc_lo, d sc_hi, 32 d sc_lo, 32 d sc_hi):
// w = d sc (q − 32).
fn group_quants(row_byte: u32, b: u32) -> GroupQuants {
    let blk = q6_k_block(row_byte, b >> 3u);
    let t = blk.base >> 4u;
    let n = (b >> 2u) & 1u;
    let k = (b >> 1u) & 1u;
    let h = b & 1u;
    let sc = wq_vec4(t + 12u);
    let i = 8u * n + 2u * k + h;
    let ds = blk.d * vec2<f32>(q6_scale(sc, i), q6_scale(sc, i + 4u));
    let ql = wq_vec4(t + 4u * n + 2u * k + h);
    let qh = wq_vec4(t + 8u + 2u * n + h);
    let s = 2u * k;
    return GroupQuants(vec4<f32>(ds, 32.0 * ds), X32(q6_quants(ql.x, qh.x, 0u, s), q6_quants(ql.y, qh.y, 0u, s),
        q6_quants(ql.z, qh.z, 0u, s), q6_quants(ql.w, qh.w, 0u, s), q6_quants(ql.x, qh.x, 4u, s + 4u),
        q6_quants(ql.y, qh.y, 4u, s + 4u), q6_quants(ql.z, qh.z, 4u, s + 4u), q6_quants(ql.w, qh.w, 4u, s + 4u)));
}
#elif Q4_K
// Two texels (scales, nibbles); f = k4_scales_of(..): w = d sc q − dmin m for each half.
fn group_quants(row_byte: u32, b: u32) -> GroupQuants {
    let unit = (row_byte >> 4u) + (b >> 3u) * 9u;
    let f = k4_scales_of(wq_vec4(unit), (b >> 1u) & 3u);
    let q = wq_vec4(unit + 1u + (b & 7u));
    return GroupQuants(f, X32(nib_lo(q.x), nib_lo(q.y), nib_lo(q.z), nib_lo(q.w), nib_hi(q.x), nib_hi(q.y), nib_hi(q.z), nib_hi(q.w)));
}
#elif Q5_K
// As Q4_K with each quant's fifth bit (16 when set) from the qh group: three texels.
fn group_quants(row_byte: u32, b: u32) -> GroupQuants {
    let unit = (row_byte >> 4u) + (b >> 3u) * 11u;
    let c = (b >> 1u) & 3u;
    let f = k4_scales_of(wq_vec4(unit), c);
    let qh = wq_vec4(unit + 1u + (b & 1u)) >> vec4<u32>(2u * c);
    let q = wq_vec4(unit + 3u + (b & 7u));
    return GroupQuants(f, X32(nib_lo(q.x) + fifth_bits(qh.x, 0u), nib_lo(q.y) + fifth_bits(qh.y, 0u),
        nib_lo(q.z) + fifth_bits(qh.z, 0u), nib_lo(q.w) + fifth_bits(qh.w, 0u), nib_hi(q.x) + fifth_bits(qh.x, 1u),
        nib_hi(q.y) + fifth_bits(qh.y, 1u), nib_hi(q.z) + fifth_bits(qh.z, 1u), nib_hi(q.w) + fifth_bits(qh.w, 1u)));
}

// 16 times bit `bit` of each byte of w.
fn fifth_bits(w: u32, bit: u32) -> vec4<f32> {
    return vec4<f32>(((bytes4(w) >> vec4<u32>(bit)) & vec4<u32>(1u)) << vec4<u32>(4u));
}
#endif

// Σ of group b's 32 weights times the inputs xs (decode: the factors applied once per half).
fn group_dot_x(row_byte: u32, b: u32, xs: X32) -> f32 {
    let g = group_quants(row_byte, b);
    let lo = g.q.a0 * xs.a0 + g.q.a1 * xs.a1 + g.q.a2 * xs.a2 + g.q.a3 * xs.a3;
    let hi = g.q.b0 * xs.b0 + g.q.b1 * xs.b1 + g.q.b2 * xs.b2 + g.q.b3 * xs.b3;
    return scaled_sums(g.f, lo, hi, xs);
}

// Group b's 32 weights, in load_x16x2's order (prefill tiles).
fn block_weights(row_byte: u32, b: u32) -> X32 {
    let g = group_quants(row_byte, b);
    let f = g.f;
    return X32(g.q.a0 * f.x - f.z, g.q.a1 * f.x - f.z, g.q.a2 * f.x - f.z, g.q.a3 * f.x - f.z,
        g.q.b0 * f.y - f.w, g.q.b1 * f.y - f.w, g.q.b2 * f.y - f.w, g.q.b3 * f.y - f.w);
}

// f.x Σ lo + f.y Σ hi − f.z Σ x_lo − f.w Σ x_hi (Q4_K, Q5_K: d sc_lo Σ lo + d sc_hi Σ hi −
// dmin m_lo Σ x_lo − dmin m_hi Σ x_hi, f = k4_scales_of(..)).
fn scaled_sums(f: vec4<f32>, lo: vec4<f32>, hi: vec4<f32>, xs: X32) -> f32 {
    let sums = vec4<f32>(dot(lo, vec4<f32>(1.0)), dot(hi, vec4<f32>(1.0)), dot(xs.a0 + xs.a1 + xs.a2 + xs.a3, vec4<f32>(1.0)), dot(xs.b0 + xs.b1 + xs.b2 + xs.b3, vec4<f32>(1.0)));
    return dot(f * sums, vec4<f32>(1.0, 1.0, -1.0, -1.0));
}

// Elements e .. e + 16 and e + GROUP_GAP .. + 16 of the input row at xo (a group's inputs).
fn load_x16x2(xo: u32, e: u32) -> X32 {
#if X_BROADCAST
    return broadcast_x32(x4(xo, e + 4u * subgroup_lane + select(0u, GROUP_GAP - 16u, subgroup_lane >= 4u)));
#else
    let e2 = e + GROUP_GAP;
    return X32(x4(xo, e), x4(xo, e + 4u), x4(xo, e + 8u), x4(xo, e + 12u), x4(xo, e2), x4(xo, e2 + 4u), x4(xo, e2 + 8u), x4(xo, e2 + 12u));
#endif
}

// The inputs of group b (block_weights' elements) from the input row at xo.
fn block_inputs(xo: u32, b: u32) -> X32 {
    return load_x16x2(xo, group_first(b));
}

// Group b of a row, and of four consecutive rows sharing the input loads.
fn block_dot(row_byte: u32, b: u32, xo: u32) -> f32 {
    return group_dot_x(row_byte, b, load_x16x2(xo, group_first(b)));
}
fn block_dot4(r0: u32, row_bytes: u32, b: u32, xo: u32) -> vec4<f32> {
    let xs = load_x16x2(xo, group_first(b));
    return vec4<f32>(group_dot_x(r0, b, xs), group_dot_x(r0 + row_bytes, b, xs), group_dot_x(r0 + 2u * row_bytes, b, xs), group_dot_x(r0 + 3u * row_bytes, b, xs));
}
#elif BLOCK_X32
// The inputs of block b (block_weights' elements) from the input row at xo.
fn block_inputs(xo: u32, b: u32) -> X32 {
    return load_x32(xo, b);
}

// Block b of a row, and of four consecutive rows sharing the input loads (Q4_1, Q5_0, Q8_0).
fn block_dot(row_byte: u32, b: u32, xo: u32) -> f32 {
    return block_dot_x(row_byte, b, load_x32(xo, b));
}
fn block_dot4(r0: u32, row_bytes: u32, b: u32, xo: u32) -> vec4<f32> {
    return block_dot4_x(r0, row_bytes, b, load_x32(xo, b));
}
fn block_dot4_x(r0: u32, row_bytes: u32, b: u32, xs: X32) -> vec4<f32> {
    return vec4<f32>(block_dot_x(r0, b, xs), block_dot_x(r0 + row_bytes, b, xs), block_dot_x(r0 + 2u * row_bytes, b, xs), block_dot_x(r0 + 3u * row_bytes, b, xs));
}

#if PACKED
// Packed blocks (Q4_1, Q8_0 in textures; gpu::weights): a group's header texel holds the scales
// of PACK_GROUP blocks, so decode fetches it once per group of blocks instead of once per block.
// The header texel of the group holding block b of the row at row_byte:
fn packed_head(row_byte: u32, b: u32) -> vec4<u32> {
    return wq_texel(packed_group(row_byte, b, PACK_GROUP, PACK_GROUP_TEXELS).x);
}

// block_dot_x with the group's header texel `head` already fetched.
fn block_dot_head(row_byte: u32, b: u32, xs: X32, head: vec4<u32>) -> f32 {
    let blk = packed_block(packed_group(row_byte, b, PACK_GROUP, PACK_GROUP_TEXELS), head);
#if Q4_1
    return q4_1_dot(blk, xs);
#else
    return q8_0_dot(blk, xs);
#endif
}
#endif
#else
// Σ of the 32 weights of units 4b .. 4b + 4 times the inputs of the row at xo (a unit's eight
// elements need not be consecutive: k-quants pair low and high nibbles 32 apart).
fn block_dot(row_byte: u32, b: u32, xo: u32) -> f32 {
    let u = 4u * b;
    return dot8(load8(row_byte, u), xo) + dot8(load8(row_byte, u + 1u), xo) + dot8(load8(row_byte, u + 2u), xo) + dot8(load8(row_byte, u + 3u), xo);
}
// Unit u of four consecutive rows, the input loaded once (the unit's elements are the same in
// every row).
fn unit_dot4(r0: u32, row_bytes: u32, u: u32, xo: u32) -> vec4<f32> {
    let w0 = load8(r0, u);
    let w1 = load8(r0 + row_bytes, u);
    let w2 = load8(r0 + 2u * row_bytes, u);
    let w3 = load8(r0 + 3u * row_bytes, u);
    let xa = x4(xo, w0.ia);
    let xb = x4(xo, w0.ib);
    return vec4<f32>(dot(w0.a, xa) + dot(w0.b, xb), dot(w1.a, xa) + dot(w1.b, xb), dot(w2.a, xa) + dot(w2.b, xb), dot(w3.a, xa) + dot(w3.b, xb));
}
fn block_dot4(r0: u32, row_bytes: u32, b: u32, xo: u32) -> vec4<f32> {
    let u = 4u * b;
    return unit_dot4(r0, row_bytes, u, xo) + unit_dot4(r0, row_bytes, u + 1u, xo) + unit_dot4(r0, row_bytes, u + 2u, xo) + unit_dot4(r0, row_bytes, u + 3u, xo);
}
#endif

#if ROWS4
// Decode: this lane's share of Σ_k W[row + j, k] · x[t0, k] for the four rows j = 0 .. 4 at
// once, each input load shared by the four (the lanes of a row group stride by G blocks of 32;
// G = 1 on CPU drivers). Rows past the matrix read clamped words; their sums are unused.
fn row_dot4(row: u32, row_bytes: u32, lane: u32, t0: u32) -> vec4<f32> {
    let xo = x_row(t0);
    var acc = vec4<f32>(0.0);
#if INTERLEAVED
    acc = vec4<f32>(row_dot(row, row_bytes, lane, t0).a.x, row_dot(row + 1u, row_bytes, lane, t0).a.x, row_dot(row + 2u, row_bytes, lane, t0).a.x, row_dot(row + 3u, row_bytes, lane, t0).a.x);
#else
    let r0 = row * row_bytes;
#if PACKED_HEADS
    // The lanes of a row group take whole packed groups of blocks in turn.
    let blocks = p.k / 32u;
    for (var g0 = lane * PACK_GROUP; g0 < blocks; g0 += G * PACK_GROUP) {
        let h0 = packed_head(r0, g0);
        let h1 = packed_head(r0 + row_bytes, g0);
        let h2 = packed_head(r0 + 2u * row_bytes, g0);
        let h3 = packed_head(r0 + 3u * row_bytes, g0);
        for (var b = g0; b < min(g0 + PACK_GROUP, blocks); b++) {
            let xs = load_x32(xo, b);
            acc += vec4<f32>(block_dot_head(r0, b, xs, h0), block_dot_head(r0 + row_bytes, b, xs, h1),
                block_dot_head(r0 + 2u * row_bytes, b, xs, h2), block_dot_head(r0 + 3u * row_bytes, b, xs, h3));
        }
    }
#else
    for (var b = lane; b < p.k / 32u; b += G) {
        acc += block_dot4(r0, row_bytes, b, xo);
    }
#endif
#endif
    return acc;
}
#endif

// This lane's share of Σ_k W[row, k] · n[k] · x[t, k] for the TT tokens t = t0 .. (n: the input
// norm weight with NORM, else 1); rows are `row_bytes` long. Lanes stride by G units.
fn row_dot(row: u32, row_bytes: u32, lane: u32, t0: u32) -> Acc {
    let row_byte = row_start(row, row_bytes);
    let x0 = x_row(t0);
#if TILE4
    let x1 = x_row(t0 + 1u);
    let x2 = x_row(t0 + 2u);
    let x3 = x_row(t0 + 3u);
#endif
#if TILE8
    let x4 = x_row(t0 + 4u);
    let x5 = x_row(t0 + 5u);
    let x6 = x_row(t0 + 6u);
    let x7 = x_row(t0 + 7u);
#endif
#if TILE16
    let x8 = x_row(t0 + 8u);
    let x9 = x_row(t0 + 9u);
    let x10 = x_row(t0 + 10u);
    let x11 = x_row(t0 + 11u);
    let x12 = x_row(t0 + 12u);
    let x13 = x_row(t0 + 13u);
    let x14 = x_row(t0 + 14u);
    let x15 = x_row(t0 + 15u);
#endif
    var acc = acc_zero();
#if TILE_BLOCKS
    // Prefill on CPU drivers: a whole block (or K-quant group) of 32 weights per iteration, read
    // (a few texel fetches instead of a few per 8 weights) and dequantized once for the tile.
    for (var b = lane; b < p.k / 32u; b += G) {
        let w = block_weights(row_byte, b);
        acc.a.x += dot32(w, block_inputs(x0, b));
#if TILE4
        acc.a.y += dot32(w, block_inputs(x1, b));
        acc.a.z += dot32(w, block_inputs(x2, b));
        acc.a.w += dot32(w, block_inputs(x3, b));
#endif
#if TILE8
        acc.b.x += dot32(w, block_inputs(x4, b));
        acc.b.y += dot32(w, block_inputs(x5, b));
        acc.b.z += dot32(w, block_inputs(x6, b));
        acc.b.w += dot32(w, block_inputs(x7, b));
#endif
#if TILE16
        acc.c.x += dot32(w, block_inputs(x8, b));
        acc.c.y += dot32(w, block_inputs(x9, b));
        acc.c.z += dot32(w, block_inputs(x10, b));
        acc.c.w += dot32(w, block_inputs(x11, b));
        acc.d.x += dot32(w, block_inputs(x12, b));
        acc.d.y += dot32(w, block_inputs(x13, b));
        acc.d.z += dot32(w, block_inputs(x14, b));
        acc.d.w += dot32(w, block_inputs(x15, b));
#endif
    }
#elif BLOCK32
    // Decode without a fused norm: a whole block of 32 per iteration (4× fewer loop iterations,
    // each block's scales read once).
    for (var b = lane; b < p.k / 32u; b += G) {
        acc.a.x += block_dot(row_byte, b, x0);
    }
#else
    for (var u = lane; u < p.k / 8u; u += G) {
        var w = load8(row_byte, u);
#if STAGE_X
#elif NORM
        w.a *= vecs[(p.norm + w.ia) >> 2u];
        w.b *= vecs[(p.norm + w.ib) >> 2u];
#endif
        acc.a.x += dot8(w, x0);
#if TILE4
        acc.a.y += dot8(w, x1);
        acc.a.z += dot8(w, x2);
        acc.a.w += dot8(w, x3);
#endif
#if TILE8
        acc.b.x += dot8(w, x4);
        acc.b.y += dot8(w, x5);
        acc.b.z += dot8(w, x6);
        acc.b.w += dot8(w, x7);
#endif
#if TILE16
        acc.c.x += dot8(w, x8);
        acc.c.y += dot8(w, x9);
        acc.c.z += dot8(w, x10);
        acc.c.w += dot8(w, x11);
        acc.d.x += dot8(w, x12);
        acc.d.y += dot8(w, x13);
        acc.d.z += dot8(w, x14);
        acc.d.w += dot8(w, x15);
#endif
    }
#endif
    return acc;
}
