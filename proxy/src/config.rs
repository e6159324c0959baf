//! The proxy's configuration: flags, over `METAPROXY_*` environment variables, over a YAML file
//! whose keys are the flag names (`--admin-listen` is `admin-listen:`). Everything is validated
//! before any port is bound; an invalid configuration is a one-line reason and exit status 64.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use pegasus_rpc::client::GroupOptions;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::admin_rpc::AdminRpcs;
use crate::route::{ZkOptions, parse_routes_file, validate_meta_addr};
use crate::server::ServerOptions;
use crate::service::ServiceOptions;
pub use crate::startup::LogFormat;
use crate::startup::{self, Startup, check_log_filter, duration_setting, format_duration};
use crate::zk_auth::ZkAuth;

/// Where clients connect, unless `--listen` says otherwise.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:34601";
/// The admin port, unless `--admin-listen` says otherwise.
pub const DEFAULT_ADMIN_LISTEN: &str = "0.0.0.0:34602";
/// How long in-flight requests get on SIGTERM, unless `--shutdown-grace` says otherwise.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long a cluster no route uses stays on `/clusters`, unless `--cluster-history` says
/// otherwise.
pub const DEFAULT_CLUSTER_HISTORY: Duration = Duration::from_secs(600);
/// At most one line per kind of repeated warning per this, unless `--log-repeat-interval` says
/// otherwise.
pub const DEFAULT_LOG_REPEAT_INTERVAL: Duration = Duration::from_secs(10);

/// The settings of `metaproxy`, declared once: each is a flag, a `METAPROXY_*` environment
/// variable, and a key of the `--config` YAML file (the flag's name: `admin-listen:`). Every
/// value is checked by [`Config::from_settings`]; defaults are taken from the options types of
/// the modules that use them.
#[derive(Debug, Default, Parser, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[command(
    name = "metaproxy",
    version,
    about = "A Pegasus MetaServer proxy: answers query_config for each table from the cluster its \
             ZooKeeper route record (or static routes file) names."
)]
pub struct Settings {
    /// YAML file with the same keys as the flags (flags and METAPROXY_* variables override it).
    #[arg(long, env = "METAPROXY_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Validate the configuration (and the routes file), print it, and exit.
    #[arg(long)]
    #[serde(skip)]
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
    /// ZooKeeper node under which `<table>` route records live, e.g. /metaproxy/c3srv-pegasus.
    #[arg(long, env = "METAPROXY_ZK_ROOT")]
    pub zk_root: Option<String>,
    /// File holding `user:password` for ZooKeeper digest authentication (a mounted Secret); the
    /// password is never a flag and never logged [default: none, anonymous].
    #[arg(long, env = "METAPROXY_ZK_AUTH_FILE")]
    pub zk_auth_file: Option<PathBuf>,
    /// ZooKeeper session timeout [default: 10s].
    #[arg(long, env = "METAPROXY_ZK_SESSION_TIMEOUT")]
    pub zk_session_timeout: Option<String>,
    /// Tables without a route record remembered at most; the oldest are forgotten first
    /// [default: 10000].
    #[arg(long, env = "METAPROXY_MAX_MISSING_ROUTES")]
    pub max_missing_routes: Option<usize>,
    /// How long a table without a route record is remembered before it is read again
    /// [default: 30s].
    #[arg(long, env = "METAPROXY_MISSING_ROUTE_TTL")]
    pub missing_route_ttl: Option<String>,
    /// Static routes file (table -> {cluster, meta_addrs}) used instead of ZooKeeper.
    #[arg(long, env = "METAPROXY_ROUTES")]
    pub routes: Option<PathBuf>,
    /// Remove the 2.6 hp_* fields from replies, for pre-2.6 clients [default: false].
    #[arg(long, env = "METAPROXY_STRIP_HOST_PORTS", num_args = 0..=1, default_missing_value = "true")]
    pub strip_host_ports: Option<bool>,
    /// Time a query_config or admin RPC may take upstream, retries included [default: 3s].
    #[arg(long, env = "METAPROXY_UPSTREAM_TIMEOUT")]
    pub upstream_timeout: Option<String>,
    /// Admin RPCs answered: off, read-only (list_apps and the queries) or all (also create, drop,
    /// envs, duplication, split, bulk load, compaction, replica count) [default: read-only].
    #[arg(long, env = "METAPROXY_ADMIN_RPCS")]
    pub admin_rpcs: Option<String>,
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
    /// Close client connections idle this long: nothing to read and no reply owed [default: 10m].
    #[arg(long, env = "METAPROXY_IDLE_TIMEOUT")]
    pub idle_timeout: Option<String>,
    /// Time a request frame may take to arrive once its first byte has [default: 5s].
    #[arg(long, env = "METAPROXY_FRAME_TIMEOUT")]
    pub frame_timeout: Option<String>,
    /// Bytes that partly received request frames may hold across all connections; a frame that
    /// does not fit closes its connection [default: 67108864].
    #[arg(long, env = "METAPROXY_PARTIAL_FRAME_BUDGET")]
    pub partial_frame_budget: Option<usize>,
    /// Requests of one connection being answered at once; past it the connection is not read
    /// [default: 1024].
    #[arg(long, env = "METAPROXY_MAX_IN_FLIGHT")]
    pub max_in_flight: Option<usize>,
    /// Reply bytes a connection's client has not taken yet; past it the connection is not read
    /// [default: 262144].
    #[arg(long, env = "METAPROXY_MAX_UNSENT_BYTES")]
    pub max_unsent_bytes: Option<usize>,
    /// How long a cluster no route uses any more stays on /clusters after its last call
    /// [default: 10m].
    #[arg(long, env = "METAPROXY_CLUSTER_HISTORY")]
    pub cluster_history: Option<String>,
    /// Time in-flight requests get to finish on SIGTERM [default: 10s].
    #[arg(long, env = "METAPROXY_SHUTDOWN_GRACE")]
    pub shutdown_grace: Option<String>,
    /// Log filter, e.g. "info" or "metaproxy=debug" [default: info].
    #[arg(long, env = "METAPROXY_LOG")]
    pub log: Option<String>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "METAPROXY_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// A warning that repeats (per kind and cluster) is logged at most once per this interval,
    /// with the count suppressed meanwhile [default: 10s].
    #[arg(long, env = "METAPROXY_LOG_REPEAT_INTERVAL")]
    pub log_repeat_interval: Option<String>,
}

/// Where routes come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RouteSource {
    Zookeeper {
        servers: String,
        root: String,
        session_timeout: String,
        /// The credentials file and its user (never the password).
        #[serde(skip_serializing_if = "Option::is_none")]
        auth: Option<String>,
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
    /// Digest credentials for ZooKeeper (`--zk-auth-file`).
    #[serde(skip)]
    pub zk_auth: Option<ZkAuth>,
    pub max_missing_routes: usize,
    #[serde(serialize_with = "ser_duration")]
    pub missing_route_ttl: Duration,
    pub strip_host_ports: bool,
    #[serde(serialize_with = "ser_duration")]
    pub upstream_timeout: Duration,
    pub admin_rpcs: AdminRpcs,
    #[serde(serialize_with = "ser_duration")]
    pub upstream_attempt_timeout: Duration,
    #[serde(serialize_with = "ser_opt_duration")]
    pub hedge_after: Option<Duration>,
    pub max_connections: usize,
    pub max_frame_bytes: usize,
    #[serde(serialize_with = "ser_duration")]
    pub idle_timeout: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub frame_timeout: Duration,
    pub partial_frame_budget: usize,
    pub max_in_flight: usize,
    pub max_unsent_bytes: usize,
    #[serde(serialize_with = "ser_duration")]
    pub cluster_history: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub shutdown_grace: Duration,
    pub log: String,
    pub log_format: LogFormat,
    #[serde(serialize_with = "ser_duration")]
    pub log_repeat_interval: Duration,
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

/// Why a configuration is refused: one line naming the setting.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn bad(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

fn socket(field: &str, value: Option<String>, default: &str) -> Result<SocketAddr, ConfigError> {
    let text = value.unwrap_or_else(|| default.to_owned());
    text.parse()
        .map_err(|_| bad(format!("{field}: {text:?} is not an ip:port address")))
}

impl Startup for Config {
    const PROGRAM: &'static str = "metaproxy";
    type Settings = Settings;

    fn config_file(settings: &Settings) -> Option<&Path> {
        settings.config.as_deref()
    }

    fn check_only(settings: &Settings) -> bool {
        settings.check_config
    }

    fn from_settings(settings: Settings) -> Result<Self, String> {
        Config::validate(settings).map_err(|e| e.0)
    }

    fn summary(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("<unprintable: {e}>"))
    }

    fn logging(&self) -> (&str, LogFormat) {
        (&self.log, self.log_format)
    }

    /// Raises the open-file limit for `max-connections`, or refuses (see [`crate::fd_limit`]).
    fn prepare(&self) -> Result<Option<String>, String> {
        crate::fd_limit::raise_for(self.max_connections).map(Some)
    }
}

impl Config {
    /// Layers the settings over the file named by `--config`, and validates the result, the
    /// routes file included.
    pub fn load(settings: Settings) -> Result<Config, ConfigError> {
        startup::load(settings).map_err(ConfigError)
    }

    /// The configuration as one line of JSON, for the start-up log.
    pub fn summary(&self) -> String {
        Startup::summary(self)
    }

    /// Checks every setting (already layered) and fills in the defaults.
    pub fn validate(s: Settings) -> Result<Config, ConfigError> {
        let group = GroupOptions::default();
        let server = ServerOptions::default();
        let zk_defaults = ZkOptions::default();
        let duration = |field: &str, value: Option<String>, default: Duration| {
            duration_setting(field, value.as_deref(), default).map_err(bad)
        };
        let zk = s.zk.filter(|z| !z.trim().is_empty());
        let zk_session_timeout = duration(
            "zk-session-timeout",
            s.zk_session_timeout,
            zk_defaults.session_timeout,
        )?;
        let zk_auth = match s.zk_auth_file {
            Some(path) if zk.is_some() => {
                Some(ZkAuth::read(&path).map_err(|e| bad(format!("zk-auth-file: {e}")))?)
            }
            Some(_) => return Err(bad("zk-auth-file makes no sense without zk")),
            None => None,
        };
        let source = match (zk, s.routes) {
            (Some(_), Some(_)) => {
                return Err(bad("give either zk (with zk-root) or routes, not both"));
            }
            (None, None) => return Err(bad("no route source: give zk and zk-root, or routes")),
            (Some(servers), None) => {
                for server in servers.split(',') {
                    validate_meta_addr(server.trim())
                        .map_err(|_| bad(format!("zk: {server:?} is not a host:port address")))?;
                }
                let root = s
                    .zk_root
                    .ok_or_else(|| bad("zk-root is required with zk"))?;
                validate_zk_root(&root)?;
                RouteSource::Zookeeper {
                    servers,
                    root: root.trim_end_matches('/').to_owned(),
                    session_timeout: format_duration(zk_session_timeout),
                    auth: zk_auth
                        .as_ref()
                        .map(|a| format!("user {} from {}", a.user(), a.path().display())),
                }
            }
            (None, Some(path)) => {
                if s.zk_root.is_some() {
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
        let hedge_after = match s.hedge_after.as_deref().map(str::trim) {
            Some("off") | Some("0") => None,
            Some(text) => Some(duration(
                "hedge-after",
                Some(text.to_owned()),
                Duration::ZERO,
            )?),
            None => group.hedge_after,
        };
        let log_format = LogFormat::parse(s.log_format.as_deref()).map_err(bad)?;
        let admin_rpcs = AdminRpcs::parse(s.admin_rpcs.as_deref()).map_err(bad)?;
        let log = s.log.unwrap_or_else(|| "info".into());
        check_log_filter(&log).map_err(bad)?;
        let max_connections = s.max_connections.unwrap_or(server.max_connections);
        if max_connections == 0 {
            return Err(bad("max-connections: must be more than zero"));
        }
        let max_frame_bytes = s.max_frame_bytes.unwrap_or(server.max_frame);
        if max_frame_bytes < 1024 {
            return Err(bad("max-frame-bytes: must be at least 1024"));
        }
        let max_missing_routes = s.max_missing_routes.unwrap_or(zk_defaults.max_missing);
        let missing_route_ttl = duration(
            "missing-route-ttl",
            s.missing_route_ttl,
            zk_defaults.missing_ttl,
        )?;
        let partial_frame_budget = s
            .partial_frame_budget
            .unwrap_or(server.partial_frame_budget);
        if partial_frame_budget < max_frame_bytes {
            return Err(bad(
                "partial-frame-budget: must be at least max-frame-bytes (one frame must fit)",
            ));
        }
        let max_in_flight = s.max_in_flight.unwrap_or(server.max_in_flight);
        if max_in_flight == 0 {
            return Err(bad("max-in-flight: must be more than zero"));
        }
        let max_unsent_bytes = s.max_unsent_bytes.unwrap_or(server.max_unsent_bytes);
        if max_unsent_bytes == 0 {
            return Err(bad("max-unsent-bytes: must be more than zero"));
        }
        let config = Config {
            listen: socket("listen", s.listen, DEFAULT_LISTEN)?,
            admin_listen: socket("admin-listen", s.admin_listen, DEFAULT_ADMIN_LISTEN)?,
            source,
            zk_session_timeout,
            zk_auth,
            max_missing_routes,
            missing_route_ttl,
            strip_host_ports: s.strip_host_ports.unwrap_or(false),
            admin_rpcs,
            upstream_timeout: duration(
                "upstream-timeout",
                s.upstream_timeout,
                ServiceOptions::default().upstream_deadline,
            )?,
            upstream_attempt_timeout: duration(
                "upstream-attempt-timeout",
                s.upstream_attempt_timeout,
                group.attempt_timeout,
            )?,
            hedge_after,
            max_connections,
            max_frame_bytes,
            idle_timeout: duration("idle-timeout", s.idle_timeout, server.idle_timeout)?,
            frame_timeout: duration("frame-timeout", s.frame_timeout, server.frame_timeout)?,
            partial_frame_budget,
            max_in_flight,
            max_unsent_bytes,
            cluster_history: duration(
                "cluster-history",
                s.cluster_history,
                DEFAULT_CLUSTER_HISTORY,
            )?,
            shutdown_grace: duration("shutdown-grace", s.shutdown_grace, DEFAULT_SHUTDOWN_GRACE)?,
            log,
            log_format,
            log_repeat_interval: duration(
                "log-repeat-interval",
                s.log_repeat_interval,
                DEFAULT_LOG_REPEAT_INTERVAL,
            )?,
        };
        if config.listen == config.admin_listen && config.listen.port() != 0 {
            return Err(bad("listen and admin-listen must differ"));
        }
        Ok(config)
    }
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

    fn cli(args: &[&str]) -> Settings {
        let mut argv = vec!["metaproxy"];
        argv.extend_from_slice(args);
        Settings::try_parse_from(argv).expect("flags parse")
    }

    #[test]
    fn defaults_come_from_the_modules_that_use_them() {
        let c = Config::load(cli(&["--zk", "h:1", "--zk-root", "/a"])).expect("valid");
        let group = GroupOptions::default();
        let server = ServerOptions::default();
        assert_eq!(c.upstream_attempt_timeout, group.attempt_timeout);
        assert_eq!(c.hedge_after, group.hedge_after);
        assert_eq!(c.max_frame_bytes, server.max_frame);
        assert_eq!(c.max_connections, server.max_connections);
        assert_eq!(c.idle_timeout, server.idle_timeout);
        assert_eq!(c.frame_timeout, server.frame_timeout);
        assert_eq!(c.partial_frame_budget, server.partial_frame_budget);
        assert_eq!(c.max_in_flight, server.max_in_flight);
        assert_eq!(c.max_unsent_bytes, server.max_unsent_bytes);
        assert_eq!(
            c.upstream_timeout,
            ServiceOptions::default().upstream_deadline
        );
        assert_eq!(c.zk_session_timeout, ZkOptions::default().session_timeout);
        assert_eq!(c.max_missing_routes, ZkOptions::default().max_missing);
        assert_eq!(c.missing_route_ttl, ZkOptions::default().missing_ttl);
        assert_eq!(c.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
        assert_eq!(c.log_repeat_interval, DEFAULT_LOG_REPEAT_INTERVAL);
        assert_eq!(c.cluster_history, DEFAULT_CLUSTER_HISTORY);
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
                session_timeout: "10s".into(),
                auth: None,
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
            (
                &[
                    "--zk",
                    "h:1",
                    "--zk-root",
                    "/a",
                    "--partial-frame-budget",
                    "1000",
                ],
                "partial-frame-budget",
            ),
            (
                &["--zk", "h:1", "--zk-root", "/a", "--max-in-flight", "0"],
                "max-in-flight",
            ),
            (
                &["--zk", "h:1", "--zk-root", "/a", "--max-unsent-bytes", "0"],
                "max-unsent-bytes",
            ),
            (
                &["--zk", "h:1", "--zk-root", "/a", "--frame-timeout", "0s"],
                "frame-timeout",
            ),
            (
                &[
                    "--zk",
                    "h:1",
                    "--zk-root",
                    "/a",
                    "--missing-route-ttl",
                    "soon",
                ],
                "missing-route-ttl",
            ),
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
