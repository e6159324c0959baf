//! Decide: what to do to a table's znode, from the validated spec ([`Target`] or [`Removal`]),
//! the znode as read, the route's status and the other routes' claims. Pure; every branch is a
//! row of `fixtures/decide.yaml`.
//!
//! ```text
//!  claims + znode's owner ──► owner of the table: this route, or Yield
//!  target + health + now  ──► the active cluster (failover) and its record
//!  record + znode + status ──► plan: InSync | Create | Replace | Delete | AlreadyGone
//!                                    | LeaveForeign | Yield
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
//! Health and the clock are inputs already, for automatic failover; today they decide nothing:
//! the spec's `active` cluster is written in both modes, and [`Failover::AutomaticNotActive`]
//! says so in the status.

use metaproxy::route::RouteRecord;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::crd::{ActiveCluster, FailoverMode, PegasusTableRouteStatus};
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

/// The clusters' health as probes and observers see it. Nothing yet: automatic failover will
/// fill it in, and [`decide`] already takes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {}

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
    /// For failover windows and cooldowns (unused today).
    pub now: Instant,
}

/// What the failover policy makes of the route.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Failover {
    /// `failover.mode: Manual`: the spec's `active` decides.
    #[default]
    Manual,
    /// `failover.mode: Automatic`, which this operator does not carry out yet: the spec's
    /// `active` decides, and the status says automatic failover is not active.
    AutomaticNotActive,
}

/// What [`decide`] chose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub plan: Plan,
    /// The cluster the record routes to.
    pub active: ActiveCluster,
    pub failover: Failover,
}

/// What to do to the znode.
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

/// The failover policy's verdict. Health and time will count here; today only the mode does.
pub fn failover(target: &Target, _health: &Health, _now: Instant) -> Failover {
    match target.mode {
        FailoverMode::Manual => Failover::Manual,
        FailoverMode::Automatic => Failover::AutomaticNotActive,
    }
}

/// What to do for a route that is kept: write the active cluster's record if the route owns
/// the table, else yield.
pub fn decide(target: &Target, inputs: &Inputs<'_>) -> Decision {
    let failover = failover(target, inputs.health, inputs.now);
    // Both modes route to the spec's choice until automatic failover exists.
    let active = target.active;
    let plan = match owner(inputs.me, inputs.others, inputs.znode) {
        Ownership { owner, holds_znode } if owner.id != inputs.me.id => Plan::Yield {
            owner: owner.id.clone(),
            holds_znode,
        },
        _ => write(
            target.record(active),
            &inputs.me.id,
            inputs.znode,
            last_version(inputs.status, &target.path),
        ),
    };
    Decision {
        plan,
        active,
        failover,
    }
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

fn write(record: &RouteRecord, me: &str, znode: Option<&Znode>, last: Option<i32>) -> Plan {
    let want = record::to_json(record, me);
    let Some(z) = znode else {
        return Plan::Create { data: text(want) };
    };
    if z.data == want {
        return Plan::InSync { version: z.version };
    }
    let took_over_from = record::owner(&z.data).filter(|o| o != me);
    Plan::Replace {
        data: text(want),
        version: z.version,
        found: excerpt(&z.data),
        drift: took_over_from.is_none() && last != Some(z.version),
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
        #[serde(default)]
        znode: Option<ZnodeFixture>,
        /// The status's version of the znode.
        #[serde(default)]
        last_version: Option<i32>,
        expect: Plan,
        #[serde(default)]
        expect_failover: Failover,
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

    #[test]
    fn decide_fixtures() {
        let cases: Vec<Case> =
            serde_saphyr::from_str(include_str!("fixtures/decide.yaml")).expect("fixtures parse");
        assert!(cases.len() >= 25, "the fixture file lost its cases");
        for case in cases {
            let target = Target {
                zone: case.me.zone.clone(),
                table: case.me.table.clone(),
                path: format!("/r/{}", case.me.table),
                primary: case.record.record(),
                backup: case.backup.as_ref().map(RecordFixture::record),
                active: case.active,
                mode: case.mode,
            };
            let znode = case.znode.map(|z| Znode {
                data: z.data.into_bytes(),
                version: z.version,
            });
            let status = PegasusTableRouteStatus {
                znode: case.last_version.map(|_| target.path.clone()),
                znode_version: case.last_version,
                ..PegasusTableRouteStatus::default()
            };
            let inputs = Inputs {
                me: &case.me,
                others: &case.others,
                znode: znode.as_ref(),
                status: Some(&status),
                health: &Health::default(),
                now: Instant::now(),
            };
            let got = if case.deleting {
                decide_removal(&Removal::of(&target), &inputs)
            } else {
                let decision = decide(&target, &inputs);
                assert_eq!(decision.failover, case.expect_failover, "{}", case.name);
                assert_eq!(decision.active, case.active, "{}", case.name);
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
