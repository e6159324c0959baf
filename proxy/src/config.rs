//! The proxy's configuration: flags, over `METAPROXY_*` environment variables, over a YAML file
//! whose keys are the flag names (`--admin-listen` is `admin-listen:`). Everything is validated
//! before any port is bound; an invalid configuration is a one-line reason and exit status 64.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::route::{parse_routes_file, validate_meta_addr};
pub use crate::startup::LogFormat;
use crate::startup::check_log_filter;

/// Command line of `metaproxy`.
#[derive(Debug, Default, Parser)]
#[command(
    name = "metaproxy",
    version,
    about = "A Pegasus MetaServer proxy: answers query_config for each table from the cluster its \
             ZooKeeper route record (or static routes file) names."
)]
pub struct Cli {
    /// YAML file with the same keys as the flags (flags and METAPROXY_* variables override it).
    #[arg(long, env = "METAPROXY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Validate the configuration (and the routes file), print it, and exit.
    #[arg(long)]
    pub check_config: bool,
    /// Address for Pegasus clients [default: 0.0.0.0:34601].
    #[arg(long, env = "METAPROXY_LISTEN")]
    pub listen: Option<String>,
    /// Address of the admin HTTP port (/live, /ready, /metrics, /routes) [default: 0.0.0.0:34602].
    #[arg(long, env = "METAPROXY_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,
    /// ZooKeeper servers, host:port[,host:port...].
    #[arg(long, env = "METAPROXY_ZK")]
    pub zk: Option<String>,
    /// ZooKeeper node under which <table> route records live, e.g. /metaproxy/c3srv-pegasus.
    #[arg(long, env = "METAPROXY_ZK_ROOT")]
    pub zk_root: Option<String>,
    /// ZooKeeper session timeout [default: 10s].
    #[arg(long, env = "METAPROXY_ZK_SESSION_TIMEOUT")]
    pub zk_session_timeout: Option<String>,
    /// Static routes file (table -> {cluster, meta_addrs}) used instead of ZooKeeper.
    #[arg(long, env = "METAPROXY_ROUTES")]
    pub routes: Option<PathBuf>,
    /// Remove the 2.6 hp_* fields from replies, for pre-2.6 clients [default: false].
    #[arg(long, env = "METAPROXY_STRIP_HOST_PORTS", num_args = 0..=1, default_missing_value = "true")]
    pub strip_host_ports: Option<bool>,
    /// Time a query_config may take upstream, retries included [default: 3s].
    #[arg(long, env = "METAPROXY_UPSTREAM_TIMEOUT")]
    pub upstream_timeout: Option<String>,
    /// Time one MetaServer gets before the next is tried [default: 1s].
    #[arg(long, env = "METAPROXY_UPSTREAM_ATTEMPT_TIMEOUT")]
    pub upstream_attempt_timeout: Option<String>,
    /// Ask a second MetaServer after this long without an answer; "off" to disable [default: 500ms].
    #[arg(long, env = "METAPROXY_HEDGE_AFTER")]
    pub hedge_after: Option<String>,
    /// Limit on client connections [default: 10000].
    #[arg(long, env = "METAPROXY_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Largest request frame accepted, in bytes [default: 1048576].
    #[arg(long, env = "METAPROXY_MAX_FRAME_BYTES")]
    pub max_frame_bytes: Option<usize>,
    /// Close client connections idle this long [default: 10m].
    #[arg(long, env = "METAPROXY_IDLE_TIMEOUT")]
    pub idle_timeout: Option<String>,
    /// Time in-flight requests get to finish on SIGTERM [default: 10s].
    #[arg(long, env = "METAPROXY_SHUTDOWN_GRACE")]
    pub shutdown_grace: Option<String>,
    /// Log filter, e.g. "info" or "metaproxy=debug" [default: info].
    #[arg(long, env = "METAPROXY_LOG")]
    pub log: Option<String>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "METAPROXY_LOG_FORMAT")]
    pub log_format: Option<String>,
}

/// The configuration file: the flags' names as keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    listen: Option<String>,
    admin_listen: Option<String>,
    zk: Option<String>,
    zk_root: Option<String>,
    zk_session_timeout: Option<String>,
    routes: Option<PathBuf>,
    strip_host_ports: Option<bool>,
    upstream_timeout: Option<String>,
    upstream_attempt_timeout: Option<String>,
    hedge_after: Option<String>,
    max_connections: Option<usize>,
    max_frame_bytes: Option<usize>,
    idle_timeout: Option<String>,
    shutdown_grace: Option<String>,
    log: Option<String>,
    log_format: Option<String>,
}

/// Where routes come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RouteSource {
    Zookeeper {
        servers: String,
        root: String,
        session_timeout: String,
    },
    File {
        path: PathBuf,
    },
}

/// The validated configuration.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub source: RouteSource,
    #[serde(skip)]
    pub zk_session_timeout: Duration,
    pub strip_host_ports: bool,
    #[serde(serialize_with = "ser_duration")]
    pub upstream_timeout: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub upstream_attempt_timeout: Duration,
    #[serde(serialize_with = "ser_opt_duration")]
    pub hedge_after: Option<Duration>,
    pub max_connections: usize,
    pub max_frame_bytes: usize,
    #[serde(serialize_with = "ser_duration")]
    pub idle_timeout: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub shutdown_grace: Duration,
    pub log: String,
    pub log_format: LogFormat,
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

fn ser_opt_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&format_duration(*d)),
        None => s.serialize_str("off"),
    }
}

/// Why a configuration is refused.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn bad(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

/// Parses `500ms`, `3s`, `10m`, `1h` (an integer and a unit).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 500ms, 3s, 10m"))?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("{text:?} is not a duration like 500ms, 3s, 10m")),
    };
    Ok(d)
}

pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else if !ms.is_multiple_of(60_000) || ms == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{}m", ms / 60_000)
    }
}

fn duration(field: &str, value: Option<String>, default: &str) -> Result<Duration, ConfigError> {
    let text = value.unwrap_or_else(|| default.to_owned());
    let d = parse_duration(&text).map_err(|e| bad(format!("{field}: {e}")))?;
    if d.is_zero() {
        return Err(bad(format!("{field}: must be more than zero")));
    }
    Ok(d)
}

fn socket(field: &str, value: Option<String>, default: &str) -> Result<SocketAddr, ConfigError> {
    let text = value.unwrap_or_else(|| default.to_owned());
    text.parse()
        .map_err(|_| bad(format!("{field}: {text:?} is not an ip:port address")))
}

impl Config {
    /// Merges flags (with their environment variables) over the file named by `--config`, and
    /// validates the result, the routes file included.
    pub fn load(cli: Cli) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            Some(path) => read_config_file(path)?,
            None => FileConfig::default(),
        };
        let zk = cli.zk.or(file.zk).filter(|s| !s.trim().is_empty());
        let routes = cli.routes.or(file.routes);
        let zk_root = cli.zk_root.or(file.zk_root);
        let zk_session_timeout = duration(
            "zk-session-timeout",
            cli.zk_session_timeout.or(file.zk_session_timeout),
            "10s",
        )?;
        let source = match (zk, routes) {
            (Some(_), Some(_)) => {
                return Err(bad("give either zk (with zk-root) or routes, not both"));
            }
            (None, None) => return Err(bad("no route source: give zk and zk-root, or routes")),
            (Some(servers), None) => {
                for server in servers.split(',') {
                    validate_meta_addr(server.trim())
                        .map_err(|_| bad(format!("zk: {server:?} is not a host:port address")))?;
                }
                let root = zk_root.ok_or_else(|| bad("zk-root is required with zk"))?;
                validate_zk_root(&root)?;
                RouteSource::Zookeeper {
                    servers,
                    root: root.trim_end_matches('/').to_owned(),
                    session_timeout: format_duration(zk_session_timeout),
                }
            }
            (None, Some(path)) => {
                if zk_root.is_some() {
                    return Err(bad("zk-root makes no sense with a routes file"));
                }
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| bad(format!("routes: cannot read {}: {e}", path.display())))?;
                parse_routes_file(&text)
                    .map_err(|e| bad(format!("routes: {}: {e}", path.display())))?;
                RouteSource::File { path }
            }
        };
        if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&zk_session_timeout) {
            return Err(bad("zk-session-timeout: must be between 1s and 60s"));
        }
        let hedge_after = match cli
            .hedge_after
            .or(file.hedge_after)
            .as_deref()
            .map(str::trim)
        {
            Some("off") | Some("0") => None,
            other => Some(duration("hedge-after", other.map(String::from), "500ms")?),
        };
        let log_format =
            LogFormat::parse(cli.log_format.or(file.log_format).as_deref()).map_err(bad)?;
        let log = cli.log.or(file.log).unwrap_or_else(|| "info".into());
        check_log_filter(&log).map_err(bad)?;
        let max_connections = cli
            .max_connections
            .or(file.max_connections)
            .unwrap_or(10_000);
        if max_connections == 0 {
            return Err(bad("max-connections: must be more than zero"));
        }
        let max_frame_bytes = cli
            .max_frame_bytes
            .or(file.max_frame_bytes)
            .unwrap_or(1 << 20);
        if max_frame_bytes < 1024 {
            return Err(bad("max-frame-bytes: must be at least 1024"));
        }
        let config = Config {
            listen: socket("listen", cli.listen.or(file.listen), "0.0.0.0:34601")?,
            admin_listen: socket(
                "admin-listen",
                cli.admin_listen.or(file.admin_listen),
                "0.0.0.0:34602",
            )?,
            source,
            zk_session_timeout,
            strip_host_ports: cli
                .strip_host_ports
                .or(file.strip_host_ports)
                .unwrap_or(false),
            upstream_timeout: duration(
                "upstream-timeout",
                cli.upstream_timeout.or(file.upstream_timeout),
                "3s",
            )?,
            upstream_attempt_timeout: duration(
                "upstream-attempt-timeout",
                cli.upstream_attempt_timeout
                    .or(file.upstream_attempt_timeout),
                "1s",
            )?,
            hedge_after,
            max_connections,
            max_frame_bytes,
            idle_timeout: duration(
                "idle-timeout",
                cli.idle_timeout.or(file.idle_timeout),
                "10m",
            )?,
            shutdown_grace: duration(
                "shutdown-grace",
                cli.shutdown_grace.or(file.shutdown_grace),
                "10s",
            )?,
            log,
            log_format,
        };
        if config.listen == config.admin_listen && config.listen.port() != 0 {
            return Err(bad("listen and admin-listen must differ"));
        }
        Ok(config)
    }

    /// The configuration as one line of JSON, for the start-up log.
    pub fn summary(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("<unprintable: {e}>"))
    }
}

fn read_config_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad(format!("config: cannot read {}: {e}", path.display())))?;
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    serde_saphyr::from_str(&text).map_err(|e| {
        let first_line = e.to_string().lines().next().unwrap_or_default().to_owned();
        bad(format!("config: {}: {first_line}", path.display()))
    })
}

fn validate_zk_root(root: &str) -> Result<(), ConfigError> {
    let trimmed = root.trim_end_matches('/');
    let ok = root.starts_with('/')
        && !trimmed.is_empty()
        && trimmed[1..]
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
        && !root.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(bad(format!(
            "zk-root: {root:?} is not an absolute ZooKeeper path below /"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        let mut argv = vec!["metaproxy"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).expect("flags parse")
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert!(parse_duration("3").is_err());
        assert!(parse_duration("s").is_err());
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(600)), "10m");
    }

    #[test]
    fn zookeeper_source() {
        let c = Config::load(cli(&[
            "--zk",
            "127.0.0.1:2181,zk-1:2181",
            "--zk-root",
            "/metaproxy/c3/",
        ]))
        .expect("valid");
        assert_eq!(
            c.source,
            RouteSource::Zookeeper {
                servers: "127.0.0.1:2181,zk-1:2181".into(),
                root: "/metaproxy/c3".into(),
                session_timeout: "10s".into()
            }
        );
        assert_eq!(
            c.listen,
            "0.0.0.0:34601".parse::<SocketAddr>().expect("addr")
        );
        assert!(c.summary().contains("\"zookeeper\""));
    }

    #[test]
    fn refuses_with_a_reason() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "no route source"),
            (&["--zk", "h:1"], "zk-root is required"),
            (&["--zk", "h:1", "--zk-root", "relative"], "zk-root"),
            (&["--zk", "h:1", "--zk-root", "/a/../b"], "zk-root"),
            (&["--zk", "nope", "--zk-root", "/a"], "zk:"),
            (
                &["--zk", "h:1", "--zk-root", "/a", "--routes", "r.yaml"],
                "not both",
            ),
            (
                &["--zk", "h:1", "--zk-root", "/a", "--listen", "nowhere"],
                "listen",
            ),
            (
                &["--zk", "h:1", "--zk-root", "/a", "--upstream-timeout", "3"],
                "upstream-timeout",
            ),
            (
                &["--zk", "h:1", "--zk-root", "/a", "--log-format", "xml"],
                "log-format",
            ),
            (&["--routes", "/nonexistent/routes.yaml"], "cannot read"),
        ];
        for (args, reason) in cases {
            let err = Config::load(cli(args)).expect_err("refused");
            assert!(err.0.contains(reason), "{args:?}: {err}");
            assert!(!err.0.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempdir();
        let routes = dir.join("routes.yaml");
        std::fs::write(
            &routes,
            "temp: {cluster: c1, meta_addrs: [\"127.0.0.1:34601\"]}\n",
        )
        .expect("write");
        let config = dir.join("metaproxy.yaml");
        std::fs::write(
            &config,
            format!("listen: 127.0.0.1:1000\nadmin-listen: 127.0.0.1:1001\nroutes: {}\nhedge-after: \"off\"\n", routes.display()),
        )
        .expect("write");
        let c = Config::load(cli(&[
            "--config",
            config.to_str().expect("utf8"),
            "--listen",
            "127.0.0.1:2000",
        ]))
        .expect("valid");
        assert_eq!(c.listen.port(), 2000, "the flag wins");
        assert_eq!(c.admin_listen.port(), 1001, "the file fills in");
        assert_eq!(c.hedge_after, None);
        assert_eq!(c.source, RouteSource::File { path: routes });

        std::fs::write(&config, "listen: 127.0.0.1:1000\nlisten-typo: 1\n").expect("write");
        let err =
            Config::load(cli(&["--config", config.to_str().expect("utf8")])).expect_err("typo");
        assert!(err.0.contains("listen-typo"), "{err}");
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "metaproxy-config-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir
    }
}
