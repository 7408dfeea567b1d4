//! The guest workspace's own unit tests (the plugin SDK's signature and
//! time helpers, the card builders, the matching rules) are pure Rust:
//! they run on the host target, from here, so `cargo test --workspace`
//! runs them. Calls into the host interface are not reachable from them
//! (wit-bindgen stubs imports off wasm).

use std::process::Command;

#[test]
fn guest_workspace_unit_tests_pass_on_the_host() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let out = Command::new(env!("CARGO"))
        .current_dir(root.join("plugins"))
        .args([
            "test",
            "--workspace",
            "--lib",
            "--target",
            env!("HOOKGATE_HOST_TARGET"),
        ])
        // Their own target directory: the guests' wasm build and the
        // host's test build must not invalidate each other.
        .env(
            "CARGO_TARGET_DIR",
            root.join("target").join("guest-host-tests"),
        )
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .output()
        .expect("running cargo test in plugins/");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let passed: u32 = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("test result: ok. "))
        .filter_map(|l| l.split(' ').next()?.parse::<u32>().ok())
        .sum();
    // 7 in the SDK, 6 in github-cards-lib, 4 in match-lib when this was
    // written; fewer means tests stopped being found.
    assert!(passed >= 17, "only {passed} guest tests ran:\n{stdout}");
}
