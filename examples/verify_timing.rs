//! Times a plain decode step and speculative decoding's verify steps of 2..=16 tokens (profiling aid):
//! `cargo run --release --example verify_timing [MODEL] [VARIANT]` (kernels tuned unless VARIANT is forced).
use ferrolm::{engine::Engine, gpu::Context, loader::FileSource, model::LoadOptions};
use std::{sync::Arc, time::Instant};
fn main() {
    let ctx = Arc::new(pollster::block_on(Context::new()).unwrap());
    let path = std::env::args()
        .nth(1)
        .unwrap_or("models/SmolLM2-135M-Instruct.Q4_1.gguf".into());
    let mut src = FileSource::open(std::path::Path::new(&path)).unwrap();
    if let Some(v) = std::env::args().nth(2) {
        ctx.force_variant(Some(
            ferrolm::gpu::variant::MatrixVariant::parse(&v).unwrap(),
        ));
    }
    let mut engine = pollster::block_on(Engine::load(
        ctx,
        &mut src,
        &LoadOptions {
            tune: ferrolm::model::Tune::Auto {
                cached: Default::default(),
            },
            ..Default::default()
        },
        &mut |_| {},
    ))
    .unwrap();
    let m = engine.model_mut();
    m.prepare_decode(1, false).unwrap();
    m.prepare_verify(1).unwrap();
    let toks: Vec<u32> = (0..100).map(|i| 100 + i * 7).collect();
    pollster::block_on(m.forward_candidates(&toks, 0, 1, None)).unwrap();
    for n in [1usize, 2, 3, 4, 6, 8, 12, 16] {
        let mut best = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            if n == 1 {
                pollster::block_on(m.forward_candidates(&toks[..1], 100, 1, None)).unwrap();
            } else {
                pollster::block_on(m.verify(&toks[..n], 100, 1)).unwrap();
            }
            best = best.min(t.elapsed().as_secs_f64() * 1e3);
        }
        let mut last = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            pollster::block_on(m.forward_candidates(&toks[..n], 100, 1, None)).unwrap();
            last = last.min(t.elapsed().as_secs_f64() * 1e3);
        }
        println!(
            "n={n:2} verify {best:7.1} ms  {:6.1} ms/token; last-row logits only {last:7.1} ms",
            best / n as f64
        );
    }
}
