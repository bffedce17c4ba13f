//! The native CLI on llama.cpp `gguf-split` shards: a zoo model is cut into three shards the way
//! `gguf-split` writes them (each a GGUF of its own holding a run of the tensors, with `split.no` /
//! `split.count` / `split.tensors.count`; the first keeps all the metadata), then `score` and
//! `inspect` on the first shard alone (siblings found by name) and on the explicit list of paths
//! must give exactly what the original file gives.

mod common;

use std::path::{Path, PathBuf};

use common::{cli_stdout, read_gguf_header, run_cli, zoo_path};
use ferrolm::gguf::writer::Writer;
use ferrolm::gguf::Value;

/// Writes `source` as `count` shards `DIR/tiny-0000k-of-0000N.gguf`; returns their paths.
fn write_shards(source: &Path, dir: &Path, count: usize) -> Vec<PathBuf> {
    let header = read_gguf_header(source);
    let bytes = std::fs::read(source).unwrap();
    let per_shard = header.tensors.len().div_ceil(count);
    let mut paths = Vec::new();
    for (k, tensors) in header.tensors.chunks(per_shard).enumerate() {
        let mut w = Writer::new();
        if k == 0 {
            for (key, value) in &header.metadata {
                w = w.kv(key, value.clone());
            }
        }
        w = w
            .kv("split.no", Value::U16(k as u16))
            .kv("split.count", Value::U16(count as u16))
            .kv("split.tensors.count", Value::I32(header.tensors.len() as i32));
        for t in tensors {
            let data = bytes[t.offset as usize..(t.offset + t.n_bytes) as usize].to_vec();
            w = w.tensor(&t.name, &t.dims, t.ty, data);
        }
        let path = dir.join(format!("tiny-{:05}-of-{count:05}.gguf", k + 1));
        std::fs::write(&path, w.build()).unwrap();
        paths.push(path);
    }
    assert_eq!(paths.len(), count);
    paths
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrolm-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn split_models_open_natively() {
    let original = zoo_path("tiny-phi4mini-q8_0.gguf");
    let dir = scratch_dir("shards");
    let shards = write_shards(&original, &dir, 3);
    let first = shards[0].to_str().unwrap();
    let all: Vec<&str> = shards.iter().map(|p| p.to_str().unwrap()).collect();
    let score = |model: &[&str]| {
        let mut args = vec!["score"];
        args.extend_from_slice(model);
        args.extend(["--tokens", "1,157,471,349,181,70,393,201", "--context", "256", "--top-k", "5"]);
        cli_stdout(&run_cli(&args))
    };
    let want = score(&[original.to_str().unwrap()]);
    assert_eq!(want.lines().count(), 8);
    assert_eq!(score(&[first]), want, "first shard, siblings found by name");
    assert_eq!(score(&all), want, "explicit list of shards");

    // inspect sees the merged model: every tensor, the original metadata.
    let inspect = |model: &[&str]| -> serde_json::Value {
        let mut args = vec!["inspect"];
        args.extend_from_slice(model);
        serde_json::from_str(&cli_stdout(&run_cli(&args))).unwrap()
    };
    let (merged, plain) = (inspect(&[first]), inspect(&[original.to_str().unwrap()]));
    assert_eq!(merged["tensor_count"], plain["tensor_count"]);
    assert_eq!(merged["quant_types"], plain["quant_types"]);
    assert_eq!(merged["rope"], plain["rope"]);
    assert_eq!(merged["metadata"]["split.count"], 3);

    // A missing sibling, a shard alone in a list, shards out of order: exit 2, one clear line.
    let bad = |args: &[&str], expect: &str| {
        let out = run_cli(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(expect) && err.lines().count() == 1, "{args:?}: {err}");
    };
    bad(&["inspect", all[0], all[2], all[1]], "part 2 is not shard 2 of 3");
    bad(&["inspect", all[0], all[1]], "or all 3 shard files to the CLI");
    // Any shard's name brings the others along.
    assert_eq!(inspect(&[all[1]])["tensor_count"], plain["tensor_count"]);
    std::fs::remove_file(&shards[2]).unwrap();
    bad(&["inspect", first], "tiny-00003-of-00003.gguf' does not exist");
    let _ = std::fs::remove_dir_all(&dir);
}
