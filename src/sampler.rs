//! Choosing the next token from the top-k candidates the GPU returns.
//!
//! Temperature 0 is greedy (the arg-max). Otherwise the candidates' logits are divided by the
//! temperature, soft-maxed and one is drawn with a seeded RNG, so the same seed on the same device
//! gives the same tokens. Sampling only sees the top `top_k` logits (default 40).

/// Sampling settings.
#[derive(Clone, Debug)]
pub struct SamplerOptions {
    pub temperature: f32,
    pub top_k: u32,
    pub seed: u64,
}

impl Default for SamplerOptions {
    fn default() -> Self {
        SamplerOptions { temperature: 0.0, top_k: 40, seed: 0 }
    }
}

/// A small deterministic RNG (SplitMix64).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
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
        } else {
            self.options.top_k.clamp(1, crate::gpu::ops::MAX_TOP_K)
        }
    }

    /// Picks a token from `(id, logit)` candidates sorted best first.
    pub fn sample(&mut self, candidates: &[(u32, f32)]) -> Option<u32> {
        let (best, best_logit) = *candidates.first()?;
        if self.options.temperature <= 0.0 || candidates.len() == 1 {
            return Some(best);
        }
        let t = self.options.temperature as f64;
        let weights: Vec<f64> = candidates.iter().map(|&(_, l)| ((l - best_logit) as f64 / t).exp()).collect();
        let total: f64 = weights.iter().sum();
        let mut r = self.rng.next_f64() * total;
        for (&(id, _), w) in candidates.iter().zip(&weights) {
            if r < *w {
                return Some(id);
            }
            r -= w;
        }
        Some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_and_seeded() {
        let c = [(5, 3.0), (7, 2.9), (1, 0.0)];
        let mut s = Sampler::new(SamplerOptions::default());
        assert_eq!(s.sample(&c), Some(5));
        let run = |seed| {
            let mut s = Sampler::new(SamplerOptions { temperature: 1.0, top_k: 3, seed });
            (0..50).map(|_| s.sample(&c).unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        let draws = run(42);
        assert!(draws.contains(&5) && draws.contains(&7), "both likely tokens are drawn: {draws:?}");
    }
}
