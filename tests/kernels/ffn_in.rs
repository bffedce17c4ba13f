//! `ffn_in`: RMSNorm → gate and up projections → SwiGLU / GeGLU, with separate gate and up
//! matrices of different types or one fused [2F, D] matrix.

use ferrolm::gpu::matmul::{ffn_in, Glu, Input, Rows};
use ferrolm::gpu::Context;
use ferrolm::quant::testdata::Rng;
use ferrolm::quant::GgmlType;

use crate::*;

fn silu(g: f64) -> f64 {
    g / (1.0 + (-g).exp())
}

fn gelu_tanh(g: f64) -> f64 {
    0.5 * g * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (g + 0.044715 * g * g * g)).tanh())
}

/// Where the gate and up rows live.
#[derive(Clone, Copy, Debug)]
enum Layout {
    /// Two matrices [F, D] of these types.
    Separate(GgmlType, GgmlType),
    /// One [2F, D] matrix: gate rows 0 .. F, up rows F .. 2F.
    Fused(GgmlType),
}

#[derive(Clone, Copy, Debug)]
struct FfnCase {
    layout: Layout,
    /// The hidden width F and the input width D.
    hidden: u32,
    d: u32,
    n_tokens: u32,
    glu: Glu,
    norm: bool,
    /// x_offset and the padding between input rows.
    x_offset: u32,
    x_pad: u32,
}

fn check_ffn(ctx: &Context, c: FfnCase, seed: u64) {
    let (f, d, n_tokens) = (c.hidden as usize, c.d as usize, c.n_tokens as usize);
    // The CPU values of gate row r and up row r.
    let (gate_ref, up_ref, gate_w, up_w);
    let fused;
    match c.layout {
        Layout::Separate(gt, ut) => {
            let (gb, gv) = random_matrix(gt, c.d, c.hidden, seed);
            let (ub, uv) = random_matrix(ut, c.d, c.hidden, seed + 1);
            gate_w = upload_matrix(ctx, gt, c.d, c.hidden, &gb, None);
            up_w = Some(upload_matrix(ctx, ut, c.d, c.hidden, &ub, None));
            (gate_ref, up_ref) = (gv, uv);
            fused = false;
        }
        Layout::Fused(ty) => {
            let (bytes, values) = random_matrix(ty, c.d, 2 * c.hidden, seed);
            gate_w = upload_matrix(ctx, ty, c.d, 2 * c.hidden, &bytes, None);
            up_w = None;
            gate_ref = values[..f * d].to_vec();
            up_ref = values[f * d..].to_vec();
            fused = true;
        }
    }
    let (gate, up) = if fused {
        (Rows::all(&gate_w), Rows { w: &gate_w, first: c.hidden })
    } else {
        (Rows::all(&gate_w), Rows::all(up_w.as_ref().unwrap()))
    };

    let mut rng = Rng::new(seed ^ 0x5eed);
    let x_stride = d + c.x_pad as usize;
    let x = normals(&mut rng, c.x_offset as usize + (n_tokens - 1) * x_stride + d + 3, 2.0);
    let norm_w = norm_weights(&mut rng, d);
    let eps = 1e-6;
    let mut vecs = Vecs::new();
    let norm_at = vecs.push(&norm_w);
    let y_len = n_tokens * f + 5;
    let (x_buf, vecs_buf) = (upload(ctx, "x", &x), vecs.upload(ctx));
    let y0 = normals(&mut rng, y_len, 1.0);
    let y_buf = upload(ctx, "y", &y0);
    let input = Input {
        x: &x_buf,
        n_tokens: c.n_tokens,
        x_offset: c.x_offset,
        x_stride: x_stride as u32,
        vecs: &vecs_buf,
        norm: c.norm.then_some((norm_at, eps)),
    };
    run(ctx, |step| ffn_in(step, gate, up, c.hidden, c.glu, &input, &y_buf));
    let got = read(ctx, &y_buf, y_len);

    // The tail past [n_tokens, F] is untouched.
    let mut want: Vec<f64> = y0.iter().map(|&v| v as f64).collect();
    let mut tol = vec![0.0; y_len];
    for t in 0..n_tokens {
        let xt = normalized_input(&x[c.x_offset as usize + t * x_stride..][..d], c.norm.then_some((&norm_w[..], eps)));
        for r in 0..f {
            let (g, g_mag) = dot_and_magnitude(&gate_ref[r * d..][..d], &xt);
            let (u, u_mag) = dot_and_magnitude(&up_ref[r * d..][..d], &xt);
            let act = match c.glu {
                Glu::SwiGlu => silu(g),
                Glu::GeGlu => gelu_tanh(g),
            };
            let (tg, tu) = (dot_tol(g_mag), dot_tol(u_mag));
            want[t * f + r] = act * u;
            // |act'| < 1.2 for both activations.
            tol[t * f + r] = 1.2 * tg * (u.abs() + tu) + act.abs() * tu + 1e-5 * (act * u).abs();
        }
    }
    assert_close(&format!("ffn_in {c:?}"), &got, &want, &tol);
}

fn case(layout: Layout, hidden: u32, d: u32, n_tokens: u32, glu: Glu, norm: bool) -> FfnCase {
    FfnCase { layout, hidden, d, n_tokens, glu, norm, x_offset: 0, x_pad: 0 }
}

/// A few cases (the threads-per-row test runs them on its own context).
pub fn check_some(ctx: &Context, seed: u64) {
    check_ffn(ctx, case(Layout::Separate(GgmlType::Q4_K, GgmlType::Q8_0), 37, 256, 9, Glu::SwiGlu, true), seed);
    check_ffn(ctx, case(Layout::Fused(GgmlType::Q5_1), 21, 96, 1, Glu::GeGlu, true), seed + 1);
    check_ffn(ctx, case(Layout::Separate(GgmlType::F16, GgmlType::Q6_K), 5, 256, 3, Glu::GeGlu, false), seed + 2);
    check_ffn(ctx, case(Layout::Fused(GgmlType::Q4_0), 6, 64, 21, Glu::SwiGlu, true), seed + 3);
    check_ffn(ctx, case(Layout::Separate(GgmlType::Q4_1, GgmlType::Q8_0), 6, 64, 32, Glu::GeGlu, true), seed + 4);
    // Prefill over several workgroups of several passes each (`row_passes`), the last partial.
    check_ffn(ctx, case(Layout::Separate(GgmlType::Q4_1, GgmlType::Q4_K), 700, 256, 20, Glu::SwiGlu, true), seed + 5);
}

#[test]
fn ffn_in_separate_and_fused_swiglu_geglu() {
    let ctx = common::gpu();
    let layouts = [
        (Layout::Separate(GgmlType::Q4_K, GgmlType::Q8_0), 256),
        (Layout::Separate(GgmlType::F16, GgmlType::Q5_1), 160),
        (Layout::Separate(GgmlType::IQ4_XS, GgmlType::Q6_K), 256),
        (Layout::Fused(GgmlType::Q4_1), 96),
        (Layout::Fused(GgmlType::Q3_K), 256),
    ];
    let mut seed = 300;
    for (layout, d) in layouts {
        for (n_tokens, glu, norm) in [(1, Glu::SwiGlu, false), (1, Glu::GeGlu, true), (3, Glu::SwiGlu, true), (9, Glu::GeGlu, false), (9, Glu::SwiGlu, true)] {
            seed += 2;
            check_ffn(&ctx, case(layout, 37, d, n_tokens, glu, norm), seed);
        }
    }
    // Strided input rows at an offset; a hidden width below one workgroup's rows.
    check_ffn(&ctx, FfnCase { x_offset: 12, x_pad: 4, ..case(Layout::Fused(GgmlType::Q8_0), 70, 96, 4, Glu::SwiGlu, true) }, 400);
    check_ffn(&ctx, FfnCase { x_offset: 4, x_pad: 8, ..case(Layout::Separate(GgmlType::BF16, GgmlType::IQ4_NL), 3, 160, 9, Glu::GeGlu, true) }, 401);
}

/// Rows outside the matrix, or a matrix split into parts, are rejected.
#[test]
fn ffn_in_rejects_rows_outside_one_buffer() {
    let ctx = common::gpu();
    let w = ferrolm::gpu::WeightMatrix::allocate(&ctx, "w", GgmlType::Q8_0, 64, 10).unwrap();
    let split = ferrolm::gpu::WeightMatrix::allocate_with_part_limit(&ctx, "w", GgmlType::Q8_0, 64, 10, 68 * 4).unwrap();
    assert!(split.parts.len() > 1);
    let buf = ctx.storage_buffer("b", 4096).unwrap();
    let input = Input::dense(&buf, &buf, 1, 64);
    let mut step = ferrolm::gpu::Step::new(&ctx);
    assert!(ffn_in(&mut step, Rows::all(&w), Rows { w: &w, first: 5 }, 6, Glu::SwiGlu, &input, &buf).is_err());
    assert!(ffn_in(&mut step, Rows::all(&split), Rows::all(&split), 10, Glu::SwiGlu, &input, &buf).is_err());
    assert!(ffn_in(&mut step, Rows::all(&w), Rows::all(&w), 10, Glu::SwiGlu, &input, &buf).is_ok());
    assert_eq!(step.dispatches(), 1);
}
