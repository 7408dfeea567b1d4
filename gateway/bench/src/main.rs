//! hookgate's load benchmark (`cargo run --release -p hookgate-bench`).
//!
//! On loopback, with the same signed GitHub `issues` payload (about 2 KB),
//! sent with GitHub's headers and a delivery id of its own each, as GitHub
//! makes them (`github.rs`), at a fixed number of keep-alive connections,
//! it measures:
//!
//! 1. a bare axum server that reads the body, checks the HMAC and answers
//!    202 (baseline);
//! 2. hookgate, a route with no plugins;
//! 3. hookgate, `github` verify + `github-teams` transform;
//! 4. the same as 3 with durability off ;
//! 5. delivery: the route of 3 delivering over HTTP to a sink in this
//!    process, ingest and delivery at once, closed loop: req/s, deliveries
//!    per second at the sink while ingest runs, answered → delivered
//!    latency, and how long the backlog takes to drain once the load ends;
//! 6. fixed rate: the same at a fixed request rate (half of row 3's
//!    capacity by default): answered → delivered latency when not
//!    saturated;
//! 7. a peer, adnanh/webhook (the Debian package `webhook`), with an HMAC
//!    rule and `/bin/true`, when it is installed;
//! 8. with `--postgres-url`: row 3 on the PostgreSQL store (its ratio to
//!    row 3 in the notes), and two gateways on one PostgreSQL delivering to
//!    one sink, the load split between them (deliveries per second
//!    combined). Each row makes a database of its own there and drops it.
//!
//! Then, not rows, `--rounds` rounds (3 by default) of rows 1, 5 and 9
//! again, one right after the other: row 5's ratios to the baseline and
//! to the peer are judged by their median over the rounds (see
//! `report::Round`).
//!
//! Every server is a process of its own (the real `hookgate` binary; the
//! baseline is this binary re-executed), so peak RSS and CPU seconds are
//! per server. It prints one table and writes it as JSON under `target/`.
//! `--smoke` runs every row for a few hundred requests so CI keeps it
//! working; it is not a measurement.

mod config;
mod delivery;
mod github;
mod load;
mod payload;
#[cfg(test)]
mod payload_tests;
mod report;
mod server;
mod sink;

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use http::{HeaderMap, HeaderName, HeaderValue};

use config::{Destination, GatewaySetup};
use load::{Ids, Plan, Stop, Target};
use report::{DeliveryStats, Report, Round, Row};
use server::ServerProcess;

/// Requests per row in `--smoke` mode.
const SMOKE_REQUESTS: u64 = 300;
/// Connections in `--smoke` mode.
const SMOKE_CONNECTIONS: usize = 4;
/// Bound on any count-based loop (smoke rows, posting the delivery row's
/// events), so the run always stops by itself.
const COUNT_LIMIT: Duration = Duration::from_secs(60);
/// How long a delivery row waits for the last deliveries after the last
/// POST was answered.
const DELIVERY_DRAIN_LIMIT: Duration = Duration::from_secs(60);
/// The fixed-rate row's rate in `--smoke` mode (requests per second).
const SMOKE_RATE: f64 = 200.0;
/// The drain measurement's backlog: about eight seconds of row 3's ingest
/// on the 2-core machine, and several of sending.
const DRAIN_BACKLOG: u64 = 60_000;
/// `plugins.timeout` in `--smoke` mode (see [`GatewaySetup::plugin_timeout`]).
const SMOKE_PLUGIN_TIMEOUT: &str = "10s";
/// How long a gateway may take to answer `/healthz` after printing its
/// address (it compiles its plugins first).
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Subscriptions every publish of the publish rows reaches.
const SUBSCRIBERS: usize = 3;
/// The fan-out row's destinations per webhook (all on the one sink).
const FAN_OUT: usize = 2;

#[derive(Parser, Debug)]
#[command(
    name = "hookgate-bench",
    about = "Load benchmark: hookgate against a bare axum baseline, on loopback"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,

    /// Run every row for a few hundred requests at low concurrency (CI):
    /// checks that the benchmark works, measures nothing.
    #[arg(long)]
    smoke: bool,

    /// Concurrent keep-alive connections (one worker task each).
    #[arg(long, default_value_t = 64)]
    connections: usize,

    /// Measured time per row (rows 1-4).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,

    /// Warm-up per row before measuring (rows 1-4).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: Duration,

    /// The fixed-rate row's rate, requests per second [default: half of
    /// row 3's req/s in this run].
    #[arg(long)]
    rate: Option<f64>,

    /// The adnanh/webhook binary for the peer row [default: `webhook` on
    /// the PATH; the row is skipped when there is none].
    #[arg(long, env = "HOOKGATE_BENCH_WEBHOOK")]
    webhook: Option<PathBuf>,

    /// Where to write the JSON report [default: target/hookgate-bench.json,
    /// or target/hookgate-bench-smoke.json with --smoke].
    #[arg(long)]
    json: Option<PathBuf>,

    /// The hookgate binary to run [default: next to this executable, built
    /// first with cargo when run by cargo].
    #[arg(long, env = "HOOKGATE_BIN")]
    gateway: Option<PathBuf>,

    /// Do not run `cargo build -p hookgate` first.
    #[arg(long)]
    no_build: bool,

    /// A PostgreSQL server for the PostgreSQL rows
    /// (`postgres://user@host:port/db`, a role that may create databases)
    /// [default: the rows are skipped].
    #[arg(long, env = "HOOKGATE_BENCH_POSTGRES_URL")]
    postgres_url: Option<String>,

    /// Rounds of rows 1, 5 and 9 again, back to back, after the table:
    /// row 5's ratios to the baseline and to the peer are judged by their
    /// median over the rounds, each round's three servers having run
    /// within a minute of each other (the table's rows 1, 5 and 9 run
    /// minutes apart). 0: none. `--smoke` runs at most one.
    #[arg(long, default_value_t = 3)]
    rounds: usize,

    /// Run only these rows (keys, comma-separated: no-plugins, plugins,
    /// in-memory, delivery, fixed-rate, postgres, postgres-2-delivery,
    /// peer, publish, postgres-publish, fan-out, drain, rounds); the baseline
    /// always runs, every ratio needs it. For profiling one row; the fixed-rate row then needs
    /// `plugins` or `--rate`.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum Sub {
    /// Row 1's server (internal).
    #[command(hide = true)]
    BaselineServer,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Sub::BaselineServer) = cli.command {
        return match server::run_baseline_server() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("baseline server: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hookgate-bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench(cli)) {
        Ok(report) if report.smoke && report.total_errors() > 0 => {
            eprintln!("hookgate-bench: smoke run saw errors");
            ExitCode::FAILURE
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hookgate-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What a run does, from the command line.
struct Settings {
    connections: usize,
    stop: Stop,
}

async fn bench(cli: Cli) -> anyhow::Result<Report> {
    let settings = if cli.smoke {
        Settings {
            connections: SMOKE_CONNECTIONS,
            stop: Stop::Count {
                requests: SMOKE_REQUESTS,
                limit: COUNT_LIMIT,
            },
        }
    } else {
        Settings {
            connections: cli.connections.max(1),
            stop: Stop::Timed {
                warmup: cli.warmup,
                measure: cli.duration,
            },
        }
    };
    let gateway = server::gateway_binary(cli.gateway.clone(), !cli.no_build)?;
    let exe = std::env::current_exe().context("locating this executable")?;
    let target_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .context("this executable sits in target/<profile>/")?
        .to_owned();
    let json_path = cli.json.clone().unwrap_or_else(|| {
        target_dir.join(if cli.smoke {
            "hookgate-bench-smoke.json"
        } else {
            "hookgate-bench.json"
        })
    });

    let body = Bytes::from(payload::issue_opened_small());
    let headers = github::delivery_headers(&body)?;
    let target = |addr, prefix: &str| Target {
        addr,
        path: format!("/hooks/{}", config::ROUTE),
        headers: headers.clone(),
        id_header: HeaderName::from_static("x-github-delivery"),
        ids: Ids::GithubDelivery(prefix.to_owned()),
        body: body.clone(),
    };
    let plan = Plan {
        connections: settings.connections,
        stop: settings.stop,
        record_answered: false,
        rate: None,
    };

    eprintln!(
        "hookgate-bench{}: {} connections, payload {} bytes, gateway {}",
        if cli.smoke { " --smoke" } else { "" },
        settings.connections,
        body.len(),
        gateway.display()
    );
    let mut report = Report {
        smoke: cli.smoke,
        settings: serde_json::json!({
            "connections": settings.connections,
            "stop": format!("{:?}", settings.stop),
            "payload_bytes": body.len(),
            "gateway": gateway.display().to_string(),
            "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        }),
        rows: Vec::new(),
        delivery: Vec::new(),
        drain: None,
        rounds: Vec::new(),
        notes: Vec::new(),
    };

    // Row 1: the baseline, this binary re-executed.
    report.rows.push(baseline_row(&exe, &target, plan).await?);

    // Rows 2-4: the gateway.
    let rows = [
        ("no-plugins", "hookgate: route, no plugins", false, false),
        ("plugins", "hookgate: github + github-teams", true, false),
        ("in-memory", "hookgate: as 3, durability off", true, true),
    ];
    let wanted = |key: &str| cli.only.is_empty() || cli.only.iter().any(|k| k == key);
    for (key, title, plugins, in_memory_store) in rows {
        if !wanted(key) {
            continue;
        }
        let setup = GatewaySetup {
            plugins,
            in_memory_store,
            postgres_url: None,
            destination: Destination::Discard,
            plugin_timeout: cli.smoke.then_some(SMOKE_PLUGIN_TIMEOUT),
            subscriptions: false,
            paused: false,
        };
        let dir = tempfile::tempdir()?;
        let mut server = start_gateway(&gateway, &dir, &setup)?;
        wait_ready(&mut server, "/healthz").await?;
        let gateway_target = target(server.addr(), key);
        let row = throughput_row(&mut server, gateway_target, plan, key, title.into()).await?;
        report.rows.push(row);
    }

    // Rows 5 and 6: HTTP delivery to a sink in this process, while ingest
    // runs; closed loop, then at a fixed rate.
    let capacity = report
        .rows
        .iter()
        .find(|r| r.key == "plugins")
        .map_or(0.0, |r| r.per_second);
    let fixed_rate = if cli.smoke {
        SMOKE_RATE
    } else {
        cli.rate.unwrap_or(capacity / 2.0).max(1.0)
    };
    let delivery_rows = [
        (
            "delivery",
            "hookgate: as 3, HTTP delivery to a sink".to_owned(),
            None,
        ),
        (
            "fixed-rate",
            format!("hookgate: as 5, at {fixed_rate:.0} req/s"),
            Some(fixed_rate),
        ),
    ];
    for (key, title, rate) in delivery_rows {
        if !wanted(key) {
            continue;
        }
        let (row, stats) = sink_row(
            &gateway,
            &target,
            SinkRow {
                key,
                title,
                rate,
                copies: 1,
            },
            plan,
            cli.smoke,
        )
        .await?;
        report.rows.push(row);
        report.delivery.push((key, stats));
    }

    // Not a row: the delivery side alone, draining a stored backlog.
    if wanted("drain") {
        let backlog = if cli.smoke {
            SMOKE_REQUESTS
        } else {
            DRAIN_BACKLOG
        };
        report.drain =
            Some(drain_backlog(&gateway, &target, settings.connections, backlog, cli.smoke).await?);
    }

    // Rows 7 and 8: the PostgreSQL store, when a server is given.
    match &cli.postgres_url {
        Some(admin_url) => {
            postgres_rows(
                &cli,
                admin_url,
                &gateway,
                &target,
                plan,
                &wanted,
                &mut report,
            )
            .await?;
        }
        None => report.notes.push(
            "PostgreSQL rows skipped: no --postgres-url (HOOKGATE_BENCH_POSTGRES_URL)".into(),
        ),
    }

    // Row 9: the peer, when installed.
    let webhook = server::webhook_binary(cli.webhook.clone());
    match webhook.as_deref().filter(|_| wanted("peer")) {
        Some(webhook) => report.rows.push(peer_row(webhook, &target, plan).await?),
        None if wanted("peer") => report.notes.push(
            "row 9 skipped: adnanh/webhook is not installed (apt-get install webhook)".into(),
        ),
        None => {}
    }

    // Rows 10 and 11: the sending side, after the others so that their
    // numbers stay what earlier notes call them.
    if wanted("publish") {
        publish_row(&gateway, None, "publish", plan, cli.smoke, &mut report).await?;
    }
    if let Some(admin_url) = cli
        .postgres_url
        .as_deref()
        .filter(|_| wanted("postgres-publish"))
    {
        let db = BenchDatabase::create(admin_url, "postgres-publish").await?;
        publish_row(
            &gateway,
            Some(db.url.clone()),
            "postgres-publish",
            plan,
            cli.smoke,
            &mut report,
        )
        .await?;
        db.drop_it().await?;
    }

    // Row 12: as row 5, each webhook to FAN_OUT destinations. Row 5's
    // deliveries per second can be no more than the webhooks it accepts
    // (one each); here delivery has more to do than ingest, at the same
    // time.
    if wanted("fan-out") {
        let title = format!("hookgate: as 5, each webhook to {FAN_OUT} destinations");
        let (row, stats) = sink_row(
            &gateway,
            &target,
            SinkRow {
                key: "fan-out",
                title,
                rate: None,
                copies: FAN_OUT,
            },
            plan,
            cli.smoke,
        )
        .await?;
        report.rows.push(row);
        report.delivery.push(("fan-out", stats));
    }

    // Not rows: rows 1, 5 and 9 again, back to back, for the two ratios
    // the delivery row is judged by (see `Round`).
    if wanted("rounds") {
        let rounds = if cli.smoke {
            cli.rounds.min(1)
        } else {
            cli.rounds
        };
        for n in 0..rounds {
            let round = ratio_round(
                &exe,
                &gateway,
                webhook.as_deref(),
                &target,
                plan,
                n,
                cli.smoke,
            )
            .await?;
            report.rounds.push(round);
        }
    }

    report.notes.push(
        "CPU s, CPU/req: the server process and the children it has reaped \
         (/proc/<pid>/stat utime + stime + cutime + cstime): adnanh/webhook's /bin/true \
         per request is counted; the baseline and the gateways start no children"
            .into(),
    );
    report.compute_ratios();
    if cli.smoke {
        report
            .notes
            .push("smoke run: checks that every row works; the numbers mean nothing".into());
    }
    print!("{}", report.table());
    if let Some(parent) = json_path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&json_path, serde_json::to_string_pretty(&report.json())?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    eprintln!("wrote {}", json_path.display());
    Ok(report)
}

/// Row 1: the baseline, this binary re-executed.
async fn baseline_row(
    exe: &std::path::Path,
    target: &impl Fn(std::net::SocketAddr, &str) -> Target,
    plan: Plan,
) -> anyhow::Result<Row> {
    let dir = tempfile::tempdir()?;
    let mut cmd = Command::new(exe);
    cmd.arg("baseline-server");
    let mut server = ServerProcess::spawn(cmd, &dir.path().join("baseline.log"))?;
    wait_ready(&mut server, "/").await?;
    let baseline = target(server.addr(), "baseline");
    throughput_row(
        &mut server,
        baseline,
        plan,
        "baseline",
        "baseline: axum, read body, HMAC, 202".into(),
    )
    .await
}

/// Row 9: the peer, adnanh/webhook.
async fn peer_row(
    webhook: &std::path::Path,
    target: &impl Fn(std::net::SocketAddr, &str) -> Target,
    plan: Plan,
) -> anyhow::Result<Row> {
    let dir = tempfile::tempdir()?;
    let mut server = server::spawn_webhook(webhook, dir.path(), payload::SECRET)?;
    wait_ready(&mut server, "/").await?;
    // adnanh/webhook serves its hook on the same path as the gateway's
    // route (`-hooks` id = `config::ROUTE`).
    let peer = target(server.addr(), "peer");
    throughput_row(
        &mut server,
        peer,
        plan,
        "peer",
        "adnanh/webhook: HMAC rule, /bin/true".into(),
    )
    .await
}

/// Round `n` (from 0) of [`Round`]s: the baseline, row 5 and the peer (when
/// installed), each on a fresh server, one right after the other. Row 5
/// runs in the middle and the other two swap places from one round to the
/// next, so a machine that speeds up or slows down steadily over a round
/// moves both of row 5's ratios the least it can.
async fn ratio_round(
    exe: &std::path::Path,
    gateway: &std::path::Path,
    webhook: Option<&std::path::Path>,
    target: &impl Fn(std::net::SocketAddr, &str) -> Target,
    plan: Plan,
    n: usize,
    smoke: bool,
) -> anyhow::Result<Round> {
    let peer_first = n % 2 == 1;
    eprintln!(
        "round {}: {}",
        n + 1,
        if peer_first {
            "peer, delivery, baseline"
        } else {
            "baseline, delivery, peer"
        }
    );
    let mut peer = None;
    let mut baseline = None;
    if peer_first {
        if let Some(webhook) = webhook {
            peer = Some(peer_row(webhook, target, plan).await?);
        }
    } else {
        baseline = Some(baseline_row(exe, target, plan).await?);
    }
    let (delivery, delivery_stats) = sink_row(
        gateway,
        target,
        SinkRow {
            key: "delivery",
            title: "hookgate: as 3, HTTP delivery to a sink".to_owned(),
            rate: None,
            copies: 1,
        },
        plan,
        smoke,
    )
    .await?;
    if peer_first {
        baseline = Some(baseline_row(exe, target, plan).await?);
    } else if let Some(webhook) = webhook {
        peer = Some(peer_row(webhook, target, plan).await?);
    }
    Ok(Round {
        peer_first,
        baseline: baseline.context("the baseline ran")?,
        delivery,
        delivery_stats,
        peer,
    })
}

/// Starts the gateway binary on a config from [`config::gateway_yaml`].
fn start_gateway(
    gateway: &std::path::Path,
    dir: &tempfile::TempDir,
    setup: &GatewaySetup,
) -> anyhow::Result<ServerProcess> {
    let config_path = dir.path().join("hookgate.yaml");
    std::fs::write(&config_path, config::gateway_yaml(dir.path(), setup))?;
    let mut cmd = Command::new(gateway);
    cmd.arg("serve")
        .arg("--config")
        .arg(&config_path)
        // Warnings and errors only: nothing per request, and `kind: log`
        // destinations stay silent.
        .env("RUST_LOG", "warn");
    ServerProcess::spawn(cmd, &dir.path().join("gateway.log"))
}

/// Waits until GET `path` answers (2xx for the gateway's `/healthz`; any
/// answer for the baseline's `/`).
async fn wait_ready(server: &mut ServerProcess, path: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(status) = load::get(server.addr(), path).await
            && (path == "/" || status.is_success())
        {
            return Ok(());
        }
        if server.exited() {
            bail!("server exited during start-up:\n{}", server.log_text());
        }
        if Instant::now() > deadline {
            bail!(
                "server not ready after {READY_TIMEOUT:?}:\n{}",
                server.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Rows 1-4: closed-loop load, CPU time sampled at the window's edges.
async fn throughput_row(
    server: &mut ServerProcess,
    target: Target,
    plan: Plan,
    key: &'static str,
    title: String,
) -> anyhow::Result<Row> {
    eprintln!("row {key}: {title} on {}", server.addr());
    let (window, handle) = load::start(Arc::new(target), plan);
    tokio::time::sleep_until(window.start.into()).await;
    let cpu_start = server.cpu_seconds()?;
    let (result, cpu_end) = match plan.stop {
        Stop::Timed { .. } => {
            tokio::time::sleep_until(window.end.into()).await;
            let cpu_end = server.cpu_seconds()?;
            (handle.await?, cpu_end)
        }
        Stop::Count { .. } => {
            let result = handle.await?;
            (result, server.cpu_seconds()?)
        }
    };
    if server.exited() {
        bail!("{key}: the server died:\n{}", server.log_text());
    }
    let row = Row::new(key, title, result, server.peak_rss()?, cpu_end - cpu_start);
    eprintln!(
        "row {key}: {:.0} req/s, {} errors{}",
        row.per_second,
        row.errors,
        if row.error_samples.is_empty() {
            String::new()
        } else {
            format!(" (e.g. {})", row.error_samples.join("; "))
        }
    );
    if row.errors > 0 {
        eprintln!("{}", log_tail(server));
    }
    Ok(row)
}

/// What a delivering gateway's row (5, 6 and 12) varies.
struct SinkRow {
    key: &'static str,
    title: String,
    /// Requests per second, or a closed loop.
    rate: Option<f64>,
    /// Destinations per webhook, all on the one sink.
    copies: usize,
}

/// A delivering gateway's row: github + github-teams, the route sending
/// each webhook to `copies` destinations, all on one sink in this process.
async fn sink_row(
    gateway: &std::path::Path,
    target: &impl Fn(std::net::SocketAddr, &str) -> Target,
    SinkRow {
        key,
        title,
        rate,
        copies,
    }: SinkRow,
    plan: Plan,
    smoke: bool,
) -> anyhow::Result<(Row, DeliveryStats)> {
    let sink = sink::Sink::start().await?;
    let setup = GatewaySetup::delivering(
        (1..=copies).map(|c| sink.url_of(c)).collect(),
        smoke.then_some(SMOKE_PLUGIN_TIMEOUT),
    );
    let dir = tempfile::tempdir()?;
    let mut server = start_gateway(gateway, &dir, &setup)?;
    wait_ready(&mut server, "/healthz").await?;
    let delivery_plan = Plan {
        record_answered: true,
        rate,
        ..plan
    };
    let delivery_target = target(server.addr(), key);
    delivery_row(
        &mut server,
        &sink,
        delivery_target,
        delivery_plan,
        key,
        title,
        copies,
    )
    .await
}

/// Rows 5, 6 and 12: load on a delivering gateway, then a wait for the sink
/// to see every owed delivery (`copies` for every 2xx, warm-up included;
/// one by one, see `delivery.rs`), then a watch of one lease for late
/// duplicates. Latency per delivery runs from the moment the client read
/// its 202 to the moment the sink saw the matching `webhook-id` (the GitHub
/// delivery id, unique per request) at that copy's URL; both are read from
/// this process's monotonic clock.
async fn delivery_row(
    server: &mut ServerProcess,
    sink: &sink::Sink,
    target: Target,
    plan: Plan,
    key: &'static str,
    title: String,
    copies: usize,
) -> anyhow::Result<(Row, DeliveryStats)> {
    eprintln!("row {key}: {title} on {}", server.addr());
    let (window, handle) = load::start(Arc::new(target), plan);
    tokio::time::sleep_until(window.start.into()).await;
    let cpu_start = server.cpu_seconds()?;
    let cpu_at_end = match plan.stop {
        Stop::Timed { .. } => {
            tokio::time::sleep_until(window.end.into()).await;
            Some(server.cpu_seconds()?)
        }
        Stop::Count { .. } => None,
    };
    let result = handle.await?;
    let load_ended = Instant::now();
    let cpu_seconds = match cpu_at_end {
        Some(end) => end,
        None => server.cpu_seconds()?,
    } - cpu_start;
    // Every 2xx (warm-up included) is a delivery the gateway owes: wait
    // until each of them arrived, then watch for late duplicates.
    let owed = delivery::owed(&result, copies);
    let deadline = load_ended + DELIVERY_DRAIN_LIMIT;
    delivery::drain(sink, &owed, deadline, || server.exited()).await;
    delivery::watch(|| server.exited()).await;
    if server.exited() {
        bail!("{key}: the gateway died:\n{}", server.log_text());
    }
    let stats = delivery::stats(&result, &sink.deliveries(), window, load_ended, copies);
    let row = Row::new(key, title, result, server.peak_rss()?, cpu_seconds);
    eprintln!(
        "row {key}: {:.0} req/s, {} accepted, {} delivered, {} owed, {} missing, {} duplicates, {:.0} deliveries/s while loading, {} errors",
        row.per_second,
        stats.accepted,
        stats.delivered,
        stats.owed,
        stats.missing,
        stats.duplicates,
        stats.per_second_while_loading,
        row.errors
    );
    if row.errors > 0 || stats.missing > 0 || stats.duplicates > 0 {
        eprintln!("{}", log_tail(server));
    }
    Ok((row, stats))
}

/// The delivery side alone. The delivery rows measure delivery while
/// ingest takes its share of the two cores, so their deliveries per second
/// can be no more than the webhooks accepted; this measures what the
/// dispatcher, the HTTP client and the attempt records do by themselves.
/// `backlog` webhooks are accepted for a paused destination (stored, not
/// sent), then a reload (the config without `paused`, and SIGHUP) lets
/// them go, and the bench times the sink from the first arrival to the
/// last and the gateway's CPU from the reload to the last.
async fn drain_backlog(
    gateway: &std::path::Path,
    target: &impl Fn(std::net::SocketAddr, &str) -> Target,
    connections: usize,
    backlog: u64,
    smoke: bool,
) -> anyhow::Result<report::DrainStats> {
    let sink = sink::Sink::start().await?;
    let mut setup = GatewaySetup {
        paused: true,
        ..GatewaySetup::delivering(vec![sink.url()], smoke.then_some(SMOKE_PLUGIN_TIMEOUT))
    };
    let dir = tempfile::tempdir()?;
    let mut server = start_gateway(gateway, &dir, &setup)?;
    wait_ready(&mut server, "/healthz").await?;
    eprintln!(
        "drain: {backlog} webhooks to a paused destination on {}",
        server.addr()
    );
    let plan = Plan {
        connections,
        stop: Stop::Count {
            requests: backlog,
            limit: COUNT_LIMIT,
        },
        record_answered: true,
        rate: None,
    };
    let (_, handle) = load::start(Arc::new(target(server.addr(), "drain")), plan);
    let load = handle.await?;
    if load.errors > 0 {
        bail!(
            "drain: {} of {backlog} webhooks refused ({:?})\n{}",
            load.errors,
            load.error_samples,
            log_tail(&server)
        );
    }
    let owed = delivery::owed(&load, 1);
    // Paused means none went out; one that did would make the drain look
    // faster than it is.
    if !sink.deliveries().is_empty() {
        bail!("drain: the paused destination was sent deliveries");
    }

    setup.paused = false;
    std::fs::write(
        dir.path().join("hookgate.yaml"),
        config::gateway_yaml(dir.path(), &setup),
    )?;
    let cpu_start = server.cpu_seconds()?;
    let reloaded = Instant::now();
    let status = Command::new("kill")
        .arg("-HUP")
        .arg(server.pid().to_string())
        .status()
        .context("running kill -HUP")?;
    if !status.success() {
        bail!("drain: kill -HUP {} failed", server.pid());
    }
    let all = delivery::drain(&sink, &owed, reloaded + DELIVERY_DRAIN_LIMIT, || {
        server.exited()
    })
    .await;
    let cpu_seconds = server.cpu_seconds()? - cpu_start;
    delivery::watch(|| server.exited()).await;
    if server.exited() {
        bail!("drain: the gateway died:\n{}", server.log_text());
    }
    let seen = sink.deliveries();
    let first = delivery::first_arrivals(&seen);
    let arrivals: Vec<Instant> = owed
        .iter()
        .filter_map(|id| first.get(id.as_str()).copied())
        .collect();
    let (earliest, latest) = (arrivals.iter().min(), arrivals.iter().max());
    let stats = report::DrainStats {
        backlog: owed.len() as u64,
        delivered: arrivals.len() as u64,
        duplicates: (seen.len() - first.len()) as u64,
        first_after: earliest.map(|t| t.saturating_duration_since(reloaded)),
        span: earliest
            .zip(latest)
            .map(|(a, b)| b.saturating_duration_since(*a)),
        cpu_seconds,
    };
    eprintln!(
        "drain: {} of {} delivered{}, {} duplicates, {} deliveries/s",
        stats.delivered,
        stats.backlog,
        if all {
            ""
        } else {
            " (not all within the limit)"
        },
        stats.duplicates,
        stats
            .per_second()
            .map_or("-".to_owned(), |r| format!("{r:.0}")),
    );
    if !all || stats.duplicates > 0 {
        eprintln!("{}", log_tail(&server));
    }
    Ok(stats)
}

/// A database of its own for a PostgreSQL row.
struct BenchDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl BenchDatabase {
    async fn create(admin_url: &str, key: &str) -> anyhow::Result<Self> {
        let name = format!(
            "hookgate_bench_{}_{}",
            key.replace('-', "_"),
            std::process::id()
        );
        let client = pg_connect(admin_url).await?;
        // Two statements: neither may run inside a transaction block.
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .context("dropping a stale database of this row")?;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .context("creating the row's database")?;
        let mut url =
            url::Url::parse(admin_url).context("--postgres-url must be a postgres:// URL")?;
        url.set_path(&format!("/{name}"));
        Ok(BenchDatabase {
            admin_url: admin_url.to_owned(),
            name,
            url: url.to_string(),
        })
    }

    async fn drop_it(self) -> anyhow::Result<()> {
        let client = pg_connect(&self.admin_url).await?;
        client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await
            .context("dropping the row's database")?;
        Ok(())
    }
}

async fn pg_connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .context("connecting to --postgres-url")?;
    tokio::spawn(conn);
    Ok(client)
}

/// Rows 7 and 8: row 3 on PostgreSQL, then two gateways on one PostgreSQL
/// delivering to one sink.
async fn postgres_rows(
    cli: &Cli,
    admin_url: &str,
    gateway: &std::path::Path,
    target: &dyn Fn(std::net::SocketAddr, &str) -> Target,
    plan: Plan,
    wanted: &dyn Fn(&str) -> bool,
    report: &mut Report,
) -> anyhow::Result<()> {
    let plugin_timeout = cli.smoke.then_some(SMOKE_PLUGIN_TIMEOUT);
    if wanted("postgres") {
        let db = BenchDatabase::create(admin_url, "postgres").await?;
        let setup = GatewaySetup {
            plugins: true,
            in_memory_store: false,
            postgres_url: Some(db.url.clone()),
            destination: Destination::Discard,
            plugin_timeout,
            subscriptions: false,
            paused: false,
        };
        let dir = tempfile::tempdir()?;
        let mut server = start_gateway(gateway, &dir, &setup)?;
        wait_ready(&mut server, "/healthz").await?;
        let pg_target = target(server.addr(), "postgres");
        let row = throughput_row(
            &mut server,
            pg_target,
            plan,
            "postgres",
            "hookgate: as 3, PostgreSQL store".into(),
        )
        .await?;
        report.rows.push(row);
        drop(server);
        db.drop_it().await?;
        if let Some(r) = report.ratio("postgres", "plugins") {
            report.notes.push(format!(
                "PostgreSQL store: {r:.2}x the durable SQLite row (3) in this run"
            ));
        }
    }

    // Two gateways, one database, one sink; half the connections each.
    let key = "postgres-2-delivery";
    if !wanted(key) {
        return Ok(());
    }
    let db = BenchDatabase::create(admin_url, key).await?;
    let sink = sink::Sink::start().await?;
    let setup = GatewaySetup {
        postgres_url: Some(db.url.clone()),
        ..GatewaySetup::delivering(vec![sink.url()], plugin_timeout)
    };
    let (dir_a, dir_b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let mut a = start_gateway(gateway, &dir_a, &setup)?;
    let mut b = start_gateway(gateway, &dir_b, &setup)?;
    wait_ready(&mut a, "/healthz").await?;
    wait_ready(&mut b, "/healthz").await?;
    let title = "hookgate: 2 gateways, one PostgreSQL, HTTP delivery to one sink".to_owned();
    eprintln!("row {key}: {title} on {} and {}", a.addr(), b.addr());
    let half = Plan {
        connections: (plan.connections / 2).max(1),
        record_answered: true,
        ..plan
    };
    let (window, load_a) = load::start(Arc::new(target(a.addr(), "pg2a")), half);
    let (_, load_b) = load::start(Arc::new(target(b.addr(), "pg2b")), half);
    tokio::time::sleep_until(window.start.into()).await;
    let cpu_start = a.cpu_seconds()? + b.cpu_seconds()?;
    let mut result = load_a.await?;
    let other = load_b.await?;
    let load_ended = Instant::now();
    let cpu = a.cpu_seconds()? + b.cpu_seconds()? - cpu_start;
    result.merge(other);
    let owed = delivery::owed(&result, 1);
    let deadline = load_ended + DELIVERY_DRAIN_LIMIT;
    delivery::drain(&sink, &owed, deadline, || a.exited() || b.exited()).await;
    delivery::watch(|| a.exited() || b.exited()).await;
    if a.exited() || b.exited() {
        bail!("{key}: a gateway died:\n{}\n{}", a.log_text(), b.log_text());
    }
    let d = delivery::stats(&result, &sink.deliveries(), window, load_ended, 1);
    let row = Row::new(key, title, result, a.peak_rss()?.max(b.peak_rss()?), cpu);
    eprintln!(
        "row {key}: {:.0} req/s, {:.0} deliveries/s combined while loading, {} owed, {} missing, {} duplicates",
        row.per_second, d.per_second_while_loading, d.owed, d.missing, d.duplicates
    );
    report.notes.push(format!(
        "2 gateways on one PostgreSQL: {:.0} deliveries/s combined at the sink while loading \
         ({:.0} req/s accepted), {} owed (every 2xx), {} missing{}, {} duplicates (watched {:.0} s after the drain)",
        d.per_second_while_loading,
        row.per_second,
        d.owed,
        d.missing,
        d.drained_after.map_or(" (not drained in time)".to_owned(), |t| format!(
            ", drained {:.1} s after the load",
            t.as_secs_f64()
        )),
        d.duplicates,
        d.watched.as_secs_f64(),
    ));
    report.rows.push(row);
    drop((a, b));
    db.drop_it().await?;
    Ok(())
}

/// Rows 10 and 11: `POST /v1/events` to [`SUBSCRIBERS`] subscriptions whose
/// callback is the sink in this process (2 KB of `data`, the GitHub
/// payload), on SQLite or PostgreSQL. Beside req/s, the deliveries the
/// sink saw while publishing: with each publish owing three deliveries,
/// the subscribers' lanes fill, which is what this row is for.
async fn publish_row(
    gateway: &std::path::Path,
    postgres_url: Option<String>,
    key: &'static str,
    plan: Plan,
    smoke: bool,
    report: &mut Report,
) -> anyhow::Result<()> {
    let sink = sink::Sink::start().await?;
    let engine = if postgres_url.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let setup = GatewaySetup {
        plugins: false,
        in_memory_store: false,
        postgres_url,
        destination: Destination::Discard,
        plugin_timeout: smoke.then_some(SMOKE_PLUGIN_TIMEOUT),
        subscriptions: true,
        paused: false,
    };
    let dir = tempfile::tempdir()?;
    let mut server = start_gateway(gateway, &dir, &setup)?;
    wait_ready(&mut server, "/healthz").await?;
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert("accesstoken", HeaderValue::from_static(config::API_KEY));
    for i in 0..SUBSCRIBERS {
        let subscribe = serde_json::json!({
            "objectId": "bench",
            "objectType": "Group",
            "eventTypes": ["*"],
            "callBackUrl": format!("{}?subscriber={i}", sink.url()),
        });
        let (status, body) = load::post(
            server.addr(),
            "/v1/webhook",
            &headers,
            Bytes::from(subscribe.to_string()),
        )
        .await?;
        if !status.is_success() {
            bail!(
                "{key}: subscribing answered {status}: {}\n{}",
                String::from_utf8_lossy(&body),
                log_tail(&server)
            );
        }
    }
    let data: serde_json::Value = serde_json::from_slice(&payload::issue_opened_small())?;
    let body = serde_json::json!({
        "objectId": "bench",
        "objectType": "Group",
        "eventType": "issues",
        "data": data,
    });
    let target = Target {
        addr: server.addr(),
        path: "/v1/events".into(),
        headers,
        // Not read by the gateway: a published event's id would make the
        // publish idempotent, and it is in the body, which stays the same.
        id_header: HeaderName::from_static("x-bench-request"),
        ids: Ids::Counted(key.to_owned()),
        body: Bytes::from(body.to_string()),
    };
    let title = format!("hookgate: /v1/events to {SUBSCRIBERS} subscribers, {engine}");
    let began = Instant::now();
    let row = throughput_row(&mut server, target, plan, key, title).await?;
    let ended = Instant::now();
    let (start, end) = match plan.stop {
        Stop::Timed { warmup, measure } => (began + warmup, began + warmup + measure),
        Stop::Count { .. } => (began, ended),
    };
    let delivered = sink
        .deliveries()
        .iter()
        .filter(|(_, at)| (start..=end).contains(at))
        .count();
    let per_second = delivered as f64 / end.duration_since(start).as_secs_f64().max(1e-3);
    eprintln!("row {key}: {per_second:.0} deliveries/s at the sink while publishing");
    report.notes.push(format!(
        "{key} ({engine}): {:.0} events/s published to {SUBSCRIBERS} subscribers, \
         {per_second:.0} deliveries/s at the sink while publishing",
        row.per_second
    ));
    report.rows.push(row);
    Ok(())
}

/// The last lines the server logged, to explain errors.
fn log_tail(server: &ServerProcess) -> String {
    let log = server.log_text();
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(10)..].join("\n");
    format!("last lines of the server's log:\n{tail}")
}
