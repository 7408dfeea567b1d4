//! The fuzzers' committed corpus (gateway/fuzz/corpus/<target>/), replayed
//! through the same entry points the cargo-fuzz targets call, so stable
//! `cargo test` re-runs every input the fuzzers found interesting.

use std::path::PathBuf;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    inputs.sort();
    assert!(
        !inputs.is_empty(),
        "no corpus for {target} in {}",
        dir.display()
    );
    for input in &inputs {
        let data = std::fs::read(input).unwrap();
        // A panic names the input, so it can be run alone with
        // `cargo +nightly fuzz run <target> <file>`.
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{target} panicked on {}", input.display());
    }
}

#[test]
fn config_loader_corpus_replays_cleanly() {
    replay("config_loader", hookgate::fuzzing::config_loader);
}

#[test]
fn request_head_corpus_replays_cleanly() {
    replay("request_head", hookgate::fuzzing::request_head);
}

#[test]
fn signature_headers_corpus_replays_cleanly() {
    replay("signature_headers", hookgate::fuzzing::signature_headers);
}

#[test]
fn store_codecs_corpus_replays_cleanly() {
    replay("store_codecs", hookgate::fuzzing::store_codecs);
}
