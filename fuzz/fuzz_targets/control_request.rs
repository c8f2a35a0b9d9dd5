#![no_main]
//! `consentry::fuzzing::control_request`: see that module.
libfuzzer_sys::fuzz_target!(|data: &[u8]| consentry::fuzzing::control_request(data));
