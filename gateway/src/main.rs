//! The `hookgate` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use hookgate::config::{self, LogFormat};

/// Every request allocates and frees many small buffers on two threads
/// (headers, JSON, plugin copies, store rows): glibc's malloc was a tenth of
/// the gateway's CPU under load in `perf`, mimalloc's thread-local free
/// lists cost a fraction of that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "hookgate",
    version,
    about = "A WebAssembly-extensible webhook gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the gateway.
    Serve {
        /// Config file (YAML).
        #[arg(long, short, env = "HOOKGATE_CONFIG", default_value = "hookgate.yaml")]
        config: PathBuf,
    },
    /// Validate a config (including compiling its plugins) and print every
    /// problem with the path of its key. Exits 1 on any problem.
    Check {
        /// Config file (YAML).
        #[arg(long, short, env = "HOOKGATE_CONFIG", default_value = "hookgate.yaml")]
        config: PathBuf,
    },
    /// Requeue stored deliveries through the admin API of a running
    /// gateway: one event (`--event`), or every delivery matching the
    /// filters (e.g. `--status dead --destination teams --since 2026-11-01T00:00:00Z`).
    Replay(ReplayArgs),
    /// Copy the SQLite store to FILE, as of one commit, while a gateway
    /// may be running on it (`cp` of a live store can be stale or torn).
    /// For PostgreSQL use pg_dump.
    Backup(BackupArgs),
    /// Put a backup made by `hookgate backup` in place as the store of
    /// data_dir. The gateway must be stopped; the store there is moved
    /// aside to hookgate.db.before-restore-<ms>, not deleted.
    Restore(RestoreArgs),
    /// Print the config's JSON Schema (for editor completion).
    Schema,
    /// Print the OpenAPI document of /v1 and /admin.
    Openapi,
    /// List the built-in plugins.
    Plugins,
    /// Write your own plugin: `new`, then `build`, then `test`.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Subcommand, Debug)]
enum PluginCommand {
    /// Create a plugin project in ./NAME: source with a working example for
    /// the stage, sample fixtures with their expectations, and a README.
    New {
        /// Plugin name (lowercase, digits, dashes): routes use it as
        /// `plugin: NAME`.
        name: String,
        /// Source language.
        #[arg(long)]
        lang: hookgate::authoring::Lang,
        /// The stage the plugin implements.
        #[arg(long, default_value = "verify")]
        stage: hookgate::authoring::StageName,
    },
    /// Build the project's component (cargo, componentize-js or
    /// componentize-py) into target/NAME.wasm and check that the gateway
    /// loads it as a plugin of its stage.
    Build {
        /// The project (default: the current directory).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Then copy it into a gateway's plugins.dir: a config file, a
        /// folder holding hookgate.yaml, or the plugins folder itself. A
        /// gateway watching it (plugins.watch) loads it at once.
        #[arg(long, value_name = "CONFIG_DIR")]
        install: Option<PathBuf>,
    },
    /// Run the project's fixtures (fixtures/*.yaml) through the gateway's
    /// plugin host with its limits, print each outcome and
    /// `N passed, N failed`. Exits 1 on a failure.
    Test {
        /// The project (default: the current directory).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Run this fixture only; a file that is not YAML is a request
        /// body, handed to the plugin as it is.
        #[arg(long, value_name = "FILE")]
        request: Option<PathBuf>,
    },
}

#[derive(clap::Args, Debug)]
struct ReplayArgs {
    /// Config of the running gateway: its `listen` and `admin.token` are used.
    #[arg(long, short, env = "HOOKGATE_CONFIG", default_value = "hookgate.yaml")]
    config: PathBuf,
    /// Gateway base URL (default: from the config's `listen`).
    #[arg(long)]
    url: Option<String>,
    /// Admin token (default: the config's `admin.token`).
    #[arg(long, env = "HOOKGATE_ADMIN_TOKEN")]
    token: Option<String>,
    /// Replay this event only.
    #[arg(long)]
    event: Option<String>,
    /// Delivery state to replay: pending, delivered or dead.
    #[arg(long)]
    status: Option<String>,
    /// Only events of this route.
    #[arg(long)]
    route: Option<String>,
    /// Only deliveries to this destination.
    #[arg(long)]
    destination: Option<String>,
    /// Received at or after (RFC 3339 or epoch ms).
    #[arg(long)]
    since: Option<String>,
    /// Received before (RFC 3339 or epoch ms).
    #[arg(long)]
    until: Option<String>,
    /// Also move the replayed deliveries to this destination of the
    /// running config (with --destination, the one they leave): for a
    /// destination renamed or replaced.
    #[arg(long, requires = "destination")]
    to: Option<String>,
}

#[derive(clap::Args, Debug)]
struct BackupArgs {
    /// The gateway's config: its `store` and `data_dir` say where the store is.
    #[arg(long, short, env = "HOOKGATE_CONFIG", default_value = "hookgate.yaml")]
    config: PathBuf,
    /// The store's data_dir, instead of reading the config.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Replace FILE if it exists.
    #[arg(long)]
    force: bool,
    /// Where to write the copy (readable by its owner only: it holds the
    /// subscriptions' signing secrets).
    file: PathBuf,
}

#[derive(clap::Args, Debug)]
struct RestoreArgs {
    /// The gateway's config: its `store` and `data_dir` say where the store is.
    #[arg(long, short, env = "HOOKGATE_CONFIG", default_value = "hookgate.yaml")]
    config: PathBuf,
    /// The store's data_dir, instead of reading the config.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// A file `hookgate backup` wrote.
    file: PathBuf,
}

/// The runtime's worker threads: `TOKIO_WORKER_THREADS` when set (a
/// positive number, else an error rather than tokio's panic), or one fewer
/// than the machine's cores (as the process may use them, cgroup quota
/// included), at least one. The store's writer and checkpointer are OS
/// threads of their own, and every webhook waits for the writer's commit;
/// a worker per core left them competing with the workers for a core.
/// Measured with `hookgate-bench` on 2 cores, A/B alternating, one worker
/// against two, means of 2 pairs: HTTP delivery (row 5) 10,451 vs 8,892
/// req/s and 121 vs 154 µs CPU per request (6 more pairs of that row
/// alone: 9,315 vs 8,728, 135 vs 155 µs); verify + transform (row 3)
/// 13,622 vs 12,892; ingest with no plugins (row 2), where the workers do
/// little, 14,289 vs 15,646: there the one worker is the limit.
fn worker_threads() -> Result<usize, String> {
    if let Some(v) = std::env::var_os("TOKIO_WORKER_THREADS") {
        return match v.to_str().map(str::trim).map(str::parse::<usize>) {
            Some(Ok(n)) if n > 0 => Ok(n),
            _ => Err(format!(
                "TOKIO_WORKER_THREADS must be a positive number of threads, not {v:?}"
            )),
        };
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(cores.saturating_sub(1).max(1))
}

/// The async runtime with `workers` worker threads. One worker is tokio's
/// current-thread scheduler, driven by the main thread: the multi-thread
/// scheduler with one worker pays for work stealing it cannot do (atomic
/// run queues, an injection queue and a second thread parked beside the
/// worker) on every task it schedules. Measured with `hookgate-bench`,
/// one LTO build switching flavour by an environment variable,
/// alternated, current-thread against multi-thread: HTTP delivery (row 5,
/// 6 pairs) 12,100 vs 12,018 req/s, 106 vs 111 µs CPU per request; no
/// plugins (row 2, 2 pairs) 21,888 vs 20,519 req/s, 61 vs 66 µs;
/// verify + transform (row 3) 15,527 vs 14,856 req/s, 88 vs 95 µs.
fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    }
}

/// Colors in the log only on a terminal: a log written to a file, a pipe
/// or journald would otherwise carry escape codes between every field's
/// name and value, which defeats `grep key=value`.
fn stderr_is_terminal() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let workers = match worker_threads() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("hookgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match runtime(workers) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hookgate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(config::json_schema()).expect("schema is JSON")
            );
            ExitCode::SUCCESS
        }
        Command::Openapi => {
            println!("{}", hookgate::openapi::json());
            ExitCode::SUCCESS
        }
        Command::Plugins => {
            for name in hookgate::plugin::builtin::names() {
                println!("{name}");
            }
            ExitCode::SUCCESS
        }
        Command::Plugin(cmd) => runtime.block_on(plugin(cmd)),
        Command::Check { config } => runtime.block_on(check(config)),
        Command::Replay(args) => runtime.block_on(replay(args)),
        Command::Backup(args) => backup(args),
        Command::Restore(args) => restore(args),
        Command::Serve { config } => runtime.block_on(serve(config)),
    }
}

async fn plugin(cmd: PluginCommand) -> ExitCode {
    use hookgate::authoring::{self, AuthoringError, Project};

    // Plugin log lines (`host.log`) and the host's warnings, on stderr.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,hookgate::plugin=debug"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(stderr_is_terminal())
        .init();
    let fail = |e: AuthoringError| {
        eprintln!("hookgate plugin: {e}");
        ExitCode::FAILURE
    };
    match cmd {
        PluginCommand::New { name, lang, stage } => {
            match authoring::scaffold::new_project(Path::new("."), &name, lang, stage) {
                Ok(dir) => {
                    println!(
                        "created {} ({} {} plugin)",
                        dir.display(),
                        lang.as_str(),
                        stage.as_str()
                    );
                    println!("next: hookgate plugin build {name} && hookgate plugin test {name}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        PluginCommand::Build { dir, install } => {
            let project = match Project::open(&dir) {
                Ok(p) => p,
                Err(e) => return fail(e),
            };
            // Find the gateway before spending a build on a wrong path.
            let target = match install
                .as_deref()
                .map(authoring::build::install_target)
                .transpose()
            {
                Ok(t) => t,
                Err(e) => return fail(e),
            };
            let built = match authoring::build::build(&project).await {
                Ok(b) => b,
                Err(e) => return fail(e),
            };
            let stages: Vec<String> = built
                .plugin
                .stages()
                .iter()
                .map(|s| s.to_string())
                .collect();
            println!(
                "built {} ({:.1} MB) in {:.1} s: a hookgate:plugin@{} plugin, version {}, stages {} (the gateway compiled it in {:.1} s)",
                built.component.display(),
                built.size as f64 / 1e6,
                built.build_time.as_secs_f64(),
                built.plugin.wit_version(),
                built.plugin.version(),
                stages.join(", "),
                built.plugin.load_time().as_secs_f64(),
            );
            if let Some(target) = target {
                match authoring::build::install(&project, &target).await {
                    Ok(dest) => println!("installed {}", dest.display()),
                    Err(e) => return fail(e),
                }
            }
            ExitCode::SUCCESS
        }
        PluginCommand::Test { dir, request } => {
            let project = match Project::open(&dir) {
                Ok(p) => p,
                Err(e) => return fail(e),
            };
            let mut out = String::new();
            let result = authoring::runner::run(&project, request.as_deref(), &mut out).await;
            print!("{out}");
            match result {
                Ok(summary) => {
                    println!("{}", summary.line());
                    if summary.failed == 0 {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => fail(e),
            }
        }
    }
}

async fn check(path: PathBuf) -> ExitCode {
    let report = |errors: &config::ConfigErrors| {
        eprintln!("{}: {} problem(s)", path.display(), errors.0.len());
        for e in &errors.0 {
            eprintln!("  {e}");
        }
        ExitCode::FAILURE
    };
    // A config that does not parse, or whose keys and types are wrong,
    // stops here: nothing past this has a config to look at.
    let cfg = match config::typed_from_path(&path) {
        Ok(c) => c,
        Err(errors) => {
            let code = report(&errors);
            // Say so, or a clean second run after these are fixed looks
            // like a promise broken by the third.
            eprintln!(
                "(checked: YAML, ${{VAR}}s, keys and types; the checks across keys, \
                 the plugins' `with:` blocks and TLS files run once these are fixed)"
            );
            return code;
        }
    };
    // What is wrong across keys, in the TLS files and in the plugins'
    // `with:` blocks is reported together, so that one run shows what a
    // start would refuse. The plugins are loaded even when the first
    // check failed, unless what failed is a limit they would run under;
    // an error that repeats one already found is left out.
    let mut problems = config::validate(&cfg).err().map_or_else(Vec::new, |e| e.0);
    let unloadable = !config::plugin_limits(&cfg).is_empty();
    // The files store.url names (sslrootcert, sslcert, sslkey) are read
    // as the gateway reads them at start: a missing or unusable one is
    // found here, not by the first start on the production host.
    if let Some(message) = store_tls_files(&cfg) {
        problems.push(config::ConfigError {
            path: "store.url".into(),
            message,
        });
    }
    if unloadable {
        return report(&config::ConfigErrors(problems));
    }
    match hookgate::prepare(cfg, None).await {
        Ok((_, snapshot)) if problems.is_empty() => {
            println!(
                "{}: ok ({} routes, {} destinations, {} plugins)",
                path.display(),
                snapshot.routes.len(),
                snapshot.destinations.len(),
                snapshot.plugins.len()
            );
            ExitCode::SUCCESS
        }
        Ok(_) => report(&config::ConfigErrors(problems)),
        Err(errors) => {
            for e in errors.0 {
                if !problems.contains(&e) {
                    problems.push(e);
                }
            }
            report(&config::ConfigErrors(problems))
        }
    }
}

/// What is wrong with the TLS files the PostgreSQL store's URL names, if
/// anything. The URL itself was checked with the config.
fn store_tls_files(cfg: &config::GatewayConfig) -> Option<String> {
    use hookgate::store::postgres::tls;
    if cfg.store.engine != config::StoreEngine::Postgres {
        return None;
    }
    let (_, options) = tls::split(cfg.store.url.as_deref()?).ok()?;
    tls::connector(&options).err()
}

async fn serve(path: PathBuf) -> ExitCode {
    let cfg = match config::from_path(&path) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{}: invalid configuration:", path.display());
            for e in &errors.0 {
                eprintln!("  {e}");
            }
            return ExitCode::FAILURE;
        }
    };
    let tracing_guard = init_tracing(cfg.log.format);

    let listener = match tokio::net::TcpListener::bind(&cfg.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(listen = cfg.listen, "cannot listen: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Ok(addr) = listener.local_addr() {
        // A plain line on stdout for scripts and tests (the port may be 0).
        println!("hookgate listening on http://{addr}");
    }

    let shutdown = CancellationToken::new();
    tokio::spawn(on_signal(shutdown.clone()));
    let code = match hookgate::run(cfg, Some(path), listener, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    };
    flush_traces(tracing_guard).await;
    code
}

/// What must outlive the gateway for its traces (the `otel` feature).
#[cfg(feature = "otel")]
type TracingGuard = Option<hookgate::otel::OtelGuard>;
#[cfg(not(feature = "otel"))]
type TracingGuard = NoTraces;

/// Without `otel` nothing needs flushing.
#[cfg(not(feature = "otel"))]
#[derive(Debug)]
struct NoTraces;

/// Exports the spans still batched (off the runtime's workers: it blocks).
async fn flush_traces(guard: TracingGuard) {
    #[cfg(feature = "otel")]
    if let Some(guard) = guard {
        let _ = tokio::task::spawn_blocking(move || guard.shutdown()).await;
    }
    #[cfg(not(feature = "otel"))]
    let NoTraces = guard;
}

/// The data_dir of the SQLite store `verb` works on: `--data-dir`, or the
/// config's (read as `serve` reads it), which must use the SQLite engine.
fn sqlite_data_dir(
    config: &Path,
    data_dir: Option<PathBuf>,
    verb: &str,
) -> Result<PathBuf, String> {
    if let Some(dir) = data_dir {
        return Ok(dir);
    }
    let cfg =
        config::from_path(config).map_err(|errors| format!("{}: {errors}", config.display()))?;
    match cfg.store.engine {
        config::StoreEngine::Sqlite => Ok(cfg.data_dir),
        config::StoreEngine::Memory => Err(format!(
            "store.engine is memory: it keeps nothing across restarts, so there is nothing to {verb}"
        )),
        config::StoreEngine::Postgres => Err(format!(
            "store.engine is postgres: {verb} its database with pg_dump / pg_restore (or your provider's snapshots)"
        )),
    }
}

fn show_contents(c: &hookgate::store::sqlite::backup::Contents) -> String {
    format!(
        "{} events, {} deliveries unfinished, {} subscriptions; schema {}, {:.1} MiB",
        c.events,
        c.unfinished,
        c.subscriptions,
        c.schema,
        c.bytes as f64 / (1024.0 * 1024.0)
    )
}

fn backup(args: BackupArgs) -> ExitCode {
    let dir = match sqlite_data_dir(&args.config, args.data_dir, "back up") {
        Ok(d) => d,
        Err(e) => {
            eprintln!("hookgate backup: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = std::time::Instant::now();
    match hookgate::store::sqlite::backup::backup(&dir, &args.file, args.force) {
        Ok(c) => {
            println!(
                "backed up {} to {} in {:.1}s: {}",
                dir.display(),
                c.path.display(),
                started.elapsed().as_secs_f64(),
                show_contents(&c)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hookgate backup: {e}");
            ExitCode::FAILURE
        }
    }
}

fn restore(args: RestoreArgs) -> ExitCode {
    let dir = match sqlite_data_dir(&args.config, args.data_dir, "restore") {
        Ok(d) => d,
        Err(e) => {
            eprintln!("hookgate restore: {e}");
            return ExitCode::FAILURE;
        }
    };
    match hookgate::store::sqlite::backup::restore(&dir, &args.file) {
        Ok((c, aside)) => {
            println!(
                "restored {} as {}: {}",
                args.file.display(),
                c.path.display(),
                show_contents(&c)
            );
            if let Some(aside) = aside {
                println!("the store it replaced is at {}", aside.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hookgate restore: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn replay(args: ReplayArgs) -> ExitCode {
    let cfg = if args.url.is_none() || args.token.is_none() {
        match config::from_path(&args.config) {
            Ok(c) => Some(c),
            Err(errors) => {
                eprintln!("{}: {errors}", args.config.display());
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let base = args
        .url
        .clone()
        .or_else(|| cfg.as_ref().map(|c| format!("http://{}", c.listen)))
        .unwrap_or_default();
    let Some(token) = args
        .token
        .clone()
        .or_else(|| cfg.as_ref().and_then(|c| c.admin.token.clone()))
    else {
        eprintln!("hookgate replay: no admin token (set admin.token in the config, or --token)");
        return ExitCode::FAILURE;
    };
    let (path, query): (String, Vec<(&str, &Option<String>)>) = match &args.event {
        Some(id) => (
            format!("/admin/events/{id}/replay"),
            vec![("destination", &args.destination), ("to", &args.to)],
        ),
        None => (
            "/admin/replay".to_owned(),
            vec![
                ("status", &args.status),
                ("route", &args.route),
                ("destination", &args.destination),
                ("since", &args.since),
                ("until", &args.until),
                ("to", &args.to),
            ],
        ),
    };
    let query: Vec<(&str, &str)> = query
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect();
    #[expect(
        clippy::disallowed_methods,
        reason = "the CLI's admin client, not delivery"
    )]
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .query(&query)
        .send()
        .await;
    match resp {
        Ok(r) => {
            let ok = r.status().is_success();
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            if ok {
                println!("{body}");
                ExitCode::SUCCESS
            } else {
                eprintln!("hookgate replay: {status}: {body}");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("hookgate replay: cannot reach {base}: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(feature = "otel"))]
fn init_tracing(format: LogFormat) -> TracingGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(stderr_is_terminal());
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    NoTraces
}

/// With `otel`: the same log, its filter on the log layer alone, beside
/// the layer that exports the stage spans (when an OTLP endpoint is set).
#[cfg(feature = "otel")]
fn init_tracing(format: LogFormat) -> TracingGuard {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(stderr_is_terminal());
    let log = match format {
        LogFormat::Json => log.json().boxed(),
        LogFormat::Text => log.boxed(),
    };
    let (otel, guard) = match hookgate::otel::layer() {
        Ok(Some((layer, guard))) => (Some(layer), Some(guard)),
        Ok(None) => (None, None),
        Err(e) => {
            eprintln!("hookgate: OpenTelemetry export is off: {e}");
            (None, None)
        }
    };
    tracing_subscriber::registry()
        .with(log.with_filter(filter))
        .with(otel)
        .init();
    guard
}

/// Cancels `token` on SIGTERM or SIGINT.
async fn on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("cannot listen for SIGTERM: {e}");
                    let _ = ctrl_c.await;
                    token.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested");
    token.cancel();
}
