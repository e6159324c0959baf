//! The reconciler shared by both route sources (the Kubernetes API and `--routes-dir`):
//!
//! ```text
//!  route (spec, status, deleting) + other routes' claims
//!    │ validate  (pure)  spec + zones ─► Target (znode, both clusters' records, settings) or Invalid
//!    │ observe           read the znode (record, owner, the operator's state)
//!    │ decide    (pure)  target + znode + claims + status + health + now + call results ─► plan
//!    │ apply             CAS write / delete (a lost race goes back to observe), or a call to a
//!    │                   cluster (its result goes back to decide)
//!    ▼ status    (pure)  outcome ─► status and conditions; notices for events and logs
//! ```
//!
//! A switchover step that wrote the znode goes round again at once, so one reconcile carries a
//! switchover as far as it can go without waiting; a phase that waits asks to be looked at again
//! when the wait is over ([`Report::recheck`]). The routes of `Automatic` routes' clusters are
//! probed by [`crate::probe`], which wakes them when their clusters' health moves.
//!
//! A deleted route, or one that moved to another table or zone, leaves its old znode through
//! the same loop with a [`Removal`] in place of the target. When each route is reconciled again
//! is [`schedule`]'s business.

pub mod apply;
pub mod decide;
pub mod failover;
pub mod observe;
pub mod schedule;
pub mod state;
pub mod status;
pub mod switchover;
pub mod validate;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tracing::{Instrument, info, warn};

use crate::clock::{Clock, rfc3339};
use crate::clusters::{ClusterCalls, MetaClusters};
use crate::crd::{
    ActiveCluster, ClusterHealthStatus, FailoverMode, HealthStatus, PegasusTableRouteSpec,
    PegasusTableRouteStatus,
};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::observers::Observer;
use crate::probe::{Prober, Registration};
use crate::zk::{Records, ZkAccess, ZkError, ZkStore, ZkTimeouts};
use crate::zone::Zones;
use apply::Applied;
use decide::{Claim, Decision, Event, Health, Inputs, Plan};
use failover::Probes;
use schedule::Settled;
use status::{Outcome, Switching, reason};
use switchover::{Effect, Observation};
use validate::{Invalid, Removal, Target};

/// Reads and writes before a route whose znode keeps changing under it gives up (and retries
/// later with backoff).
const MAX_ATTEMPTS: u32 = 5;
/// Switchover steps (calls and writes) one reconcile takes at most; it is looked at again soon
/// after. A whole switchover without waits takes about eight.
const MAX_STEPS: u32 = 16;
/// The time a switchover call to a cluster may take (an automatic failover's calls get the
/// probe interval, if shorter: the old primary is failing).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// One route as the reconciler sees it, whatever its source.
#[derive(Clone, Debug)]
pub struct RouteView<'a> {
    /// `namespace/name`, or the file name.
    pub id: &'a str,
    /// Creation time in milliseconds since the epoch, for seniority (0 for route files: see
    /// [`decide`]).
    pub created_ms: i64,
    pub generation: Option<i64>,
    pub spec: &'a PegasusTableRouteSpec,
    pub status: Option<&'a PegasusTableRouteStatus>,
    pub deleting: bool,
}

/// Something worth an event and a log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub warning: bool,
    /// CamelCase.
    pub reason: &'static str,
    /// CamelCase: what the operator did or tried.
    pub action: &'static str,
    pub note: String,
}

/// The result of reconciling one route.
#[derive(Debug)]
pub struct Report {
    /// The status to record; `None` once a deleted route's znode is cleaned up.
    pub status: Option<PegasusTableRouteStatus>,
    pub notices: Vec<Notice>,
    /// `Ok` when the route is where it should be for now (including conflicts and invalid
    /// specs, which only a change to some route can resolve); `Err` to retry with backoff.
    pub result: Result<(), Error>,
    /// A deleted route may lose its finalizer.
    pub cleaned_up: bool,
    /// Another route may now own the table (this one was deleted or moved).
    pub released: Option<(String, String)>,
    /// A switchover phase waits: look again after this long rather than at the next resync.
    pub recheck: Option<Duration>,
}

impl Report {
    /// How the reconcile ended, for [`schedule::next`].
    pub fn settled(&self) -> Settled {
        if self.result.is_err() {
            Settled::Failed
        } else if let Some(wait) = self.recheck {
            Settled::Waiting(wait)
        } else if self
            .status
            .as_ref()
            .and_then(|s| s.condition(status::CONFLICT))
            .is_some_and(|c| c.status == "True")
        {
            Settled::Yielded
        } else {
            Settled::Synced
        }
    }
}

/// A route's claim on its table, for finding conflicts: `None` when the route is invalid, so a
/// route that can never be written does not keep a valid one waiting.
pub fn claim_of(
    id: &str,
    created_ms: i64,
    spec: &PegasusTableRouteSpec,
    zones: &Zones,
) -> Option<Claim> {
    let target = validate::validate(spec, zones).ok()?;
    Some(Claim {
        id: id.to_owned(),
        created_ms,
        zone: target.zone,
        table: target.table,
    })
}

/// Keeps routes in ZooKeeper, one store of records per zone.
pub struct Reconciler {
    zones: Zones,
    stores: BTreeMap<String, Arc<dyn Records>>,
    calls: Arc<dyn ClusterCalls>,
    prober: Arc<Prober>,
    clock: Clock,
    /// The marker of the records written (routes-directory mode, [`crate::orphans`]).
    writer: Option<String>,
    pub metrics: Arc<Metrics>,
}

impl Reconciler {
    /// A reconciler writing to each zone's ZooKeeper, calling the clusters over Pegasus RPC,
    /// asking `observers` before an automatic failover.
    pub fn new(
        zones: Zones,
        timeouts: ZkTimeouts,
        access: &ZkAccess,
        observers: Vec<Observer>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let stores = zones
            .iter()
            .map(|z| {
                let store: Arc<dyn Records> =
                    Arc::new(ZkStore::new(z.hosts.clone(), timeouts, access));
                (z.name.clone(), store)
            })
            .collect();
        Self::with_parts(
            zones,
            stores,
            Arc::new(MetaClusters::default()),
            observers,
            Clock::system(),
            metrics,
        )
    }

    /// A reconciler over the given stores, by zone name (tests use in-memory ones).
    pub fn with_stores(
        zones: Zones,
        stores: BTreeMap<String, Arc<dyn Records>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self::with_parts(
            zones,
            stores,
            Arc::new(MetaClusters::default()),
            Vec::new(),
            Clock::system(),
            metrics,
        )
    }

    /// A reconciler with every part given (tests: in-memory stores, scripted clusters, a clock
    /// that starts at a chosen time).
    pub fn with_parts(
        zones: Zones,
        stores: BTreeMap<String, Arc<dyn Records>>,
        calls: Arc<dyn ClusterCalls>,
        observers: Vec<Observer>,
        clock: Clock,
        metrics: Arc<Metrics>,
    ) -> Self {
        let prober = Arc::new(Prober::new(
            calls.clone(),
            observers,
            clock,
            metrics.clone(),
        ));
        Reconciler {
            zones,
            stores,
            calls,
            prober,
            clock,
            writer: None,
            metrics,
        }
    }

    /// The same reconciler, marking the records it writes with `writer` (routes-directory mode:
    /// see [`crate::orphans`]).
    pub fn writing_as(mut self, writer: Option<String>) -> Self {
        self.writer = writer;
        self
    }

    /// The marker of the records written, if any.
    pub fn writer(&self) -> Option<&str> {
        self.writer.as_deref()
    }

    /// The prober of the `Automatic` routes' clusters; the route source runs it while it leads.
    pub fn prober(&self) -> &Arc<Prober> {
        &self.prober
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn zones(&self) -> &Zones {
        &self.zones
    }

    pub fn store(&self, zone: &str) -> Option<&Arc<dyn Records>> {
        self.stores.get(zone)
    }

    /// Brings one route's znode in line with its spec (or removes it when `route.deleting`).
    /// `claims` are the other routes' claims; the route's own entry, if any, is ignored.
    pub async fn reconcile(&self, route: &RouteView<'_>, claims: &[Claim], now: &str) -> Report {
        // Real time, not tokio's: this measures work, and paused test clocks would hide it.
        let started = std::time::Instant::now();
        let span = tracing::info_span!("reconcile", route = route.id, table = %route.spec.table);
        let others: Vec<Claim> = claims
            .iter()
            .filter(|c| c.id != route.id)
            .cloned()
            .collect();
        let report = async {
            let report = if route.deleting {
                self.remove(route, &others).await
            } else {
                self.keep(route, &others, now).await
            };
            for n in &report.notices {
                if n.warning {
                    warn!(reason = n.reason, "{}", n.note);
                } else {
                    info!(reason = n.reason, "{}", n.note);
                }
            }
            report
        }
        .instrument(span)
        .await;
        self.metrics
            .reconcile_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.reconciled(report.result.is_ok());
        if let Err(e) = &report.result {
            self.metrics.failed(e.metric_label());
        }
        report
    }

    async fn keep(&self, route: &RouteView<'_>, others: &[Claim], now: &str) -> Report {
        let prev = route.status;
        let mut notices = Vec::new();
        let target = match validate::validate(route.spec, &self.zones) {
            Ok(t) => t,
            Err(invalid) => {
                let (why, message) = match invalid {
                    Invalid::Spec(m) => (reason::INVALID_SPEC, m),
                    Invalid::UnknownZone(m) => (reason::UNKNOWN_ZONE, m),
                };
                if !same_ready_reason(prev, why) {
                    notices.push(Notice {
                        warning: true,
                        reason: why,
                        action: "Validate",
                        note: message.clone(),
                    });
                }
                let outcome = Outcome::Invalid {
                    reason: why,
                    message,
                };
                return Report {
                    status: Some(status::next_status(
                        prev,
                        route.generation,
                        &outcome,
                        None,
                        now,
                    )),
                    notices,
                    result: Ok(()),
                    cleaned_up: false,
                    released: None,
                    recheck: None,
                };
            }
        };
        let me = Claim {
            id: route.id.to_owned(),
            created_ms: route.created_ms,
            zone: target.zone.clone(),
            table: target.table.clone(),
        };
        let automatic = target.mode == FailoverMode::Automatic && target.backup.is_some();
        if automatic {
            self.prober.register(
                route.id,
                Registration {
                    zone: target.zone.clone(),
                    table: target.table.clone(),
                    primary: target.primary.clone(),
                    backup: target.backup.clone(),
                    interval: target.policy.probe_interval,
                },
            );
        } else {
            self.prober.unregister(route.id);
        }

        // The route used to live elsewhere (its table or zone changed): release the old znode.
        let mut released = None;
        if let Some((old_zone, old_path)) = written_at(prev)
            && (old_zone != target.zone || old_path != target.path)
        {
            match self
                .release(route, &old_zone, &old_path, others, &mut notices)
                .await
            {
                Ok(r) => released = r,
                Err(e) => return self.failed(route, e, notices, now),
            }
        }

        let result = self
            .converge(&Want::Keep(&target), &me, others, prev, &mut notices)
            .await;
        let (outcome, decision, events) = match result {
            Ok(Converged {
                applied: Applied::Holds { version },
                decision: Some(decision),
                events,
            }) => (
                Outcome::Synced {
                    zone: target.zone.clone(),
                    znode: target.path.clone(),
                    version,
                    active_cluster: target.record(decision.active).cluster.clone(),
                },
                Some(decision),
                events,
            ),
            Ok(Converged { decision, .. }) => {
                let (owner, holds) = match decision.map(|d| d.plan) {
                    Some(Plan::Yield { owner, holds_znode }) => (owner, holds_znode),
                    _ => (String::from("another route"), false),
                };
                let why = if holds { "holds the znode" } else { "is older" };
                if prev
                    .and_then(|p| p.condition(status::CONFLICT))
                    .is_none_or(|c| c.status != "True")
                {
                    notices.push(Notice {
                        warning: true,
                        reason: reason::CONFLICTING_ROUTE,
                        action: "Yield",
                        note: format!(
                            "{} is not written: {owner}, which {why}, already routes table {} in zone {}",
                            target.path, target.table, target.zone
                        ),
                    });
                }
                (
                    Outcome::Yielded {
                        zone: target.zone.clone(),
                        message: format!(
                            "{owner} {why} and routes table {} in zone {}",
                            target.table, target.zone
                        ),
                        owner,
                    },
                    None,
                    Vec::new(),
                )
            }
            Err(e) => return self.failed(route, e, notices, now),
        };
        let health = automatic.then(|| {
            let h = self.prober.health(&target.primary, target.backup.as_ref());
            HealthStatus {
                primary: Some(cluster_health(&target.primary.cluster, h.primary.as_ref())),
                backup: target
                    .backup
                    .as_ref()
                    .map(|b| cluster_health(&b.cluster, h.backup.as_ref())),
                observers: None,
            }
        });
        let switching = decision.as_ref().map(|d| Switching {
            failover: &d.failover,
            state: &d.state,
            active: d.active,
            events: &events,
            health,
            settings: &target.switchover,
            primary: &target.primary.cluster,
            backup: target.backup.as_ref().map(|b| b.cluster.as_str()),
            now_ms: self.clock.now_ms(),
        });
        Report {
            status: Some(status::next_status(
                prev,
                route.generation,
                &outcome,
                switching.as_ref(),
                now,
            )),
            notices,
            result: Ok(()),
            cleaned_up: false,
            released,
            recheck: decision.and_then(|d| d.recheck),
        }
    }

    /// Deletes the znode the route owned, if it owned one.
    async fn remove(&self, route: &RouteView<'_>, others: &[Claim]) -> Report {
        let mut notices = Vec::new();
        self.prober.unregister(route.id);
        // What this operator wrote wins over what the spec says now (the zones may have changed).
        let place = written_at(route.status).or_else(|| {
            validate::validate(route.spec, &self.zones)
                .ok()
                .map(|t| (t.zone, t.path))
        });
        let Some((zone, path)) = place else {
            // Never valid, never written: nothing to remove.
            return Report {
                status: None,
                notices,
                result: Ok(()),
                cleaned_up: true,
                released: None,
                recheck: None,
            };
        };
        match self
            .release(route, &zone, &path, others, &mut notices)
            .await
        {
            Ok(released) => Report {
                status: None,
                notices,
                result: Ok(()),
                cleaned_up: true,
                released,
                recheck: None,
            },
            Err(e) => {
                let report = self.failed(route, e, notices, "");
                Report {
                    status: None,
                    ..report
                }
            }
        }
    }

    /// Removes `path` in `zone` on behalf of `route`, unless it is not the route's.
    /// Returns the released key when a znode was removed or already gone.
    async fn release(
        &self,
        route: &RouteView<'_>,
        zone: &str,
        path: &str,
        others: &[Claim],
        notices: &mut Vec<Notice>,
    ) -> Result<Option<(String, String)>, Error> {
        let table = path.rsplit('/').next().unwrap_or_default().to_owned();
        if self.zones.get(zone).is_none() {
            notices.push(Notice {
                warning: true,
                reason: reason::UNKNOWN_ZONE,
                action: "DeleteZnode",
                note: format!("{path} in zone {zone} is left in place: the operator no longer serves zone {zone}"),
            });
            return Ok(None);
        }
        // The records this route may have written there: its spec's, when the spec still
        // names that place.
        let records = validate::validate(route.spec, &self.zones)
            .ok()
            .filter(|t| t.zone == zone && t.path == path)
            .map(|t| Removal::of(&t).records)
            .unwrap_or_default();
        let removal = Removal {
            zone: zone.to_owned(),
            table: table.clone(),
            path: path.to_owned(),
            records,
        };
        let me = Claim {
            id: route.id.to_owned(),
            created_ms: route.created_ms,
            zone: zone.to_owned(),
            table,
        };
        match self
            .converge(&Want::Remove(&removal), &me, others, route.status, notices)
            .await?
            .applied
        {
            Applied::Removed => Ok(Some((me.zone, me.table))),
            Applied::Untouched | Applied::Holds { .. } => Ok(None),
        }
    }

    /// Observe, decide, apply; again after a lost race, after a call to a cluster, and after a
    /// switchover step that wrote the znode.
    async fn converge(
        &self,
        want: &Want<'_>,
        me: &Claim,
        others: &[Claim],
        prev: Option<&PegasusTableRouteStatus>,
        notices: &mut Vec<Notice>,
    ) -> Result<Converged, Error> {
        let (zone, path) = match want {
            Want::Keep(t) => (&t.zone, &t.path),
            Want::Remove(r) => (&r.zone, &r.path),
        };
        let store = self
            .stores
            .get(zone)
            .ok_or_else(|| Error::UnknownZone(zone.clone()))?;
        let health = match want {
            Want::Keep(t) if t.mode == FailoverMode::Automatic => {
                self.prober.health(&t.primary, t.backup.as_ref())
            }
            _ => Health::default(),
        };
        let mut lost = 0;
        let mut steps = 0;
        let mut events = Vec::new();
        // The results of the calls made since the znode was read at `done_at`.
        let mut done: Vec<Observation> = Vec::new();
        let mut done_at: Option<i32> = None;
        loop {
            if lost >= MAX_ATTEMPTS {
                return Err(Error::Contended {
                    path: path.clone(),
                    attempts: MAX_ATTEMPTS,
                });
            }
            let znode = observe::observe(store.as_ref(), path).await?;
            let version = znode.as_ref().map(|z| z.version);
            if done_at != version {
                done.clear();
            }
            let inputs = Inputs {
                me,
                others,
                znode: znode.as_ref(),
                status: prev,
                health: &health,
                now: self.clock.now(),
                now_ms: self.clock.now_ms(),
                done: &done,
                writer: self.writer.as_deref(),
            };
            let (plan, mut decision) = match want {
                Want::Keep(target) => {
                    let d = decide::decide(target, &inputs);
                    (d.plan.clone(), Some(d))
                }
                Want::Remove(removal) => (decide::decide_removal(removal, &inputs), None),
            };
            if let (Plan::Call { effect }, Want::Keep(target), Some(d)) =
                (&plan, want, &mut decision)
            {
                if steps >= MAX_STEPS {
                    // Not stuck, only busy: the rest after a breath.
                    d.recheck = Some(validate::SWITCHOVER_RETRY);
                    let version = version.unwrap_or_default();
                    return Ok(Converged {
                        applied: Applied::Holds { version },
                        decision: decision.map(|d| Decision {
                            plan: Plan::InSync { version },
                            ..d
                        }),
                        events,
                    });
                }
                steps += 1;
                let automatic = d.state.switchover.as_ref().is_some_and(|sw| sw.automatic);
                let observation = self.call(target, effect, automatic).await;
                done_at = version;
                done.push(observation);
                continue;
            }
            match apply::apply(store.as_ref(), path, &plan, &self.metrics).await {
                Ok(applied) => {
                    let event = decision.as_ref().and_then(|d| d.event.clone());
                    match (&event, want) {
                        (Some(e), Want::Keep(target)) => {
                            self.count(e);
                            notices.push(notice_of(e, target, path));
                        }
                        _ => {
                            if let Some(n) = notice_for(&plan, path) {
                                if n.reason == "ZnodeReverted" {
                                    self.metrics.reverts.inc();
                                }
                                notices.push(n);
                            }
                        }
                    }
                    // A switchover step goes on at once; anything else is where it should be.
                    if let Some(e) = event {
                        events.push(e);
                        steps += 1;
                        if matches!(plan, Plan::Create { .. } | Plan::Replace { .. })
                            && steps < MAX_STEPS
                        {
                            continue;
                        }
                        if let Some(d) = decision.as_mut().filter(|_| steps >= MAX_STEPS) {
                            d.recheck = Some(validate::SWITCHOVER_RETRY);
                        }
                    }
                    return Ok(Converged {
                        applied,
                        decision,
                        events,
                    });
                }
                Err(ZkError::LostRace { path }) => {
                    lost += 1;
                    self.metrics.lost_races.inc();
                    info!(%path, "lost a compare-and-set race; reading again");
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Makes a switchover's call to one of the route's clusters.
    async fn call(&self, target: &Target, effect: &Effect, automatic: bool) -> Observation {
        let timeout = if automatic {
            CALL_TIMEOUT.min(target.policy.probe_interval)
        } else {
            CALL_TIMEOUT
        };
        let deadline = self.clock.now() + timeout;
        let table = target.table.as_str();
        let (name, result) = match effect {
            Effect::Deny { side, value } => {
                let cluster = target.record(*side);
                info!(cluster = %cluster.cluster, %table, value = %value, "setting {}", switchover::DENY_KEY);
                let r = self.calls.deny(cluster, table, value, deadline).await;
                ("deny", r.map(|()| None))
            }
            Effect::Lift { side } => {
                let cluster = target.record(*side);
                info!(cluster = %cluster.cluster, %table, "deleting {}", switchover::DENY_KEY);
                let r = self.calls.lift(cluster, table, deadline).await;
                ("lift", r.map(|()| None))
            }
            Effect::Progress { side, to_cluster } => {
                let cluster = target.record(*side);
                let r = self
                    .calls
                    .progress(cluster, table, to_cluster, deadline)
                    .await;
                ("progress", r.map(Some))
            }
        };
        self.metrics.switchover_call(name, result.is_ok());
        match result {
            Ok(Some(drain)) => {
                info!(%table, ?drain, "duplication progress");
                Observation::Progress { drain }
            }
            Ok(None) => Observation::Done {
                effect: effect.clone(),
            },
            Err(error) => {
                warn!(%table, call = name, %error, "switchover call failed");
                Observation::Failed {
                    effect: effect.clone(),
                    error,
                }
            }
        }
    }

    fn count(&self, event: &Event) {
        match event {
            Event::Flipped(sw) => self.metrics.flipped(sw.automatic),
            Event::SwitchoverStarted(sw) if sw.phase == state::Phase::Reconfiguring => {
                self.metrics.flipped(sw.automatic)
            }
            Event::Completed { .. } => self.metrics.switchover_finished(true),
            Event::Aborted { .. } => self.metrics.switchover_finished(false),
            _ => {}
        }
    }

    fn failed(
        &self,
        route: &RouteView<'_>,
        e: Error,
        mut notices: Vec<Notice>,
        now: &str,
    ) -> Report {
        let why = match &e {
            Error::ZooKeeper(ZkError::Refused { .. }) => reason::ZOOKEEPER_REFUSED,
            Error::ZooKeeper(_) => reason::ZOOKEEPER_UNAVAILABLE,
            Error::Contended { .. } => reason::WRITE_CONTENDED,
            Error::UnknownZone(_) => reason::UNKNOWN_ZONE,
            _ => reason::ZOOKEEPER_UNAVAILABLE,
        };
        if !same_ready_reason(route.status, why) {
            notices.push(Notice {
                warning: true,
                reason: why,
                action: "WriteZnode",
                note: e.to_string(),
            });
        }
        let outcome = Outcome::Failed {
            reason: why,
            message: e.to_string(),
        };
        Report {
            status: Some(status::next_status(
                route.status,
                route.generation,
                &outcome,
                None,
                now,
            )),
            notices,
            result: Err(e),
            cleaned_up: false,
            released: None,
            recheck: None,
        }
    }
}

/// Where a converge ended.
struct Converged {
    applied: Applied,
    /// The last decision (for a kept route).
    decision: Option<Decision>,
    /// The switchover steps carried out, in order.
    events: Vec<Event>,
}

fn cluster_health(cluster: &str, probes: Option<&Probes>) -> ClusterHealthStatus {
    let p = probes.cloned().unwrap_or_default();
    ClusterHealthStatus {
        cluster: cluster.to_owned(),
        healthy: p.healthy(),
        consecutive_failures: p.consecutive_failures,
        since: p.changed_at_ms.map(rfc3339),
        last_error: if p.consecutive_failures > 0 {
            p.last_error
        } else {
            None
        },
    }
}

/// The event and log line of a switchover step.
fn notice_of(event: &Event, target: &Target, path: &str) -> Notice {
    let table = &target.table;
    let n = |warning, reason, note| Notice {
        warning,
        reason,
        action: "Switchover",
        note,
    };
    match event {
        Event::SwitchoverStarted(sw) if sw.automatic => n(
            true,
            "FailoverStarted",
            format!(
                "failing table {table} over from {} to {}: {}",
                sw.from_cluster,
                sw.to_cluster,
                sw.evidence
                    .as_ref()
                    .map_or(String::new(), |e| e.reason.clone())
            ),
        ),
        Event::SwitchoverStarted(sw) if sw.phase == state::Phase::Reconfiguring => n(
            false,
            "Flipped",
            format!(
                "{path} routes table {table} to {} now (was {}): nothing to fence first; sending clients away from {}",
                sw.to_cluster, sw.from_cluster, sw.from_cluster
            ),
        ),
        Event::SwitchoverStarted(sw) => n(
            false,
            "SwitchoverStarted",
            format!(
                "switching table {table} from {} to {}: {}",
                sw.from_cluster,
                sw.to_cluster,
                status::phase_message(sw, &target.switchover)
            ),
        ),
        Event::PhaseChanged(sw) => n(
            sw.phase == state::Phase::Aborting,
            if sw.phase == state::Phase::Aborting {
                "SwitchoverAborting"
            } else {
                "SwitchoverPhase"
            },
            format!(
                "table {table}, {} → {}: {}: {}",
                sw.from_cluster,
                sw.to_cluster,
                sw.phase.name(),
                status::phase_message(sw, &target.switchover)
            ),
        ),
        Event::Flipped(sw) if sw.automatic => n(
            true,
            "FailedOver",
            format!(
                "{path} routes table {table} to {} now (failed over from {}{}){}",
                sw.to_cluster,
                sw.from_cluster,
                if sw.fencing_skipped {
                    "; FencingSkipped: it did not answer the fence"
                } else {
                    ""
                },
                if sw.note.is_empty() {
                    String::new()
                } else {
                    format!("; {}", sw.note)
                }
            ),
        ),
        Event::Flipped(sw) => n(
            false,
            "Flipped",
            format!(
                "{path} routes table {table} to {} now (was {}){}",
                sw.to_cluster,
                sw.from_cluster,
                if sw.note.is_empty() {
                    String::new()
                } else {
                    format!("; {}", sw.note)
                }
            ),
        ),
        Event::Completed { switchover, note } => n(
            false,
            "SwitchoverCompleted",
            format!(
                "table {table} switched from {} to {}{}",
                switchover.from_cluster,
                switchover.to_cluster,
                if note.is_empty() {
                    format!(
                        "; {} is left with {}={}",
                        switchover.from_cluster,
                        switchover::DENY_KEY,
                        switchover::SEND_AWAY
                    )
                } else {
                    format!("; {note}")
                }
            ),
        ),
        Event::Aborted {
            switchover,
            reason,
            note,
        } => n(
            true,
            "SwitchoverAborted",
            format!(
                "the switchover of table {table} from {} to {} was given up: {reason}{}",
                switchover.from_cluster,
                switchover.to_cluster,
                if note.is_empty() {
                    String::new()
                } else {
                    format!("; {note}")
                }
            ),
        ),
        Event::Acknowledged => n(
            false,
            "FailoverAcknowledged",
            format!(
                "spec.active names the {} table {table} failed over to: acknowledged",
                switchover::side_name(ActiveCluster::Backup)
            ),
        ),
    }
}

/// What a route wants of a znode.
enum Want<'a> {
    Keep(&'a Target),
    Remove(&'a Removal),
}

/// Where the operator last wrote this route's record, from its status.
fn written_at(status: Option<&PegasusTableRouteStatus>) -> Option<(String, String)> {
    let s = status?;
    Some((s.zone.clone()?, s.znode.clone()?))
}

fn same_ready_reason(status: Option<&PegasusTableRouteStatus>, why: &str) -> bool {
    status
        .and_then(|s| s.condition(status::READY))
        .is_some_and(|c| c.reason == why)
}

fn notice_for(plan: &Plan, path: &str) -> Option<Notice> {
    let n = |warning, reason, action, note| {
        Some(Notice {
            warning,
            reason,
            action,
            note,
        })
    };
    match plan {
        Plan::Create { data } => n(
            false,
            "Created",
            "WriteZnode",
            format!("created {path}: {data}"),
        ),
        Plan::Replace {
            took_over_from: Some(from),
            data,
            found,
            ..
        } => n(
            false,
            "TookOver",
            "WriteZnode",
            format!(
                "took {path} over from {from}, which no longer routes the table: {data} (was {found})"
            ),
        ),
        Plan::Replace {
            data,
            found,
            drift: false,
            ..
        } => n(
            false,
            "Updated",
            "WriteZnode",
            format!("updated {path} to {data} (was {found})"),
        ),
        Plan::Replace {
            data,
            found,
            drift: true,
            ..
        } => n(
            true,
            "ZnodeReverted",
            "WriteZnode",
            format!("{path} was changed outside the operator; found {found}; put back {data}"),
        ),
        Plan::Delete { .. } => n(false, "Deleted", "DeleteZnode", format!("deleted {path}")),
        Plan::LeaveForeign { version, found } => n(
            true,
            "ZnodeLeftInPlace",
            "DeleteZnode",
            format!(
                "{path} is left in place: it is not this route's (version {version}); it holds {found}"
            ),
        ),
        Plan::InSync { .. } | Plan::AlreadyGone | Plan::Yield { .. } | Plan::Call { .. } => None,
    }
}

/// Now, as Kubernetes writes times (RFC 3339, seconds).
pub fn now_rfc3339() -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    k8s_openapi::jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod claims {
    use super::*;

    #[test]
    fn invalid_routes_claim_nothing() {
        let zones = Zones::new(
            vec![crate::zone::Zone::parse("az1=127.0.0.1:2181/m").expect("zone")],
            None,
        )
        .expect("zones");
        let spec =
            |yaml: &str| -> PegasusTableRouteSpec { serde_saphyr::from_str(yaml).expect("spec") };
        let ok = spec("table: t\nprimary: {cluster: c, metaServers: ['h:1']}\n");
        assert_eq!(
            claim_of("ns/a", 5, &ok, &zones),
            Some(Claim {
                id: "ns/a".into(),
                created_ms: 5,
                zone: "az1".into(),
                table: "t".into()
            })
        );
        let bad_addr = spec("table: t\nprimary: {cluster: c, metaServers: ['a..b:1']}\n");
        assert_eq!(claim_of("ns/b", 1, &bad_addr, &zones), None);
        let bad_zone =
            spec("table: t\nzone: nowhere\nprimary: {cluster: c, metaServers: ['h:1']}\n");
        assert_eq!(claim_of("ns/c", 1, &bad_zone, &zones), None);
    }
}
