//! What the simulated cluster is made of: its tables (read from `tables.yaml` or built in code)
//! and the addresses its MetaServers listen on. Everything is validated here, once, so that the
//! serving path can trust it.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::SimError;
use super::decide::ReplicaMode;
use super::envs;

/// More partitions than this would make a reply larger than the clients' frame limits.
pub const MAX_PARTITIONS: i32 = 8192;

/// One table of the cluster. Its partition configurations are derived from `replicas` (see the
/// module docs of [`crate::sim`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    pub name: String,
    pub app_id: i32,
    pub partition_count: i32,
    /// Replica servers as `ip:port`. They become the `rpc_address` fields, which are IPv4 only.
    /// Those among the cluster's served replica nodes ([`SimConfig::replica_listen`]) answer
    /// data requests; others are only reported. Empty: every served replica node.
    #[serde(default)]
    pub replicas: Vec<SocketAddrV4>,
    /// Host names parallel to `replicas`, for the 2.6 `hp_*` fields. Default: each replica's IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_hosts: Option<Vec<String>>,
    /// Whether replies for this table carry the 2.6 `hp_*` fields. Default: the cluster setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port_fields: Option<bool>,
    /// App envs, validated as `RPC_CM_UPDATE_APP_ENV` would (`docs/protocol.md` §14.4).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub envs: BTreeMap<String, String>,
    /// A duplication to another cluster, set up at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplication: Option<DuplicationSpec>,
}

/// Where a table duplicates to: `duplication: {to: [meta addresses], app: NAME}` in YAML.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DuplicationSpec {
    /// The follower cluster's MetaServers (`host:port`).
    pub to: Vec<String>,
    /// The table's name in the follower cluster.
    pub app: String,
    /// The follower cluster's name, as query_duplication reports it. Default: `to` joined by
    /// commas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

impl DuplicationSpec {
    pub fn new<S: Into<String>>(to: impl IntoIterator<Item = S>, app: impl Into<String>) -> Self {
        DuplicationSpec {
            to: to.into_iter().map(Into::into).collect(),
            app: app.into(),
            cluster: None,
        }
    }

    /// The name query_duplication reports for the follower.
    pub fn cluster_name(&self) -> String {
        self.cluster.clone().unwrap_or_else(|| self.to.join(","))
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.to.is_empty() || self.to.iter().any(|a| a.is_empty()) {
            return Err("duplication needs the follower's MetaServers in `to`".into());
        }
        if self.app.is_empty() {
            return Err("duplication needs the follower's table name in `app`".into());
        }
        Ok(())
    }
}

impl TableSpec {
    pub fn new(
        name: impl Into<String>,
        app_id: i32,
        partition_count: i32,
        replicas: impl IntoIterator<Item = SocketAddrV4>,
    ) -> Self {
        TableSpec {
            name: name.into(),
            app_id,
            partition_count,
            replicas: replicas.into_iter().collect(),
            replica_hosts: None,
            host_port_fields: None,
            envs: BTreeMap::new(),
            duplication: None,
        }
    }

    /// A table on every replica node the cluster serves.
    pub fn served(name: impl Into<String>, app_id: i32, partition_count: i32) -> Self {
        TableSpec::new(name, app_id, partition_count, [])
    }

    /// Sets an app env.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.envs.insert(key.into(), value.into());
        self
    }

    /// Duplicates the table to `app` in the cluster whose MetaServers are `to`.
    pub fn with_duplication(mut self, dup: DuplicationSpec) -> Self {
        self.duplication = Some(dup);
        self
    }

    /// Sets the host names used in the `hp_*` fields, one per replica.
    pub fn with_hosts<S: Into<String>>(mut self, hosts: impl IntoIterator<Item = S>) -> Self {
        self.replica_hosts = Some(hosts.into_iter().map(Into::into).collect());
        self
    }

    /// Overrides the cluster's choice of writing the 2.6 `hp_*` fields, for this table only.
    pub fn with_host_port_fields(mut self, on: bool) -> Self {
        self.host_port_fields = Some(on);
        self
    }

    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |reason: String| SimError::InvalidTable {
            name: self.name.clone(),
            reason,
        };
        if self.name.is_empty() {
            return Err(bad("the name is empty".into()));
        }
        if self.app_id <= 0 {
            return Err(bad(format!("app_id {} is not positive", self.app_id)));
        }
        if !(1..=MAX_PARTITIONS).contains(&self.partition_count) {
            return Err(bad(format!(
                "partition_count {} is outside 1..={MAX_PARTITIONS}",
                self.partition_count
            )));
        }
        if let Some(hosts) = &self.replica_hosts {
            if hosts.len() != self.replicas.len() {
                return Err(bad(format!(
                    "{} replica_hosts for {} replicas",
                    hosts.len(),
                    self.replicas.len()
                )));
            }
            if hosts.iter().any(|h| h.is_empty()) {
                return Err(bad("an empty replica host name".into()));
            }
        }
        envs::validate_all(&self.envs).map_err(bad)?;
        if let Some(dup) = &self.duplication {
            dup.validate().map_err(bad)?;
        }
        Ok(())
    }
}

/// The layout of `tables.yaml`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TablesFile {
    pub tables: Vec<TableSpec>,
}

/// Parses and validates the text of a `tables.yaml`.
pub fn parse_tables(yaml: &str) -> Result<Vec<TableSpec>, SimError> {
    let file: TablesFile =
        serde_saphyr::from_str(yaml).map_err(|e| SimError::Yaml(e.to_string()))?;
    validate_tables(&file.tables)?;
    Ok(file.tables)
}

/// Reads, parses and validates a `tables.yaml`.
pub fn load_tables(path: &Path) -> Result<Vec<TableSpec>, SimError> {
    let text = std::fs::read_to_string(path).map_err(|source| SimError::ReadConfig {
        path: path.to_owned(),
        source,
    })?;
    parse_tables(&text)
}

/// Every table on its own, then names and app_ids unique across the cluster, as in Pegasus.
pub fn validate_tables<'a>(
    tables: impl IntoIterator<Item = &'a TableSpec>,
) -> Result<(), SimError> {
    let mut names = HashSet::new();
    let mut app_ids = HashSet::new();
    for t in tables {
        t.validate()?;
        if !names.insert(t.name.as_str()) {
            return Err(SimError::InvalidTable {
                name: t.name.clone(),
                reason: "the name appears twice".into(),
            });
        }
        if !app_ids.insert(t.app_id) {
            return Err(SimError::InvalidTable {
                name: t.name.clone(),
                reason: format!("app_id {} is used by another table", t.app_id),
            });
        }
    }
    Ok(())
}

/// How to start a simulated cluster.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// One MetaServer per address. Port 0 binds a free port, kept across stop and restart.
    pub listen: Vec<SocketAddr>,
    /// Index into `listen` of the leader; `None` for a cluster whose metas know no leader.
    pub leader: Option<usize>,
    pub tables: Vec<TableSpec>,
    /// Whether replies carry the 2.6 `hp_*` fields, unless a table says otherwise. Forward
    /// replies follow this setting.
    pub host_port_fields: bool,
    /// Where to serve the admin HTTP API, if anywhere.
    pub admin_listen: Option<SocketAddr>,
    /// Replica server nodes to serve data requests on, loopback only; port 0 picks a free port.
    /// Empty: no data plane (the replica addresses of the tables are only reported).
    pub replica_listen: Vec<SocketAddr>,
    /// The mode every replica node starts in.
    pub replica_mode: ReplicaMode,
    /// How often each replica node picks up app env changes (`config_sync_interval_ms`).
    pub config_sync_interval: Duration,
    /// Whether query_duplication reports per-partition progress (2.6) or not (2.4/2.5).
    pub dup_progress: DupProgress,
    /// Extra delay before a write is shipped to a duplication follower.
    pub dup_lag: Duration,
    /// This cluster's name, for `RPC_CM_ADD_DUPLICATION` to refuse itself as the remote.
    pub cluster_name: String,
    /// This cluster's id in `[duplication-group]`, sent with every duplicated write.
    pub cluster_id: i8,
    /// Other clusters by name (`[pegasus.clusters]`), for `RPC_CM_ADD_DUPLICATION`.
    pub remote_clusters: BTreeMap<String, Vec<String>>,
}

/// What query_duplication tells about progress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DupProgress {
    /// Per-partition confirmed and last committed decrees (`partition_states`, 2.6).
    #[default]
    Full,
    /// No per-partition numbers, as 2.4 and 2.5 answer.
    None,
}

impl SimConfig {
    /// `metas` MetaServers on free loopback ports, the first one the leader, no admin port.
    pub fn loopback(metas: usize, tables: Vec<TableSpec>) -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        SimConfig {
            listen: vec![any; metas],
            leader: Some(0),
            tables,
            host_port_fields: false,
            admin_listen: None,
            replica_listen: Vec::new(),
            replica_mode: ReplicaMode::Serving,
            config_sync_interval: Duration::from_secs(30),
            dup_progress: DupProgress::Full,
            dup_lag: Duration::ZERO,
            cluster_name: "sim".into(),
            cluster_id: 1,
            remote_clusters: BTreeMap::new(),
        }
    }

    /// Like [`SimConfig::loopback`], with `replicas` replica nodes on free loopback ports that
    /// serve data requests, and the config sync interval short for tests.
    pub fn with_replicas(metas: usize, replicas: usize, tables: Vec<TableSpec>) -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        SimConfig {
            replica_listen: vec![any; replicas],
            config_sync_interval: Duration::from_millis(200),
            ..SimConfig::loopback(metas, tables)
        }
    }

    pub fn validate(&self) -> Result<(), SimError> {
        if self.listen.is_empty() {
            return Err(SimError::Config("no listen address".into()));
        }
        let mut ports = HashSet::new();
        for addr in &self.listen {
            match addr.ip() {
                // The forward reply names the leader by this address, as an IPv4 rpc_address.
                IpAddr::V4(ip) if !ip.is_unspecified() => {}
                _ => {
                    return Err(SimError::Config(format!(
                        "listen address {addr}: must be a specific IPv4 address, since \
                         forward replies advertise it to clients"
                    )));
                }
            }
            if addr.port() != 0 && !ports.insert(*addr) {
                return Err(SimError::Config(format!(
                    "listen address {addr} appears twice"
                )));
            }
        }
        let mut replica_ports = HashSet::new();
        for addr in &self.replica_listen {
            if !matches!(addr.ip(), IpAddr::V4(ip) if ip.is_loopback()) {
                return Err(SimError::Config(format!(
                    "replica listen address {addr}: must be an IPv4 loopback address \
                     (127.0.0.0/8): clients dial what query_config reports"
                )));
            }
            if addr.port() != 0 && (!replica_ports.insert(*addr) || ports.contains(addr)) {
                return Err(SimError::Config(format!(
                    "replica listen address {addr} appears twice"
                )));
            }
        }
        if self.config_sync_interval.is_zero() {
            return Err(SimError::Config(
                "the config sync interval must not be zero".into(),
            ));
        }
        if self.replica_listen.is_empty()
            && let Some(t) = self.tables.iter().find(|t| t.replicas.is_empty())
        {
            return Err(SimError::InvalidTable {
                name: t.name.clone(),
                reason: "no replicas, and the cluster serves no replica nodes".into(),
            });
        }
        if let Some(leader) = self.leader
            && leader >= self.listen.len()
        {
            return Err(SimError::Config(format!(
                "leader index {leader} but only {} MetaServers",
                self.listen.len()
            )));
        }
        validate_tables(&self.tables)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let tables = parse_tables(
            "tables:\n  - {name: temp, app_id: 2, partition_count: 8, replicas: \
             [\"127.0.0.1:34801\", \"127.0.0.1:34802\", \"127.0.0.1:34803\"]}\n",
        )
        .expect("parses");
        assert_eq!(tables.len(), 1);
        assert_eq!(tables[0].name, "temp");
        assert_eq!(tables[0].partition_count, 8);
        assert_eq!(
            tables[0].replicas[2],
            "127.0.0.1:34803".parse().expect("addr")
        );
        assert_eq!(tables[0].replica_hosts, None);
    }

    #[test]
    fn parses_hosts_and_host_port_flag() {
        let tables = parse_tables(
            "tables:\n  - name: temp\n    app_id: 2\n    partition_count: 4\n    replicas: \
             [127.0.0.1:34801, 127.0.0.1:34802]\n    replica_hosts: [node1, node2]\n    \
             host_port_fields: true\n",
        )
        .expect("parses");
        assert_eq!(
            tables[0].replica_hosts.as_deref(),
            Some(&["node1".to_string(), "node2".to_string()][..])
        );
        assert_eq!(tables[0].host_port_fields, Some(true));
    }

    #[test]
    fn rejects_bad_tables() {
        for (yaml, why) in [
            (
                "tables: [{name: t, app_id: 1, partition_count: 0, replicas: [1.2.3.4:5]}]",
                "partition_count",
            ),
            (
                "tables: [{name: t, app_id: 0, partition_count: 1, replicas: [1.2.3.4:5]}]",
                "app_id",
            ),
            (
                "tables: [{name: t, app_id: 1, partition_count: 1, replicas: [1.2.3.4:5], \
                 envs: {replica.deny_client_request: later}}]",
                "invalid value",
            ),
            (
                "tables: [{name: t, app_id: 1, partition_count: 1, replicas: [1.2.3.4:5], \
                 duplication: {to: [], app: t}}]",
                "MetaServers",
            ),
            (
                "tables: [{name: t, app_id: 1, partition_count: 1, replicas: [host:5]}]",
                "YAML",
            ),
            (
                "tables: [{name: t, app_id: 1, partition_count: 1, replicas: [1.2.3.4:5], x: 1}]",
                "YAML",
            ),
            (
                "tables: [{name: t, app_id: 1, partition_count: 1, replicas: [1.2.3.4:5], replica_hosts: [a, b]}]",
                "replica_hosts",
            ),
            (
                "tables: [{name: t, app_id: 1, partition_count: 1, replicas: [1.2.3.4:5]}, \
                 {name: t, app_id: 2, partition_count: 1, replicas: [1.2.3.4:5]}]",
                "twice",
            ),
            (
                "tables: [{name: t, app_id: 1, partition_count: 1, replicas: [1.2.3.4:5]}, \
                 {name: u, app_id: 1, partition_count: 1, replicas: [1.2.3.4:5]}]",
                "another table",
            ),
            ("tables: [", "YAML"),
        ] {
            let err = parse_tables(yaml).expect_err(yaml).to_string();
            assert!(err.contains(why), "{yaml}: {err}");
        }
    }

    #[test]
    fn rejects_bad_listen_addresses() {
        let mut c = SimConfig::loopback(2, vec![]);
        c.validate().expect("loopback is fine");
        c.leader = Some(2);
        assert!(c.validate().is_err());
        c.leader = None;
        c.validate().expect("no leader is fine");
        c.listen[0] = "0.0.0.0:34601".parse().expect("addr");
        assert!(c.validate().is_err());
        c.listen = vec!["127.0.0.1:34601".parse().expect("addr"); 2];
        assert!(c.validate().is_err());
        c.listen = vec![];
        assert!(c.validate().is_err());
    }

    #[test]
    fn replica_nodes_are_loopback_and_tables_may_use_them_all() {
        let served = TableSpec::served("t", 1, 4);
        let mut c = SimConfig::loopback(1, vec![served.clone()]);
        let err = c.validate().expect_err("no replica nodes").to_string();
        assert!(err.contains("serves no replica nodes"), "{err}");
        c = SimConfig::with_replicas(1, 3, vec![served]);
        c.validate().expect("served on the three nodes");
        c.replica_listen[1] = "10.0.0.1:34801".parse().expect("addr");
        assert!(c.validate().is_err());
        c.replica_listen[1] = "127.0.0.2:34801".parse().expect("addr");
        c.validate().expect("all of 127/8 is loopback");
        c.replica_listen[2] = "127.0.0.2:34801".parse().expect("addr");
        assert!(c.validate().is_err(), "twice");
    }

    #[test]
    fn parses_envs_and_duplication() {
        let tables = parse_tables(
            "tables:\n  - name: temp\n    app_id: 2\n    partition_count: 4\n    \
             envs: {replica.deny_client_request: \"timeout*write\"}\n    \
             duplication: {to: [\"127.0.0.1:34701\"], app: temp}\n",
        )
        .expect("parses");
        assert!(tables[0].replicas.is_empty());
        assert_eq!(
            tables[0].envs["replica.deny_client_request"],
            "timeout*write"
        );
        let dup = tables[0].duplication.as_ref().expect("duplication");
        assert_eq!(dup.to, ["127.0.0.1:34701"]);
        assert_eq!(dup.cluster_name(), "127.0.0.1:34701");
    }
}
