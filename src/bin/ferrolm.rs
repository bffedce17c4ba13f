//! The native CLI: inspect, tokenize, generate, score and bench GGUF models on wgpu.
//! Exit status: 0 success, 2 bad input (one line on stderr naming the problem), 1 anything else.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use ferrolm::engine::{Clock, Engine, GenerateOptions, Piece};
use ferrolm::error::Error;
use ferrolm::gpu::Context;
use ferrolm::loader::{read_header, FileSource};
use ferrolm::model::LoadOptions;
use ferrolm::sampler::SamplerOptions;
use ferrolm::tokenizer::Tokenizer;

const USAGE: &str = "usage:
  ferrolm inspect MODEL
  ferrolm tokenize MODEL TEXT
  ferrolm generate MODEL --prompt TEXT [--max-tokens N] [--temperature T] [--top-k K] [--seed S] [--ignore-eos] [--json] [--context N]
  ferrolm score MODEL --tokens ID,ID,... [--top-k K] [--context N]
  ferrolm bench MODEL [--prompt-tokens N] [--gen-tokens M] [--context N]";

/// A CLI failure: bad usage/input (exit 2) or an engine error.
enum CliError {
    Usage(String),
    Engine(Error),
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        CliError::Engine(e)
    }
}

type CliResult<T = ()> = Result<T, CliError>;

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("ferrolm: internal error: {info}");
    }));
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Usage(msg)) => {
            eprintln!("ferrolm: {msg} (run 'ferrolm help' for usage)");
            ExitCode::from(2)
        }
        Err(CliError::Engine(e)) => {
            eprintln!("ferrolm: {e}");
            ExitCode::from(if e.is_bad_input() { 2 } else { 1 })
        }
    }
}

/// Parsed `--flag value` options and positional arguments.
struct Args {
    positional: Vec<String>,
    options: BTreeMap<String, Option<String>>,
}

/// Flags that take no value.
const SWITCHES: &[&str] = &["ignore-eos", "json"];

impl Args {
    fn parse(raw: Vec<String>, allowed: &[&str]) -> CliResult<Args> {
        let mut positional = Vec::new();
        let mut options = BTreeMap::new();
        let mut it = raw.into_iter();
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                if !allowed.contains(&name) {
                    return Err(CliError::Usage(format!("unknown option --{name}")));
                }
                let value = if SWITCHES.contains(&name) {
                    None
                } else {
                    Some(it.next().ok_or_else(|| CliError::Usage(format!("--{name} needs a value")))?)
                };
                options.insert(name.to_string(), value);
            } else {
                positional.push(a);
            }
        }
        Ok(Args { positional, options })
    }

    fn positional(&self, i: usize, what: &str) -> CliResult<&str> {
        self.positional.get(i).map(|s| s.as_str()).ok_or_else(|| CliError::Usage(format!("missing {what}")))
    }

    fn has(&self, name: &str) -> bool {
        self.options.contains_key(name)
    }

    fn string(&self, name: &str) -> Option<&str> {
        self.options.get(name).and_then(|v| v.as_deref())
    }

    fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> CliResult<T> {
        match self.string(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| CliError::Usage(format!("--{name}: '{v}' is not a valid number"))),
        }
    }
}

fn run(mut raw: Vec<String>) -> CliResult {
    if raw.is_empty() {
        return Err(CliError::Usage("missing command".into()));
    }
    let command = raw.remove(0);
    match command.as_str() {
        "inspect" => inspect(Args::parse(raw, &[])?),
        "tokenize" => tokenize(Args::parse(raw, &[])?),
        "generate" => generate(Args::parse(raw, &["prompt", "max-tokens", "temperature", "top-k", "seed", "ignore-eos", "json", "context"])?),
        "score" => score(Args::parse(raw, &["tokens", "top-k", "context"])?),
        "bench" => bench(Args::parse(raw, &["prompt-tokens", "gen-tokens", "context"])?),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(CliError::Usage(format!("unknown command '{other}'"))),
    }
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    pollster::block_on(f)
}

fn open_header(args: &Args) -> CliResult<(FileSource, ferrolm::gguf::GgufFile)> {
    let path = PathBuf::from(args.positional(0, "MODEL")?);
    let mut source = FileSource::open(&path)?;
    let header = block(read_header(&mut source))?;
    Ok((source, header))
}

fn print_json(value: &serde_json::Value) {
    let _ = writeln!(std::io::stdout(), "{}", serde_json::to_string(value).unwrap_or_default());
}

fn inspect(args: Args) -> CliResult {
    let (_, header) = open_header(&args)?;
    print_json(&ferrolm::inspect::describe(&header));
    Ok(())
}

fn tokenize(args: Args) -> CliResult {
    let (_, header) = open_header(&args)?;
    let text = args.positional(1, "TEXT")?;
    let tokenizer = Tokenizer::from_gguf(&header)?;
    print_json(&serde_json::json!(tokenizer.encode(text, true)));
    Ok(())
}

fn load_engine(args: &Args) -> CliResult<Engine> {
    let path = PathBuf::from(args.positional(0, "MODEL")?);
    let mut source = FileSource::open(&path)?;
    let options = LoadOptions { context_length: args.string("context").map(|_| args.number("context", 0u32)).transpose()?, ..Default::default() };
    let ctx = Arc::new(block(Context::new()).map_err(Error::from)?);
    Ok(block(Engine::load(ctx, &mut source, &options, &mut |_| {}))?)
}

fn generate(args: Args) -> CliResult {
    let prompt = args.string("prompt").ok_or_else(|| CliError::Usage("generate needs --prompt TEXT".into()))?.to_string();
    let options = GenerateOptions {
        max_tokens: args.number("max-tokens", 128u32)?,
        ignore_eos: args.has("ignore-eos"),
        sampler: SamplerOptions {
            temperature: args.number("temperature", 0.0f32)?,
            top_k: args.number("top-k", 40u32)?,
            seed: args.number("seed", 0u64)?,
        },
    };
    if !(options.sampler.temperature >= 0.0 && options.sampler.temperature.is_finite()) {
        return Err(CliError::Usage("--temperature must be a finite number >= 0".into()));
    }
    let json = args.has("json");
    // Validate the model before the (slower) GPU set-up only when it cannot be run at all.
    let mut engine = load_engine(&args)?;
    let prompt_ids = engine.prompt_ids(&prompt);
    let mut tokens = Vec::new();
    let mut text = String::new();
    let mut stdout = std::io::stdout();
    let (stats, finish) = block(engine.generate(&prompt_ids, &options, &mut |piece: Piece| {
        if piece.token != u32::MAX {
            tokens.push(piece.token);
        }
        text.push_str(piece.text);
        if !json {
            let _ = stdout.write_all(piece.text.as_bytes());
            let _ = stdout.flush();
        }
        true
    }))?;
    if json {
        print_json(&serde_json::json!({
            "prompt_ids": prompt_ids,
            "tokens": tokens,
            "text": text,
            "finish_reason": finish,
            "prefill_tokens_per_s": stats.prefill_tokens_per_s,
            "decode_tokens_per_s": stats.decode_tokens_per_s,
        }));
    } else {
        println!();
    }
    Ok(())
}

fn parse_ids(list: &str) -> CliResult<Vec<u32>> {
    list.split(',')
        .map(|s| s.trim().parse::<u32>().map_err(|_| CliError::Usage(format!("--tokens: '{s}' is not a token id"))))
        .collect()
}

fn score(args: Args) -> CliResult {
    let ids = parse_ids(args.string("tokens").ok_or_else(|| CliError::Usage("score needs --tokens ID,ID,...".into()))?)?;
    let top_k: usize = args.number("top-k", 10usize)?;
    let mut engine = load_engine(&args)?;
    let logits = block(engine.model.forward_logits(&ids, 0))?;
    let mut out = std::io::stdout().lock();
    for (pos, row) in logits.iter().enumerate() {
        let top: Vec<(u32, f32)> = ferrolm::inspect::top_k(row, top_k);
        let line = serde_json::json!({ "pos": pos, "top": top.iter().map(|(i, l)| serde_json::json!([i, l])).collect::<Vec<_>>() });
        let _ = writeln!(out, "{line}");
    }
    Ok(())
}

fn bench(args: Args) -> CliResult {
    let prompt_tokens: u32 = args.number("prompt-tokens", 128u32)?;
    let gen_tokens: u32 = args.number("gen-tokens", 32u32)?;
    if prompt_tokens == 0 || gen_tokens == 0 {
        return Err(CliError::Usage("--prompt-tokens and --gen-tokens must be at least 1".into()));
    }
    let load_clock = Clock::start();
    let mut engine = load_engine(&args)?;
    let load_seconds = load_clock.seconds();
    // A deterministic prompt of ordinary tokens.
    let vocab = engine.model.config.vocab_size;
    let prompt: Vec<u32> = (0..prompt_tokens).map(|i| 1000 + (i * 7919) % (vocab - 1000).max(1)).map(|t| t.min(vocab - 1)).collect();
    let ctx = engine.model.context().clone();
    let options = GenerateOptions { max_tokens: gen_tokens, ignore_eos: true, sampler: SamplerOptions::default() };
    // Warm-up: compiles every pipeline.
    block(engine.generate(&prompt[..prompt.len().min(8)], &GenerateOptions { max_tokens: 2, ..options.clone() }, &mut |_| true))?;
    engine.reset();
    let submits_before = ctx.submit_count();
    let (stats, _) = block(engine.generate(&prompt, &options, &mut |_| true))?;
    let submits = ctx.submit_count() - submits_before;
    let prefill_submits = (prompt_tokens as u64).div_ceil(128);
    let decode_steps = stats.generated_tokens.saturating_sub(1).max(1) as u64;
    print_json(&serde_json::json!({
        "adapter": ctx.adapter_name,
        "backend": ctx.backend,
        "load_seconds": load_seconds,
        "prompt_tokens": prompt_tokens,
        "generated_tokens": stats.generated_tokens,
        "prefill_tokens_per_s": stats.prefill_tokens_per_s,
        "decode_tokens_per_s": stats.decode_tokens_per_s,
        "dispatches_per_token": engine.model.last_dispatches,
        "submits_per_token": (submits.saturating_sub(prefill_submits)) as f64 / decode_steps as f64,
        "readback_bytes_per_token": engine.model.last_readback_bytes,
        "gpu_bytes": engine.model.gpu_bytes(),
    }));
    Ok(())
}
