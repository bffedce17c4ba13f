//! Fuzz target: see `ferrolm::fuzzing::config`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrolm::fuzzing::config(data));
