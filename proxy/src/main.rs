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
    let signal = startup::terminated().await;
    tracing::info!(signal, "stopping");
    proxy.drain().await;
    ExitCode::SUCCESS
}
