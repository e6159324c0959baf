//! The operator's Prometheus metrics, all prefixed `metaproxy_operator_`, with small fixed label
//! sets: reconcile results, failures by reason, znode writes by operation, reconcile latency,
//! leadership; per probed cluster (as many as the routes name) whether it is up, its failed
//! probes in a row, probe latency and counts; per observer whether it answers; flips,
//! switchovers and their calls.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = [(&'static str, &'static str); 1];
/// A cluster's or an observer zone's name.
type Named = [(&'static str, String); 1];

fn probe_histogram() -> Histogram {
    // 1 ms .. ~8 s
    Histogram::new(exponential_buckets(0.001, 2.0, 14))
}

pub struct Metrics {
    registry: Registry,
    reconciles: Family<Labels, Counter>,
    failures: Family<Labels, Counter>,
    znode_writes: Family<Labels, Counter>,
    pub reverts: Counter,
    pub lost_races: Counter,
    pub orphans_deleted: Counter,
    pub reconcile_seconds: Histogram,
    pub leader: Gauge,
    cluster_up: Family<Named, Gauge>,
    cluster_failures: Family<Named, Gauge>,
    probe_seconds: Family<Named, Histogram, fn() -> Histogram>,
    probes: Family<[(&'static str, String); 2], Counter>,
    observer_up: Family<Named, Gauge>,
    flips: Family<Labels, Counter>,
    switchovers: Family<Labels, Counter>,
    switchover_calls: Family<[(&'static str, &'static str); 2], Counter>,
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
        let orphans_deleted = Counter::default();
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
            "routes_dir_orphans_deleted",
            "Records of route files removed while the operator was down, deleted at start-up or \
             resync (routes-directory mode)",
            orphans_deleted.clone(),
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
        let cluster_up = Family::<Named, Gauge>::default();
        let cluster_failures = Family::<Named, Gauge>::default();
        let probe_seconds =
            Family::<Named, Histogram, fn() -> Histogram>::new_with_constructor(probe_histogram);
        let probes = Family::<[(&'static str, String); 2], Counter>::default();
        let observer_up = Family::<Named, Gauge>::default();
        let flips = Family::<Labels, Counter>::default();
        let switchovers = Family::<Labels, Counter>::default();
        let switchover_calls = Family::<[(&'static str, &'static str); 2], Counter>::default();
        registry.register(
            "cluster_up",
            "1 while the cluster's last probe succeeded (a leader answered query_config in time), by cluster",
            cluster_up.clone(),
        );
        registry.register(
            "cluster_probe_failures",
            "Failed probes in a row, by cluster",
            cluster_failures.clone(),
        );
        registry.register(
            "probe_duration_seconds",
            "Time a probe took, by cluster",
            probe_seconds.clone(),
        );
        registry.register(
            "probes",
            "Probes sent, by cluster and result (ok, failed)",
            probes.clone(),
        );
        registry.register(
            "observer_up",
            "1 while the observer (a zone's proxies, GET /clusters) answered its last request, by zone",
            observer_up.clone(),
        );
        registry.register(
            "flips",
            "Route records moved to the other cluster, by kind (planned, automatic)",
            flips.clone(),
        );
        registry.register(
            "switchovers",
            "Switchovers finished, by result (completed, aborted)",
            switchovers.clone(),
        );
        registry.register(
            "switchover_calls",
            "Calls to clusters made by switchovers, by call (deny, lift, progress) and result (ok, failed)",
            switchover_calls.clone(),
        );
        // Zero until they happen, rather than absent.
        for kind in ["planned", "automatic"] {
            let _ = flips.get_or_create(&[("kind", kind)]);
        }
        for result in ["completed", "aborted"] {
            let _ = switchovers.get_or_create(&[("result", result)]);
        }
        Metrics {
            registry,
            reconciles,
            failures,
            znode_writes,
            reverts,
            lost_races,
            orphans_deleted,
            reconcile_seconds,
            leader,
            cluster_up,
            cluster_failures,
            probe_seconds,
            probes,
            observer_up,
            flips,
            switchovers,
            switchover_calls,
        }
    }

    /// One probe of `cluster`: its result, how long it took, and the failures in a row since.
    pub fn probed(&self, cluster: &str, ok: bool, seconds: f64, failures_in_a_row: u32) {
        let name = [("cluster", cluster.to_owned())];
        self.cluster_up.get_or_create(&name).set(i64::from(ok));
        self.cluster_failures
            .get_or_create(&name)
            .set(i64::from(failures_in_a_row));
        self.probe_seconds.get_or_create(&name).observe(seconds);
        self.probes
            .get_or_create(&[
                ("cluster", cluster.to_owned()),
                ("result", if ok { "ok" } else { "failed" }.to_owned()),
            ])
            .inc();
    }

    /// Forgets a cluster no route names any more.
    pub fn forget_cluster(&self, cluster: &str) {
        let name = [("cluster", cluster.to_owned())];
        self.cluster_up.remove(&name);
        self.cluster_failures.remove(&name);
        self.probe_seconds.remove(&name);
        for result in ["ok", "failed"] {
            self.probes.remove(&[
                ("cluster", cluster.to_owned()),
                ("result", result.to_owned()),
            ]);
        }
    }

    pub fn observer_answered(&self, zone: &str, ok: bool) {
        self.observer_up
            .get_or_create(&[("zone", zone.to_owned())])
            .set(i64::from(ok));
    }

    pub fn flipped(&self, automatic: bool) {
        self.flips
            .get_or_create(&[("kind", if automatic { "automatic" } else { "planned" })])
            .inc();
    }

    pub fn flips(&self, automatic: bool) -> u64 {
        self.flips
            .get_or_create(&[("kind", if automatic { "automatic" } else { "planned" })])
            .get()
    }

    pub fn switchover_finished(&self, completed: bool) {
        self.switchovers
            .get_or_create(&[("result", if completed { "completed" } else { "aborted" })])
            .inc();
    }

    pub fn switchover_call(&self, call: &'static str, ok: bool) {
        self.switchover_calls
            .get_or_create(&[("call", call), ("result", if ok { "ok" } else { "failed" })])
            .inc();
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
