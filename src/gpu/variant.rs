//! Variants of the matrix kernels (`matvec`, `ffn_in`, `attn_in`) and the choice of one per
//! matrix shape.
//!
//! A variant fixes how a workgroup's threads (64 in matvec and ffn_in) cover the rows and where
//! they read the input row:
//! - `row_threads` G: threads sharing one row (1 on CPU drivers, where barriers cost; many on
//!   GPUs, whose lanes then read consecutive words of the row and reduce in workgroup memory);
//! - `rows_per_thread`: passes over 64 / G rows one workgroup makes, sharing its set-up; 4 in
//!   decode means four consecutive rows taken together by each group of G lanes instead, every
//!   load of the input shared by the four rows (`row_dot4`; ROWS4);
//! - `input`: the input row read from storage, staged once per workgroup in workgroup memory, or
//!   bound as a uniform buffer (decode only, rows up to the uniform binding limit).
//!
//! Which variant runs a shape is decided by the autotuner (`model::tune`) on the user's device
//! and cached per adapter (see [`KernelChoices`]); until then the adapter's defaults
//! ([`super::Tuning`]) apply. A variant can also be forced for every shape.

use std::collections::BTreeMap;
use std::fmt;

use crate::quant::GgmlType;

/// Where a matrix kernel reads its input row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum InputPath {
    /// Read from the storage buffer for every row.
    Storage,
    /// Staged (normalised) once per workgroup in workgroup memory (decode).
    Workgroup,
    /// The row bound as a uniform buffer (decode).
    Uniform,
}

/// One variant of the matrix kernels. Its name (`Display`, [`MatrixVariant::parse`]) is
/// `t{row_threads}r{rows_per_thread}-{storage|workgroup|uniform}[-sg]`, e.g. `t1r4-uniform` or
/// `t8r1-uniform-sg`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MatrixVariant {
    pub row_threads: u32,
    pub rows_per_thread: u32,
    pub input: InputPath,
    /// The lanes of a row add up their sums with subgroup shuffles instead of workgroup memory
    /// (where the adapter has subgroups at least `row_threads` wide; `-sg`).
    pub subgroup: bool,
}

impl fmt::Display for MatrixVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let input = match self.input {
            InputPath::Storage => "storage",
            InputPath::Workgroup => "workgroup",
            InputPath::Uniform => "uniform",
        };
        write!(f, "t{}r{}-{input}{}", self.row_threads, self.rows_per_thread, if self.subgroup { "-sg" } else { "" })
    }
}

impl MatrixVariant {
    /// Parses a variant name (see the type's docs); the error says what is accepted.
    pub fn parse(name: &str) -> Result<MatrixVariant, String> {
        let bad = || format!("kernel variant {name:?}: expected t{{G}}r{{R}}-{{storage|workgroup|uniform}}[-sg], G a power of two up to 64, R 1 to 8 (e.g. t1r4-uniform, t16r1-storage, t8r1-uniform-sg)");
        let (rest, subgroup) = match name.strip_suffix("-sg") {
            Some(rest) => (rest, true),
            None => (name, false),
        };
        let (layout, input) = rest.split_once('-').ok_or_else(bad)?;
        let (g, r) = layout.strip_prefix('t').and_then(|l| l.split_once('r')).ok_or_else(bad)?;
        let variant = MatrixVariant {
            row_threads: g.parse().map_err(|_| bad())?,
            rows_per_thread: r.parse().map_err(|_| bad())?,
            input: match input {
                "storage" => InputPath::Storage,
                "workgroup" => InputPath::Workgroup,
                "uniform" => InputPath::Uniform,
                _ => return Err(bad()),
            },
            subgroup,
        };
        let g_ok = variant.row_threads.is_power_of_two() && variant.row_threads <= 64;
        if !g_ok || !(1..=8).contains(&variant.rows_per_thread) {
            return Err(bad());
        }
        Ok(variant)
    }
}

/// The matrix kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MatrixKernel {
    Matvec,
    FfnIn,
    AttnIn,
}

/// What a variant is chosen for: a kernel, the weight type, the matrix shape (rows it computes,
/// k inputs) and the token tile (1 for decode, 4 or 8 for prefill chunks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MatrixShape {
    pub kernel: MatrixKernel,
    pub ty: GgmlType,
    pub rows: u32,
    pub k: u32,
    pub tokens: u32,
}

impl fmt::Display for MatrixShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kernel = match self.kernel {
            MatrixKernel::Matvec => "matvec",
            MatrixKernel::FfnIn => "ffn_in",
            MatrixKernel::AttnIn => "attn_in",
        };
        write!(f, "{kernel} {} {}x{} t{}", self.ty.name(), self.rows, self.k, self.tokens)
    }
}

/// The variant chosen per shape, the time the choice took, and a forced variant if any.
#[derive(Clone, Debug, Default)]
pub struct KernelChoices {
    pub chosen: BTreeMap<MatrixShape, MatrixVariant>,
    /// Runs every shape with this variant (where it applies) instead of the chosen ones.
    pub forced: Option<MatrixVariant>,
}

impl KernelChoices {
    /// `{ "matvec Q4_1 576x1536 t1": "t1r4-uniform", ... }`.
    pub fn to_json(&self) -> serde_json::Value {
        self.chosen.iter().map(|(s, v)| (s.to_string(), serde_json::Value::String(v.to_string()))).collect::<serde_json::Map<_, _>>().into()
    }

    /// Reads [`KernelChoices::to_json`]'s output; entries that do not parse are skipped (a cache
    /// written by another version).
    pub fn from_json(value: &serde_json::Value) -> BTreeMap<MatrixShape, MatrixVariant> {
        let Some(map) = value.as_object() else { return BTreeMap::new() };
        map.iter().filter_map(|(shape, variant)| Some((parse_shape(shape)?, MatrixVariant::parse(variant.as_str()?).ok()?))).collect()
    }
}

fn parse_shape(text: &str) -> Option<MatrixShape> {
    let mut parts = text.split(' ');
    let kernel = match parts.next()? {
        "matvec" => MatrixKernel::Matvec,
        "ffn_in" => MatrixKernel::FfnIn,
        "attn_in" => MatrixKernel::AttnIn,
        _ => return None,
    };
    let ty_name = parts.next()?;
    let ty = GgmlType::all().find(|t| t.name() == ty_name)?;
    let (rows, k) = parts.next()?.split_once('x')?;
    let tokens = parts.next()?.strip_prefix('t')?.parse().ok()?;
    parts.next().is_none().then_some(())?;
    Some(MatrixShape { kernel, ty, rows: rows.parse().ok()?, k: k.parse().ok()?, tokens })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_names_are_explained() {
        for name in ["t1r4-uniform", "t16r1-storage", "t64r8-workgroup", "t8r1-uniform-sg"] {
            assert_eq!(MatrixVariant::parse(name).unwrap().to_string(), name);
        }
        for name in ["t3r1-storage", "t1r0-uniform", "t1r4", "x1r4-uniform", "t1r4-shared", "t128r1-storage", "t8r1-sg-uniform"] {
            assert!(MatrixVariant::parse(name).unwrap_err().contains("expected t{G}r{R}"), "{name}");
        }
        let mut choices = KernelChoices::default();
        let shape = MatrixShape { kernel: MatrixKernel::FfnIn, ty: GgmlType::Q4_K, rows: 8192, k: 2048, tokens: 1 };
        choices.chosen.insert(shape, MatrixVariant::parse("t1r2-uniform").unwrap());
        let json = choices.to_json();
        assert_eq!(json, serde_json::json!({ "ffn_in Q4_K 8192x2048 t1": "t1r2-uniform" }));
        assert_eq!(KernelChoices::from_json(&json), choices.chosen);
        assert!(KernelChoices::from_json(&serde_json::json!({ "matvec Q9 1x2 t1": "t1r1-storage", "x": 3 })).is_empty());
    }
}
