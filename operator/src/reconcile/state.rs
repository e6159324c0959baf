//! What the operator keeps beside the record in a table's znode, so that a restarted operator
//! (or another replica, or one reading a routes directory, which has no status store) resumes
//! where the last one was: the switchover in progress and its phase, the automatic failover not
//! yet acknowledged, the fence it left on a cluster, the switchover it gave up, and when the
//! record last moved (the cooldown).
//!
//! ```text
//!  {"cluster":"c2",...,"owner":"default/temp",
//!   "state":{"flippedAt":1767225600000,
//!            "switchover":{"from":"primary","to":"backup","fromCluster":"c1","toCluster":"c2",
//!                          "phase":"reconfiguring","startedAt":..,"since":..,"fence":true}}}
//! ```
//!
//! Times are milliseconds since the epoch: they must mean the same after a restart, which a
//! monotonic clock does not. The record and its state change in one compare-and-set write, so a
//! flip and the phase that follows it are never apart.

use serde::{Deserialize, Serialize};

use crate::crd::ActiveCluster;

/// The operator's state of one route, kept in its znode. `Default` (nothing to remember) is not
/// written at all, so routes that never switched keep the plain record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteState {
    /// When the record last moved to the other cluster (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flipped_at: Option<i64>,
    /// An automatic failover not yet acknowledged (`spec.active` still names the primary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_over: Option<FailedOver>,
    /// The switchover in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switchover: Option<Switchover>,
    /// A cluster this operator left fenced (the old side of a finished switchover).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fenced: Option<Fenced>,
    /// A switchover that was given up: not tried again until `spec.active` names the side the
    /// record routes to (and then the other one again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<Aborted>,
}

impl RouteState {
    pub fn is_empty(&self) -> bool {
        *self == RouteState::default()
    }
}

/// A switchover in progress: planned (`spec.active` changed) or the steps of an automatic
/// failover.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Switchover {
    pub from: ActiveCluster,
    pub to: ActiveCluster,
    /// The clusters' names when it began: if the route's clusters change under it, it stops.
    pub from_cluster: String,
    pub to_cluster: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub automatic: bool,
    pub phase: Phase,
    /// When the switchover began (ms).
    pub started_at: i64,
    /// When the phase began (ms); its time limit counts from here.
    pub since: i64,
    /// Whether writes on the old cluster are fenced (or may be: a fence request that got no
    /// answer may still have been stored), so an abort lifts it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub fence: bool,
    /// An automatic failover whose old cluster did not take the fence.
    #[serde(default, skip_serializing_if = "is_false")]
    pub fencing_skipped: bool,
    /// Why an abort is under way, or what a finished phase left behind (drain incomplete, ...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// The evidence of an automatic failover, kept until the flip records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<FailedOver>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The phases of a switchover, in order (`Aborting` instead of the rest when it gives up).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    /// Deny writes on the old cluster; lift this operator's fence on the new one.
    Fencing,
    /// Wait for the replica servers to apply the fence (their config sync).
    Settling,
    /// Wait for duplication into the new cluster to catch up.
    Draining,
    /// The record routes to the new cluster; make the old one send its clients away.
    Reconfiguring,
    /// Giving up before the flip: lift the fence on the old cluster.
    Aborting,
}

impl Phase {
    /// The name shown in `status.switchover.phase`.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Fencing => "Fencing",
            Phase::Settling => "Settling",
            Phase::Draining => "Draining",
            Phase::Reconfiguring => "Reconfiguring",
            Phase::Aborting => "Aborting",
        }
    }

    /// Before the record moved.
    pub fn before_flip(self) -> bool {
        matches!(self, Phase::Fencing | Phase::Settling | Phase::Draining)
    }
}

/// An automatic failover: when, why, and the evidence.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedOver {
    /// When it was decided (ms).
    pub at: i64,
    pub reason: String,
    pub probe_failures: u32,
    /// Observers configured, quorum, and the votes (down, up, abstained) when decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub votes: Option<VoteCount>,
    /// `Fenced` or `FencingSkipped`, once known.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fencing: String,
}

/// Observer votes, counted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoteCount {
    pub configured: u32,
    pub quorum: u32,
    pub down: u32,
    pub up: u32,
    pub abstained: u32,
}

/// A cluster this operator fenced and left so.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fenced {
    pub cluster: String,
    /// The `replica.deny_client_request` value set.
    pub value: String,
}

/// A switchover given up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Aborted {
    pub to: ActiveCluster,
    pub at: i64,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_is_compact_json_and_reads_back() {
        let state = RouteState {
            flipped_at: Some(1_767_225_600_000),
            switchover: Some(Switchover {
                from: ActiveCluster::Primary,
                to: ActiveCluster::Backup,
                from_cluster: "c1".into(),
                to_cluster: "c2".into(),
                automatic: false,
                phase: Phase::Reconfiguring,
                started_at: 1,
                since: 2,
                fence: true,
                fencing_skipped: false,
                note: String::new(),
                evidence: None,
            }),
            ..RouteState::default()
        };
        let json = serde_json::to_string(&state).expect("json");
        assert_eq!(
            json,
            r#"{"flippedAt":1767225600000,"switchover":{"from":"primary","to":"backup","fromCluster":"c1","toCluster":"c2","phase":"reconfiguring","startedAt":1,"since":2,"fence":true}}"#
        );
        assert_eq!(
            serde_json::from_str::<RouteState>(&json).expect("parses"),
            state
        );
        assert!(RouteState::default().is_empty());
        assert_eq!(
            serde_json::to_string(&RouteState::default()).expect("json"),
            "{}"
        );
    }
}
