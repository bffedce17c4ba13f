//! Times the prefill matrix kernels (16-token tiles) at Gemma 3 270M sizes, with whole-block
//! tiles (`Tuning::prefill_block_tiles`) and without (profiling aid):
//! `[VARIANT=t1r4-uniform] cargo run --release --example tile_timing [TYPE...]` (default types: Q5_0
//! Q4_K Q6_K Q4_1 Q8_0; default variant t1r1-uniform, what tuning picks for prefill on lavapipe).
use ferrolm::gpu::matmul::{ffn_in, matvec, Glu, Input, Output, Rows};
use ferrolm::gpu::{Context, Step, StepState, WeightMatrix};
use ferrolm::quant::{testdata::random_blocks, GgmlType};
use std::time::Instant;

/// Wall time per dispatch in ms (the second of two rounds of `reps` dispatches in one step).
fn time(ctx: &Context, reps: u32, mut f: impl FnMut(&mut Step)) -> f64 {
    let mut step = Step::new(ctx);
    for _ in 0..reps {
        f(&mut step);
    }
    let recording = step.finish();
    let mut ms = 0.0;
    for _ in 0..2 {
        let t = Instant::now();
        recording.run(ctx, &StepState::at(0), None);
        ctx.device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
        ms = t.elapsed().as_secs_f64() * 1000.0 / reps as f64;
    }
    ms
}

fn matrix(ctx: &Context, ty: GgmlType, k: u32, n: u32) -> WeightMatrix {
    let w = WeightMatrix::allocate(ctx, "w", ty, k as u64, n as u64).unwrap();
    w.write(ctx, 0, &random_blocks(ty, (k as u64 * n as u64 / ty.block_elems()) as usize, 1));
    w
}

fn main() {
    let names: Vec<String> = std::env::args().skip(1).collect();
    let types: Vec<GgmlType> = if names.is_empty() {
        vec![GgmlType::Q5_0, GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q4_1, GgmlType::Q8_0]
    } else {
        names.iter().map(|n| GgmlType::all().find(|t| t.name() == n).expect("a type name")).collect()
    };
    let (d, f) = (640u32, 2048u32);
    for blocks in [false, true] {
        let mut ctx = pollster::block_on(Context::new()).unwrap();
        ctx.tuning.prefill_block_tiles = blocks;
        ctx.force_variant(Some(ferrolm::gpu::variant::MatrixVariant::parse(&std::env::var("VARIANT").unwrap_or("t1r1-uniform".into())).unwrap()));
        let x = ctx.storage_buffer("x", 16 * f as u64 * 4).unwrap();
        let y = ctx.storage_buffer("y", 16 * 2 * f as u64 * 4).unwrap();
        let vecs = ctx.upload_f32("vecs", &vec![1.0; f as usize]).unwrap();
        for &ty in &types {
            let d = if ty.block_elems() == 256 { 768 } else { d };
            // Eight layers' matrices, taken in turn: a model streams each from memory once.
            let gates: Vec<_> = (0..8).map(|_| matrix(&ctx, ty, d, f)).collect();
            let ups: Vec<_> = (0..8).map(|_| matrix(&ctx, ty, d, f)).collect();
            let downs: Vec<_> = (0..8).map(|_| matrix(&ctx, ty, f, d)).collect();
            for t in [1u32, 16] {
                let input = Input::dense(&x, &vecs, t, d);
                let mut i = 0;
                let ffn = time(&ctx, 8, |s| {
                    i = (i + 1) % 8;
                    ffn_in(s, Rows::all(&gates[i]), Rows::all(&ups[i]), f, Glu::GeGlu, &input, &y).unwrap()
                });
                let input = Input::dense(&x, &vecs, t, f);
                let mv = time(&ctx, 8, |s| {
                    i = (i + 1) % 8;
                    matvec(s, &downs[i], &input, &y, Output::dense(&downs[i])).unwrap()
                });
                println!("block tiles {blocks:5} {:6} T={t:2}: ffn_in {d}->2x{f} {ffn:8.3} ms, matvec {f}->{d} {mv:8.3} ms", ty.name());
            }
        }
    }
}
