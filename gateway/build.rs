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
//!
//! The toolchain that builds the guests must have the `wasm32-wasip2`
//! target. rustup adds the targets of `rust-toolchain.toml` only when it
//! installs a toolchain, not to one already installed, so this script
//! checks first, tries `rustup target add`, and otherwise stops at once
//! with the one command to run (instead of `can't find crate for std` far
//! down the output).
//!
//! `HOOKGATE_GUEST_TOOLCHAIN=<toolchain>` builds the guests with another
//! rustup toolchain than the host's (the fuzz targets build the host on
//! nightly, whose target list may lack wasm32-wasip2).

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
    println!("cargo:rerun-if-env-changed={GUEST_TOOLCHAIN_VAR}");

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

/// Names a rustup toolchain for the guests instead of the host's.
const GUEST_TOOLCHAIN_VAR: &str = "HOOKGATE_GUEST_TOOLCHAIN";

/// The target guests are built for.
const GUEST_TARGET: &str = "wasm32-wasip2";

/// A command running `tool` (`cargo` or `rustc`) of the guests' toolchain.
fn guest_tool(tool: &str) -> Command {
    match env::var(GUEST_TOOLCHAIN_VAR) {
        Ok(toolchain) if !toolchain.is_empty() => {
            let mut cmd = Command::new("rustup");
            cmd.args(["run", &toolchain, tool])
                // The host build's own toolchain must not leak in.
                .env_remove("RUSTC")
                .env_remove("RUSTDOC")
                .env_remove("RUSTC_WRAPPER")
                .env_remove("RUSTUP_TOOLCHAIN");
            cmd
        }
        _ => {
            // The same toolchain as the host build (cargo sets both).
            let var = if tool == "cargo" { "CARGO" } else { "RUSTC" };
            Command::new(env::var(var).unwrap_or_else(|_| tool.into()))
        }
    }
}

/// Makes sure the guests' toolchain has the wasm32-wasip2 standard
/// library: adds it with rustup if it can, and otherwise stops the build
/// with the command to run.
fn ensure_guest_target() {
    let sysroot = guest_tool("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let Some(sysroot) = sysroot else {
        // No rustc to ask: let the guest build report what is wrong.
        return;
    };
    let has_target = || sysroot.join("lib/rustlib").join(GUEST_TARGET).is_dir();
    if has_target() {
        return;
    }
    // rustup keeps each toolchain in a directory named after it.
    let toolchain = sysroot
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "<toolchain>".into());
    let command = format!("rustup target add {GUEST_TARGET} --toolchain {toolchain}");
    println!("cargo:warning=the {GUEST_TARGET} target is missing; running `{command}`");
    let added = Command::new("rustup")
        .args(["target", "add", GUEST_TARGET, "--toolchain", &toolchain])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !(added && has_target()) {
        // Not a panic: the message is the whole story, a backtrace would
        // bury it.
        eprintln!(
            "\n\nhookgate builds its plugins for {GUEST_TARGET}, and the Rust toolchain at {} \
             does not have that target (rustup adds the targets of rust-toolchain.toml only when \
             it installs a toolchain). Add it with:\n\n    {command}\n\n",
            sysroot.display()
        );
        std::process::exit(1);
    }
}

/// `cargo build --release` in the guest workspace.
fn build_guests(root: &Path, target_dir: &Path) {
    ensure_guest_target();
    let mut cmd = guest_tool("cargo");
    cmd.current_dir(root.join("plugins"))
        .args([
            "build",
            "--release",
            "--workspace",
            "--target",
            GUEST_TARGET,
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
