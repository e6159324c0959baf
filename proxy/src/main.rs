//! `metaproxy`: settings (exit 64 when they are invalid, before binding anything), logging, the
//! proxy, then a drain on SIGTERM or SIGINT. See [`metaproxy::startup`].

use std::process::ExitCode;

use metaproxy::Proxy;
use metaproxy::config::Config;
use metaproxy::startup;

fn main() -> ExitCode {
    startup::main(run)
}

async fn run(config: Config) -> ExitCode {
    let proxy = match Proxy::start(&config).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("metaproxy: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(listen = %proxy.addr(), admin = %proxy.admin_addr(), "serving");
    let failed = proxy.failed();
    let code = tokio::select! {
        signal = startup::terminated() => {
            tracing::info!(signal, "stopping");
            ExitCode::SUCCESS
        }
        e = failed => {
            tracing::error!(error = %e, "client listener stopped; exiting");
            ExitCode::FAILURE
        }
    };
    proxy.drain().await;
    code
}
