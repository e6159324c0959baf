//! What both binaries (`metaproxy`, `metaproxy-operator`) do before they serve: read the command
//! line, refusing a bad configuration with one line and exit status 64 (sysexits `EX_USAGE`)
//! before any port is bound; start logging; build the runtime.

use std::fmt::Display;
use std::process::ExitCode;

use serde::Serialize;

/// Exit status for an invalid configuration.
pub const EXIT_CONFIG: u8 = 64;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// `text` (the default) or `json`.
    pub fn parse(value: Option<&str>) -> Result<LogFormat, String> {
        match value.unwrap_or("text") {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("log-format: {other:?} is not text or json")),
        }
    }
}

/// Parses the command line. `Err` carries the status to exit with: 0 after `--help` or
/// `--version`, 64 (with one line on stderr) for flags that do not parse.
pub fn parse_args<A: clap::Parser>(program: &str) -> Result<A, ExitCode> {
    match A::try_parse() {
        Ok(args) => Ok(args),
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            Err(ExitCode::SUCCESS)
        }
        Err(e) => {
            let reason = e.to_string();
            Err(refuse(program, reason.lines().next().unwrap_or_default()))
        }
    }
}

/// Says why the configuration is refused, in one line, and gives exit status 64.
pub fn refuse(program: &str, reason: impl Display) -> ExitCode {
    eprintln!("{program}: invalid configuration: {reason}");
    ExitCode::from(EXIT_CONFIG)
}

/// Checks a `tracing` filter such as `info` or `metaproxy=debug`.
pub fn check_log_filter(filter: &str) -> Result<(), String> {
    tracing_subscriber::EnvFilter::try_new(filter)
        .map(|_| ())
        .map_err(|e| format!("log: {filter:?}: {e}"))
}

/// Logs to stderr with `filter` (checked beforehand with [`check_log_filter`]).
pub fn init_logging(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// The multi-threaded runtime, or the status to exit with when it cannot be built.
pub fn runtime(program: &str) -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("{program}: cannot start the runtime: {e}");
            ExitCode::FAILURE
        })
}
