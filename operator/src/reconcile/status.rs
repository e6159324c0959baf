//! Update status: what a reconcile found and did, as the route's status and its conditions
//! (`Ready`, `RouteSynced`, `Conflict`, and `AutomaticFailover` for routes that ask for it). Pure:
//! the time is passed in.

use crate::crd::{Condition, PegasusTableRouteStatus};
use crate::reconcile::decide::Failover;

pub const READY: &str = "Ready";
pub const ROUTE_SYNCED: &str = "RouteSynced";
pub const CONFLICT: &str = "Conflict";
/// Present while `failover.mode` is `Automatic`: whether automatic failover is armed. `False`
/// with reason `NotImplemented` until the operator carries it out.
pub const AUTOMATIC_FAILOVER: &str = "AutomaticFailover";

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
    pub const NOT_IMPLEMENTED: &str = "NotImplemented";
}

/// The message of `AutomaticFailover` while it is not implemented.
pub const AUTOMATIC_NOT_ACTIVE: &str = "failover.mode Automatic is not active yet: this operator \
    routes clients to the cluster spec.active names and never fails over on its own";

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

/// The status after `outcome`, keeping transition times of conditions that did not change.
/// `failover` is the failover policy's verdict when the spec was valid; `None` leaves the
/// `AutomaticFailover` condition as it was.
pub fn next_status(
    prev: Option<&PegasusTableRouteStatus>,
    generation: Option<i64>,
    outcome: &Outcome,
    failover: Option<Failover>,
    now: &str,
) -> PegasusTableRouteStatus {
    let mut status = prev.cloned().unwrap_or_default();
    status.observed_generation = generation;
    match failover {
        Some(Failover::Manual) => status.conditions.retain(|c| c.type_ != AUTOMATIC_FAILOVER),
        Some(Failover::AutomaticNotActive) => set_condition(
            &mut status.conditions,
            AUTOMATIC_FAILOVER,
            (
                "False",
                reason::NOT_IMPLEMENTED,
                AUTOMATIC_NOT_ACTIVE.to_owned(),
            ),
            generation,
            now,
        ),
        None => {}
    }
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
    status
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
    [READY, ROUTE_SYNCED, CONFLICT, AUTOMATIC_FAILOVER]
        .iter()
        .position(|t| *t == type_)
        .unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let s1 = next_status(None, Some(1), &synced, Some(Failover::Manual), "T1");
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
        let s2 = next_status(Some(&s1), Some(1), &down, Some(Failover::Manual), "T2");
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

    #[test]
    fn automatic_mode_says_failover_is_not_active_and_manual_drops_the_condition() {
        let s1 = next_status(
            None,
            Some(1),
            &synced_fields(),
            Some(Failover::AutomaticNotActive),
            "T1",
        );
        let c = cond(&s1, AUTOMATIC_FAILOVER);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str(), c.message.as_str()),
            ("False", "NotImplemented", AUTOMATIC_NOT_ACTIVE)
        );
        assert_eq!(cond(&s1, READY).status, "True", "the route itself is fine");
        assert_eq!(
            s1.conditions
                .iter()
                .map(|c| c.type_.as_str())
                .collect::<Vec<_>>(),
            [READY, ROUTE_SYNCED, CONFLICT, AUTOMATIC_FAILOVER]
        );
        let down = Outcome::Failed {
            reason: reason::ZOOKEEPER_UNAVAILABLE,
            message: "down".into(),
        };
        let s2 = next_status(Some(&s1), Some(1), &down, None, "T2");
        assert_eq!(
            cond(&s2, AUTOMATIC_FAILOVER).last_transition_time,
            "T1",
            "kept while nothing says otherwise"
        );
        let s3 = next_status(
            Some(&s2),
            Some(2),
            &synced_fields(),
            Some(Failover::Manual),
            "T3",
        );
        assert!(s3.condition(AUTOMATIC_FAILOVER).is_none(), "{s3:?}");
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
