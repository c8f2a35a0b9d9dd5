#![no_main]
//! `consentry::fuzzing::ingest_line`: see that module.
libfuzzer_sys::fuzz_target!(|data: &[u8]| consentry::fuzzing::ingest_line(data));
