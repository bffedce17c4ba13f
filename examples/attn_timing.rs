//! Times `attn_in` (projections, RoPE, KV writes) against a plain matvec over the same weights,
//! at SmolLM2-135M's attention shape (Q4_1, 9 heads and 3 KV heads of 64 dims) or with
//! `SHAPE=gemma` Gemma 3 270M's (Q5_0, 4 and 1 of 256 dims, head norms), for 1 and 128 tokens
//! (profiling aid; the gap is what the fused kernel's own work costs):
//! `[VARIANT=t1r4-uniform] cargo run --release --example attn_timing`.
use ferrolm::gpu::matmul::{attn_in, matvec, AttnInArgs, Input, Output, RopeArgs, Rows};
use ferrolm::gpu::{Context, KvLayer, Step, StepState, WeightMatrix};
use ferrolm::quant::{testdata::random_blocks, GgmlType};
use std::time::Instant;

/// Wall time per call in ms: the fastest of 15 runs of `reps` calls recorded in one step.
fn time(ctx: &Context, reps: u32, mut f: impl FnMut(&mut Step)) -> f64 {
    let mut step = Step::new(ctx);
    for _ in 0..reps {
        f(&mut step);
    }
    let recording = step.finish();
    let mut all = vec![];
    for _ in 0..15 {
        let t = Instant::now();
        recording.run(ctx, &StepState::at(0), None);
        ctx.device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
        all.push(t.elapsed().as_secs_f64() * 1000.0 / reps as f64);
    }
    all.sort_by(|a, b| a.partial_cmp(b).unwrap());
    all[0]
}

fn matrix(ctx: &Context, ty: GgmlType, k: u32, n: u32) -> WeightMatrix {
    let w = WeightMatrix::allocate(ctx, "w", ty, k as u64, n as u64).unwrap();
    w.write(ctx, 0, &random_blocks(ty, (k as u64 * n as u64 / ty.block_elems()) as usize, 1));
    w
}

fn main() {
    let ctx = pollster::block_on(Context::new()).unwrap();
    ctx.force_variant(Some(ferrolm::gpu::variant::MatrixVariant::parse(&std::env::var("VARIANT").unwrap_or("t1r1-uniform".into())).unwrap()));
    let gemma = std::env::var("SHAPE").is_ok_and(|s| s == "gemma");
    let (d, nh, nkv, hd) = if gemma { (640u32, 4u32, 1u32, 256u32) } else { (576u32, 9u32, 3u32, 64u32) };
    let ty = if gemma { GgmlType::Q5_0 } else { GgmlType::Q4_1 };
    let x = ctx.storage_buffer("x", 128 * d as u64 * 4).unwrap();
    let y = ctx.storage_buffer("y", 128 * 2048 * 4).unwrap();
    let vecs = ctx.upload_f32("vecs", &vec![1.0; 4096]).unwrap();
    let qs: Vec<_> = (0..8).map(|_| matrix(&ctx, ty, d, nh * hd)).collect();
    let ks: Vec<_> = (0..8).map(|_| matrix(&ctx, ty, d, nkv * hd)).collect();
    let vs: Vec<_> = (0..8).map(|_| matrix(&ctx, ty, d, nkv * hd)).collect();
    let fused: Vec<_> = (0..8).map(|_| matrix(&ctx, ty, d, (nh + 2 * nkv) * hd)).collect();
    let kv = KvLayer::texture(&ctx, "kv", 2 * 1024 * (nkv * hd) as u64).unwrap();
    let rope = RopeArgs { neox: false, n_rot: hd, freq_base: 10000.0, freq_scale: 1.0, factors: None, mscale: 1.0 };
    let args = AttnInArgs { n_heads: nh, n_kv_heads: nkv, head_dim: hd, ctx_len: 1024, kv_f16: true, q_bias: None, k_bias: None, v_bias: None, q_norm: gemma.then_some(0), k_norm: gemma.then_some(0), head_eps: 1e-6, rope };
    for t in [1u32, 128] {
        let input = Input { x: &x, n_tokens: t, x_offset: 0, x_stride: d, vecs: &vecs, norm: None };
        let mut i = 0;
        let a = time(&ctx, 8, |s| {
            i = (i + 1) % 8;
            attn_in(s, Rows::all(&qs[i]), Rows::all(&ks[i]), Rows::all(&vs[i]), &input, &y, &kv, &args).unwrap()
        });
        let m = time(&ctx, 8, |s| {
            i = (i + 1) % 8;
            matvec(s, &fused[i], &input, &y, Output::dense(&fused[i])).unwrap()
        });
        println!("T={t:3}: attn_in {a:8.3} ms, matvec {}x{d} {m:8.3} ms", (nh + 2 * nkv) * hd);
    }
}
