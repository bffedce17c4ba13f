//! Every GPU kernel against a CPU reference (computed in f64) on random inputs.
//!
//! Sizes are small and deliberately odd (row counts that are not multiples of a workgroup, row
//! lengths of 32·m with m odd, token counts that straddle the prefill tile) so the suite runs in
//! seconds on a CPU Vulkan driver (lavapipe) while still hitting the edge cases.
//!
//! This file holds the shared helpers and the matrix-times-vector, embedding, post-norm and top-k
//! tests; the fused kernels have their own modules: `kernels/ffn_in.rs`, `kernels/attn_in.rs`
//! (RoPE and the KV-cache write) and `kernels/attention.rs` (split-K attention).

mod common;
mod kernels {
    pub mod attention;
    pub mod attn_in;
    pub mod ffn_in;
}

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use ferrolm::gpu::matmul::{embed, matvec, Input, Output};
use ferrolm::gpu::ops::{self, TopK};
use ferrolm::gpu::variant::{MatrixKernel, MatrixShape, MatrixVariant};
use ferrolm::gpu::{Context, Step, StepState, WeightMatrix};
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

/// Records the ops of `record` into one step and submits it (position 0, no penalties).
fn run(ctx: &Context, record: impl FnOnce(&mut Step) -> Result<(), ferrolm::gpu::GpuError>) {
    run_with(ctx, StepState::at(0), record)
}

/// [`run`] with the step state `state` (the position pos0, the penalty settings).
fn run_with(ctx: &Context, state: StepState, record: impl FnOnce(&mut Step) -> Result<(), ferrolm::gpu::GpuError>) {
    let mut step = Step::new(ctx);
    record(&mut step).expect("record the step");
    step.state = state;
    step.submit(None);
}

/// Where a test context keeps weight matrices (`gpu::weights`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Memory {
    /// Storage buffers, the raw GGUF layout.
    Storage,
    /// Storage buffers, rows interleaved in groups of 8.
    Interleaved,
    /// `rgba32uint` textures, Q4_1 and Q8_0 blocks packed (the default on CPU drivers such as
    /// lavapipe).
    Texture,
    /// `rgba32uint` textures, every type in the raw GGUF layout.
    RawTexture,
}

/// A context of its own that runs every matrix kernel with the variant `name` (the shared one
/// uses the adapter's defaults: one thread per row on lavapipe, so the cross-lane reduction and
/// the other input paths would otherwise never run here), its weights kept in `memory`.
fn gpu_with_variant(name: &str, memory: Memory) -> Arc<Context> {
    static CONTEXTS: Mutex<Option<HashMap<(String, Memory), Arc<Context>>>> = Mutex::new(None);
    let mut contexts = CONTEXTS.lock().unwrap_or_else(|e| e.into_inner());
    contexts
        .get_or_insert_with(HashMap::new)
        .entry((name.to_string(), memory))
        .or_insert_with(|| {
            let mut ctx = pollster::block_on(Context::new()).expect("a second GPU context");
            ctx.tuning.interleave_rows = memory == Memory::Interleaved;
            ctx.tuning.weights_in_textures = matches!(memory, Memory::Texture | Memory::RawTexture);
            ctx.tuning.pack_blocks = memory == Memory::Texture;
            ctx.force_variant(Some(MatrixVariant::parse(name).expect("a variant name")));
            Arc::new(ctx)
        })
        .clone()
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
    let w = allocate_matrix(ctx, ty, k, n_rows, rows_per_part);
    assert_eq!(w.byte_len(), bytes.len() as u64);
    w.write(ctx, 0, bytes);
    w
}

/// The matrix [`upload_matrix`] writes into.
fn allocate_matrix(ctx: &Context, ty: GgmlType, k: u32, n_rows: u32, rows_per_part: Option<u32>) -> WeightMatrix {
    match rows_per_part {
        None => WeightMatrix::allocate(ctx, "w", ty, k as u64, n_rows as u64).expect("allocate"),
        Some(rpp) => {
            assert!(rpp % 2 == 0);
            let max_part = ty.row_bytes(k as u64).unwrap() * rpp as u64;
            let w = WeightMatrix::allocate_with_part_limit(ctx, "w", ty, k as u64, n_rows as u64, max_part).expect("allocate");
            assert_eq!(w.parts.len(), n_rows.div_ceil(rpp) as usize, "{ty}: parts of {rpp} rows for {n_rows} rows");
            w
        }
    }
}

/// [`upload_matrix`] in `n` in-order writes of uneven lengths (multiples of 4 bytes, as
/// `WeightStore::feed` delivers them), so that texels and rows straddle writes.
fn upload_matrix_in_chunks(ctx: &Context, ty: GgmlType, k: u32, n_rows: u32, bytes: &[u8], rows_per_part: Option<u32>, n: usize) -> WeightMatrix {
    let w = allocate_matrix(ctx, ty, k, n_rows, rows_per_part);
    assert_eq!(w.byte_len(), bytes.len() as u64);
    let mut cuts: Vec<usize> = (1..n).map(|i| (bytes.len() * i / n + i * 12) / 4 * 4).filter(|c| *c < bytes.len()).collect();
    cuts.insert(0, 0);
    cuts.push(bytes.len());
    cuts.dedup();
    for pair in cuts.windows(2) {
        w.write(ctx, pair[0] as u64, &bytes[pair[0]..pair[1]]);
    }
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

/// The model's f32 vectors buffer (norm weights, biases, RoPE factors) being assembled: every
/// vector starts at a multiple of 4, and the gaps (and the first 4 elements) hold NaN so that a
/// kernel reading past a vector or at a wrong offset shows in its result.
struct Vecs {
    data: Vec<f32>,
}

impl Vecs {
    fn new() -> Self {
        Vecs { data: vec![f32::NAN; 4] }
    }
    /// Appends `v` at the next multiple of 64 elements (256 bytes, as the model lays out its
    /// vectors: a decode kernel can then bind a norm weight as a uniform); returns its offset.
    fn push(&mut self, v: &[f32]) -> u32 {
        self.data.resize(self.data.len().next_multiple_of(64), f32::NAN);
        let offset = self.data.len() as u32;
        self.data.extend_from_slice(v);
        self.data.resize(self.data.len().next_multiple_of(4) + 4, f32::NAN);
        offset
    }
    fn upload(&self, ctx: &Context) -> wgpu::Buffer {
        upload(ctx, "vecs", &self.data)
    }
}

/// RMSNorm weights: values around ±1, some small.
fn norm_weights(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.range_f32(-1.5, 1.5)).collect()
}

/// 1 / sqrt(mean(x²) + eps) in f64.
fn inv_rms(x: &[f64], eps: f32) -> f64 {
    1.0 / (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64 + eps as f64).sqrt()
}

/// The matrix kernels' input row `x` as they see it: RMSNorm-ed with `norm` = (weight, eps) when
/// given, as f64.
fn normalized_input(x: &[f32], norm: Option<(&[f32], f32)>) -> Vec<f64> {
    let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    match norm {
        None => x64,
        Some((w, eps)) => {
            let s = inv_rms(&x64, eps);
            x64.iter().zip(w).map(|(&v, &wi)| v * s * wi as f64).collect()
        }
    }
}

/// Σ w·x and Σ |w·x| (the scale of the rounding error of an f32 dot product).
fn dot_and_magnitude(w: &[f32], x: &[f64]) -> (f64, f64) {
    w.iter().zip(x).fold((0.0, 0.0), |(d, m), (&a, &b)| (d + a as f64 * b, m + (a as f64 * b).abs()))
}

/// The tolerance of a matrix-kernel dot product of magnitude `mag`.
fn dot_tol(mag: f64) -> f64 {
    1e-4 * (mag + 1.0)
}

// ---------------------------------------------------------------------------------------------
// matvec
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
struct MatvecCase {
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
    /// RMSNorm the input rows first (random weight, eps 1e-5).
    norm: bool,
    /// The norm weight 4 elements past a 256-byte boundary: too unaligned for a decode kernel to
    /// bind it as a uniform (the general NORM path runs instead of XN_UNIFORM).
    unaligned_norm: bool,
    /// Output soft-cap (0 = off).
    softcap: f32,
    /// Upload the weights in this many uneven in-order writes (as the loader streams them)
    /// instead of one.
    chunks: Option<usize>,
}

impl MatvecCase {
    fn dense(ty: GgmlType, n_rows: u32, k: u32, n_tokens: u32) -> Self {
        MatvecCase {
            ty,
            n_rows,
            k,
            n_tokens,
            x_offset: 0,
            x_pad: 0,
            y_pad: 0,
            accumulate: false,
            rows_per_part: Some(split_rows(n_rows)),
            norm: false,
            unaligned_norm: false,
            softcap: 0.0,
            chunks: None,
        }
    }
    fn normed(self) -> Self {
        MatvecCase { norm: true, ..self }
    }
}

/// Runs one matvec and checks every written output against the f64 reference, and that the
/// outputs it must not touch (stride gaps, tail) keep their initial values.
fn check_matvec(ctx: &Context, c: MatvecCase, seed: u64) {
    let (k, n_rows, n_tokens) = (c.k as usize, c.n_rows as usize, c.n_tokens as usize);
    let (bytes, w_ref) = random_matrix(c.ty, c.k, c.n_rows, seed);
    let w = match c.chunks {
        None => upload_matrix(ctx, c.ty, c.k, c.n_rows, &bytes, c.rows_per_part),
        Some(n) => upload_matrix_in_chunks(ctx, c.ty, c.k, c.n_rows, &bytes, c.rows_per_part, n),
    };

    let mut rng = Rng::new(seed.wrapping_mul(31).wrapping_add(7));
    let x_stride = k + c.x_pad as usize;
    let y_stride = n_rows + c.y_pad as usize;
    let x_len = c.x_offset as usize + (n_tokens - 1) * x_stride + k + 5;
    let y_len = (n_tokens - 1) * y_stride + n_rows + 3;
    // Inputs of scale 3 so that a missing norm shows.
    let x = normals(&mut rng, x_len, 3.0);
    let y0 = normals(&mut rng, y_len, 1.0);
    let norm_w = norm_weights(&mut rng, k);
    let eps = 1e-5;
    let mut vecs = Vecs::new();
    let mut norm_at = vecs.push(&norm_w);
    if c.unaligned_norm {
        vecs.data.splice(norm_at as usize..norm_at as usize, [f32::NAN; 4]);
        norm_at += 4;
    }
    let (x_buf, y_buf, vecs_buf) = (upload(ctx, "x", &x), upload(ctx, "y", &y0), vecs.upload(ctx));

    let input = Input {
        x: &x_buf,
        n_tokens: c.n_tokens,
        x_offset: c.x_offset,
        x_stride: x_stride as u32,
        vecs: &vecs_buf,
        norm: c.norm.then_some((norm_at, eps)),
    };
    let out = Output { y_stride: y_stride as u32, accumulate: c.accumulate, softcap: c.softcap };
    run(ctx, |step| matvec(step, &w, &input, &y_buf, out));
    let got = read(ctx, &y_buf, y_len);

    // Untouched elements must stay bit-identical (tolerance 0).
    let mut want: Vec<f64> = y0.iter().map(|&v| v as f64).collect();
    let mut tol = vec![0.0; y_len];
    for t in 0..n_tokens {
        let xt = normalized_input(&x[c.x_offset as usize + t * x_stride..][..k], c.norm.then_some((&norm_w[..], eps)));
        for r in 0..n_rows {
            let (mut dot, mag) = dot_and_magnitude(&w_ref[r * k..][..k], &xt);
            if c.softcap > 0.0 {
                dot = c.softcap as f64 * (dot / c.softcap as f64).tanh();
            }
            let o = t * y_stride + r;
            let base = if c.accumulate { y0[o] as f64 } else { 0.0 };
            want[o] = base + dot;
            tol[o] = 1e-4 * (mag + base.abs() + 1.0);
        }
    }
    assert_close(&format!("matvec {c:?}"), &got, &want, &tol);
}

/// Shapes with partial workgroups, several row-parts and token counts 1, 3, 4, 9 (tiles of 1, 4
/// and 8 tokens, full and partial), plain and with the input norm folded in.
fn check_matvec_odd_shapes(ty: GgmlType) {
    let ctx = common::gpu();
    let mut seed = 1000 + ty.id() as u64 * 100;
    let shapes = if ty.block_elems() == 256 { [(37, 256), (5, 768), (1, 768)] } else { [(37, 96), (5, 160), (1, 288)] };
    for (n_rows, k) in shapes {
        for n_tokens in [1, 3, 4, 9] {
            seed += 1;
            check_matvec(&ctx, MatvecCase::dense(ty, n_rows, k, n_tokens), seed);
            check_matvec(&ctx, MatvecCase::dense(ty, n_rows, k, n_tokens).normed(), seed + 50);
        }
        check_matvec(&ctx, MatvecCase { unaligned_norm: true, ..MatvecCase::dense(ty, n_rows, k, 1).normed() }, seed + 80);
    }
}

#[test]
fn matvec_f32() {
    check_matvec_odd_shapes(GgmlType::F32);
}
#[test]
fn matvec_f16() {
    check_matvec_odd_shapes(GgmlType::F16);
}
#[test]
fn matvec_bf16() {
    check_matvec_odd_shapes(GgmlType::BF16);
}
#[test]
fn matvec_q4_0() {
    check_matvec_odd_shapes(GgmlType::Q4_0);
}
#[test]
fn matvec_q4_1() {
    check_matvec_odd_shapes(GgmlType::Q4_1);
}
#[test]
fn matvec_q5_0() {
    check_matvec_odd_shapes(GgmlType::Q5_0);
}
#[test]
fn matvec_q5_1() {
    check_matvec_odd_shapes(GgmlType::Q5_1);
}
#[test]
fn matvec_q8_0() {
    check_matvec_odd_shapes(GgmlType::Q8_0);
}
#[test]
fn matvec_q2_k() {
    check_matvec_odd_shapes(GgmlType::Q2_K);
}
#[test]
fn matvec_q3_k() {
    check_matvec_odd_shapes(GgmlType::Q3_K);
}
#[test]
fn matvec_q4_k() {
    check_matvec_odd_shapes(GgmlType::Q4_K);
}
#[test]
fn matvec_q5_k() {
    check_matvec_odd_shapes(GgmlType::Q5_K);
}
#[test]
fn matvec_q6_k() {
    check_matvec_odd_shapes(GgmlType::Q6_K);
}
#[test]
fn matvec_iq4_nl() {
    check_matvec_odd_shapes(GgmlType::IQ4_NL);
}
#[test]
fn matvec_iq4_xs() {
    check_matvec_odd_shapes(GgmlType::IQ4_XS);
}

/// Weights streamed in uneven in-order writes (texels, rows and parts straddling writes) read
/// back the same as one write, for every type, in textures (blocks packed or raw), raw storage
/// and interleaved rows; and on lavapipe (a CPU driver) the default keeps weights in textures,
/// Q4_1 and Q8_0 blocks packed.
#[test]
fn matvec_weights_written_in_uneven_chunks() {
    let shared = common::gpu();
    let cpu = shared.adapter_name.contains("llvmpipe");
    let w = WeightMatrix::allocate(&shared, "w", GgmlType::Q4_0, 64, 3).expect("allocate");
    assert!(!cpu || w.in_textures(), "lavapipe's default weights are textures");
    assert!(!w.packed(), "Q4_0 has no packed layout");
    for ty in [GgmlType::Q4_1, GgmlType::Q8_0] {
        let w = WeightMatrix::allocate(&shared, "w", ty, 96, 3).expect("allocate");
        assert!(!cpu || w.packed(), "lavapipe packs {ty} blocks");
    }
    for (m, memory) in [Memory::Texture, Memory::RawTexture, Memory::Storage, Memory::Interleaved].into_iter().enumerate() {
        let ctx = gpu_with_variant("t1r4-uniform", memory);
        for (i, ty) in GPU_TYPES.into_iter().enumerate() {
            let seed = 7300 + (m * 100 + i * 4) as u64;
            let k = row_len(ty, 160);
            check_matvec(&ctx, MatvecCase { chunks: Some(7), ..MatvecCase::dense(ty, 37, k, 1) }, seed);
            check_matvec(&ctx, MatvecCase { chunks: Some(23), rows_per_part: None, ..MatvecCase::dense(ty, 21, 1024, 3) }, seed + 1);
        }
    }
}

/// x_offset / x_stride / y_stride variants, accumulate, norm and soft-cap, for every type, decode
/// and prefill. (`matvec` requires x_offset and x_stride to be multiples of 4; y_stride is free.)
#[test]
fn matvec_strides_offsets_accumulate_softcap() {
    let ctx = common::gpu();
    for (i, ty) in GPU_TYPES.into_iter().enumerate() {
        let cases = [(1, false, false, 0.0), (1, true, true, 0.0), (3, true, false, 2.5), (9, false, true, 2.5), (9, true, true, 0.0), (4, false, false, 30.0)];
        for (n_tokens, accumulate, norm, softcap) in cases {
            let k = row_len(ty, 160);
            let case = MatvecCase { x_offset: 8, x_pad: 4, y_pad: 3, accumulate, norm, softcap, ..MatvecCase::dense(ty, 37, k, n_tokens) };
            check_matvec(&ctx, case, 5000 + i as u64 * 10 + n_tokens as u64 + norm as u64);
        }
        // Accumulate into a dense output too, soft-capped (the cap applies before the add).
        check_matvec(&ctx, MatvecCase { accumulate: true, softcap: 1.5, ..MatvecCase::dense(ty, 5, row_len(ty, 96), 3) }, 6000 + i as u64);
    }
}

/// The default `allocate` (one part for these sizes).
#[test]
fn matvec_default_allocation() {
    let ctx = common::gpu();
    let types = [GgmlType::F16, GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q3_K, GgmlType::Q6_K, GgmlType::IQ4_NL];
    for (i, ty) in types.into_iter().enumerate() {
        let k = row_len(ty, 288);
        let case = MatvecCase { rows_per_part: None, ..MatvecCase::dense(ty, 37, k, 9) };
        check_matvec(&ctx, case, 7000 + i as u64);
        let case = MatvecCase { rows_per_part: None, ..MatvecCase::dense(ty, 37, k, 1) };
        check_matvec(&ctx, case.normed(), 7100 + i as u64);
    }
}

/// `Input::dense` / `normed` and `Output::dense` / `accumulate` build the arguments the kernels
/// expect; misaligned inputs and empty token lists are rejected before anything is recorded.
#[test]
fn matvec_argument_helpers_and_checks() {
    let ctx = common::gpu();
    let w = WeightMatrix::allocate(&ctx, "w", GgmlType::Q8_0, 96, 37).unwrap();
    let buf = ctx.storage_buffer("b", 4096).unwrap();
    let input = Input::dense(&buf, &buf, 4, 96);
    assert_eq!((input.n_tokens, input.x_offset, input.x_stride, input.norm), (4, 0, 96, None));
    assert_eq!(input.normed(8, 1e-6).norm, Some((8, 1e-6)));
    let out = Output::dense(&w);
    assert_eq!((out.y_stride, out.accumulate, out.softcap), (37, false, 0.0));
    assert!(out.accumulate().accumulate);

    let mut step = Step::new(&ctx);
    let bad = [
        Input { x_offset: 2, ..input },
        Input { x_stride: 98, ..input },
        Input { n_tokens: 0, ..input },
        input.normed(6, 1e-6),
    ];
    for i in bad {
        assert!(matvec(&mut step, &w, &i, &buf, out).is_err(), "offset {} stride {} tokens {} norm {:?}", i.x_offset, i.x_stride, i.n_tokens, i.norm);
    }
    assert_eq!(step.dispatches(), 0);
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

/// The GPU's top-k of logits[offset .. offset + n] and the id it wrote to `next_id[0]`.
fn gpu_topk(ctx: &Context, logits: &[f32], offset: usize, n: usize, k: u32) -> (Vec<(u32, f32)>, u32) {
    let buf = upload(ctx, "logits", logits);
    let topk = TopK::new(ctx, n as u32, k).expect("TopK::new");
    // Not an id the selection could write: it must be overwritten.
    let next_id = ctx.upload_u32("next id", &[u32::MAX - 1, 7]).unwrap();
    run(ctx, |step| topk.record(step, &buf, offset as u32, &next_id));
    let bytes = pollster::block_on(ctx.read_buffer(&topk.result, topk.k as u64 * 8)).expect("top-k read");
    let ids = pollster::block_on(ctx.read_buffer(&next_id, 8)).expect("next id read");
    let ids: Vec<u32> = bytemuck::pod_collect_to_vec(&ids);
    assert_eq!(ids[1], 7, "top-k wrote past next_id[0]");
    (TopK::decode(&bytes), ids[0])
}

/// A context whose first top-k stage is the 256-thread workgroup kernel GPUs run (the shared
/// context on lavapipe runs `chunk_topk_lanes`, with subgroups of 8).
fn workgroup_topk_context() -> Arc<Context> {
    static CTX: OnceLock<Arc<Context>> = OnceLock::new();
    CTX.get_or_init(|| {
        let mut ctx = pollster::block_on(Context::new()).expect("a second GPU context");
        ctx.tuning.broadcast_inputs = false;
        Arc::new(ctx)
    })
    .clone()
}

/// Checks the top-k on `ctx` and on [`workgroup_topk_context`].
fn check_topk(ctx: &Context, logits: &[f32], offset: usize, n: usize, k: u32, what: &str) {
    let want = topk_reference(&logits[offset..offset + n], k as usize);
    let ids = |v: &[(u32, f32)]| v.iter().map(|p| p.0).collect::<Vec<_>>();
    for (ctx, kernel) in [(ctx, "default"), (&*workgroup_topk_context(), "workgroup kernel")] {
        let (got, next_id) = gpu_topk(ctx, logits, offset, n, k);
        assert_eq!(ids(&got), ids(&want), "top-{k} of {n} ({what}, {kernel}): indices");
        assert_eq!(next_id, want[0].0, "top-{k} of {n} ({what}, {kernel}): next_id[0] must be the best id");
        for (&(i, g), &(_, w)) in got.iter().zip(&want) {
            let same = g == w || (w.is_nan() && (g.is_nan() || g == f32::NEG_INFINITY || g == f32::MIN));
            assert!(same, "top-{k} of {n} ({what}, {kernel}): value of {i}: got {g} want {w}");
        }
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
    // Gemma 3's vocabulary with the most candidates (sampling without a top-k limit): 256 chunks
    // of 256 candidates for the merge.
    let logits = normals(&mut rng, 300_000, 4.0);
    check_topk(&ctx, &logits, 0, 262144, ops::MAX_TOP_K, "Gemma 3's vocabulary");
    // More chunks than the merge's threads: each thread follows two lists.
    check_topk(&ctx, &logits, 0, 300_000, 40, "293 chunks");
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
    // The merge follows at most 1024 chunks of 1024 logits.
    assert!(TopK::new(&ctx, 1 << 20, 1).is_ok());
    assert!(TopK::new(&ctx, (1 << 20) + 1, 1).is_err());
}

#[test]
fn penalize_adjusts_listed_logits_only() {
    let ctx = common::gpu();
    let mut rng = Rng::new(9);
    let offset = 3usize;
    let logits = normals(&mut rng, 200, 4.0);
    // The state counts 5 pairs; the sixth, in the buffer, must be ignored. A zero count gets no
    // presence penalty.
    let pairs: Vec<(u32, u32)> = vec![(0, 1), (5, 3), (17, 2), (100, 0), (196, 4), (50, 9)];
    let n_pairs = 5;
    let words: Vec<u32> = pairs.iter().flat_map(|&(i, c)| [i, c]).collect();
    let buf = upload(&ctx, "logits", &logits);
    let list = ctx.upload_u32("pairs", &words).unwrap();
    let state = StepState { penalty_pairs: n_pairs as u32, repeat: 1.3, presence: 0.5, frequency: 0.25, ..StepState::at(11) };
    run_with(&ctx, state, |step| ops::penalize(step, &list, &buf, offset as u32));
    let got = read(&ctx, &buf, logits.len());
    let mut want: Vec<f64> = logits.iter().map(|&v| v as f64).collect();
    for &(id, count) in &pairs[..n_pairs] {
        let o = offset + id as usize;
        let l = want[o];
        let presence = if count > 0 { 0.5 } else { 0.0 };
        want[o] = if l > 0.0 { l / 1.3 } else { l * 1.3 } - count as f64 * 0.25 - presence;
    }
    assert_close_rel("penalize", &got, &want, 1e-6, 1e-6);
    // More pairs than the workgroup has threads.
    let many: Vec<(u32, u32)> = (0..300).map(|i| (3 * i + 1, i % 4)).collect();
    let words: Vec<u32> = many.iter().flat_map(|&(i, c)| [i, c]).collect();
    let many_logits = normals(&mut rng, 1000, 4.0);
    let (buf2, list2) = (upload(&ctx, "logits", &many_logits), ctx.upload_u32("pairs", &words).unwrap());
    let state = StepState { penalty_pairs: 300, repeat: 1.1, presence: 0.2, frequency: 0.1, ..StepState::at(0) };
    run_with(&ctx, state, |step| ops::penalize(step, &list2, &buf2, 0));
    let mut want: Vec<f64> = many_logits.iter().map(|&v| v as f64).collect();
    for &(id, count) in &many {
        let l = want[id as usize];
        let presence = if count > 0 { 0.2 } else { 0.0 };
        want[id as usize] = if l > 0.0 { l / 1.1 } else { l * 1.1 } - count as f64 * 0.1 - presence;
    }
    assert_close_rel("penalize 300 pairs", &read(&ctx, &buf2, many_logits.len()), &want, 1e-6, 1e-6);
    // No pairs in the state: nothing changes.
    let before = got;
    run_with(&ctx, StepState { repeat: 2.0, presence: 1.0, ..StepState::at(0) }, |step| ops::penalize(step, &list, &buf, offset as u32));
    assert_eq!(read(&ctx, &buf, logits.len()), before, "penalize with 0 pairs changed the logits");
}

// ---------------------------------------------------------------------------------------------
// post_norm_add
// ---------------------------------------------------------------------------------------------

/// The shared context and one with the other norm kernel shape (`Tuning::norm_thread_per_row`:
/// a thread per row on lavapipe by default, else a workgroup per row).
fn norm_contexts() -> [Arc<Context>; 2] {
    static OTHER: Mutex<Option<Arc<Context>>> = Mutex::new(None);
    let shared = common::gpu();
    let other = OTHER
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(|| {
            let mut ctx = pollster::block_on(Context::new()).expect("a second GPU context");
            ctx.tuning.norm_thread_per_row = !shared.tuning.norm_thread_per_row;
            Arc::new(ctx)
        })
        .clone();
    [shared, other]
}

#[test]
fn post_norm_add_rows() {
    for ctx in norm_contexts() {
        check_post_norm_add(&ctx);
    }
}

fn check_post_norm_add(ctx: &Context) {
    for (n, n_rows, eps) in [(300usize, 5usize, 1e-5f32), (77, 3, 1e-6), (640, 2, 1e-5), (1, 1, 1e-5), (64, 130, 1e-5)] {
        let mut rng = Rng::new(n as u64 * 7 + n_rows as u64);
        let y = normals(&mut rng, n * n_rows + 3, 2.0);
        let x0 = normals(&mut rng, n * n_rows + 3, 1.0);
        let w = norm_weights(&mut rng, n);
        let mut vecs = Vecs::new();
        let _ = vecs.push(&normals(&mut rng, 5, 1.0));
        let w_at = vecs.push(&w);
        let (x_buf, y_buf, vecs_buf) = (upload(ctx, "x", &x0), upload(ctx, "y", &y), vecs.upload(ctx));
        run(ctx, |step| ops::post_norm_add(step, &vecs_buf, w_at, &y_buf, &x_buf, n as u32, n_rows as u32, eps));
        let got = read(ctx, &x_buf, x0.len());
        let mut want: Vec<f64> = x0.iter().map(|&v| v as f64).collect();
        for r in 0..n_rows {
            let row: Vec<f64> = y[r * n..][..n].iter().map(|&v| v as f64).collect();
            let s = inv_rms(&row, eps);
            for i in 0..n {
                want[r * n + i] += row[i] * s * w[i] as f64;
            }
        }
        // The tail after the last row is untouched.
        let tol: Vec<f64> = (0..x0.len()).map(|i| if i < n * n_rows { 1e-6 + 1e-5 * want[i].abs() } else { 0.0 }).collect();
        assert_close(&format!("post_norm_add n={n} rows={n_rows} thread per row: {}", ctx.tuning.norm_thread_per_row), &got, &want, &tol);
    }
}

// ---------------------------------------------------------------------------------------------
// rms_norm (a matrix kernel's input, normalised once per token)
// ---------------------------------------------------------------------------------------------

#[test]
fn rms_norm_rows() {
    for ctx in norm_contexts() {
        check_rms_norm(&ctx);
    }
}

fn check_rms_norm(ctx: &Context) {
    for (n, first_row, n_rows, eps) in [(576usize, 0usize, 1usize, 1e-5f32), (300, 2, 5, 1e-6), (77, 1, 3, 1e-5), (640, 0, 16, 1e-6), (4, 3, 1, 1e-5), (96, 1, 129, 1e-5)] {
        let mut rng = Rng::new(n as u64 * 11 + n_rows as u64);
        let x = normals(&mut rng, n * (first_row + n_rows), 3.0);
        let w = norm_weights(&mut rng, n);
        let mut vecs = Vecs::new();
        let _ = vecs.push(&normals(&mut rng, 7, 1.0));
        let w_at = vecs.push(&w);
        // The output buffer has a tail past the last row that must stay as it was.
        let out0 = normals(&mut rng, n * n_rows + 5, 1.0);
        let (x_buf, out_buf, vecs_buf) = (upload(ctx, "x", &x), upload(ctx, "out", &out0), vecs.upload(ctx));
        run(ctx, |step| ops::rms_norm(step, &vecs_buf, w_at, &x_buf, first_row as u32, &out_buf, n as u32, n_rows as u32, eps));
        let got = read(ctx, &out_buf, out0.len());
        let mut want: Vec<f64> = out0.iter().map(|&v| v as f64).collect();
        for r in 0..n_rows {
            let row: Vec<f64> = x[(first_row + r) * n..][..n].iter().map(|&v| v as f64).collect();
            let s = inv_rms(&row, eps);
            for i in 0..n {
                want[r * n + i] = row[i] * s * w[i] as f64;
            }
        }
        let tol: Vec<f64> = (0..out0.len()).map(|i| if i < n * n_rows { 1e-6 + 1e-5 * want[i].abs() } else { 0.0 }).collect();
        assert_close(&format!("rms_norm n={n} rows {first_row}..{} thread per row: {}", first_row + n_rows, ctx.tuning.norm_thread_per_row), &got, &want, &tol);
    }
}

// ---------------------------------------------------------------------------------------------
// kernel variants
// ---------------------------------------------------------------------------------------------

/// The matrix kernels run with the variant `name` for every shape, weights in `memory`: matvec
/// for every type (decode rows that fit the variant's input path, inputs at unaligned
/// offsets that fall back to storage), ffn_in and attn_in.
fn check_variant(name: &str, memory: Memory, seed: u64) {
    let ctx = gpu_with_variant(name, memory);
    let in_textures = matches!(memory, Memory::Texture | Memory::RawTexture);
    let w = WeightMatrix::allocate(&ctx, "w", GgmlType::Q8_0, 64, 3).expect("allocate");
    let layout = (w.in_textures(), w.packed(), w.interleaved());
    assert_eq!(layout, (in_textures, memory == Memory::Texture, memory == Memory::Interleaved), "{memory:?}");
    let shape = MatrixShape { kernel: MatrixKernel::Matvec, ty: GgmlType::Q4_0, rows: 1, k: 32, tokens: 1 };
    assert_eq!(ctx.matrix_variant(&shape).to_string(), name);
    for (i, ty) in GPU_TYPES.into_iter().enumerate() {
        let seed = seed + i as u64 * 4;
        let k = row_len(ty, 160);
        check_matvec(&ctx, MatvecCase::dense(ty, 37, k, 1), seed);
        check_matvec(&ctx, MatvecCase::dense(ty, 37, k, 1).normed(), seed + 3);
        // Rows of whole words for every type (160 elements are not, for odd block counts).
        check_matvec(&ctx, MatvecCase::dense(ty, 21, 1024, 1).normed(), seed + 5);
        // Prefill chunks: 32 tokens (two 16-token tiles; with a uniform input, one dispatch per
        // tile) and 21 (a partial tile; its uniform range would pass the buffer's end, so storage).
        check_matvec(&ctx, MatvecCase::dense(ty, 13, k, 32).normed(), seed + 6);
        check_matvec(&ctx, MatvecCase { accumulate: true, ..MatvecCase::dense(ty, 13, k, 21) }, seed + 7);
        check_matvec(&ctx, MatvecCase { accumulate: true, x_offset: 4, x_pad: 8, y_pad: 1, ..MatvecCase::dense(ty, 37, k, 9).normed() }, seed + 1);
        check_matvec(&ctx, MatvecCase { softcap: 2.0, ..MatvecCase::dense(ty, 5, k, 4).normed() }, seed + 2);
    }
    // Enough rows for 8 or more full-size workgroups of four rows per thread (smaller matrices
    // run smaller workgroups with t1r4, see `matmul::rows4_workgroup`), the last one partial;
    // in prefill, several passes per workgroup (`row_passes` in matvec_common.wgsl).
    for (i, ty) in [GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q4_K].into_iter().enumerate() {
        check_matvec(&ctx, MatvecCase::dense(ty, 2053, 256, 1), seed + 700 + i as u64);
        check_matvec(&ctx, MatvecCase::dense(ty, 2053, 256, 20).normed(), seed + 710 + i as u64);
    }
    kernels::ffn_in::check_some(&ctx, seed + 500);
    kernels::attn_in::check_some(&ctx, seed + 600);
}

#[test]
fn matrix_kernels_one_thread_per_row_input_in_storage() {
    check_variant("t1r1-storage", Memory::Storage, 9000);
}

#[test]
fn matrix_kernels_one_thread_per_row_input_uniform() {
    check_variant("t1r4-uniform", Memory::Texture, 9100);
}

#[test]
fn matrix_kernels_one_thread_per_row_input_staged() {
    check_variant("t1r2-workgroup", Memory::Interleaved, 9200);
}

#[test]
fn matrix_kernels_16_threads_per_row() {
    check_variant("t16r1-storage", Memory::RawTexture, 9300);
}

#[test]
fn matrix_kernels_8_threads_per_row_subgroup_reduction() {
    check_variant("t8r1-uniform-sg", Memory::Interleaved, 9500);
}

/// Four rows per group of lanes in decode (ROWS4 with G > 1: the lanes' four sums reduced
/// together), through workgroup memory and through subgroups.
#[test]
fn matrix_kernels_8_threads_per_four_rows() {
    check_variant("t8r4-storage", Memory::Storage, 9600);
}

#[test]
fn matrix_kernels_8_threads_per_four_rows_subgroup_reduction() {
    check_variant("t8r4-uniform-sg", Memory::Texture, 9700);
}

#[test]
fn matrix_kernels_64_threads_per_row_input_uniform() {
    check_variant("t64r2-uniform", Memory::Storage, 9400);
}

/// A token tile that was not tuned (speculative decoding's 4- and 8-token verify steps) runs the
/// variant chosen for the same matrix at the nearest tuned tile of several tokens; decode shapes
/// and other matrices keep the adapter's default.
#[test]
fn untuned_tiles_take_the_nearest_tuned_tile_of_the_same_matrix() {
    let ctx = pollster::block_on(Context::new()).expect("a GPU context");
    let shape = |rows: u32, tokens: u32| MatrixShape { kernel: MatrixKernel::Matvec, ty: GgmlType::Q4_0, rows, k: 64, tokens };
    let prefill = MatrixVariant::parse("t1r1-uniform").unwrap();
    let decode = MatrixVariant::parse("t1r4-workgroup").unwrap();
    assert_ne!(ctx.default_variant(4), prefill, "the test needs a choice that differs from the default");
    ctx.choose_variant(shape(64, 16), prefill);
    ctx.choose_variant(shape(64, 1), decode);
    assert_eq!(ctx.matrix_variant(&shape(64, 4)), prefill, "a 4-token tile takes the 16-token choice, not decode's");
    assert_eq!(ctx.matrix_variant(&shape(64, 8)), prefill);
    assert_eq!(ctx.matrix_variant(&shape(64, 1)), decode);
    assert_eq!(ctx.matrix_variant(&shape(32, 4)), ctx.default_variant(4), "another matrix keeps the default");
    let nearer = MatrixVariant::parse("t1r4-uniform").unwrap();
    ctx.choose_variant(shape(64, 8), nearer);
    assert_eq!(ctx.matrix_variant(&shape(64, 4)), nearer, "the nearest tuned tile wins");
}
