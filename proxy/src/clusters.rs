//! What real traffic says of each cluster the proxy forwards to, for `GET /clusters`: the
//! outcome of every upstream call (one per distinct query in flight: coalesced requests share
//! one), kept per cluster name. The operator reads it as failover evidence from this proxy's
//! availability zone ("recent failures and no success within the window"), so a cluster stays
//! listed for a while after the last route to it went.
//!
//! ```text
//!  Upstreams: group.call(...) done ─► ClusterHealth::record(cluster, meta addrs, ok | error)
//!  GET /clusters ─► ClusterHealth::view(clusters routed now, leaders)
//!                   listed: routed now, or called within the history window
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::time::Instant;

/// Clusters followed at most; past it, those neither routed nor recently called go first.
const MAX_CLUSTERS: usize = 1024;

/// A moment, on both clocks: the wall clock to show, the monotonic one to measure ages.
#[derive(Clone, Copy, Debug)]
struct At {
    wall: SystemTime,
    mono: Instant,
}

impl At {
    fn now() -> Self {
        At {
            wall: SystemTime::now(),
            mono: Instant::now(),
        }
    }
}

#[derive(Clone, Debug)]
struct Health {
    meta_addrs: Vec<String>,
    calls: u64,
    failures: u64,
    consecutive_failures: u64,
    last_call: At,
    last_success: Option<At>,
    last_error: Option<(String, At)>,
}

/// One row of `GET /clusters`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClusterView {
    pub cluster: String,
    /// The MetaServers of the cluster's last call (or of its route, if never called).
    pub meta_addrs: Vec<String>,
    /// Whether a route uses the cluster now.
    pub routed: bool,
    /// The MetaServer last known to lead the cluster, while routed.
    pub leader: Option<String>,
    pub calls: u64,
    pub failures: u64,
    /// Failed calls since the last success.
    pub consecutive_failures: u64,
    /// RFC 3339, UTC.
    pub last_success: Option<String>,
    pub last_success_seconds_ago: Option<f64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    pub last_error_seconds_ago: Option<f64>,
}

/// A cluster a route uses now, as the upstream pool knows it.
#[derive(Clone, Debug)]
pub struct Routed {
    pub cluster: String,
    pub meta_addrs: Vec<String>,
    pub leader: String,
}

/// The health of every cluster called recently. Cheap to clone.
#[derive(Clone)]
pub struct ClusterHealth {
    history: Duration,
    clusters: Arc<Mutex<HashMap<String, Health>>>,
}

impl ClusterHealth {
    /// Keeps a cluster that no route uses any more for `history` after its last call.
    pub fn new(history: Duration) -> Self {
        ClusterHealth {
            history,
            clusters: Arc::default(),
        }
    }

    pub fn history(&self) -> Duration {
        self.history
    }

    /// Records the outcome of one upstream call to `cluster`, whose group has `meta_count`
    /// MetaServers. A group's MetaServers only ever grow in number, so `meta_addrs` is asked for
    /// their addresses only when that number changed (or the cluster is new here): this runs on
    /// every upstream call.
    pub fn record(
        &self,
        cluster: &str,
        meta_count: usize,
        meta_addrs: impl FnOnce() -> Vec<String>,
        outcome: Result<(), String>,
    ) {
        let now = At::now();
        let mut clusters = self.clusters.lock().unwrap_or_else(|p| p.into_inner());
        let known = clusters.contains_key(cluster);
        if !known && clusters.len() >= MAX_CLUSTERS {
            let history = self.history;
            clusters.retain(|_, h| now.mono.duration_since(h.last_call.mono) < history);
            if clusters.len() >= MAX_CLUSTERS {
                let oldest = clusters
                    .iter()
                    .min_by_key(|(_, h)| h.last_call.mono)
                    .map(|(name, _)| name.clone());
                if let Some(oldest) = oldest {
                    clusters.remove(&oldest);
                }
            }
        }
        if !known {
            clusters.insert(
                cluster.to_owned(),
                Health {
                    meta_addrs: Vec::new(),
                    calls: 0,
                    failures: 0,
                    consecutive_failures: 0,
                    last_call: now,
                    last_success: None,
                    last_error: None,
                },
            );
        }
        let Some(health) = clusters.get_mut(cluster) else {
            return;
        };
        if !known || health.meta_addrs.len() != meta_count {
            health.meta_addrs = meta_addrs();
        }
        health.calls += 1;
        health.last_call = now;
        match outcome {
            Ok(()) => {
                health.consecutive_failures = 0;
                health.last_success = Some(now);
            }
            Err(e) => {
                health.failures += 1;
                health.consecutive_failures += 1;
                health.last_error = Some((e, now));
            }
        }
    }

    /// The rows of `GET /clusters`, by cluster name: every cluster `routed` now, and those called
    /// within the history window. Older ones are forgotten.
    pub fn view(&self, routed: &[Routed]) -> Vec<ClusterView> {
        let now = Instant::now();
        let mut clusters = self.clusters.lock().unwrap_or_else(|p| p.into_inner());
        let history = self.history;
        clusters.retain(|name, h| {
            now.duration_since(h.last_call.mono) < history
                || routed.iter().any(|r| &r.cluster == name)
        });
        let ago = |at: &At| now.duration_since(at.mono).as_secs_f64();
        let rfc3339 = |at: &At| humantime::format_rfc3339_millis(at.wall).to_string();
        let mut rows: Vec<ClusterView> = clusters
            .iter()
            .map(|(name, h)| {
                let route = routed.iter().find(|r| &r.cluster == name);
                ClusterView {
                    cluster: name.clone(),
                    meta_addrs: h.meta_addrs.clone(),
                    routed: route.is_some(),
                    leader: route.map(|r| r.leader.clone()),
                    calls: h.calls,
                    failures: h.failures,
                    consecutive_failures: h.consecutive_failures,
                    last_success: h.last_success.as_ref().map(rfc3339),
                    last_success_seconds_ago: h.last_success.as_ref().map(ago),
                    last_error: h.last_error.as_ref().map(|(e, _)| e.clone()),
                    last_error_at: h.last_error.as_ref().map(|(_, at)| rfc3339(at)),
                    last_error_seconds_ago: h.last_error.as_ref().map(|(_, at)| ago(at)),
                }
            })
            .collect();
        for r in routed {
            if !rows.iter().any(|row| row.cluster == r.cluster) {
                rows.push(ClusterView {
                    cluster: r.cluster.clone(),
                    meta_addrs: r.meta_addrs.clone(),
                    routed: true,
                    leader: Some(r.leader.clone()),
                    calls: 0,
                    failures: 0,
                    consecutive_failures: 0,
                    last_success: None,
                    last_success_seconds_ago: None,
                    last_error: None,
                    last_error_at: None,
                    last_error_seconds_ago: None,
                });
            }
        }
        rows.sort_by(|a, b| a.cluster.cmp(&b.cluster));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routed(cluster: &str) -> Routed {
        Routed {
            cluster: cluster.into(),
            meta_addrs: vec!["m:1".into()],
            leader: "m:1".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn calls_make_the_health_of_a_cluster() {
        let h = ClusterHealth::new(Duration::from_secs(600));
        let addrs = || vec!["m:1".to_owned()];
        h.record("a", 1, addrs, Ok(()));
        tokio::time::advance(Duration::from_secs(5)).await;
        h.record("a", 1, addrs, Err("timed out".into()));
        tokio::time::advance(Duration::from_secs(1)).await;
        h.record("a", 1, addrs, Err("refused".into()));
        tokio::time::advance(Duration::from_secs(2)).await;
        let rows = h.view(&[routed("a")]);
        assert_eq!(rows.len(), 1);
        let a = &rows[0];
        assert_eq!(
            (a.calls, a.failures, a.consecutive_failures, a.routed),
            (3, 2, 2, true)
        );
        assert_eq!(a.last_success_seconds_ago, Some(8.0));
        assert_eq!(a.last_error.as_deref(), Some("refused"));
        assert_eq!(a.last_error_seconds_ago, Some(2.0));
        assert!(
            a.last_success.as_deref().is_some_and(|t| t.ends_with('Z')),
            "{a:?}"
        );

        h.record("a", 1, addrs, Ok(()));
        let a = &h.view(&[])[0];
        assert_eq!((a.consecutive_failures, a.failures), (0, 2));
        assert_eq!(
            a.last_error.as_deref(),
            Some("refused"),
            "kept for evidence"
        );
    }

    #[test]
    fn the_addresses_are_read_again_only_when_their_number_changed() {
        let h = ClusterHealth::new(Duration::from_secs(600));
        let reads = std::cell::Cell::new(0);
        let addrs = |n: usize| {
            reads.set(reads.get() + 1);
            (1..=n).map(|i| format!("m:{i}")).collect::<Vec<_>>()
        };
        // (MetaServers in the group, reads so far, addresses shown)
        let cases = [(2, 1, 2), (2, 1, 2), (3, 2, 3), (3, 2, 3)];
        for (count, want_reads, want_shown) in cases {
            h.record("a", count, || addrs(count), Ok(()));
            assert_eq!(reads.get(), want_reads, "{count} metas");
            assert_eq!(h.view(&[])[0].meta_addrs.len(), want_shown);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_cluster_stays_listed_for_the_history_after_its_last_route_went() {
        let h = ClusterHealth::new(Duration::from_secs(600));
        h.record("gone", 1, || vec!["m:1".into()], Err("refused".into()));
        // Routed but never called: listed, with nothing known yet.
        let rows = h.view(&[routed("new")]);
        let names: Vec<(&str, bool)> = rows
            .iter()
            .map(|r| (r.cluster.as_str(), r.routed))
            .collect();
        assert_eq!(names, [("gone", false), ("new", true)]);
        assert_eq!(rows[1].calls, 0);

        tokio::time::advance(Duration::from_secs(599)).await;
        assert_eq!(h.view(&[]).len(), 1, "still within the window");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(h.view(&[]).is_empty(), "forgotten after it");
        // A routed cluster is never forgotten, however old its last call.
        h.record("kept", 0, Vec::new, Ok(()));
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(h.view(&[routed("kept")])[0].calls, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_clusters_followed_are_bounded() {
        let h = ClusterHealth::new(Duration::from_secs(600));
        for i in 0..MAX_CLUSTERS + 10 {
            h.record(&format!("c{i}"), 0, Vec::new, Ok(()));
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        let rows = h.view(&[]);
        assert_eq!(rows.len(), MAX_CLUSTERS);
        assert!(!rows.iter().any(|r| r.cluster == "c0"), "the oldest went");
    }
}
