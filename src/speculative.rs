//! Speculative decoding: cheap proposals of the next few tokens that the target model checks in
//! one batched verify step ([`crate::model::Model::verify`]). This module holds the parts that
//! know nothing of GPUs: the prompt-lookup (n-gram) drafter, the acceptance rule, the adaptive
//! number of proposed tokens, and the counters. The engine runs the steps.
//!
//! Acceptance keeps the output exactly what decoding without speculation gives: the target's
//! choice at every position is made from the target's own candidates at that position (greedy:
//! the arg-max; sampling: the draw seeded by (seed, position), see
//! [`crate::sampler::Sampler::sample_at`]). A proposed token is accepted while it equals that
//! choice; the first mismatch is replaced by the target's choice, and when all match the target's
//! next token comes free.

/// What proposes the tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Speculation {
    /// Continue the last n (3, 2, then 1) tokens the way they continued earlier in the prompt or
    /// output. No extra model.
    PromptLookup,
    /// A smaller model with the same vocabulary, loaded beside the target
    /// ([`crate::engine::Engine::load_draft`]), decoding greedily.
    Draft,
}

impl std::str::FromStr for Speculation {
    type Err = crate::error::Error;
    fn from_str(s: &str) -> crate::error::Result<Speculation> {
        match s {
            "prompt-lookup" => Ok(Speculation::PromptLookup),
            "draft" => Ok(Speculation::Draft),
            _ => Err(crate::error::Error::BadRequest(format!("speculation '{s}' is not one of prompt-lookup, draft"))),
        }
    }
}

/// Longest n-gram prompt lookup matches.
pub const MAX_NGRAM: usize = 3;

/// Prompt lookup: the up to `k` tokens that followed the most recent earlier occurrence of the
/// last n tokens of `history` (n = [`MAX_NGRAM`] down to `min_ngram`; longer matches first).
/// Empty when nothing matches.
pub fn prompt_lookup(history: &[u32], k: usize, min_ngram: usize) -> Vec<u32> {
    let len = history.len();
    for n in (min_ngram.max(1)..=MAX_NGRAM).rev() {
        if len <= n {
            continue;
        }
        let tail = &history[len - n..];
        // Most recent occurrence first; it must be followed by at least one token.
        if let Some(start) = (0..len - n).rev().find(|&i| &history[i..i + n] == tail) {
            let from = start + n;
            return history[from..(from + k).min(len)].to_vec();
        }
    }
    Vec::new()
}

/// How many proposed tokens the target's candidates confirm: the length of the longest prefix of
/// `draft` equal to `choices` (the target's choice after each verified token).
pub fn accepted_prefix(draft: &[u32], choices: &[u32]) -> usize {
    draft.iter().zip(choices).take_while(|(d, c)| d == c).count()
}

/// The number of tokens to propose, chosen to maximise the expected tokens per second of the
/// target: it keeps the measured time of a step over n tokens (n = 1: a plain step) and an
/// estimate of the per-token acceptance probability α; a proposal of k tokens yields
/// (1 − α^(k+1)) / (1 − α) tokens on average (the accepted run plus the target's own token).
///
/// Step times are measured, never assumed: the first proposal has [`START_K`] tokens; sizes not
/// measured yet are interpolated between measured ones, or extrapolated along the slope of the
/// two largest (then measured when tried).
///
/// When no k beats a plain step, speculation pauses, and the acceptance estimate goes stale (it
/// only learns from proposals). So a new text ([`AdaptiveK::restart`]) and the end of every pause
/// start with a *probe*: the best k is proposed even though it does not seem to pay. A failed
/// probe doubles the next pause (up to [`MAX_PAUSE`] plain steps), and a pause is at least long
/// enough that its probe costs at most [`PROBE_BUDGET`] of the pause's time (on a CPU driver,
/// where a verify step over 2 tokens costs about 2 plain ones, that is [`MAX_PAUSE`]; on a GPU, a
/// few steps).
/// So text without repeats decodes at about the plain speed, and a text that starts repeating
/// itself is noticed within a pause.
#[derive(Clone, Debug)]
pub struct AdaptiveK {
    max: u32,
    /// Seconds of a target step over n tokens, index n (0 unused): a running average, or `None`
    /// before the first measurement.
    cost: Vec<Option<f64>>,
    /// Decayed counts of accepted tokens and of rejections (the geometric estimate of α).
    accepted: f64,
    rejected: f64,
    /// Plain steps left before the next proposal.
    pause_left: u32,
    /// The next pause.
    pause: u32,
    /// The next proposal is made even if the estimates say it does not pay.
    probe: bool,
}

/// Tokens of the first proposal, before any step time is known.
pub const START_K: u32 = 3;
/// Longest pause of speculation (in plain steps) while it does not pay.
pub const MAX_PAUSE: u32 = 128;
/// Most of a pause's time its closing probe may cost beyond a plain step (when it fails).
pub const PROBE_BUDGET: f64 = 0.02;

/// Weight of the newest measurement in a step's running average time.
const COST_WEIGHT: f64 = 0.3;
/// Decay of the acceptance counts at each proposal (about the last 10 proposals count).
const ACCEPT_DECAY: f64 = 0.9;

impl AdaptiveK {
    /// Proposals of 1 to `max` tokens.
    pub fn new(max: u32) -> AdaptiveK {
        let max = max.max(1);
        let mut a = AdaptiveK { max, cost: vec![None; max as usize + 2], accepted: 0.0, rejected: 0.0, pause_left: 0, pause: 1, probe: true };
        a.restart();
        a
    }

    /// Forgets the acceptance statistics (a new text), keeps the measured step times; the first
    /// proposal is a probe.
    pub fn restart(&mut self) {
        // Prior: α = 1/2 from one accepted and one rejected token.
        self.accepted = 1.0;
        self.rejected = 1.0;
        self.pause_left = 0;
        self.pause = 1;
        self.probe = true;
    }

    /// The estimated per-token acceptance probability.
    pub fn acceptance(&self) -> f64 {
        self.accepted / (self.accepted + self.rejected)
    }

    /// Expected tokens a proposal of `k` tokens yields (including the target's own).
    fn expected_tokens(&self, k: u32) -> f64 {
        let a = self.acceptance().min(0.999);
        (1.0 - a.powi(k as i32 + 1)) / (1.0 - a)
    }

    /// Estimated seconds of a step over `n` tokens: measured, or interpolated between the
    /// nearest measured sizes, or extrapolated along the slope of the two largest measured
    /// sizes (at least the largest one's time); `None` while fewer than two sizes are measured.
    fn cost_of(&self, n: usize) -> Option<f64> {
        if let Some(c) = self.cost.get(n).copied().flatten() {
            return Some(c);
        }
        let measured: Vec<(usize, f64)> = (1..self.cost.len()).filter_map(|m| self.cost[m].map(|c| (m, c))).collect();
        let line = |(m0, c0): (usize, f64), (m1, c1): (usize, f64)| c0 + (c1 - c0) * (n as f64 - m0 as f64) / (m1 - m0) as f64;
        let below = measured.iter().rev().find(|(m, _)| *m < n).copied();
        let above = measured.iter().find(|(m, _)| *m > n).copied();
        match (below, above) {
            (Some(lo), Some(hi)) => Some(line(lo, hi)),
            (Some(hi), None) if measured.len() >= 2 => Some(line(measured[measured.len() - 2], hi).max(hi.1)),
            (None, Some(lo)) if measured.len() >= 2 => Some(line(lo, measured[1]).min(lo.1)),
            _ => None,
        }
    }

    /// Tokens to propose now (0: take a plain step).
    pub fn next_k(&mut self) -> u32 {
        if self.pause_left > 0 {
            self.pause_left -= 1;
            if self.pause_left == 0 {
                self.probe = true;
            }
            return 0;
        }
        // Time a proposal of START_K tokens and a plain step before choosing.
        if self.cost[1].is_none() && self.cost.iter().any(|c| c.is_some()) {
            return 0;
        }
        if self.cost_of(self.max as usize + 1).is_none() {
            return START_K.min(self.max);
        }
        let rate = |k: u32| self.cost_of(k as usize + 1).map_or(0.0, |c| self.expected_tokens(k) / c.max(1e-9));
        let best = (1..=self.max).max_by(|&a, &b| rate(a).total_cmp(&rate(b))).unwrap_or(1);
        if rate(best) <= rate(0) && !self.probe {
            self.start_pause(best);
            return 0;
        }
        best
    }

    /// Pauses speculation: for twice the last pause, and at least long enough that a failed
    /// probe of `k` tokens at its end costs at most [`PROBE_BUDGET`] of the pause. (Its cost is
    /// taken as that of at least [`START_K`] tokens, which is measured early: smaller sizes are
    /// often only interpolated then, and too low.)
    fn start_pause(&mut self, k: u32) {
        let plain = self.cost[1].unwrap_or(0.0).max(1e-9);
        let extra = self.cost_of(k.max(START_K) as usize + 1).map_or(0.0, |c| (c - plain).max(0.0));
        let shortest = (extra / (PROBE_BUDGET * plain)).ceil().min(MAX_PAUSE as f64) as u32;
        let pause = self.pause.max(shortest).max(1);
        self.pause_left = pause;
        self.pause = (pause * 2).min(MAX_PAUSE);
        // This call's own plain step is the pause's first.
        self.pause_left -= 1;
        if self.pause_left == 0 {
            self.probe = true;
        }
    }

    /// True when the next step is sure to be plain (speculation is paused).
    pub fn pausing(&self) -> bool {
        self.pause_left > 0
    }

    /// Records a step over `n` tokens (`drafted` proposed, `accepted` of them confirmed) that
    /// took `seconds`.
    pub fn record(&mut self, drafted: u32, accepted: u32, seconds: f64) {
        let n = drafted as usize + 1;
        if let Some(slot) = self.cost.get_mut(n) {
            *slot = Some(match *slot {
                Some(c) => c + COST_WEIGHT * (seconds - c),
                None => seconds,
            });
        }
        if drafted == 0 {
            return;
        }
        self.accepted = self.accepted * ACCEPT_DECAY + accepted as f64;
        self.rejected = self.rejected * ACCEPT_DECAY + (accepted < drafted) as u32 as f64;
        self.probe = false;
        if accepted > 0 {
            self.pause = 1;
        }
    }
}

/// Counters of one generation's speculation.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct SpeculationStats {
    /// Tokens proposed.
    pub drafted: u32,
    /// Proposed tokens the target confirmed.
    pub accepted: u32,
    /// Decode steps of the target (verify steps and plain steps).
    pub target_steps: u32,
}

impl SpeculationStats {
    /// accepted / drafted (0 when nothing was proposed).
    pub fn acceptance_rate(&self) -> f64 {
        if self.drafted == 0 { 0.0 } else { self.accepted as f64 / self.drafted as f64 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_prefers_long_and_recent_matches() {
        // "1 2 3 4 5 ... 1 2 3" -> continues with 4 5.
        assert_eq!(prompt_lookup(&[1, 2, 3, 4, 5, 9, 1, 2, 3], 2, 1), [4, 5]);
        // The most recent occurrence of the bigram wins: 7 2 3 -> 8.
        assert_eq!(prompt_lookup(&[2, 3, 6, 2, 3, 8, 7, 2, 3], 3, 1), [8, 7, 2]);
        // Only a unigram matches; with min_ngram 2 nothing does.
        assert_eq!(prompt_lookup(&[5, 6, 0, 5], 4, 1), [6, 0, 5]);
        assert!(prompt_lookup(&[5, 6, 0, 5], 4, 2).is_empty());
        assert!(prompt_lookup(&[1, 2, 3], 4, 1).is_empty());
        assert!(prompt_lookup(&[], 4, 1).is_empty());
    }

    #[test]
    fn acceptance_is_the_matching_prefix() {
        assert_eq!(accepted_prefix(&[4, 5, 6], &[4, 5, 7, 1]), 2);
        assert_eq!(accepted_prefix(&[4, 5], &[4, 5, 7]), 2);
        assert_eq!(accepted_prefix(&[4], &[3, 9]), 0);
    }

    #[test]
    fn k_follows_measured_costs_and_acceptance() {
        let mut a = AdaptiveK::new(15);
        assert_eq!(a.next_k(), START_K, "a short proposal first");
        // Steps over 2..4 tokens (a tile of 4) cost 3 plain steps, over 5..8 5, over 16 9.
        a.record(3, 3, 3.0);
        assert_eq!(a.next_k(), 0, "then a plain step, to time it");
        a.record(0, 0, 1.0);
        // Extrapolated along the slope from 1 to 4 tokens.
        assert!((a.cost_of(8).unwrap() - 17.0 / 3.0).abs() < 1e-9);
        for _ in 0..10 {
            a.record(3, 3, 3.0);
        }
        // High acceptance: longer proposals; measured, they settle on full tiles.
        let k = a.next_k();
        assert!(k > 3, "{k}");
        a.record(7, 7, 5.0);
        a.record(15, 15, 9.0);
        a.record(4, 4, 5.0);
        assert_eq!(a.cost_of(6), Some(5.0));
        for _ in 0..10 {
            a.record(15, 15, 9.0);
        }
        assert_eq!(a.next_k(), 15);
        // A new text probes first, even with estimates that favour plain steps.
        for _ in 0..20 {
            a.record(7, 0, 5.0);
        }
        a.restart();
        assert!(a.next_k() > 0, "the first proposal of a text is a probe");
    }

    /// Runs `a` for `steps` target steps of a text without repeats (no proposal is accepted)
    /// where a step over n tokens takes `cost(n)`; returns (seconds, tokens).
    fn simulate(a: &mut AdaptiveK, steps: u32, cost: impl Fn(u32) -> f64) -> (f64, u32) {
        let (mut seconds, mut tokens) = (0.0, 0);
        for _ in 0..steps {
            let k = a.next_k();
            a.record(k, 0, cost(k + 1));
            seconds += cost(k + 1);
            tokens += 1;
        }
        (seconds, tokens)
    }

    #[test]
    fn text_without_repeats_costs_at_most_a_few_percent() {
        // A CPU driver: a verify step over n >= 2 tokens costs 1.5 + 0.5 n plain steps.
        let cpu = |n: u32| if n == 1 { 1.0 } else { 1.5 + 0.5 * n as f64 };
        let mut a = AdaptiveK::new(15);
        for text in 0..4 {
            a.restart();
            let (seconds, tokens) = simulate(&mut a, 64, cpu);
            assert_eq!(tokens, 64);
            // The first text also times a proposal of START_K tokens (2.5 plain steps more).
            // Then one probe at the start of each 64-token text (a failed probe of 1 token costs
            // 1.5 plain steps more), none in its pause.
            let allowed = if text == 0 { 1.07 } else { 1.03 };
            assert!(seconds <= 64.0 * allowed, "text {text}: {seconds} s for 64 tokens");
        }
        let (seconds, _) = simulate(&mut a, 1024, cpu);
        assert!(seconds <= 1024.0 * (1.0 + PROBE_BUDGET), "{seconds} s for 1024 tokens");
    }

    #[test]
    fn pauses_are_short_where_verify_steps_are_cheap() {
        let mut a = AdaptiveK::new(15);
        a.restart();
        // A GPU-like device: verify steps cost about a plain step (1.0 vs 1.02 per extra token).
        for n in 1..=16u32 {
            a.record(n - 1, 0, 1.0 + 0.02 * (n - 1) as f64);
        }
        let plan: Vec<u32> = (0..16).map(|_| a.next_k()).collect();
        let probes = plan.iter().filter(|&&k| k > 0).count();
        assert!(probes >= 2, "a cheap probe comes back soon: {plan:?}");
    }
}
