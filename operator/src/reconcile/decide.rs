//! Decide: what to do to a table's znode, from the validated spec ([`Target`] or [`Removal`]),
//! the znode as read (its record, its owner and the operator's [`RouteState`]), the route's
//! status, the other routes' claims, the clusters' health and the time. Pure; every branch is a
//! row of `fixtures/decide.yaml` (the failover verdict and the switchover phases have their own
//! tables, `fixtures/failover.yaml` and `fixtures/switchover.yaml`).
//!
//! ```text
//!  claims + znode's owner ──► owner of the table: this route, or Yield
//!  znode's record + state ──► the side in force; the switchover in progress
//!  spec.active ≠ side     ──► a planned switchover begins          (switchover::step from then on)
//!  Automatic, on primary  ──► failover::verdict ──► FailOver: an automatic switchover begins
//!  otherwise              ──► the side's record (its addresses may have changed)
//!                             ──► plan: InSync | Create | Replace | Call | Delete | AlreadyGone
//!                                       | LeaveForeign | Yield
//! ```
//!
//! Ownership survives restarts because it is kept in ZooKeeper: the record names its owner
//! ([`crate::record`]). The route the znode names keeps the table as long as it claims it (until
//! it is deleted, becomes invalid, or moves to another table or zone). Only a table nobody holds
//! goes to the senior claim: the oldest creation time, then the smallest id. Kubernetes creation
//! times have one-second resolution, so routes created in the same second are ordered by
//! `namespace/name`; route files have no creation time that survives a restart or a copy (an
//! mtime changes with every edit and every checkout), so they all count as equally old and
//! the file name decides. Every replica and every restart thus picks the same owner.
//!
//! The side in force is the one whose cluster the znode's record names. A new znode, one taken
//! over from another route, or one whose record names neither cluster gets `spec.active`'s
//! record at once: there is nothing to switch from. A znode edited by hand (its owner gone) gets
//! back the side the status last recorded. Otherwise `spec.active` naming the other side starts
//! a planned switchover, except while an automatic failover waits to be acknowledged (the person
//! acknowledges by setting `spec.active` to the side in force) and after a switchover to that
//! side was given up (set `spec.active` to the side in force, then to the other again, to retry).

use std::time::Duration;

use metaproxy::route::RouteRecord;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::crd::{ActiveCluster, FailoverMode, PegasusTableRouteStatus};
use crate::reconcile::failover::{self, Observed, Probes, Verdict, Votes};
use crate::reconcile::state::{Aborted, FailedOver, Phase, RouteState, Switchover};
use crate::reconcile::switchover::{self, Effect, Finished, Observation, Step};
use crate::reconcile::validate::{Removal, Target};
use crate::record;
use crate::zk::Znode;

/// A route's claim on a table in a zone, for finding the owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claim {
    /// `namespace/name`, or the file name for routes read from a directory.
    pub id: String,
    /// When the route was created, in milliseconds since the epoch (Kubernetes); 0 for route
    /// files, so that their names decide. Ties are broken by `id`.
    pub created_ms: i64,
    pub zone: String,
    pub table: String,
}

impl Claim {
    fn seniority(&self) -> (i64, &str) {
        (self.created_ms, &self.id)
    }

    fn same_table(&self, other: &Claim) -> bool {
        self.zone == other.zone && self.table == other.table
    }
}

/// The route's clusters as the probes and the observers see them ([`crate::probe`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// `None`: not probed since this operator started leading (or not probed at all: only
    /// `Automatic` routes are).
    pub primary: Option<Probes>,
    pub backup: Option<Probes>,
    /// Each configured observer's zone and what it says of the primary cluster.
    pub observers: Vec<(String, Observed)>,
}

/// Everything [`decide`] and [`decide_removal`] look at besides the spec.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    /// This route's claim on the table whose znode is decided on.
    pub me: &'a Claim,
    /// The other routes' claims (any table; this route's own entry is ignored).
    pub others: &'a [Claim],
    /// The znode as just read.
    pub znode: Option<&'a Znode>,
    /// The route's status as last recorded.
    pub status: Option<&'a PegasusTableRouteStatus>,
    pub health: &'a Health,
    /// For probe windows.
    pub now: Instant,
    /// The wall clock, in milliseconds since the epoch, for what the znode keeps (phase times,
    /// the last flip).
    pub now_ms: i64,
    /// The results of the calls made since the znode was read at its current version.
    pub done: &'a [Observation],
    /// The marker the records written carry (routes-directory mode, [`crate::orphans`]).
    pub writer: Option<&'a str>,
}

/// What automatic failover makes of the route, for the status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Failover {
    /// `failover.mode: Manual`.
    #[default]
    Manual,
    /// `failover.mode: Automatic`.
    Automatic(Watch),
}

impl Failover {
    /// `Manual`, or the reason of the `FailedOver` condition.
    pub fn reason(&self) -> &'static str {
        match self {
            Failover::Manual => "Manual",
            Failover::Automatic(w) => w.reason,
        }
    }
}

/// Where automatic failover stands for a route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watch {
    /// Failed over and not acknowledged yet.
    pub failed_over: bool,
    /// CamelCase: `FailedOver`, a [`Verdict::reason`], `NoBackup`, `BackupActive`,
    /// `SwitchoverInProgress`.
    pub reason: &'static str,
    pub message: String,
    /// The observers' votes, when the verdict counted them.
    pub votes: Option<Votes>,
}

/// Something that happened to the route in this decision, for events, logs and the status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    SwitchoverStarted(Switchover),
    /// A phase before or after the flip began (not the flip itself).
    PhaseChanged(Switchover),
    Flipped(Switchover),
    Completed {
        switchover: Switchover,
        note: String,
    },
    Aborted {
        switchover: Switchover,
        reason: String,
        note: String,
    },
    /// `spec.active` now names the side an automatic failover moved to.
    Acknowledged,
}

/// What [`decide`] chose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub plan: Plan,
    /// The side the record routes to once the plan is carried out.
    pub active: ActiveCluster,
    pub failover: Failover,
    /// The operator's state in the znode once the plan is carried out.
    pub state: RouteState,
    /// Look again after this long (a phase waits), rather than at the next resync.
    pub recheck: Option<Duration>,
    pub event: Option<Event>,
}

/// What to do next.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "action",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Plan {
    /// It already holds exactly the record.
    InSync {
        version: i32,
    },
    /// It does not exist.
    Create {
        data: String,
    },
    /// It holds something else: `found` (as text). `drift` when it changed since this operator
    /// last wrote or read it at the status's version, or when it never did: someone else wrote
    /// it. `tookOverFrom` when it named another owner, which no longer claims the table.
    Replace {
        data: String,
        version: i32,
        found: String,
        drift: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        took_over_from: Option<String>,
    },
    /// A call to one of the route's clusters (a switchover step); decide again with its result.
    Call {
        effect: Effect,
    },
    Delete {
        version: i32,
    },
    /// Removing, but the znode is not this route's (another owner, or changed since this
    /// operator wrote it): left in place.
    LeaveForeign {
        version: i32,
        found: String,
    },
    AlreadyGone,
    /// Another route owns the table. `holdsZnode` when the znode names it, else it is the senior
    /// claim.
    Yield {
        owner: String,
        #[serde(default)]
        holds_znode: bool,
    },
}

/// The route that owns a table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ownership<'a> {
    pub owner: &'a Claim,
    /// The znode names it (rather than it being the senior claim).
    pub holds_znode: bool,
}

/// The owner of `me`'s table in `me`'s zone, among `me` and the others claiming it: the claim
/// the znode names, else the senior one.
pub fn owner<'a>(me: &'a Claim, others: &'a [Claim], znode: Option<&Znode>) -> Ownership<'a> {
    let claimants = || {
        others
            .iter()
            .filter(|c| c.same_table(me) && c.id != me.id)
            .chain(std::iter::once(me))
    };
    let recorded = znode.and_then(|z| record::owner(&z.data));
    if let Some(holder) = recorded.and_then(|id| claimants().find(|c| c.id == id)) {
        return Ownership {
            owner: holder,
            holds_znode: true,
        };
    }
    let senior = claimants()
        .min_by(|a, b| a.seniority().cmp(&b.seniority()))
        .unwrap_or(me);
    Ownership {
        owner: senior,
        holds_znode: false,
    }
}

/// The side of the route whose cluster `record` names.
fn side_of(target: &Target, record: &RouteRecord) -> Option<ActiveCluster> {
    if record.cluster == target.primary.cluster {
        Some(ActiveCluster::Primary)
    } else if target
        .backup
        .as_ref()
        .is_some_and(|b| b.cluster == record.cluster)
    {
        Some(ActiveCluster::Backup)
    } else {
        None
    }
}

fn cluster_name(target: &Target, side: ActiveCluster) -> String {
    target.record(side).cluster.clone()
}

/// What to do for a route that is kept: the switchover or failover step due, else the side in
/// force's record, if the route owns the table; else yield.
pub fn decide(target: &Target, i: &Inputs<'_>) -> Decision {
    let ownership = owner(i.me, i.others, i.znode);
    if ownership.owner.id != i.me.id {
        return Decision {
            plan: Plan::Yield {
                owner: ownership.owner.id.clone(),
                holds_znode: ownership.holds_znode,
            },
            active: target.active,
            failover: watch_only(target, None, &RouteState::default()),
            state: RouteState::default(),
            recheck: None,
            event: None,
        };
    }
    let last = last_version(i.status, &target.path);
    let mine = i
        .znode
        .filter(|z| record::owner(&z.data).as_deref() == Some(i.me.id.as_str()));
    let in_force = mine.and_then(|z| record::route(&z.data).and_then(|r| side_of(target, &r)));
    let (Some(z), Some(side)) = (mine, in_force) else {
        // Nothing to switch from: a new znode, one taken over, or one whose record names
        // neither cluster (the spec changed its clusters, or a hand edit). A hand edit of this
        // route's znode gets back the side the status last recorded.
        let side = match i.status {
            Some(s) if i.znode.is_some() && s.znode.as_deref() == Some(target.path.as_str()) => {
                s.active_side.unwrap_or(target.active)
            }
            _ => target.active,
        };
        let side = if target.backup.is_none() {
            ActiveCluster::Primary
        } else {
            side
        };
        let state = RouteState::default();
        return route_to(target, i, side, state, last, false, None);
    };
    let before = record::state(&z.data);
    let mut state = before.clone();
    let mut event = None;
    // Bookkeeping first, in a write of its own: an acknowledged failover, a given-up switchover
    // that spec.active no longer asks for.
    if state.failed_over.is_some() && target.active == side {
        state.failed_over = None;
        event = Some(Event::Acknowledged);
    }
    if state.aborted.is_some() && target.active == side {
        state.aborted = None;
    }
    if state != before {
        return route_to(target, i, side, state, last, true, event);
    }
    if let Some(sw) = state.switchover.clone() {
        return step(target, i, z, side, state, &sw, last);
    }
    let wanted = target.active;
    let blocked = state.failed_over.is_some()
        || state.aborted.as_ref().is_some_and(|a| a.to == wanted)
        || target.backup.is_none();
    if wanted != side && !blocked {
        let sw = Switchover {
            from: side,
            to: wanted,
            from_cluster: cluster_name(target, side),
            to_cluster: cluster_name(target, wanted),
            automatic: false,
            phase: Phase::Fencing,
            started_at: i.now_ms,
            since: i.now_ms,
            fence: target.switchover.fence,
            fencing_skipped: false,
            note: String::new(),
            evidence: None,
        };
        return begin(target, i, side, state, sw, last);
    }
    let (failover, verdict) = watch(target, i, side, &state);
    if let Some(Verdict::FailOver { failures, votes }) = verdict {
        let reason = format!(
            "{} failed {failures} probes in a row over {}{}",
            target.primary.cluster,
            fmt(target
                .policy
                .probe_interval
                .saturating_mul(failures.saturating_sub(1))),
            match &votes {
                Some(v) => format!("; observers: {}", v.describe()),
                None => "; no observers configured: the operator's probes decided alone".into(),
            }
        );
        let sw = Switchover {
            from: ActiveCluster::Primary,
            to: ActiveCluster::Backup,
            from_cluster: target.primary.cluster.clone(),
            to_cluster: cluster_name(target, ActiveCluster::Backup),
            automatic: true,
            phase: Phase::Fencing,
            started_at: i.now_ms,
            since: i.now_ms,
            // Tried, and skipped if the old primary does not answer.
            fence: true,
            fencing_skipped: false,
            note: String::new(),
            evidence: Some(FailedOver {
                at: i.now_ms,
                reason,
                probe_failures: failures,
                votes: votes.as_ref().map(Votes::summary),
                fencing: String::new(),
            }),
        };
        return begin(target, i, side, state, sw, last);
    }
    Decision {
        plan: write(target.record(side), &state, i, last, false),
        active: side,
        failover,
        state,
        recheck: None,
        event: None,
    }
}

/// The first write of a switchover: its first phase, or the flip itself when there is nothing
/// to fence.
fn begin(
    target: &Target,
    i: &Inputs<'_>,
    side: ActiveCluster,
    mut state: RouteState,
    sw: Switchover,
    last: Option<i32>,
) -> Decision {
    if !sw.automatic
        && !switchover::needs_fencing(&target.switchover, &sw.to_cluster, state.fenced.as_ref())
    {
        let sw = Switchover {
            phase: Phase::Reconfiguring,
            ..sw
        };
        return flip(target, i, state, sw, last, true);
    }
    state.switchover = Some(sw.clone());
    state.aborted = None;
    route_to(
        target,
        i,
        side,
        state,
        last,
        true,
        Some(Event::SwitchoverStarted(sw)),
    )
}

/// The flip: `sw.to`'s record, with `sw` (in `Reconfiguring`) in one write. `started` when the
/// switchover begins with it.
fn flip(
    target: &Target,
    i: &Inputs<'_>,
    mut state: RouteState,
    sw: Switchover,
    last: Option<i32>,
    started: bool,
) -> Decision {
    let to = sw.to;
    state.flipped_at = Some(i.now_ms);
    state.aborted = None;
    if state
        .fenced
        .as_ref()
        .is_some_and(|f| f.cluster == sw.to_cluster)
    {
        // Lifted in the fencing phase.
        state.fenced = None;
    }
    let mut sw = sw;
    if sw.automatic {
        if let Some(mut evidence) = sw.evidence.take() {
            evidence.fencing = if sw.fencing_skipped {
                "FencingSkipped".into()
            } else {
                "Fenced".into()
            };
            state.failed_over = Some(evidence);
        }
    } else {
        state.failed_over = None;
    }
    state.switchover = Some(sw.clone());
    Decision {
        plan: write(target.record(to), &state, i, last, true),
        active: to,
        failover: watch_only(target, Some(to), &state),
        state,
        recheck: None,
        event: Some(if started {
            Event::SwitchoverStarted(sw)
        } else {
            Event::Flipped(sw)
        }),
    }
}

/// The next step of the switchover in progress.
fn step(
    target: &Target,
    i: &Inputs<'_>,
    z: &Znode,
    side: ActiveCluster,
    mut state: RouteState,
    sw: &Switchover,
    last: Option<i32>,
) -> Decision {
    let cx = switchover::Context {
        settings: &target.switchover,
        primary_cluster: &target.primary.cluster,
        backup_cluster: target.backup.as_ref().map(|b| b.cluster.as_str()),
        wanted: target.active,
        fenced: state.fenced.as_ref(),
        done: i.done,
        now_ms: i.now_ms,
    };
    let failover = watch_only(target, Some(side), &state);
    let hold = |plan: Plan, recheck: Option<Duration>, state: RouteState| Decision {
        plan,
        active: side,
        failover: failover.clone(),
        state,
        recheck,
        event: None,
    };
    match switchover::step(sw, &cx) {
        Step::Call(effect) => hold(Plan::Call { effect }, None, state),
        Step::Wait(d) => hold(Plan::InSync { version: z.version }, Some(d), state),
        Step::Next(next) => {
            state.switchover = Some(next.clone());
            route_to(
                target,
                i,
                side,
                state,
                last,
                true,
                Some(Event::PhaseChanged(next)),
            )
        }
        Step::Flip(next) => flip(target, i, state, next, last, false),
        Step::Finish(finished) => {
            state.switchover = None;
            let event = match finished {
                Finished::Completed { fenced, note } => {
                    state.fenced = fenced;
                    Event::Completed {
                        switchover: sw.clone(),
                        note,
                    }
                }
                Finished::Aborted { reason, note } => {
                    state.aborted = Some(Aborted {
                        to: sw.to,
                        at: i.now_ms,
                        reason: reason.clone(),
                    });
                    Event::Aborted {
                        switchover: sw.clone(),
                        reason,
                        note,
                    }
                }
            };
            route_to(target, i, side, state, last, true, Some(event))
        }
    }
}

/// Writes `side`'s record with `state` (`ours`: as [`write`] takes it), routing to `side` and
/// watching only: no recheck of its own.
fn route_to(
    target: &Target,
    i: &Inputs<'_>,
    side: ActiveCluster,
    state: RouteState,
    last: Option<i32>,
    ours: bool,
    event: Option<Event>,
) -> Decision {
    Decision {
        plan: write(target.record(side), &state, i, last, ours),
        active: side,
        failover: watch_only(target, Some(side), &state),
        state,
        recheck: None,
        event,
    }
}

/// Automatic failover's view when no verdict is due: the mode, and why nothing is judged.
fn watch_only(target: &Target, side: Option<ActiveCluster>, state: &RouteState) -> Failover {
    if target.mode == FailoverMode::Manual {
        return Failover::Manual;
    }
    let (failed_over, reason, message) = if let Some(f) = &state.failed_over {
        (
            true,
            "FailedOver",
            format!(
                "failed over to {}: {}. Acknowledge with spec.active: backup; go back later with spec.active: primary (a planned switchover)",
                target.backup.as_ref().map_or("", |b| b.cluster.as_str()),
                f.reason
            ),
        )
    } else if target.backup.is_none() {
        (
            false,
            "NoBackup",
            "the route has no backup to fail over to".to_owned(),
        )
    } else if let Some(sw) = &state.switchover {
        (
            false,
            if sw.automatic {
                "FailingOver"
            } else {
                "SwitchoverInProgress"
            },
            format!(
                "switching from {} to {}: {}",
                sw.from_cluster,
                sw.to_cluster,
                sw.phase.name()
            ),
        )
    } else if side == Some(ActiveCluster::Backup) {
        (
            false,
            "BackupActive",
            "the record routes to the backup as spec.active asks; automatic failover watches a primary in force only"
                .to_owned(),
        )
    } else {
        (
            false,
            "NotJudged",
            "the primary is not judged until the record is in place".to_owned(),
        )
    };
    Failover::Automatic(Watch {
        failed_over,
        reason,
        message,
        votes: None,
    })
}

/// Automatic failover's verdict on a route whose record is in place with nothing under way, if
/// one is due.
fn watch(
    target: &Target,
    i: &Inputs<'_>,
    side: ActiveCluster,
    state: &RouteState,
) -> (Failover, Option<Verdict>) {
    if target.mode == FailoverMode::Manual
        || state.failed_over.is_some()
        || target.backup.is_none()
        || side == ActiveCluster::Backup
    {
        return (watch_only(target, Some(side), state), None);
    }
    let policy = &target.policy;
    let verdict = failover::verdict(&failover::Inputs {
        policy,
        primary: i.health.primary.as_ref(),
        backup: i.health.backup.as_ref(),
        observers: &i.health.observers,
        last_flip_ms: state.flipped_at,
        now: i.now,
        now_ms: i.now_ms,
    });
    let alone = if i.health.observers.is_empty() {
        " (no observers configured: the operator's probes decide alone)"
    } else {
        ""
    };
    let primary = &target.primary.cluster;
    let failures = i
        .health
        .primary
        .as_ref()
        .map_or(0, |p| p.consecutive_failures);
    let message = match &verdict {
        Verdict::PrimaryHealthy => format!("{primary} answers its probes{alone}"),
        Verdict::NotProbed => format!("{primary} has not been probed yet{alone}"),
        Verdict::PrimaryFailing { failures } => format!(
            "{primary} failed {failures} of {} probes in a row needed{alone}",
            policy.failure_threshold
        ),
        Verdict::CoolingDown { remaining } => format!(
            "{primary} has failed {failures} probes in a row, but the route flipped less than {} ago: no automatic flip for another {}",
            fmt(policy.cooldown),
            fmt(Duration::from_secs(remaining.as_secs()))
        ),
        Verdict::BackupUnhealthy { reason } => format!(
            "{primary} has failed {failures} probes in a row, but the backup is not known healthy: {reason}"
        ),
        Verdict::NoQuorum { votes } => {
            let c = votes.summary();
            let never = if c.quorum > c.configured {
                format!(
                    " (quorum {} is more than the {} observers configured: this never fails over)",
                    c.quorum, c.configured
                )
            } else {
                String::new()
            };
            format!(
                "{primary} has failed {failures} probes in a row, but too few observers agree: {}{never}",
                votes.describe()
            )
        }
        Verdict::FailOver { votes, .. } => format!(
            "{primary} failed {failures} probes in a row; failing over{}",
            match votes {
                Some(v) => format!(": {}", v.describe()),
                None => alone.to_owned(),
            }
        ),
    };
    let failover = Failover::Automatic(Watch {
        failed_over: false,
        reason: verdict.reason(),
        message,
        votes: verdict.votes().cloned(),
    });
    (failover, Some(verdict))
}

fn fmt(d: Duration) -> String {
    metaproxy::startup::format_duration(d)
}

/// What to do for a route leaving `removal`'s znode (deleted, or moved elsewhere): delete it if
/// it is this route's, leave it otherwise.
pub fn decide_removal(removal: &Removal, inputs: &Inputs<'_>) -> Plan {
    let Some(z) = inputs.znode else {
        return Plan::AlreadyGone;
    };
    let me = &inputs.me.id;
    match record::owner(&z.data) {
        Some(recorded) if recorded == *me => Plan::Delete { version: z.version },
        Some(_) => match owner(inputs.me, inputs.others, Some(z)) {
            Ownership {
                owner,
                holds_znode: true,
            } => Plan::Yield {
                owner: owner.id.clone(),
                holds_znode: true,
            },
            // Named for a route that no longer claims the table: not this one's to delete.
            _ => Plan::LeaveForeign {
                version: z.version,
                found: excerpt(&z.data),
            },
        },
        // No owner recorded: written by hand, by another tool, or by an operator from before
        // owners were recorded.
        None => {
            let ownership = owner(inputs.me, inputs.others, Some(z));
            if ownership.owner.id != *me {
                return Plan::Yield {
                    owner: ownership.owner.id.clone(),
                    holds_znode: false,
                };
            }
            let last = last_version(inputs.status, &removal.path);
            let holds_mine = record::route(&z.data).is_some_and(|r| removal.records.contains(&r));
            // Changed since this operator last wrote it, to something this route never writes:
            // someone else's record now (a hand edit, or another route that took the table over
            // while this one was invalid).
            if last.is_some_and(|v| v != z.version) && !holds_mine {
                Plan::LeaveForeign {
                    version: z.version,
                    found: excerpt(&z.data),
                }
            } else {
                Plan::Delete { version: z.version }
            }
        }
    }
}

/// The version of `path` this operator last wrote or confirmed, from the status.
fn last_version(status: Option<&PegasusTableRouteStatus>, path: &str) -> Option<i32> {
    status
        .filter(|s| s.znode.as_deref() == Some(path))
        .and_then(|s| s.znode_version)
}

/// The plan that makes the znode hold `record` and `state`, owned by this route and marked
/// with the inputs' writer. `ours` when this decision changes it on purpose (a switchover
/// step): no drift, whatever the status knows. A record that differs only in its writer marker
/// (written before there was one, or under another `--routes-dir-id`) is rewritten, not drift.
fn write(
    record: &RouteRecord,
    state: &RouteState,
    i: &Inputs<'_>,
    last: Option<i32>,
    ours: bool,
) -> Plan {
    let me = i.me.id.as_str();
    let want = record::with_state(record, me, i.writer, state);
    let Some(z) = i.znode else {
        return Plan::Create { data: text(want) };
    };
    if z.data == want {
        return Plan::InSync { version: z.version };
    }
    let took_over_from = record::owner(&z.data).filter(|o| o != me);
    let only_the_marker =
        record::with_state(record, me, record::writer(&z.data).as_deref(), state) == z.data;
    Plan::Replace {
        data: text(want),
        version: z.version,
        found: excerpt(&z.data),
        drift: !ours && !only_the_marker && took_over_from.is_none() && last != Some(z.version),
        took_over_from,
    }
}

fn text(data: Vec<u8>) -> String {
    // The record is built from JSON-escaped strings: always UTF-8.
    String::from_utf8_lossy(&data).into_owned()
}

/// The longest excerpt of foreign znode data kept for logs and events.
pub const FOUND_EXCERPT: usize = 512;

/// Foreign data as printable text, cut at [`FOUND_EXCERPT`] bytes.
pub fn excerpt(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    if text.len() <= FOUND_EXCERPT {
        return text.into_owned();
    }
    let mut end = FOUND_EXCERPT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &text[..end], data.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One row of `fixtures/decide.yaml`.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Case {
        name: String,
        me: Claim,
        #[serde(default)]
        others: Vec<Claim>,
        #[serde(default)]
        deleting: bool,
        /// The primary cluster's record (and, removing, the record the route wrote).
        record: RecordFixture,
        #[serde(default)]
        backup: Option<RecordFixture>,
        #[serde(default)]
        active: ActiveCluster,
        #[serde(default)]
        mode: FailoverMode,
        /// `switchover.fence` (default true).
        #[serde(default)]
        fence: Option<bool>,
        #[serde(default)]
        znode: Option<ZnodeFixture>,
        /// The status's version of the znode.
        #[serde(default)]
        last_version: Option<i32>,
        /// The side the status recorded.
        #[serde(default)]
        last_side: Option<ActiveCluster>,
        /// Probes of the primary and the backup: `[second, ok | "error"]` (automatic mode).
        #[serde(default)]
        primary_probes: Option<Vec<(u64, ProbeFixture)>>,
        #[serde(default)]
        backup_probes: Option<Vec<(u64, ProbeFixture)>>,
        /// The results of the calls made since the znode was read.
        #[serde(default)]
        done: Vec<Observation>,
        /// Now, in seconds (the wall clock is `now * 1000` ms).
        #[serde(default)]
        now: u64,
        /// The writer marker the records carry (routes-directory mode).
        #[serde(default)]
        writer: Option<String>,
        expect: Plan,
        /// The reason of the failover verdict: `Manual` or the `FailedOver` condition's.
        #[serde(default = "manual")]
        expect_failover: String,
        /// The side in force after the plan (default: `active`).
        #[serde(default)]
        expect_active: Option<ActiveCluster>,
        /// The event's name, if one.
        #[serde(default)]
        expect_event: Option<String>,
        #[serde(default)]
        expect_recheck_ms: Option<u64>,
    }

    fn manual() -> String {
        "Manual".into()
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ProbeFixture {
        Ok(bool),
        Err(String),
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct RecordFixture {
        cluster: String,
        meta_addrs: Vec<String>,
    }

    impl RecordFixture {
        fn record(&self) -> RouteRecord {
            RouteRecord::new(self.cluster.clone(), self.meta_addrs.clone()).expect("valid record")
        }
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ZnodeFixture {
        data: String,
        version: i32,
    }

    fn event_name(e: &Event) -> &'static str {
        match e {
            Event::SwitchoverStarted(_) => "SwitchoverStarted",
            Event::PhaseChanged(_) => "PhaseChanged",
            Event::Flipped(_) => "Flipped",
            Event::Completed { .. } => "Completed",
            Event::Aborted { .. } => "Aborted",
            Event::Acknowledged => "Acknowledged",
        }
    }

    fn probes(base: Instant, list: &[(u64, ProbeFixture)]) -> Probes {
        let mut p = Probes::default();
        for (t, r) in list {
            let outcome = match r {
                ProbeFixture::Ok(true) => Ok(()),
                ProbeFixture::Ok(false) => Err("failed".to_owned()),
                ProbeFixture::Err(e) => Err(e.clone()),
            };
            p.record(
                base + Duration::from_secs(*t),
                i64::try_from(*t).unwrap_or(0) * 1000,
                outcome,
            );
        }
        p
    }

    pub(crate) fn target_of(
        me: &Claim,
        primary: RouteRecord,
        backup: Option<RouteRecord>,
        active: ActiveCluster,
        mode: FailoverMode,
        fence: bool,
    ) -> Target {
        Target {
            zone: me.zone.clone(),
            table: me.table.clone(),
            path: format!("/r/{}", me.table),
            primary,
            backup,
            active,
            mode,
            policy: failover::Policy {
                probe_interval: Duration::from_secs(5),
                failure_threshold: 6,
                cooldown: Duration::from_secs(600),
                quorum: None,
            },
            switchover: switchover::Settings {
                fence,
                fence_settle: Duration::from_secs(35),
                fence_timeout: Duration::from_secs(60),
                drain_timeout: Duration::from_secs(300),
                drain_delay: Duration::from_secs(60),
                retry: Duration::from_secs(1),
                pending_retry: Duration::from_secs(5),
            },
        }
    }

    #[test]
    fn decide_fixtures() {
        let cases: Vec<Case> =
            serde_saphyr::from_str(include_str!("fixtures/decide.yaml")).expect("fixtures parse");
        assert!(cases.len() >= 40, "the fixture file lost its cases");
        let base = Instant::now();
        for case in cases {
            let target = target_of(
                &case.me,
                case.record.record(),
                case.backup.as_ref().map(RecordFixture::record),
                case.active,
                case.mode,
                case.fence.unwrap_or(true),
            );
            let znode = case.znode.map(|z| Znode {
                data: z.data.into_bytes(),
                version: z.version,
            });
            let status = PegasusTableRouteStatus {
                znode: case.last_version.map(|_| target.path.clone()),
                znode_version: case.last_version,
                active_side: case.last_side,
                ..PegasusTableRouteStatus::default()
            };
            let health = Health {
                primary: case.primary_probes.as_ref().map(|p| probes(base, p)),
                backup: case.backup_probes.as_ref().map(|p| probes(base, p)),
                observers: Vec::new(),
            };
            let inputs = Inputs {
                me: &case.me,
                others: &case.others,
                znode: znode.as_ref(),
                status: Some(&status),
                health: &health,
                now: base + Duration::from_secs(case.now),
                now_ms: i64::try_from(case.now).unwrap_or(0) * 1000,
                done: &case.done,
                writer: case.writer.as_deref(),
            };
            let got = if case.deleting {
                decide_removal(&Removal::of(&target), &inputs)
            } else {
                let decision = decide(&target, &inputs);
                assert_eq!(
                    decision.failover.reason(),
                    case.expect_failover,
                    "{}: {:?}",
                    case.name,
                    decision.failover
                );
                assert_eq!(
                    decision.active,
                    case.expect_active.unwrap_or(case.active),
                    "{}",
                    case.name
                );
                assert_eq!(
                    decision.event.as_ref().map(event_name),
                    case.expect_event.as_deref(),
                    "{}: {:?}",
                    case.name,
                    decision.event
                );
                assert_eq!(
                    decision.recheck,
                    case.expect_recheck_ms.map(Duration::from_millis),
                    "{}",
                    case.name
                );
                decision.plan
            };
            assert_eq!(got, case.expect, "case {:?}", case.name);
        }
    }

    #[test]
    fn the_owner_is_the_same_whatever_the_order() {
        let c = |id: &str, ms| Claim {
            id: id.into(),
            created_ms: ms,
            zone: "z".into(),
            table: "t".into(),
        };
        let claims = vec![c("ns/b", 5), c("ns/a", 5), c("ns/c", 1)];
        for me in &claims {
            assert_eq!(owner(me, &claims, None).owner.id, "ns/c");
        }
        let tie = vec![c("ns/b", 5), c("ns/a", 5)];
        assert_eq!(owner(&tie[0], &tie, None).owner.id, "ns/a");
        assert_eq!(owner(&tie[1], &tie, None).owner.id, "ns/a");
        // The znode's owner wins over seniority, from every claimant's point of view.
        let record = RouteRecord::new("c1", ["h:1"]).expect("record");
        let held = Znode {
            data: record::to_json(&record, "ns/b"),
            version: 3,
        };
        for me in &claims {
            let o = owner(me, &claims, Some(&held));
            assert_eq!((o.owner.id.as_str(), o.holds_znode), ("ns/b", true));
        }
        // Unless it no longer claims the table.
        let gone = Znode {
            data: record::to_json(&record, "ns/gone"),
            version: 3,
        };
        for me in &claims {
            let o = owner(me, &claims, Some(&gone));
            assert_eq!((o.owner.id.as_str(), o.holds_znode), ("ns/c", false));
        }
    }

    #[test]
    fn long_foreign_data_is_cut_on_a_char_boundary() {
        let data = "é".repeat(FOUND_EXCERPT);
        let e = excerpt(data.as_bytes());
        assert!(e.ends_with(&format!("... ({} bytes)", data.len())), "{e}");
        assert!(e.len() < FOUND_EXCERPT + 32);
    }
}
