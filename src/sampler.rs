//! Choosing the next token, llama.cpp's default order: repetition penalties (applied to the logits
//! on the GPU, see [`Penalties`]) → top-k (selected on the GPU) → top-p → min-p → temperature →
//! a draw with a seeded RNG. Temperature 0 is greedy (the arg-max after penalties); the same seed
//! and settings on the same device give the same tokens.
//!
//! Only the top-k candidates reach the CPU: `top_k = 0` ("no limit") means the 256 most likely
//! tokens ([`MAX_TOP_K`]), which hold essentially all of the probability mass.

pub use crate::logits::{Penalties, MAX_PENALTY_WINDOW, MAX_TOP_K};
use crate::rng::Rng;

/// Sampling settings.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SamplerOptions {
    /// 0 = greedy.
    pub temperature: f32,
    /// Keep the k most likely tokens (0 = up to 256).
    pub top_k: u32,
    /// Keep the smallest set of tokens whose probability adds up to top_p (1 = off).
    pub top_p: f32,
    /// Drop tokens less likely than min_p × the most likely one (0 = off).
    pub min_p: f32,
    /// Divide positive / multiply negative logits of recent tokens (1 = off).
    pub repeat_penalty: f32,
    /// Subtract from the logits of tokens present in the window (0 = off).
    pub presence_penalty: f32,
    /// Subtract count × this from the logits of recent tokens (0 = off).
    pub frequency_penalty: f32,
    /// How many of the most recent tokens (prompt included) the penalties look at.
    pub penalty_window: u32,
    pub seed: u64,
}

impl Default for SamplerOptions {
    fn default() -> Self {
        SamplerOptions {
            temperature: 0.0,
            top_k: 40,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            penalty_window: 64,
            seed: 0,
        }
    }
}


impl SamplerOptions {
    /// Checks ranges; the message names the bad option.
    pub fn validate(&self) -> Result<(), String> {
        let finite = |name: &str, v: f32| if v.is_finite() { Ok(()) } else { Err(format!("{name} must be a finite number")) };
        finite("temperature", self.temperature)?;
        finite("top_p", self.top_p)?;
        finite("min_p", self.min_p)?;
        finite("repeat_penalty", self.repeat_penalty)?;
        finite("presence_penalty", self.presence_penalty)?;
        finite("frequency_penalty", self.frequency_penalty)?;
        if self.temperature < 0.0 {
            return Err("temperature must be >= 0".into());
        }
        if !(0.0..=1.0).contains(&self.top_p) || !(0.0..=1.0).contains(&self.min_p) {
            return Err("top_p and min_p must be between 0 and 1".into());
        }
        if self.repeat_penalty <= 0.0 {
            return Err("repeat_penalty must be > 0".into());
        }
        if self.top_k > MAX_TOP_K {
            return Err(format!("top_k must be at most {MAX_TOP_K} (0 = {MAX_TOP_K})"));
        }
        if self.penalty_window > MAX_PENALTY_WINDOW {
            return Err(format!("the penalty window must be at most {MAX_PENALTY_WINDOW} tokens"));
        }
        Ok(())
    }
}


pub struct Sampler {
    pub options: SamplerOptions,
    rng: Rng,
}

impl Sampler {
    pub fn new(options: SamplerOptions) -> Sampler {
        let rng = Rng::new(options.seed);
        Sampler { options, rng }
    }

    /// How many candidates the GPU must return.
    pub fn candidates_needed(&self) -> u32 {
        if self.options.temperature <= 0.0 {
            1
        } else if self.options.top_k == 0 {
            MAX_TOP_K
        } else {
            self.options.top_k.min(MAX_TOP_K)
        }
    }

    /// The penalties to apply given the token history (prompt and generated), if any are on.
    pub fn penalties(&self, history: &[u32]) -> Option<Penalties> {
        let o = &self.options;
        let active = o.repeat_penalty != 1.0 || o.presence_penalty != 0.0 || o.frequency_penalty != 0.0;
        if !active || o.penalty_window == 0 || history.is_empty() {
            return None;
        }
        let window = &history[history.len().saturating_sub(o.penalty_window as usize)..];
        let mut counts: Vec<(u32, u32)> = Vec::new();
        for &t in window {
            match counts.iter_mut().find(|(id, _)| *id == t) {
                Some((_, c)) => *c += 1,
                None => counts.push((t, 1)),
            }
        }
        Some(Penalties { counts, repeat: o.repeat_penalty, presence: o.presence_penalty, frequency: o.frequency_penalty })
    }

    /// Picks a token from `(id, logit)` candidates sorted best first, drawing from the sampler's
    /// running RNG.
    pub fn sample(&mut self, candidates: &[(u32, f32)]) -> Option<u32> {
        let r = self.rng.next_f64();
        self.choose(candidates, r)
    }

    /// Picks the token at sequence `position` from its `(id, logit)` candidates sorted best
    /// first. The draw depends only on the seed and the position, not on how many draws came
    /// before: generation uses it so that speculative decoding (which checks several positions
    /// in one step) draws exactly what one-token-at-a-time decoding draws.
    pub fn sample_at(&self, candidates: &[(u32, f32)], position: usize) -> Option<u32> {
        let mut rng = Rng::new(self.options.seed ^ (position as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
        let r = rng.next_f64();
        self.choose(candidates, r)
    }

    /// The token that the uniform draw `r` in [0, 1) picks from `candidates`.
    fn choose(&self, candidates: &[(u32, f32)], r: f64) -> Option<u32> {
        let (best, best_logit) = *candidates.first()?;
        let o = &self.options;
        if o.temperature <= 0.0 || candidates.len() == 1 {
            return Some(best);
        }
        // Probabilities at temperature 1 decide top-p and min-p (llama.cpp's order).
        let p1: Vec<f64> = candidates.iter().map(|&(_, l)| ((l - best_logit) as f64).exp()).collect();
        let total: f64 = p1.iter().sum();
        let mut keep = candidates.len();
        if o.top_p < 1.0 {
            let mut cumulative = 0.0;
            for (i, p) in p1.iter().enumerate() {
                cumulative += p / total;
                if cumulative >= o.top_p as f64 {
                    keep = keep.min(i + 1);
                    break;
                }
            }
        }
        if o.min_p > 0.0 {
            // p1[0] is the largest (1 before normalising).
            keep = keep.min(p1.iter().take_while(|&&p| p >= o.min_p as f64).count().max(1));
        }
        let t = o.temperature as f64;
        let weights: Vec<f64> = candidates[..keep].iter().map(|&(_, l)| ((l - best_logit) as f64 / t).exp()).collect();
        let total: f64 = weights.iter().sum();
        let mut r = r * total;
        for (&(id, _), w) in candidates.iter().zip(&weights) {
            if r < *w {
                return Some(id);
            }
            r -= w;
        }
        Some(candidates[keep - 1].0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(temperature: f32, seed: u64) -> Sampler {
        Sampler::new(SamplerOptions { temperature, seed, ..Default::default() })
    }

    #[test]
    fn greedy_and_seeded() {
        let c = [(5, 3.0), (7, 2.9), (1, 0.0)];
        assert_eq!(sampler(0.0, 0).sample(&c), Some(5));
        let run = |seed| {
            let mut s = sampler(1.0, seed);
            (0..50).map(|_| s.sample(&c).unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        let draws = run(42);
        assert!(draws.contains(&5) && draws.contains(&7), "both likely tokens are drawn: {draws:?}");
        assert_ne!(run(42), run(43));
        // Draws by position depend on (seed, position) only.
        let by_position = |seed| {
            let s = sampler(1.0, seed);
            (0..50).map(|p| s.sample_at(&c, p).unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(by_position(42), by_position(42));
        assert_ne!(by_position(42), by_position(43));
        let draws = by_position(42);
        assert!(draws.contains(&5) && draws.contains(&7), "both likely tokens are drawn: {draws:?}");
    }

    #[test]
    fn top_p_and_min_p_cut_the_tail() {
        // Probabilities ~ 0.64, 0.24, 0.09, 0.03.
        let c = [(1, 2.0), (2, 1.0), (3, 0.0), (4, -1.0)];
        let draw = |top_p: f32, min_p: f32| {
            let mut s = Sampler::new(SamplerOptions { temperature: 1.5, top_p, min_p, seed: 3, ..Default::default() });
            let mut seen: Vec<u32> = (0..400).map(|_| s.sample(&c).unwrap()).collect();
            seen.sort();
            seen.dedup();
            seen
        };
        assert_eq!(draw(1.0, 0.0), [1, 2, 3, 4]);
        assert_eq!(draw(0.8, 0.0), [1, 2]);
        assert_eq!(draw(1.0, 0.3), [1, 2]);
        assert_eq!(draw(0.5, 0.0), [1]);
    }

    #[test]
    fn penalties_count_the_window() {
        let s = Sampler::new(SamplerOptions { repeat_penalty: 1.3, penalty_window: 4, ..Default::default() });
        let p = s.penalties(&[9, 1, 2, 1, 1]).unwrap();
        assert_eq!(p.counts, [(1, 3), (2, 1)]);
        assert!(sampler(0.0, 0).penalties(&[1, 2]).is_none(), "off by default");
    }

    #[test]
    fn validation_names_the_option() {
        let bad = SamplerOptions { top_p: 1.5, ..Default::default() };
        assert!(bad.validate().unwrap_err().contains("top_p"));
        let bad = SamplerOptions { top_k: 1000, ..Default::default() };
        assert!(bad.validate().unwrap_err().contains("top_k"));
    }
}
