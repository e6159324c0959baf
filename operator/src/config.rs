//! The operator's configuration: flags over environment (`METAPROXY_OPERATOR_*`) over a YAML
//! file (`--config`), checked as a whole before anything starts.
//!
//! ```yaml
//! zones:
//!   - {name: az1, hosts: "zk-1:2181,zk-2:2181", root: /metaproxy/c3srv-pegasus}
//!   - {name: az2, hosts: "zk-b:2181", root: /metaproxy/c3srv-pegasus}
//! defaultZone: az1
//! routesDir: /etc/metaproxy/routes      # omit to watch the Kubernetes API
//! adminAddr: 0.0.0.0:8081
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;
use thiserror::Error;

use crate::leader::LeaseConfig;
use crate::routes_dir::DirTiming;
use crate::zk::ZkTimeouts;
use crate::zone::{Zone, ZoneError, Zones};

/// Keeps PegasusTableRoute resources in the ZooKeeper records that MetaProxy reads.
#[derive(Parser, Debug, Default)]
#[command(name = "metaproxy-operator", version)]
pub struct Args {
    /// A YAML configuration file; flags and environment override it.
    #[arg(long, env = "METAPROXY_OPERATOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// A zone, NAME=HOSTS/ROOT (repeat for more); e.g. az1=127.0.0.1:2181/metaproxy/c3srv.
    /// In the environment, zones are separated by ';'.
    #[arg(long = "zone", env = "METAPROXY_OPERATOR_ZONES", value_delimiter = ';')]
    pub zones: Vec<String>,
    /// The zone of routes that name none (needed with more than one zone).
    #[arg(long, env = "METAPROXY_OPERATOR_DEFAULT_ZONE")]
    pub default_zone: Option<String>,
    /// Read routes from this directory of YAML files instead of the Kubernetes API.
    #[arg(long, env = "METAPROXY_OPERATOR_ROUTES_DIR")]
    pub routes_dir: Option<PathBuf>,
    /// The admin HTTP address (/live, /ready, /metrics, /routes). [default: 0.0.0.0:8081]
    #[arg(long, env = "METAPROXY_OPERATOR_ADMIN_ADDR")]
    pub admin_addr: Option<SocketAddr>,
    /// Watch routes in this namespace only (Kubernetes mode). [default: all]
    #[arg(long, env = "METAPROXY_OPERATOR_NAMESPACE")]
    pub namespace: Option<String>,
    /// Name of the leader-election Lease. [default: metaproxy-operator]
    #[arg(long, env = "METAPROXY_OPERATOR_LEASE_NAME")]
    pub lease_name: Option<String>,
    /// Namespace of the Lease. [default: $POD_NAMESPACE, else default]
    #[arg(long, env = "METAPROXY_OPERATOR_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// This replica's identity in the Lease. [default: $POD_NAME, else hostname-pid]
    #[arg(long, env = "METAPROXY_OPERATOR_IDENTITY")]
    pub identity: Option<String>,
    /// Lease duration in seconds. [default: 15]
    #[arg(long, env = "METAPROXY_OPERATOR_LEASE_DURATION_SECS")]
    pub lease_duration_secs: Option<u64>,
    /// Seconds after which an unrenewed leader stops working. [default: 10]
    #[arg(long, env = "METAPROXY_OPERATOR_RENEW_DEADLINE_SECS")]
    pub renew_deadline_secs: Option<u64>,
    /// Milliseconds between lease renewals and acquisition attempts. [default: 2000]
    #[arg(long, env = "METAPROXY_OPERATOR_RETRY_MS")]
    pub retry_ms: Option<u64>,
    /// ZooKeeper session timeout in milliseconds. [default: 10000]
    #[arg(long, env = "METAPROXY_OPERATOR_ZK_SESSION_TIMEOUT_MS")]
    pub zk_session_timeout_ms: Option<u64>,
    /// ZooKeeper request timeout in milliseconds. [default: 5000]
    #[arg(long, env = "METAPROXY_OPERATOR_ZK_REQUEST_TIMEOUT_MS")]
    pub zk_request_timeout_ms: Option<u64>,
    /// Seconds between full re-checks of every route. [default: 60]
    #[arg(long, env = "METAPROXY_OPERATOR_RESYNC_SECS")]
    pub resync_secs: Option<u64>,
    /// Seconds before a route that yielded to an older one looks again. [default: 10]
    #[arg(long, env = "METAPROXY_OPERATOR_CONFLICT_RECHECK_SECS")]
    pub conflict_recheck_secs: Option<u64>,
    /// Milliseconds between scans of the routes directory. [default: 1000]
    #[arg(long, env = "METAPROXY_OPERATOR_POLL_MS")]
    pub poll_ms: Option<u64>,
    /// Log format: text or json. [default: text]
    #[arg(long, env = "METAPROXY_OPERATOR_LOG_FORMAT")]
    pub log_format: Option<String>,
}

/// The configuration file: the same settings, camelCase.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub zones: Vec<Zone>,
    pub default_zone: Option<String>,
    pub routes_dir: Option<PathBuf>,
    pub admin_addr: Option<SocketAddr>,
    pub namespace: Option<String>,
    pub lease_name: Option<String>,
    pub lease_namespace: Option<String>,
    pub identity: Option<String>,
    pub lease_duration_secs: Option<u64>,
    pub renew_deadline_secs: Option<u64>,
    pub retry_ms: Option<u64>,
    pub zk_session_timeout_ms: Option<u64>,
    pub zk_request_timeout_ms: Option<u64>,
    pub resync_secs: Option<u64>,
    pub conflict_recheck_secs: Option<u64>,
    pub poll_ms: Option<u64>,
    pub log_format: Option<String>,
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("config file {path}: {reason}")]
    File { path: String, reason: String },
    #[error(transparent)]
    Zone(#[from] ZoneError),
    #[error("{0}")]
    Invalid(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where routes come from.
#[derive(Clone, Debug)]
pub enum Source {
    Kubernetes {
        namespace: Option<String>,
        lease: LeaseConfig,
    },
    Dir(PathBuf),
}

/// The effective configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub zones: Zones,
    pub source: Source,
    pub admin_addr: SocketAddr,
    pub zk: ZkTimeouts,
    pub timing: DirTiming,
    pub log_format: LogFormat,
}

fn positive(name: &str, v: u64) -> Result<u64, ConfigError> {
    if v == 0 {
        Err(ConfigError::Invalid(format!(
            "{name} must be greater than 0"
        )))
    } else {
        Ok(v)
    }
}

impl Config {
    /// Merges flags and environment (`args`) over the file they name, then checks the result.
    pub fn load(args: Args) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
                serde_saphyr::from_str::<FileConfig>(&text).map_err(|e| ConfigError::File {
                    path: path.display().to_string(),
                    reason: e.to_string().lines().next().unwrap_or_default().to_owned(),
                })?
            }
            None => FileConfig::default(),
        };
        Self::merge(args, file)
    }

    pub fn merge(args: Args, file: FileConfig) -> Result<Config, ConfigError> {
        let zones = if args.zones.is_empty() {
            file.zones
                .into_iter()
                .map(|z| Zone::new(&z.name, &z.hosts, &z.root))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            args.zones
                .iter()
                .map(|z| Zone::parse(z))
                .collect::<Result<Vec<_>, _>>()?
        };
        let zones = Zones::new(zones, args.default_zone.or(file.default_zone))?;

        let secs = |flag: Option<u64>, file: Option<u64>, default: u64, name: &str| {
            positive(name, flag.or(file).unwrap_or(default)).map(Duration::from_secs)
        };
        let millis = |flag: Option<u64>, file: Option<u64>, default: u64, name: &str| {
            positive(name, flag.or(file).unwrap_or(default)).map(Duration::from_millis)
        };
        let zk = ZkTimeouts {
            session: millis(
                args.zk_session_timeout_ms,
                file.zk_session_timeout_ms,
                10_000,
                "zkSessionTimeoutMs",
            )?,
            request: millis(
                args.zk_request_timeout_ms,
                file.zk_request_timeout_ms,
                5_000,
                "zkRequestTimeoutMs",
            )?,
        };
        let timing = DirTiming {
            poll: millis(args.poll_ms, file.poll_ms, 1_000, "pollMs")?,
            resync: secs(args.resync_secs, file.resync_secs, 60, "resyncSecs")?,
            conflict_recheck: secs(
                args.conflict_recheck_secs,
                file.conflict_recheck_secs,
                10,
                "conflictRecheckSecs",
            )?,
        };
        let log_format = match args.log_format.or(file.log_format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::Invalid(format!(
                    "log format {other:?}: use text or json"
                )));
            }
        };
        let source = match args.routes_dir.or(file.routes_dir) {
            Some(dir) => {
                if !dir.is_dir() {
                    return Err(ConfigError::Invalid(format!(
                        "routes dir {} is not a directory",
                        dir.display()
                    )));
                }
                Source::Dir(dir)
            }
            None => {
                let lease = LeaseConfig {
                    name: args
                        .lease_name
                        .or(file.lease_name)
                        .unwrap_or_else(|| "metaproxy-operator".into()),
                    namespace: args
                        .lease_namespace
                        .or(file.lease_namespace)
                        .or_else(|| std::env::var("POD_NAMESPACE").ok())
                        .unwrap_or_else(|| "default".into()),
                    identity: args
                        .identity
                        .or(file.identity)
                        .or_else(|| std::env::var("POD_NAME").ok())
                        .unwrap_or_else(default_identity),
                    duration: secs(
                        args.lease_duration_secs,
                        file.lease_duration_secs,
                        15,
                        "leaseDurationSecs",
                    )?,
                    renew_deadline: secs(
                        args.renew_deadline_secs,
                        file.renew_deadline_secs,
                        10,
                        "renewDeadlineSecs",
                    )?,
                    retry: millis(args.retry_ms, file.retry_ms, 2_000, "retryMs")?,
                };
                if lease.renew_deadline >= lease.duration {
                    return Err(ConfigError::Invalid(
                        "renewDeadlineSecs must be shorter than leaseDurationSecs: a leader must stop before others may take over".into(),
                    ));
                }
                if lease.retry >= lease.renew_deadline {
                    return Err(ConfigError::Invalid(
                        "retryMs must be shorter than renewDeadlineSecs".into(),
                    ));
                }
                Source::Kubernetes {
                    namespace: args.namespace.or(file.namespace),
                    lease,
                }
            }
        };
        let admin_addr = args
            .admin_addr
            .or(file.admin_addr)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 8081)));
        Ok(Config {
            zones,
            source,
            admin_addr,
            zk,
            timing,
            log_format,
        })
    }
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    format!(
        "{}-{}",
        if host.is_empty() {
            "metaproxy-operator"
        } else {
            &host
        },
        std::process::id()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Args {
        let mut argv = vec!["metaproxy-operator"];
        argv.extend_from_slice(list);
        Args::try_parse_from(argv).expect("flags parse")
    }

    #[test]
    fn flags_override_the_file() {
        let file: FileConfig = serde_saphyr::from_str(
            "zones:\n  - {name: az1, hosts: '127.0.0.1:2181', root: /m/a}\n  - {name: az2, hosts: '127.0.0.1:2182', root: /m/b}\ndefaultZone: az1\nresyncSecs: 30\nleaseName: from-file\n",
        )
        .expect("file parses");
        let cfg = Config::merge(args(&["--default-zone", "az2", "--resync-secs", "5"]), file)
            .expect("valid");
        assert_eq!(cfg.zones.default_name(), "az2");
        assert_eq!(cfg.timing.resync, Duration::from_secs(5));
        match cfg.source {
            Source::Kubernetes { lease, .. } => assert_eq!(lease.name, "from-file"),
            Source::Dir(_) => panic!("no routes dir was given"),
        }
    }

    #[test]
    fn flag_zones_replace_file_zones() {
        let file: FileConfig =
            serde_saphyr::from_str("zones: [{name: az1, hosts: '127.0.0.1:2181', root: /m/a}]\n")
                .expect("file parses");
        let cfg = Config::merge(args(&["--zone", "z9=127.0.0.1:2999/x"]), file).expect("valid");
        assert_eq!(
            cfg.zones
                .iter()
                .map(|z| z.name.as_str())
                .collect::<Vec<_>>(),
            ["z9"]
        );
    }

    #[test]
    fn invalid_settings_say_why() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "no zone is configured"),
            (&["--zone", "az1"], "expected NAME=HOSTS/ROOT"),
            (
                &["--zone", "a=h:1/r", "--zone", "b=h:1/s"],
                "say which is the default",
            ),
            (
                &["--zone", "a=h:1/r", "--resync-secs", "0"],
                "resyncSecs must be greater than 0",
            ),
            (
                &["--zone", "a=h:1/r", "--lease-duration-secs", "5"],
                "renewDeadlineSecs must be shorter",
            ),
            (
                &["--zone", "a=h:1/r", "--log-format", "xml"],
                "log format \"xml\"",
            ),
            (
                &["--zone", "a=h:1/r", "--routes-dir", "/nonexistent/dir"],
                "is not a directory",
            ),
        ];
        for (flags, want) in cases {
            let err = Config::merge(args(flags), FileConfig::default()).expect_err("invalid");
            assert!(err.to_string().contains(want), "{flags:?}: {err}");
        }
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let err = serde_saphyr::from_str::<FileConfig>("zonez: []\n").expect_err("typo refused");
        assert!(err.to_string().contains("zonez"), "{err}");
    }
}
