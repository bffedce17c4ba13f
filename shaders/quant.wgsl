// Block readers for GGML weights stored raw (their GGUF byte layout) in `wq: array<u32>` (or, with
// TEXTURE, in the read-only storage texture `wq: texture_storage_2d<rgba32uint, read>`).
//
// Every type provides `load8(row_byte, u) -> W8`: eight dequantized weights of the row whose first
// byte is `row_byte` (from `row_start`). Units u = 0 .. k/8 cover every element of the row exactly once; which
// elements a unit holds follows the block layout (W8.ia, W8.ib). Exactly one type flag is set per
// pipeline (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL,
// IQ4_XS). The including kernel declares `wq`. Blocks of 110 / 210 / 18 / 22 / 34 bytes can start at
// any even byte, so their readers use the unaligned helpers.
// Everything stays in vec4 registers: no private arrays (slow on CPU Vulkan drivers).

// Where the current row's words are. Raw layout (the GGUF bytes as they are): a row starts at
// byte `row * row_bytes` and readers address absolute bytes. INTERLEAVED layout (CPU drivers; rows
// of whole words only): rows are interleaved in groups of 8, word j of row r at word
// (r / 8) * row_words * 8 + j * 8 + r % 8, so that the 8 SIMD lanes of a CPU driver, one row
// each, read 8 consecutive words; readers then address bytes within the row.
var<private> il_base: u32;

// Sets up reading row `row` (of `row_bytes` bytes) and returns the byte the readers start at.
fn row_start(row: u32, row_bytes: u32) -> u32 {
#if INTERLEAVED
    il_base = (row >> 3u) * (row_bytes >> 2u) * 8u + (row & 7u);
    return 0u;
#else
    return row * row_bytes;
#endif
}

// Word i of the weights as the readers address them (see row_start). VEC4: the kernel declares
// `wq` as `array<vec4<u32>>` (raw layout, blocks aligned to 16 bytes; GPUs then load a block's
// 16-byte groups with one instruction each, see `group_dot_x` in rowdot.wgsl). TEXTURE: the
// words are in an rgba32uint texture `wq`, four per texel, texel t at (t mod 2^TEX_SHIFT,
// t >> TEX_SHIFT) (CPU drivers gather texel fetches far faster than storage loads;
// `gpu::weights`).
fn wq_at(i: u32) -> u32 {
#if TEXTURE
    return wq_texel(i >> 2u)[i & 3u];
#elif VEC4
    return wq[i >> 2u][i & 3u];
#elif INTERLEAVED
    return wq[il_base + i * 8u];
#else
    return wq[i];
#endif
}

#if TEXTURE
// Texel t of the weights: words 4t .. 4t + 4.
fn wq_texel(t: u32) -> vec4<u32> {
    return textureLoad(wq, vec2<u32>(t & ((1u << {{TEX_SHIFT}}u) - 1u), t >> {{TEX_SHIFT}}u));
}

// Words s .. s + 4 of the eight words a, b (s < 4), picked with vector selects.
fn words_from(a: vec4<u32>, b: vec4<u32>, s: u32) -> vec4<u32> {
    let one = select(a, vec4<u32>(a.yzw, b.x), s == 1u);
    let two = select(one, vec4<u32>(a.zw, b.xy), s == 2u);
    return select(two, vec4<u32>(a.w, b.xyz), s == 3u);
}
#endif

// The 16-byte group t of the weights (words 4t .. 4t + 4; raw layout, rows starting at 16-byte
// boundaries): one texel, or one vec4 load with VEC4 (`group_dot_x` in rowdot.wgsl).
#if TEXTURE
fn wq_vec4(t: u32) -> vec4<u32> {
    return wq_texel(t);
}
#elif VEC4
fn wq_vec4(t: u32) -> vec4<u32> {
    return wq[t];
}
#endif

// Words w0 .. w0 + 9 of the weights as the readers address them: w0 .. w0 + 4 in `lo`, the next
// four in `hi`, w0 + 8 in `last` (for whole-block readers; from a texture, three texel fetches).
struct Words9 {
    lo: vec4<u32>,
    hi: vec4<u32>,
    last: u32,
}

fn wq_words9(w0: u32) -> Words9 {
#if TEXTURE
    let shift = w0 & 3u;
    let t = w0 >> 2u;
    let tb = wq_texel(t + 1u);
    let tc = wq_texel(t + 2u);
    return Words9(words_from(wq_texel(t), tb, shift), words_from(tb, tc, shift), tc[shift]);
#else
    let lo = vec4<u32>(wq_at(w0), wq_at(w0 + 1u), wq_at(w0 + 2u), wq_at(w0 + 3u));
    let hi = vec4<u32>(wq_at(w0 + 4u), wq_at(w0 + 5u), wq_at(w0 + 6u), wq_at(w0 + 7u));
    return Words9(lo, hi, wq_at(w0 + 8u));
#endif
}

// A block that starts at an even byte `base` with an f16 (Q8_0, Q5_0): the f16 as `d`, then the
// eight words after it in `lo` and `hi`. At a word boundary those words start 2 bytes into a word
// (each spliced from two), else they are word-aligned after the f16; nine words cover either case.
struct F16Words8 {
    d: f32,
    lo: vec4<u32>,
    hi: vec4<u32>,
}

fn f16_words8(base: u32) -> F16Words8 {
    let w = wq_words9(base >> 2u);
    let odd = (base & 2u) != 0u;
    let next_lo = vec4<u32>(w.lo.yzw, w.hi.x);
    let next_hi = vec4<u32>(w.hi.yzw, w.last);
    let lo = select((w.lo >> vec4<u32>(16u)) | (next_lo << vec4<u32>(16u)), next_lo, odd);
    let hi = select((w.hi >> vec4<u32>(16u)) | (next_hi << vec4<u32>(16u)), next_hi, odd);
    return F16Words8(unpack2x16float(select(w.lo.x, w.lo.x >> 16u, odd)).x, lo, hi);
}

#if PACKED
// Packed blocks (Q4_1, Q8_0, Q6_K in a texture; gpu::weights): a row of `row_pitch` bytes (whole
// texels) is groups of blocks, each group a texel of the blocks' headers then the blocks' quants
// in whole texels. `row_byte` is the row's first byte (r · row_pitch). The first texel of the
// group holding block b, and the block's place in its group:
fn packed_group(row_byte: u32, b: u32, group: u32, group_texels: u32) -> vec2<u32> {
    return vec2<u32>((row_byte >> 4u) + (b / group) * group_texels, b % group);
}

// The f16 in half h (0: low, 1: high) of word w.
fn f16_at(w: u32, h: u32) -> f32 {
    return unpack2x16float(w >> (16u * h)).x;
}

// The f16 header (Q8_0's, Q6_K's d) of the block at place j of a group whose header texel is
// `head` (eight f16s).
fn packed_f16(head: vec4<u32>, j: u32) -> f32 {
    return f16_at(texel_word(head, j >> 1u), j & 1u);
}

// Word i (< 4) of texel v, by selects (a dynamic index compiles to a stack round trip per lane
// on CPU drivers).
fn texel_word(v: vec4<u32>, i: u32) -> u32 {
    let odd = (i & 1u) != 0u;
    return select(select(v.x, v.y, odd), select(v.z, v.w, odd), i >= 2u);
}
#endif

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
        return wq_at(w);
    }
    return (wq_at(w) >> s) | (wq_at(w + 1u) << (32u - s));
}

// An f16 at an even byte offset.
fn ld_f16(b: u32) -> f32 {
    let bits = (wq_at(b >> 2u) >> ((b & 2u) * 8u)) & 0xffffu;
    return unpack2x16float(bits).x;
}

// The byte at any offset.
fn ld_u8(b: u32) -> u32 {
    return (wq_at(b >> 2u) >> ((b & 3u) * 8u)) & 0xffu;
}

// The byte at any offset as a signed integer.
fn ld_i8(b: u32) -> i32 {
    return bitcast<i32>(wq_at(b >> 2u) << (24u - (b & 3u) * 8u)) >> 24u;
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

// Q4_K / Q5_K: the 6-bit (scale, min) pairs 2c and 2c + 1 (ggml's get_scale_min_k4) of the block
// whose first word is w0 (f16 d, f16 dmin, then 12 scale bytes s0 | s1 | s2), returned multiplied
// out as (d scale 2c, d scale 2c+1, dmin min 2c, dmin min 2c+1). Pairs p < 4: low 6 bits of bytes
// p (scale) and p + 4 (min); pairs p >= 4: nibbles of byte p + 4 with the top 2 bits of bytes
// p - 4 (scale) and p (min). `c` is the same for every unit of a thread group in step, so the
// branch costs nothing there and the s2 load is skipped for half the units.
// From a texture the four words come from one or two texel fetches instead.
fn k4_scales(w0: u32, c: u32) -> vec4<f32> {
#if TEXTURE
    // The four words from the one or two texels they lie in.
    let words = words_from(wq_texel(w0 >> 2u), wq_texel((w0 >> 2u) + 1u), w0 & 3u);
#elif VEC4
    let words = wq_vec4(w0 >> 2u);
#else
    // (The s2 word only for the pairs that use it.)
    var s2 = 0u;
    if (c >= 2u) {
        s2 = wq_at(w0 + 3u);
    }
    let words = vec4<u32>(wq_at(w0), wq_at(w0 + 1u), wq_at(w0 + 2u), s2);
#endif
    return k4_scales_of(words, c);
}

// k4_scales of the block whose first four words are `words`.
fn k4_scales_of(words: vec4<u32>, c: u32) -> vec4<f32> {
    let dm = unpack2x16float(words.x);
    let sh = (c & 1u) * 16u;
    let b0 = words.y >> sh;
    let b1 = words.z >> sh;
    var sm = vec4<u32>(b0, b0 >> 8u, b1, b1 >> 8u);
    if (c < 2u) {
        sm &= vec4<u32>(63u);
    } else {
        let b2 = words.w >> sh;
        sm = (vec4<u32>(b2, b2 >> 8u, b2 >> 4u, b2 >> 12u) & vec4<u32>(0xfu)) | (((sm >> vec4<u32>(6u)) & vec4<u32>(3u)) << vec4<u32>(4u));
    }
    return vec4<f32>(sm) * vec4<f32>(dm.xx, dm.yy);
}

// IQ4_NL / IQ4_XS: ggml's kvalues_iq4nl {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38,
// 53, 69, 89, 113} for four 4-bit indices, as signed bytes packed four to a word and picked with
// vector selects (no arrays).
fn iq4nl(n: vec4<u32>) -> vec4<f32> {
    let b2 = (n & vec4<u32>(4u)) != vec4<u32>(0u);
    let lo = select(vec4<u32>(0xbfad9881u), vec4<u32>(0xf6eaddcfu), b2);
    let hi = select(vec4<u32>(0x26190d01u), vec4<u32>(0x71594535u), b2);
    let w = select(lo, hi, (n & vec4<u32>(8u)) != vec4<u32>(0u));
    let s = (n & vec4<u32>(3u)) * 8u;
    return vec4<f32>(bitcast<vec4<i32>>(w << (vec4<u32>(24u) - s)) >> vec4<u32>(24u));
}

#if F32
fn load8(row_byte: u32, u: u32) -> W8 {
    let w = (row_byte >> 2u) + 8u * u;
    let a = vec4<f32>(bitcast<f32>(wq_at(w)), bitcast<f32>(wq_at(w + 1u)), bitcast<f32>(wq_at(w + 2u)), bitcast<f32>(wq_at(w + 3u)));
    let b = vec4<f32>(bitcast<f32>(wq_at(w + 4u)), bitcast<f32>(wq_at(w + 5u)), bitcast<f32>(wq_at(w + 6u)), bitcast<f32>(wq_at(w + 7u)));
    return W8(a, b, 8u * u, 8u * u + 4u);
}
#elif F16
fn load8(row_byte: u32, u: u32) -> W8 {
    let w = (row_byte >> 2u) + 4u * u;
    let a = vec4<f32>(unpack2x16float(wq_at(w)), unpack2x16float(wq_at(w + 1u)));
    let b = vec4<f32>(unpack2x16float(wq_at(w + 2u)), unpack2x16float(wq_at(w + 3u)));
    return W8(a, b, 8u * u, 8u * u + 4u);
}
#elif BF16
fn bf16x2(w: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u));
}
fn load8(row_byte: u32, u: u32) -> W8 {
    let w = (row_byte >> 2u) + 4u * u;
    let a = vec4<f32>(bf16x2(wq_at(w)), bf16x2(wq_at(w + 1u)));
    let b = vec4<f32>(bf16x2(wq_at(w + 2u)), bf16x2(wq_at(w + 3u)));
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
#if PACKED
// Packed groups (gpu::weights): 4 blocks, a texel of their (d, m) pairs then a texel of nibbles
// per block.
const PACK_GROUP: u32 = 4u;
const PACK_GROUP_TEXELS: u32 = 5u;
#endif
// Block b of the row at row_byte: (d, m) and its four words of nibbles.
struct Q41Block {
    dm: vec2<f32>,
    q: vec4<u32>,
}

fn q4_1_block(row_byte: u32, b: u32) -> Q41Block {
#if PACKED
    let g = packed_group(row_byte, b, PACK_GROUP, PACK_GROUP_TEXELS);
    return packed_block(g, wq_texel(g.x));
#elif TEXTURE
    // The block's five words lie in two texels: two fetches instead of five.
    let w0 = (row_byte + b * 20u) >> 2u;
    let s = w0 & 3u;
    let tb = wq_texel((w0 >> 2u) + 1u);
    let head = words_from(wq_texel(w0 >> 2u), tb, s);
    return Q41Block(unpack2x16float(head.x), vec4<u32>(head.yzw, tb[s]));
#else
    let w0 = (row_byte + b * 20u) >> 2u;
    return Q41Block(unpack2x16float(wq_at(w0)), vec4<u32>(wq_at(w0 + 1u), wq_at(w0 + 2u), wq_at(w0 + 3u), wq_at(w0 + 4u)));
#endif
}

#if PACKED
// The block at place g.y of the packed group g (packed_group) whose header texel is `head`.
fn packed_block(g: vec2<u32>, head: vec4<u32>) -> Q41Block {
    return Q41Block(unpack2x16float(texel_word(head, g.y)), wq_texel(g.x + 1u + g.y));
}
#endif

fn load8(row_byte: u32, u: u32) -> W8 {
    let blk = u >> 2u;
    let i = u & 3u;
#if PACKED
    let block = q4_1_block(row_byte, blk);
    let dm = block.dm;
    let q = texel_word(block.q, i);
#else
    let base = row_byte + blk * 20u;
    let dm = unpack2x16float(wq_at(base >> 2u));
    let q = wq_at((base >> 2u) + 1u + i);
#endif
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
    let dm = unpack2x16float(wq_at(w0));
    let qh = wq_at(w0 + 1u);
    let q = wq_at(w0 + 2u + i);
    let a = (nib_lo(q) + high_bits(qh, 4u * i)) * dm.x + dm.y;
    let b = (nib_hi(q) + high_bits(qh, 4u * i + 16u)) * dm.x + dm.y;
    let ia = blk * 32u + 4u * i;
    return W8(a, b, ia, ia + 16u);
}
#elif Q8_0
// 34 bytes per 32: f16 d, 32 signed bytes; w = q d.
#if PACKED
// Packed groups (gpu::weights): 8 blocks, a texel of their f16 d then two texels of quants per
// block.
const PACK_GROUP: u32 = 8u;
const PACK_GROUP_TEXELS: u32 = 17u;

// d of the block at place g.y of the group at texel g.x (packed_group).
fn q8_0_packed_d(g: vec2<u32>) -> f32 {
    return packed_f16(wq_texel(g.x), g.y);
}

// The block at place g.y of the packed group g (packed_group) whose header texel is `head`.
fn packed_block(g: vec2<u32>, head: vec4<u32>) -> F16Words8 {
    let q = g.x + 1u + 2u * g.y;
    return F16Words8(packed_f16(head, g.y), wq_texel(q), wq_texel(q + 1u));
}
#endif
// Block b of the row at row_byte: d and its eight words of quants.
fn q8_0_block(row_byte: u32, b: u32) -> F16Words8 {
#if PACKED
    let g = packed_group(row_byte, b, PACK_GROUP, PACK_GROUP_TEXELS);
    return packed_block(g, wq_texel(g.x));
#else
    return f16_words8(row_byte + b * 34u);
#endif
}

fn load8(row_byte: u32, u: u32) -> W8 {
    let blk = u >> 2u;
    let i = u & 3u;
    let ia = blk * 32u + 8u * i;
#if PACKED
    // Unit i: quant words 2i, 2i + 1 of the block, in its texel i / 2.
    let g = packed_group(row_byte, blk, PACK_GROUP, PACK_GROUP_TEXELS);
    let d = q8_0_packed_d(g);
    let q = wq_texel(g.x + 1u + 2u * g.y + (i >> 1u));
    let odd = (i & 1u) != 0u;
    return W8(i8x4(select(q.x, q.z, odd)) * d, i8x4(select(q.y, q.w, odd)) * d, ia, ia + 4u);
#else
    let base = row_byte + blk * 34u;
    let d = ld_f16(base);
    let a = i8x4(ld_u32(base + 2u + 8u * i)) * d;
    let b = i8x4(ld_u32(base + 6u + 8u * i)) * d;
    return W8(a, b, ia, ia + 4u);
#endif
}
#elif Q4_K
// 144 bytes per 256: f16 d, f16 dmin, 12 bytes of 6-bit (scale, min) pairs, 128 bytes of nibbles.
// Chunk c (elements 64c .. 64c+64) uses nibble bytes 32c .. 32c+32: low nibbles are its first 32
// elements (pair 2c), high nibbles its last 32 (pair 2c+1); w = d sc q - dmin m.
// Unit u: block u/32, chunk c = (u/8)%4, nibble word j = u%8: elements 64c+4j.. and 64c+32+4j..
fn load8(row_byte: u32, u: u32) -> W8 {
    let c = (u >> 3u) & 3u;
    let w0 = (row_byte >> 2u) + (u >> 5u) * 36u;
    let f = k4_scales(w0, c);
    let q = wq_at(w0 + 4u + (u & 31u));
    let ia = (u >> 5u) * 256u + c * 64u + 4u * (u & 7u);
    return W8(nib_lo(q) * f.x - f.z, nib_hi(q) * f.y - f.w, ia, ia + 32u);
}
#elif Q5_K
// 176 bytes per 256: as Q4_K with qh[32] (fifth bits) before the 128 nibble bytes. Element
// 64c + l (l < 32) takes bit 2c of qh[l], element 64c + 32 + l bit 2c + 1. Units as Q4_K.
fn load8(row_byte: u32, u: u32) -> W8 {
    let c = (u >> 3u) & 3u;
    let j = u & 7u;
    let w0 = (row_byte >> 2u) + (u >> 5u) * 44u;
    let f = k4_scales(w0, c);
    let h = bytes4(wq_at(w0 + 4u + j)) >> vec4<u32>(2u * c);
    let q = wq_at(w0 + 12u + (u & 31u));
    let a = (nib_lo(q) + vec4<f32>((h & vec4<u32>(1u)) << vec4<u32>(4u))) * f.x - f.z;
    let b = (nib_hi(q) + vec4<f32>((h & vec4<u32>(2u)) << vec4<u32>(3u))) * f.y - f.w;
    let ia = (u >> 5u) * 256u + c * 64u + 4u * j;
    return W8(a, b, ia, ia + 32u);
}
#elif Q6_K
// 210 bytes per 256: ql[128] (low 4 bits), qh[64] (high 2 bits), 16 signed 8-bit scales, f16 d;
// w = d sc (q - 32). Half n (elements 128n ..) uses ql[64n ..], qh[32n ..], scales[8n ..]: element
// 128n + 32k + l (k < 4, l < 32) is nibble k/2 of ql[64n + 32(k%2) + l] with bits 2k, 2k+1 of
// qh[32n + l] on top, scale 8n + 2k + l/16.
// Unit u: block u/32, n = (u/16)%2, k = (u/8)%2 and k + 2, l = 4(u%8) ..: one ql and one qh word.
#if PACKED
// Packed groups (gpu::weights): 8 blocks, a texel of their f16 d then each block's first 208
// bytes (ql, qh, scales: 13 texels).
const PACK_GROUP: u32 = 8u;
const PACK_GROUP_TEXELS: u32 = 105u;

// Block b of the row at row_byte: the first byte of its ql, qh and scales, and its d.
fn q6_k_block(row_byte: u32, b: u32) -> Q6KBlock {
    let g = packed_group(row_byte, b, PACK_GROUP, PACK_GROUP_TEXELS);
    return Q6KBlock((g.x + 1u + 13u * g.y) * 16u, packed_f16(wq_texel(g.x), g.y));
}
#else
fn q6_k_block(row_byte: u32, b: u32) -> Q6KBlock {
    let base = row_byte + b * 210u;
    return Q6KBlock(base, ld_f16(base + 208u));
}
#endif

struct Q6KBlock {
    base: u32,
    d: f32,
}

fn load8(row_byte: u32, u: u32) -> W8 {
    let n = (u >> 4u) & 1u;
    let k = (u >> 3u) & 1u;
    let g = u & 7u;
    let blk = q6_k_block(row_byte, u >> 5u);
    let base = blk.base;
    let ql = bytes4(ld_u32(base + 64u * n + 32u * k + 4u * g));
    let qh = bytes4(ld_u32(base + 128u + 32u * n + 4u * g));
    let s = base + 192u + 8u * n + 2u * k + (g >> 2u);
    let d = blk.d;
    let qa = (ql & vec4<u32>(0xfu)) | (((qh >> vec4<u32>(2u * k)) & vec4<u32>(3u)) << vec4<u32>(4u));
    let qb = (ql >> vec4<u32>(4u)) | (((qh >> vec4<u32>(2u * k + 4u)) & vec4<u32>(3u)) << vec4<u32>(4u));
    let a = (vec4<f32>(qa) - 32.0) * (d * f32(ld_i8(s)));
    let b = (vec4<f32>(qb) - 32.0) * (d * f32(ld_i8(s + 4u)));
    let ia = (u >> 5u) * 256u + 128u * n + 32u * k + 4u * g;
    return W8(a, b, ia, ia + 64u);
}
#elif Q3_K
// 110 bytes per 256: hmask[32], qs[64] (low 2 bits), 12 bytes of 16 6-bit scales (biased by 32),
// f16 d; w = d (sc - 32) (q2 - (hbit ? 0 : 4)). Element 128h + 32j + l (j < 4, l < 32) has bits
// 2j, 2j+1 of qs[32h + l], bit 4h + j of hmask[l], scale i = 8h + 2j + l/16 whose low 4 bits are
// nibble h of byte i%8 and high 2 bits are bits 2(i/4), +1 of byte 8 + i%4.
// Unit u: block u/32, h = (u/16)%2, j = (u/8)%2 and j + 2, l = 4(u%8) ..
fn load8(row_byte: u32, u: u32) -> W8 {
    let h = (u >> 4u) & 1u;
    let j = (u >> 3u) & 1u;
    let g = u & 7u;
    let base = row_byte + (u >> 5u) * 110u;
    let hm = bytes4(ld_u32(base + 4u * g)) >> vec4<u32>(4u * h + j);
    let q = bytes4(ld_u32(base + 32u + 32u * h + 4u * g)) >> vec4<u32>(2u * j);
    let s = base + 96u + 2u * j + (g >> 2u);
    let hi = ld_u8(s + 8u) >> (4u * h);
    let sa = ((ld_u8(s) >> (4u * h)) & 0xfu) | ((hi & 3u) << 4u);
    let sb = ((ld_u8(s + 4u) >> (4u * h)) & 0xfu) | (((hi >> 2u) & 3u) << 4u);
    let d = ld_f16(base + 108u);
    let qa = vec4<i32>(q & vec4<u32>(3u)) + vec4<i32>((hm & vec4<u32>(1u)) << vec4<u32>(2u)) - 4;
    let qb = vec4<i32>((q >> vec4<u32>(4u)) & vec4<u32>(3u)) + vec4<i32>((hm & vec4<u32>(4u))) - 4;
    let a = vec4<f32>(qa) * (d * f32(i32(sa) - 32));
    let b = vec4<f32>(qb) * (d * f32(i32(sb) - 32));
    let ia = (u >> 5u) * 256u + 128u * h + 32u * j + 4u * g;
    return W8(a, b, ia, ia + 64u);
}
#elif Q2_K
// 84 bytes per 256: 16 scale bytes (low nibble scale, high nibble min), qs[64] (2 bits), f16 d,
// f16 dmin; w = d sc q - dmin m. Element 128h + 32j + l (j < 4, l < 32) has bits 2j, 2j+1 of
// qs[32h + l] and scale byte 8h + 2j + l/16. Units as Q3_K.
fn load8(row_byte: u32, u: u32) -> W8 {
    let h = (u >> 4u) & 1u;
    let j = (u >> 3u) & 1u;
    let g = u & 7u;
    let w0 = (row_byte >> 2u) + (u >> 5u) * 21u;
    let dm = unpack2x16float(wq_at(w0 + 20u));
    let q = bytes4(wq_at(w0 + 4u + 8u * h + g)) >> vec4<u32>(2u * j);
    let sh = 8u * (2u * j + (g >> 2u));
    let sa = wq_at(w0 + 2u * h) >> sh;
    let sb = wq_at(w0 + 2u * h + 1u) >> sh;
    let a = vec4<f32>(q & vec4<u32>(3u)) * (dm.x * f32(sa & 0xfu)) - dm.y * f32((sa >> 4u) & 0xfu);
    let b = vec4<f32>((q >> vec4<u32>(4u)) & vec4<u32>(3u)) * (dm.x * f32(sb & 0xfu)) - dm.y * f32((sb >> 4u) & 0xfu);
    let ia = (u >> 5u) * 256u + 128u * h + 32u * j + 4u * g;
    return W8(a, b, ia, ia + 64u);
}
#elif IQ4_NL
// 18 bytes per 32: f16 d, 16 bytes of nibbles laid out as Q4_0; w = d kvalues[q].
fn load8(row_byte: u32, u: u32) -> W8 {
    let blk = u >> 2u;
    let i = u & 3u;
    let base = row_byte + blk * 18u;
    let d = ld_f16(base);
    let q = bytes4(ld_u32(base + 2u + 4u * i));
    let ia = blk * 32u + 4u * i;
    return W8(iq4nl(q & vec4<u32>(0xfu)) * d, iq4nl(q >> vec4<u32>(4u)) * d, ia, ia + 16u);
}
#elif IQ4_XS
// 136 bytes per 256: f16 d, u16 scales_h, scales_l[4], 128 bytes of nibbles; sub-block i
// (32 elements, 16 bytes laid out as IQ4_NL) has the 6-bit scale ls = nibble i%2 of scales_l[i/2]
// | bits 2i, 2i+1 of scales_h << 4; w = d (ls - 32) kvalues[q].
// Unit u: block u/32, sub-block i = (u/4)%8, nibble word u%4: elements 32i + 4(u%4) .. and +16.
fn load8(row_byte: u32, u: u32) -> W8 {
    let i = (u >> 2u) & 7u;
    let w0 = (row_byte >> 2u) + (u >> 5u) * 34u;
    let head = wq_at(w0);
    let ls = ((wq_at(w0 + 1u) >> (4u * i)) & 0xfu) | (((head >> (16u + 2u * i)) & 3u) << 4u);
    let dl = unpack2x16float(head).x * f32(i32(ls) - 32);
    let q = bytes4(wq_at(w0 + 2u + (u & 31u)));
    let ia = (u >> 5u) * 256u + 32u * i + 4u * (u & 3u);
    return W8(iq4nl(q & vec4<u32>(0xfu)) * dl, iq4nl(q >> vec4<u32>(4u)) * dl, ia, ia + 16u);
}
#endif
