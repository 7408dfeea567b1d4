//! The `hookgate` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use hookgate::config::{self, LogFormat};

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
    /// Print the config's JSON Schema (for editor completion).
    Schema,
    /// List the built-in plugins.
    Plugins,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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
        Command::Plugins => {
            for name in hookgate::plugin::builtin::names() {
                println!("{name}");
            }
            ExitCode::SUCCESS
        }
        Command::Check { config } => runtime.block_on(check(config)),
        Command::Serve { config } => runtime.block_on(serve(config)),
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
    let cfg = match config::from_path(&path) {
        Ok(c) => c,
        Err(errors) => return report(&errors),
    };
    match hookgate::prepare(cfg, None).await {
        Ok((_, snapshot)) => {
            println!(
                "{}: ok ({} routes, {} destinations, {} plugins)",
                path.display(),
                snapshot.routes.len(),
                snapshot.destinations.len(),
                snapshot.plugins.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => report(&errors),
    }
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
    init_tracing(cfg.log.format);

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
    match hookgate::run(cfg, Some(path), listener, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
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
