//! Chat templates, sampling controls and multi-turn KV reuse, end to end on SmolLM2.

mod common;

use common::{cli_stdout, fixture, ids, run_cli, smollm2_path};
use ferrolm::chat::Message;
use ferrolm::engine::{Engine, FinishReason, GenerateOptions};
use ferrolm::loader::FileSource;
use ferrolm::sampler::SamplerOptions;
use serde_json::Value;

const FIXTURE: &str = "smollm2-135m-instruct-q4_1.json";

fn model() -> String {
    smollm2_path().display().to_string()
}

fn generate_json(args: &[&str]) -> Value {
    let model = model();
    let mut all = vec!["generate", model.as_str()];
    all.extend_from_slice(args);
    all.push("--json");
    serde_json::from_str(cli_stdout(&run_cli(&all)).trim()).expect("generate --json prints JSON")
}

#[test]
fn render_equals_every_fixture_chat_case() {
    let fx = fixture(FIXTURE);
    let dir = std::env::temp_dir().join(format!("ferrolm-render-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, case) in fx["chat"].as_array().unwrap().iter().enumerate() {
        let path = dir.join(format!("messages{i}.json"));
        std::fs::write(&path, case["messages"].to_string()).unwrap();
        let out = cli_stdout(&run_cli(&["render", &model(), "--messages", path.to_str().unwrap()]));
        assert_eq!(out, case["text"].as_str().unwrap(), "chat case {i}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn chat_generation_matches_fixture() {
    let fx = fixture(FIXTURE);
    for case in fx["generate"].as_array().unwrap().iter().filter(|c| c["messages"].is_array()) {
        let messages: Vec<Message> = serde_json::from_value(case["messages"].clone()).unwrap();
        // These cases are single user turns, which is what --chat renders.
        assert_eq!(messages.len(), 1);
        let got = generate_json(&["--chat", "--prompt", &messages[0].content, "--temperature", "0", "--ignore-eos", "--max-tokens", "32"]);
        assert_eq!(ids(&got["prompt_ids"]), ids(&case["prompt_ids"]), "rendered prompt ids");
        let decisive = case["steps"].as_array().unwrap().iter().take_while(|s| s["margin"].as_f64().unwrap() >= 0.05).count();
        assert_eq!(ids(&got["tokens"])[..decisive], ids(&case["continuation"])[..decisive]);
    }
}

#[test]
fn same_seed_same_tokens_and_top_k_1_is_greedy() {
    let sampled = ["--prompt", "Once upon a time", "--max-tokens", "12", "--ignore-eos", "--temperature", "0.9", "--top-k", "40"];
    let a = generate_json(&[&sampled[..], &["--seed", "7"]].concat());
    let b = generate_json(&[&sampled[..], &["--seed", "7"]].concat());
    assert_eq!(a["tokens"], b["tokens"], "same seed, same tokens");
    let c = generate_json(&[&sampled[..], &["--seed", "8"]].concat());
    assert_ne!(a["tokens"], c["tokens"], "another seed draws differently");
    let greedy = generate_json(&["--prompt", "Once upon a time", "--max-tokens", "12", "--ignore-eos", "--temperature", "0"]);
    let top1 = generate_json(&["--prompt", "Once upon a time", "--max-tokens", "12", "--ignore-eos", "--temperature", "0.9", "--top-k", "1", "--seed", "3"]);
    assert_eq!(greedy["tokens"], top1["tokens"], "top-k 1 equals greedy");
}

#[test]
fn stop_strings_end_the_output_without_the_stop_text() {
    // Greedy continuation: ", the city of Nova Haven was a thriving metropolis, ..."
    let base = ["--prompt", "Once upon a time", "--max-tokens", "32", "--ignore-eos", "--temperature", "0"];
    // " city" is one token; "Nova Ha" ends inside a token; "a thriving" spans two tokens.
    for (stop, want) in [(" city", ", the"), ("Nova Ha", ", the city of "), ("a thriving", ", the city of Nova Haven was ")] {
        let got = generate_json(&[&base[..], &["--stop", stop]].concat());
        assert_eq!(got["text"], want, "stop {stop:?}");
        assert_eq!(got["finish_reason"], "stop");
    }
}

#[test]
fn presence_penalty_prevents_repeats() {
    let got = generate_json(&[
        "--prompt", "Once upon a time", "--max-tokens", "24", "--ignore-eos", "--temperature", "0", "--presence-penalty", "100",
    ]);
    let tokens = ids(&got["tokens"]);
    let prompt = ids(&got["prompt_ids"]);
    for (i, t) in tokens.iter().enumerate() {
        assert!(!tokens[..i].contains(t) && !prompt.contains(t), "token {t} repeated: {tokens:?}");
    }
    let plain = generate_json(&["--prompt", "Once upon a time", "--max-tokens", "24", "--ignore-eos", "--temperature", "0"]);
    let plain = ids(&plain["tokens"]);
    assert!((1..plain.len()).any(|i| plain[..i].contains(&plain[i])), "without penalty the greedy text repeats tokens");
}

#[test]
fn second_chat_turn_prefills_only_new_tokens() {
    let ctx = common::gpu();
    let mut source = FileSource::open(&smollm2_path()).unwrap();
    let mut engine = pollster::block_on(Engine::load(ctx, &mut source, &Default::default(), &mut |_| {})).unwrap();
    let options = GenerateOptions { max_tokens: 8, sampler: SamplerOptions::default(), ..Default::default() };
    let mut messages = vec![Message::new("user", "Hi")];
    let (_, first) = engine.chat_prompt(&messages).unwrap();
    let mut reply = String::new();
    let (stats, _) = pollster::block_on(engine.generate(&first, &options, &mut |p| {
        reply.push_str(p.text);
        true
    }))
    .unwrap();
    assert_eq!(stats.prefilled_tokens as usize, first.len(), "first turn computes the whole prompt");
    messages.push(Message::new("assistant", &reply));
    messages.push(Message::new("user", "Tell me a joke."));
    let (_, second) = engine.chat_prompt(&messages).unwrap();
    assert!(second.starts_with(&first), "the second prompt extends the first");
    let cached = engine.cached_tokens().to_vec();
    let common = cached.iter().zip(&second).take_while(|(a, b)| a == b).count();
    let (stats, finish) = pollster::block_on(engine.generate(&second, &options, &mut |_| true)).unwrap();
    assert!(common > first.len(), "the cache holds the first turn and its reply");
    assert_eq!(stats.prompt_tokens as usize, second.len());
    assert_eq!(stats.prefilled_tokens as usize, second.len() - common, "only the tokens after the cached prefix are computed");
    assert!(matches!(finish, FinishReason::Stop | FinishReason::Length));

    // Same result as a cold run of the same prompt: reuse must not change the output.
    let mut warm = Vec::new();
    pollster::block_on(engine.generate(&second, &options, &mut |p| {
        warm.push(p.token);
        true
    }))
    .unwrap();
    engine.reset();
    let mut cold = Vec::new();
    let (stats, _) = pollster::block_on(engine.generate(&second, &options, &mut |p| {
        cold.push(p.token);
        true
    }))
    .unwrap();
    assert_eq!(stats.prefilled_tokens as usize, second.len());
    assert_eq!(warm, cold);
}
