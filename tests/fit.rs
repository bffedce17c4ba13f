//! The pre-check of the GPU memory a model needs (`model::memory_need`, `model::check_fits`):
//! sized from the header alone, it matches what a loaded model holds, and a context too large
//! for the device's binding limit is a device-limit error naming the limit and what fits.

mod common;

use common::{gpu, repo_path, smollm2_path};
use ferrolm::engine::Engine;
use ferrolm::error::Error;
use ferrolm::gpu::{DeviceLimits, GpuError};
use ferrolm::loader::{read_model_header, FileSource};
use ferrolm::model::{check_fits, memory_need, Config, KvType, LoadOptions};

fn header(path: &std::path::Path) -> ferrolm::gguf::GgufFile {
    let mut source = FileSource::open(path).expect("open model");
    pollster::block_on(read_model_header(&mut source)).expect("header")
}

fn limits(binding: u64) -> DeviceLimits {
    let mut l = gpu().limits.clone();
    l.max_storage_binding = binding;
    l.max_buffer_size = binding;
    l
}

#[test]
fn the_need_from_the_header_matches_a_loaded_model() {
    let path = repo_path("tests/fixtures/zoo/tiny-qwen3-q4_k_m.gguf");
    for (context, kv_type) in [(256, KvType::F16), (512, KvType::F32)] {
        let options = LoadOptions { context_length: Some(context), kv_type, ..Default::default() };
        let file = header(&path);
        let need = memory_need(&file, &Config::from_gguf(&file).unwrap(), &options);
        let mut source = FileSource::open(&path).unwrap();
        let engine = pollster::block_on(Engine::load(gpu(), &mut source, &options, &mut |_| {})).expect("load");
        assert_eq!(need.context_length, context);
        assert_eq!(need.kv_cache, engine.model().kv_bytes(), "KV cache at {context} tokens, {kv_type:?}");
        assert_eq!(need.weights, file.tensors.iter().map(|t| t.n_bytes).sum::<u64>());
        assert!(need.total() <= engine.model().gpu_bytes() * 2 && need.total() * 2 >= engine.model().gpu_bytes());
    }
}

#[test]
fn a_context_over_the_binding_limit_names_the_limit_and_what_fits() {
    let file = header(&smollm2_path());
    let config = Config::from_gguf(&file).unwrap();
    let options = LoadOptions { context_length: Some(8192), ..Default::default() };
    let need = memory_need(&file, &config, &options);
    // 3 KV heads of 64, K and V, f16: 768 bytes per token and layer.
    assert_eq!(need.kv_layer, 8192 * 768);
    assert_eq!(need.kv_cache, 30 * 8192 * 768);
    check_fits(&file, &config, &options, &need, &limits(128 << 20)).expect("fits 128 MiB bindings");
    let e = check_fits(&file, &config, &options, &need, &limits(4 << 20)).unwrap_err();
    let Error::Gpu(GpuError::Limit(message)) = &e else { panic!("not a limit error: {e}") };
    assert!(message.contains("maxStorageBufferBindingSize of 4.0 MiB"), "{message}");
    assert!(message.contains("8192 tokens needs 6.0 MiB per layer"), "{message}");
    assert!(message.contains("at most 5461 tokens fits"), "{message}");
    // An f32 cache: twice the bytes, and the message suggests f16.
    let f32 = LoadOptions { kv_type: KvType::F32, ..options };
    let e = check_fits(&file, &config, &f32, &memory_need(&file, &config, &f32), &limits(4 << 20)).unwrap_err();
    assert!(e.to_string().contains("at most 2730 tokens fits, or kvType \"f16\""), "{e}");
}
