//! The operator's configuration, on the same conventions as `metaproxy`'s (see
//! [`metaproxy::startup`]): one [`Settings`] type gives the flags, the `METAPROXY_OPERATOR_*`
//! environment variables and the keys of the YAML file named by `--config` (the flag names:
//! `--admin-listen` is `admin-listen:`); flags win over the environment, which wins over the file.
//! Durations carry a unit (`500ms`, `3s`, `10m`, `1h`). Unknown keys are refused. Everything is
//! checked before anything starts; an invalid configuration is a one-line reason and exit status
//! 64.
//!
//! Zones are `--zone NAME=HOSTS/ROOT` (repeatable; in the environment, separated by `;`). In the
//! file, `zones:` is a list whose items are either that same string or a mapping
//! `{name, hosts, root}` (the older form, still accepted). Zones given as flags or in the
//! environment replace the file's list. Observers, the proxy sets asked before an automatic
//! failover, are `--observer ZONE=URL` the same way (`observers:` in the file).
//!
//! ```yaml
//! zones:
//!   - {name: az1, hosts: "zk-1:2181,zk-2:2181", root: /metaproxy/c3srv-pegasus}
//!   - az2=zk-b:2181/metaproxy/c3srv-pegasus
//! default-zone: az1
//! routes-dir: /etc/metaproxy/routes      # omit to watch the Kubernetes API
//! admin-listen: 0.0.0.0:8081
//! observers:                             # each zone's proxies, asked before a failover
//!   - az1=http://metaproxy-az1-admin:34602
//! resync: 60s
//! zk-session-timeout: 10s
//! ```

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use metaproxy::startup::{self, Startup, duration_setting, format_duration};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use crate::leader::LeaseConfig;
use crate::observers::Observer;
use crate::reconcile::schedule::Timing;
use crate::zk::{ZkAccess, ZkTimeouts};
use crate::zone::{Zone, ZoneError, Zones};
use metaproxy::zk_auth::{ZkAuth, validate_digest_id};

/// The settings of `metaproxy-operator`, declared once: each is a flag, a
/// `METAPROXY_OPERATOR_*` environment variable, and a key of the `--config` YAML file (the flag's
/// name: `admin-listen:`; the repeatable `--zone` is the list `zones:`). Every value is checked
/// by [`Config::from_settings`].
#[derive(Debug, Default, Parser, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[command(
    name = "metaproxy-operator",
    version,
    about = "Keeps PegasusTableRoute resources (from Kubernetes or a directory of files) in the \
             ZooKeeper route records that MetaProxy reads."
)]
pub struct Settings {
    /// YAML file with the same keys as the flags (flags and METAPROXY_OPERATOR_* variables
    /// override it).
    #[arg(long, env = "METAPROXY_OPERATOR_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Validate the configuration, print it, and exit.
    #[arg(long)]
    #[serde(skip)]
    pub check_config: bool,
    /// A zone, NAME=HOSTS/ROOT (repeat for more); e.g. az1=127.0.0.1:2181/metaproxy/c3srv.
    /// In the environment, zones are separated by ';'.
    #[arg(long = "zone", env = "METAPROXY_OPERATOR_ZONES", value_delimiter = ';')]
    #[serde(default)]
    pub zones: Vec<ZoneSetting>,
    /// A failover observer, ZONE=http://HOST:PORT: that zone's proxies' admin port, whose
    /// GET /clusters says what their traffic saw of each cluster (repeat for more). With
    /// observers, an automatic failover needs a quorum of them to see the primary down. In the
    /// environment, observers are separated by ';'.
    #[arg(
        long = "observer",
        env = "METAPROXY_OPERATOR_OBSERVERS",
        value_delimiter = ';'
    )]
    #[serde(default)]
    pub observers: Vec<String>,
    /// The zone of routes that name none (needed with more than one zone).
    #[arg(long, env = "METAPROXY_OPERATOR_DEFAULT_ZONE")]
    pub default_zone: Option<String>,
    /// Read routes from this directory of YAML files instead of the Kubernetes API.
    #[arg(long, env = "METAPROXY_OPERATOR_ROUTES_DIR")]
    pub routes_dir: Option<PathBuf>,
    /// Names the routes directory in the records written from it, so that the records of files
    /// removed while the operator was down are deleted at its next start; the same for every
    /// operator over one directory [default: the directory's canonical path].
    #[arg(long, env = "METAPROXY_OPERATOR_ROUTES_DIR_ID")]
    pub routes_dir_id: Option<String>,
    /// Address of the admin HTTP port (/live, /ready, /metrics, /routes) [default: 0.0.0.0:8081].
    #[arg(long, env = "METAPROXY_OPERATOR_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,
    /// Watch routes in this namespace only (Kubernetes mode) [default: all].
    #[arg(long, env = "METAPROXY_OPERATOR_NAMESPACE")]
    pub namespace: Option<String>,
    /// Name of the leader-election Lease [default: metaproxy-operator].
    #[arg(long, env = "METAPROXY_OPERATOR_LEASE_NAME")]
    pub lease_name: Option<String>,
    /// Namespace of the Lease [default: $POD_NAMESPACE, else default].
    #[arg(long, env = "METAPROXY_OPERATOR_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// This replica's identity in the Lease [default: $POD_NAME, else hostname-pid].
    #[arg(long, env = "METAPROXY_OPERATOR_IDENTITY")]
    pub identity: Option<String>,
    /// How long a Lease nobody renews blocks the others, whole seconds [default: 15s].
    #[arg(long, env = "METAPROXY_OPERATOR_LEASE_DURATION")]
    pub lease_duration: Option<String>,
    /// Time after which a leader that could not renew stops working [default: 10s].
    #[arg(long, env = "METAPROXY_OPERATOR_RENEW_DEADLINE")]
    pub renew_deadline: Option<String>,
    /// Time between Lease renewals and acquisition attempts [default: 2s].
    #[arg(long, env = "METAPROXY_OPERATOR_RETRY_PERIOD")]
    pub retry_period: Option<String>,
    /// ZooKeeper session timeout [default: 10s].
    #[arg(long, env = "METAPROXY_OPERATOR_ZK_SESSION_TIMEOUT")]
    pub zk_session_timeout: Option<String>,
    /// Time one ZooKeeper request may take [default: 5s].
    #[arg(long, env = "METAPROXY_OPERATOR_ZK_REQUEST_TIMEOUT")]
    pub zk_request_timeout: Option<String>,
    /// File holding `user:password` for ZooKeeper digest authentication (a mounted Secret);
    /// records and their parents are then created writable by this identity only. The password
    /// is never a flag and never logged [default: none, anonymous, records writable by anyone].
    #[arg(long, env = "METAPROXY_OPERATOR_ZK_AUTH_FILE")]
    pub zk_auth_file: Option<PathBuf>,
    /// The proxies' ZooKeeper identity, user:BASE64(SHA1(user:password)) (ZooKeeper's
    /// DigestAuthenticationProvider prints it): only they may read the records. Needs
    /// zk-auth-file [default: anyone may read].
    #[arg(long, env = "METAPROXY_OPERATOR_ZK_READER_DIGEST")]
    pub zk_reader_digest: Option<String>,
    /// Time between full re-checks of every route [default: 60s].
    #[arg(long, env = "METAPROXY_OPERATOR_RESYNC")]
    pub resync: Option<String>,
    /// Time before a route that yielded to an older one looks again [default: 10s].
    #[arg(long, env = "METAPROXY_OPERATOR_CONFLICT_RECHECK")]
    pub conflict_recheck: Option<String>,
    /// Time between scans of the routes directory [default: 1s].
    #[arg(long, env = "METAPROXY_OPERATOR_POLL")]
    pub poll: Option<String>,
    /// Log filter, e.g. "info" or "metaproxy_operator=debug" [default: info].
    #[arg(long, env = "METAPROXY_OPERATOR_LOG")]
    pub log: Option<String>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "METAPROXY_OPERATOR_LOG_FORMAT")]
    pub log_format: Option<String>,
}

/// A zone as the settings give it: `NAME=HOSTS/ROOT` (the flag's form, also accepted in the
/// file), or in the file the older mapping `{name, hosts, root}`. Checked by
/// [`Config::from_settings`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ZoneSetting {
    /// `NAME=HOSTS/ROOT`.
    Text(String),
    /// `{name: az1, hosts: "zk-1:2181", root: /metaproxy/c3srv}`.
    Fields(Zone),
}

impl ZoneSetting {
    fn to_zone(&self) -> Result<Zone, ZoneError> {
        match self {
            ZoneSetting::Text(text) => Zone::parse(text),
            ZoneSetting::Fields(z) => Zone::new(&z.name, &z.hosts, &z.root),
        }
    }
}

impl FromStr for ZoneSetting {
    type Err = Infallible;

    fn from_str(s: &str) -> Result<Self, Infallible> {
        Ok(ZoneSetting::Text(s.to_owned()))
    }
}

impl Serialize for ZoneSetting {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ZoneSetting::Text(text) => s.serialize_str(text),
            ZoneSetting::Fields(zone) => zone.serialize(s),
        }
    }
}

/// By hand rather than `#[serde(untagged)]`: an untagged enum reports only "did not match any
/// variant", and a misspelt key of the mapping form must be named.
impl<'de> Deserialize<'de> for ZoneSetting {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Either;
        impl<'de> Visitor<'de> for Either {
            type Value = ZoneSetting;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("NAME=HOSTS/ROOT or {name, hosts, root}")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ZoneSetting, E> {
                Ok(ZoneSetting::Text(v.to_owned()))
            }

            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<ZoneSetting, M::Error> {
                Zone::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(ZoneSetting::Fields)
            }
        }
        d.deserialize_any(Either)
    }
}

/// Why a configuration is refused: one line naming the setting.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error(transparent)]
    Zone(#[from] ZoneError),
    #[error("{0}")]
    Invalid(String),
}

fn invalid(reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(reason.into())
}

pub use metaproxy::startup::LogFormat;

/// Where routes come from.
#[derive(Clone, Debug)]
pub enum Source {
    Kubernetes {
        namespace: Option<String>,
        lease: LeaseConfig,
    },
    Dir {
        path: PathBuf,
        /// Names the directory in the records written from it (`writer`), so that the records
        /// of files removed while the operator was down are found ([`crate::orphans`]).
        id: String,
    },
}

/// The admin port, unless `--admin-listen` says otherwise.
pub const DEFAULT_ADMIN_LISTEN: &str = "0.0.0.0:8081";

/// The effective configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub zones: Zones,
    /// Asked before an automatic failover; none: the operator's probes decide alone.
    pub observers: Vec<Observer>,
    pub source: Source,
    pub admin_listen: SocketAddr,
    pub zk: ZkTimeouts,
    /// The operator's credentials and the proxies' identity.
    pub zk_access: ZkAccess,
    /// Resync and conflict re-check, in both modes.
    pub timing: Timing,
    /// Between two scans of the routes directory.
    pub poll: Duration,
    /// The `tracing` filter.
    pub log: String,
    pub log_format: LogFormat,
}

/// A duration setting: `value`, else `default`; zero is refused.
fn duration(
    field: &str,
    value: Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    duration_setting(field, value.as_deref(), default).map_err(invalid)
}

impl Startup for Config {
    const PROGRAM: &'static str = "metaproxy-operator";
    type Settings = Settings;

    fn config_file(settings: &Settings) -> Option<&Path> {
        settings.config.as_deref()
    }

    fn check_only(settings: &Settings) -> bool {
        settings.check_config
    }

    fn from_settings(settings: Settings) -> Result<Self, String> {
        Config::validate(settings).map_err(|e| e.to_string())
    }

    fn summary(&self) -> String {
        Config::summary(self)
    }

    fn logging(&self) -> (&str, LogFormat) {
        (&self.log, self.log_format)
    }
}

impl Config {
    /// Layers the settings over the file named by `--config` (flags and environment win), and
    /// checks the result.
    pub fn load(settings: Settings) -> Result<Config, ConfigError> {
        startup::load::<Config>(settings).map_err(ConfigError::Invalid)
    }

    /// Checks every setting (already layered) and fills in the defaults.
    pub fn validate(s: Settings) -> Result<Config, ConfigError> {
        let zones = s
            .zones
            .iter()
            .map(ZoneSetting::to_zone)
            .collect::<Result<Vec<_>, _>>()?;
        let zones = Zones::new(zones, s.default_zone)?;
        let mut observers: Vec<Observer> = Vec::new();
        for text in &s.observers {
            let o = Observer::parse(text).map_err(|e| invalid(format!("observer: {e}")))?;
            if observers.iter().any(|x| x.zone == o.zone) {
                return Err(invalid(format!("observer: zone {} is given twice", o.zone)));
            }
            observers.push(o);
        }

        let zk = ZkTimeouts {
            session: duration(
                "zk-session-timeout",
                s.zk_session_timeout,
                ZkTimeouts::default().session,
            )?,
            request: duration(
                "zk-request-timeout",
                s.zk_request_timeout,
                ZkTimeouts::default().request,
            )?,
        };
        if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&zk.session) {
            return Err(invalid("zk-session-timeout: must be between 1s and 60s"));
        }
        let zk_access = ZkAccess {
            auth: s
                .zk_auth_file
                .as_deref()
                .map(ZkAuth::read)
                .transpose()
                .map_err(|e| invalid(format!("zk-auth-file: {e}")))?,
            reader: s.zk_reader_digest,
        };
        if let Some(id) = &zk_access.reader {
            validate_digest_id(id).map_err(|e| invalid(format!("zk-reader-digest: {e}")))?;
            if zk_access.auth.is_none() {
                return Err(invalid(
                    "zk-reader-digest needs zk-auth-file: an anonymous operator's records are \
                     writable by anyone",
                ));
            }
        }
        let poll = duration("poll", s.poll, Duration::from_secs(1))?;
        let timing = Timing {
            resync: duration("resync", s.resync, Duration::from_secs(60))?,
            conflict_recheck: duration(
                "conflict-recheck",
                s.conflict_recheck,
                Duration::from_secs(10),
            )?,
        };
        let log = s.log.unwrap_or_else(|| "info".into());
        startup::check_log_filter(&log).map_err(invalid)?;
        let log_format = LogFormat::parse(s.log_format.as_deref()).map_err(invalid)?;
        let source = match s.routes_dir {
            Some(dir) => {
                if !dir.is_dir() {
                    return Err(invalid(format!(
                        "routes-dir: {} is not a directory",
                        dir.display()
                    )));
                }
                let id = match s.routes_dir_id {
                    Some(id) if id.trim().is_empty() => {
                        return Err(invalid("routes-dir-id: must not be empty"));
                    }
                    Some(id) => id,
                    None => std::fs::canonicalize(&dir)
                        .unwrap_or_else(|_| dir.clone())
                        .display()
                        .to_string(),
                };
                Source::Dir { path: dir, id }
            }
            None => Source::Kubernetes {
                namespace: s.namespace,
                lease: lease_config(LeaseSettings {
                    name: s.lease_name,
                    namespace: s.lease_namespace,
                    identity: s.identity,
                    duration: s.lease_duration,
                    renew_deadline: s.renew_deadline,
                    retry_period: s.retry_period,
                })?,
            },
        };
        let admin_listen = s
            .admin_listen
            .unwrap_or_else(|| DEFAULT_ADMIN_LISTEN.to_owned());
        let admin_listen = admin_listen.parse().map_err(|_| {
            invalid(format!(
                "admin-listen: {admin_listen:?} is not an ip:port address"
            ))
        })?;
        Ok(Config {
            zones,
            observers,
            source,
            admin_listen,
            zk,
            zk_access,
            timing,
            poll,
            log,
            log_format,
        })
    }

    /// The configuration as one line of JSON, keyed by the flag names: for `--check-config` and
    /// the start-up log.
    pub fn summary(&self) -> String {
        let source = match &self.source {
            Source::Kubernetes { namespace, lease } => SourceSummary::Kubernetes {
                namespace: namespace.as_deref(),
                lease_name: &lease.name,
                lease_namespace: &lease.namespace,
                identity: &lease.identity,
                lease_duration: format_duration(lease.duration),
                renew_deadline: format_duration(lease.renew_deadline),
                retry_period: format_duration(lease.retry),
            },
            Source::Dir { path, id } => SourceSummary::RoutesDir {
                path,
                routes_dir_id: id,
                poll: format_duration(self.poll),
            },
        };
        let summary = Summary {
            zones: self.zones.iter().collect(),
            default_zone: self.zones.default_name(),
            observers: self.observers.iter().map(ToString::to_string).collect(),
            source,
            admin_listen: self.admin_listen,
            zk_session_timeout: format_duration(self.zk.session),
            zk_request_timeout: format_duration(self.zk.request),
            zk_auth: self
                .zk_access
                .auth
                .as_ref()
                .map(|a| format!("user {} from {}", a.user(), a.path().display())),
            zk_reader_digest: self.zk_access.reader.as_deref(),
            resync: format_duration(self.timing.resync),
            conflict_recheck: format_duration(self.timing.conflict_recheck),
            log: &self.log,
            log_format: self.log_format,
        };
        serde_json::to_string(&summary).unwrap_or_else(|e| format!("<unprintable: {e}>"))
    }
}

/// The Lease settings as given, before defaults.
struct LeaseSettings {
    name: Option<String>,
    namespace: Option<String>,
    identity: Option<String>,
    duration: Option<String>,
    renew_deadline: Option<String>,
    retry_period: Option<String>,
}

fn lease_config(given: LeaseSettings) -> Result<LeaseConfig, ConfigError> {
    let lease = LeaseConfig {
        name: given.name.unwrap_or_else(|| "metaproxy-operator".into()),
        namespace: given
            .namespace
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".into()),
        identity: given
            .identity
            .or_else(|| std::env::var("POD_NAME").ok())
            .unwrap_or_else(default_identity),
        duration: duration("lease-duration", given.duration, Duration::from_secs(15))?,
        renew_deadline: duration(
            "renew-deadline",
            given.renew_deadline,
            Duration::from_secs(10),
        )?,
        retry: duration("retry-period", given.retry_period, Duration::from_secs(2))?,
    };
    // The Lease object counts in whole seconds: a rounded-down duration would let another replica
    // take over while this one still works.
    if lease.duration.subsec_nanos() != 0 {
        return Err(invalid(format!(
            "lease-duration: {} is not whole seconds (a Lease counts in seconds)",
            format_duration(lease.duration)
        )));
    }
    if lease.renew_deadline >= lease.duration {
        return Err(invalid(
            "renew-deadline: must be shorter than lease-duration: a leader must stop before others may take over",
        ));
    }
    if lease.retry >= lease.renew_deadline {
        return Err(invalid("retry-period: must be shorter than renew-deadline"));
    }
    Ok(lease)
}

/// What `summary` prints.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Summary<'a> {
    zones: Vec<&'a Zone>,
    default_zone: &'a str,
    observers: Vec<String>,
    source: SourceSummary<'a>,
    admin_listen: SocketAddr,
    zk_session_timeout: String,
    zk_request_timeout: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    zk_auth: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    zk_reader_digest: Option<&'a str>,
    resync: String,
    conflict_recheck: String,
    log: &'a str,
    log_format: LogFormat,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case", rename_all_fields = "kebab-case")]
enum SourceSummary<'a> {
    Kubernetes {
        namespace: Option<&'a str>,
        lease_name: &'a str,
        lease_namespace: &'a str,
        identity: &'a str,
        lease_duration: String,
        renew_deadline: String,
        retry_period: String,
    },
    RoutesDir {
        path: &'a Path,
        routes_dir_id: &'a str,
        poll: String,
    },
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

    fn args(list: &[&str]) -> Settings {
        let mut argv = vec!["metaproxy-operator"];
        argv.extend_from_slice(list);
        Settings::try_parse_from(argv).expect("flags parse")
    }

    /// `flags` over a configuration file holding `yaml`, as `main` layers them.
    fn with_file(flags: &[&str], yaml: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("operator.yaml");
        std::fs::write(&path, yaml).expect("write");
        let mut list = vec!["--config", path.to_str().expect("utf8")];
        list.extend_from_slice(flags);
        Config::load(args(&list))
    }

    #[test]
    fn flags_override_the_file() {
        let cfg = with_file(
            &["--default-zone", "az2", "--resync", "1500ms"],
            "zones:\n  - {name: az1, hosts: '127.0.0.1:2181', root: /m/a}\n  - {name: az2, hosts: '127.0.0.1:2182', root: /m/b}\ndefault-zone: az1\nresync: 30s\nlease-name: from-file\nadmin-listen: 127.0.0.1:1001\nzk-session-timeout: 4s\n",
        )
        .expect("valid");
        assert_eq!(cfg.zones.default_name(), "az2");
        assert_eq!(
            cfg.timing.resync,
            Duration::from_millis(1500),
            "the flag wins"
        );
        assert_eq!(cfg.zk.session, Duration::from_secs(4), "the file fills in");
        assert_eq!(cfg.zk.request, Duration::from_secs(5), "the default");
        assert_eq!(cfg.admin_listen.port(), 1001);
        match cfg.source {
            Source::Kubernetes { lease, .. } => assert_eq!(lease.name, "from-file"),
            Source::Dir { .. } => panic!("no routes dir was given"),
        }
    }

    #[test]
    fn defaults() {
        let cfg = Config::validate(args(&["--zone", "a=h:1/r"])).expect("valid");
        assert_eq!(cfg.admin_listen, SocketAddr::from(([0, 0, 0, 0], 8081)));
        assert_eq!(
            cfg.zk,
            ZkTimeouts {
                session: Duration::from_secs(10),
                request: Duration::from_secs(5)
            }
        );
        assert_eq!(cfg.poll, Duration::from_secs(1));
        assert_eq!(
            cfg.timing,
            Timing {
                resync: Duration::from_secs(60),
                conflict_recheck: Duration::from_secs(10),
            }
        );
        let Source::Kubernetes { lease, namespace } = cfg.source else {
            panic!("Kubernetes is the default source");
        };
        assert_eq!(namespace, None);
        assert_eq!(lease.name, "metaproxy-operator");
        assert_eq!(
            (lease.duration, lease.renew_deadline, lease.retry),
            (
                Duration::from_secs(15),
                Duration::from_secs(10),
                Duration::from_secs(2)
            )
        );
        assert_eq!(cfg.log_format, LogFormat::Text);
    }

    #[test]
    fn flag_zones_replace_file_zones() {
        let cfg = with_file(
            &["--zone", "z9=127.0.0.1:2999/x"],
            "zones: [{name: az1, hosts: '127.0.0.1:2181', root: /m/a}]\n",
        )
        .expect("valid");
        assert_eq!(
            cfg.zones
                .iter()
                .map(|z| z.name.as_str())
                .collect::<Vec<_>>(),
            ["z9"]
        );
    }

    #[test]
    fn file_zones_in_either_form() {
        let cfg = with_file(
            &[],
            "zones:\n  - az1=127.0.0.1:2181/m/a\n  - {name: az2, hosts: '127.0.0.1:2182', root: /m/b/}\ndefault-zone: az2\n",
        )
        .expect("valid");
        let zones: Vec<String> = cfg.zones.iter().map(Zone::to_string).collect();
        assert_eq!(zones, ["az1=127.0.0.1:2181/m/a", "az2=127.0.0.1:2182/m/b"]);
        let err = with_file(&[], "zones: [az1=127.0.0.1:2181]\n").expect_err("no root");
        assert!(
            err.to_string().contains("expected NAME=HOSTS/ROOT"),
            "{err}"
        );
        let err = with_file(&[], "zones: [7]\n").expect_err("a number is no zone");
        assert!(err.to_string().contains("NAME=HOSTS/ROOT"), "{err}");
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
                &["--zone", "a=h:1/r", "--resync", "0s"],
                "resync: must be more than zero",
            ),
            (
                &["--zone", "a=h:1/r", "--poll", "0ms"],
                "poll: must be more than zero",
            ),
            (
                &["--zone", "a=h:1/r", "--zk-session-timeout", "10"],
                "zk-session-timeout: \"10\" is not a duration",
            ),
            (
                &["--zone", "a=h:1/r", "--conflict-recheck", "soon"],
                "conflict-recheck:",
            ),
            (
                &["--zone", "a=h:1/r", "--lease-duration", "5s"],
                "renew-deadline: must be shorter than lease-duration",
            ),
            (
                &["--zone", "a=h:1/r", "--lease-duration", "15500ms"],
                "lease-duration: 15500ms is not whole seconds",
            ),
            (
                &["--zone", "a=h:1/r", "--retry-period", "10s"],
                "retry-period: must be shorter than renew-deadline",
            ),
            (
                &["--zone", "a=h:1/r", "--log-format", "xml"],
                "log-format: \"xml\" is not text or json",
            ),
            (
                &["--zone", "a=h:1/r", "--routes-dir", "/nonexistent/dir"],
                "routes-dir: /nonexistent/dir is not a directory",
            ),
            (
                &["--zone", "a=h:1/r", "--admin-listen", "nowhere"],
                "admin-listen: \"nowhere\" is not an ip:port address",
            ),
            (
                &["--zone", "a=h:1/r", "--observer", "az1=https://h:1"],
                "observer: \"az1=https://h:1\": https is not supported",
            ),
            (
                &[
                    "--zone",
                    "a=h:1/r",
                    "--observer",
                    "az1=http://h:1",
                    "--observer",
                    "az1=http://h:2",
                ],
                "observer: zone az1 is given twice",
            ),
        ];
        for (flags, want) in cases {
            let err = Config::validate(args(flags)).expect_err("invalid");
            let err = err.to_string();
            assert!(err.contains(want), "{flags:?}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        for (text, key) in [
            ("zonez: []\n", "zonez"),
            ("defaultZone: az1\n", "defaultZone"),
            ("resync-secs: 60\n", "resync-secs"),
            (
                "zones: [{name: a, hosts: 'h:1', root: /r, rot: /s}]\n",
                "rot",
            ),
            ("config: other.yaml\n", "config"),
            ("check-config: true\n", "check-config"),
        ] {
            let err = serde_saphyr::from_str::<Settings>(text).expect_err("typo refused");
            assert!(err.to_string().contains(key), "{text}: {err}");
            let err = with_file(&[], text).expect_err("refused through the file");
            assert!(err.to_string().contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn load_reads_the_file_and_says_which() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("operator.yaml");
        std::fs::write(
            &path,
            format!(
                "zones: [{{name: az1, hosts: '127.0.0.1:2181', root: /m/a}}]\nroutes-dir: {}\npoll: 250ms\n",
                dir.path().display()
            ),
        )
        .expect("write");
        let cfg = Config::load(args(&["--config", path.to_str().expect("utf8")])).expect("valid");
        assert_eq!(cfg.poll, Duration::from_millis(250));
        let canonical = std::fs::canonicalize(dir.path()).expect("canonical");
        assert!(
            matches!(&cfg.source, Source::Dir { path, id } if path == dir.path() && *id == canonical.display().to_string()),
            "{:?}",
            cfg.source
        );

        std::fs::write(&path, "").expect("write");
        let err = Config::load(args(&["--config", path.to_str().expect("utf8")]))
            .expect_err("an empty file configures no zone");
        assert!(err.to_string().contains("no zone is configured"), "{err}");

        std::fs::write(&path, "poll-ms: 100\n").expect("write");
        let err =
            Config::load(args(&["--config", path.to_str().expect("utf8")])).expect_err("old key");
        let err = err.to_string();
        assert!(
            err.starts_with(&format!("config: {}: ", path.display())) && err.contains("poll-ms"),
            "{err}"
        );
        assert!(!err.contains('\n'), "one line: {err}");
    }

    #[test]
    fn summary_is_one_line_keyed_by_flag_names() {
        let dir = tempfile::tempdir().expect("dir");
        let cfg = Config::validate(args(&[
            "--zone",
            "az1=127.0.0.1:2181/m/a",
            "--routes-dir",
            dir.path().to_str().expect("utf8"),
            "--poll",
            "100ms",
            "--resync",
            "10m",
        ]))
        .expect("valid");
        let line = cfg.summary();
        assert!(!line.contains('\n'), "{line}");
        let json: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(json["zones"][0]["root"], "/m/a");
        assert_eq!(json["default-zone"], "az1");
        assert_eq!(json["admin-listen"], "0.0.0.0:8081");
        assert_eq!(json["zk-session-timeout"], "10s");
        assert_eq!(json["resync"], "10m");
        assert_eq!(json["source"]["routes-dir"]["poll"], "100ms");
        let canonical = std::fs::canonicalize(dir.path()).expect("canonical");
        assert_eq!(
            json["source"]["routes-dir"]["routes-dir-id"],
            canonical.display().to_string(),
            "the default id"
        );
        assert_eq!(json["log-format"], "text");
        assert_eq!(json["observers"], serde_json::json!([]));

        let k8s = Config::validate(args(&["--zone", "a=h:1/r", "--lease-name", "l"]))
            .expect("valid")
            .summary();
        let json: serde_json::Value = serde_json::from_str(&k8s).expect("JSON");
        assert_eq!(json["source"]["kubernetes"]["lease-name"], "l");
        assert_eq!(json["source"]["kubernetes"]["retry-period"], "2s");
    }

    /// The example at the top of this module is a valid file.
    #[test]
    fn module_example_parses() {
        let src = include_str!("config.rs");
        let start = src.find("//! ```yaml\n").expect("example") + "//! ```yaml\n".len();
        let end = start + src[start..].find("//! ```").expect("end of example");
        let yaml: String = src[start..end]
            .lines()
            .map(|l| {
                l.strip_prefix("//! ")
                    .or_else(|| l.strip_prefix("//!"))
                    .unwrap_or(l)
            })
            .collect::<Vec<_>>()
            .join("\n");
        let file: Settings = serde_saphyr::from_str(&yaml).expect("example parses");
        assert_eq!(file.zones.len(), 2);
        assert_eq!(file.default_zone.as_deref(), Some("az1"));
        assert_eq!(file.admin_listen.as_deref(), Some("0.0.0.0:8081"));
        assert_eq!(file.observers, ["az1=http://metaproxy-az1-admin:34602"]);
        let zones: Vec<Zone> = file
            .zones
            .iter()
            .map(|z| z.to_zone().expect("valid zone"))
            .collect();
        assert_eq!(
            zones[1].to_string(),
            "az2=zk-b:2181/metaproxy/c3srv-pegasus"
        );
    }
}
