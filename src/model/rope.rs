//! RoPE frequency scaling, resolved on the CPU at load time into the two things the GPU kernel
//! reads: a per-pair frequency **divisor table** `[n_rot / 2]` f32 and one magnitude factor
//! **`mscale`**. The kernel then computes, for pair i of the rotated dims,
//!
//! ```text
//! theta_i(pos) = pos · freq_base^(-2i / n_rot) / divisor_i
//! (a, b)      -> (a cos θ − b sin θ, a sin θ + b cos θ) · mscale
//! ```
//!
//! and leaves dims past `n_rot` untouched. Everything llama.cpp does to the frequencies folds into
//! the divisor, because in ggml's `rope_yarn` every variant is linear in the position:
//!
//! - frequency factors `ff_i` (Llama 3 `rope_freqs.weight`, Phi-3.5 / Phi-4-mini LongRoPE
//!   `rope_factors_long|short.weight`): `theta_extrap = pos · base^(-2i/n_rot) / ff_i`;
//! - linear scaling: `theta = freq_scale · theta_extrap` with `freq_scale = 1 / rope.scaling.factor`;
//! - YaRN: `theta = theta_extrap · (freq_scale · (1 − r_i) + r_i)`, `r_i = ramp_i · ext_factor`,
//!   where the ramp goes from 1 to 0 between the correction dims computed from `beta_fast` /
//!   `beta_slow` (ggml's `ggml_rope_yarn_corr_dims`).
//!
//! So `divisor_i = ff_i / (freq_scale · (1 − r_i) + r_i)` (r_i = 0 without YaRN). `mscale` is
//! `rope.scaling.attn_factor`, times YaRN's magnitude correction when YaRN is on, computed in the
//! same f32 steps as llama.cpp's `llama_context` constructor and ggml's `rope_yarn`.

use crate::error::{Error, Result};
use crate::gguf::GgufFile;

/// `{arch}.rope.scaling.type` (llama.cpp's `llama_rope_scaling_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalingType {
    None,
    /// Position interpolation: every frequency times `1 / factor` (also the default when the
    /// file has a factor but no type, as in llama.cpp).
    Linear,
    Yarn,
    /// Phi-3 style: the scaling lives in the `rope_factors_long|short` tensors.
    LongRope,
}

/// YaRN's parameters (`{arch}.rope.scaling.yarn_*`; defaults are llama.cpp's).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Yarn {
    /// Weight of extrapolation in the ramp (1 unless the file says otherwise).
    pub ext_factor: f32,
    pub beta_fast: f32,
    pub beta_slow: f32,
    /// `rope.scaling.yarn_log_multiplier` (0: not used).
    pub log_mul: f32,
    /// `rope.scaling.yarn_attn_factor`: the magnitude factor when `ext_factor` is 0.
    pub attn_factor: f32,
}

impl Default for Yarn {
    fn default() -> Self {
        Yarn { ext_factor: 1.0, beta_fast: 32.0, beta_slow: 1.0, log_mul: 0.0, attn_factor: 1.0 }
    }
}

/// How the file scales RoPE, read from `{arch}.rope.scaling.*` and the tensor table.
#[derive(Clone, Debug, PartialEq)]
pub struct RopeScaling {
    pub kind: ScalingType,
    /// 1 / `rope.scaling.factor` (1 when absent or when the type is `none`).
    pub freq_scale: f32,
    /// `rope.scaling.attn_factor` (1 when absent): multiplies cos and sin.
    pub attn_factor: f32,
    /// `rope.scaling.original_context_length`, else the training context.
    pub original_context: u32,
    pub yarn: Yarn,
    /// Which per-pair frequency factors the file carries.
    pub factors: FactorTensors,
}

/// Frequency-factor tensors in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FactorTensors {
    None,
    /// Llama 3.x `rope_freqs.weight` [n_rot / 2].
    Freqs,
    /// LongRoPE `rope_factors_long.weight` and `rope_factors_short.weight`, each [n_rot / 2].
    LongShort,
}

/// The RoPE variant in use once the runtime context is known, as `info`/`inspect` report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeVariant {
    None,
    Linear,
    Yarn,
    LongRopeShort,
    LongRopeLong,
}

impl RopeVariant {
    pub fn name(self) -> &'static str {
        match self {
            RopeVariant::None => "none",
            RopeVariant::Linear => "linear",
            RopeVariant::Yarn => "yarn",
            RopeVariant::LongRopeShort => "longrope-short",
            RopeVariant::LongRopeLong => "longrope-long",
        }
    }
}

impl RopeScaling {
    /// No scaling at all (divisors 1, mscale 1).
    pub fn none(original_context: u32) -> RopeScaling {
        RopeScaling {
            kind: ScalingType::None,
            freq_scale: 1.0,
            attn_factor: 1.0,
            original_context,
            yarn: Yarn::default(),
            factors: FactorTensors::None,
        }
    }

    /// Reads the scaling of the model whose keys start with `arch`. An unknown
    /// `rope.scaling.type` is [`Error::Unsupported`], never ignored.
    pub fn from_gguf(file: &GgufFile, arch: &str, ctx_train: u32) -> Result<RopeScaling> {
        let key = |k: &str| format!("{arch}.rope.scaling.{k}");
        let float = |k: &str| -> Result<Option<f32>> { Ok(file.get_f32(&key(k))?) };
        let type_name = file.get_str(&key("type"))?;
        let kind = match type_name.unwrap_or("linear") {
            "none" => ScalingType::None,
            "linear" => ScalingType::Linear,
            "yarn" => ScalingType::Yarn,
            "longrope" => ScalingType::LongRope,
            other => {
                return Err(Error::Unsupported(format!(
                    "{} = '{other}' is not supported (supported: none, linear, yarn, longrope)",
                    key("type")
                )))
            }
        };
        let factor = float("factor")?.unwrap_or(0.0);
        if !factor.is_finite() || factor < 0.0 {
            return Err(Error::Unsupported(format!("{} = {factor} is not a valid scaling factor", key("factor"))));
        }
        let freq_scale = if factor == 0.0 || kind == ScalingType::None { 1.0 } else { 1.0 / factor };
        let original_context = match file.get_u64(&key("original_context_length"))? {
            Some(v) if v > 0 && v <= u32::MAX as u64 => v as u32,
            _ => ctx_train,
        };
        let defaults = Yarn::default();
        let yarn = Yarn {
            ext_factor: float("yarn_ext_factor")?.unwrap_or(defaults.ext_factor),
            beta_fast: float("yarn_beta_fast")?.unwrap_or(defaults.beta_fast),
            beta_slow: float("yarn_beta_slow")?.unwrap_or(defaults.beta_slow),
            log_mul: float("yarn_log_multiplier")?.unwrap_or(defaults.log_mul),
            attn_factor: float("yarn_attn_factor")?.unwrap_or(defaults.attn_factor),
        };
        let factors = if file.tensor("rope_freqs.weight").is_some() {
            FactorTensors::Freqs
        } else if file.tensor("rope_factors_long.weight").is_some() || file.tensor("rope_factors_short.weight").is_some() {
            FactorTensors::LongShort
        } else {
            FactorTensors::None
        };
        let s = RopeScaling { kind, freq_scale, attn_factor: float("attn_factor")?.unwrap_or(1.0), original_context, yarn, factors };
        for (what, v) in [("attn_factor", s.attn_factor), ("yarn_ext_factor", yarn.ext_factor), ("yarn_beta_fast", yarn.beta_fast), ("yarn_beta_slow", yarn.beta_slow), ("yarn_log_multiplier", yarn.log_mul), ("yarn_attn_factor", yarn.attn_factor)] {
            if !v.is_finite() {
                return Err(Error::Unsupported(format!("{} = {v} is not finite", key(what))));
            }
        }
        Ok(s)
    }

    /// YaRN's ramp weight ext_factor (0 when YaRN is off: llama.cpp's `yarn_ext_factor`).
    fn ext_factor(&self) -> f32 {
        if self.kind == ScalingType::Yarn { self.yarn.ext_factor } else { 0.0 }
    }

    /// The frequency-factor tensor to use at runtime context `context` (llama.cpp's
    /// `get_rope_factors`: LongRoPE's long factors when the context exceeds the original one).
    pub fn factor_tensor(&self, context: u32) -> Option<&'static str> {
        match self.factors {
            FactorTensors::None => None,
            FactorTensors::Freqs => Some("rope_freqs.weight"),
            FactorTensors::LongShort if context > self.original_context => Some("rope_factors_long.weight"),
            FactorTensors::LongShort => Some("rope_factors_short.weight"),
        }
    }

    /// What is in use at runtime context `context`.
    pub fn variant(&self, context: u32) -> RopeVariant {
        match (self.factors, self.kind) {
            (FactorTensors::LongShort, _) if context > self.original_context => RopeVariant::LongRopeLong,
            (FactorTensors::LongShort, _) => RopeVariant::LongRopeShort,
            (_, ScalingType::Yarn) => RopeVariant::Yarn,
            (_, ScalingType::Linear) if self.freq_scale != 1.0 => RopeVariant::Linear,
            _ => RopeVariant::None,
        }
    }

    /// The factor multiplying cos and sin of the rotated dims.
    pub fn mscale(&self) -> f32 {
        let ext = self.ext_factor();
        if ext == 0.0 {
            return self.yarn.attn_factor * self.attn_factor;
        }
        // llama_context: the attention factor for YaRN, then the cancellation of ggml's own
        // magnitude term, then rope.scaling.attn_factor; ggml's rope_yarn multiplies its term back.
        let get_mscale = |scale: f32, m: f32| if scale <= 1.0 { 1.0 } else { 0.1 * m * scale.ln() + 1.0 };
        let factor = 1.0 / self.freq_scale;
        let mut attn = if self.yarn.log_mul != 0.0 {
            get_mscale(factor, 1.0) / get_mscale(factor, self.yarn.log_mul)
        } else {
            get_mscale(factor, 1.0)
        };
        attn *= 1.0 / (1.0 + 0.1 * factor.ln());
        attn *= self.attn_factor;
        attn * (1.0 + 0.1 * (1.0 / self.freq_scale).ln())
    }

    /// The per-pair divisor table `[n_rot / 2]` for a RoPE of `n_rot` dims and base `freq_base`,
    /// given the factor tensor's values `freq_factors` ([n_rot / 2], see [`Self::factor_tensor`]).
    pub fn divisors(&self, n_rot: u32, freq_base: f32, freq_factors: Option<&[f32]>) -> Vec<f32> {
        let ext = self.ext_factor();
        let corr = yarn_corr_dims(n_rot, self.original_context, freq_base, self.yarn.beta_fast, self.yarn.beta_slow);
        (0..n_rot / 2)
            .map(|i| {
                let ff = freq_factors.map_or(1.0, |f| f[i as usize]);
                let mix = if ext != 0.0 { yarn_ramp(corr, i) * ext } else { 0.0 };
                ff / (self.freq_scale * (1.0 - mix) + mix)
            })
            .collect()
    }
}

/// ggml's `ggml_rope_yarn_corr_dims`: the first and last pair index of YaRN's ramp.
pub fn yarn_corr_dims(n_rot: u32, original_context: u32, freq_base: f32, beta_fast: f32, beta_slow: f32) -> [f32; 2] {
    let n_dims = n_rot as f32;
    let corr_dim = |n_rotations: f32| {
        n_dims * (original_context as f32 / (n_rotations * 2.0 * std::f32::consts::PI)).ln() / (2.0 * freq_base.ln())
    };
    let start = corr_dim(beta_fast).floor();
    let end = corr_dim(beta_slow).ceil();
    [start.max(0.0), end.min(n_dims - 1.0)]
}

/// ggml's `rope_yarn_ramp` for pair `i` (its `i0 / 2`): 1 below the ramp, 0 above it.
pub fn yarn_ramp(corr: [f32; 2], i: u32) -> f32 {
    let y = (i as f32 - corr[0]) / (corr[1] - corr[0]).max(0.001);
    1.0 - y.clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ggml's CPU path, written out as it computes it: theta by repeated f32 multiplication,
    /// `rope_yarn` per pair. Returns (cos, sin) of pair i at `pos`.
    fn ggml_reference(s: &RopeScaling, n_rot: u32, base: f32, ff: Option<&[f32]>, pos: u32, i: u32) -> (f32, f32) {
        let theta_scale = base.powf(-2.0 / n_rot as f32);
        let corr = yarn_corr_dims(n_rot, s.original_context, base, s.yarn.beta_fast, s.yarn.beta_slow);
        let ext = if s.kind == ScalingType::Yarn { s.yarn.ext_factor } else { 0.0 };
        let mut attn = if ext != 0.0 {
            let f = 1.0 / s.freq_scale;
            (0.1 * f.ln() + 1.0) / (1.0 + 0.1 * f.ln()) * s.attn_factor
        } else {
            s.yarn.attn_factor * s.attn_factor
        };
        let mut theta = pos as f32;
        for _ in 0..i {
            theta *= theta_scale;
        }
        let theta_extrap = theta / ff.map_or(1.0, |f| f[i as usize]);
        let theta_interp = s.freq_scale * theta_extrap;
        let mut t = theta_interp;
        if ext != 0.0 {
            let mix = yarn_ramp(corr, i) * ext;
            t = theta_interp * (1.0 - mix) + theta_extrap * mix;
            attn *= 1.0 + 0.1 * (1.0 / s.freq_scale).ln();
        }
        (t.cos() * attn, t.sin() * attn)
    }

    /// What the GPU kernel computes from the table and mscale (pow instead of repeated products).
    fn table_version(s: &RopeScaling, n_rot: u32, base: f32, ff: Option<&[f32]>, pos: u32, i: u32) -> (f32, f32) {
        let d = s.divisors(n_rot, base, ff);
        let theta = pos as f32 * base.powf(-2.0 * i as f32 / n_rot as f32) / d[i as usize];
        (theta.cos() * s.mscale(), theta.sin() * s.mscale())
    }

    fn assert_matches(s: &RopeScaling, n_rot: u32, base: f32, ff: Option<&[f32]>) {
        for pos in [0u32, 1, 7, 100, 255, 1000, 2047] {
            for i in 0..n_rot / 2 {
                let (c0, s0) = ggml_reference(s, n_rot, base, ff, pos, i);
                let (c1, s1) = table_version(s, n_rot, base, ff, pos, i);
                // theta is f32 either way; the angle error grows with pos (≈ pos · 1e-6 rad).
                let tol = 2e-6 * (pos as f32 + 10.0) * s.mscale();
                assert!((c0 - c1).abs() <= tol && (s0 - s1).abs() <= tol, "{s:?} pos {pos} pair {i}: ({c0}, {s0}) vs ({c1}, {s1})");
            }
        }
    }

    fn yarn(factor: f32, orig: u32) -> RopeScaling {
        RopeScaling { kind: ScalingType::Yarn, freq_scale: 1.0 / factor, original_context: orig, ..RopeScaling::none(orig) }
    }

    #[test]
    fn yarn_matches_ggml_rope_yarn() {
        for (factor, orig, n_rot, base) in [(4.0f32, 4096u32, 128u32, 1_000_000f32), (2.0, 256, 64, 10000.0), (8.0, 32768, 64, 500000.0)] {
            let s = yarn(factor, orig);
            assert_matches(&s, n_rot, base, None);
            // The ramp really mixes: low pairs extrapolate (divisor 1), high pairs interpolate.
            let d = s.divisors(n_rot, base, None);
            assert!((d[0] - 1.0).abs() < 1e-6, "{d:?}");
            assert!((d[(n_rot / 2 - 1) as usize] - factor).abs() < 1e-4, "{d:?}");
            // mscale = 1 + 0.1 ln(factor) (llama.cpp's cancellation leaves exactly that).
            assert!((s.mscale() - (1.0 + 0.1 * factor.ln())).abs() < 1e-5);
        }
    }

    #[test]
    fn yarn_corr_dims_are_ggml_values() {
        // n_dims · ln(orig / (beta · 2π)) / (2 ln base), floored/ceiled and clamped.
        let [lo, hi] = yarn_corr_dims(128, 4096, 10000.0, 32.0, 1.0);
        let f = |b: f64| 128.0 * (4096.0 / (b * 2.0 * std::f64::consts::PI)).ln() / (2.0 * 10000f64.ln());
        assert_eq!(lo, f(32.0).floor() as f32);
        assert_eq!(hi, f(1.0).ceil().min(127.0) as f32);
        assert_eq!((lo, hi), (20.0, 46.0));
    }

    #[test]
    fn yarn_with_ext_factor_and_log_multiplier() {
        let mut s = yarn(4.0, 1024);
        s.yarn.ext_factor = 0.5;
        s.attn_factor = 0.9;
        assert_matches(&s, 64, 10000.0, None);
        s.yarn.log_mul = 0.1;
        let want = (1.0 + 0.1 * 4f32.ln()) / (1.0 + 0.01 * 4f32.ln()) * 0.9;
        assert!((s.mscale() - want).abs() < 1e-5, "{} vs {want}", s.mscale());
    }

    #[test]
    fn linear_and_factors_and_longrope() {
        let ff: Vec<f32> = (0..24).map(|i| 1.0 + 0.37 * i as f32).collect();
        let linear = RopeScaling { kind: ScalingType::Linear, freq_scale: 0.25, ..RopeScaling::none(2048) };
        assert_matches(&linear, 48, 10000.0, None);
        assert_matches(&linear, 48, 10000.0, Some(&ff));
        let long = RopeScaling { kind: ScalingType::Linear, attn_factor: 1.17, factors: FactorTensors::LongShort, ..RopeScaling::none(256) };
        assert_matches(&long, 48, 10000.0, Some(&ff));
        assert_eq!(long.divisors(48, 10000.0, Some(&ff)), ff);
        assert_eq!(long.mscale(), 1.17);
        assert_eq!(long.factor_tensor(256), Some("rope_factors_short.weight"));
        assert_eq!(long.factor_tensor(257), Some("rope_factors_long.weight"));
        assert_eq!(long.variant(256).name(), "longrope-short");
        assert_eq!(long.variant(2048).name(), "longrope-long");
        assert_eq!(RopeScaling::none(1).variant(1).name(), "none");
        assert_eq!(linear.variant(1).name(), "linear");
        assert_eq!(yarn(2.0, 8).variant(1).name(), "yarn");
    }

    fn header(kvs: &[(&str, crate::gguf::Value)]) -> GgufFile {
        let mut w = crate::gguf::writer::Writer::new();
        for (k, v) in kvs {
            w = w.kv(k, v.clone());
        }
        let bytes = w.build();
        match crate::gguf::parse_header(&bytes, bytes.len() as u64).unwrap() {
            crate::gguf::Parsed::Complete(f) => f,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reads_scaling_keys_and_refuses_unknown_types() {
        use crate::gguf::Value::{String as S, F32, U32};
        let f = header(&[
            ("qwen3.rope.scaling.type", S("yarn".into())),
            ("qwen3.rope.scaling.factor", F32(4.0)),
            ("qwen3.rope.scaling.original_context_length", U32(32768)),
            ("qwen3.rope.scaling.yarn_beta_fast", F32(16.0)),
        ]);
        let s = RopeScaling::from_gguf(&f, "qwen3", 131072).unwrap();
        assert_eq!((s.kind, s.freq_scale, s.original_context, s.yarn.beta_fast, s.yarn.beta_slow), (ScalingType::Yarn, 0.25, 32768, 16.0, 1.0));
        assert_eq!(s.variant(4096), RopeVariant::Yarn);
        // A factor without a type is linear (llama.cpp's default); no keys at all is no scaling.
        let s = RopeScaling::from_gguf(&header(&[("llama.rope.scaling.factor", F32(8.0))]), "llama", 8192).unwrap();
        assert_eq!((s.kind, s.freq_scale, s.variant(10)), (ScalingType::Linear, 0.125, RopeVariant::Linear));
        let s = RopeScaling::from_gguf(&header(&[]), "llama", 8192).unwrap();
        assert_eq!((s.variant(10), s.mscale(), s.original_context), (RopeVariant::None, 1.0, 8192));
        // `none` ignores the factor.
        let f = header(&[("llama.rope.scaling.type", S("none".into())), ("llama.rope.scaling.factor", F32(8.0))]);
        assert_eq!(RopeScaling::from_gguf(&f, "llama", 8192).unwrap().freq_scale, 1.0);
        // Anything else is refused by name.
        for bad in ["dynamic", "su", "llama3"] {
            let f = header(&[("llama.rope.scaling.type", S(bad.into())), ("llama.rope.scaling.factor", F32(2.0))]);
            let e = RopeScaling::from_gguf(&f, "llama", 8192).unwrap_err();
            assert!(matches!(e, Error::Unsupported(_)) && e.to_string().contains(&format!("'{bad}'")), "{e}");
        }
        let f = header(&[("llama.rope.scaling.factor", F32(-1.0))]);
        assert!(matches!(RopeScaling::from_gguf(&f, "llama", 8192), Err(Error::Unsupported(_))));
    }
}
