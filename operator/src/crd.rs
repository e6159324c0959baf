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
        name = "Phase",
        type_ = "string",
        json_path = ".status.switchover.phase"
    ),
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
    /// Where clients are routed. Changing it on a route that is in place is a planned switchover
    /// (`switchover`). After an automatic failover the record routes to the backup while this
    /// still says `primary`: setting `backup` acknowledges the failover, and setting `primary`
    /// again afterwards is the planned switchover back. The operator never changes this field.
    #[serde(default)]
    pub active: ActiveCluster,
    /// How the active cluster changes.
    #[serde(default)]
    pub failover: FailoverPolicy,
    /// How a planned switchover is carried out.
    #[serde(default)]
    pub switchover: SwitchoverPolicy,
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

/// A duration as the settings write it: whole numbers with a unit, `500ms`, `5s`, `10m`, `1m30s`.
pub const DURATION_PATTERN: &str = r"^([0-9]+(ms|s|m|h))+$";

/// The failover policy: how the active cluster changes besides `spec.active`, and, in
/// `Automatic` mode, when the primary counts as failed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverPolicy {
    #[serde(default)]
    pub mode: FailoverMode,
    /// Time between two probes of each of the route's clusters (a query_config for the table
    /// through the cluster's MetaServers; that long is also its deadline).
    #[serde(default = "default_probe_interval")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub probe_interval: String,
    /// Failed probes of the primary in a row (spanning `failureThreshold - 1` probe intervals)
    /// before it counts as failed. Observers look back over `failureThreshold x probeInterval`.
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1, max = 1000))]
    pub failure_threshold: u32,
    /// After any flip of the route (automatic or planned), no automatic flip for this long.
    #[serde(default = "default_cooldown")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub cooldown: String,
    /// How many observers (the operator's `--observer` proxy sets) must see the primary down
    /// (recent failures and no success within the window) for an automatic failover. Observers
    /// that cannot be reached or saw no traffic to the primary abstain. Default: a majority of the
    /// configured observers. Without observers the operator's probes decide alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub quorum: Option<u32>,
}

fn default_probe_interval() -> String {
    "5s".into()
}

fn default_failure_threshold() -> u32 {
    6
}

fn default_cooldown() -> String {
    "10m".into()
}

impl Default for FailoverPolicy {
    fn default() -> Self {
        FailoverPolicy {
            mode: FailoverMode::default(),
            probe_interval: default_probe_interval(),
            failure_threshold: default_failure_threshold(),
            cooldown: default_cooldown(),
            quorum: None,
        }
    }
}

/// How the active cluster changes. The operator never fails back on its own: going back to the
/// primary is a planned switchover a person asks for (see `spec.active`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum FailoverMode {
    /// Only `spec.active` decides; changing it is a planned switchover.
    #[default]
    Manual,
    /// As `Manual`, and the operator fails the table over to the backup when the primary has
    /// failed for the whole window, the backup is healthy and a quorum of observers agree. The
    /// status then says `FailedOver=True`; a person acknowledges by setting `spec.active: backup`,
    /// and later goes back with `spec.active: primary` (a planned switchover).
    Automatic,
}

/// How a planned switchover (a change of `spec.active`) is carried out: fence writes on the old
/// cluster, wait for duplication to drain into the new one, flip the record, send clients away
/// from the old cluster. Each phase shows in `status.switchover` and has a time limit; a phase
/// that runs out aborts the switchover (the fence is lifted, the route stays).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SwitchoverPolicy {
    /// Deny writes on the old cluster (`replica.deny_client_request: timeout*write`) and wait for
    /// duplication to drain before the flip. `false` flips at once, for clusters without
    /// duplication (writes made on the old cluster since its last copy are not carried over).
    #[serde(default = "default_true")]
    pub fence: bool,
    /// How long after the MetaServer stored the fence its replica servers are taken to apply it
    /// (their config sync, `config_sync_interval_ms`, 30 s by default, plus a margin).
    #[serde(default = "default_fence_settle")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub fence_settle: String,
    /// How long setting or lifting a fence (an app env on a MetaServer) may keep failing before
    /// the switchover gives up on it.
    #[serde(default = "default_fence_timeout")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub fence_timeout: String,
    /// How long duplication may take to drain (every partition's confirmed decree at its last
    /// committed decree) before the switchover is aborted.
    #[serde(default = "default_drain_timeout")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub drain_timeout: String,
    /// The wait instead of the drain check when the old cluster does not report per-partition
    /// duplication progress (Pegasus 2.4 and 2.5).
    #[serde(default = "default_drain_delay")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub drain_delay: String,
}

fn default_true() -> bool {
    true
}

fn default_fence_settle() -> String {
    "35s".into()
}

fn default_fence_timeout() -> String {
    "1m".into()
}

fn default_drain_timeout() -> String {
    "5m".into()
}

fn default_drain_delay() -> String {
    "1m".into()
}

impl Default for SwitchoverPolicy {
    fn default() -> Self {
        SwitchoverPolicy {
            fence: true,
            fence_settle: default_fence_settle(),
            fence_timeout: default_fence_timeout(),
            drain_timeout: default_drain_timeout(),
            drain_delay: default_drain_delay(),
        }
    }
}

/// What the operator last did with the route.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PegasusTableRouteStatus {
    /// The cluster the record points clients to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_cluster: Option<String>,
    /// Which of the route's clusters that is: it differs from `spec.active` after an automatic
    /// failover (until acknowledged) and during a switchover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_side: Option<ActiveCluster>,
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
    /// When the record last moved from one cluster to the other (RFC 3339); the cooldown counts
    /// from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_flip_time: Option<String>,
    /// The clusters as the operator's probes see them (`failover.mode: Automatic`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthStatus>,
    /// The last automatic failover, with its evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<FailoverStatus>,
    /// The switchover in progress, or the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switchover: Option<SwitchoverStatus>,
    /// `Ready`, `RouteSynced` and `Conflict`; `Switchover` once the route has had one; with
    /// `failover.mode: Automatic` also `PrimaryHealthy`, `BackupHealthy` and `FailedOver`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// The route's clusters as the operator's probes see them, and what the observers say.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<ClusterHealthStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<ClusterHealthStatus>,
    /// The observers' votes on the primary, while it is failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observers: Option<ObserverVotes>,
}

/// One cluster's probes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterHealthStatus {
    pub cluster: String,
    /// Whether the last probe succeeded; absent until the first probe since this operator
    /// started leading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
    /// Failed probes in a row.
    #[serde(default)]
    pub consecutive_failures: u32,
    /// When the probes last went from succeeding to failing or back (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// What the observers (one proxy set per zone, `GET /clusters`) say of the primary.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObserverVotes {
    /// Observers the operator was given (`--observer`); 0: the operator decides alone.
    pub configured: u32,
    /// Down votes needed.
    pub quorum: u32,
    pub down: u32,
    pub up: u32,
    /// Unreachable, or no recent traffic to the primary.
    pub abstained: u32,
    #[serde(default)]
    pub votes: Vec<ObserverVote>,
}

/// One observer's vote.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObserverVote {
    pub zone: String,
    /// `Down`, `Up` or `Abstain`.
    pub vote: String,
    #[serde(default)]
    pub detail: String,
}

/// An automatic failover and its evidence.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverStatus {
    /// When the operator decided (RFC 3339).
    pub time: String,
    pub from: String,
    pub to: String,
    pub reason: String,
    /// The primary's failed probes in a row when decided.
    pub probe_failures: u32,
    /// The observers' votes when decided; absent without observers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observers: Option<ObserverVotes>,
    /// Whether writes on the old primary were fenced first (`Fenced`), or not because it did not
    /// answer (`FencingSkipped`).
    #[serde(default)]
    pub fencing: String,
    /// Whether a person has acknowledged it by setting `spec.active: backup`.
    #[serde(default)]
    pub acknowledged: bool,
}

/// A switchover (planned, or the steps of an automatic failover), in progress or finished.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SwitchoverStatus {
    /// The cluster clients are moved away from.
    pub from: String,
    /// The cluster clients are moved to.
    pub to: String,
    /// Part of an automatic failover rather than asked for.
    #[serde(default)]
    pub automatic: bool,
    /// `Fencing`, `Settling`, `Draining`, `Reconfiguring`, `Aborting` while in progress;
    /// `Completed` or `Aborted` once over.
    pub phase: String,
    /// RFC 3339.
    pub start_time: String,
    /// When the phase began (RFC 3339); its time limit counts from here.
    pub phase_start_time: String,
    /// What the phase waits for, or how it ended.
    #[serde(default)]
    pub message: String,
}

impl PegasusTableRouteStatus {
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
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
