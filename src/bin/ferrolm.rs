//! The native CLI: inspect, tokenize, generate, score and bench GGUF models on wgpu.
//! Exit status: 0 success, 2 bad input (one line on stderr naming the problem), 1 anything else.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use ferrolm::chat::{ChatTemplate, Message};
use ferrolm::cli::{Args, UsageError};
use ferrolm::error::quote;
use ferrolm::engine::{Clock, Engine, GenerateOptions, Piece};
use ferrolm::error::Error;
use ferrolm::gpu::variant::MatrixVariant;
use ferrolm::gpu::Context;
use ferrolm::loader::{read_model_header, ByteSource, FileSource};
use ferrolm::synthetic::{SyntheticSource, SyntheticSpec};
use ferrolm::model::{tune, LoadOptions, Tune};
use ferrolm::sampler::SamplerOptions;
use ferrolm::speculative::Speculation;
use ferrolm::tokenizer::Tokenizer;

const USAGE: &str = "usage:
  ferrolm inspect MODEL [--context N]
  ferrolm tokenize MODEL TEXT
  ferrolm generate MODEL --prompt TEXT [--chat [--system TEXT]] [--max-tokens N] [--ignore-eos] [--json] [--no-pipeline] [SPEC] [LOAD] [SAMPLING]
  ferrolm render MODEL --messages FILE.json
  ferrolm chat MODEL [--system TEXT] [--max-tokens N] [SPEC] [LOAD] [SAMPLING]
  ferrolm score MODEL --tokens ID,ID,... [--top-k K] [LOAD]
  ferrolm bench MODEL|--synthetic SPEC [--prompt-tokens N | --prompt TEXT] [--gen-tokens M] [--no-pipeline] [--profile] [SPECULATE [--rounds N]] [LOAD]
--profile: adds each kernel's milliseconds in a decode step and in the prefill chunk (the step
          timed without the kernel's dispatches, against the whole step)
SPECULATE: [--speculative prompt-lookup|draft] [--draft DRAFT_MODEL.gguf]   (speculative decoding)
LOAD:     [--context N] [--kv-type f16|f32] [--kernel VARIANT] [--no-tune]
SAMPLING: [--temperature T] [--top-k K] [--top-p P] [--min-p P] [--repeat-penalty R] [--presence-penalty P]
          [--frequency-penalty F] [--penalty-window N] [--seed S] [--stop TEXT]...
VARIANT:  the matrix-kernel variant for every shape instead of the autotuned ones, e.g. t1r4-uniform
          (t{threads per row}r{rows per thread}-{storage|workgroup|uniform}); --no-tune: the
          adapter's defaults (the choices are otherwise timed once and cached in ~/.cache/ferrolm)
SPEC:     a model shape of random valid blocks, e.g. the Llama 3.2 1B shape
          arch=llama,layers=16,d=2048,ffn=8192,heads=32,kv_heads=8,vocab=128256,type=q4_k
          (keys: arch layers d ffn heads kv_heads head_dim vocab type out_type context)
MODEL: a GGUF file; for a model split with gguf-split, its first shard (NAME-00001-of-0000N.gguf,
       the others are found beside it) or every shard path in order";

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

impl From<UsageError> for CliError {
    fn from(e: UsageError) -> Self {
        CliError::Usage(e.0)
    }
}

type CliResult<T = ()> = Result<T, CliError>;

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        // One printable line, whatever the panic message holds.
        eprintln!("ferrolm: internal error: {}", ferrolm::error::printable(&info.to_string(), 250));
    }));
    match run(std::env::args_os().skip(1).collect()) {
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

fn run(raw: Vec<std::ffi::OsString>) -> CliResult {
    let args = ferrolm::cli::parse(raw)?;
    match args.command {
        "inspect" => inspect(args),
        "tokenize" => tokenize(args),
        "generate" => generate(args),
        "render" => render(args),
        "chat" => chat(args),
        "score" => score(args),
        "bench" => bench(args),
        _ => {
            println!("{USAGE}");
            Ok(())
        }
    }
}

fn sampler_options(args: &Args) -> CliResult<SamplerOptions> {
    let d = SamplerOptions::default();
    let options = SamplerOptions {
        temperature: args.number("temperature", d.temperature)?,
        top_k: args.number("top-k", d.top_k)?,
        top_p: args.number("top-p", d.top_p)?,
        min_p: args.number("min-p", d.min_p)?,
        repeat_penalty: args.number("repeat-penalty", d.repeat_penalty)?,
        presence_penalty: args.number("presence-penalty", d.presence_penalty)?,
        frequency_penalty: args.number("frequency-penalty", d.frequency_penalty)?,
        penalty_window: args.number("penalty-window", d.penalty_window)?,
        seed: args.number("seed", d.seed)?,
    };
    options.validate().map_err(CliError::Usage)?;
    Ok(options)
}

fn generate_options(args: &Args, max_tokens: u32) -> CliResult<GenerateOptions> {
    Ok(GenerateOptions {
        max_tokens: args.number("max-tokens", max_tokens)?,
        ignore_eos: args.has("ignore-eos"),
        sampler: sampler_options(args)?,
        stop: args.all("stop"),
        pipelined: !args.has("no-pipeline"),
        speculative: speculation(args)?,
    })
}

/// `--speculative KIND` and `--draft MODEL` (which implies `--speculative draft`).
fn speculation(args: &Args) -> CliResult<Option<Speculation>> {
    let kind = args.string("speculative").map(|s| s.parse::<Speculation>()).transpose().map_err(|e| CliError::Usage(e.to_string()))?;
    match (kind, args.has("draft")) {
        (Some(Speculation::PromptLookup), true) => Err(CliError::Usage("--draft MODEL speculates with the draft model, not prompt-lookup".into())),
        (Some(Speculation::Draft), false) => Err(CliError::Usage("--speculative draft needs --draft MODEL".into())),
        (_, true) => Ok(Some(Speculation::Draft)),
        (kind, false) => Ok(kind),
    }
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    pollster::block_on(f)
}

/// Opens the model (all its shards) and reads its header; no GPU is involved.
fn open_header(args: &Args) -> CliResult<(FileSource, ferrolm::gguf::GgufFile)> {
    let mut source = FileSource::open_model(&args.model_paths()?)?;
    let header = block(read_model_header(&mut source))?;
    Ok((source, header))
}

fn print_json(value: &serde_json::Value) {
    let _ = writeln!(std::io::stdout(), "{}", serde_json::to_string(value).unwrap_or_default());
}

fn inspect(args: Args) -> CliResult {
    let (_, header) = open_header(&args)?;
    let context = args.string("context").map(|_| args.number("context", 0u32)).transpose()?;
    print_json(&ferrolm::inspect::describe_with_context(&header, context));
    Ok(())
}

fn tokenize(args: Args) -> CliResult {
    let (_, header) = open_header(&args)?;
    let text = args.text(0, "TEXT")?;
    let tokenizer = Tokenizer::from_gguf(&header)?;
    print_json(&serde_json::json!(tokenizer.encode(text, true)));
    Ok(())
}

fn load_engine(args: &Args) -> CliResult<Engine> {
    let mut source = FileSource::open_model(&args.model_paths()?)?;
    load_engine_from(args, &mut source)
}

/// Loads the model of any byte source with the LOAD options of `args`.
fn load_engine_from<S: ByteSource>(args: &Args, source: &mut S) -> CliResult<Engine> {
    let kv_type = match args.string("kv-type") {
        Some(t) => t.parse().map_err(|e: Error| CliError::Usage(e.to_string()))?,
        None => Default::default(),
    };
    let ctx = block(Context::new()).map_err(Error::from)?;
    if let Some(name) = args.string("kernel") {
        ctx.force_variant(Some(MatrixVariant::parse(name).map_err(|e| CliError::Usage(format!("--kernel: {e}")))?));
    }
    // The kernels are autotuned on this adapter once; the choices are cached per adapter.
    let tune = if args.has("no-tune") { Tune::Off } else { Tune::Auto { cached: tune::file_cache::load(&ctx.adapter_key()) } };
    let options = LoadOptions { context_length: args.string("context").map(|_| args.number("context", 0u32)).transpose()?, kv_type, tune, ..Default::default() };
    let ctx = Arc::new(ctx);
    let mut engine = block(Engine::load(ctx.clone(), source, &options, &mut |_| {}))?;
    if engine.model().tune_report.timed > 0 {
        tune::file_cache::store(&ctx.adapter_key(), &ctx.kernel_choices());
    }
    if let Some(draft) = args.path_flag("draft") {
        let mut source = FileSource::open_model(&[draft])?;
        block(engine.load_draft(&mut source, &mut |_| {}))?;
    }
    Ok(engine)
}

fn generate(args: Args) -> CliResult {
    let prompt = args.string("prompt").ok_or_else(|| CliError::Usage("generate needs --prompt TEXT".into()))?.to_string();
    if args.has("system") && !args.has("chat") {
        return Err(CliError::Usage("--system needs --chat".into()));
    }
    let options = generate_options(&args, 128)?;
    let json = args.has("json");
    let mut engine = load_engine(&args)?;
    let prompt_ids = if args.has("chat") {
        let mut messages = Vec::new();
        if let Some(system) = args.string("system") {
            messages.push(Message::new("system", system));
        }
        messages.push(Message::new("user", &prompt));
        engine.chat_prompt(&messages)?.1
    } else {
        engine.prompt_ids(&prompt)
    };
    let mut tokens = Vec::new();
    let mut text = String::new();
    let mut stdout = std::io::stdout();
    let (stats, finish) = block(engine.generate(&prompt_ids, &options, &mut |piece: Piece| {
        if let Some(token) = piece.token {
            tokens.push(token);
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
            "prompt_tokens": stats.prompt_tokens,
            "prefilled_tokens": stats.prefilled_tokens,
            "prefill_tokens_per_s": stats.prefill_tokens_per_s,
            "decode_tokens_per_s": stats.decode_tokens_per_s,
            "drafted_tokens": stats.drafted_tokens,
            "accepted_tokens": stats.accepted_tokens,
            "acceptance_rate": stats.acceptance_rate,
            "tokens_per_target_step": stats.tokens_per_target_step,
        }));
    } else {
        println!();
    }
    Ok(())
}

fn read_messages(path: &Path) -> CliResult<Vec<Message>> {
    let name = quote(&path.to_string_lossy());
    let text = std::fs::read_to_string(path).map_err(|e| CliError::Usage(format!("--messages {name}: {e}")))?;
    serde_json::from_str(&text)
        .map_err(|e| CliError::Usage(format!("--messages {name}: expected a JSON array of {{\"role\", \"content\"}}: {e}")))
}

fn render(args: Args) -> CliResult {
    let messages = read_messages(&args.path_flag("messages").ok_or_else(|| CliError::Usage("render needs --messages FILE".into()))?)?;
    let (_, header) = open_header(&args)?;
    let tokenizer = Tokenizer::from_gguf(&header)?;
    let template = ChatTemplate::from_gguf(&header, &tokenizer)?;
    let _ = std::io::stdout().write_all(template.render(&messages, true)?.as_bytes());
    Ok(())
}

/// The interactive multi-turn REPL: each turn prefills only what the KV cache does not hold yet.
/// When a conversation outgrows the context, the oldest turns are dropped (the system message
/// stays) and the rest is prefilled again.
fn chat(args: Args) -> CliResult {
    use std::io::BufRead;
    let options = generate_options(&args, 512)?;
    let mut engine = load_engine(&args)?;
    let mut messages = Vec::new();
    if let Some(system) = args.string("system") {
        messages.push(Message::new("system", system));
    }
    let context = engine.model().context_length as usize;
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    loop {
        let _ = write!(stdout, "> ");
        let _ = stdout.flush();
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).map_err(|e| Error::Io(e.to_string()))? == 0 {
            return Ok(());
        }
        let line = line.trim_end_matches(['\n', '\r']);
        if line.is_empty() {
            continue;
        }
        messages.push(Message::new("user", line));
        let mut prompt = engine.chat_prompt(&messages)?.1;
        let first_turn = messages.iter().position(|m| m.role != "system").unwrap_or(0);
        while prompt.len() + (options.max_tokens as usize).min(context / 4) >= context && messages.len() > first_turn + 1 {
            messages.remove(first_turn);
            prompt = engine.chat_prompt(&messages)?.1;
        }
        let mut reply = String::new();
        let (stats, _) = block(engine.generate(&prompt, &options, &mut |piece: Piece| {
            reply.push_str(piece.text);
            let _ = stdout.write_all(piece.text.as_bytes());
            let _ = stdout.flush();
            true
        }))?;
        eprintln!(
            "\n[{} prompt tokens, {} computed, {} generated, {:.1} tok/s]",
            stats.prompt_tokens, stats.prefilled_tokens, stats.generated_tokens, stats.decode_tokens_per_s
        );
        messages.push(Message::new("assistant", &reply));
    }
}

fn parse_ids(list: &str) -> CliResult<Vec<u32>> {
    list.split(',')
        .map(|s| s.trim().parse::<u32>().map_err(|_| CliError::Usage(format!("--tokens: {} is not a token id", quote(s)))))
        .collect()
}

fn score(args: Args) -> CliResult {
    let ids = parse_ids(args.string("tokens").ok_or_else(|| CliError::Usage("score needs --tokens ID,ID,...".into()))?)?;
    let top_k: usize = args.number("top-k", 10usize)?;
    let mut engine = load_engine(&args)?;
    let logits = block(engine.model_mut().forward_logits(&ids, 0))?;
    let mut out = std::io::stdout().lock();
    for (pos, row) in logits.iter().enumerate() {
        let top: Vec<(u32, f32)> = ferrolm::inspect::top_k(row, top_k);
        let line = serde_json::json!({ "pos": pos, "top": top.iter().map(|(i, l)| serde_json::json!([i, l])).collect::<Vec<_>>() });
        let _ = writeln!(out, "{line}");
    }
    Ok(())
}

/// The middle value (the mean of the two middle ones for an even count); 0 for none.
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Bytes of the buffer copy that measures the device's memory speed.
const COPY_BENCH_BYTES: u64 = 256 << 20;

fn bench(args: Args) -> CliResult {
    let prompt_tokens: u32 = args.number("prompt-tokens", 128u32)?;
    let gen_tokens: u32 = args.number("gen-tokens", 32u32)?;
    if prompt_tokens == 0 || gen_tokens == 0 {
        return Err(CliError::Usage("--prompt-tokens and --gen-tokens must be at least 1".into()));
    }
    let speculative = speculation(&args)?;
    let load_clock = Clock::start();
    let (mut engine, model_name) = match args.string("synthetic") {
        Some(spec) => {
            if args.model_paths().is_ok() {
                return Err(CliError::Usage("bench takes a MODEL or --synthetic SPEC, not both".into()));
            }
            let spec = SyntheticSpec::parse(spec)?;
            (load_engine_from(&args, &mut SyntheticSource::new(&spec)?)?, format!("synthetic: {}", args.string("synthetic").unwrap_or_default()))
        }
        None => (load_engine(&args)?, args.model_paths()?[0].display().to_string()),
    };
    let load_seconds = load_clock.seconds();
    // The prompt: the text given, or a deterministic run of ordinary tokens.
    let vocab = engine.model().config.vocab_size;
    let prompt: Vec<u32> = match args.string("prompt") {
        Some(text) => engine.prompt_ids(text),
        None => (0..prompt_tokens).map(|i| (100 + i.wrapping_mul(7919)) % vocab).collect(),
    };
    if prompt.len() as u32 + gen_tokens >= engine.model().context_length {
        return Err(CliError::Usage(format!(
            "{} prompt tokens + --gen-tokens {gen_tokens} do not fit the context of {} tokens (--context N)",
            prompt.len(),
            engine.model().context_length
        )));
    }
    let ctx = engine.model().context().clone();
    let options = GenerateOptions { max_tokens: gen_tokens, ignore_eos: true, pipelined: !args.has("no-pipeline"), speculative, ..Default::default() };
    // Warm-up: compiles every pipeline and records the steps.
    block(engine.generate(&prompt[..prompt.len().min(8)], &GenerateOptions { max_tokens: 2, ..options.clone() }, &mut |_| true))?;
    // With speculation, plain and speculative runs alternate for --rounds rounds (the order flips
    // each round, so a drift in the machine's speed hits both alike); the medians are reported, and
    // every round checks the tokens are the same.
    let rounds: u32 = args.number("rounds", 1u32)?;
    if rounds == 0 || (rounds > 1 && speculative.is_none()) {
        return Err(CliError::Usage("--rounds N (N >= 1) compares plain and speculative decoding; it needs --speculative or --draft".into()));
    }
    let mut plain_speeds = Vec::new();
    let mut speeds = Vec::new();
    let mut identical = true;
    let mut last = None;
    for round in 0..rounds {
        let mut plain_tokens = None;
        let order: &[bool] = if speculative.is_none() { &[true] } else if round % 2 == 0 { &[false, true] } else { &[true, false] };
        for &as_asked in order {
            engine.reset();
            let run = GenerateOptions { speculative: if as_asked { speculative } else { None }, ..options.clone() };
            // Submits and bind groups counted from the first token (which ends the prefill) to the
            // end are the decode's.
            let mut after_prefill = None;
            let mut tokens = Vec::new();
            let (stats, _) = block(engine.generate(&prompt, &run, &mut |p| {
                after_prefill.get_or_insert((ctx.submit_count(), ctx.bind_group_count()));
                tokens.extend(p.token);
                true
            }))?;
            if as_asked {
                speeds.push(stats.decode_tokens_per_s);
                let (submits0, bind_groups0) = after_prefill.unwrap_or((ctx.submit_count(), ctx.bind_group_count()));
                last = Some((stats, ctx.submit_count() - submits0, ctx.bind_group_count() - bind_groups0));
            } else {
                plain_speeds.push(stats.decode_tokens_per_s);
            }
            match &plain_tokens {
                None => plain_tokens = Some(tokens),
                Some(other) => identical &= *other == tokens,
            }
        }
    }
    let Some((stats, submits, bind_groups)) = last else { return Err(CliError::Usage("--rounds must be at least 1".into())) };
    let decode_steps = stats.generated_tokens.saturating_sub(1).max(1) as f64;
    let decode_tokens_per_s = median(&speeds);
    let model = engine.model();
    // The device's memory speed: what a decode step that reads every weight once could reach.
    let copy = ctx.copy_bandwidth(COPY_BENCH_BYTES, 5).map_err(Error::from)?;
    let copy_gb_per_s = copy.best_gb_per_s();
    let weight_bytes_per_token = model.weight_bytes_per_token();
    let choices = ctx.kernel_choices();
    let mut report = serde_json::json!({
        "model": model_name,
        "adapter": ctx.adapter_name,
        "backend": ctx.backend,
        "load_seconds": load_seconds,
        "prompt_tokens": prompt.len(),
        "generated_tokens": stats.generated_tokens,
        "prefill_tokens_per_s": stats.prefill_tokens_per_s,
        "decode_tokens_per_s": decode_tokens_per_s,
        "pipelined": options.pipelined,
        "dispatches_per_token": model.last_dispatches,
        "bind_groups_per_token": bind_groups as f64 / decode_steps,
        "submits_per_token": submits as f64 / decode_steps,
        "readback_bytes_per_token": model.last_readback_bytes,
        "kv_type": model.kv_type(),
        "kv_bytes": model.kv_bytes(),
        "gpu_bytes": model.gpu_bytes(),
        "context": model.context_length,
        "kernel_variants": choices.to_json(),
        "tune": model.tune_report,
        "kernel_forced": choices.forced.map(|v| v.to_string()),
        "weight_bytes_per_token": weight_bytes_per_token,
        "copy_gb_per_s": copy_gb_per_s,
        "copy_command_gb_per_s": copy.command_gb_per_s,
        "copy_shader_gb_per_s": copy.shader_gb_per_s,
        "bandwidth_fraction": weight_bytes_per_token as f64 * decode_tokens_per_s / (copy_gb_per_s * 1e9),
    });
    if args.has("profile") {
        // After the runs: the profile leaves the KV cache meaningless.
        let position = (prompt.len() as u32 + gen_tokens).min(engine.model().context_length - 16);
        let decode = block(engine.model_mut().profile(1, position))?;
        let chunk = (prompt.len() as u32).min(engine.model().max_step_tokens());
        let prefill = block(engine.model_mut().profile(chunk, 0))?;
        engine.reset();
        report["profile"] = serde_json::json!({ "decode": decode, "prefill_chunk": prefill });
    }
    if speculative.is_some() {
        report["speculative"] = serde_json::json!(speculative);
        report["rounds"] = serde_json::json!(rounds);
        report["plain_decode_tokens_per_s"] = serde_json::json!(median(&plain_speeds));
        // Each round's plain and speculative runs are a pair; the median of their ratios.
        let per_round: Vec<f64> = speeds.iter().zip(&plain_speeds).map(|(s, p)| s / p.max(1e-9)).collect();
        report["speedup"] = serde_json::json!(median(&per_round));
        report["speedup_per_round"] = serde_json::json!(per_round);
        report["identical_tokens"] = serde_json::json!(identical);
        report["drafted_tokens"] = serde_json::json!(stats.drafted_tokens);
        report["accepted_tokens"] = serde_json::json!(stats.accepted_tokens);
        report["acceptance_rate"] = serde_json::json!(stats.acceptance_rate);
        report["tokens_per_target_step"] = serde_json::json!(stats.tokens_per_target_step);
    }
    print_json(&report);
    Ok(())
}
