//! Update status: what a reconcile found and did, as the route's status and its three conditions
//! (`Ready`, `RouteSynced`, `Conflict`). Pure: the time is passed in.

use crate::crd::{Condition, PegasusTableRouteStatus};

pub const READY: &str = "Ready";
pub const ROUTE_SYNCED: &str = "RouteSynced";
pub const CONFLICT: &str = "Conflict";

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

/// The status after `outcome`, keeping transition times of conditions that did not change.
pub fn next_status(
    prev: Option<&PegasusTableRouteStatus>,
    generation: Option<i64>,
    outcome: &Outcome,
    now: &str,
) -> PegasusTableRouteStatus {
    let mut status = prev.cloned().unwrap_or_default();
    status.observed_generation = generation;
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
            // Only the owner of a table ever talks to ZooKeeper, so there is no conflict. The
            // last known znode and version stay: they are still the best knowledge.
            (
                ("False", reason, message.clone()),
                ("False", reason::NO_CONFLICT, String::new()),
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
    [READY, ROUTE_SYNCED, CONFLICT]
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
        let s1 = next_status(None, Some(1), &synced, "T1");
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
        let s2 = next_status(Some(&s1), Some(1), &down, "T2");
        assert_eq!(cond(&s2, READY).status, "False");
        assert_eq!(cond(&s2, READY).reason, "ZooKeeperUnavailable");
        assert_eq!(cond(&s2, READY).last_transition_time, "T2");
        assert_eq!(
            cond(&s2, CONFLICT).last_transition_time,
            "T1",
            "unchanged condition keeps its time"
        );
        assert_eq!(s2.znode_version, Some(0), "last known version is kept");

        let s3 = next_status(Some(&s2), Some(2), &synced_at(1), "T3");
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
        let s0 = next_status(None, Some(1), &synced_fields(), "T0");
        let y = Outcome::Yielded {
            zone: "az1".into(),
            owner: "ns/a".into(),
            message: "ns/a is older".into(),
        };
        let s = next_status(Some(&s0), Some(1), &y, "T1");
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
                "T",
            );
            assert_eq!(cond(&s, READY).reason, r);
            assert_eq!(cond(&s, ROUTE_SYNCED).message, "why");
            assert_eq!(cond(&s, CONFLICT).status, "False");
        }
    }
}
