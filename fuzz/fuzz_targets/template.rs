//! Fuzz target: see `ferrolm::fuzzing::template`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrolm::fuzzing::template(data));
