//! Synthetic models for benchmarks: a model of any shape, made of random but valid blocks of one
//! quantization type, served as a [`ByteSource`] so that it loads through the same streaming path
//! as a real file. Only the header is held in memory; tensor bytes are generated per read from a
//! fixed pattern of random blocks, so an 8B model needs no more CPU memory than a 135M one.
//!
//! A spec is `key=value` pairs separated by commas, e.g. the Llama 3.2 1B shape:
//! `arch=llama,layers=16,d=2048,ffn=8192,heads=32,kv_heads=8,vocab=128256,type=q4_k`.
//! Keys: `arch` (llama | qwen2), `layers`, `d`, `ffn`, `heads`, `kv_heads` (default `heads`),
//! `vocab`, `type` (the matrices' type), `out_type` (the embedding and output matrix; default
//! `type`), `head_dim` (default d / heads), `context` (the trained context; default 4096).

use crate::error::{Error, Result};
use crate::gguf::writer::Writer;
use crate::gguf::Value;
use crate::loader::ByteSource;
use crate::quant::testdata::random_blocks;
use crate::quant::GgmlType;

/// Blocks in the repeating random pattern of each type (a few hundred KiB).
const PATTERN_BLOCKS: u64 = 4099;

/// A parsed synthetic model spec.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntheticSpec {
    pub arch: String,
    pub layers: u32,
    pub d_model: u32,
    pub ffn_dim: u32,
    pub heads: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    pub vocab: u32,
    pub ty: GgmlType,
    pub out_ty: GgmlType,
    pub context: u32,
}

fn bad(message: String) -> Error {
    Error::BadRequest(format!("synthetic model spec: {message}"))
}

fn parse_type(name: &str) -> Result<GgmlType> {
    GgmlType::all()
        .find(|t| t.name().eq_ignore_ascii_case(name))
        .ok_or_else(|| bad(format!("unknown tensor type {name:?} (e.g. q4_0, q4_1, q8_0, q4_k, q6_k, f16)")))
}

impl SyntheticSpec {
    /// Parses `key=value,key=value,...` (see the module docs).
    pub fn parse(spec: &str) -> Result<SyntheticSpec> {
        let mut values = std::collections::HashMap::new();
        for pair in spec.split(',').filter(|p| !p.trim().is_empty()) {
            let (key, value) = pair.split_once('=').ok_or_else(|| bad(format!("{pair:?} is not key=value")))?;
            if values.insert(key.trim(), value.trim()).is_some() {
                return Err(bad(format!("{key:?} is given twice")));
            }
        }
        const KEYS: &[&str] = &["arch", "layers", "d", "ffn", "heads", "kv_heads", "head_dim", "vocab", "type", "out_type", "context"];
        if let Some(unknown) = values.keys().find(|k| !KEYS.contains(k)) {
            return Err(bad(format!("unknown key {unknown:?} (keys: {})", KEYS.join(", "))));
        }
        let number = |key: &str, default: Option<u32>| -> Result<u32> {
            match values.get(key) {
                Some(v) => v.parse::<u32>().ok().filter(|&n| n > 0 && n <= 1 << 20).ok_or_else(|| bad(format!("{key}={v} is not a count in 1..=1048576"))),
                None => default.ok_or_else(|| bad(format!("{key}= is missing"))),
            }
        };
        let arch = values.get("arch").copied().unwrap_or("llama").to_string();
        if !matches!(arch.as_str(), "llama" | "qwen2") {
            return Err(bad(format!("arch={arch} (synthetic models: llama, qwen2)")));
        }
        let d_model = number("d", None)?;
        let heads = number("heads", None)?;
        let ty = parse_type(values.get("type").copied().unwrap_or("q4_k"))?;
        let spec = SyntheticSpec {
            layers: number("layers", None)?,
            ffn_dim: number("ffn", None)?,
            kv_heads: number("kv_heads", Some(heads))?,
            head_dim: number("head_dim", Some(d_model / heads.max(1)))?,
            vocab: number("vocab", None)?,
            out_ty: values.get("out_type").map_or(Ok(ty), |t| parse_type(t))?,
            context: number("context", Some(4096))?,
            arch,
            d_model,
            heads,
            ty,
        };
        if !spec.heads.is_multiple_of(spec.kv_heads) {
            return Err(bad(format!("heads={} is not a multiple of kv_heads={}", spec.heads, spec.kv_heads)));
        }
        for (_, dims, ty) in spec.tensors() {
            if ty.row_bytes(dims[0]).is_none() {
                return Err(bad(format!("rows of {} elements are not whole {} blocks of {}", dims[0], ty.name(), ty.block_elems())));
            }
        }
        Ok(spec)
    }

    /// Every tensor: (GGUF name, dims [k, rows] or [n], type).
    fn tensors(&self) -> Vec<(String, Vec<u64>, GgmlType)> {
        let (d, f, v) = (self.d_model as u64, self.ffn_dim as u64, self.vocab as u64);
        let (q, kv) = ((self.heads * self.head_dim) as u64, (self.kv_heads * self.head_dim) as u64);
        let mut t = vec![("token_embd.weight".to_string(), vec![d, v], self.out_ty), ("output_norm.weight".into(), vec![d], GgmlType::F32)];
        for l in 0..self.layers {
            let mut layer = vec![
                ("attn_norm.weight", vec![d], GgmlType::F32),
                ("attn_q.weight", vec![d, q], self.ty),
                ("attn_k.weight", vec![d, kv], self.ty),
                ("attn_v.weight", vec![d, kv], self.ty),
                ("attn_output.weight", vec![q, d], self.ty),
                ("ffn_norm.weight", vec![d], GgmlType::F32),
                ("ffn_gate.weight", vec![d, f], self.ty),
                ("ffn_up.weight", vec![d, f], self.ty),
                ("ffn_down.weight", vec![f, d], self.ty),
            ];
            if self.arch == "qwen2" {
                layer.extend([("attn_q.bias", vec![q], GgmlType::F32), ("attn_k.bias", vec![kv], GgmlType::F32), ("attn_v.bias", vec![kv], GgmlType::F32)]);
            }
            t.extend(layer.into_iter().map(|(name, dims, ty)| (format!("blk.{l}.{name}"), dims, ty)));
        }
        t.push(("output.weight".into(), vec![d, v], self.out_ty));
        t
    }
}

/// One tensor's bytes in the synthetic file.
struct Span {
    /// Absolute offset of its first byte.
    start: u64,
    len: u64,
    ty: GgmlType,
}

/// A synthetic model file: the GGUF header, then tensor data generated on every read.
pub struct SyntheticSource {
    header: Vec<u8>,
    spans: Vec<Span>,
    len: u64,
    /// The repeating random pattern of each type used: (type, bytes).
    patterns: Vec<(GgmlType, Vec<u8>)>,
}

impl SyntheticSource {
    pub fn new(spec: &SyntheticSpec) -> Result<SyntheticSource> {
        let arch = spec.arch.as_str();
        let tokens: Vec<Value> = (0..spec.vocab).map(|i| Value::String(format!("t{i}"))).collect();
        let key = |k: &str| format!("{arch}.{k}");
        let mut w = Writer::new()
            .kv("general.architecture", Value::String(arch.into()))
            .kv("general.name", Value::String("synthetic".into()))
            .kv(&key("block_count"), Value::U32(spec.layers))
            .kv(&key("embedding_length"), Value::U32(spec.d_model))
            .kv(&key("feed_forward_length"), Value::U32(spec.ffn_dim))
            .kv(&key("attention.head_count"), Value::U32(spec.heads))
            .kv(&key("attention.head_count_kv"), Value::U32(spec.kv_heads))
            .kv(&key("attention.key_length"), Value::U32(spec.head_dim))
            .kv(&key("attention.value_length"), Value::U32(spec.head_dim))
            .kv(&key("rope.dimension_count"), Value::U32(spec.head_dim))
            .kv(&key("context_length"), Value::U32(spec.context))
            .kv(&key("attention.layer_norm_rms_epsilon"), Value::F32(1e-5))
            .kv(&key("rope.freq_base"), Value::F32(10000.0))
            .kv("tokenizer.ggml.model", Value::String("gpt2".into()))
            .kv("tokenizer.ggml.tokens", Value::Array(tokens))
            .kv("tokenizer.ggml.eos_token_id", Value::U32(0));
        let tensors = spec.tensors();
        for (name, dims, ty) in &tensors {
            w = w.tensor(name, dims, *ty, Vec::new());
        }
        // Laid out with empty data, then every tensor's relative offset patched in.
        let built = w.build_layout();
        let mut header = built.bytes;
        let align = crate::gguf::DEFAULT_ALIGNMENT;
        let (mut spans, mut rel) = (Vec::new(), 0u64);
        for ((_, dims, ty), &field) in tensors.iter().zip(&built.tensor_offset_field_at) {
            header[field..field + 8].copy_from_slice(&rel.to_le_bytes());
            let len = ty.row_bytes(dims[0]).expect("checked by parse") * dims.get(1).copied().unwrap_or(1);
            spans.push(Span { start: built.data_offset as u64 + rel, len, ty: *ty });
            rel = (rel + len).div_ceil(align) * align;
        }
        header.truncate(built.data_offset);
        let mut patterns: Vec<(GgmlType, Vec<u8>)> = Vec::new();
        for (_, _, ty) in &tensors {
            if !patterns.iter().any(|(t, _)| t == ty) {
                let mut blocks = random_blocks(*ty, PATTERN_BLOCKS as usize, 0x5eed);
                if *ty == GgmlType::F32 {
                    // Norm weights near 1, biases small: activations stay in range.
                    for v in blocks.chunks_exact_mut(4) {
                        let x = f32::from_le_bytes(v.try_into().unwrap());
                        v.copy_from_slice(&(1.0 + 0.1 * x).to_le_bytes());
                    }
                }
                patterns.push((*ty, blocks));
            }
        }
        Ok(SyntheticSource { len: built.data_offset as u64 + rel, header, spans, patterns })
    }

    fn fill(&self, offset: u64, out: &mut [u8]) {
        let end = offset + out.len() as u64;
        let head = (self.header.len() as u64).min(end);
        if offset < head {
            out[..(head - offset) as usize].copy_from_slice(&self.header[offset as usize..head as usize]);
        }
        for span in &self.spans {
            let (lo, hi) = (span.start.max(offset), (span.start + span.len).min(end));
            if lo >= hi {
                continue;
            }
            let pattern = &self.patterns.iter().find(|(t, _)| *t == span.ty).expect("every type has a pattern").1;
            let plen = pattern.len() as u64;
            let mut at = lo;
            while at < hi {
                let p = (at - span.start) % plen;
                let n = (plen - p).min(hi - at);
                let dst = (at - offset) as usize;
                out[dst..dst + n as usize].copy_from_slice(&pattern[p as usize..(p + n) as usize]);
                at += n;
            }
        }
    }
}

impl ByteSource for SyntheticSource {
    fn len(&self) -> u64 {
        self.len
    }
    async fn read(&mut self, offset: u64, len: u64) -> Result<Vec<u8>> {
        let mut out = vec![0u8; len as usize];
        self.fill(offset, &mut out);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_are_named() {
        let s = SyntheticSpec::parse("arch=llama,layers=16,d=2048,ffn=8192,heads=32,kv_heads=8,vocab=128256,type=q4_k").unwrap();
        assert_eq!((s.layers, s.d_model, s.head_dim, s.kv_heads, s.ty, s.out_ty), (16, 2048, 64, 8, GgmlType::Q4_K, GgmlType::Q4_K));
        for (spec, needle) in [
            ("layers=1,d=576,ffn=1536,heads=9,vocab=100,type=q4_k", "576"),
            ("layers=1,d=64,ffn=64,heads=2,vocab=100,type=q9", "q9"),
            ("layers=1,d=64,ffn=64,heads=2,vocab=100,size=3", "size"),
            ("layers=1,d=64,ffn=64,heads=3,kv_heads=2,vocab=100", "kv_heads"),
            ("layers=0,d=64,ffn=64,heads=2,vocab=100", "layers"),
            ("layers=1,d=64,heads=2,vocab=100", "ffn"),
            ("arch=mamba,layers=1,d=64,ffn=64,heads=2,vocab=100", "mamba"),
        ] {
            let e = SyntheticSpec::parse(spec).unwrap_err().to_string();
            assert!(e.contains(needle) && e.is_ascii(), "{spec}: {e}");
        }
    }

    #[test]
    fn the_source_is_a_valid_gguf_of_the_spec() {
        let spec = SyntheticSpec::parse("arch=qwen2,layers=2,d=64,ffn=96,heads=4,kv_heads=2,vocab=300,type=q8_0,out_type=q4_1").unwrap();
        let mut source = SyntheticSource::new(&spec).unwrap();
        let bytes = pollster::block_on(source.read(0, source.len())).unwrap();
        let crate::gguf::Parsed::Complete(file) = crate::gguf::parse_header(&bytes, bytes.len() as u64).unwrap() else {
            panic!("header incomplete")
        };
        let config = crate::model::Config::from_gguf(&file).unwrap();
        assert_eq!((config.n_layers, config.d_model, config.ffn_dim, config.vocab_size), (2, 64, 96, 300));
        let q = file.tensor("blk.1.attn_q.weight").unwrap();
        let at = q.offset as usize;
        let n = GgmlType::Q8_0.row_bytes(64).unwrap() as usize * 64;
        // Every block's f16 scale is finite: the data is valid Q8_0.
        for block in bytes[at..at + n].chunks_exact(34) {
            assert!(half::f16::from_le_bytes([block[0], block[1]]).to_f32().is_finite());
        }
        // A read in the middle matches the whole.
        let middle = pollster::block_on(source.read(at as u64 - 10, 100)).unwrap();
        assert_eq!(middle, bytes[at - 10..at + 90]);
    }
}
