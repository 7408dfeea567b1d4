//! `hookgate plugin build`: runs the project's language tool, then loads
//! the component on the gateway's plugin host to check it (and warm the
//! compiled-code cache), and with `--install` copies it into a gateway's
//! `plugins.dir`.
//!
//! | language | tool | source checked first with |
//! |---|---|---|
//! | rust | `cargo build --release --target wasm32-wasip2` | (cargo names file and line itself) |
//! | js | `componentize-js` from the project's `node_modules` (`npm install` on first build) | `node --check` |
//! | python | `componentize-py` on `PATH` | `python3 -m py_compile` |
//!
//! The language tools print their own diagnostics; the source check first
//! exists because a JavaScript syntax error inside componentize-js names
//! neither file nor line, and componentize-py names the file as its guest
//! sees it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{AuthoringError, Lang, Project, TARGET_DIR, io_at, runner};
use crate::plugin::LoadedPlugin;

/// The componentize-py version generated projects pin (`requirements.txt`).
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// Where a JavaScript project's source lives.
pub const JS_SOURCE: &str = "src/plugin.js";

/// A Python project's module (`app.py`).
pub const PY_MODULE: &str = "app";

/// What `plugin build` made.
#[derive(Debug)]
pub struct Built {
    /// The component.
    pub component: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// How long the language tool took.
    pub build_time: Duration,
    /// The plugin as the gateway loaded it (version, stages, load time).
    pub plugin: std::sync::Arc<LoadedPlugin>,
}

/// Builds the project and checks the component on the plugin host.
pub async fn build(project: &Project) -> Result<Built, AuthoringError> {
    let target = project.dir.join(TARGET_DIR);
    std::fs::create_dir_all(&target).map_err(io_at(&target))?;
    let started = Instant::now();
    match project.manifest.lang {
        Lang::Rust => build_rust(project)?,
        Lang::Js => build_js(project)?,
        Lang::Python => build_python(project)?,
    }
    let build_time = started.elapsed();
    let component = project.component_path();
    let size = std::fs::metadata(&component)
        .map_err(io_at(&component))?
        .len();
    let plugin = runner::load(project).await?;
    Ok(Built {
        component,
        size,
        build_time,
        plugin,
    })
}

fn build_rust(project: &Project) -> Result<(), AuthoringError> {
    require_tool(
        "cargo",
        &["--version"],
        &project.dir,
        "Rust (cargo)",
        "curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh",
    )?;
    // rustup adds a toolchain file's targets only when it installs the
    // toolchain; an installed one may lack wasm32-wasip2.
    let libdir = Command::new("rustc")
        .args(["--print", "target-libdir", "--target", "wasm32-wasip2"])
        .current_dir(&project.dir)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if !libdir.is_some_and(|d| d.is_dir()) {
        return Err(AuthoringError::MissingTool {
            tool: "The wasm32-wasip2 target of the Rust toolchain".into(),
            install: "rustup target add wasm32-wasip2".into(),
        });
    }
    let mut cmd = Command::new("cargo");
    cmd.args([
        "build",
        "--release",
        "--target",
        "wasm32-wasip2",
        "--message-format=json-render-diagnostics",
    ])
    .current_dir(&project.dir)
    // Settings of a host build that may have started us must not leak in.
    .env_remove("RUSTFLAGS")
    .env_remove("CARGO_ENCODED_RUSTFLAGS")
    .env_remove("CARGO_BUILD_RUSTFLAGS")
    .env_remove("CARGO_BUILD_TARGET")
    .env_remove("RUSTC_WORKSPACE_WRAPPER")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    let output = cmd
        .output()
        .map_err(|e| AuthoringError::Build(format!("cannot run cargo: {e}")))?;
    if !output.status.success() {
        return Err(AuthoringError::Build(
            "cargo build failed (the errors above name the file and line)".into(),
        ));
    }
    // cargo's own report of what it built: the cdylib's .wasm, wherever
    // CARGO_TARGET_DIR put it.
    let wasm = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact")
        .filter(|v| {
            v["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "cdylib"))
        })
        .flat_map(|v| {
            v["filenames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|f| f.as_str().map(PathBuf::from))
                .collect::<Vec<_>>()
        })
        .find(|f| f.extension().is_some_and(|e| e == "wasm"))
        .ok_or_else(|| {
            AuthoringError::Build(
                "cargo built no .wasm: Cargo.toml needs `[lib] crate-type = [\"cdylib\"]`".into(),
            )
        })?;
    let dest = project.component_path();
    std::fs::copy(&wasm, &dest).map_err(io_at(&dest))?;
    Ok(())
}

fn build_js(project: &Project) -> Result<(), AuthoringError> {
    let dir = &project.dir;
    require_tool(
        "node",
        &["--version"],
        dir,
        "Node.js",
        "apt-get install -y nodejs npm",
    )?;
    // node names the file, line and column of a syntax error (and needs
    // no install step to do it).
    run(
        Command::new("node")
            .args(["--check", JS_SOURCE])
            .current_dir(dir),
        &format!("{JS_SOURCE} does not parse (see above)"),
    )?;
    let tool = dir.join("node_modules/.bin/componentize-js");
    if !tool.is_file() {
        require_tool(
            "npm",
            &["--version"],
            dir,
            "npm",
            "apt-get install -y nodejs npm",
        )?;
        eprintln!("installing the pinned build tools (npm install)…");
        run(
            Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--prefer-offline"])
                .current_dir(dir),
            "npm install",
        )?;
        if !tool.is_file() {
            return Err(AuthoringError::MissingTool {
                tool: "@bytecodealliance/componentize-js".into(),
                install: format!("cd {} && npm install", dir.display()),
            });
        }
    }
    let out = project.component_path();
    run(
        Command::new(&tool)
            .args([
                "--wit",
                "wit",
                "--world-name",
                project.manifest.stage.as_str(),
            ])
            // No WASI for the engine: plugins get their I/O from the host
            // interface, and the gateway gives them no stdio, clock or
            // entropy of their own (Math.random and Date.now trap).
            .args(["-d", "stdio", "random", "clocks", "http", "fetch-event"])
            .arg("-o")
            .arg(&out)
            .arg(JS_SOURCE)
            .current_dir(dir),
        "componentize-js failed (see above)",
    )
}

fn build_python(project: &Project) -> Result<(), AuthoringError> {
    let dir = &project.dir;
    let source = format!("{PY_MODULE}.py");
    // CPython names the file and line of a syntax error; componentize-py
    // would name them as its guest sees them (`/0/app.py`).
    if Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        run(
            Command::new("python3")
                .args(["-m", "py_compile", &source])
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .current_dir(dir),
            &format!("{source} does not compile (see above)"),
        )?;
    }
    require_tool(
        "componentize-py",
        &["--version"],
        dir,
        "componentize-py",
        &format!("python3 -m pip install {COMPONENTIZE_PY}"),
    )?;
    let out = project.component_path();
    run(
        Command::new("componentize-py")
            .args(["-d", "wit", "-w", project.manifest.stage.as_str()])
            .args(["componentize", PY_MODULE, "-o"])
            .arg(&out)
            .current_dir(dir),
        "componentize-py failed (see above)",
    )
}

/// Fails with the install command when `program` does not run.
fn require_tool(
    program: &str,
    args: &[&str],
    dir: &Path,
    tool: &str,
    install: &str,
) -> Result<(), AuthoringError> {
    let ok = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err(AuthoringError::MissingTool {
            tool: tool.into(),
            install: install.into(),
        })
    }
}

/// Runs a build step with its output on our stderr.
fn run(cmd: &mut Command, failure: &str) -> Result<(), AuthoringError> {
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()))
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| AuthoringError::Build(format!("{failure}: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(AuthoringError::Build(failure.to_owned()))
    }
}

/// Where `--install` puts the component, and the gateway's compiled-code
/// cache to warm.
#[derive(Debug)]
pub struct InstallTarget {
    /// `plugins.dir`.
    pub plugins_dir: PathBuf,
    /// The gateway's config, when one was found.
    pub config: Option<crate::config::GatewayConfig>,
}

/// `--install PATH`: a config file, a folder holding `hookgate.yaml`, or
/// `plugins.dir` itself. A relative `plugins.dir` or `data_dir` in the
/// config is taken from the config's folder.
pub fn install_target(path: &Path) -> Result<InstallTarget, AuthoringError> {
    let config_file = if path.is_file() {
        Some(path.to_owned())
    } else if path.join("hookgate.yaml").is_file() {
        Some(path.join("hookgate.yaml"))
    } else {
        None
    };
    let Some(file) = config_file else {
        if path.is_dir() {
            return Ok(InstallTarget {
                plugins_dir: path.to_owned(),
                config: None,
            });
        }
        return Err(AuthoringError::Project(format!(
            "--install {}: not a config file, a folder with hookgate.yaml, or a plugins folder",
            path.display()
        )));
    };
    let config = crate::config::from_path(&file).map_err(|errors| {
        AuthoringError::Project(format!("--install: {}: {errors}", file.display()))
    })?;
    let Some(dir) = config.plugins.dir.clone() else {
        return Err(AuthoringError::Project(format!(
            "--install: {} has no plugins.dir; add `plugins: {{ dir: ./plugins }}`",
            file.display()
        )));
    };
    let plugins_dir = if dir.is_relative() {
        config.base_dir.join(dir)
    } else {
        dir
    };
    Ok(InstallTarget {
        plugins_dir,
        config: Some(config),
    })
}

/// Copies the component into `plugins.dir` as `NAME.wasm`, atomically (a
/// watching gateway never reads half a file). With the gateway's config,
/// it first copies the code `plugin build` compiled into the gateway's
/// cache, so the reload that follows loads it without compiling (seconds
/// for an embedded JS or Python runtime).
pub async fn install(project: &Project, target: &InstallTarget) -> Result<PathBuf, AuthoringError> {
    let from = project.component_path();
    let bytes = std::fs::read(&from).map_err(io_at(&from))?;
    if let Some(config) = &target.config {
        let data_dir = if config.data_dir.is_relative() {
            config.base_dir.join(&config.data_dir)
        } else {
            config.data_dir.clone()
        };
        let cache = data_dir.join(crate::PLUGIN_CACHE_DIR);
        // Only into a cache the gateway already made: creating data_dir
        // here could leave it owned by someone else. wasmtime keys entries
        // by the component's bytes and the engine's settings, so an entry
        // the gateway's engine would not have made is never used by it.
        if cache.is_dir()
            && let Err(e) = merge_cache(&project.cache_dir(), &cache)
        {
            // The gateway will compile it itself.
            eprintln!(
                "note: could not share compiled code with {}: {e}",
                cache.display()
            );
        }
    }
    std::fs::create_dir_all(&target.plugins_dir).map_err(io_at(&target.plugins_dir))?;
    let dest = target
        .plugins_dir
        .join(format!("{}.wasm", project.manifest.name));
    let tmp = target
        .plugins_dir
        .join(format!(".{}.wasm.partial", project.manifest.name));
    std::fs::write(&tmp, &bytes).map_err(io_at(&tmp))?;
    std::fs::rename(&tmp, &dest).map_err(io_at(&dest))?;
    Ok(dest)
}

/// Copies the entries of wasmtime's cache in `from` that `to` lacks
/// (`modules/<wasmtime version>/<key>`; bookkeeping files are left out).
fn merge_cache(from: &Path, to: &Path) -> std::io::Result<()> {
    let modules = from.join("modules");
    let Ok(versions) = std::fs::read_dir(&modules) else {
        return Ok(());
    };
    for version in versions {
        let version = version?;
        if !version.file_type()?.is_dir() {
            continue;
        }
        let dest_dir = to.join("modules").join(version.file_name());
        std::fs::create_dir_all(&dest_dir)?;
        for entry in std::fs::read_dir(version.path())? {
            let entry = entry?;
            let name = entry.file_name();
            let keep = entry.file_type()?.is_file()
                && !name.to_string_lossy().starts_with('.')
                && !name.to_string_lossy().ends_with(".stats");
            let dest = dest_dir.join(&name);
            if keep && !dest.exists() {
                // Renamed into place: the gateway may read the cache now.
                let tmp = dest_dir.join(format!(".{}.partial", name.to_string_lossy()));
                std::fs::copy(entry.path(), &tmp)?;
                std::fs::rename(&tmp, &dest)?;
            }
        }
    }
    Ok(())
}
