#![no_main]
//! `consentry::fuzzing::consent_file`: see that module.
libfuzzer_sys::fuzz_target!(|data: &[u8]| consentry::fuzzing::consent_file(data));
