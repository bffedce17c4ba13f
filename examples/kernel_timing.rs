//! Times each kernel family at SmolLM2-135M decode sizes (profiling aid):
//! `cargo run --release --example kernel_timing [interleaved] [VARIANT...]` (e.g. t1r4-uniform
//! t1r4-workgroup; default: the adapter's default variant; `interleaved`: rows interleaved by 8).
use ferrolm::gpu::matmul::{attn_in, embed, ffn_in, matvec, AttnInArgs, Glu, Input, Output, RopeArgs, Rows};
use ferrolm::gpu::ops::*;
use ferrolm::gpu::variant::MatrixVariant;
use ferrolm::gpu::{Context, KvLayer, Step, StepState, WeightMatrix};
use ferrolm::quant::{testdata::random_blocks, GgmlType};
use std::time::Instant;

/// CPU time of every thread of this process so far, in ms (Linux; 0 elsewhere). On a CPU
/// driver (lavapipe) the kernels run on this process's threads, so this measures them even when
/// other processes compete for the cores and wall-clock time means little.
fn process_cpu_ms() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0.0 };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .sum::<f64>()
        / 1e6
}

/// Prints and returns the wall time per dispatch in ms (second of two rounds), and the CPU time.
fn time(ctx: &Context, name: &str, reps: u32, mut f: impl FnMut(&mut Step)) -> f64 {
    let mut step = Step::new(ctx);
    for _ in 0..reps {
        f(&mut step);
    }
    let dispatches = step.dispatches().max(1);
    let recording = step.finish();
    let mut ms = 0.0;
    for round in 0..2 {
        let t = Instant::now();
        let cpu = process_cpu_ms();
        recording.run(ctx, &StepState::at(100), None);
        ctx.device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
        if let Err(e) = ctx.check_device_error() {
            panic!("{name}: {e}");
        }
        if round == 1 {
            ms = t.elapsed().as_secs_f64() * 1000.0 / dispatches as f64;
            let cpu_ms = (process_cpu_ms() - cpu) / dispatches as f64;
            println!("{name:44} {ms:8.3} ms per dispatch ({cpu_ms:.3} ms of CPU)");
        }
    }
    ms
}

fn matrix(ctx: &Context, ty: GgmlType, k: u32, n: u32) -> WeightMatrix {
    let w = WeightMatrix::allocate(ctx, "w", ty, k as u64, n as u64).unwrap();
    let bytes = random_blocks(ty, (k as u64 * n as u64 / ty.block_elems()) as usize, 1);
    w.write(ctx, 0, &bytes);
    w
}

fn main() {
    let mut ctx = pollster::block_on(Context::new()).unwrap();
    // "interleaved" interleaves the weight rows by 8 (see gpu::weights).
    let mut variants: Vec<String> = std::env::args().skip(1).collect();
    if variants.first().is_some_and(|v| v == "interleaved") {
        variants.remove(0);
        ctx.tuning.interleave_rows = true;
    }
    println!("interleaved rows: {}", ctx.tuning.interleave_rows);
    println!("{:?}", ctx.limits);
    let (d, f, v) = (576u32, 1536u32, 49152u32);
    let buf = |n: u32| ctx.storage_buffer("b", n as u64 * 4).unwrap();
    let x = buf(16 * f);
    let y = buf(8 * v);
    let vecs = ctx.upload_f32("vecs", &vec![1.0; 4 * f as usize]).unwrap();
    let kv = KvLayer::Buffer(buf(2 * 4096 * 192 / 2));
    let kv_texture = KvLayer::texture(&ctx, "kv", 2 * 4096 * 192).unwrap();
    for name in variants.iter().map(|n| Some(n.as_str())).chain(variants.is_empty().then_some(None)) {
        ctx.force_variant(name.map(|n| MatrixVariant::parse(n).unwrap()));
        println!("== variant {}", name.unwrap_or("(adapter default)"));
        matrix_kernels(&ctx, &x, &y, &vecs, &kv);
    }
    ctx.force_variant(None);
    let scratch = buf(64 * 9 * 66);
    for (splits, t, thread_per_row) in [(1u32, 1u32, false), (2, 1, false), (8, 1, false), (1, 8, false), (1, 1, true), (2, 1, true), (8, 1, true), (16, 1, true), (1, 8, true)] {
        let a = AttentionArgs {
            n_tokens: t, n_heads: 9, n_kv_heads: 3, head_dim: 64, ctx_len: 4096, kv_f16: true,
            scale: 0.125, softcap: 0.0, window: 0, splits, q_block: t, thread_per_row,
        };
        let layout = if thread_per_row { "thread per row" } else { "workgroup per row" };
        time(&ctx, &format!("attention+combine pos 100 T={t} splits={splits} {layout}"), 10, |s| attention(s, &x, &kv, &scratch, &y, &a).unwrap());
    }
    for t in [1u32, 8] {
        let a = AttentionArgs {
            n_tokens: t, n_heads: 9, n_kv_heads: 3, head_dim: 64, ctx_len: 4096, kv_f16: true,
            scale: 0.125, softcap: 0.0, window: 0, splits: 1, q_block: 1, thread_per_row: true,
        };
        time(&ctx, &format!("attention pos 100 T={t} cache in a texture (attend_lanes)"), 10, |s| attention(s, &x, &kv_texture, &scratch, &y, &a).unwrap());
    }
    time(&ctx, "rms_norm T=1", 20, |s| rms_norm(s, &vecs, 0, &x, 0, &y, d, 1, 1e-5).unwrap());
    time(&ctx, "rms_norm T=16", 20, |s| rms_norm(s, &vecs, 0, &x, 0, &y, d, 16, 1e-5).unwrap());
    time(&ctx, "post_norm_add T=1", 20, |s| post_norm_add(s, &vecs, 0, &x, &y, d, 1, 1e-5).unwrap());
    // The fixed cost of one dispatch: kernels with (almost) nothing to do.
    time(&ctx, "post_norm_add d=4 (a near-empty dispatch)", 200, |s| post_norm_add(s, &vecs, 0, &x, &y, 4, 1, 1e-5).unwrap());
    let tiny = matrix(&ctx, GgmlType::Q4_1, 32, 8);
    let tiny_input = Input::dense(&x, &vecs, 1, 32);
    time(&ctx, "matvec Q4_1 k=32 n=8 (a near-empty dispatch)", 200, |s| matvec(s, &tiny, &tiny_input, &y, Output::dense(&tiny)).unwrap());
    let ids = buf(4);
    let tk = TopK::new(&ctx, v, 1).unwrap();
    time(&ctx, "topk k=1", 5, |s| tk.record(s, &y, 0, &ids).unwrap());
    let tk = TopK::new(&ctx, v, 40).unwrap();
    time(&ctx, "topk k=40", 5, |s| tk.record(s, &y, 0, &ids).unwrap());
}

/// Times matvec, ffn_in and attn_in at SmolLM2 sizes with the context's current variant.
fn matrix_kernels(ctx: &Context, x: &wgpu::Buffer, y: &wgpu::Buffer, vecs: &wgpu::Buffer, kv: &KvLayer) {
    let (d, f, v) = (576u32, 1536u32, 49152u32);
    for (ty, k, n) in [(GgmlType::Q4_1, d, f), (GgmlType::Q4_1, f, d), (GgmlType::Q8_0, d, v)] {
        let w = matrix(ctx, ty, k, n);
        for t in [1u32, 8, 16] {
            let input = Input::dense(x, vecs, t, k);
            time(ctx, &format!("matvec {ty:?} k={k} n={n} T={t}"), 10, |s| matvec(s, &w, &input, y, Output::dense(&w)).unwrap());
            let ms = time(ctx, &format!("matvec+norm {ty:?} k={k} n={n} T={t}"), 10, |s| {
                matvec(s, &w, &input.normed(0, 1e-5), y, Output::dense(&w)).unwrap()
            });
            println!("{:44} {:8.3} GB/s of weights", "", w.byte_len() as f64 / (ms * 1e6));
        }
        if n == v {
            let ids = ctx.upload_u32("ids", &[5, 7, 9, 11]).unwrap();
            time(ctx, "embed T=4", 10, |s| embed(s, &w, &ids, x, 4, 1.0).unwrap());
        }
    }
    let (gate, up) = (matrix(ctx, GgmlType::Q4_1, d, f), matrix(ctx, GgmlType::Q4_1, d, f));
    for t in [1u32, 8, 16] {
        let input = Input::dense(x, vecs, t, d);
        time(ctx, &format!("ffn_in Q4_1 d={d} f={f} T={t}"), 10, |s| {
            ffn_in(s, Rows::all(&gate), Rows::all(&up), f, Glu::SwiGlu, &input, &y).unwrap()
        });
        time(ctx, &format!("ffn_in+norm Q4_1 d={d} f={f} T={t}"), 10, |s| {
            ffn_in(s, Rows::all(&gate), Rows::all(&up), f, Glu::SwiGlu, &input.normed(0, 1e-5), &y).unwrap()
        });
    }
    let (wq, wk) = (matrix(ctx, GgmlType::Q4_1, d, d), matrix(ctx, GgmlType::Q4_1, d, 192));
    let rope = RopeArgs { neox: false, n_rot: 64, freq_base: 1e5, freq_scale: 1.0, factors: None, mscale: 1.0 };
    let args = AttnInArgs {
        n_heads: 9, n_kv_heads: 3, head_dim: 64, ctx_len: 4096, kv_f16: true,
        q_bias: None, k_bias: None, v_bias: None, q_norm: None, k_norm: None, head_eps: 1e-5, rope,
    };
    for t in [1u32, 8, 16] {
        let input = Input::dense(x, vecs, t, d);
        time(ctx, &format!("attn_in Q4_1 T={t}"), 10, |s| {
            attn_in(s, Rows::all(&wq), Rows::all(&wk), Rows::all(&wk), &input, y, kv, &args).unwrap()
        });
        time(ctx, &format!("attn_in+norm Q4_1 T={t}"), 10, |s| {
            attn_in(s, Rows::all(&wq), Rows::all(&wk), Rows::all(&wk), &input.normed(0, 1e-5), y, kv, &args).unwrap()
        });
    }
}
