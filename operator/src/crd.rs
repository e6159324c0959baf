//! The `PegasusTableRoute` custom resource: which cluster a Pegasus table is routed to, in which
//! zone. The same types are read from the Kubernetes API and from route YAML files
//! (`--routes-dir`), and `crdgen` prints the CRD from them.
//!
//! The schema refuses what the API server can check on its own (table name, `host:port` lists,
//! distinct clusters, `active: backup` without a backup); [`crate::reconcile::validate`] checks
//! the same again, because files never pass through the API server.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of the resource.
pub const GROUP: &str = "metaproxy.pegasus.io";
/// The finalizer that keeps a resource until its znode is removed.
pub const FINALIZER: &str = "metaproxy.pegasus.io/znode";

/// A Pegasus table name: 1 to 256 of the characters Pegasus' DDL accepts (`0-9a-zA-Z.:_`). With
/// the rule on the field that refuses `.` and `..` (not znode names), the schema accepts exactly
/// what `metaproxy::route::valid_table_name` does, which the operator and the proxy both use.
pub const TABLE_PATTERN: &str = r"^[0-9a-zA-Z.:_]{1,256}$";
/// `host:port` with a port in 1..=65535; the host is an IPv4 address or a DNS name.
pub const META_ADDR_PATTERN: &str = r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$";

/// A Pegasus table routed to one of two clusters.
// clippy reads the repeated `type_ = ..` of the printcolumns as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "metaproxy.pegasus.io",
    version = "v1alpha1",
    kind = "PegasusTableRoute",
    plural = "pegasustableroutes",
    shortname = "ptr",
    namespaced,
    status = "PegasusTableRouteStatus",
    derive = "PartialEq",
    doc = "Routes a Pegasus table to its primary or backup cluster through a ZooKeeper record",
    printcolumn(name = "Table", type_ = "string", json_path = ".spec.table"),
    printcolumn(name = "Zone", type_ = "string", json_path = ".status.zone"),
    printcolumn(name = "Active", type_ = "string", json_path = ".status.activeCluster"),
    printcolumn(
        name = "Primary",
        type_ = "string",
        json_path = ".spec.primary.cluster"
    ),
    printcolumn(name = "Backup", type_ = "string", json_path = ".spec.backup.cluster"),
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.failover.mode"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("!has(self.backup) || self.backup.cluster != self.primary.cluster")
        .message("primary and backup must be different clusters"),
    validation = Rule::new("self.active != 'backup' || has(self.backup)")
        .message("active: backup needs a backup cluster"),
)]
#[serde(rename_all = "camelCase")]
pub struct PegasusTableRouteSpec {
    /// The Pegasus table name.
    #[schemars(length(min = 1, max = 256), regex(pattern = TABLE_PATTERN))]
    #[x_kube(
        validation = Rule::new("self != '.' && self != '..'")
            .message("table: . and .. are not table names")
    )]
    pub table: String,
    /// The zone (proxy set) whose ZooKeeper root holds the record; the operator's default zone
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub zone: Option<String>,
    /// The cluster that normally serves the table.
    pub primary: ClusterRef,
    /// A duplication follower the table can be switched to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<ClusterRef>,
    /// Where clients are routed.
    #[serde(default)]
    pub active: ActiveCluster,
    /// How the active cluster changes.
    #[serde(default)]
    pub failover: FailoverPolicy,
}

/// A Pegasus cluster and its MetaServers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRef {
    /// The cluster name written to the record.
    #[schemars(length(min = 1, max = 253))]
    pub cluster: String,
    /// The cluster's MetaServers, `host:port` (IP addresses or DNS names).
    #[schemars(length(min = 1, max = 32), inner(length(max = 260), regex(pattern = META_ADDR_PATTERN)))]
    pub meta_servers: Vec<String>,
}

/// Which of the route's clusters clients are sent to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ActiveCluster {
    #[default]
    Primary,
    Backup,
}

/// The failover policy. Only the mode exists for now; automatic failover comes with its own
/// settings later.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverPolicy {
    #[serde(default)]
    pub mode: FailoverMode,
}

/// How the active cluster changes. `Manual`: only the spec's `active` field decides.
/// `Automatic`: the operator may flip to the backup when the primary fails; this version does
/// not do that yet: it routes to `active` as in `Manual`, and the status carries the condition
/// `AutomaticFailover` with status `False` and reason `NotImplemented` (and a Warning event when
/// it first appears), so nobody relies on a failover that will not happen.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum FailoverMode {
    /// The spec's `active` field alone decides.
    #[default]
    Manual,
    /// The operator may flip to the backup when the primary fails. Not active yet: see the
    /// `AutomaticFailover` condition.
    Automatic,
}

/// What the operator last did with the route.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PegasusTableRouteStatus {
    /// The cluster the record points clients to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_cluster: Option<String>,
    /// The zone the record was written in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// The znode holding the record (`<root>/<table>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub znode: Option<String>,
    /// The znode's data version after the operator's last read or write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub znode_version: Option<i32>,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `RouteSynced` and `Conflict`; with `failover.mode: Automatic` also
    /// `AutomaticFailover` (`False`, reason `NotImplemented`, until automatic failover exists).
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// A status condition, as Kubernetes conventions describe it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// CamelCase, one word.
    pub reason: String,
    #[serde(default)]
    pub message: String,
    /// RFC 3339.
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl PegasusTableRouteStatus {
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

/// The CRD as YAML, exactly as committed in `crds/pegasustableroutes.yaml`.
pub fn crd_yaml() -> Result<String, serde_saphyr::SerializeError> {
    use kube::CustomResourceExt;
    let header = "# Generated by `cargo run -p metaproxy-operator --bin crdgen`; do not edit.\n";
    Ok(format!(
        "{header}{}",
        serde_saphyr::to_string(&PegasusTableRoute::crd())?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema's pattern (compiled here as the API server would) and its rule accept exactly
    /// the names the proxy's rule does.
    #[test]
    fn table_schema_is_the_proxys_rule() {
        let pattern = regex::Regex::new(TABLE_PATTERN).expect("pattern compiles");
        let schema_ok = |name: &str| pattern.is_match(name) && name != "." && name != "..";
        let long_ok = "x".repeat(256);
        let long_bad = "x".repeat(257);
        for name in [
            "temp",
            "a",
            "my_table.v2",
            "ns:table",
            "0",
            "_x",
            ".hidden",
            "a..b",
            &long_ok,
        ] {
            assert!(schema_ok(name), "{name} should be accepted");
            assert!(metaproxy::route::valid_table_name(name), "{name}");
        }
        for name in [
            "",
            ".",
            "..",
            "a/b",
            "../x",
            "has space",
            "dash-ed",
            "ünï",
            "a\nb",
            &long_bad,
        ] {
            assert!(!schema_ok(name), "{name:?} should be refused");
            assert!(!metaproxy::route::valid_table_name(name), "{name:?}");
        }
        let crd = serde_json::to_value(<PegasusTableRoute as kube::CustomResourceExt>::crd())
            .expect("CRD");
        let table = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["table"];
        assert_eq!(table["pattern"], TABLE_PATTERN);
        assert_eq!(table["maxLength"], 256);
        assert_eq!(
            table["x-kubernetes-validations"][0]["rule"],
            "self != '.' && self != '..'"
        );
    }

    #[test]
    fn spec_defaults_and_spelling() {
        let yaml = "table: temp\nprimary: {cluster: c1, metaServers: [\"10.0.0.1:34601\"]}\n";
        let spec: PegasusTableRouteSpec = serde_saphyr::from_str(yaml).expect("parses");
        assert_eq!(spec.active, ActiveCluster::Primary);
        assert_eq!(spec.failover.mode, FailoverMode::Manual);
        assert_eq!(spec.zone, None);
        let json = serde_json::to_value(&spec).expect("json");
        assert_eq!(json["active"], "primary");
        assert_eq!(json["failover"]["mode"], "Manual");
        assert_eq!(json["primary"]["metaServers"][0], "10.0.0.1:34601");
    }
}
