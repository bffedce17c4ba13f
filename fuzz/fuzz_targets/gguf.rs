//! Fuzz target: see `ferrolm::fuzzing::gguf`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrolm::fuzzing::gguf(data));
