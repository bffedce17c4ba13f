//! Every GPU kernel against a CPU reference (computed in f64) on random inputs.
//!
//! Sizes are small and deliberately odd (row counts that are not multiples of a workgroup, row
//! lengths of 32·m with m odd, token counts that straddle the prefill tile) so the suite runs in
//! seconds on a CPU Vulkan driver (lavapipe) while still hitting the edge cases.

mod common;

use ferrolm::gpu::matmul::{embed, matmul, MatmulArgs};
use ferrolm::gpu::ops::{self, AttentionArgs, Elementwise, Rope, RopeMode, TopK};
use ferrolm::gpu::{Context, Step, WeightMatrix};
use ferrolm::quant::testdata::{random_blocks, Rng};
use ferrolm::quant::{dequantize, GgmlType};

/// Every weight type the GPU kernels read.
const GPU_TYPES: [GgmlType; 15] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::IQ4_NL,
    GgmlType::IQ4_XS,
];

/// Row lengths for a type: `small` for types with blocks of at most 32 elements; the 256-element
/// block types get 256, or 768 for `small > 160` (3 blocks: not a multiple of 512, and with Q6_K /
/// Q3_K rows of 630 / 330 bytes every other row starts 2 bytes off a word boundary).
fn row_len(ty: GgmlType, small: u32) -> u32 {
    match ty.block_elems() {
        256 if small > 160 => 768,
        256 => 256,
        _ => small,
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn read(ctx: &Context, buf: &wgpu::Buffer, n: usize) -> Vec<f32> {
    pollster::block_on(ctx.read_f32(buf, n)).expect("read back from the GPU")
}

fn upload(ctx: &Context, label: &str, data: &[f32]) -> wgpu::Buffer {
    ctx.upload_f32(label, data).expect("upload")
}

/// Records the ops of `record` into one step and submits it.
fn run(ctx: &Context, record: impl FnOnce(&mut Step) -> Result<(), ferrolm::gpu::GpuError>) {
    let mut step = Step::new(ctx);
    record(&mut step).expect("record the step");
    step.submit(None);
}

fn normals(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.normal() * scale).collect()
}

/// Asserts `|got[i] - want[i]| <= tol[i]` everywhere (NaN fails), naming the worst element.
fn assert_close(what: &str, got: &[f32], want: &[f64], tol: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut bad = 0;
    let mut worst: Option<(usize, f64)> = None;
    for i in 0..want.len() {
        let err = (got[i] as f64 - want[i]).abs();
        if err.is_nan() || err > tol[i] {
            bad += 1;
            let excess = if err.is_nan() { f64::INFINITY } else { err / tol[i].max(1e-300) };
            if worst.is_none_or(|(_, e)| excess > e) {
                worst = Some((i, excess));
            }
        }
    }
    if let Some((i, _)) = worst {
        panic!(
            "{what}: {bad} of {} elements out of tolerance; worst at [{i}]: got {} want {} (tol {:e})",
            want.len(),
            got[i],
            want[i],
            tol[i]
        );
    }
}

/// `assert_close` with one tolerance `abs + rel·|want|` for every element.
fn assert_close_rel(what: &str, got: &[f32], want: &[f64], abs: f64, rel: f64) {
    let tol: Vec<f64> = want.iter().map(|w| abs + rel * w.abs()).collect();
    assert_close(what, got, want, &tol);
}

/// A random `[n_rows, k]` matrix of `ty`: its raw bytes and its CPU dequantization.
fn random_matrix(ty: GgmlType, k: u32, n_rows: u32, seed: u64) -> (Vec<u8>, Vec<f32>) {
    let n = k as usize * n_rows as usize;
    let bytes = random_blocks(ty, n / ty.block_elems() as usize, seed);
    let mut values = vec![0f32; n];
    dequantize(ty, &bytes, &mut values).expect("CPU dequantize");
    assert!(values.iter().all(|v| v.is_finite()), "{ty}: random blocks must be finite");
    (bytes, values)
}

/// Uploads `bytes` as a `[n_rows, k]` matrix; with `rows_per_part` (even, so parts stay 4-byte
/// aligned) the matrix is split into parts of that many rows, otherwise `allocate` decides.
fn upload_matrix(ctx: &Context, ty: GgmlType, k: u32, n_rows: u32, bytes: &[u8], rows_per_part: Option<u32>) -> WeightMatrix {
    let w = match rows_per_part {
        None => WeightMatrix::allocate(ctx, "w", ty, k as u64, n_rows as u64).expect("allocate"),
        Some(rpp) => {
            assert!(rpp % 2 == 0);
            let max_part = ty.row_bytes(k as u64).unwrap() * rpp as u64;
            let w = WeightMatrix::allocate_with_part_limit(ctx, "w", ty, k as u64, n_rows as u64, max_part).expect("allocate");
            assert_eq!(w.parts.len(), n_rows.div_ceil(rpp) as usize, "{ty}: parts of {rpp} rows for {n_rows} rows");
            w
        }
    };
    assert_eq!(w.byte_len(), bytes.len() as u64);
    w.write(&ctx.queue, 0, bytes);
    w
}

/// Rows per part that split a matrix into at least 3 parts when it has 5 rows or more.
fn split_rows(n_rows: u32) -> u32 {
    if n_rows >= 24 {
        8
    } else {
        2
    }
}

// ---------------------------------------------------------------------------------------------
// matmul
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
struct MatmulCase {
    ty: GgmlType,
    n_rows: u32,
    k: u32,
    n_tokens: u32,
    x_offset: u32,
    /// Extra elements between tokens' inputs/outputs beyond `k` / `n_rows`.
    x_pad: u32,
    y_pad: u32,
    accumulate: bool,
    /// `None`: the default `allocate`.
    rows_per_part: Option<u32>,
}

impl MatmulCase {
    fn dense(ty: GgmlType, n_rows: u32, k: u32, n_tokens: u32) -> Self {
        MatmulCase { ty, n_rows, k, n_tokens, x_offset: 0, x_pad: 0, y_pad: 0, accumulate: false, rows_per_part: Some(split_rows(n_rows)) }
    }
}

/// Runs one matmul and checks every written output against the f64 reference, and that the
/// outputs it must not touch (stride gaps, tail) keep their initial values.
fn check_matmul(ctx: &Context, c: MatmulCase, seed: u64) {
    let (k, n_rows, n_tokens) = (c.k as usize, c.n_rows as usize, c.n_tokens as usize);
    let (bytes, w_ref) = random_matrix(c.ty, c.k, c.n_rows, seed);
    let w = upload_matrix(ctx, c.ty, c.k, c.n_rows, &bytes, c.rows_per_part);

    let mut rng = Rng::new(seed.wrapping_mul(31).wrapping_add(7));
    let x_stride = k + c.x_pad as usize;
    let y_stride = n_rows + c.y_pad as usize;
    let x_len = c.x_offset as usize + (n_tokens - 1) * x_stride + k + 5;
    let y_len = (n_tokens - 1) * y_stride + n_rows + 3;
    let x = normals(&mut rng, x_len, 1.0);
    let y0 = normals(&mut rng, y_len, 1.0);
    let x_buf = upload(ctx, "x", &x);
    let y_buf = upload(ctx, "y", &y0);

    let args = MatmulArgs {
        n_tokens: c.n_tokens,
        x_offset: c.x_offset,
        x_stride: x_stride as u32,
        y_stride: y_stride as u32,
        accumulate: c.accumulate,
    };
    run(ctx, |step| matmul(step, &w, &x_buf, &y_buf, args));
    let got = read(ctx, &y_buf, y_len);

    // Untouched elements must stay bit-identical (tolerance 0).
    let mut want: Vec<f64> = y0.iter().map(|&v| v as f64).collect();
    let mut tol = vec![0.0; y_len];
    for t in 0..n_tokens {
        let xt = &x[c.x_offset as usize + t * x_stride..][..k];
        for r in 0..n_rows {
            let wr = &w_ref[r * k..][..k];
            let dot: f64 = wr.iter().zip(xt).map(|(&a, &b)| a as f64 * b as f64).sum();
            let mag: f64 = wr.iter().zip(xt).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum();
            let o = t * y_stride + r;
            let base = if c.accumulate { y0[o] as f64 } else { 0.0 };
            want[o] = base + dot;
            tol[o] = 1e-4 * (mag + base.abs() + 1.0);
        }
    }
    assert_close(&format!("matmul {c:?}"), &got, &want, &tol);
}

fn check_matmul_odd_shapes(ty: GgmlType) {
    let ctx = common::gpu();
    let mut seed = 1000 + ty.id() as u64 * 100;
    let shapes = if ty.block_elems() == 256 { [(37, 256), (5, 768), (1, 768)] } else { [(37, 96), (5, 160), (1, 288)] };
    for (n_rows, k) in shapes {
        for n_tokens in [1, 3, 4, 9] {
            seed += 1;
            check_matmul(&ctx, MatmulCase::dense(ty, n_rows, k, n_tokens), seed);
        }
    }
}

#[test]
fn matmul_f32() {
    check_matmul_odd_shapes(GgmlType::F32);
}
#[test]
fn matmul_f16() {
    check_matmul_odd_shapes(GgmlType::F16);
}
#[test]
fn matmul_bf16() {
    check_matmul_odd_shapes(GgmlType::BF16);
}
#[test]
fn matmul_q4_0() {
    check_matmul_odd_shapes(GgmlType::Q4_0);
}
#[test]
fn matmul_q4_1() {
    check_matmul_odd_shapes(GgmlType::Q4_1);
}
#[test]
fn matmul_q5_0() {
    check_matmul_odd_shapes(GgmlType::Q5_0);
}
#[test]
fn matmul_q5_1() {
    check_matmul_odd_shapes(GgmlType::Q5_1);
}
#[test]
fn matmul_q8_0() {
    check_matmul_odd_shapes(GgmlType::Q8_0);
}
#[test]
fn matmul_q2_k() {
    check_matmul_odd_shapes(GgmlType::Q2_K);
}
#[test]
fn matmul_q3_k() {
    check_matmul_odd_shapes(GgmlType::Q3_K);
}
#[test]
fn matmul_q4_k() {
    check_matmul_odd_shapes(GgmlType::Q4_K);
}
#[test]
fn matmul_q5_k() {
    check_matmul_odd_shapes(GgmlType::Q5_K);
}
#[test]
fn matmul_q6_k() {
    check_matmul_odd_shapes(GgmlType::Q6_K);
}
#[test]
fn matmul_iq4_nl() {
    check_matmul_odd_shapes(GgmlType::IQ4_NL);
}
#[test]
fn matmul_iq4_xs() {
    check_matmul_odd_shapes(GgmlType::IQ4_XS);
}

/// x_offset / x_stride / y_stride variants and accumulate, for every type, decode and prefill.
/// (`matmul` requires x_offset and x_stride to be multiples of 4; y_stride is free.)
#[test]
fn matmul_strides_offsets_accumulate() {
    let ctx = common::gpu();
    for (i, ty) in GPU_TYPES.into_iter().enumerate() {
        for (n_tokens, accumulate) in [(1, false), (1, true), (3, true), (9, false), (9, true)] {
            let k = row_len(ty, 160);
            let case = MatmulCase { x_offset: 8, x_pad: 4, y_pad: 3, accumulate, ..MatmulCase::dense(ty, 37, k, n_tokens) };
            check_matmul(&ctx, case, 5000 + i as u64 * 10 + n_tokens as u64);
        }
        // Accumulate into a dense output too.
        check_matmul(&ctx, MatmulCase { accumulate: true, ..MatmulCase::dense(ty, 5, row_len(ty, 96), 3) }, 6000 + i as u64);
    }
}

/// The default `allocate` (one part for these sizes).
#[test]
fn matmul_default_allocation() {
    let ctx = common::gpu();
    let types = [GgmlType::F16, GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q3_K, GgmlType::Q6_K, GgmlType::IQ4_NL];
    for (i, ty) in types.into_iter().enumerate() {
        let k = row_len(ty, 288);
        let case = MatmulCase { rows_per_part: None, ..MatmulCase::dense(ty, 37, k, 9) };
        check_matmul(&ctx, case, 7000 + i as u64);
        let case = MatmulCase { rows_per_part: None, ..MatmulCase::dense(ty, 37, k, 1) };
        check_matmul(&ctx, case, 7100 + i as u64);
    }
}

/// `MatmulArgs::dense` and `accumulate()` build the arguments the kernels expect.
#[test]
fn matmul_args_helpers() {
    let ctx = common::gpu();
    let w = WeightMatrix::allocate(&ctx, "w", GgmlType::Q8_0, 96, 37).unwrap();
    let a = MatmulArgs::dense(&w, 4);
    assert_eq!((a.n_tokens, a.x_offset, a.x_stride, a.y_stride, a.accumulate), (4, 0, 96, 37, false));
    assert!(a.accumulate().accumulate);
}

// ---------------------------------------------------------------------------------------------
// embed
// ---------------------------------------------------------------------------------------------

/// Embeds `ids` from a random `[vocab, k]` matrix (`split`: rows per part, as in `upload_matrix`).
fn check_embed(ctx: &Context, ty: GgmlType, (k, vocab, split): (u32, u32, Option<u32>), ids: &[u32], scale: f32, seed: u64) {
    let (bytes, w_ref) = random_matrix(ty, k, vocab, seed);
    let w = upload_matrix(ctx, ty, k, vocab, &bytes, split);
    let k = k as usize;
    let n = ids.len() * k;
    let ids_buf = ctx.upload_u32("ids", ids).unwrap();
    // NaN everywhere first: every output element must be written.
    let out = upload(ctx, "out", &vec![f32::NAN; n]);
    run(ctx, |step| embed(step, &w, &ids_buf, &out, ids.len() as u32, scale));
    let got = read(ctx, &out, n);
    let want: Vec<f64> = ids.iter().flat_map(|&id| w_ref[id as usize * k..][..k].iter().map(|&v| v as f64 * scale as f64)).collect();
    assert_close_rel(&format!("embed {ty} k={k} vocab={vocab} scale={scale} ids={ids:?}"), &got, &want, 1e-7, 1e-5);
}

#[test]
fn embed_every_type_split_and_scaled() {
    let ctx = common::gpu();
    // First row, last row, both sides of part boundaries (parts of 8 rows), repeats.
    let ids = [36, 0, 7, 8, 15, 16, 36, 23, 1, 0];
    for (i, ty) in GPU_TYPES.into_iter().enumerate() {
        check_embed(&ctx, ty, (row_len(ty, 96), 37, Some(8)), &ids, 0.75, 8000 + i as u64);
        check_embed(&ctx, ty, (row_len(ty, 288), 5, Some(2)), &[4, 0, 2], 2.5, 8100 + i as u64);
        check_embed(&ctx, ty, (row_len(ty, 160), 37, None), &[36, 3], 1.0, 8200 + i as u64);
    }
}

// ---------------------------------------------------------------------------------------------
// rms_norm
// ---------------------------------------------------------------------------------------------

#[test]
fn rms_norm_rows() {
    let ctx = common::gpu();
    for (n, n_rows, eps) in [(300usize, 5usize, 1e-5f32), (77, 3, 1e-6), (576, 2, 1e-5), (1, 1, 1e-5)] {
        let mut rng = Rng::new(n as u64 * 7 + n_rows as u64);
        let x = normals(&mut rng, n * n_rows, 2.0);
        let w: Vec<f32> = (0..n).map(|_| rng.range_f32(-1.5, 1.5)).collect();
        let (x_buf, w_buf) = (upload(&ctx, "x", &x), upload(&ctx, "w", &w));
        let y_buf = upload(&ctx, "y", &vec![f32::NAN; n * n_rows]);
        run(&ctx, |step| ops::rms_norm(step, &x_buf, &w_buf, &y_buf, n as u32, n_rows as u32, eps));
        let got = read(&ctx, &y_buf, n * n_rows);
        let mut want = Vec::new();
        for row in x.chunks(n) {
            let ms: f64 = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / n as f64;
            let inv = 1.0 / (ms + eps as f64).sqrt();
            want.extend(row.iter().zip(&w).map(|(&v, &wi)| v as f64 * inv * wi as f64));
        }
        assert_close_rel(&format!("rms_norm n={n} rows={n_rows}"), &got, &want, 1e-6, 1e-5);
    }
}

// ---------------------------------------------------------------------------------------------
// rope
// ---------------------------------------------------------------------------------------------

/// theta_i = pos · base^(-2i / n_rot) / divisors[i]; cos and sin scaled by mscale.
#[allow(clippy::too_many_arguments)]
fn rope_reference(x: &[f32], rope: &Rope, divisors: &[f32], n_tokens: usize, n_heads: usize, head_dim: usize, pos0: u32) -> Vec<f64> {
    let mut out: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let n_rot = rope.n_rot as usize;
    let m = rope.mscale as f64;
    for t in 0..n_tokens {
        let pos = (pos0 as usize + t) as f64;
        for h in 0..n_heads {
            let base = (t * n_heads + h) * head_dim;
            for (i, &divisor) in divisors.iter().enumerate().take(n_rot / 2) {
                let theta = pos * (rope.freq_base as f64).powf(-2.0 * i as f64 / n_rot as f64) / divisor as f64;
                let (ia, ib) = match rope.mode {
                    RopeMode::Interleaved => (base + 2 * i, base + 2 * i + 1),
                    RopeMode::HalfSplit => (base + i, base + i + n_rot / 2),
                };
                let (a, b) = (x[ia] as f64, x[ib] as f64);
                out[ia] = (a * theta.cos() - b * theta.sin()) * m;
                out[ib] = (a * theta.sin() + b * theta.cos()) * m;
            }
        }
    }
    out
}

#[test]
fn rope_modes_partial_and_full() {
    let ctx = common::gpu();
    let (n_tokens, n_heads) = (3usize, 5usize);
    let mut seed = 0;
    for mode in [RopeMode::Interleaved, RopeMode::HalfSplit] {
        for (head_dim, n_rot) in [(64usize, 32u32), (64, 64), (80, 80), (128, 64)] {
            for (pos0, freq_base, divisor, mscale) in [(0u32, 10000.0f32, 1.0f32, 1.0f32), (21, 10000.0, 1.0, 1.0), (45, 500000.0, 4.0, 1.17)] {
                seed += 1;
                let rope = Rope { mode, n_rot, freq_base, mscale };
                let divisors = vec![divisor; n_rot as usize / 2];
                let mut rng = Rng::new(seed);
                let x = normals(&mut rng, n_tokens * n_heads * head_dim, 1.0);
                let buf = upload(&ctx, "x", &x);
                let dbuf = upload(&ctx, "divisors", &divisors);
                run(&ctx, |step| ops::rope(step, &buf, &dbuf, &rope, n_tokens as u32, n_heads as u32, head_dim as u32, pos0));
                let got = read(&ctx, &buf, x.len());
                let want = rope_reference(&x, &rope, &divisors, n_tokens, n_heads, head_dim, pos0);
                // Dims past n_rot are not touched at all.
                let tol: Vec<f64> = (0..x.len()).map(|i| if i % head_dim < n_rot as usize { 2e-5 * (pos0 as f64 + 4.0) } else { 0.0 }).collect();
                assert_close(&format!("rope {rope:?} head_dim={head_dim} pos0={pos0}"), &got, &want, &tol);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// attention
// ---------------------------------------------------------------------------------------------

/// Positions token t of a query block at pos0 sees: 0..=pos0+t, or the last `window` of them.
fn visible(pos0: u32, t: u32, window: u32) -> std::ops::Range<usize> {
    let len = (pos0 + t + 1) as usize;
    let start = if window > 0 { len.saturating_sub(window as usize) } else { 0 };
    start..len
}

fn attention_reference(q: &[f32], kc: &[f32], vc: &[f32], a: &AttentionArgs) -> Vec<f64> {
    let (d, nh, nkv) = (a.head_dim as usize, a.n_heads as usize, a.n_kv_heads as usize);
    let mut out = Vec::new();
    for t in 0..a.n_tokens {
        for h in 0..nh {
            let kvh = h / (nh / nkv);
            let qv = &q[(t as usize * nh + h) * d..][..d];
            let range = visible(a.pos0, t, a.window);
            let scores: Vec<f64> = range
                .clone()
                .map(|j| {
                    let kj = &kc[(j * nkv + kvh) * d..][..d];
                    let mut s = qv.iter().zip(kj).map(|(&x, &y)| x as f64 * y as f64).sum::<f64>() * a.scale as f64;
                    if a.softcap > 0.0 {
                        s = a.softcap as f64 * (s / a.softcap as f64).tanh();
                    }
                    s
                })
                .collect();
            let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let p: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
            let l: f64 = p.iter().sum();
            for c in 0..d {
                out.push(range.clone().zip(&p).map(|(j, pj)| pj * vc[(j * nkv + kvh) * d + c] as f64).sum::<f64>() / l);
            }
        }
    }
    out
}

/// Runs attention with random q and a random cache; cache positions no query may see (after the
/// last query's position) hold large values so reading them shows in the result.
fn check_attention(ctx: &Context, a: AttentionArgs, q_scale: f32, seed: u64) {
    let (d, nh, nkv) = (a.head_dim as usize, a.n_heads as usize, a.n_kv_heads as usize);
    let valid = (a.pos0 + a.n_tokens) as usize;
    let cache_len = valid + 9;
    let mut rng = Rng::new(seed);
    let q = normals(&mut rng, a.n_tokens as usize * nh * d, q_scale);
    let mut kc = normals(&mut rng, cache_len * nkv * d, 1.0);
    let mut vc = normals(&mut rng, cache_len * nkv * d, 1.0);
    for v in kc[valid * nkv * d..].iter_mut().chain(&mut vc[valid * nkv * d..]) {
        *v = 50.0;
    }
    let q_buf = upload(ctx, "q", &q);
    let k_buf = ctx.storage_buffer("k cache", (kc.len() * 4) as u64).unwrap();
    let v_buf = ctx.storage_buffer("v cache", (vc.len() * 4) as u64).unwrap();
    ctx.queue.write_buffer(&k_buf, 0, bytemuck::cast_slice(&kc));
    ctx.queue.write_buffer(&v_buf, 0, bytemuck::cast_slice(&vc));
    let out = upload(ctx, "out", &vec![f32::NAN; q.len()]);
    run(ctx, |step| ops::attention(step, &q_buf, &k_buf, &v_buf, &out, &a));
    let got = read(ctx, &out, q.len());
    let want = attention_reference(&q, &kc, &vc, &a);
    assert_close_rel(&format!("attention {a:?}"), &got, &want, 2e-5, 1e-4);
}

fn attention_args(n_tokens: u32, pos0: u32, head_dim: u32) -> AttentionArgs {
    AttentionArgs {
        n_tokens,
        n_heads: 6,
        n_kv_heads: 2,
        head_dim,
        pos0,
        scale: 1.0 / (head_dim as f32).sqrt(),
        softcap: 0.0,
        window: 0,
    }
}

#[test]
fn attention_gqa_decode_and_prefill() {
    let ctx = common::gpu();
    for (i, head_dim) in [64, 80, 128, 256].into_iter().enumerate() {
        let seed = 100 * i as u64;
        // Decode past one 64-position tile, prefill at a small offset, prefill across tiles.
        check_attention(&ctx, attention_args(1, 70, head_dim), 1.0, seed + 1);
        check_attention(&ctx, attention_args(5, 3, head_dim), 1.0, seed + 2);
        check_attention(&ctx, attention_args(5, 125, head_dim), 1.0, seed + 3);
        check_attention(&ctx, attention_args(1, 0, head_dim), 1.0, seed + 4);
    }
    // Sharper softmax (large scores) and other head groupings.
    check_attention(&ctx, attention_args(3, 70, 64), 4.0, 900);
    check_attention(&ctx, AttentionArgs { n_kv_heads: 6, ..attention_args(2, 40, 64) }, 1.0, 901);
    check_attention(&ctx, AttentionArgs { n_kv_heads: 1, ..attention_args(2, 40, 80) }, 1.0, 902);
}

#[test]
fn attention_softcap_and_window() {
    let ctx = common::gpu();
    let softcap = |a: AttentionArgs| AttentionArgs { softcap: 1.5, ..a };
    let window = |w: u32| move |a: AttentionArgs| AttentionArgs { window: w, ..a };
    for (i, head_dim) in [64, 80, 128].into_iter().enumerate() {
        let seed = 2000 + 100 * i as u64;
        // Soft-cap with scores well past the cap.
        check_attention(&ctx, softcap(attention_args(1, 70, head_dim)), 4.0, seed + 1);
        check_attention(&ctx, softcap(attention_args(5, 3, head_dim)), 4.0, seed + 2);
        // Window smaller than the context (start not tile aligned), window spanning two tiles,
        // window larger than the context.
        check_attention(&ctx, window(16)(attention_args(1, 70, head_dim)), 1.0, seed + 3);
        check_attention(&ctx, window(16)(attention_args(5, 70, head_dim)), 1.0, seed + 4);
        check_attention(&ctx, window(100)(attention_args(1, 130, head_dim)), 1.0, seed + 5);
        check_attention(&ctx, window(100)(attention_args(5, 3, head_dim)), 1.0, seed + 6);
        check_attention(&ctx, window(1)(attention_args(3, 10, head_dim)), 1.0, seed + 7);
        // Both.
        check_attention(&ctx, softcap(window(20)(attention_args(5, 70, head_dim))), 4.0, seed + 8);
    }
}

#[test]
fn attention_rejects_bad_shapes() {
    let ctx = common::gpu();
    let buf = ctx.storage_buffer("b", 4).unwrap();
    let mut step = Step::new(&ctx);
    for a in [
        AttentionArgs { head_dim: 320, ..attention_args(1, 0, 64) },
        AttentionArgs { n_kv_heads: 4, ..attention_args(1, 0, 64) },
        AttentionArgs { n_kv_heads: 0, ..attention_args(1, 0, 64) },
    ] {
        assert!(ops::attention(&mut step, &buf, &buf, &buf, &buf, &a).is_err(), "{a:?}");
    }
    assert_eq!(step.dispatches, 0);
}

// ---------------------------------------------------------------------------------------------
// elementwise
// ---------------------------------------------------------------------------------------------

fn silu(g: f64) -> f64 {
    g / (1.0 + (-g).exp())
}

fn gelu_tanh(g: f64) -> f64 {
    0.5 * g * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (g + 0.044715 * g * g * g)).tanh())
}

/// Runs `op` on n elements at the given offsets and checks all of y (outside the range: unchanged).
fn check_elementwise(ctx: &Context, op: Elementwise, n: usize, x_offset: usize, y_offset: usize, seed: u64) {
    let mut rng = Rng::new(seed);
    let x = normals(&mut rng, x_offset + n + 4, 1.0);
    let mut y = normals(&mut rng, y_offset + n + 6, 3.0);
    y[y_offset] = 20.0; // saturating gate values
    y[y_offset + 1] = -20.0;
    let (x_buf, y_buf) = (upload(ctx, "x", &x), upload(ctx, "y", &y));
    run(ctx, |step| ops::elementwise(step, op, &x_buf, &y_buf, n as u32, x_offset as u32, y_offset as u32));
    let got = read(ctx, &y_buf, y.len());
    let mut want: Vec<f64> = y.iter().map(|&v| v as f64).collect();
    let mut tol = vec![0.0; y.len()];
    for i in 0..n {
        let (xi, yi) = (x[x_offset + i] as f64, y[y_offset + i] as f64);
        want[y_offset + i] = match op {
            Elementwise::Add => yi + xi,
            Elementwise::AddRows { period } => yi + x[x_offset + i % period as usize] as f64,
            Elementwise::Copy => xi,
            Elementwise::SwiGlu => silu(yi) * xi,
            Elementwise::GeGlu => gelu_tanh(yi) * xi,
            Elementwise::Softcap(c) => c as f64 * (yi / c as f64).tanh(),
        };
        tol[y_offset + i] = 1e-6 + 1e-5 * want[y_offset + i].abs();
    }
    assert_close(&format!("elementwise {op:?} n={n} x_offset={x_offset} y_offset={y_offset}"), &got, &want, &tol);
}

#[test]
fn elementwise_ops() {
    let ctx = common::gpu();
    let ops = [
        Elementwise::Add,
        Elementwise::AddRows { period: 7 },
        Elementwise::Copy,
        Elementwise::SwiGlu,
        Elementwise::GeGlu,
        Elementwise::Softcap(30.0),
        Elementwise::Softcap(2.5),
    ];
    for op in ops {
        check_elementwise(&ctx, op, 1000, 0, 0, 1);
        check_elementwise(&ctx, op, 257, 3, 11, 2);
        check_elementwise(&ctx, op, 2, 5, 0, 3);
    }
    // Copy into a KV-cache-like row at pos0 * row.
    check_elementwise(&ctx, Elementwise::Copy, 192, 0, 7 * 192, 4);
}

// ---------------------------------------------------------------------------------------------
// top-k
// ---------------------------------------------------------------------------------------------

/// The k best (index, value) in the order (value desc, index asc); NaN is below everything,
/// -inf included.
fn topk_reference(v: &[f32], k: usize) -> Vec<(u32, f32)> {
    let key = |i: usize| if v[i].is_nan() { f64::NEG_INFINITY } else { v[i] as f64 };
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| {
        let nan = |i: usize| v[i].is_nan();
        // NaN last; otherwise value descending (-0 == 0); ties by index.
        nan(a).cmp(&nan(b)).then(key(b).partial_cmp(&key(a)).unwrap()).then(a.cmp(&b))
    });
    idx.into_iter().take(k).map(|i| (i as u32, v[i])).collect()
}

fn gpu_topk(ctx: &Context, logits: &[f32], offset: usize, n: usize, k: u32) -> Vec<(u32, f32)> {
    let buf = upload(ctx, "logits", logits);
    let topk = TopK::new(ctx, n as u32, k).expect("TopK::new");
    let mut step = Step::new(ctx);
    topk.record(&mut step, &buf, offset as u32).expect("record top-k");
    pollster::block_on(topk.submit_and_read(step)).expect("top-k read")
}

fn check_topk(ctx: &Context, logits: &[f32], offset: usize, n: usize, k: u32, what: &str) {
    let got = gpu_topk(ctx, logits, offset, n, k);
    let want = topk_reference(&logits[offset..offset + n], k as usize);
    let ids = |v: &[(u32, f32)]| v.iter().map(|p| p.0).collect::<Vec<_>>();
    assert_eq!(ids(&got), ids(&want), "top-{k} of {n} ({what}): indices");
    for (&(i, g), &(_, w)) in got.iter().zip(&want) {
        let same = g == w || (w.is_nan() && (g.is_nan() || g == f32::NEG_INFINITY || g == f32::MIN));
        assert!(same, "top-{k} of {n} ({what}): value of {i}: got {g} want {w}");
    }
}

#[test]
fn topk_random() {
    let ctx = common::gpu();
    let mut rng = Rng::new(77);
    let logits = normals(&mut rng, 5000, 4.0);
    for k in [1, 40, 256] {
        check_topk(&ctx, &logits, 0, 5000, k, "n=5000");
    }
    check_topk(&ctx, &logits, 0, 1000, 40, "one partial chunk");
    check_topk(&ctx, &logits, 0, 1024, 40, "one full chunk");
    // The last chunk holds fewer than k elements.
    check_topk(&ctx, &logits, 0, 1100, 256, "short last chunk");
    // Fewer elements than k: all of them, sorted.
    check_topk(&ctx, &logits, 0, 100, 256, "n < k");
    // A row of a [rows, n] buffer.
    check_topk(&ctx, &logits, 1700, 3000, 40, "offset 1700");
}

#[test]
fn topk_ties_lower_index_first() {
    let ctx = common::gpu();
    let mut rng = Rng::new(78);
    // Few distinct values: long runs of exact ties, within and across chunks; -0 ties with 0.
    let levels = [2.0f32, 1.0, 0.0, -0.0, -1.0];
    let logits: Vec<f32> = (0..3000).map(|_| levels[rng.below(levels.len() as u64) as usize]).collect();
    for k in [1, 40, 256] {
        check_topk(&ctx, &logits, 0, 3000, k, "ties");
    }
    // All equal.
    check_topk(&ctx, &vec![0.5; 3000], 0, 3000, 40, "all equal");
}

#[test]
fn topk_nan_is_lowest() {
    let ctx = common::gpu();
    let mut rng = Rng::new(79);
    let mut logits = normals(&mut rng, 5000, 1.0);
    for i in [0, 1, 17, 1023, 1024, 2500, 4999] {
        logits[i] = f32::NAN;
    }
    logits[300] = 100.0;
    for k in [1, 40] {
        check_topk(&ctx, &logits, 0, 5000, k, "NaNs among finite values");
    }
    // Mostly NaN: the finite values first, then the NaNs in index order.
    let mut logits = vec![f32::NAN; 1000];
    for (i, v) in [(5, 1.0), (600, -3.0), (999, 2.0), (40, f32::MAX), (41, -1e30)] {
        logits[i] = v;
    }
    check_topk(&ctx, &logits, 0, 1000, 10, "mostly NaN");
}

/// NaN ranks below the most negative finite value. (topk.wgsl documents "NaN counts as -inf";
/// this case has the same answer whether NaN is -inf or below it.)
#[test]
fn topk_nan_below_most_negative_finite() {
    let ctx = common::gpu();
    let mut logits = vec![1.0f32; 8];
    logits[2] = f32::NAN;
    logits[5] = -f32::MAX;
    check_topk(&ctx, &logits, 0, 8, 8, "NaN at 2 vs -f32::MAX at 5");
}

/// NaN never ranks before -inf: with -inf at the lower index, -inf comes first whether NaN
/// counts as -inf (tie, lower index first) or as lower than -inf.
#[test]
fn topk_nan_not_before_negative_infinity() {
    let ctx = common::gpu();
    let mut logits = vec![1.0f32; 8];
    logits[2] = f32::NEG_INFINITY;
    logits[5] = f32::NAN;
    check_topk(&ctx, &logits, 0, 8, 8, "-inf at 2 vs NaN at 5");
}

#[test]
fn topk_rejects_bad_k() {
    let ctx = common::gpu();
    assert!(TopK::new(&ctx, 100, 0).is_err());
    assert!(TopK::new(&ctx, 100, ops::MAX_TOP_K + 1).is_err());
    assert!(TopK::new(&ctx, 100, ops::MAX_TOP_K).is_ok());
}

// ---------------------------------------------------------------------------------------------
// row slices of fused matrices, rope frequency factors
// ---------------------------------------------------------------------------------------------

#[test]
fn matmul_rows_of_a_split_matrix() {
    let ctx = common::gpu();
    let (ty, k, n_rows, n_tokens) = (GgmlType::Q8_0, 64u32, 37u32, 3usize);
    let (bytes, w_ref) = random_matrix(ty, k, n_rows, 77);
    let w = upload_matrix(&ctx, ty, k, n_rows, &bytes, Some(8));
    let mut rng = Rng::new(78);
    let x = normals(&mut rng, n_tokens * k as usize, 1.0);
    let x_buf = upload(&ctx, "x", &x);
    // Slices inside one part, across part boundaries, and the last rows.
    for rows in [2u32..6, 5..30, 30..37, 0..37] {
        let n = (rows.end - rows.start) as usize;
        let y_buf = upload(&ctx, "y", &vec![0.0; n_tokens * n]);
        let args = MatmulArgs { n_tokens: n_tokens as u32, x_offset: 0, x_stride: k, y_stride: n as u32, accumulate: false };
        run(&ctx, |step| ferrolm::gpu::matmul::matmul_rows(step, &w, rows.clone(), &x_buf, &y_buf, args));
        let got = read(&ctx, &y_buf, n_tokens * n);
        let mut want = vec![0.0; n_tokens * n];
        for t in 0..n_tokens {
            for (j, r) in rows.clone().enumerate() {
                let wr = &w_ref[r as usize * k as usize..][..k as usize];
                want[t * n + j] = wr.iter().zip(&x[t * k as usize..]).map(|(&a, &b)| a as f64 * b as f64).sum();
            }
        }
        assert_close_rel(&format!("matmul_rows {rows:?}"), &got, &want, 1e-4, 1e-4);
    }
}

#[test]
fn rope_with_frequency_factors() {
    let ctx = common::gpu();
    let (n_tokens, n_heads, head_dim) = (2usize, 3usize, 64usize);
    let rope = Rope { mode: RopeMode::Interleaved, n_rot: 64, freq_base: 500000.0, mscale: 1.0 };
    let mut rng = Rng::new(5);
    let x = normals(&mut rng, n_tokens * n_heads * head_dim, 1.0);
    let factors: Vec<f32> = (0..32).map(|i| 1.0 + i as f32 * 0.25).collect();
    let buf = upload(&ctx, "x", &x);
    let fbuf = upload(&ctx, "factors", &factors);
    let pos0 = 17;
    run(&ctx, |step| ops::rope(step, &buf, &fbuf, &rope, n_tokens as u32, n_heads as u32, head_dim as u32, pos0));
    let got = read(&ctx, &buf, x.len());
    // Dividing theta_i by factor_i equals a reference with per-pair scale 1/factor_i.
    let mut want: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    for t in 0..n_tokens {
        for h in 0..n_heads {
            let base = (t * n_heads + h) * head_dim;
            for i in 0..32 {
                let theta = (pos0 as usize + t) as f64 * 500000f64.powf(-2.0 * i as f64 / 64.0) / factors[i] as f64;
                let (a, b) = (x[base + 2 * i] as f64, x[base + 2 * i + 1] as f64);
                want[base + 2 * i] = a * theta.cos() - b * theta.sin();
                want[base + 2 * i + 1] = a * theta.sin() + b * theta.cos();
            }
        }
    }
    assert_close_rel("rope with factors", &got, &want, 1e-4, 1e-4);
}

/// YaRN on the GPU (table and mscale from `model::rope`) against ggml's `rope_yarn` written out in
/// f64: theta = theta_extrap · (freq_scale · (1 − ramp) + ramp) between the correction dims of
/// beta_fast 32 / beta_slow 1, cos/sin times 1 + 0.1 ln(factor); dims past n_rot untouched.
#[test]
fn rope_yarn_matches_ggml_formulas() {
    use ferrolm::model::rope::{RopeScaling, ScalingType};
    let ctx = common::gpu();
    let (n_tokens, n_heads, head_dim, n_rot, base, factor, orig) = (3usize, 2usize, 64usize, 48u32, 10000f32, 4f32, 64u32);
    let scaling = RopeScaling { kind: ScalingType::Yarn, freq_scale: 1.0 / factor, ..RopeScaling::none(orig) };
    let rope = Rope { mode: RopeMode::HalfSplit, n_rot, freq_base: base, mscale: scaling.mscale() };
    let divisors = scaling.divisors(n_rot, base, None);
    let mut rng = Rng::new(11);
    let x = normals(&mut rng, n_tokens * n_heads * head_dim, 1.0);
    let (buf, dbuf) = (upload(&ctx, "x", &x), upload(&ctx, "divisors", &divisors));
    let pos0 = 100;
    run(&ctx, |step| ops::rope(step, &buf, &dbuf, &rope, n_tokens as u32, n_heads as u32, head_dim as u32, pos0));
    let got = read(&ctx, &buf, x.len());

    let n = n_rot as f64;
    let corr = |beta: f64| n * (orig as f64 / (beta * 2.0 * std::f64::consts::PI)).ln() / (2.0 * (base as f64).ln());
    let (lo, hi) = (corr(32.0).floor().max(0.0), corr(1.0).ceil().min(n - 1.0));
    let m = 1.0 + 0.1 * (factor as f64).ln();
    let mut want: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    for t in 0..n_tokens {
        for h in 0..n_heads {
            let b = (t * n_heads + h) * head_dim;
            for i in 0..n_rot as usize / 2 {
                let ramp = 1.0 - ((i as f64 - lo) / (hi - lo).max(0.001)).clamp(0.0, 1.0);
                let extrap = (pos0 as usize + t) as f64 * (base as f64).powf(-2.0 * i as f64 / n);
                let theta = extrap * ((1.0 / factor as f64) * (1.0 - ramp) + ramp);
                let (ia, ib) = (b + i, b + i + n_rot as usize / 2);
                let (xa, xb) = (x[ia] as f64, x[ib] as f64);
                want[ia] = (xa * theta.cos() - xb * theta.sin()) * m;
                want[ib] = (xa * theta.sin() + xb * theta.cos()) * m;
            }
        }
    }
    let tol: Vec<f64> = (0..x.len()).map(|i| if i % head_dim < n_rot as usize { 1e-4 } else { 0.0 }).collect();
    assert_close("rope yarn", &got, &want, &tol);
}

#[test]
fn penalize_adjusts_listed_logits_only() {
    let ctx = common::gpu();
    let mut rng = Rng::new(9);
    let offset = 3usize;
    let logits = normals(&mut rng, 200, 4.0);
    let pairs: Vec<(u32, u32)> = vec![(0, 1), (5, 3), (17, 2), (100, 1), (196, 4)];
    let words: Vec<u32> = pairs.iter().flat_map(|&(i, c)| [i, c]).collect();
    let buf = upload(&ctx, "logits", &logits);
    let list = ctx.upload_u32("pairs", &words).unwrap();
    let args = ops::PenaltyArgs { n: pairs.len() as u32, repeat: 1.3, presence: 0.5, frequency: 0.25 };
    run(&ctx, |step| ops::penalize(step, &list, &buf, offset as u32, args));
    let got = read(&ctx, &buf, logits.len());
    let mut want: Vec<f64> = logits.iter().map(|&v| v as f64).collect();
    for &(id, count) in &pairs {
        let o = offset + id as usize;
        let l = want[o];
        want[o] = if l > 0.0 { l / 1.3 } else { l * 1.3 } - count as f64 * 0.25 - 0.5;
    }
    assert_close_rel("penalize", &got, &want, 1e-6, 1e-6);
}
