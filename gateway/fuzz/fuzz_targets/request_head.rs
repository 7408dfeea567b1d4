#![no_main]
//! See `hookgate::fuzzing::request_head`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| hookgate::fuzzing::request_head(data));
