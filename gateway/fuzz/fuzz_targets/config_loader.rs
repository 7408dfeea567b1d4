#![no_main]
//! See `hookgate::fuzzing::config_loader`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| hookgate::fuzzing::config_loader(data));
