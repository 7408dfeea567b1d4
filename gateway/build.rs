//! Builds every guest (first-party plugins and test components) for
//! wasm32-wasip2 and embeds them:
//!
//! - `plugins/<name>/` (cdylib crates) become built-in plugins, compiled
//!   into the binary and available by name with no build step for users;
//! - `tests/components/<name>/` become test components, copied next to the
//!   build output for the integration tests, with a `foreach_test_component!`
//!   macro so that a component without a test fails to compile.
//!
//! Guests live in their own workspace (`plugins/Cargo.toml`), so the host
//! build never compiles them for the host. No `.wasm` is committed.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets this"));
    let root = manifest_dir
        .parent()
        .expect("gateway/ sits in the repo root");
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets this"));
    let guest_target = root.join("target").join("guests");

    for watched in ["plugins", "plugin-sdk", "wit", "tests/components"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    build_guests(root, &guest_target);
    let wasm_dir = guest_target.join("wasm32-wasip2").join("release");

    // Built-in plugins.
    let mut builtin = String::from("/// Built-in plugins: (name, component bytes).\n");
    builtin.push_str("pub static BUILTIN: &[(&str, &[u8])] = &[\n");
    for name in guest_dirs(&root.join("plugins"), true) {
        let wasm = copy_wasm(
            &wasm_dir,
            &name.replace('-', "_"),
            &out_dir.join("builtin"),
            &name,
        );
        writeln!(
            builtin,
            "    ({name:?}, include_bytes!({:?})),",
            wasm.display()
        )
        .unwrap();
    }
    builtin.push_str("];\n");
    fs::write(out_dir.join("builtin_plugins.rs"), builtin).unwrap();

    // Test components.
    let components_out = out_dir.join("test-components");
    let mut each = String::from(
        "/// Calls `$m!(name)` for every test component under tests/components/.\n\
         #[allow(unused_macros, reason = \"only the integration tests use it\")]\n\
         macro_rules! foreach_test_component {\n    ($m:ident) => {\n",
    );
    for name in guest_dirs(&root.join("tests").join("components"), false) {
        let crate_file = format!("tc_{}", name.replace('-', "_"));
        copy_wasm(&wasm_dir, &crate_file, &components_out, &name);
        writeln!(each, "        $m!({});", name.replace('-', "_")).unwrap();
    }
    each.push_str("    };\n}\n");
    fs::write(out_dir.join("test_components.rs"), each).unwrap();
    println!(
        "cargo:rustc-env=HOOKGATE_TEST_COMPONENTS={}",
        components_out.display()
    );
    // The guest workspace's unit tests run on the host target (tests/it/guests.rs).
    println!(
        "cargo:rustc-env=HOOKGATE_HOST_TARGET={}",
        env::var("TARGET").expect("cargo sets this")
    );
}

/// `cargo build --release` in the guest workspace.
fn build_guests(root: &Path, target_dir: &Path) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root.join("plugins"))
        .args([
            "build",
            "--release",
            "--workspace",
            "--target",
            "wasm32-wasip2",
        ])
        .env("CARGO_TARGET_DIR", target_dir)
        // Host-only settings must not leak into the guest build: flags meant
        // for x86_64, and clippy's wrapper when this runs under `cargo clippy`.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_BUILD_TARGET");
    let output = cmd.output().expect("running cargo for the guest workspace");
    if !output.status.success() {
        panic!(
            "building the wasm plugins failed (cd plugins && cargo build --release):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Names of the crate directories under `dir` (only `cdylib` ones when
/// `cdylib_only`, so shared rlib crates among plugins are skipped), sorted.
fn guest_dirs(dir: &Path, cdylib_only: bool) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .filter(|e| {
            !cdylib_only
                || fs::read_to_string(e.path().join("Cargo.toml"))
                    .map(|m| {
                        m.lines().any(|l| {
                            let l = l.trim_start();
                            l.starts_with("crate-type") && l.contains("cdylib")
                        })
                    })
                    .unwrap_or(false)
        })
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// Copies `<wasm_dir>/<crate_file>.wasm` to `<dest>/<name>.wasm`.
fn copy_wasm(wasm_dir: &Path, crate_file: &str, dest: &Path, name: &str) -> PathBuf {
    fs::create_dir_all(dest).unwrap();
    let from = wasm_dir.join(format!("{crate_file}.wasm"));
    let to = dest.join(format!("{name}.wasm"));
    fs::copy(&from, &to).unwrap_or_else(|e| panic!("copying {}: {e}", from.display()));
    to
}
