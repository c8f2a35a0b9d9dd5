#![no_main]
//! `consentry::fuzzing::catalogue`: see that module.
libfuzzer_sys::fuzz_target!(|data: &[u8]| consentry::fuzzing::catalogue(data));
