//! Building a [`Tokenizer`] from GGUF metadata (`tokenizer.ggml.*`).

use super::{Tokenizer, Vocab};
use crate::error::{quote, Error, Result};
use crate::gguf::{GgufFile, Value};

/// Vocabularies larger than this are rejected (the largest in use are ~260k).
const MAX_VOCAB: usize = 1 << 21;

impl Tokenizer {
    /// Reads the vocabulary, merges, scores, token types, special ids and flags from the
    /// file's metadata. For `llama` (SentencePiece) vocabularies, absent keys take llama.cpp's
    /// defaults: `add_space_prefix` and `add_bos_token` true, BOS 1, EOS 2, UNK 0.
    pub fn from_gguf(file: &GgufFile) -> Result<Tokenizer> {
        let strings = |key: &str| -> Result<Vec<String>> {
            match file.get_array(key)? {
                None => Ok(Vec::new()),
                Some(items) => items
                    .iter()
                    .map(|v| v.as_str().map(str::to_string).ok_or_else(|| bad(key, v)))
                    .collect(),
            }
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        if tokens.is_empty() {
            return Err(Error::Unsupported("the file has no tokenizer.ggml.tokens vocabulary".into()));
        }
        if tokens.len() > MAX_VOCAB {
            return Err(Error::Unsupported(format!("vocabulary of {} tokens is too large", tokens.len())));
        }
        let token_types = match file.get_array("tokenizer.ggml.token_type")? {
            None => Vec::new(),
            Some(items) => items
                .iter()
                .map(|v| v.as_i64().map(|t| t as i32).ok_or_else(|| bad("tokenizer.ggml.token_type", v)))
                .collect::<Result<_>>()?,
        };
        let scores = match file.get_array("tokenizer.ggml.scores")? {
            None => Vec::new(),
            Some(items) => items
                .iter()
                .map(|v| v.as_f64().map(|s| s as f32).ok_or_else(|| bad("tokenizer.ggml.scores", v)))
                .collect::<Result<_>>()?,
        };
        let id = |key: &str| -> Result<Option<u32>> {
            Ok(file.get_u64(key)?.filter(|&v| (v as usize) < tokens.len()).map(|v| v as u32))
        };
        let model = file.get_str("tokenizer.ggml.model")?.unwrap_or("gpt2").to_string();
        // llama.cpp's defaults for SentencePiece (`llama`) vocabularies when a key is absent:
        // BOS 1, EOS 2, UNK 0, add BOS, add a space prefix. BPE keeps "absent = none/false".
        let spm = model == "llama";
        let default_id = |key: &str, spm_default: u32| -> Result<Option<u32>> {
            Ok(match id(key)? {
                Some(v) => Some(v),
                None if spm && file.get_u64(key)?.is_none() && (spm_default as usize) < tokens.len() => {
                    Some(spm_default)
                }
                None => None,
            })
        };
        let pre = file.get_str("tokenizer.ggml.pre")?.map(str::to_string);
        // llama.cpp: SPM adds BOS by default, and so do some BPE pre-tokenizers (LLaMA 3, Tekken).
        let bos_default = spm || (model == "gpt2" && pre.as_deref().is_some_and(super::PreTokenizerKind::adds_bos_by_default));
        let vocab = Vocab {
            pre,
            merges: strings("tokenizer.ggml.merges")?,
            bos_id: default_id("tokenizer.ggml.bos_token_id", 1)?,
            eos_id: default_id("tokenizer.ggml.eos_token_id", 2)?,
            unk_id: default_id("tokenizer.ggml.unknown_token_id", 0)?,
            add_bos: file.get_bool("tokenizer.ggml.add_bos_token")?.unwrap_or(bos_default),
            add_space_prefix: file.get_bool("tokenizer.ggml.add_space_prefix")?.unwrap_or(spm),
            tokens,
            token_types,
            scores,
            model,
        };
        Tokenizer::new(vocab).map_err(|e| Error::Unsupported(e.to_string()))
    }
}

/// Token ids that end generation: EOS, EOT and EOM from the metadata, when present.
pub fn end_of_generation_ids(file: &GgufFile) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
        if let Some(v) = file.get_u64(key)? {
            if let Ok(id) = u32::try_from(v) {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
    }
    Ok(ids)
}

fn bad(key: &str, v: &Value) -> Error {
    Error::Unsupported(format!("metadata {} holds a {} where a different type was expected", quote(key), v.type_name()))
}
