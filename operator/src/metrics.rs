//! The operator's Prometheus metrics, all prefixed `metaproxy_operator_`, with small fixed label
//! sets: reconcile results, failures by reason, znode writes by operation, reconcile latency,
//! leadership.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = [(&'static str, &'static str); 1];

pub struct Metrics {
    registry: Registry,
    reconciles: Family<Labels, Counter>,
    failures: Family<Labels, Counter>,
    znode_writes: Family<Labels, Counter>,
    pub reverts: Counter,
    pub lost_races: Counter,
    pub reconcile_seconds: Histogram,
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("metaproxy_operator");
        let reconciles = Family::<Labels, Counter>::default();
        let failures = Family::<Labels, Counter>::default();
        let znode_writes = Family::<Labels, Counter>::default();
        let reverts = Counter::default();
        let lost_races = Counter::default();
        // 1 ms .. ~16 s
        let reconcile_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let leader = Gauge::default();
        registry.register(
            "reconciles",
            "Reconciles run, by result (ok, error)",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Failed reconciles, by reason",
            failures.clone(),
        );
        registry.register(
            "znode_writes",
            "Writes to route znodes, by operation (create, set, delete)",
            znode_writes.clone(),
        );
        registry.register(
            "znode_reverts",
            "Route znodes found changed outside the operator and put back",
            reverts.clone(),
        );
        registry.register(
            "lost_races",
            "Compare-and-set writes that lost to a concurrent writer",
            lost_races.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time to reconcile one route",
            reconcile_seconds.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader lease (or needs none)",
            leader.clone(),
        );
        Metrics {
            registry,
            reconciles,
            failures,
            znode_writes,
            reverts,
            lost_races,
            reconcile_seconds,
            leader,
        }
    }

    pub fn reconciled(&self, ok: bool) {
        self.reconciles
            .get_or_create(&[("result", if ok { "ok" } else { "error" })])
            .inc();
    }

    pub fn failed(&self, reason: &'static str) {
        self.failures.get_or_create(&[("reason", reason)]).inc();
    }

    pub fn znode_written(&self, op: &'static str) {
        self.znode_writes.get_or_create(&[("op", op)]).inc();
    }

    pub fn znode_writes(&self, op: &'static str) -> u64 {
        self.znode_writes.get_or_create(&[("op", op)]).get()
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
