//! What both binaries (`metaproxy`, `metaproxy-operator`) do before and around serving: read the
//! settings (flags, over environment variables, over a YAML file whose keys are the flag names),
//! refuse a bad configuration with one line and exit status 64 (sysexits `EX_USAGE`) before any
//! port is bound, print it for `--check-config`, start logging, build the runtime, and wait for
//! SIGTERM or SIGINT.
//!
//! A binary declares its settings once, as one type that derives both the flags (`clap`) and the
//! file form (`serde`, kebab-case keys, unknown keys refused), and a validated configuration type
//! that implements [`Startup`]. Durations everywhere (both binaries and the load tool) use one
//! grammar, [`parse_duration`].

use std::fmt::Display;
use std::future::Future;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Exit status for an invalid configuration.
pub const EXIT_CONFIG: u8 = 64;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
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

/// A binary's validated configuration, built from its settings type.
pub trait Startup: Sized {
    /// The program name, for messages.
    const PROGRAM: &'static str;
    /// The settings: flags and environment variables (`clap`), and the same keys in the file
    /// named by `--config` (`serde`).
    type Settings: clap::Parser + Serialize + DeserializeOwned;

    /// `--config`, when given.
    fn config_file(settings: &Self::Settings) -> Option<&Path>;
    /// `--check-config`: validate, print, exit.
    fn check_only(settings: &Self::Settings) -> bool;
    /// Validates the layered settings. The error is one line naming the setting.
    fn from_settings(settings: Self::Settings) -> Result<Self, String>;
    /// The effective configuration as one line, for `--check-config` and the start-up log.
    fn summary(&self) -> String;
    /// The `tracing` filter (checked by [`check_log_filter`]) and the format.
    fn logging(&self) -> (&str, LogFormat);
    /// What the process needs from its environment before serving (the open-file limit, say),
    /// done after validation and before logging starts: a line to log once it has, or the
    /// one-line reason the binary cannot start (exit 64, nothing bound).
    fn prepare(&self) -> Result<Option<String>, String> {
        Ok(None)
    }
}

/// Parses flags and environment, layers them over the file, validates: the configuration, or
/// the one-line reason it is refused. What `main` does before anything else, and what tests of
/// the configuration call.
pub fn load<C: Startup>(settings: C::Settings) -> Result<C, String> {
    let settings = match C::config_file(&settings).map(Path::to_path_buf) {
        Some(path) => layer(settings, Some(&path))?,
        None => settings,
    };
    C::from_settings(settings)
}

/// The whole life of a binary: settings, refusal (exit 64) or `--check-config`, logging, the
/// runtime, then `run`, whose exit code is the process's.
pub fn main<C, F>(run: impl FnOnce(C) -> F) -> ExitCode
where
    C: Startup,
    F: Future<Output = ExitCode>,
{
    let program = C::PROGRAM;
    let settings: C::Settings = match parse_args(program) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let check_only = C::check_only(&settings);
    let config = match load::<C>(settings) {
        Ok(c) => c,
        Err(e) => return refuse(program, e),
    };
    if check_only {
        println!("configuration OK: {}", config.summary());
        return ExitCode::SUCCESS;
    }
    let prepared = match config.prepare() {
        Ok(note) => note,
        Err(e) => return refuse(program, e),
    };
    let (filter, format) = config.logging();
    init_logging(filter, format);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), config = %config.summary(), "{program} starting");
    if let Some(note) = prepared {
        tracing::info!("{note}");
    }
    match runtime(program) {
        Ok(runtime) => runtime.block_on(run(config)),
        Err(code) => code,
    }
}

/// Resolves when the process is asked to stop (SIGTERM or SIGINT), naming the signal.
pub async fn terminated() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => {
            tracing::warn!("cannot install the SIGTERM handler; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
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

/// `flags` over the YAML file at `file`: a setting given as a flag or an environment variable
/// (not null, not an empty list) wins; the file fills in the rest. The file uses the settings
/// type's own keys, so a misspelt key is refused there.
pub fn layer<S: Serialize + DeserializeOwned>(flags: S, file: Option<&Path>) -> Result<S, String> {
    let Some(path) = file else {
        return Ok(flags);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("config: cannot read {}: {e}", path.display()))?;
    let from_file: Value = if text.trim().is_empty() {
        Value::Object(Default::default())
    } else {
        // Through the settings type first, so unknown keys and wrong types are refused with the
        // file named.
        let typed: S = serde_saphyr::from_str(&text).map_err(|e| {
            let first_line = e.to_string().lines().next().unwrap_or_default().to_owned();
            format!("config: {}: {first_line}", path.display())
        })?;
        to_value(&typed)?
    };
    let mut merged = from_file;
    overlay(&mut merged, to_value(&flags)?);
    serde_json::from_value(merged).map_err(|e| format!("config: {}: {e}", path.display()))
}

fn to_value<S: Serialize>(s: &S) -> Result<Value, String> {
    serde_json::to_value(s).map_err(|e| format!("settings cannot be represented: {e}"))
}

/// Copies every given setting of `over` onto `base`.
fn overlay(base: &mut Value, over: Value) {
    let (Value::Object(base), Value::Object(over)) = (base, over) else {
        return;
    };
    for (key, value) in over {
        let given = match &value {
            Value::Null => false,
            Value::Array(items) => !items.is_empty(),
            _ => true,
        };
        if given {
            base.insert(key, value);
        }
    }
}

/// Parses a duration: an amount and a unit, `500ms`, `1.5s`, `3s`, `10m`, `1h 30m` (humantime's
/// grammar). A bare number is refused: `3` could mean seconds or milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration like 500ms, 3s, 10m ({e})"))
}

/// A duration as the settings write it: `1500ms`, `3s`, `10m`.
pub fn format_duration(d: Duration) -> String {
    let us = d.as_micros();
    if !us.is_multiple_of(1000) {
        return format!("{us}us");
    }
    let ms = us / 1000;
    if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else if !ms.is_multiple_of(60_000) || ms == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{}m", ms / 60_000)
    }
}

/// A duration setting: `value`, else `default`; zero is refused. `field` names the setting in
/// the error.
pub fn duration_setting(
    field: &str,
    value: Option<&str>,
    default: Duration,
) -> Result<Duration, String> {
    let d = match value {
        Some(text) => parse_duration(text).map_err(|e| format!("{field}: {e}"))?,
        None => default,
    };
    if d.is_zero() {
        return Err(format!("{field}: must be more than zero"));
    }
    Ok(d)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_have_one_grammar() {
        let ok = [
            ("500ms", Duration::from_millis(500)),
            ("1.5s", Duration::from_millis(1500)),
            ("3s", Duration::from_secs(3)),
            ("10m", Duration::from_secs(600)),
            ("1h 30m", Duration::from_secs(5400)),
            (" 2s ", Duration::from_secs(2)),
        ];
        for (text, want) in ok {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        for bad in ["3", "s", "", "10 parsecs", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn durations_print_in_the_largest_exact_unit() {
        let cases = [
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_secs(3), "3s"),
            (Duration::from_secs(600), "10m"),
            (Duration::from_secs(90), "90s"),
            (Duration::ZERO, "0s"),
            (Duration::from_micros(1500), "1500us"),
        ];
        for (d, want) in cases {
            assert_eq!(format_duration(d), want);
            assert_eq!(parse_duration(want), Ok(d), "{want} reads back");
        }
    }

    #[test]
    fn duration_settings_name_the_field_and_refuse_zero() {
        let d = Duration::from_secs(1);
        assert_eq!(duration_setting("x", None, d), Ok(d));
        assert_eq!(
            duration_setting("x", Some("250ms"), d),
            Ok(Duration::from_millis(250))
        );
        let e = duration_setting("idle-timeout", Some("0s"), d).expect_err("zero");
        assert!(e.starts_with("idle-timeout: "), "{e}");
        let e = duration_setting("idle-timeout", Some("3"), d).expect_err("no unit");
        assert!(e.starts_with("idle-timeout: "), "{e}");
    }

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case", deny_unknown_fields)]
    struct Demo {
        listen: Option<String>,
        max_connections: Option<usize>,
        #[serde(default)]
        zones: Vec<String>,
    }

    #[test]
    fn flags_win_and_the_file_fills_in() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.yaml");
        std::fs::write(&file, "listen: a:1\nmax-connections: 5\nzones: [z1]\n").expect("write");
        let flags = Demo {
            listen: Some("b:2".into()),
            ..Demo::default()
        };
        let got = layer(flags, Some(&file)).expect("layers");
        assert_eq!(
            got,
            Demo {
                listen: Some("b:2".into()),
                max_connections: Some(5),
                zones: vec!["z1".into()],
            }
        );
        let flags = Demo {
            zones: vec!["z2".into()],
            ..Demo::default()
        };
        assert_eq!(
            layer(flags, Some(&file)).expect("layers").zones,
            ["z2"],
            "a list given as flags replaces the file's"
        );
    }

    #[test]
    fn the_file_is_refused_with_its_name_and_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.yaml");
        std::fs::write(&file, "listen: a:1\nlisten-typo: 1\n").expect("write");
        let e = layer(Demo::default(), Some(&file)).expect_err("unknown key");
        assert!(
            e.contains("c.yaml") && e.contains("listen-typo") && !e.contains('\n'),
            "{e}"
        );
        std::fs::write(&file, "max-connections: many\n").expect("write");
        let e = layer(Demo::default(), Some(&file)).expect_err("wrong type");
        assert!(e.contains("c.yaml"), "{e}");
        let e = layer(Demo::default(), Some(&dir.path().join("absent.yaml"))).expect_err("absent");
        assert!(e.contains("cannot read"), "{e}");
        std::fs::write(&file, "\n").expect("write");
        assert_eq!(
            layer(Demo::default(), Some(&file)).expect("empty file"),
            Demo::default()
        );
    }
}
