//! `attn_in`: RMSNorm → Q/K/V projections → biases → per-head Q/K RMSNorm → RoPE → queries out,
//! keys and values into the layer's KV cache (f16 pairs or f32, `shaders/kv.wgsl`).

use ferrolm::gpu::matmul::{attn_in, AttnInArgs, Input, RopeArgs, Rows};
use ferrolm::gpu::{Context, KvLayer, StepState, WeightMatrix};
use ferrolm::quant::testdata::Rng;
use ferrolm::quant::GgmlType;

use crate::*;

/// Element `elem` of a KV cache read back as words (f16 pairs: the even element in the low half).
pub fn kv_value(words: &[u32], elem: usize, f16: bool) -> f32 {
    if f16 {
        half::f16::from_bits((words[elem / 2] >> (16 * (elem % 2))) as u16).to_f32()
    } else {
        f32::from_bits(words[elem])
    }
}

/// Element `elem` of part `part` (0 keys, 1 values) at `pos` in a cache of `ctx_len` positions of
/// `kv_dim` elements each.
pub fn kv_elem(part: usize, pos: usize, e: usize, ctx_len: usize, kv_dim: usize) -> usize {
    (part * ctx_len + pos) * kv_dim + e
}

/// Values with their tolerances, through the steps of the reference.
#[derive(Clone)]
struct Vals {
    v: Vec<f64>,
    tol: Vec<f64>,
}

impl Vals {
    fn add_bias(&mut self, b: &[f32]) {
        for (v, &b) in self.v.iter_mut().zip(b) {
            *v += b as f64;
        }
    }
    /// RMSNorm over the head with weight `w`; the tolerance follows the error of 1/rms.
    fn rms_norm(&mut self, w: &[f32], eps: f32) {
        let s = inv_rms(&self.v, eps);
        let ss: f64 = self.v.iter().map(|v| v * v).sum();
        let rel = self.v.iter().zip(&self.tol).map(|(v, t)| v.abs() * t).sum::<f64>() / ss + 1e-6;
        for ((v, t), &w) in self.v.iter_mut().zip(&mut self.tol).zip(w) {
            *t = s * (w as f64).abs() * (*t + v.abs() * rel);
            *v *= s * w as f64;
        }
    }
    /// RoPE at `pos` as `attn_in.wgsl` documents it.
    fn rope(&mut self, r: &RopeArgs, factors: &[f32], pos: u32) {
        let n_rot = r.n_rot as usize;
        let ms = r.mscale as f64;
        // f32 angle arithmetic on the GPU (pow, sin, cos): error grows with the position.
        let angle_err = 2e-5 * (pos as f64 + 4.0);
        for j in 0..n_rot / 2 {
            let mut theta = pos as f64 * r.freq_scale as f64 * (r.freq_base as f64).powf(-2.0 * j as f64 / n_rot as f64);
            if !factors.is_empty() {
                theta /= factors[j] as f64;
            }
            let (ia, ib) = if r.neox { (j, j + n_rot / 2) } else { (2 * j, 2 * j + 1) };
            let (a, b) = (self.v[ia], self.v[ib]);
            let t = ms * (self.tol[ia] + self.tol[ib] + (a.abs() + b.abs()) * angle_err);
            self.v[ia] = ms * (a * theta.cos() - b * theta.sin());
            self.v[ib] = ms * (a * theta.sin() + b * theta.cos());
            self.tol[ia] = t;
            self.tol[ib] = t;
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct AttnInCase {
    /// Types of Wq, Wk, Wv (separate matrices), or of one fused [Q + 2 KV rows, D] matrix.
    pub types: [GgmlType; 3],
    pub fused: bool,
    pub d: u32,
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    pub n_tokens: u32,
    pub pos0: u32,
    pub kv_f16: bool,
    pub norm: bool,
    pub biases: bool,
    pub head_norms: bool,
    pub neox: bool,
    pub n_rot: u32,
    pub freq_base: f32,
    pub freq_scale: f32,
    pub factors: bool,
    pub mscale: f32,
}

pub fn base_case(head_dim: u32, n_tokens: u32, pos0: u32, kv_f16: bool) -> AttnInCase {
    AttnInCase {
        types: [GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::F16],
        fused: false,
        d: 256,
        n_heads: 3,
        n_kv_heads: 1,
        head_dim,
        n_tokens,
        pos0,
        kv_f16,
        norm: true,
        biases: false,
        head_norms: false,
        neox: false,
        n_rot: head_dim,
        freq_base: 10000.0,
        freq_scale: 1.0,
        factors: false,
        mscale: 1.0,
    }
}

/// Runs one `attn_in` and checks q_out, every cache entry it writes, and that it writes nothing
/// else (q_out's tail, the cache's other positions: bit-identical). An f16 cache whose heads fill
/// whole texels is checked both in a buffer and in a texture (`gpu::kv`).
pub fn check_attn_in(ctx: &Context, c: AttnInCase, seed: u64) {
    check_attn_in_cache(ctx, c, seed, false);
    if c.kv_f16 && c.head_dim.is_multiple_of(8) {
        check_attn_in_cache(ctx, c, seed, true);
    }
}

fn check_attn_in_cache(ctx: &Context, c: AttnInCase, seed: u64, kv_texture: bool) {
    let (d, hd, nh, nkv, n_tokens) = (c.d as usize, c.head_dim as usize, c.n_heads as usize, c.n_kv_heads as usize, c.n_tokens as usize);
    let (q_dim, kv_dim) = (nh * hd, nkv * hd);
    let ctx_len = c.pos0 as usize + n_tokens + 5;

    // The weights: CPU values of the Q, K, V rows and the GPU matrices with the first row of each.
    let (q_ref, k_ref, v_ref): (Vec<f32>, Vec<f32>, Vec<f32>);
    let matrices: Vec<WeightMatrix>;
    let firsts: [u32; 3];
    if c.fused {
        let rows = (q_dim + 2 * kv_dim) as u32;
        let (bytes, values) = random_matrix(c.types[0], c.d, rows, seed);
        matrices = vec![upload_matrix(ctx, c.types[0], c.d, rows, &bytes, None)];
        q_ref = values[..q_dim * d].to_vec();
        k_ref = values[q_dim * d..(q_dim + kv_dim) * d].to_vec();
        v_ref = values[(q_dim + kv_dim) * d..].to_vec();
        firsts = [0, q_dim as u32, (q_dim + kv_dim) as u32];
    } else {
        let mut refs = Vec::new();
        let mut ms = Vec::new();
        for (i, rows) in [q_dim, kv_dim, kv_dim].into_iter().enumerate() {
            let (bytes, values) = random_matrix(c.types[i], c.d, rows as u32, seed + i as u64);
            ms.push(upload_matrix(ctx, c.types[i], c.d, rows as u32, &bytes, None));
            refs.push(values);
        }
        matrices = ms;
        v_ref = refs.pop().unwrap();
        k_ref = refs.pop().unwrap();
        q_ref = refs.pop().unwrap();
        firsts = [0; 3];
    }
    let m = |i: usize| &matrices[if c.fused { 0 } else { i }];
    let (wq, wk, wv) = (Rows { w: m(0), first: firsts[0] }, Rows { w: m(1), first: firsts[1] }, Rows { w: m(2), first: firsts[2] });

    let mut rng = Rng::new(seed ^ 0xa77e);
    let x_offset = 4;
    let x = normals(&mut rng, x_offset + n_tokens * d + 3, 2.0);
    let norm_w = norm_weights(&mut rng, d);
    let (q_bias, k_bias, v_bias) = (normals(&mut rng, q_dim, 0.5), normals(&mut rng, kv_dim, 0.5), normals(&mut rng, kv_dim, 0.5));
    let (q_norm, k_norm) = (norm_weights(&mut rng, hd), norm_weights(&mut rng, hd));
    let factors: Vec<f32> = (0..c.n_rot / 2).map(|_| rng.range_f32(1.0, 8.0)).collect();
    let eps = 1e-5;
    let head_eps = 1e-6;
    let mut vecs = Vecs::new();
    let norm_at = vecs.push(&norm_w);
    let biases = [vecs.push(&q_bias), vecs.push(&k_bias), vecs.push(&v_bias)];
    let head_norms = [vecs.push(&q_norm), vecs.push(&k_norm)];
    let factors_at = vecs.push(&factors);
    let rope = RopeArgs {
        neox: c.neox,
        n_rot: c.n_rot,
        freq_base: c.freq_base,
        freq_scale: c.freq_scale,
        factors: c.factors.then_some(factors_at),
        mscale: c.mscale,
    };
    let args = AttnInArgs {
        n_heads: c.n_heads,
        n_kv_heads: c.n_kv_heads,
        head_dim: c.head_dim,
        ctx_len: ctx_len as u32,
        kv_f16: c.kv_f16,
        q_bias: c.biases.then_some(biases[0]),
        k_bias: c.biases.then_some(biases[1]),
        v_bias: c.biases.then_some(biases[2]),
        q_norm: c.head_norms.then_some(head_norms[0]),
        k_norm: c.head_norms.then_some(head_norms[1]),
        head_eps,
        rope,
    };

    let q_len = n_tokens * q_dim + 3;
    let q0 = normals(&mut rng, q_len, 1.0);
    let kv_words = if c.kv_f16 { ctx_len * kv_dim } else { 2 * ctx_len * kv_dim };
    let kv0: Vec<u32> = (0..kv_words).map(|_| rng.next_u32()).collect();
    let (x_buf, vecs_buf, q_buf) = (upload(ctx, "x", &x), vecs.upload(ctx), upload(ctx, "q", &q0));
    let kv_buf = if kv_texture {
        KvLayer::texture(ctx, "kv", 2 * (ctx_len * kv_dim) as u64).unwrap()
    } else {
        KvLayer::buffer(ctx, "kv", kv_words as u64).unwrap()
    };
    kv_buf.write_words(ctx, &kv0);
    let input = Input { x: &x_buf, n_tokens: c.n_tokens, x_offset: x_offset as u32, x_stride: d as u32, vecs: &vecs_buf, norm: c.norm.then_some((norm_at, eps)) };
    run_with(ctx, StepState::at(c.pos0), |step| attn_in(step, wq, wk, wv, &input, &q_buf, &kv_buf, &args));
    let q_got = read(ctx, &q_buf, q_len);
    let kv_got = pollster::block_on(kv_buf.read_words(ctx, kv_words)).unwrap();

    let mut q_want: Vec<f64> = q0.iter().map(|&v| v as f64).collect();
    let mut q_tol = vec![0.0; q_len];
    let mut written = vec![false; kv_words];
    let (mut kv_seen, mut kv_want, mut kv_tol) = (Vec::new(), Vec::new(), Vec::new());
    for t in 0..n_tokens {
        let pos = c.pos0 + t as u32;
        let xt = normalized_input(&x[x_offset + t * d..][..d], c.norm.then_some((&norm_w[..], eps)));
        // kind 0: query heads, 1: key heads, 2: value heads.
        for (kind, (w_ref, heads, bias, head_norm)) in [(&q_ref, nh, &q_bias, &q_norm), (&k_ref, nkv, &k_bias, &k_norm), (&v_ref, nkv, &v_bias, &k_norm)].into_iter().enumerate() {
            for h in 0..heads {
                let (mut v, mut tol) = (Vec::new(), Vec::new());
                for i in 0..hd {
                    let (dot, mag) = dot_and_magnitude(&w_ref[(h * hd + i) * d..][..d], &xt);
                    v.push(dot);
                    tol.push(dot_tol(mag));
                }
                let mut vals = Vals { v, tol };
                if c.biases {
                    vals.add_bias(&bias[h * hd..][..hd]);
                }
                if kind < 2 {
                    if c.head_norms {
                        vals.rms_norm(head_norm, head_eps);
                    }
                    vals.rope(&rope, if c.factors { &factors } else { &[] }, pos);
                }
                if kind == 0 {
                    let o = (t * nh + h) * hd;
                    q_want[o..o + hd].copy_from_slice(&vals.v);
                    q_tol[o..o + hd].copy_from_slice(&vals.tol);
                    continue;
                }
                for i in 0..hd {
                    let elem = kv_elem(kind - 1, pos as usize, h * hd + i, ctx_len, kv_dim);
                    written[if c.kv_f16 { elem / 2 } else { elem }] = true;
                    kv_seen.push(kv_value(&kv_got, elem, c.kv_f16));
                    kv_want.push(vals.v[i]);
                    // f16: half an ulp (2^-11 relative) of rounding, and subnormals.
                    kv_tol.push(if c.kv_f16 { vals.tol[i] * 1.001 + vals.v[i].abs() * 4.9e-4 + 1e-7 } else { vals.tol[i] });
                }
            }
        }
    }
    assert_close(&format!("attn_in q_out {c:?} (KV in a texture: {kv_texture})"), &q_got, &q_want, &q_tol);
    assert_close(&format!("attn_in KV cache entries {c:?} (KV in a texture: {kv_texture})"), &kv_seen, &kv_want, &kv_tol);
    for (i, (&got, &before)) in kv_got.iter().zip(&kv0).enumerate() {
        assert!(written[i] || got == before, "attn_in {c:?} (KV in a texture: {kv_texture}): KV word {i} was not to be written: {got:#x}, was {before:#x}");
    }
}

/// A few cases (the threads-per-row test runs them on its own context).
pub fn check_some(ctx: &Context, seed: u64) {
    let all = |c: AttnInCase| AttnInCase { biases: true, head_norms: true, factors: true, mscale: 1.2, ..c };
    check_attn_in(ctx, all(base_case(64, 9, 7, true)), seed);
    check_attn_in(ctx, AttnInCase { neox: true, n_rot: 64, ..all(base_case(128, 1, 7, false)) }, seed + 1);
    check_attn_in(ctx, AttnInCase { norm: false, ..base_case(64, 3, 0, false) }, seed + 2);
    check_attn_in(ctx, AttnInCase { n_heads: 1, ..all(base_case(256, 9, 7, true)) }, seed + 3);
    check_attn_in(ctx, AttnInCase { neox: true, n_rot: 32, ..base_case(80, 4, 7, false) }, seed + 4);
    check_attn_in(ctx, all(base_case(80, 20, 3, true)), seed + 7);
    // Decode without a fused input norm (the path that takes rows four at a time with t1r4):
    // separate matrices of three types, and a fused one whose heads are not a multiple of 4.
    let types = [GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q4_K];
    check_attn_in(ctx, AttnInCase { norm: false, types, ..all(base_case(64, 1, 5, true)) }, seed + 5);
    check_attn_in(ctx, AttnInCase { norm: false, fused: true, n_rot: 34, ..base_case(66, 1, 3, false) }, seed + 6);
}

const TYPE_SETS: [[GgmlType; 3]; 4] = [
    [GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::F16],
    [GgmlType::Q6_K, GgmlType::Q4_1, GgmlType::IQ4_XS],
    [GgmlType::BF16, GgmlType::Q5_0, GgmlType::Q3_K],
    [GgmlType::IQ4_NL, GgmlType::F32, GgmlType::Q5_K],
];

/// Every combination of head size, token count (tiles 1, 4, 8, 16: one partial, then a full and a
/// partial one), position and cache type, with the
/// options (biases, Q/K norms, RoPE mode, partial rotary, factors, mscale, scaled frequencies,
/// input norm, weight types) varying from case to case.
#[test]
fn attn_in_heads_rope_and_kv_write() {
    let ctx = common::gpu();
    let mut i = 0u32;
    for (head_dim, n_heads, n_kv_heads) in [(64, 3, 1), (128, 2, 2)] {
        for n_tokens in [1, 3, 9, 20] {
            for pos0 in [0, 7] {
                for kv_f16 in [false, true] {
                    i += 1;
                    let c = AttnInCase {
                        types: TYPE_SETS[i as usize % 4],
                        n_heads,
                        n_kv_heads,
                        neox: i.is_multiple_of(2),
                        n_rot: if (i / 2).is_multiple_of(2) { head_dim } else { head_dim / 2 },
                        biases: !i.is_multiple_of(3),
                        head_norms: i % 3 != 1,
                        norm: i % 4 != 3,
                        factors: i % 5 < 2,
                        mscale: if i % 2 == 1 { 1.25 } else { 1.0 },
                        freq_base: if i % 3 == 2 { 500000.0 } else { 10000.0 },
                        freq_scale: if i % 4 == 1 { 0.25 } else { 1.0 },
                        ..base_case(head_dim, n_tokens, pos0, kv_f16)
                    };
                    check_attn_in(&ctx, c, 20000 + 10 * i as u64);
                }
            }
        }
    }
}

/// One fused QKV matrix (Phi-3), every option on and off, heads of 80 and 96 dims (not a
/// multiple of the workgroup; Phi-2's partial rotary, Phi-3's full one) and of 256 dims (with 8
/// tokens, the largest tile the kernel's workgroup memory holds).
#[test]
fn attn_in_fused_all_options_and_256_dims() {
    let ctx = common::gpu();
    let all = |c: AttnInCase| AttnInCase { biases: true, head_norms: true, factors: true, mscale: 0.8, neox: true, n_rot: c.head_dim / 2, ..c };
    check_attn_in(&ctx, AttnInCase { fused: true, types: [GgmlType::Q5_1; 3], ..base_case(64, 3, 7, true) }, 21000);
    check_attn_in(&ctx, AttnInCase { fused: true, types: [GgmlType::Q4_K; 3], ..all(base_case(128, 9, 7, false)) }, 21001);
    check_attn_in(&ctx, all(base_case(64, 4, 0, false)), 21002);
    check_attn_in(&ctx, AttnInCase { norm: false, ..base_case(128, 1, 0, true) }, 21003);
    check_attn_in(&ctx, AttnInCase { neox: true, n_rot: 32, biases: true, n_heads: 4, n_kv_heads: 4, ..base_case(80, 3, 7, true) }, 21004);
    check_attn_in(&ctx, AttnInCase { fused: true, types: [GgmlType::Q6_K; 3], neox: true, ..base_case(96, 9, 0, false) }, 21005);
    check_attn_in(&ctx, AttnInCase { n_rot: 20, factors: true, mscale: 1.1, ..base_case(96, 1, 7, true) }, 21006);
    // Decode with every option but the input norm (whose weight here is not where a uniform
    // binding can start), so that CPU drivers take four rows per thread (ROWS4) in workgroups
    // sized to the head: 16 threads for 64 dims, 32 for 80, the head norms summed over them.
    check_attn_in(&ctx, AttnInCase { norm: false, ..all(base_case(64, 1, 5, true)) }, 21007);
    check_attn_in(&ctx, AttnInCase { norm: false, n_heads: 3, n_kv_heads: 1, ..all(base_case(80, 1, 3, true)) }, 21008);
    for (n_tokens, kv_f16) in [(1, true), (9, false), (8, true), (20, false)] {
        let c = AttnInCase { n_heads: 2, n_kv_heads: 1, ..base_case(256, n_tokens, 7, kv_f16) };
        check_attn_in(&ctx, if n_tokens >= 8 { all(c) } else { c }, 21010 + n_tokens as u64);
    }
}

/// Head sizes and rotary widths the kernel cannot run are rejected before anything is recorded.
#[test]
fn attn_in_rejects_bad_heads() {
    let ctx = common::gpu();
    let w = WeightMatrix::allocate(&ctx, "w", GgmlType::Q8_0, 64, 16 * 32).unwrap();
    let buf = ctx.storage_buffer("b", 4096).unwrap();
    let input = Input::dense(&buf, &buf, 1, 64);
    let rope = RopeArgs { neox: false, n_rot: 32, freq_base: 10000.0, freq_scale: 1.0, factors: None, mscale: 1.0 };
    let ok = AttnInArgs { n_heads: 2, n_kv_heads: 1, head_dim: 32, ctx_len: 8, kv_f16: true, q_bias: None, k_bias: None, v_bias: None, q_norm: None, k_norm: None, head_eps: 1e-6, rope };
    let mut step = ferrolm::gpu::Step::new(&ctx);
    let bad = [
        AttnInArgs { head_dim: 258, ..ok },
        AttnInArgs { head_dim: 33, ..ok },
        AttnInArgs { rope: RopeArgs { n_rot: 34, ..rope }, ..ok },
        AttnInArgs { rope: RopeArgs { n_rot: 31, ..rope }, ..ok },
        // More query rows than the matrix has.
        AttnInArgs { n_heads: 17, ..ok },
    ];
    let kv = KvLayer::Buffer(buf.clone());
    for a in bad {
        assert!(attn_in(&mut step, Rows::all(&w), Rows::all(&w), Rows::all(&w), &input, &buf, &kv, &a).is_err(), "{a:?}");
    }
    // A cache in a texture holds f16 heads of whole texels only.
    let texture = KvLayer::texture(&ctx, "kv", 1024).unwrap();
    for a in [AttnInArgs { kv_f16: false, ..ok }, AttnInArgs { head_dim: 36, rope: RopeArgs { n_rot: 36, ..rope }, ..ok }] {
        assert!(attn_in(&mut step, Rows::all(&w), Rows::all(&w), Rows::all(&w), &input, &buf, &texture, &a).is_err(), "{a:?} into a texture");
    }
    assert_eq!(step.dispatches(), 0);
    attn_in(&mut step, Rows::all(&w), Rows::all(&w), Rows::all(&w), &input, &buf, &kv, &ok).expect("a valid shape");
    attn_in(&mut step, Rows::all(&w), Rows::all(&w), Rows::all(&w), &input, &buf, &texture, &ok).expect("a valid shape, cache in a texture");
}
