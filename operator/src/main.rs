//! `metaproxy-operator`: settings (exit 64 when they are invalid, before binding anything;
//! `--check-config` prints them and exits), logging, the operator, then a clean stop on SIGTERM
//! or SIGINT. See [`metaproxy::startup`] and [`metaproxy_operator::App`].

use std::process::ExitCode;

use metaproxy::startup;
use metaproxy_operator::App;
use metaproxy_operator::config::Config;

fn main() -> ExitCode {
    startup::main(run)
}

async fn run(config: Config) -> ExitCode {
    let mut app = match App::start(&config).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("metaproxy-operator: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let failure = tokio::select! {
        signal = startup::terminated() => {
            tracing::info!(signal, "stopping");
            None
        }
        e = app.failed() => Some(e),
    };
    let stopped = app.shutdown().await;
    match failure.map(Err).unwrap_or(stopped) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "stopped with an error");
            ExitCode::FAILURE
        }
    }
}
