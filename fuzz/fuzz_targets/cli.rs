//! Fuzz target: see `ferrolm::fuzzing::cli`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrolm::fuzzing::cli(data));
