//! The matrix-kernel autotuner on this adapter: SmolLM2's nine decode and prefill shapes are timed once and
//! the model still meets its fixture with the chosen kernels; a second load takes every choice
//! from the cache; a forced variant skips the timing; the CLI's cache file round-trips.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{fixture, ids, smollm2_path, F32_TOL};
use ferrolm::engine::Engine;
use ferrolm::gpu::variant::{KernelChoices, MatrixVariant};
use ferrolm::gpu::Context;
use ferrolm::loader::FileSource;
use ferrolm::model::{tune, KvType, LoadOptions, Tune};

/// A context of the test's own: choices live in the context.
fn fresh_context() -> Arc<Context> {
    Arc::new(pollster::block_on(Context::new()).expect("a GPU context"))
}

fn load(ctx: &Arc<Context>, tune: Tune) -> Engine {
    let options = LoadOptions { context_length: Some(256), kv_type: KvType::F32, tune, ..Default::default() };
    let mut source = FileSource::open(&smollm2_path()).expect("open SmolLM2");
    pollster::block_on(Engine::load(ctx.clone(), &mut source, &options, &mut |_| {})).expect("load")
}

#[test]
fn tuning_chooses_every_decode_shape_and_the_model_still_conforms() {
    let ctx = fresh_context();
    let mut engine = load(&ctx, Tune::Auto { cached: BTreeMap::new() });
    let report = engine.model().tune_report.clone();
    let chosen = ctx.kernel_choices().chosen;
    // Decode: attention input, output projection, feed-forward input, down projection, output
    // head; a 16-token prefill chunk: the same but the output head.
    assert_eq!((report.timed, report.cached, chosen.len()), (9, 0, 9), "{report:?} {chosen:?}");
    assert_eq!(chosen.keys().filter(|s| s.tokens == 1).count(), 5);
    assert!(report.seconds > 0.0 && report.candidates.len() >= 2, "{report:?}");
    for variant in chosen.values() {
        assert!(report.candidates.contains(&variant.to_string()), "{variant} was not a candidate");
    }
    // The chosen kernels decode the fixture's first case greedily, token for token, through
    // its decisive steps.
    let case = &fixture("smollm2-135m-instruct-q4_1.json")["generate"][0];
    let (prompt, reference) = (ids(&case["prompt_ids"]), ids(&case["continuation"]));
    let decisive = case["steps"].as_array().unwrap().iter().take_while(|s| s["margin"].as_f64().unwrap() >= F32_TOL).count().min(8);
    let model = engine.model_mut();
    let mut next = pollster::block_on(model.forward_top_k(&prompt, 0, 1)).unwrap()[0].0;
    let mut greedy = vec![next];
    while greedy.len() < decisive {
        next = pollster::block_on(model.forward_top_k(&[next], (prompt.len() + greedy.len() - 1) as u32, 1)).unwrap()[0].0;
        greedy.push(next);
    }
    assert!(decisive >= 4, "the case has decisive steps");
    assert_eq!(greedy[..], reference[..decisive], "greedy with {chosen:?}");

    // A second load on another context takes every choice from the cache and times nothing.
    let again = fresh_context();
    let engine = load(&again, Tune::Auto { cached: chosen.clone() });
    let report = &engine.model().tune_report;
    assert_eq!((report.timed, report.cached), (0, 9));
    assert_eq!(again.kernel_choices().chosen, chosen);

    // A forced variant runs everything and nothing is timed.
    let forced = fresh_context();
    forced.force_variant(Some(MatrixVariant::parse("t1r1-storage").unwrap()));
    let engine = load(&forced, Tune::Auto { cached: BTreeMap::new() });
    assert_eq!(engine.model().tune_report.timed, 0);
    assert!(forced.kernel_choices().chosen.is_empty());
}

#[test]
fn the_cli_cache_file_round_trips_per_adapter() {
    let dir = std::env::temp_dir().join(format!("ferrolm-tune-cache-{}", std::process::id()));
    // The only test of this binary touching the variable.
    std::env::set_var("FERROLM_CACHE_DIR", &dir);
    let mut choices = KernelChoices::default();
    let json = serde_json::json!({ "matvec Q8_0 49152x576 t1": "t1r4-uniform", "ffn_in Q4_1 1536x576 t1": "t8r1-uniform-sg" });
    choices.chosen = KernelChoices::from_json(&json);
    assert_eq!(choices.chosen.len(), 2);
    tune::file_cache::store("adapter A", &choices);
    assert_eq!(tune::file_cache::load("adapter A"), choices.chosen);
    assert!(tune::file_cache::load("adapter B").is_empty());
    // A later store for another adapter keeps the first one's entry.
    tune::file_cache::store("adapter B", &KernelChoices::default());
    assert_eq!(tune::file_cache::load("adapter A"), choices.chosen);
    // A damaged file is an empty cache, not an error.
    std::fs::write(dir.join("kernels.json"), b"{ not json").unwrap();
    assert!(tune::file_cache::load("adapter A").is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
