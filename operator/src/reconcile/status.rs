//! Update status: what a reconcile found and did, as the route's status and its conditions.
//! Pure: the time is passed in.
//!
//! | condition | when | says |
//! |---|---|---|
//! | `Ready`, `RouteSynced` | always | the znode holds the route's record (or why not) |
//! | `Conflict` | always | another route owns the table in the zone |
//! | `Switchover` | once the route has had one | `True` while one runs (reason: its phase); `False` after, reason `Completed` (what the old cluster was left with, how to lift it) or `Aborted` (why, how to retry) |
//! | `FailedOver` | `failover.mode: Automatic` | `True` after an automatic failover until a person acknowledges it; `False` with why not (`PrimaryHealthy`, `PrimaryFailing`, `BackupUnhealthy`, `NoQuorum`, `CoolingDown`, ...) |
//! | `PrimaryHealthy`, `BackupHealthy` | `failover.mode: Automatic` | the probes of each cluster, with the last error |
//!
//! The placeholder condition `AutomaticFailover` of earlier versions is removed where found.

use crate::clock::rfc3339;
use crate::crd::{
    ActiveCluster, Condition, FailoverStatus, HealthStatus, ObserverVote, ObserverVotes,
    PegasusTableRouteStatus, SwitchoverStatus,
};
use crate::reconcile::decide::{Event, Failover};
use crate::reconcile::failover::Votes;
use crate::reconcile::state::{Phase, RouteState, Switchover, VoteCount};
use crate::reconcile::switchover::{DENY_KEY, DENY_WRITES, SEND_AWAY, Settings, side_name};

pub const READY: &str = "Ready";
pub const ROUTE_SYNCED: &str = "RouteSynced";
pub const CONFLICT: &str = "Conflict";
pub const SWITCHOVER: &str = "Switchover";
pub const FAILED_OVER: &str = "FailedOver";
pub const PRIMARY_HEALTHY: &str = "PrimaryHealthy";
pub const BACKUP_HEALTHY: &str = "BackupHealthy";
/// The placeholder of versions without automatic failover; removed where found.
const AUTOMATIC_FAILOVER: &str = "AutomaticFailover";

/// The condition reasons, CamelCase as Kubernetes conventions want.
pub mod reason {
    pub const SYNCED: &str = "Synced";
    pub const ZOOKEEPER_UNAVAILABLE: &str = "ZooKeeperUnavailable";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const UNKNOWN_ZONE: &str = "UnknownZone";
    pub const CONFLICTING_ROUTE: &str = "ConflictingRoute";
    pub const NO_CONFLICT: &str = "NoConflict";
    pub const WRITE_CONTENDED: &str = "WriteContended";
    pub const ZOOKEEPER_REFUSED: &str = "ZooKeeperRefused";
    pub const COMPLETED: &str = "Completed";
    pub const ABORTED: &str = "Aborted";
}

/// The end of one reconcile, as far as the status is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The znode holds the route's record.
    Synced {
        zone: String,
        znode: String,
        version: i32,
        active_cluster: String,
    },
    /// An older route owns the table in this zone; nothing was written.
    Yielded {
        zone: String,
        owner: String,
        message: String,
    },
    /// The spec cannot be written; `reason` is one of [`reason`].
    Invalid {
        reason: &'static str,
        message: String,
    },
    /// ZooKeeper failed; the reconcile is retried with backoff.
    Failed {
        reason: &'static str,
        message: String,
    },
}

/// What the reconcile decided about failover and switchover, for a route whose record is in
/// place.
#[derive(Clone, Debug)]
pub struct Switching<'a> {
    pub failover: &'a Failover,
    pub state: &'a RouteState,
    pub active: ActiveCluster,
    /// What happened in this reconcile, in order.
    pub events: &'a [Event],
    /// The probes' view (`Automatic` routes).
    pub health: Option<HealthStatus>,
    pub settings: &'a Settings,
    pub primary: &'a str,
    pub backup: Option<&'a str>,
    pub now_ms: i64,
}

/// The status after `outcome`, keeping transition times of conditions that did not change.
/// `switching` is given when the record is in place (`Synced`); `None` leaves the failover and
/// switchover parts as they were.
pub fn next_status(
    prev: Option<&PegasusTableRouteStatus>,
    generation: Option<i64>,
    outcome: &Outcome,
    switching: Option<&Switching<'_>>,
    now: &str,
) -> PegasusTableRouteStatus {
    let mut status = prev.cloned().unwrap_or_default();
    status.observed_generation = generation;
    status.conditions.retain(|c| c.type_ != AUTOMATIC_FAILOVER);
    let conflict_unknown = |why: &'static str, message: &str| {
        // Who owns the table is written in the znode, which could not be read: the last known
        // answer stands, else it is unknown.
        match prev.and_then(|p| p.condition(CONFLICT)) {
            Some(c) => (
                if c.status == "True" { "True" } else { "False" },
                if c.status == "True" {
                    reason::CONFLICTING_ROUTE
                } else {
                    reason::NO_CONFLICT
                },
                c.message.clone(),
            ),
            None => ("Unknown", why, message.to_owned()),
        }
    };
    let (synced, conflict): ((&str, &str, String), (&str, &str, String)) = match outcome {
        Outcome::Synced {
            zone,
            znode,
            version,
            active_cluster,
        } => {
            status.zone = Some(zone.clone());
            status.znode = Some(znode.clone());
            status.znode_version = Some(*version);
            status.active_cluster = Some(active_cluster.clone());
            let msg = format!("{znode} (version {version}) routes clients to {active_cluster}");
            (
                ("True", reason::SYNCED, msg),
                ("False", reason::NO_CONFLICT, String::new()),
            )
        }
        Outcome::Yielded {
            zone,
            owner,
            message,
        } => {
            // Not ours: what the znode says belongs to the owner's status.
            status.zone = Some(zone.clone());
            status.znode = None;
            status.znode_version = None;
            status.active_cluster = None;
            status.active_side = None;
            status.health = None;
            status.conditions.retain(|c| {
                ![SWITCHOVER, FAILED_OVER, PRIMARY_HEALTHY, BACKUP_HEALTHY]
                    .contains(&c.type_.as_str())
            });
            let msg = format!("not written: {owner} owns this table in zone {zone}");
            (
                ("False", reason::CONFLICTING_ROUTE, msg),
                ("True", reason::CONFLICTING_ROUTE, message.clone()),
            )
        }
        Outcome::Invalid { reason, message } => (
            ("False", reason, message.clone()),
            ("False", reason::NO_CONFLICT, String::new()),
        ),
        Outcome::Failed { reason, message } => {
            // The last known znode and version stay: they are still the best knowledge.
            (
                ("False", reason, message.clone()),
                conflict_unknown(reason, message),
            )
        }
    };
    let ready = (synced.0, synced.1, synced.2.clone());
    set_condition(&mut status.conditions, READY, ready, generation, now);
    set_condition(
        &mut status.conditions,
        ROUTE_SYNCED,
        synced,
        generation,
        now,
    );
    set_condition(&mut status.conditions, CONFLICT, conflict, generation, now);
    if let (Some(sw), Outcome::Synced { .. }) = (switching, outcome) {
        switching_status(&mut status, prev, sw, generation, now);
    }
    status
}

fn switching_status(
    status: &mut PegasusTableRouteStatus,
    prev: Option<&PegasusTableRouteStatus>,
    s: &Switching<'_>,
    generation: Option<i64>,
    now: &str,
) {
    let state = s.state;
    status.active_side = Some(s.active);
    status.last_flip_time = state
        .flipped_at
        .map(rfc3339)
        .or(status.last_flip_time.take());
    let acknowledged = s.events.contains(&Event::Acknowledged);
    status.failover = match &state.failed_over {
        Some(f) => Some(FailoverStatus {
            time: rfc3339(f.at),
            from: s.primary.to_owned(),
            to: s.backup.unwrap_or_default().to_owned(),
            reason: f.reason.clone(),
            probe_failures: f.probe_failures,
            observers: f.votes.as_ref().map(counted),
            fencing: f.fencing.clone(),
            acknowledged: false,
        }),
        None => prev.and_then(|p| p.failover.clone()).map(|mut f| {
            f.acknowledged |= acknowledged;
            f
        }),
    };
    let finished = s.events.iter().rev().find_map(|e| match e {
        Event::Completed { switchover, note } => Some(SwitchoverStatus {
            phase: reason::COMPLETED.into(),
            phase_start_time: rfc3339(s.now_ms),
            message: completed_message(switchover, note, state, s.active),
            ..switchover_status(switchover, String::new())
        }),
        Event::Aborted {
            switchover,
            reason: why,
            note,
        } => Some(SwitchoverStatus {
            phase: reason::ABORTED.into(),
            phase_start_time: rfc3339(s.now_ms),
            message: aborted_message(switchover, why, note, s.active),
            ..switchover_status(switchover, String::new())
        }),
        _ => None,
    });
    status.switchover = match (&state.switchover, finished) {
        (Some(sw), _) => Some(switchover_status(sw, phase_message(sw, s.settings))),
        (None, Some(done)) => Some(done),
        (None, None) => status
            .switchover
            .take()
            .map(|prev| ended_unseen(prev, state, s.now_ms)),
    };
    status.health = s.health.clone();

    // Switchover
    let switchover = if let Some(sw) = &state.switchover {
        Some(("True", sw.phase.name(), phase_message(sw, s.settings)))
    } else if let Some(a) = &state.aborted {
        Some((
            "False",
            reason::ABORTED,
            format!(
                "the switchover to the {} was given up: {}. To try again, set spec.active: {}, then spec.active: {} again",
                side_name(a.to),
                a.reason,
                side_name(s.active),
                side_name(a.to)
            ),
        ))
    } else if state.fenced.is_some() || status.switchover.is_some() {
        let in_force = match s.active {
            ActiveCluster::Primary => s.primary,
            ActiveCluster::Backup => s.backup.unwrap_or_default(),
        };
        Some((
            "False",
            reason::COMPLETED,
            match &state.fenced {
                Some(f) => format!(
                    "the record routes to {in_force}; {}",
                    fenced_note(&f.cluster, &f.value)
                ),
                None => format!("the record routes to {in_force}"),
            },
        ))
    } else {
        None
    };
    match switchover {
        Some(c) => set_condition(&mut status.conditions, SWITCHOVER, c, generation, now),
        None => status.conditions.retain(|c| c.type_ != SWITCHOVER),
    }

    // Automatic failover
    match s.failover {
        Failover::Manual => {
            status.health = None;
            status.conditions.retain(|c| {
                ![FAILED_OVER, PRIMARY_HEALTHY, BACKUP_HEALTHY].contains(&c.type_.as_str())
            });
        }
        Failover::Automatic(w) => {
            let flag = if w.failed_over { "True" } else { "False" };
            set_condition(
                &mut status.conditions,
                FAILED_OVER,
                (flag, w.reason, w.message.clone()),
                generation,
                now,
            );
            if let (Some(h), Some(v)) = (status.health.as_mut(), &w.votes) {
                h.observers = Some(votes(v));
            }
            let health = status.health.clone().unwrap_or_default();
            for (type_, cluster) in [
                (PRIMARY_HEALTHY, health.primary.as_ref()),
                (BACKUP_HEALTHY, health.backup.as_ref()),
            ] {
                let c = match cluster.and_then(|c| c.healthy.map(|h| (c, h))) {
                    Some((c, true)) => (
                        "True",
                        "ProbesSucceed",
                        format!("{} answers its probes", c.cluster),
                    ),
                    Some((c, false)) => (
                        "False",
                        "ProbesFail",
                        format!(
                            "{} failed {} probes in a row: {}",
                            c.cluster,
                            c.consecutive_failures,
                            c.last_error.as_deref().unwrap_or_default()
                        ),
                    ),
                    None => (
                        "Unknown",
                        "NotProbedYet",
                        "not probed since this operator started leading".to_owned(),
                    ),
                };
                set_condition(&mut status.conditions, type_, c, generation, now);
            }
        }
    }
}

fn switchover_status(sw: &Switchover, message: String) -> SwitchoverStatus {
    SwitchoverStatus {
        from: sw.from_cluster.clone(),
        to: sw.to_cluster.clone(),
        automatic: sw.automatic,
        phase: sw.phase.name().into(),
        start_time: rfc3339(sw.started_at),
        phase_start_time: rfc3339(sw.since),
        message,
    }
}

/// What a phase waits for.
pub fn phase_message(sw: &Switchover, s: &Settings) -> String {
    let fmt = metaproxy::startup::format_duration;
    let (from, to) = (&sw.from_cluster, &sw.to_cluster);
    let mut m = match sw.phase {
        Phase::Fencing => {
            if sw.fence {
                format!(
                    "setting {DENY_KEY}={DENY_WRITES} on {from} (and lifting this operator's fence on {to}, if any), within fenceTimeout {}",
                    fmt(s.fence_timeout)
                )
            } else {
                format!(
                    "lifting this operator's fence on {to}, within fenceTimeout {}",
                    fmt(s.fence_timeout)
                )
            }
        }
        Phase::Settling => format!(
            "the fence is stored; waiting fenceSettle {} from {} for the replica servers to apply it",
            fmt(s.fence_settle),
            rfc3339(sw.since)
        ),
        Phase::Draining => format!(
            "waiting for duplication from {from} to {to} to drain, within drainTimeout {} (drainDelay {} where no per-partition progress is reported)",
            fmt(s.drain_timeout),
            fmt(s.drain_delay)
        ),
        Phase::Reconfiguring => {
            if sw.automatic && sw.fencing_skipped {
                format!(
                    "the record routes to {to}; {from} did not answer the fence: setting {DENY_KEY}={SEND_AWAY} on it as soon as it answers (every probe interval)"
                )
            } else {
                format!(
                    "the record routes to {to}; setting {DENY_KEY}={SEND_AWAY} on {from} so that its clients ask the proxy again"
                )
            }
        }
        Phase::Aborting => format!("giving up: lifting the write fence on {from}"),
    };
    if !sw.note.is_empty() {
        m.push_str(&format!(" ({})", sw.note));
    }
    m
}

/// The last status written shows a switchover in progress, but the znode holds none and this
/// reconcile saw no end: the reconcile that ended it did not get its status written (a conflict
/// with another writer, the operator restarted). It is over: aborted when the znode says so, else
/// completed. Left as it was, the status would show an old phase beside a `Switchover` condition
/// saying it completed.
fn ended_unseen(prev: SwitchoverStatus, state: &RouteState, now_ms: i64) -> SwitchoverStatus {
    if prev.phase == reason::COMPLETED || prev.phase == reason::ABORTED {
        return prev;
    }
    let (phase, message) = match &state.aborted {
        Some(a) => (
            reason::ABORTED,
            format!(
                "the switchover from {} to {} was given up: {}",
                prev.from, prev.to, a.reason
            ),
        ),
        None => (
            reason::COMPLETED,
            format!("switched from {} to {}", prev.from, prev.to),
        ),
    };
    SwitchoverStatus {
        phase: phase.into(),
        phase_start_time: rfc3339(now_ms),
        message,
        ..prev
    }
}

fn fenced_note(cluster: &str, value: &str) -> String {
    format!(
        "{cluster} is left fenced ({DENY_KEY}={value}): its replicas send clients to the proxy and take no writes, duplication into it included. A switchover back to it lifts the fence; to lift it by hand, delete the app env (update_app_env DEL {DENY_KEY}, admin-cli: del_app_envs {DENY_KEY})"
    )
}

fn completed_message(
    sw: &Switchover,
    note: &str,
    state: &RouteState,
    active: ActiveCluster,
) -> String {
    let mut m = format!(
        "switched from {} to {} ({}){}",
        sw.from_cluster,
        sw.to_cluster,
        side_name(active),
        if sw.automatic { ", automatically" } else { "" }
    );
    if let Some(f) = &state.fenced {
        m.push_str("; ");
        m.push_str(&fenced_note(&f.cluster, &f.value));
    }
    if !note.is_empty() {
        m.push_str("; ");
        m.push_str(note);
    }
    m
}

fn aborted_message(sw: &Switchover, why: &str, note: &str, active: ActiveCluster) -> String {
    let mut m = format!(
        "the switchover from {} to {} was given up: {why}; the record still routes to {}. To try again, set spec.active: {}, then spec.active: {} again",
        sw.from_cluster,
        sw.to_cluster,
        sw.from_cluster,
        side_name(active),
        side_name(sw.to)
    );
    if !note.is_empty() {
        m.push_str("; ");
        m.push_str(note);
    }
    m
}

fn counted(c: &VoteCount) -> ObserverVotes {
    ObserverVotes {
        configured: c.configured,
        quorum: c.quorum,
        down: c.down,
        up: c.up,
        abstained: c.abstained,
        votes: Vec::new(),
    }
}

fn votes(v: &Votes) -> ObserverVotes {
    ObserverVotes {
        votes: v
            .votes
            .iter()
            .map(|(zone, vote)| ObserverVote {
                zone: zone.clone(),
                vote: vote.name().into(),
                detail: vote.detail().into(),
            })
            .collect(),
        ..counted(&v.summary())
    }
}

fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    (status, reason, message): (&str, &str, String),
    generation: Option<i64>,
    now: &str,
) {
    let next = Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        last_transition_time: now.to_owned(),
        observed_generation: generation,
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            let since = if c.status == next.status {
                c.last_transition_time.clone()
            } else {
                next.last_transition_time.clone()
            };
            *c = Condition {
                last_transition_time: since,
                ..next
            };
        }
        None => conditions.push(next),
    }
    conditions.sort_by_key(|c| order(&c.type_));
}

fn order(type_: &str) -> usize {
    [
        READY,
        ROUTE_SYNCED,
        CONFLICT,
        SWITCHOVER,
        FAILED_OVER,
        PRIMARY_HEALTHY,
        BACKUP_HEALTHY,
    ]
    .iter()
    .position(|t| *t == type_)
    .unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::state::Phase;

    fn cond<'a>(s: &'a PegasusTableRouteStatus, t: &str) -> &'a Condition {
        s.condition(t).expect("condition present")
    }

    #[test]
    fn synced_then_unavailable_then_synced() {
        let synced = Outcome::Synced {
            zone: "az1".into(),
            znode: "/r/temp".into(),
            version: 0,
            active_cluster: "c1".into(),
        };
        let state = RouteState::default();
        let manual = manual(&state);
        let s1 = next_status(None, Some(1), &synced, Some(&manual), "T1");
        assert_eq!(cond(&s1, READY).status, "True");
        assert_eq!(cond(&s1, ROUTE_SYNCED).reason, "Synced");
        assert_eq!(cond(&s1, CONFLICT).status, "False");
        assert_eq!(s1.znode.as_deref(), Some("/r/temp"));
        assert_eq!(s1.active_cluster.as_deref(), Some("c1"));
        assert_eq!(
            s1.conditions
                .iter()
                .map(|c| c.type_.as_str())
                .collect::<Vec<_>>(),
            [READY, ROUTE_SYNCED, CONFLICT]
        );

        let down = Outcome::Failed {
            reason: reason::ZOOKEEPER_UNAVAILABLE,
            message: "connection refused".into(),
        };
        let s2 = next_status(Some(&s1), Some(1), &down, Some(&manual), "T2");
        assert_eq!(cond(&s2, READY).status, "False");
        assert_eq!(cond(&s2, READY).reason, "ZooKeeperUnavailable");
        assert_eq!(cond(&s2, READY).last_transition_time, "T2");
        assert_eq!(
            cond(&s2, CONFLICT).last_transition_time,
            "T1",
            "unchanged condition keeps its time"
        );
        assert_eq!(s2.znode_version, Some(0), "last known version is kept");

        let s3 = next_status(Some(&s2), Some(2), &synced_at(1), None, "T3");
        assert_eq!(cond(&s3, READY).status, "True");
        assert_eq!(cond(&s3, READY).observed_generation, Some(2));
        assert_eq!(s3.observed_generation, Some(2));
        assert_eq!(s3.znode_version, Some(1));
    }

    fn synced_at(version: i32) -> Outcome {
        Outcome::Synced {
            zone: "az1".into(),
            znode: "/r/temp".into(),
            version,
            active_cluster: "c1".into(),
        }
    }

    fn synced_fields() -> Outcome {
        synced_at(0)
    }

    #[test]
    fn yielded_route_reports_conflict_and_owns_nothing() {
        let s0 = next_status(None, Some(1), &synced_fields(), None, "T0");
        let y = Outcome::Yielded {
            zone: "az1".into(),
            owner: "ns/a".into(),
            message: "ns/a is older".into(),
        };
        let s = next_status(Some(&s0), Some(1), &y, None, "T1");
        assert_eq!(cond(&s, CONFLICT).status, "True");
        assert_eq!(cond(&s, CONFLICT).reason, "ConflictingRoute");
        assert_eq!(cond(&s, READY).status, "False");
        assert_eq!(cond(&s, ROUTE_SYNCED).reason, "ConflictingRoute");
        assert_eq!(s.znode, None);
        assert_eq!(s.active_cluster, None);
    }

    #[test]
    fn invalid_spec_and_unknown_zone() {
        for r in [reason::INVALID_SPEC, reason::UNKNOWN_ZONE] {
            let s = next_status(
                None,
                Some(3),
                &Outcome::Invalid {
                    reason: r,
                    message: "why".into(),
                },
                None,
                "T",
            );
            assert_eq!(cond(&s, READY).reason, r);
            assert_eq!(cond(&s, ROUTE_SYNCED).message, "why");
            assert_eq!(cond(&s, CONFLICT).status, "False");
        }
    }

    const SETTINGS: Settings = Settings {
        fence: true,
        fence_settle: std::time::Duration::from_secs(35),
        fence_timeout: std::time::Duration::from_secs(60),
        drain_timeout: std::time::Duration::from_secs(300),
        drain_delay: std::time::Duration::from_secs(60),
        retry: std::time::Duration::from_secs(1),
        pending_retry: std::time::Duration::from_secs(5),
    };
    const MANUAL: Failover = Failover::Manual;

    fn manual(state: &RouteState) -> Switching<'_> {
        switching(&MANUAL, state, ActiveCluster::Primary, &[])
    }

    fn switching<'a>(
        failover: &'a Failover,
        state: &'a RouteState,
        active: ActiveCluster,
        events: &'a [Event],
    ) -> Switching<'a> {
        Switching {
            failover,
            state,
            active,
            events,
            health: None,
            settings: &SETTINGS,
            primary: "c1",
            backup: Some("c2"),
            now_ms: 1_767_225_600_000,
        }
    }

    fn types(s: &PegasusTableRouteStatus) -> Vec<&str> {
        s.conditions.iter().map(|c| c.type_.as_str()).collect()
    }

    fn sw(phase: Phase, automatic: bool) -> Switchover {
        Switchover {
            from: ActiveCluster::Primary,
            to: ActiveCluster::Backup,
            from_cluster: "c1".into(),
            to_cluster: "c2".into(),
            automatic,
            phase,
            started_at: 1_767_225_500_000,
            since: 1_767_225_560_000,
            fence: true,
            fencing_skipped: false,
            note: String::new(),
            evidence: None,
        }
    }

    #[test]
    fn a_switchover_shows_its_phase_then_how_it_ended() {
        let draining = RouteState {
            switchover: Some(sw(Phase::Draining, false)),
            ..RouteState::default()
        };
        let s1 = next_status(
            None,
            Some(2),
            &synced_fields(),
            Some(&manual(&draining)),
            "T1",
        );
        assert_eq!(types(&s1), [READY, ROUTE_SYNCED, CONFLICT, SWITCHOVER]);
        let c = cond(&s1, SWITCHOVER);
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Draining"));
        assert!(c.message.contains("drainTimeout 5m"), "{}", c.message);
        let so = s1.switchover.as_ref().expect("switchover");
        assert_eq!(
            (so.phase.as_str(), so.from.as_str(), so.to.as_str()),
            ("Draining", "c1", "c2")
        );
        assert_eq!(so.phase_start_time, "2025-12-31T23:59:20Z");

        let done = RouteState {
            flipped_at: Some(1_767_225_590_000),
            fenced: Some(crate::reconcile::state::Fenced {
                cluster: "c1".into(),
                value: SEND_AWAY.into(),
            }),
            ..RouteState::default()
        };
        let events = [Event::Completed {
            switchover: sw(Phase::Reconfiguring, false),
            note: String::new(),
        }];
        let s2 = next_status(
            Some(&s1),
            Some(2),
            &synced_fields(),
            Some(&switching(&MANUAL, &done, ActiveCluster::Backup, &events)),
            "T2",
        );
        let c = cond(&s2, SWITCHOVER);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "Completed")
        );
        assert!(
            c.message
                .contains("c1 is left fenced (replica.deny_client_request=reconfig*all)")
                && c.message.contains("del_app_envs"),
            "says how to lift it: {}",
            c.message
        );
        assert_eq!(
            s2.switchover.as_ref().map(|s| s.phase.as_str()),
            Some("Completed")
        );
        assert_eq!(s2.active_side, Some(ActiveCluster::Backup));
        assert_eq!(s2.last_flip_time.as_deref(), Some("2025-12-31T23:59:50Z"));

        let given_up = RouteState {
            aborted: Some(crate::reconcile::state::Aborted {
                to: ActiveCluster::Backup,
                at: 1,
                reason: "did not drain".into(),
            }),
            ..RouteState::default()
        };
        let s3 = next_status(
            Some(&s1),
            Some(3),
            &synced_fields(),
            Some(&manual(&given_up)),
            "T3",
        );
        let c = cond(&s3, SWITCHOVER);
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "Aborted"));
        assert!(
            c.message
                .contains("set spec.active: primary, then spec.active: backup again"),
            "{}",
            c.message
        );
        let so = s3.switchover.as_ref().expect("switchover");
        assert_eq!(so.phase, "Aborted", "not the phase it was in");
        assert!(so.message.contains("did not drain"), "{}", so.message);

        // The reconcile that completed it did not get its status written: the next one sees no
        // switchover in the znode and no event, and still says it is over, as the condition does.
        let unseen = RouteState {
            flipped_at: Some(1_767_225_590_000),
            ..RouteState::default()
        };
        let s4 = next_status(
            Some(&s1),
            Some(2),
            &synced_fields(),
            Some(&switching(&MANUAL, &unseen, ActiveCluster::Backup, &[])),
            "T4",
        );
        let c = cond(&s4, SWITCHOVER);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "Completed")
        );
        let so = s4.switchover.as_ref().expect("switchover");
        assert_eq!(
            (so.phase.as_str(), so.from.as_str(), so.to.as_str()),
            ("Completed", "c1", "c2")
        );
    }

    #[test]
    fn automatic_failover_conditions_and_the_placeholder_gone() {
        let old = PegasusTableRouteStatus {
            conditions: vec![Condition {
                type_: AUTOMATIC_FAILOVER.into(),
                status: "False".into(),
                reason: "NotImplemented".into(),
                message: String::new(),
                last_transition_time: "T0".into(),
                observed_generation: None,
            }],
            ..PegasusTableRouteStatus::default()
        };
        let failed = RouteState {
            flipped_at: Some(1_767_225_600_000),
            failed_over: Some(crate::reconcile::state::FailedOver {
                at: 1_767_225_600_000,
                reason: "c1 failed 6 probes".into(),
                probe_failures: 6,
                votes: Some(VoteCount {
                    configured: 3,
                    quorum: 2,
                    down: 2,
                    up: 0,
                    abstained: 1,
                }),
                fencing: "FencingSkipped".into(),
            }),
            ..RouteState::default()
        };
        let watch = Failover::Automatic(crate::reconcile::decide::Watch {
            failed_over: true,
            reason: "FailedOver",
            message: "failed over".into(),
            votes: None,
        });
        let mut view = switching(&watch, &failed, ActiveCluster::Backup, &[]);
        view.health = Some(HealthStatus {
            primary: Some(crate::crd::ClusterHealthStatus {
                cluster: "c1".into(),
                healthy: Some(false),
                consecutive_failures: 9,
                since: None,
                last_error: Some("refused".into()),
            }),
            backup: Some(crate::crd::ClusterHealthStatus {
                cluster: "c2".into(),
                healthy: Some(true),
                ..Default::default()
            }),
            observers: None,
        });
        let s = next_status(Some(&old), Some(4), &synced_fields(), Some(&view), "T1");
        assert_eq!(
            types(&s),
            [
                READY,
                ROUTE_SYNCED,
                CONFLICT,
                FAILED_OVER,
                PRIMARY_HEALTHY,
                BACKUP_HEALTHY
            ]
        );
        assert_eq!(cond(&s, FAILED_OVER).status, "True");
        let p = cond(&s, PRIMARY_HEALTHY);
        assert_eq!(
            (p.status.as_str(), p.reason.as_str()),
            ("False", "ProbesFail")
        );
        assert!(
            p.message.contains("9 probes in a row: refused"),
            "{}",
            p.message
        );
        assert_eq!(cond(&s, BACKUP_HEALTHY).status, "True");
        let f = s.failover.as_ref().expect("failover status");
        assert_eq!(
            (
                f.from.as_str(),
                f.to.as_str(),
                f.probe_failures,
                f.fencing.as_str()
            ),
            ("c1", "c2", 6, "FencingSkipped")
        );
        assert_eq!(
            f.observers.as_ref().map(|o| (o.down, o.quorum)),
            Some((2, 2))
        );
        assert_eq!(f.time, "2026-01-01T00:00:00Z");
        assert!(!f.acknowledged);

        // Acknowledged: the record of it stays, marked so.
        let acked = RouteState {
            flipped_at: Some(1_767_225_600_000),
            ..RouteState::default()
        };
        let events = [Event::Acknowledged];
        let backup_active = Failover::Automatic(crate::reconcile::decide::Watch {
            failed_over: false,
            reason: "BackupActive",
            message: String::new(),
            votes: None,
        });
        let s2 = next_status(
            Some(&s),
            Some(5),
            &synced_fields(),
            Some(&switching(
                &backup_active,
                &acked,
                ActiveCluster::Backup,
                &events,
            )),
            "T2",
        );
        assert_eq!(cond(&s2, FAILED_OVER).status, "False");
        assert!(s2.failover.as_ref().is_some_and(|f| f.acknowledged));

        // Manual again: the failover conditions go.
        let s3 = next_status(
            Some(&s2),
            Some(6),
            &synced_fields(),
            Some(&manual(&acked)),
            "T3",
        );
        assert_eq!(types(&s3), [READY, ROUTE_SYNCED, CONFLICT]);
        assert!(s3.health.is_none());
    }

    #[test]
    fn a_failure_keeps_the_last_known_conflict_or_says_it_is_unknown() {
        let down = Outcome::Failed {
            reason: reason::ZOOKEEPER_UNAVAILABLE,
            message: "down".into(),
        };
        let fresh = next_status(None, Some(1), &down, None, "T1");
        let c = cond(&fresh, CONFLICT);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("Unknown", "ZooKeeperUnavailable")
        );
        let y = Outcome::Yielded {
            zone: "az1".into(),
            owner: "ns/a".into(),
            message: "ns/a holds it".into(),
        };
        let yielded = next_status(None, Some(1), &y, None, "T1");
        let s = next_status(Some(&yielded), Some(1), &down, None, "T2");
        let c = cond(&s, CONFLICT);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str(), c.message.as_str()),
            ("True", "ConflictingRoute", "ns/a holds it")
        );
        assert_eq!(c.last_transition_time, "T1");
    }
}
