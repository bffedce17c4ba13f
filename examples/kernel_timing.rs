//! Times each kernel family at SmolLM2-135M decode sizes (profiling aid).
use ferrolm::gpu::matmul::{embed, matmul, MatmulArgs};
use ferrolm::gpu::ops::*;
use ferrolm::gpu::{Context, Step, WeightMatrix};
use ferrolm::quant::{testdata::random_blocks, GgmlType};
use std::time::Instant;

/// Prints and returns the time per dispatch in ms (second of two rounds).
fn time(ctx: &Context, name: &str, reps: u32, mut f: impl FnMut(&mut Step)) -> f64 {
    let mut ms = 0.0;
    for round in 0..2 {
        let t = Instant::now();
        let mut step = Step::new(ctx);
        for _ in 0..reps {
            f(&mut step);
        }
        step.submit(None);
        ctx.device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
        if round == 1 {
            ms = t.elapsed().as_secs_f64() * 1000.0 / reps as f64;
            println!("{name:40} {ms:8.3} ms per dispatch");
        }
    }
    ms
}

fn main() {
    let ctx = pollster::block_on(Context::new()).unwrap();
    let (d, f, v) = (576u32, 1536u32, 49152u32);
    let buf = |n: u32| ctx.storage_buffer("b", n as u64 * 4).unwrap();
    let x = buf(8 * f);
    let y = buf(8 * v);
    for (ty, k, n) in [(GgmlType::Q4_1, d, f), (GgmlType::Q4_1, f, d), (GgmlType::Q8_0, d, v)] {
        let w = WeightMatrix::allocate(&ctx, "w", ty, k as u64, n as u64).unwrap();
        let bytes = random_blocks(ty, (k as u64 * n as u64 / ty.block_elems()) as usize, 1);
        w.write(&ctx.queue, 0, &bytes);
        for t in [1u32, 4] {
            time(&ctx, &format!("matmul {ty:?} k={k} n={n} T={t}"), 10, |s| matmul(s, &w, &x, &y, MatmulArgs::dense(&w, t)).unwrap());
        }
        if n == v {
            let ids = ctx.upload_u32("ids", &[5, 7, 9, 11]).unwrap();
            time(&ctx, "embed T=4", 10, |s| embed(s, &w, &ids, &x, 4, 1.0).unwrap());
        }
    }
    // Block readers per weight byte: Q4_1 against the 256-element K-quants, k a multiple of 256.
    for (k, n) in [(768u32, 2048u32), (2048, 768)] {
        for ty in [GgmlType::Q4_1, GgmlType::Q4_K, GgmlType::Q6_K] {
            let w = WeightMatrix::allocate(&ctx, "w", ty, k as u64, n as u64).unwrap();
            let bytes = random_blocks(ty, (k as u64 * n as u64 / ty.block_elems()) as usize, 1);
            w.write(&ctx.queue, 0, &bytes);
            for t in [1u32, 4] {
                let ms = time(&ctx, &format!("matmul {ty:?} k={k} n={n} T={t}"), 10, |s| matmul(s, &w, &x, &y, MatmulArgs::dense(&w, t)).unwrap());
                println!("{:40} {:8.3} ns per weight byte", "", ms * 1e6 / w.byte_len() as f64);
            }
        }
    }
    let nw = buf(d);
    time(&ctx, "rms_norm T=1", 20, |s| rms_norm(s, &x, &nw, &y, d, 1, 1e-5).unwrap());
    let r = Rope { mode: RopeMode::Interleaved, n_rot: 64, freq_base: 1e5, mscale: 1.0 };
    let divisors = ctx.upload_f32("divisors", &[1.0; 32]).unwrap();
    time(&ctx, "rope T=1", 20, |s| rope(s, &x, &divisors, &r, 1, 9, 64, 50).unwrap());
    let kc = buf(2048 * 192);
    let vc = buf(2048 * 192);
    let a = AttentionArgs { n_tokens: 1, n_heads: 9, n_kv_heads: 3, head_dim: 64, pos0: 100, scale: 0.125, softcap: 0.0, window: 0 };
    time(&ctx, "attention T=1 pos 100", 20, |s| attention(s, &x, &kc, &vc, &y, &a).unwrap());
    time(&ctx, "copy 192", 20, |s| elementwise(s, Elementwise::Copy, &x, &kc, 192, 0, 192 * 100).unwrap());
    time(&ctx, "swiglu 1536", 20, |s| elementwise(s, Elementwise::SwiGlu, &x, &y, 1536, 0, 0).unwrap());
    let tk = TopK::new(&ctx, v, 1).unwrap();
    time(&ctx, "topk k=1", 5, |s| tk.record(s, &y, 0).unwrap());
    let tk = TopK::new(&ctx, v, 40).unwrap();
    time(&ctx, "topk k=40", 5, |s| tk.record(s, &y, 0).unwrap());
}
