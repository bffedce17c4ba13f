//! GGUF reader: round trips, prefix parsing, corruptions, and the real model.

use ferrolm::gguf::writer::{Built, Writer};
use ferrolm::gguf::{parse_header, GgufError, GgufFile, Parsed, Value};
use ferrolm::quant::testdata::{random_blocks, Rng};
use ferrolm::quant::GgmlType;

fn sample() -> Writer {
    let nested = Value::Array(vec![
        Value::Array(vec![Value::I32(-1), Value::I32(2)]),
        Value::Array(vec![]),
        Value::Array(vec![Value::I32(7)]),
    ]);
    Writer::new()
        .kv("general.architecture", Value::String("llama".into()))
        .alignment(64)
        .kv("t.u8", Value::U8(200))
        .kv("t.i8", Value::I8(-100))
        .kv("t.u16", Value::U16(65000))
        .kv("t.i16", Value::I16(-30000))
        .kv("t.u32", Value::U32(4_000_000_000))
        .kv("t.i32", Value::I32(-2_000_000_000))
        .kv("t.u64", Value::U64(u64::MAX))
        .kv("t.i64", Value::I64(i64::MIN))
        .kv("t.f32", Value::F32(1.5e-5))
        .kv("t.f64", Value::F64(-2.25))
        .kv("t.bool", Value::Bool(true))
        .kv("t.str", Value::String("héllo ✓".into()))
        .kv("t.strs", Value::Array(vec![Value::String("a".into()), Value::String("".into())]))
        .kv("t.f32s", Value::Array((0..10).map(|i| Value::F32(i as f32)).collect()))
        .kv("t.nested", nested)
        .tensor("token_embd.weight", &[64, 3], GgmlType::Q4_0, random_blocks(GgmlType::Q4_0, 6, 1))
        .tensor("norm.weight", &[5], GgmlType::F32, random_blocks(GgmlType::F32, 5, 2))
        .tensor("blk.0.ffn.weight", &[256, 2, 1, 1], GgmlType::Q4_K, random_blocks(GgmlType::Q4_K, 2, 3))
        .tensor("out.weight", &[32, 2], GgmlType::Q8_0, random_blocks(GgmlType::Q8_0, 2, 4))
}

fn complete(bytes: &[u8]) -> GgufFile {
    match parse_header(bytes, bytes.len() as u64) {
        Ok(Parsed::Complete(f)) => f,
        other => panic!("expected Complete, got {other:?}"),
    }
}

fn err(bytes: &[u8]) -> GgufError {
    match parse_header(bytes, bytes.len() as u64) {
        Err(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn patch_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// End of the last tensor info = bytes a parser must see.
fn header_end(l: &Built) -> usize {
    l.tensor_offset_field_at.last().unwrap() + 8
}

#[test]
fn round_trip_all_value_types() {
    let w = sample();
    let l = w.build_layout();
    let f = complete(&l.bytes);
    assert_eq!(f.version, 3);
    assert_eq!(f.metadata, w.metadata);
    assert_eq!(f.alignment, 64);
    assert_eq!(f.data_offset, l.data_offset as u64);
    assert_eq!(f.data_offset % 64, 0);
    assert_eq!(f.file_len, l.bytes.len() as u64);
    assert_eq!(f.tensors.len(), 4);
    for ((t, wt), at) in f.tensors.iter().zip(&w.tensors).zip(&l.tensor_data_at) {
        assert_eq!(t.name, wt.name);
        assert_eq!(t.dims, wt.dims);
        assert_eq!(t.ty.id(), wt.type_id);
        assert_eq!(t.offset, *at as u64);
        assert_eq!(t.n_bytes, wt.data.len() as u64);
        assert_eq!(t.n_elements, wt.dims.iter().product::<u64>());
        let start = t.offset as usize;
        assert_eq!(&l.bytes[start..start + t.n_bytes as usize], &wt.data[..]);
    }
    assert_eq!(f.tensor("norm.weight").unwrap().ty, GgmlType::F32);
    assert_eq!(f.tensor("blk.0.ffn.weight").unwrap().n_bytes, 288);
    assert!(f.tensor("nope").is_none());

    // Accessors.
    assert_eq!(f.architecture(), Some("llama"));
    assert_eq!(f.get_str("t.str").unwrap(), Some("héllo ✓"));
    assert_eq!(f.get_u64("t.u8").unwrap(), Some(200));
    assert_eq!(f.get_u64("general.alignment").unwrap(), Some(64));
    assert_eq!(f.get_u64("t.u64").unwrap(), Some(u64::MAX));
    assert_eq!(f.get_u64("missing").unwrap(), None);
    assert!(matches!(f.get_u64("t.i8"), Err(GgufError::WrongType { .. })));
    assert!(matches!(f.get_u64("t.str"), Err(GgufError::WrongType { .. })));
    assert_eq!(f.get_f32("t.f64").unwrap(), Some(-2.25));
    assert_eq!(f.get_f32("t.i16").unwrap(), Some(-30000.0));
    assert_eq!(f.get_bool("t.bool").unwrap(), Some(true));
    let e = f.get_str("t.u32").unwrap_err();
    assert!(matches!(&e, GgufError::WrongType { key, .. } if key == "t.u32"));
    assert_eq!(e.to_string(), "metadata 't.u32' has type u32 (4000000000), expected string");
    assert_eq!(f.get_array("t.nested").unwrap().unwrap().len(), 3);
    assert_eq!(f.get("t.i64").and_then(Value::as_i64), Some(i64::MIN));
    assert_eq!(f.get("t.i64").and_then(Value::as_u64), None);

    // JSON.
    let j = f.get("t.f32s").unwrap().to_json(Some(4));
    assert_eq!(j, serde_json::json!({"type": "array", "elem_type": "f32", "len": 10, "elided": true}));
    assert_eq!(f.get("t.nested").unwrap().to_json(None), serde_json::json!([[-1, 2], [], [7]]));
    assert_eq!(f.get("t.u64").unwrap().to_json(None), serde_json::json!(u64::MAX));
    assert_eq!(Value::F32(f32::NAN).to_json(None), serde_json::json!("NaN"));
}

#[test]
fn default_alignment_and_no_tensors() {
    let b = Writer::new().kv("a", Value::U8(1)).build();
    let f = complete(&b);
    assert_eq!((f.alignment, f.tensors.len()), (32, 0));
    let b = Writer::new().build();
    assert!(complete(&b).metadata.is_empty());
    let b = Writer::new().tensor("x", &[3], GgmlType::F16, vec![0; 6]).build();
    assert_eq!(complete(&b).tensors[0].offset, 64);
}

#[test]
fn every_short_prefix_needs_more() {
    let l = sample().build_layout();
    let file_len = l.bytes.len() as u64;
    let end = header_end(&l);
    for n in 0..=l.bytes.len() {
        match parse_header(&l.bytes[..n], file_len).unwrap() {
            Parsed::NeedMore { needed_len } => {
                assert!(n < end, "prefix {n} >= header end {end} but NeedMore");
                assert!(needed_len > n as u64 && needed_len <= file_len);
            }
            Parsed::Complete(f) => {
                assert!(n >= end, "prefix {n} < header end {end} but Complete");
                assert_eq!(f.tensors.len(), 4);
            }
        }
    }
    // A loader growing the prefix as asked converges quickly.
    let mut n = 8usize;
    let mut rounds = 0;
    loop {
        rounds += 1;
        match parse_header(&l.bytes[..n], file_len).unwrap() {
            Parsed::NeedMore { needed_len } => n = needed_len as usize,
            Parsed::Complete(_) => break,
        }
    }
    assert!(rounds <= 10, "{rounds} rounds");
}

fn is_truncation(e: &GgufError) -> bool {
    matches!(
        e,
        GgufError::Truncated { .. }
            | GgufError::StringTooLong { .. }
            | GgufError::ArrayTooLong { .. }
            | GgufError::TooManyKv { .. }
            | GgufError::TooManyTensors { .. }
    )
}

#[test]
fn truncated_files() {
    let l = sample().build_layout();
    let end = header_end(&l);
    for i in 0..20 {
        let t = i * (end - 1) / 19; // 0 ..= end-1
        let e = err(&l.bytes[..t]);
        assert!(is_truncation(&e), "cut at {t}: {e:?}");
    }
    assert!(matches!(err(&l.bytes[..10]), GgufError::Truncated { what: "tensor count", .. }));
    // Inside tensor data: the header is complete, the data is not.
    let spans: Vec<(usize, usize)> = l.tensor_data_at.iter().zip(sample().tensors).map(|(&a, t)| (a, t.data.len())).collect();
    for i in 0..20 {
        let (start, len) = spans[i % spans.len()];
        let t = start + (i * 7919) % len;
        match err(&l.bytes[..t]) {
            GgufError::TensorOutOfBounds { file_len, .. } => assert_eq!(file_len, t as u64),
            e => panic!("cut at {t}: {e:?}"),
        }
    }
}

#[test]
fn bad_magic_and_versions() {
    let good = sample().build();
    let mut b = good.clone();
    b[..4].copy_from_slice(b"\x7fELF");
    let e = err(&b);
    assert_eq!(e, GgufError::BadMagic { found: 0x464c457f });
    assert_eq!(e.to_string(), "not a GGUF file: magic is 0x464c457f, expected 'GGUF' (0x46554747)");
    for v in [0u32, 1, 4, 99] {
        let mut b = good.clone();
        b[4..8].copy_from_slice(&v.to_le_bytes());
        assert_eq!(err(&b), GgufError::UnsupportedVersion { version: v });
    }
    let mut b = good.clone();
    b[4..8].copy_from_slice(&3u32.to_be_bytes());
    assert!(matches!(err(&b), GgufError::BigEndian { .. }));
    let mut b = good;
    b[4..8].copy_from_slice(&2u32.to_le_bytes());
    assert_eq!(complete(&b).version, 2);
}

#[test]
fn absurd_lengths_and_counts() {
    let l = sample().build_layout();
    let total = l.bytes.len() as u64;
    let mut b = l.bytes.clone();
    patch_u64(&mut b, l.kv_at[3], 1 << 63); // a key length
    let e = err(&b);
    assert!(matches!(e, GgufError::StringTooLong { len, .. } if len == 1 << 63), "{e:?}");
    assert!(e.to_string().contains("claims 9223372036854775808 bytes"));
    // Never NeedMore, even from a short prefix of a (claimed) huge file.
    let r = parse_header(&b[..l.kv_at[3] + 8], total);
    assert!(matches!(r, Err(GgufError::StringTooLong { .. })));

    let mut b = l.bytes.clone();
    patch_u64(&mut b, l.n_tensors_at, 1 << 40);
    assert!(matches!(err(&b), GgufError::TooManyTensors { count, .. } if count == 1 << 40));
    let mut b = l.bytes.clone();
    patch_u64(&mut b, l.n_tensors_at + 8, 1 << 40);
    assert!(matches!(err(&b), GgufError::TooManyKv { count, .. } if count == 1 << 40));
    // Also when the caller claims a huge file: NeedMore is fine, no allocation.
    let r = parse_header(&b[..64], 1 << 50);
    assert!(matches!(r, Ok(Parsed::NeedMore { .. })), "{r:?}");

    // t.f32s is metadata entry 15 (after architecture, alignment, 13 scalars... count it).
    let idx = sample().metadata.iter().position(|(k, _)| k == "t.f32s").unwrap();
    let mut b = l.bytes.clone();
    patch_u64(&mut b, l.kv_value_at[idx] + 4, 1 << 62);
    let e = err(&b);
    assert!(matches!(&e, GgufError::ArrayTooLong { key, len, .. } if key == "t.f32s" && *len == 1 << 62), "{e:?}");
    // A string-value length.
    let idx = sample().metadata.iter().position(|(k, _)| k == "t.str").unwrap();
    let mut b = l.bytes.clone();
    patch_u64(&mut b, l.kv_value_at[idx], u64::MAX);
    assert!(matches!(err(&b), GgufError::StringTooLong { .. }));
}

#[test]
fn metadata_corruptions() {
    let l = sample().build_layout();
    let idx = sample().metadata.iter().position(|(k, _)| k == "t.u8").unwrap();
    let mut b = l.bytes.clone();
    b[l.kv_value_at[idx] - 4..l.kv_value_at[idx]].copy_from_slice(&13u32.to_le_bytes());
    assert!(matches!(err(&b), GgufError::UnknownValueType { key, type_id: 13, .. } if key == "t.u8"));
    let mut b = l.bytes.clone();
    b[l.kv_at[idx] + 8] = 0xFF; // first byte of the key
    assert!(matches!(err(&b), GgufError::InvalidUtf8 { what: "metadata key", .. }));

    let dup = Writer::new().kv("k", Value::U8(1)).kv("k", Value::U8(2)).build();
    assert!(matches!(err(&dup), GgufError::DuplicateKey { key } if key == "k"));
    for a in [0u32, 48, 3] {
        let b = Writer::new().alignment(a).build();
        assert_eq!(err(&b), GgufError::BadAlignment { value: a as u64 });
    }
    let b = Writer::new().kv("general.alignment", Value::String("32".into())).build();
    assert!(matches!(err(&b), GgufError::WrongType { .. }));

    let nest = |depth: usize| {
        let mut v = Value::U8(1);
        for _ in 0..depth {
            v = Value::Array(vec![v]);
        }
        Writer::new().kv("deep", v).build()
    };
    assert!(complete(&nest(8)).get("deep").is_some());
    assert!(matches!(err(&nest(9)), GgufError::NestingTooDeep { .. }));
    // Invalid UTF-8 in a string value is decoded lossily.
    let l = Writer::new().kv("s", Value::String("ab".into())).build_layout();
    let mut b = l.bytes.clone();
    b[l.kv_value_at[0] + 8] = 0xFF;
    assert_eq!(complete(&b).get_str("s").unwrap(), Some("\u{FFFD}b"));
    assert!(matches!(parse_header(&b, 3), Err(GgufError::PrefixLongerThanFile { .. })));
}

fn one_tensor(dims: &[u64], type_id: u32, data: Vec<u8>) -> Vec<u8> {
    Writer::new().tensor_raw("w", dims, type_id, data).build()
}

#[test]
fn tensor_corruptions() {
    let l = sample().build_layout();
    let mut b = l.bytes.clone();
    patch_u64(&mut b, l.tensor_offset_field_at[1], 1 << 20);
    let e = err(&b);
    assert!(matches!(&e, GgufError::TensorOutOfBounds { tensor, .. } if tensor == "norm.weight"), "{e:?}");
    let mut b = l.bytes.clone();
    patch_u64(&mut b, l.tensor_offset_field_at[1], u64::MAX - 63);
    assert!(matches!(err(&b), GgufError::TensorOutOfBounds { .. }));
    let mut b = l.bytes.clone();
    patch_u64(&mut b, l.tensor_offset_field_at[2], 1);
    let e = err(&b);
    assert!(matches!(&e, GgufError::MisalignedTensor { offset: 1, alignment: 64, .. }), "{e:?}");

    let e = err(&one_tensor(&[4], 255, vec![0; 16]));
    assert!(matches!(&e, GgufError::UnknownTensorType { tensor, type_id: 255 } if tensor == "w"));
    assert_eq!(e.to_string(), "tensor 'w' has unknown ggml type id 255");
    assert!(matches!(err(&one_tensor(&[1, 1, 1, 1, 1], 0, vec![0; 4])), GgufError::TooManyDims { n_dims: 5, .. }));
    assert!(matches!(err(&one_tensor(&[], 0, vec![])), GgufError::TooManyDims { n_dims: 0, .. }));
    assert!(matches!(err(&one_tensor(&[1 << 32, 1 << 32], 0, vec![])), GgufError::DimsOverflow { .. }));
    assert!(matches!(err(&one_tensor(&[u64::MAX], 0, vec![])), GgufError::DimsOverflow { .. }));
    assert!(matches!(err(&one_tensor(&[1 << 62], 0, vec![])), GgufError::DimsOverflow { .. }));
    assert!(matches!(err(&one_tensor(&[4, 0], 0, vec![])), GgufError::ZeroDim { .. }));
    let e = err(&one_tensor(&[31], GgmlType::Q4_0.id(), vec![0; 18]));
    assert!(matches!(e, GgufError::BlockMismatch { ne0: 31, block: 32, .. }), "{e:?}");
    assert!(matches!(err(&one_tensor(&[16], 0, vec![0; 16])), GgufError::TensorOutOfBounds { .. }));
    // Known-but-unsupported GPU types still parse.
    let b = one_tensor(&[256], GgmlType::IQ2_XXS.id(), vec![0; 66]);
    assert_eq!(complete(&b).tensors[0].ty, GgmlType::IQ2_XXS);

    let dup = Writer::new().tensor("a", &[1], GgmlType::F32, vec![0; 4]).tensor("a", &[1], GgmlType::F32, vec![0; 4]);
    assert!(matches!(err(&dup.build()), GgufError::DuplicateTensor { name } if name == "a"));
}

#[test]
fn random_corruption_never_panics() {
    let good = sample().build();
    let mut rng = Rng::new(99);
    for _ in 0..3000 {
        let mut b = good.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(b.len() as u64 - 8) as usize;
            match rng.below(3) {
                0 => b[at] ^= 1 << rng.below(8),
                1 => b[at] = rng.next_u64() as u8,
                _ => patch_u64(&mut b, at, rng.next_u64() >> rng.below(64)),
            }
        }
        let cut = if rng.below(4) == 0 { rng.below(b.len() as u64) as usize } else { b.len() };
        let _ = parse_header(&b[..cut], b.len() as u64);
        let _ = parse_header(&b[..cut], cut as u64);
    }
}

#[test]
fn real_model_smollm2() {
    use std::io::Read;
    let path = "/work/main/models/SmolLM2-135M-Instruct.Q4_1.gguf";
    let Ok(file) = std::fs::File::open(path) else {
        println!("skipping: {path} not found");
        return;
    };
    let file_len = file.metadata().unwrap().len();
    let mut buf = Vec::new();
    let mut want = 1u64 << 20;
    let f = loop {
        let have = buf.len() as u64;
        (&file).take(want.min(file_len) - have).read_to_end(&mut buf).unwrap();
        match parse_header(&buf, file_len).unwrap() {
            Parsed::NeedMore { needed_len } => want = needed_len,
            Parsed::Complete(f) => break f,
        }
    };
    println!(
        "{path}: v{} {} kv, {} tensors, header {} bytes (read {}), data at {}",
        f.version,
        f.metadata.len(),
        f.tensors.len(),
        f.data_offset,
        buf.len(),
        f.data_offset
    );
    assert_eq!(f.architecture(), Some("llama"));
    assert_eq!(f.get_u64("llama.embedding_length").unwrap(), Some(576));
    assert_eq!(f.get_u64("llama.block_count").unwrap(), Some(30));
    assert_eq!(f.tensors.len(), 272);
    let mut types: Vec<GgmlType> = f.tensors.iter().map(|t| t.ty).collect();
    types.sort();
    types.dedup();
    println!("tensor types: {types:?}");
    assert!(types.iter().all(|t| matches!(t, GgmlType::F32 | GgmlType::Q4_1 | GgmlType::Q8_0)));
    let emb = f.tensor("token_embd.weight").unwrap();
    println!("token_embd.weight: {:?} {}", emb.dims, emb.ty);
    assert_eq!(emb.dims[0], 576);
    let tokens = f.get_array("tokenizer.ggml.tokens").unwrap().unwrap();
    assert_eq!(tokens.len() as u64, emb.dims[1]);
    let end = f.tensors.iter().map(|t| t.offset + t.n_bytes).max().unwrap();
    assert!(end <= file_len);
}
