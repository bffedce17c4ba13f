//! Speculative decoding (prompt lookup and draft models): the tokens are exactly those of plain
//! decoding — greedy on the fixture prompts of SmolLM2 and Gemma 3 and on zoo models, seeded
//! sampling, penalties, stop strings, max_tokens, KV reuse across turns — and a draft model with
//! another vocabulary is a typed error that leaves the engine usable.

mod common;

use common::{cli_stdout, fixture, gemma3_path, gpu, ids, run_cli, smollm2_path, zoo_path};
use ferrolm::engine::{Engine, FinishReason, GenerateOptions, GenerateStats};
use ferrolm::error::Error;
use ferrolm::loader::FileSource;
use ferrolm::model::{KvType, LoadOptions};
use ferrolm::sampler::SamplerOptions;
use ferrolm::speculative::Speculation;

const LOOKUP: Option<Speculation> = Some(Speculation::PromptLookup);

fn load(path: &std::path::Path, kv_type: KvType) -> Engine {
    let mut source = FileSource::open(path).expect("open model");
    let options = LoadOptions { context_length: Some(512), kv_type, ..Default::default() };
    pollster::block_on(Engine::load(gpu(), &mut source, &options, &mut |_| {})).expect("load")
}

/// Generates from `prompt` (reusing whatever the KV cache holds): (tokens, stats, finish).
fn run(engine: &mut Engine, prompt: &[u32], options: &GenerateOptions) -> (Vec<u32>, GenerateStats, FinishReason) {
    let mut tokens = Vec::new();
    let (stats, finish) = pollster::block_on(engine.generate(prompt, options, &mut |piece| {
        tokens.extend(piece.token);
        true
    }))
    .expect("generate");
    (tokens, stats, finish)
}

/// Plain, then speculative decoding of `prompt` with `options`: the same tokens and finish.
/// Returns the speculative run's stats.
fn check_same(engine: &mut Engine, prompt: &[u32], options: &GenerateOptions, kind: Speculation, what: &str) -> GenerateStats {
    let plain = GenerateOptions { speculative: None, ..options.clone() };
    let (want, _, want_finish) = run(engine, prompt, &plain);
    let (got, stats, finish) = run(engine, prompt, &GenerateOptions { speculative: Some(kind), ..options.clone() });
    assert_eq!(got, want, "{what}: speculative ({kind:?}) and plain tokens differ");
    assert_eq!(finish, want_finish, "{what}: finish reason");
    assert!(stats.accepted_tokens <= stats.drafted_tokens);
    stats
}

fn greedy(max_tokens: u32) -> GenerateOptions {
    GenerateOptions { max_tokens, ignore_eos: true, ..Default::default() }
}

/// The prompt of a fixture's generate case, and that prompt followed by itself again (without
/// its BOS): a text with repeats, where prompt lookup proposes (and the verify step checks) long
/// runs.
fn fixture_prompts(name: &str, case: usize) -> (Vec<u32>, Vec<u32>) {
    let prompt = ids(&fixture(name)["generate"][case]["prompt_ids"]);
    let mut repeated = prompt.clone();
    repeated.extend_from_slice(&prompt[1..]);
    repeated.extend_from_slice(&prompt[1..]);
    (prompt, repeated)
}

#[test]
fn greedy_prompt_lookup_gives_the_plain_tokens() {
    let mut accepted = 0;
    let mut smollm2 = load(&smollm2_path(), KvType::F16);
    let name = "smollm2-135m-instruct-q4_1.json";
    for case in 0..fixture(name)["generate"].as_array().unwrap().len() {
        let (prompt, repeated) = fixture_prompts(name, case);
        check_same(&mut smollm2, &prompt, &greedy(8), Speculation::PromptLookup, &format!("SmolLM2 case {case}"));
        if case == 0 {
            let stats = check_same(&mut smollm2, &repeated, &greedy(16), Speculation::PromptLookup, "SmolLM2 repeated");
            // (How much is proposed depends on measured step times; that some is confirmed, not.)
            assert!(stats.accepted_tokens > 0 && stats.tokens_per_target_step > 1.0, "the repeated prompt is copied: {stats:?}");
            accepted += stats.accepted_tokens;
        }
    }
    drop(smollm2);
    let mut gemma3 = load(&gemma3_path(), KvType::F16);
    let (_, repeated) = fixture_prompts("gemma-3-270m-q4_k_m.json", 0);
    accepted += check_same(&mut gemma3, &repeated, &greedy(12), Speculation::PromptLookup, "Gemma 3 repeated").accepted_tokens;
    drop(gemma3);
    for name in ["tiny-llama-q4_0", "tiny-qwen2-q8_0", "tiny-qwen3-q4_k_m", "tiny-phi3-q8_0", "tiny-gemma2-q4_k_m"] {
        let mut engine = load(&zoo_path(&format!("{name}.gguf")), KvType::F32);
        let fixture_name = format!("zoo/{name}.json");
        for case in 0..fixture(&fixture_name)["generate"].as_array().unwrap().len() {
            let (prompt, repeated) = fixture_prompts(&fixture_name, case);
            check_same(&mut engine, &prompt, &greedy(24), Speculation::PromptLookup, &format!("{name} case {case}"));
            accepted += check_same(&mut engine, &repeated, &greedy(24), Speculation::PromptLookup, &format!("{name} case {case} repeated")).accepted_tokens;
        }
    }
    assert!(accepted > 5, "the verify step confirmed proposals ({accepted} tokens)");
}

#[test]
fn seeded_sampling_penalties_and_stops_are_unchanged() {
    let mut engine = load(&zoo_path("tiny-llama-q4_0.gguf"), KvType::F32);
    let (_, repeated) = fixture_prompts("zoo/tiny-llama-q4_0.json", 0);
    let sampled = |seed| GenerateOptions { sampler: SamplerOptions { temperature: 0.7, seed, ..Default::default() }, ..greedy(32) };
    // Seeded sampling: speculation draws what plain decoding draws, and repeats itself.
    let stats = check_same(&mut engine, &repeated, &sampled(7), Speculation::PromptLookup, "seed 7");
    assert!(stats.accepted_tokens > 0, "sampled proposals were confirmed: {stats:?}");
    let spec = GenerateOptions { speculative: LOOKUP, ..sampled(7) };
    assert_eq!(run(&mut engine, &repeated, &spec).0, run(&mut engine, &repeated, &spec).0, "seeded sampling repeats");
    assert_ne!(run(&mut engine, &repeated, &spec).0, run(&mut engine, &repeated, &GenerateOptions { speculative: LOOKUP, ..sampled(8) }).0);
    // Penalties: speculation steps aside (the same tokens, nothing proposed).
    let penalised = GenerateOptions { sampler: SamplerOptions { repeat_penalty: 1.3, presence_penalty: 0.2, ..Default::default() }, ..greedy(24) };
    let stats = check_same(&mut engine, &repeated, &penalised, Speculation::PromptLookup, "penalties");
    assert_eq!(stats.drafted_tokens, 0);
    // max_tokens: exactly N tokens even when a verify step confirms more.
    let (full, ..) = run(&mut engine, &repeated, &greedy(24));
    for n in [0, 1, 2, 5, 13] {
        let (tokens, _, finish) = run(&mut engine, &repeated, &GenerateOptions { speculative: LOOKUP, ..greedy(n) });
        assert_eq!((tokens.as_slice(), finish), (&full[..n as usize], FinishReason::Length), "max_tokens {n}");
    }
    // A stop string in the middle of a confirmed run ends the output where plain decoding ends it.
    let stop_text = engine.tokenizer().decode(&full[6..7]);
    let stopped = GenerateOptions { stop: vec![stop_text], ..greedy(24) };
    check_same(&mut engine, &repeated, &stopped, Speculation::PromptLookup, "stop string");
    // EOS honoured (not ignored): the same finish as plain decoding.
    check_same(&mut engine, &repeated, &GenerateOptions { ignore_eos: false, ..greedy(24) }, Speculation::PromptLookup, "eos");
}

#[test]
fn kv_reuse_across_turns_holds_with_speculation() {
    let mut engine = load(&zoo_path("tiny-qwen2-q8_0.gguf"), KvType::F32);
    let (_, turn1) = fixture_prompts("zoo/tiny-qwen2-q8_0.json", 0);
    let spec = GenerateOptions { speculative: LOOKUP, ..greedy(20) };
    let (reply, stats, _) = run(&mut engine, &turn1, &spec);
    assert!(stats.drafted_tokens > 0, "{stats:?}");
    // The next turn: the conversation so far plus new tokens; only what the cache lacks is run.
    let mut turn2 = turn1.clone();
    turn2.extend_from_slice(&reply);
    turn2.extend_from_slice(&turn1[1..6]);
    let (second, stats, _) = run(&mut engine, &turn2, &spec);
    let cached = turn1.len() + reply.len() - 1;
    assert_eq!(stats.prefilled_tokens as usize, turn2.len() - cached, "only the new tokens (and the reply's last) are prefilled");
    // A fresh run of the whole second turn without speculation gives the same tokens.
    engine.reset();
    let (fresh, ..) = run(&mut engine, &turn2, &greedy(20));
    assert_eq!(second, fresh);
}

#[test]
fn draft_models_give_the_plain_tokens_and_must_share_the_vocabulary() {
    // A zoo model with a differently quantised copy of itself as the draft.
    let mut engine = load(&zoo_path("tiny-llama-q4_0.gguf"), KvType::F32);
    let mut draft = FileSource::open(&zoo_path("tiny-llama-q8_0.gguf")).expect("open");
    pollster::block_on(engine.load_draft(&mut draft, &mut |_| {})).expect("load draft");
    let (prompt, repeated) = fixture_prompts("zoo/tiny-llama-q4_0.json", 0);
    // (The zoo's random weights give flat distributions: Q8_0 and Q4_0 often disagree, and
    // adaptive k may then stop proposing after the first proposal.)
    let stats = check_same(&mut engine, &prompt, &greedy(24), Speculation::Draft, "tiny-llama draft");
    assert!(stats.drafted_tokens > 0, "{stats:?}");
    let sampled = GenerateOptions { sampler: SamplerOptions { temperature: 0.7, seed: 3, ..Default::default() }, ..greedy(24) };
    check_same(&mut engine, &repeated, &sampled, Speculation::Draft, "tiny-llama draft, sampled");

    // SmolLM2 as its own draft.
    let mut smollm2 = load(&smollm2_path(), KvType::F16);
    let mut same = FileSource::open(&smollm2_path()).expect("open");
    pollster::block_on(smollm2.load_draft(&mut same, &mut |_| {})).expect("load draft");
    let (prompt, _) = fixture_prompts("smollm2-135m-instruct-q4_1.json", 0);
    let stats = check_same(&mut smollm2, &prompt, &greedy(10), Speculation::Draft, "SmolLM2 as its own draft");
    assert!(stats.acceptance_rate > 0.8, "{stats:?}");

    // Another vocabulary: a typed error, and the engine goes on as before.
    let mut other = FileSource::open(&zoo_path("tiny-qwen2-q8_0.gguf")).expect("open");
    let err = pollster::block_on(smollm2.load_draft(&mut other, &mut |_| {})).expect_err("vocabulary mismatch");
    assert!(matches!(err, Error::VocabularyMismatch(_)), "{err}");
    assert!(err.is_bad_input() && err.to_string().contains("vocabulary"), "{err}");
    assert!(smollm2.has_draft(), "the previous draft stays");
    check_same(&mut smollm2, &prompt, &greedy(4), Speculation::Draft, "after the failed load");
    // Speculating with a draft model when none is loaded is a bad request.
    let options = GenerateOptions { speculative: Some(Speculation::Draft), ..greedy(4) };
    let err = pollster::block_on(load(&zoo_path("tiny-qwen2-q8_0.gguf"), KvType::F32).generate(&prompt[..3], &options, &mut |_| true)).expect_err("no draft");
    assert!(matches!(err, Error::BadRequest(_)), "{err}");
}

#[test]
fn cli_flags_and_stats() {
    let model = zoo_path("tiny-llama-q4_0.gguf");
    let draft = zoo_path("tiny-llama-q8_0.gguf");
    let (model, draft) = (model.to_str().unwrap(), draft.to_str().unwrap());
    let json = |extra: &[&str]| -> serde_json::Value {
        let args = [&["generate", model, "--prompt", "one two three one two three one two", "--max-tokens", "12", "--ignore-eos", "--json"][..], extra].concat();
        serde_json::from_str(&cli_stdout(&run_cli(&args))).expect("JSON")
    };
    let plain = json(&[]);
    assert_eq!((plain["drafted_tokens"].as_u64(), plain["tokens_per_target_step"].as_f64()), (Some(0), Some(1.0)));
    for extra in [&["--speculative", "prompt-lookup"][..], &["--draft", draft], &["--speculative", "draft", "--draft", draft]] {
        let spec = json(extra);
        assert_eq!(spec["tokens"], plain["tokens"], "{extra:?}");
        let (drafted, accepted) = (spec["drafted_tokens"].as_u64().unwrap(), spec["accepted_tokens"].as_u64().unwrap());
        assert!(accepted <= drafted, "{extra:?}: {spec}");
        let rate = spec["acceptance_rate"].as_f64().unwrap();
        assert!(drafted == 0 || (rate - accepted as f64 / drafted as f64).abs() < 1e-9, "{spec}");
    }
    // Bad combinations are usage errors (exit 2) naming the flag.
    for (bad, says) in [
        (&["--speculative", "ngram"][..], "prompt-lookup"),
        (&["--speculative", "draft"], "--draft"),
        (&["--speculative", "prompt-lookup", "--draft", draft], "--draft"),
    ] {
        let out = run_cli(&[&["generate", model, "--prompt", "x"][..], bad].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {stderr}");
        assert!(stderr.contains(says), "{bad:?}: {stderr}");
    }
    // A draft with another vocabulary: exit 2 and the typed message.
    let out = run_cli(&["generate", model, "--prompt", "x", "--draft", smollm2_path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("vocabulary does not match"));
}
