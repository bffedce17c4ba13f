//! Fuzz target: see `ferrolm::fuzzing::tokenizer` (vocabularies load before fuzzing starts).
#![no_main]
libfuzzer_sys::fuzz_target!(init: { ferrolm::fuzzing::prepare("tokenizer") }, |data: &[u8]| ferrolm::fuzzing::tokenizer(data));
