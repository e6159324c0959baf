//! The reconciler shared by both route sources (the Kubernetes API and `--routes-dir`):
//!
//! ```text
//!  route (spec, status, deleting) + other routes' claims
//!    │ validate  (pure)  spec + zones ─► Target (znode, both clusters' records) or Invalid
//!    │ observe           read the znode
//!    │ decide    (pure)  target + znode (its owner) + claims + status (+ health, now) ─► plan
//!    │ apply             CAS write / delete; a lost race goes back to observe
//!    ▼ status    (pure)  outcome ─► status and conditions; notices for events and logs
//! ```
//!
//! A deleted route, or one that moved to another table or zone, leaves its old znode through
//! the same loop with a [`Removal`] in place of the target. When each route is reconciled again
//! is [`schedule`]'s business.

pub mod apply;
pub mod decide;
pub mod observe;
pub mod schedule;
pub mod status;
pub mod validate;

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::{Instrument, info, warn};

use crate::crd::{PegasusTableRouteSpec, PegasusTableRouteStatus};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::zk::{Records, ZkError, ZkStore, ZkTimeouts};
use crate::zone::Zones;
use apply::Applied;
use decide::{Claim, Decision, Failover, Health, Inputs, Plan};
use schedule::Settled;
use status::{Outcome, reason};
use validate::{Invalid, Removal, Target};

/// Reads and writes before a route whose znode keeps changing under it gives up (and retries
/// later with backoff).
const MAX_ATTEMPTS: u32 = 5;

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
}

impl Report {
    /// How the reconcile ended, for [`schedule::next`].
    pub fn settled(&self) -> Settled {
        if self.result.is_err() {
            Settled::Failed
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
    health: Health,
    pub metrics: Arc<Metrics>,
}

impl Reconciler {
    /// A reconciler writing to each zone's ZooKeeper.
    pub fn new(zones: Zones, timeouts: ZkTimeouts, metrics: Arc<Metrics>) -> Self {
        let stores = zones
            .iter()
            .map(|z| {
                let store: Arc<dyn Records> = Arc::new(ZkStore::new(z.hosts.clone(), timeouts));
                (z.name.clone(), store)
            })
            .collect();
        Self::with_stores(zones, stores, metrics)
    }

    /// A reconciler over the given stores, by zone name (tests use in-memory ones).
    pub fn with_stores(
        zones: Zones,
        stores: BTreeMap<String, Arc<dyn Records>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Reconciler {
            zones,
            stores,
            health: Health::default(),
            metrics,
        }
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
                };
            }
        };
        let me = Claim {
            id: route.id.to_owned(),
            created_ms: route.created_ms,
            zone: target.zone.clone(),
            table: target.table.clone(),
        };
        let failover = decide::failover(&target, &self.health, tokio::time::Instant::now());
        if failover == Failover::AutomaticNotActive
            && prev
                .and_then(|p| p.condition(status::AUTOMATIC_FAILOVER))
                .is_none()
        {
            notices.push(Notice {
                warning: true,
                reason: "AutomaticFailoverNotActive",
                action: "Decide",
                note: status::AUTOMATIC_NOT_ACTIVE.to_owned(),
            });
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
                Err(e) => return self.failed(route, e, Some(failover), notices, now),
            }
        }

        let result = self
            .converge(&Want::Keep(&target), &me, others, prev, &mut notices)
            .await;
        let outcome = match result {
            Ok((Applied::Holds { version }, Some(decision))) => Outcome::Synced {
                zone: target.zone.clone(),
                znode: target.path.clone(),
                version,
                active_cluster: target.record(decision.active).cluster.clone(),
            },
            Ok((_, decision)) => {
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
                Outcome::Yielded {
                    zone: target.zone.clone(),
                    message: format!(
                        "{owner} {why} and routes table {} in zone {}",
                        target.table, target.zone
                    ),
                    owner,
                }
            }
            Err(e) => return self.failed(route, e, Some(failover), notices, now),
        };
        Report {
            status: Some(status::next_status(
                prev,
                route.generation,
                &outcome,
                Some(failover),
                now,
            )),
            notices,
            result: Ok(()),
            cleaned_up: false,
            released,
        }
    }

    /// Deletes the znode the route owned, if it owned one.
    async fn remove(&self, route: &RouteView<'_>, others: &[Claim]) -> Report {
        let mut notices = Vec::new();
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
            },
            Err(e) => {
                let report = self.failed(route, e, None, notices, "");
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
        {
            (Applied::Removed, _) => Ok(Some((me.zone, me.table))),
            (Applied::Untouched | Applied::Holds { .. }, _) => Ok(None),
        }
    }

    /// Observe, decide, apply; again after a lost race.
    async fn converge(
        &self,
        want: &Want<'_>,
        me: &Claim,
        others: &[Claim],
        prev: Option<&PegasusTableRouteStatus>,
        notices: &mut Vec<Notice>,
    ) -> Result<(Applied, Option<Decision>), Error> {
        let (zone, path) = match want {
            Want::Keep(t) => (&t.zone, &t.path),
            Want::Remove(r) => (&r.zone, &r.path),
        };
        let store = self
            .stores
            .get(zone)
            .ok_or_else(|| Error::UnknownZone(zone.clone()))?;
        for _ in 0..MAX_ATTEMPTS {
            let znode = observe::observe(store.as_ref(), path).await?;
            let inputs = Inputs {
                me,
                others,
                znode: znode.as_ref(),
                status: prev,
                health: &self.health,
                now: tokio::time::Instant::now(),
            };
            let (plan, decision) = match want {
                Want::Keep(target) => {
                    let d = decide::decide(target, &inputs);
                    (d.plan.clone(), Some(d))
                }
                Want::Remove(removal) => (decide::decide_removal(removal, &inputs), None),
            };
            match apply::apply(store.as_ref(), path, &plan, &self.metrics).await {
                Ok(applied) => {
                    if let Some(n) = notice_for(&plan, path) {
                        if n.reason == "ZnodeReverted" {
                            self.metrics.reverts.inc();
                        }
                        notices.push(n);
                    }
                    return Ok((applied, decision));
                }
                Err(ZkError::LostRace { path }) => {
                    self.metrics.lost_races.inc();
                    info!(%path, "lost a compare-and-set race; reading again");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Contended {
            path: path.clone(),
            attempts: MAX_ATTEMPTS,
        })
    }

    fn failed(
        &self,
        route: &RouteView<'_>,
        e: Error,
        failover: Option<Failover>,
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
                failover,
                now,
            )),
            notices,
            result: Err(e),
            cleaned_up: false,
            released: None,
        }
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
        Plan::InSync { .. } | Plan::AlreadyGone | Plan::Yield { .. } => None,
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
mod tests {
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
