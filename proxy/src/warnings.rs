//! Warnings that can repeat once per request or per connection (a cluster down, a flood of bad
//! frames, ZooKeeper gone), rate-limited so that a fault does not become a log flood: per kind
//! and key (the cluster, say), the first is logged, then at most one line per interval, carrying
//! how many were suppressed since the last line. Every suppressed one is counted in
//! `metaproxy_log_lines_suppressed_total{kind}`.
//!
//! ```text
//!  t=0      cluster down    -> logged (suppressed=0)
//!  t=0..10s 90,000 more     -> counted only
//!  t=10.2s  one more        -> logged (suppressed=90000)
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::time::Instant;

/// What went wrong, as the `kind` label: a fixed, small set.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Kind {
    /// A query's cluster did not answer (key: the cluster).
    ClusterUnreachable,
    /// A table's record cannot be used (key: the table; records exist only in ZooKeeper).
    RouteInvalid,
    /// A table's route cannot be read now (no key: table names come from clients).
    RouteUnavailable,
    /// A client sent a frame that cannot be decoded (no key).
    BadFrame,
    /// A partial frame did not fit the budget (no key).
    FrameBudget,
    /// A connection beyond the cap (no key).
    ConnectionCap,
    /// `accept` failed (no key).
    AcceptFailed,
    /// A ZooKeeper read of a route failed (no key: table names come from clients).
    ZkReadFailed,
    /// A cluster's reply could not be decoded to strip its `hp_*` fields (key: the cluster).
    StripFailed,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::ClusterUnreachable => "cluster_unreachable",
            Kind::RouteInvalid => "route_invalid",
            Kind::RouteUnavailable => "route_unavailable",
            Kind::BadFrame => "bad_frame",
            Kind::FrameBudget => "frame_budget",
            Kind::ConnectionCap => "connection_cap",
            Kind::AcceptFailed => "accept_failed",
            Kind::ZkReadFailed => "zk_read_failed",
            Kind::StripFailed => "strip_failed",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

/// The last logged line of one kind and key, and what was suppressed since.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub logged_at: Instant,
    pub suppressed: u64,
}

/// Whether a warning is logged, and with how many suppressed before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Log { suppressed: u64 },
    Suppress,
}

/// The decision for one more warning, and the window after it. The first of a kind and key is
/// logged, as is the first one `interval` or more after the last line; the others are not.
pub fn decide(window: Option<Window>, now: Instant, interval: Duration) -> (Decision, Window) {
    match window {
        Some(w) if now.duration_since(w.logged_at) < interval => (
            Decision::Suppress,
            Window {
                suppressed: w.suppressed + 1,
                ..w
            },
        ),
        Some(w) => (
            Decision::Log {
                suppressed: w.suppressed,
            },
            Window {
                logged_at: now,
                suppressed: 0,
            },
        ),
        None => (
            Decision::Log { suppressed: 0 },
            Window {
                logged_at: now,
                suppressed: 0,
            },
        ),
    }
}

/// Kinds and keys followed at most: cluster names and table names with bad records come from
/// ZooKeeper, so this is plenty; past it, stale windows are dropped, and if none is stale the
/// warning is logged under no key at all.
const MAX_KEYS: usize = 1024;

/// The rate limiter, shared by every part of the proxy. Cheap to clone.
#[derive(Clone)]
pub struct Warnings {
    interval: Duration,
    windows: Arc<Mutex<HashMap<(Kind, String), Window>>>,
    pub suppressed: Family<KindLabel, Counter>,
}

impl Default for Warnings {
    fn default() -> Self {
        Warnings::new(Duration::from_secs(10))
    }
}

impl Warnings {
    pub fn new(interval: Duration) -> Self {
        Warnings {
            interval,
            windows: Arc::default(),
            suppressed: Family::default(),
        }
    }

    /// Whether to log a warning of `kind` about `key` now: `Some(n)` with the number suppressed
    /// since the last line, or `None` (then it is counted instead).
    pub fn admit(&self, kind: Kind, key: &str) -> Option<u64> {
        let now = Instant::now();
        let decision = {
            let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
            let mut key = (kind, key.to_owned());
            if !windows.contains_key(&key) && windows.len() >= MAX_KEYS {
                let interval = self.interval;
                windows.retain(|_, w| now.duration_since(w.logged_at) < interval);
                if windows.len() >= MAX_KEYS {
                    key.1.clear();
                }
            }
            let (decision, window) = decide(windows.get(&key).copied(), now, self.interval);
            windows.insert(key, window);
            decision
        };
        match decision {
            Decision::Log { suppressed } => Some(suppressed),
            Decision::Suppress => {
                self.suppressed
                    .get_or_create(&KindLabel { kind: kind.label() })
                    .inc();
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_then_one_per_interval_with_the_count_suppressed() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let interval = ms(10_000);
        // (ms after t0, decision) in order, one window.
        let steps = [
            (0, Decision::Log { suppressed: 0 }),
            (1, Decision::Suppress),
            (5_000, Decision::Suppress),
            (9_999, Decision::Suppress),
            (10_000, Decision::Log { suppressed: 3 }),
            (10_001, Decision::Suppress),
            (30_000, Decision::Log { suppressed: 1 }),
            (45_000, Decision::Log { suppressed: 0 }),
        ];
        let mut window = None;
        for (at, want) in steps {
            let (got, next) = decide(window, t0 + ms(at), interval);
            assert_eq!(got, want, "at {at} ms");
            window = Some(next);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn kinds_and_keys_are_limited_apart_and_suppressions_counted() {
        let w = Warnings::new(Duration::from_secs(10));
        let count = |kind: Kind| {
            w.suppressed
                .get_or_create(&KindLabel { kind: kind.label() })
                .get()
        };
        assert_eq!(w.admit(Kind::ClusterUnreachable, "a"), Some(0));
        assert_eq!(
            w.admit(Kind::ClusterUnreachable, "b"),
            Some(0),
            "another key"
        );
        assert_eq!(w.admit(Kind::BadFrame, "a"), Some(0), "another kind");
        for _ in 0..1000 {
            assert_eq!(w.admit(Kind::ClusterUnreachable, "a"), None);
        }
        assert_eq!(count(Kind::ClusterUnreachable), 1000);
        assert_eq!(count(Kind::BadFrame), 0);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(w.admit(Kind::ClusterUnreachable, "a"), Some(1000));
    }

    #[tokio::test(start_paused = true)]
    async fn the_keys_followed_are_bounded() {
        let w = Warnings::new(Duration::from_secs(10));
        for i in 0..MAX_KEYS {
            assert_eq!(w.admit(Kind::RouteInvalid, &format!("t{i}")), Some(0));
        }
        // Full and nothing stale: one more key shares the keyless window.
        assert_eq!(w.admit(Kind::RouteInvalid, "new"), Some(0));
        assert_eq!(w.admit(Kind::RouteInvalid, "newer"), None);
        // Once the windows are stale they make room.
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(w.admit(Kind::RouteInvalid, "newest"), Some(0));
        assert!(w.windows.lock().expect("lock").len() <= 2);
    }
}
