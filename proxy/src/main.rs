//! `metaproxy`: parse the configuration (exit 64 when it is invalid, before binding anything),
//! start logging, run the proxy, drain on SIGTERM or SIGINT.

use std::process::ExitCode;

use clap::Parser;
use metaproxy::Proxy;
use metaproxy::config::{Cli, Config, LogFormat};
use tokio::signal::unix::{SignalKind, signal};

const EX_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let reason = e.to_string();
            eprintln!(
                "metaproxy: invalid configuration: {}",
                reason.lines().next().unwrap_or_default()
            );
            return ExitCode::from(EX_CONFIG);
        }
    };
    let check_only = cli.check_config;
    let config = match Config::load(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("metaproxy: invalid configuration: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    if check_only {
        println!("configuration OK: {}", config.summary());
        return ExitCode::SUCCESS;
    }
    if let Err(e) = init_logging(&config) {
        eprintln!("metaproxy: invalid configuration: log: {e}");
        return ExitCode::from(EX_CONFIG);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("metaproxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(config))
}

fn init_logging(config: &Config) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log).map_err(|e| e.to_string())?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
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
