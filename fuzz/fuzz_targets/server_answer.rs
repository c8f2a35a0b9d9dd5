#![no_main]
//! `consentry::fuzzing::server_answer`: see that module.
libfuzzer_sys::fuzz_target!(|data: &[u8]| consentry::fuzzing::server_answer(data));
