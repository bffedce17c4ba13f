//! Fuzz target: see `ferrolm::fuzzing::tokenizer`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrolm::fuzzing::tokenizer(data));
