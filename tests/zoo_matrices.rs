//! The GPU block readers against llama.cpp's own output: every 2-D tensor of a GPU-readable type in
//! the zoo's K-quant and IQ4 llama files, multiplied on the GPU and checked against the CPU
//! dequantization (which follows ggml's `dequantize_row_*`) times the same random inputs; and the CPU
//! dequantization against the f16 file the presets were quantized from.

mod common;

use std::collections::{BTreeMap, HashMap};

use ferrolm::gguf::TensorInfo;
use ferrolm::gpu::matmul::{matvec, Input, Output};
use ferrolm::gpu::{gpu_supports, Context, Step, WeightMatrix};
use ferrolm::loader::{ByteSource, FileSource};
use ferrolm::quant::testdata::Rng;
use ferrolm::quant::{dequantize, GgmlType};

const FILES: [&str; 7] = [
    "tiny-llama-q2_k.gguf",
    "tiny-llama-q3_k_m.gguf",
    "tiny-llama-q4_k_m.gguf",
    "tiny-llama-q5_k_m.gguf",
    "tiny-llama-q6_k.gguf",
    "tiny-llama-iq4_nl.gguf",
    "tiny-llama-iq4_xs.gguf",
];

/// Checks `y = W x` for `n_tokens` random input rows; returns the number of outputs checked.
fn check_tensor(ctx: &Context, what: &str, info: &TensorInfo, bytes: &[u8], n_tokens: u32, seed: u64) -> usize {
    let (ty, k, n_rows) = (info.ty, info.dims[0] as u32, info.dims[1] as u32);
    let (ku, nu, tu) = (k as usize, n_rows as usize, n_tokens as usize);
    let mut w_ref = vec![0f32; ku * nu];
    dequantize(ty, bytes, &mut w_ref).unwrap_or_else(|e| panic!("{what}: CPU dequantize: {e}"));
    assert!(w_ref.iter().all(|v| v.is_finite()), "{what}: non-finite weights");

    let w = WeightMatrix::allocate(ctx, what, ty, k as u64, n_rows as u64).expect("allocate");
    assert_eq!(w.byte_len(), bytes.len() as u64, "{what}: byte length");
    w.write(ctx, 0, bytes);

    let mut rng = Rng::new(seed);
    let x: Vec<f32> = (0..tu * ku).map(|_| rng.normal()).collect();
    let x_buf = ctx.upload_f32("x", &x).expect("upload x");
    let y_buf = ctx.upload_f32("y", &vec![f32::NAN; tu * nu]).expect("upload y");
    let mut step = Step::new(ctx);
    let input = Input::dense(&x_buf, ctx.placeholder(), n_tokens, k);
    matvec(&mut step, &w, &input, &y_buf, Output::dense(&w)).expect("record matvec");
    step.submit(None);
    let got = pollster::block_on(ctx.read_f32(&y_buf, tu * nu)).expect("read back");

    for t in 0..tu {
        let xt = &x[t * ku..][..ku];
        for r in 0..nu {
            let wr = &w_ref[r * ku..][..ku];
            let want: f64 = wr.iter().zip(xt).map(|(&a, &b)| a as f64 * b as f64).sum();
            let mag: f64 = wr.iter().zip(xt).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum();
            let g = got[t * nu + r] as f64;
            let tol = 1e-4 * (mag + 1e-3);
            assert!(
                (g - want).abs() <= tol,
                "{what}: token {t} row {r}: GPU {g} vs CPU {want} (tolerance {tol:e}, Σ|w·x| = {mag})"
            );
        }
    }
    tu * nu
}

/// The 2-D tensors of `tiny-llama-f16.gguf` (the weights every llama preset was quantized from),
/// as f32 by name.
fn original_weights() -> HashMap<String, Vec<f32>> {
    let path = common::repo_path("tests/fixtures/zoo/tiny-llama-f16.gguf");
    let header = common::read_gguf_header(&path);
    let mut source = FileSource::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut out = HashMap::new();
    for info in header.tensors.iter().filter(|t| t.dims.len() == 2) {
        let bytes = pollster::block_on(source.read(info.offset, info.n_bytes)).expect("read tensor bytes");
        let mut v = vec![0f32; info.n_elements as usize];
        dequantize(info.ty, &bytes, &mut v).expect("dequantize the f16 original");
        out.insert(info.name.clone(), v);
    }
    out
}

/// ‖dequantize(bytes) − original‖ / ‖original‖.
fn rel_rms(ty: GgmlType, bytes: &[u8], original: &[f32]) -> f64 {
    let mut v = vec![0f32; original.len()];
    dequantize(ty, bytes, &mut v).expect("dequantize");
    let err: f64 = v.iter().zip(original).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum();
    let norm: f64 = original.iter().map(|&b| (b as f64).powi(2)).sum();
    (err / norm).sqrt()
}

#[test]
fn zoo_kquant_and_iq4_matrices_match_cpu_dequantization() {
    let ctx = common::gpu();
    let originals = original_weights();
    // type -> (tensors checked, outputs checked)
    let mut seen: BTreeMap<GgmlType, (usize, usize)> = BTreeMap::new();
    // type -> worst relative RMS error of the CPU dequantization against the f16 original
    let mut worst_err: BTreeMap<GgmlType, f64> = BTreeMap::new();
    for (fi, file) in FILES.iter().enumerate() {
        let path = common::repo_path("tests/fixtures/zoo").join(file);
        let header = common::read_gguf_header(&path);
        let mut source = FileSource::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        let mut checked = 0;
        for (ti, info) in header.tensors.iter().enumerate() {
            if info.dims.len() != 2 || !gpu_supports(info.ty) {
                continue;
            }
            let (k, n_rows) = (info.dims[0], info.dims[1]);
            let bytes = pollster::block_on(source.read(info.offset, info.n_bytes)).expect("read tensor bytes");
            let what = format!("{file} {} ({}, [{k}, {n_rows}])", info.name, info.ty);
            // Decode (1 token) and prefill (5 tokens: a partial tile of 8).
            let seed = (fi as u64) << 32 | (ti as u64) << 8;
            let mut outputs = check_tensor(&ctx, &what, info, &bytes, 1, seed);
            outputs += check_tensor(&ctx, &what, info, &bytes, 5, seed + 1);
            if let Some(err) = originals.get(&info.name).map(|orig| rel_rms(info.ty, &bytes, orig)) {
                worst_err.entry(info.ty).and_modify(|w: &mut f64| *w = w.max(err)).or_insert(err);
            }
            let e = seen.entry(info.ty).or_default();
            e.0 += 1;
            e.1 += outputs;
            checked += 1;
        }
        assert!(checked > 0, "{file}: no GPU-readable matrices");
    }
    eprintln!("checked (tensors, outputs) per type: {seen:?}");
    eprintln!("worst relative RMS error against the f16 original per type: {worst_err:?}");
    let new_types = [
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::IQ4_NL,
        GgmlType::IQ4_XS,
    ];
    for ty in new_types {
        assert!(seen.contains_key(&ty), "no {ty} matrix in the zoo files (seen: {seen:?})");
    }
    // Independent of the GPU: the CPU reference decodes llama.cpp's bytes to the weights they were
    // quantized from, within each type's quantization noise (about halving per extra bit; a
    // misread layout or scale would be off by ~100%). Measured: Q2_K 0.30, Q3_K 0.15, Q4_K 0.072,
    // Q5_K 0.036, Q6_K 0.018, IQ4_NL / IQ4_XS 0.077.
    let bounds = [(GgmlType::Q2_K, 0.4), (GgmlType::Q3_K, 0.2), (GgmlType::Q4_K, 0.1), (GgmlType::Q5_K, 0.05), (GgmlType::Q6_K, 0.025), (GgmlType::IQ4_NL, 0.1), (GgmlType::IQ4_XS, 0.1)];
    for (ty, bound) in bounds {
        let err = *worst_err.get(&ty).unwrap_or_else(|| panic!("no {ty} tensor compared with the f16 original"));
        assert!(err < bound, "{ty}: CPU dequantization is {err:.3} (relative RMS) away from the f16 original; expected < {bound}");
    }
}
