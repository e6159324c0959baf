//! `metaproxy`: parse the configuration (exit 64 when it is invalid, before binding anything),
//! start logging, run the proxy, drain on SIGTERM or SIGINT.

use std::process::ExitCode;

use metaproxy::Proxy;
use metaproxy::config::{Cli, Config};
use metaproxy::startup;
use tokio::signal::unix::{SignalKind, signal};

const PROGRAM: &str = "metaproxy";

fn main() -> ExitCode {
    let cli: Cli = match startup::parse_args(PROGRAM) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let check_only = cli.check_config;
    let config = match Config::load(cli) {
        Ok(c) => c,
        Err(e) => return startup::refuse(PROGRAM, e),
    };
    if check_only {
        println!("configuration OK: {}", config.summary());
        return ExitCode::SUCCESS;
    }
    startup::init_logging(&config.log, config.log_format);
    match startup::runtime(PROGRAM) {
        Ok(runtime) => runtime.block_on(run(config)),
        Err(code) => code,
    }
}

async fn run(config: Config) -> ExitCode {
    tracing::info!(version = env!("CARGO_PKG_VERSION"), config = %config.summary(), "metaproxy starting");
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            eprintln!("metaproxy: cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    let proxy = match Proxy::start(&config).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("metaproxy: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(listen = %proxy.addr(), admin = %proxy.admin_addr(), "serving");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    proxy.drain().await;
    ExitCode::SUCCESS
}
