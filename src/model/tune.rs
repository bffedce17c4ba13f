//! Autotuning the matrix kernels on the user's device.
//!
//! Which matrix-kernel variant (`gpu::variant`) is fastest depends on the device: CPU Vulkan
//! drivers want one thread per row and the input in a uniform buffer, GPUs many threads per row.
//! After the weights are in, [`Model::tune`] records the decode step and a 16-token prefill
//! chunk once per candidate variant, times each distinct matrix shape's dispatches alone (wall
//! clock around a wait for the GPU, best of a few runs of enough repetitions to outweigh the
//! submission's cost, taking turns through the layers' matrices so that the weights come from
//! memory as in a step, the candidates taking turns), and keeps the fastest per shape in the
//! context. Choices are cached by the caller per adapter, driver and
//! ferrolm version (the CLI in a file in the user cache directory, the browser package in
//! `localStorage`), so later loads skip the timing.

use std::collections::{BTreeMap, BTreeSet};

use super::{Logits, Model, StepShape};
use crate::engine::Clock;
use crate::error::Result;
use crate::gpu::variant::{InputPath, MatrixShape, MatrixVariant};
use crate::gpu::{Context, Step, StepState};

/// How a load picks the matrix-kernel variants.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Tune {
    /// The adapter's defaults (or the forced variant): nothing is timed. The library default, so
    /// that tests and embedders get repeatable kernels; the CLI and the browser package tune.
    #[default]
    Off,
    /// Take the choices of `cached` for the shapes it covers and time the others.
    Auto { cached: BTreeMap<MatrixShape, MatrixVariant> },
}

/// What tuning did, for `bench` and `engine.info`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct TuneReport {
    /// Wall-clock seconds spent (compiling and timing the candidates).
    pub seconds: f64,
    /// Shapes timed by this load.
    pub timed: usize,
    /// Shapes whose choice came from the cache.
    pub cached: usize,
    /// The candidate variants tried.
    pub candidates: Vec<String>,
}

/// Tokens of the prefill chunk whose shapes are tuned (one full tile of matvec and ffn_in).
const PREFILL_TILE: u32 = 16;
/// Timed submissions per candidate and shape in a prefill chunk and (cheaper, so more of them)
/// in the decode step.
const TRIALS: usize = 2;
const DECODE_TRIALS: usize = 5;
/// A dispatch slower than this is timed TRIALS times even in the decode step (Gemma 3's
/// 262144-row output head: five runs per candidate would add seconds to the tuning).
const LONG_DISPATCH_SECONDS: f64 = 0.02;
/// A timed submission repeats the dispatch until it is expected to take about this long (from
/// the untimed first round), at most `MAX_REPS` times. On a GPU one dispatch (10–50 µs on an
/// H200) is shorter than a submit and a blocking wait, so a single one timed mostly their cost
/// and its jitter; on a CPU driver a dispatch takes longer than this and runs once.
const TIMED_SUBMIT_SECONDS: f64 = 0.002;
const MAX_REPS: u32 = 32;

/// The variants worth timing on this adapter, the adapter's decode default first (in prefill,
/// where an input path does not apply, a variant reads storage).
pub fn candidates(ctx: &Context) -> Vec<MatrixVariant> {
    let v = |row_threads, rows_per_thread, input| MatrixVariant { row_threads, rows_per_thread, input, subgroup: false };
    let sg = |row_threads, rows_per_thread, input| MatrixVariant { row_threads, rows_per_thread, input, subgroup: true };
    let subgroup = ctx.limits.subgroup_min_size;
    let mut list = vec![ctx.default_variant(1)];
    if ctx.tuning.matmul_row_threads == 1 {
        // CPU drivers: one thread per row, the input row in a uniform buffer (the default, four
        // rows per thread) or one row per thread. (Storage or workgroup-staged inputs and 8-lane
        // subgroup rows never won on lavapipe once the input norm had its own dispatch: not
        // worth their compile and timing.)
        list.push(v(1, 1, InputPath::Uniform));
    } else {
        // Decode shapes also try four rows per lane group (each input load shared by four rows:
        // the x traffic a lane reads from cache is otherwise several times the weight bytes).
        list.extend([
            v(16, 1, InputPath::Uniform),
            v(64, 1, InputPath::Storage),
            v(64, 1, InputPath::Uniform),
            v(4, 1, InputPath::Storage),
            v(32, 2, InputPath::Workgroup),
            v(8, 4, InputPath::Storage),
        ]);
        if subgroup >= 16 {
            list.extend([sg(16, 1, InputPath::Uniform), sg(subgroup.min(64), 1, InputPath::Storage), sg(16, 4, InputPath::Storage)]);
        }
    }
    let mut seen = BTreeSet::new();
    list.retain(|c| seen.insert(*c));
    list
}

impl Model {
    /// Chooses the matrix-kernel variant of every shape the decode step and a prefill chunk run
    /// (see the module docs). Recorded steps are dropped, so the next step records with the choices.
    pub async fn tune(&mut self, mode: &Tune) -> Result<TuneReport> {
        let ctx = self.ctx.clone();
        let Tune::Auto { cached } = mode else { return Ok(TuneReport::default()) };
        if ctx.kernel_choices().forced.is_some() {
            return Ok(TuneReport::default());
        }
        let clock = Clock::start();
        // The decode step and a prefill chunk of one full token tile.
        let mut steps = vec![StepShape { n_tokens: 1, logits: Logits::Last, top_k: 0, penalties: false }];
        if self.state.batch >= PREFILL_TILE {
            steps.push(StepShape { n_tokens: PREFILL_TILE, logits: Logits::None, top_k: 0, penalties: false });
        }
        let mut report = TuneReport::default();
        let mut to_time: Vec<(StepShape, Vec<MatrixShape>)> = Vec::new();
        for step in steps {
            let shapes: BTreeSet<MatrixShape> = self.record_for_timing(step)?.shapes().flatten().collect();
            let mut uncached = Vec::new();
            for shape in shapes {
                match cached.get(&shape) {
                    Some(variant) => {
                        ctx.choose_variant(shape, *variant);
                        report.cached += 1;
                    }
                    None => uncached.push(shape),
                }
            }
            if !uncached.is_empty() {
                to_time.push((step, uncached));
            }
        }
        if !to_time.is_empty() {
            let candidates = candidates(&ctx);
            report.candidates = candidates.iter().map(|c| c.to_string()).collect();
            let mut best: BTreeMap<MatrixShape, (f64, MatrixVariant)> = BTreeMap::new();
            for (step, shapes) in &to_time {
                for (shape, candidate, seconds) in self.time_candidates(*step, shapes, &candidates).await? {
                    let entry = best.entry(shape).or_insert((f64::INFINITY, candidate));
                    if seconds < entry.0 {
                        *entry = (seconds, candidate);
                    }
                }
            }
            report.timed = best.len();
            for (shape, (_, variant)) in best {
                ctx.choose_variant(shape, variant);
            }
        }
        self.recordings.clear();
        report.seconds = clock.seconds();
        Ok(report)
    }

    /// Records a step of `shape` with the context's current variants, outside the cache of
    /// recordings.
    pub(super) fn record_for_timing(&mut self, shape: StepShape) -> Result<crate::gpu::Recording> {
        let ctx = self.ctx.clone();
        let mut step = Step::new(&ctx);
        super::transformer::record(self, &mut step, shape.n_tokens, shape.logits)?;
        Ok(step.finish())
    }

    /// Seconds per dispatch of each shape in `shapes` with each candidate variant: the fastest of
    /// a few timed runs (more for quick dispatches of the decode step) of the shape's dispatches
    /// in `step` recorded with that variant, each run a submission of as many of them (taking
    /// turns through the layers, so that each reads other weights than the last, as in a step:
    /// one matrix repeated stays in a GPU's L2 cache and times far faster than it runs) as make
    /// the submission last about `TIMED_SUBMIT_SECONDS` (the same count for every candidate of
    /// a shape, so that the submission's own cost adds the same to each). The candidates take
    /// turns, one run each per round, so that a slow spell of the machine (other processes, a
    /// busy host, a GPU still raising its clocks) weighs on all of them alike.
    async fn time_candidates(&mut self, step: StepShape, shapes: &[MatrixShape], candidates: &[MatrixVariant]) -> Result<Vec<(MatrixShape, MatrixVariant, f64)>> {
        let ctx = self.ctx.clone();
        let mut recordings = Vec::with_capacity(candidates.len());
        for candidate in candidates {
            ctx.force_variant(Some(*candidate));
            let recording = self.record_for_timing(step);
            ctx.force_variant(None);
            recordings.push(recording?);
        }
        // Per candidate, the dispatches of each shape, one per layer (empty where the shape is
        // not recorded).
        let ops: Vec<Vec<Vec<usize>>> = recordings
            .iter()
            .map(|r| shapes.iter().map(|shape| r.shapes().enumerate().filter(|(_, s)| s.as_ref() == Some(shape)).map(|(i, _)| i).collect()).collect())
            .collect();
        let state = StepState::at(0);
        let trials = if step.n_tokens == 1 { DECODE_TRIALS } else { TRIALS };
        let mut fastest = vec![vec![f64::INFINITY; shapes.len()]; candidates.len()];
        // Round 0 touches the memory and sizes the repetitions (its single dispatch includes the
        // submission's cost, so the count errs low); not timed.
        let mut first = vec![f64::INFINITY; shapes.len()];
        let mut reps = vec![1u32; shapes.len()];
        for round in 0..=trials {
            for (c, recording) in recordings.iter().enumerate() {
                for (s, layers) in ops[c].iter().enumerate() {
                    if layers.is_empty() || (round > TRIALS && fastest[c][s] > LONG_DISPATCH_SECONDS) {
                        continue;
                    }
                    let clock = Clock::start();
                    recording.run_cycle(&ctx, &state, layers, reps[s]);
                    ctx.wait_idle().await?;
                    if round == 0 {
                        first[s] = first[s].min(clock.seconds());
                    } else {
                        fastest[c][s] = fastest[c][s].min(clock.seconds() / reps[s] as f64);
                    }
                }
            }
            if round == 0 {
                reps = first.iter().map(|&t| ((TIMED_SUBMIT_SECONDS / t.max(1e-9)).ceil() as u32).clamp(1, MAX_REPS)).collect();
            }
        }
        let mut out = Vec::new();
        for (c, candidate) in candidates.iter().enumerate() {
            for (s, shape) in shapes.iter().enumerate() {
                if !ops[c][s].is_empty() {
                    out.push((*shape, *candidate, fastest[c][s]));
                }
            }
        }
        Ok(out)
    }
}

/// The kernel-choice cache of the native CLI: `kernels.json` in `$FERROLM_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/ferrolm`, else `~/.cache/ferrolm`, holding `{ adapter key: { shape: variant } }`.
#[cfg(not(target_arch = "wasm32"))]
pub mod file_cache {
    use super::*;
    use crate::gpu::variant::KernelChoices;
    use std::path::PathBuf;

    fn path() -> Option<PathBuf> {
        let dir = match (std::env::var_os("FERROLM_CACHE_DIR"), std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME")) {
            (Some(d), _, _) => PathBuf::from(d),
            (None, Some(x), _) => PathBuf::from(x).join("ferrolm"),
            (None, None, Some(h)) => PathBuf::from(h).join(".cache/ferrolm"),
            _ => return None,
        };
        Some(dir.join("kernels.json"))
    }

    fn read_all() -> serde_json::Map<String, serde_json::Value> {
        let text = path().and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default();
        serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| v.as_object().cloned()).unwrap_or_default()
    }

    /// The cached choices for `adapter_key` (empty when there are none or the file is unreadable).
    pub fn load(adapter_key: &str) -> BTreeMap<MatrixShape, MatrixVariant> {
        read_all().get(adapter_key).map(KernelChoices::from_json).unwrap_or_default()
    }

    /// Adds `choices` under `adapter_key` (written to a temporary file, then renamed: concurrent
    /// loads never see half a file). Best effort: a cache that cannot be written is skipped.
    pub fn store(adapter_key: &str, choices: &KernelChoices) {
        let Some(path) = path() else { return };
        let mut all = read_all();
        let mut entry = all.get(adapter_key).and_then(|v| v.as_object().cloned()).unwrap_or_default();
        if let serde_json::Value::Object(new) = choices.to_json() {
            entry.extend(new);
        }
        all.insert(adapter_key.to_string(), entry.into());
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let written = path.parent().is_some_and(|d| std::fs::create_dir_all(d).is_ok())
            && std::fs::write(&tmp, serde_json::to_vec_pretty(&serde_json::Value::Object(all)).unwrap_or_default()).is_ok();
        if !written || std::fs::rename(&tmp, &path).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}
