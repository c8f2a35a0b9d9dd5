#![no_main]
//! `consentry::fuzzing::config`: see that module.
libfuzzer_sys::fuzz_target!(|data: &[u8]| consentry::fuzzing::config(data));
