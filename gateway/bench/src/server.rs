//! The servers under test, each in a process of its own so that its peak
//! RSS and CPU time are its own: the real `hookgate` binary, and the
//! baseline (this binary re-executed with the hidden `baseline-server`
//! subcommand). Both print `… listening on http://ADDR` as their first
//! stdout line; both listen on 127.0.0.1 port 0.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

/// How long a server may take to print its address. The gateway compiles
/// its plugins at start-up (seconds in a debug build).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A server process, killed when dropped.
pub struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl ServerProcess {
    /// Starts `cmd` (stdout piped, stderr to `log`) and waits for its
    /// `listening on http://ADDR` line.
    pub fn spawn(mut cmd: Command, log: &Path) -> anyhow::Result<Self> {
        let stderr =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        let stdout = child.stdout.take().context("piped stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let mut server = ServerProcess {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log: log.to_owned(),
        };
        let Ok(line) = rx.recv_timeout(START_TIMEOUT) else {
            bail!(
                "{cmd:?} did not print its address within {START_TIMEOUT:?}:\n{}",
                server.log_text()
            );
        };
        let addr = line
            .split_once("listening on http://")
            .map(|(_, addr)| addr.trim())
            .with_context(|| format!("unexpected first line {line:?}"))?;
        server.addr = addr
            .parse()
            .with_context(|| format!("parsing the address in {line:?}"))?;
        Ok(server)
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it wrote to stderr.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// User + system CPU time so far of the server and of its children it
    /// has waited for (`/proc/<pid>/stat`: utime + stime + cutime +
    /// cstime). adnanh/webhook runs a command per request (`/bin/true`
    /// here) in a child process, and that work is part of what the peer
    /// does per request; the gateways and the baseline start no children,
    /// so for them this is their own time. A child still running when
    /// this is read is not counted yet.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        process_tree_cpu_seconds(&stat)
    }

    /// Peak resident set size in bytes (`VmHWM` in `/proc/<pid>/status`).
    pub fn peak_rss(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .context("no VmHWM in /proc/<pid>/status")?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()?;
        Ok(kib * 1024)
    }

    /// Its process id (to signal it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has exited (crashed).
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }
}

impl ServerProcess {
    /// Starts `cmd`, a server that listens on `addr` (given on its command
    /// line) and does not print it; stderr and stdout go to `log`.
    pub fn spawn_at(mut cmd: Command, log: &Path, addr: SocketAddr) -> anyhow::Result<Self> {
        let out =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = cmd
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        Ok(ServerProcess {
            child,
            addr,
            log: log.to_owned(),
        })
    }
}

/// utime + stime + cutime + cstime (fields 14 to 17) of a
/// `/proc/<pid>/stat` line, in seconds.
fn process_tree_cpu_seconds(stat: &str) -> anyhow::Result<f64> {
    // Field 2 (comm) may hold spaces; fields after it are plain.
    let rest = stat.rsplit_once(')').context("/proc/<pid>/stat format")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state).
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields.get(i - 3).context("short stat")?.parse::<u64>()? as f64)
    };
    let own = ticks(14)? + ticks(15)?;
    // Signed in the kernel's format, never negative in practice.
    let children = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i - 3)
            .context("short stat")?
            .parse::<i64>()?
            .max(0) as f64)
    };
    let reaped = children(16)? + children(17)?;
    Ok((own + reaped) / clock_ticks_per_second())
}

/// The adnanh/webhook binary: `explicit`, or `webhook` on the PATH.
pub fn webhook_binary(explicit: Option<PathBuf>) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return path.is_file().then_some(path);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("webhook"))
            .find(|p| p.is_file())
    })
}

/// Starts adnanh/webhook with one hook, `/hooks/bench`: the GitHub
/// `X-Hub-Signature-256` HMAC rule with `secret`, running `/bin/true`. It
/// answers once the rule passed, before the command ends, and stores
/// nothing: the peer a user would compare a gateway with.
pub fn spawn_webhook(bin: &Path, dir: &Path, secret: &str) -> anyhow::Result<ServerProcess> {
    let hooks = serde_json::json!([{
        "id": crate::config::ROUTE,
        "execute-command": "/bin/true",
        "response-message": "accepted",
        "trigger-rule": {
            "match": {
                "type": "payload-hmac-sha256",
                "secret": secret,
                "parameter": { "source": "header", "name": "X-Hub-Signature-256" }
            }
        }
    }]);
    let hooks_path = dir.join("hooks.json");
    std::fs::write(&hooks_path, serde_json::to_vec_pretty(&hooks)?)?;
    // A free loopback port: webhook takes a port, not a listener.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut cmd = Command::new(bin);
    cmd.arg("-hooks")
        .arg(&hooks_path)
        .args(["-ip", "127.0.0.1", "-port", &port.to_string()]);
    ServerProcess::spawn_at(
        cmd,
        &dir.join("webhook.log"),
        SocketAddr::from(([127, 0, 0, 1], port)),
    )
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `CLK_TCK`, the unit of `/proc/<pid>/stat` times: asked of `getconf`
/// once (this crate forbids the `unsafe` a `sysconf` call needs), else
/// Linux's fixed USER_HZ of 100.
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// The `hookgate` binary to benchmark: `explicit` if given, else the one
/// next to this executable (`target/release/hookgate` for a release run).
///
/// With `build`, and when run by cargo (`CARGO` is set), it first runs
/// `cargo build -p hookgate --bin hookgate` in this executable's profile,
/// so a plain `cargo run --release -p hookgate-bench` benchmarks the current
/// code. (A normal dependency on the package would build only its library,
/// and binary artifact dependencies are unstable.)
pub fn gateway_binary(explicit: Option<PathBuf>, build: bool) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        if !path.is_file() {
            bail!("--gateway {}: no such file", path.display());
        }
        return Ok(path);
    }
    let exe = std::env::current_exe().context("locating this executable")?;
    let bin = exe
        .parent()
        .context("executable has a directory")?
        .join(format!("hookgate{}", std::env::consts::EXE_SUFFIX));
    if build && let Ok(cargo) = std::env::var("CARGO") {
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml");
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "-p",
            "hookgate",
            "--bin",
            "hookgate",
            "--manifest-path",
        ])
        .arg(manifest);
        // `cargo run` hands this process the package's own variables
        // (`CARGO_PKG_NAME`, …). Build scripts that track them (ring's
        // does) would see a change and rebuild, here and again on the next
        // plain `cargo build`.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_MANIFEST_")
                || matches!(
                    &*name,
                    "CARGO_CRATE_NAME"
                        | "CARGO_BIN_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_RUSTC_CURRENT_DIR"
                        | "OUT_DIR"
                )
            {
                cmd.env_remove(&*name);
            }
        }
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        eprintln!("building the gateway: {cmd:?}");
        let status = cmd.status().context("running cargo build")?;
        if !status.success() {
            bail!("building the hookgate binary failed ({status})");
        }
    }
    if !bin.is_file() {
        bail!(
            "{} not found: run `cargo build --release -p hookgate` first, or pass --gateway PATH",
            bin.display()
        );
    }
    Ok(bin)
}

/// The baseline: a bare axum server that reads the body, checks GitHub's
/// `X-Hub-Signature-256` (HMAC-SHA256, constant-time compare) and answers
/// 202, or 401 when the signature is wrong: the least any webhook receiver
/// does, and the baseline the issue that set the targets measured.
/// Runs in its own process (the hidden `baseline-server` subcommand), on a
/// multi-threaded runtime like the gateway's.
pub fn run_baseline_server() -> anyhow::Result<()> {
    use axum::Router;
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::any;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    async fn accept(
        headers: HeaderMap,
        body: Bytes,
    ) -> (StatusCode, axum::Json<serde_json::Value>) {
        let signed = headers
            .get("x-hub-signature-256")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("sha256="))
            .and_then(|v| hex::decode(v).ok())
            .is_some_and(|sig| {
                let mut mac = Hmac::<Sha256>::new_from_slice(crate::payload::SECRET.as_bytes())
                    .expect("any key length");
                mac.update(&body);
                mac.verify_slice(&sig).is_ok()
            });
        if !signed {
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(serde_json::json!({ "error": "bad signature" })),
            );
        }
        (
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({ "bytes": body.len() })),
        )
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("baseline listening on http://{}", listener.local_addr()?);
        let app = Router::new().route("/hooks/{route}", any(accept));
        axum::serve(listener, app).await?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_fourteen_to_seventeen_are_summed() {
        // pid (comm with a space) state ppid pgrp session tty tpgid flags
        // minflt cminflt majflt cmajflt utime stime cutime cstime ...
        let stat = "42 (web hook) S 1 42 42 0 -1 4194560 10 20 0 0 100 50 300 25 20 0 8 0";
        let ticks = clock_ticks_per_second();
        let got = process_tree_cpu_seconds(stat).unwrap();
        assert!((got - 475.0 / ticks).abs() < 1e-9, "{got}");
    }

    /// A server whose work runs in children it waits for, like
    /// adnanh/webhook running its command: that CPU time is counted.
    #[tokio::test]
    async fn the_cpu_of_reaped_children_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("out.log");
        // Five children, each busy for a while, all waited for; the parent
        // itself does next to nothing, then idles.
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(
            "for n in 1 2 3 4 5; do sh -c 'i=0; while [ $i -lt 40000 ]; do i=$((i+1)); done'; done; \
             echo reaped; sleep 60",
        );
        let server =
            ServerProcess::spawn_at(cmd, &log, SocketAddr::from(([127, 0, 0, 1], 9))).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !server.log_text().contains("reaped") {
            assert!(
                std::time::Instant::now() < deadline,
                "the children never ended"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.child.id())).unwrap();
        let rest = stat.rsplit_once(')').unwrap().1;
        let fields: Vec<u64> = rest
            .split_whitespace()
            .skip(11)
            .take(4)
            .map(|f| f.parse().unwrap())
            .collect();
        let (own, children) = (fields[0] + fields[1], fields[2] + fields[3]);
        assert!(
            children > own,
            "the work is the children's: own {own} ticks, children {children}"
        );
        let cpu = server.cpu_seconds().unwrap();
        let ticks = clock_ticks_per_second();
        assert!(
            cpu >= (own + children) as f64 / ticks - 1e-9,
            "{cpu} s counts only the parent's {own} ticks, not its children's {children}"
        );
    }
}
