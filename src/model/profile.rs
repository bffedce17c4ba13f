//! Where a step's time goes, kernel by kernel, measured in place.
//!
//! Timing one dispatch again and again (as the autotuner does) runs it with its weights hot in
//! the CPU's or GPU's caches; inside a step they are not, and the two can differ by half. So
//! [`Model::profile`] times the whole recorded step, then each group of its dispatches alone
//! (those with the same label: a matrix shape such as `matvec Q8_0 49152x576 t1`, or a kernel
//! and entry such as `Attention attend`), one dispatch per layer as in the step, so that each
//! reads other weights than the last. A group's time is its run's minus that of an empty
//! submission. Run alone, a group computes garbage, which no kernel's speed depends on.
//! For `bench --profile`.

use std::collections::BTreeMap;

use super::{Logits, Model, StepShape};
use crate::engine::Clock;
use crate::error::Result;
use crate::gpu::{Recording, StepState};

/// Timed runs per measurement (the median is kept), after one untimed run.
const RUNS: usize = 3;

/// One group of a step's dispatches.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KernelTime {
    /// The matrix shape, or the kernel and entry point.
    pub label: String,
    /// Dispatches of the group in one step.
    pub dispatches: u32,
    /// How much longer the step takes with the group than without it.
    pub ms: f64,
}

/// A step's time and its split over kernels, slowest first.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StepProfile {
    /// Tokens the step processes (1: a decode step; more: a prefill chunk).
    pub tokens: u32,
    /// Cached positions before the step (attention's cost grows with them).
    pub position: u32,
    /// Milliseconds of the whole step.
    pub step_ms: f64,
    /// Milliseconds of a submission without dispatches (writing the step state, waiting).
    pub empty_ms: f64,
    /// `step_ms` minus the groups' and the empty submission's times: the cost of running the
    /// kernels together rather than apart (the caches they share, each other's outputs).
    pub unattributed_ms: f64,
    pub kernels: Vec<KernelTime>,
}

impl Model {
    /// Profiles the step of `n_tokens` tokens (a decode step with greedy top-1 when 1, else a
    /// prefill chunk without logits) at cached position `position`. Leaves the KV cache and
    /// activations meaningless: reset the model's state before generating again.
    pub async fn profile(&mut self, n_tokens: u32, position: u32) -> Result<StepProfile> {
        let shape = if n_tokens == 1 {
            StepShape { n_tokens, logits: Logits::Last, top_k: 1, penalties: false }
        } else {
            StepShape { n_tokens, logits: Logits::None, top_k: 0, penalties: false }
        };
        // The step the engine runs (with its top-k stage), out of the cache while it is timed.
        self.recording(shape)?;
        let recording = self.recordings.remove(&shape).expect("recorded above");
        let profile = self.profile_recording(&recording, n_tokens, position).await;
        self.recordings.insert(shape, recording);
        profile
    }

    async fn profile_recording(&self, recording: &Recording, n_tokens: u32, position: u32) -> Result<StepProfile> {
        let state = StepState::at(position);
        let mut groups: BTreeMap<&str, u32> = BTreeMap::new();
        for label in recording.labels() {
            *groups.entry(label).or_default() += 1;
        }
        let step_ms = self.time_step(recording, &state, |_| true).await?;
        let empty_ms = self.time_step(recording, &state, |_| false).await?;
        let mut kernels = Vec::new();
        for (label, dispatches) in groups {
            let alone = self.time_step(recording, &state, |l| l == label).await?;
            kernels.push(KernelTime { label: label.to_string(), dispatches, ms: (alone - empty_ms).max(0.0) });
        }
        kernels.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        let unattributed_ms = step_ms - empty_ms - kernels.iter().map(|k| k.ms).sum::<f64>();
        Ok(StepProfile { tokens: n_tokens, position, step_ms, empty_ms, unattributed_ms, kernels })
    }

    /// Median milliseconds of running the dispatches of `recording` whose label `keep` accepts.
    async fn time_step(&self, recording: &Recording, state: &StepState, keep: impl Fn(&str) -> bool + Copy) -> Result<f64> {
        let ctx = &self.ctx;
        let mut times = Vec::with_capacity(RUNS);
        for run in 0..=RUNS {
            let clock = Clock::start();
            recording.run_some(ctx, state, None, keep);
            ctx.wait_idle().await?;
            if run > 0 {
                times.push(clock.seconds() * 1000.0);
            }
        }
        times.sort_by(f64::total_cmp);
        Ok(times[RUNS / 2])
    }
}
