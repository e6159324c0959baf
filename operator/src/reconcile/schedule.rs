//! When a route is reconciled again: the policy both route sources (the Kubernetes controller
//! and the routes directory) follow, written once. Pure; every rule is a row of the tables in
//! the tests below.
//!
//! ```text
//!  znode changed (drift watch) ──► wakes the routes that claim that table in that zone
//!  reconcile settled ──► Synced: again after `resync`
//!                        Yielded (another route owns the table): again after `conflict-recheck`
//!                        Failed: again after a backoff, 1 s doubling to 60 s, reset by a success
//! ```

use std::time::Duration;

use crate::reconcile::decide::Claim;

/// The periods of the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Between two reconciles of a route that is where it should be.
    pub resync: Duration,
    /// Between two looks of a route that yields to another one.
    pub conflict_recheck: Duration,
}

/// A request to reconcile the routes of a table (`None`: every table) in a zone: its znode
/// changed, the session reconnected, or the route that held it let it go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Touched {
    pub zone: String,
    pub table: Option<String>,
}

/// Whether `touched` wakes the route whose claim is `claim`.
pub fn wakes(touched: &Touched, claim: &Claim) -> bool {
    claim.zone == touched.zone
        && touched
            .table
            .as_ref()
            .is_none_or(|table| *table == claim.table)
}

/// How a reconcile ended, as far as its schedule goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// The znode holds the route's record, or the spec is invalid (only an edit changes that).
    Synced,
    /// Another route owns the table.
    Yielded,
    /// ZooKeeper or the API failed: retry with backoff.
    Failed,
}

/// When to reconcile again after a reconcile that `settled`, with `failures` failures in a row
/// before it; and the failures in a row after it.
pub fn next(settled: Settled, failures: u32, timing: &Timing) -> (Duration, u32) {
    match settled {
        Settled::Synced => (timing.resync, 0),
        Settled::Yielded => (timing.conflict_recheck, 0),
        Settled::Failed => (backoff(failures), failures.saturating_add(1)),
    }
}

/// The wait after the failure that follows `failures` failures in a row: 1 s doubling to 60 s.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(6)).min(Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMING: Timing = Timing {
        resync: Duration::from_secs(60),
        conflict_recheck: Duration::from_secs(10),
    };

    #[test]
    fn what_comes_after_a_reconcile() {
        let s = Duration::from_secs;
        // (settled, failures before, wait, failures after)
        let table = [
            (Settled::Synced, 0, s(60), 0),
            (Settled::Synced, 5, s(60), 0),
            (Settled::Yielded, 0, s(10), 0),
            (Settled::Yielded, 3, s(10), 0),
            (Settled::Failed, 0, s(1), 1),
            (Settled::Failed, 1, s(2), 2),
            (Settled::Failed, 3, s(8), 4),
            (Settled::Failed, 5, s(32), 6),
            (Settled::Failed, 6, s(60), 7),
            (Settled::Failed, 40, s(60), 41),
            (Settled::Failed, u32::MAX, s(60), u32::MAX),
        ];
        for (settled, before, wait, after) in table {
            assert_eq!(
                next(settled, before, &TIMING),
                (wait, after),
                "{settled:?} after {before} failures"
            );
        }
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(6), Duration::from_secs(60));
        assert_eq!(backoff(40), Duration::from_secs(60));
    }

    #[test]
    fn which_routes_a_change_wakes() {
        let claim = |zone: &str, table: &str| Claim {
            id: "r".into(),
            created_ms: 0,
            zone: zone.into(),
            table: table.into(),
        };
        let touched = |zone: &str, table: Option<&str>| Touched {
            zone: zone.into(),
            table: table.map(String::from),
        };
        // (touched, claim, wakes)
        let table = [
            (touched("az1", Some("t")), claim("az1", "t"), true),
            (touched("az1", Some("t")), claim("az1", "u"), false),
            (touched("az1", Some("t")), claim("az2", "t"), false),
            (touched("az1", None), claim("az1", "u"), true),
            (touched("az1", None), claim("az2", "u"), false),
        ];
        for (t, c, want) in table {
            assert_eq!(wakes(&t, &c), want, "{t:?} {c:?}");
        }
    }
}
