#![no_main]
//! See `hookgate::fuzzing::store_codecs`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| hookgate::fuzzing::store_codecs(data));
