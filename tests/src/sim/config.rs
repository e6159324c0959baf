//! What the simulated cluster is made of: its tables (read from `tables.yaml` or built in code)
//! and the addresses its MetaServers listen on. Everything is validated here, once, so that the
//! serving path can trust it.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::SimError;

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
    pub replicas: Vec<SocketAddrV4>,
    /// Host names parallel to `replicas`, for the 2.6 `hp_*` fields. Default: each replica's IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_hosts: Option<Vec<String>>,
    /// Whether replies for this table carry the 2.6 `hp_*` fields. Default: the cluster setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port_fields: Option<bool>,
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
        }
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
        if self.replicas.is_empty() {
            return Err(bad("no replicas".into()));
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
                "tables: [{name: t, app_id: 1, partition_count: 1, replicas: []}]",
                "no replicas",
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
}
