#![no_main]
//! See `hookgate::fuzzing::signature_headers`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| hookgate::fuzzing::signature_headers(data));
