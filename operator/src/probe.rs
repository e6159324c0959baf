//! Health: each distinct cluster that an `Automatic` route names is probed once per interval,
//! however many routes name it (the shortest interval they ask for); the observers are asked
//! for their view as often. The reconciler reads the result ([`Prober::health`]) when it decides,
//! and the prober wakes the routes of a cluster whose probe failed or changed its mind, so that
//! a failover is decided as soon as the window is complete, not at the next resync.
//!
//! ```text
//!  reconcile (Automatic route) ──► register(route, zone, table, primary, backup, interval)
//!  run(stop):  every interval per cluster ──► ClusterCalls::probe(cluster, table, deadline)
//!                 ──► Probes::record ──► metrics ──► wake the routes naming the cluster
//!              every interval ──► GET /clusters of each observer ──► views
//!  decide ◄── health(primary, backup): both clusters' Probes, each observer's view of the primary
//! ```
//!
//! Only a running prober probes: in Kubernetes mode, only the leader's (it runs for the
//! leadership term and starts with no history, so a new leader watches a whole window before it
//! fails anything over). The table a cluster is probed with is the smallest name among the
//! routes naming it, so every replica and restart probes the same one.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use metaproxy::route::RouteRecord;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::clock::Clock;
use crate::clusters::ClusterCalls;
use crate::metrics::Metrics;
use crate::observers::{Observer, ObserverClient, View};
use crate::reconcile::decide::Health;
use crate::reconcile::failover::Probes;
use crate::reconcile::schedule::Touched;

/// The longest a probe may take, whatever the interval.
const PROBE_LIMIT: Duration = Duration::from_secs(10);

/// What a route asks of the prober.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    pub zone: String,
    pub table: String,
    pub primary: RouteRecord,
    pub backup: Option<RouteRecord>,
    pub interval: Duration,
}

impl Registration {
    fn clusters(&self) -> impl Iterator<Item = &RouteRecord> {
        std::iter::once(&self.primary).chain(self.backup.as_ref())
    }
}

struct Entry {
    probes: Probes,
    interval: Duration,
    table: String,
    due: Instant,
    in_flight: bool,
}

#[derive(Default)]
struct Inner {
    routes: BTreeMap<String, Registration>,
    clusters: HashMap<RouteRecord, Entry>,
    views: Vec<Option<View>>,
    observe_due: Option<Instant>,
    running: bool,
}

/// Probes the clusters of the registered routes, and asks the observers.
pub struct Prober {
    calls: Arc<dyn ClusterCalls>,
    observers: Vec<Observer>,
    http: ObserverClient,
    clock: Clock,
    metrics: Arc<Metrics>,
    inner: Mutex<Inner>,
    changed: Notify,
}

struct Probed {
    cluster: RouteRecord,
    started: Instant,
    took: Duration,
    outcome: Result<(), String>,
}

impl Prober {
    pub fn new(
        calls: Arc<dyn ClusterCalls>,
        observers: Vec<Observer>,
        clock: Clock,
        metrics: Arc<Metrics>,
    ) -> Self {
        Prober {
            calls,
            observers,
            http: ObserverClient::default(),
            clock,
            metrics,
            inner: Mutex::new(Inner::default()),
            changed: Notify::new(),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn observers(&self) -> &[Observer] {
        &self.observers
    }

    /// Starts (or keeps) probing `route`'s clusters.
    pub fn register(&self, route: &str, registration: Registration) {
        let mut inner = self.inner();
        if inner.routes.get(route) == Some(&registration) {
            return;
        }
        inner.routes.insert(route.to_owned(), registration);
        self.rebuild(&mut inner);
        drop(inner);
        self.changed.notify_one();
    }

    /// Stops probing for `route`.
    pub fn unregister(&self, route: &str) {
        let mut inner = self.inner();
        if inner.routes.remove(route).is_some() {
            self.rebuild(&mut inner);
            drop(inner);
            self.changed.notify_one();
        }
    }

    /// The clusters from the registrations: each once, at the shortest interval asked, with the
    /// smallest table name. History is kept for clusters that stay.
    fn rebuild(&self, inner: &mut Inner) {
        let mut wanted: HashMap<RouteRecord, (Duration, String)> = HashMap::new();
        for r in inner.routes.values() {
            for c in r.clusters() {
                let e = wanted
                    .entry(c.clone())
                    .or_insert((r.interval, r.table.clone()));
                e.0 = e.0.min(r.interval);
                if r.table < e.1 {
                    e.1 = r.table.clone();
                }
            }
        }
        let gone: Vec<RouteRecord> = inner
            .clusters
            .keys()
            .filter(|c| !wanted.contains_key(*c))
            .cloned()
            .collect();
        for c in gone {
            inner.clusters.remove(&c);
            if !wanted.keys().any(|w| w.cluster == c.cluster) {
                self.metrics.forget_cluster(&c.cluster);
            }
        }
        let now = Instant::now();
        for (c, (interval, table)) in wanted {
            let e = inner.clusters.entry(c).or_insert_with(|| Entry {
                probes: Probes::default(),
                interval,
                table: table.clone(),
                due: now,
                in_flight: false,
            });
            if interval < e.interval {
                e.due = e.due.min(now + interval);
            }
            e.interval = interval;
            e.table = table;
        }
    }

    /// What the probes and the observers say of a route's clusters.
    pub fn health(&self, primary: &RouteRecord, backup: Option<&RouteRecord>) -> Health {
        let inner = self.inner();
        let probes = |c: &RouteRecord| {
            inner
                .clusters
                .get(c)
                .map(|e| e.probes.clone())
                .filter(|p| p.probes > 0)
        };
        let now = Instant::now();
        let observers = self
            .observers
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let seen = match inner.views.get(i).and_then(Option::as_ref) {
                    Some(view) => view.observed(&primary.cluster, now),
                    None => {
                        crate::reconcile::failover::Observed::Unreachable("not asked yet".into())
                    }
                };
                (o.zone.clone(), seen)
            })
            .collect();
        Health {
            primary: probes(primary),
            backup: backup.and_then(probes),
            observers,
        }
    }

    /// Probes until `stop` turns true, waking the routes whose clusters' health moves. Starts
    /// with no history.
    pub async fn run(
        self: Arc<Self>,
        wake: mpsc::UnboundedSender<Touched>,
        mut stop: watch::Receiver<bool>,
    ) {
        {
            let mut inner = self.inner();
            let now = Instant::now();
            for e in inner.clusters.values_mut() {
                e.probes = Probes::default();
                e.due = now;
                e.in_flight = false;
            }
            inner.views = vec![None; self.observers.len()];
            inner.observe_due = Some(now);
            inner.running = true;
        }
        info!(observers = self.observers.len(), "probing clusters");
        let mut probes: JoinSet<Probed> = JoinSet::new();
        let mut asks: JoinSet<Vec<View>> = JoinSet::new();
        loop {
            let next = self.launch(&mut probes, &mut asks);
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                () = self.changed.notified() => {}
                Some(done) = probes.join_next() => {
                    if let Ok(p) = done {
                        self.probed(p, &wake);
                    }
                }
                Some(done) = asks.join_next() => {
                    if let Ok(views) = done {
                        self.observed(views, &wake);
                    }
                }
                () = sleep_until(next) => {}
            }
        }
        probes.abort_all();
        asks.abort_all();
        self.inner().running = false;
        info!("probing stopped");
    }

    /// Starts the probes and the observer round that are due; the next time something is.
    fn launch(
        &self,
        probes: &mut JoinSet<Probed>,
        asks: &mut JoinSet<Vec<View>>,
    ) -> Option<Instant> {
        let now = Instant::now();
        let mut inner = self.inner();
        let mut next: Option<Instant> = None;
        let mut earliest = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        for (cluster, e) in inner.clusters.iter_mut() {
            if e.in_flight {
                continue;
            }
            if e.due <= now {
                e.in_flight = true;
                // Never sooner than an interval after this one started (a late tick does not
                // bunch probes up).
                e.due = now + e.interval;
                let calls = self.calls.clone();
                let cluster = cluster.clone();
                let table = e.table.clone();
                let deadline = now + e.interval.min(PROBE_LIMIT);
                probes.spawn(async move {
                    let started = Instant::now();
                    let outcome = calls.probe(&cluster, &table, deadline).await;
                    Probed {
                        cluster,
                        started,
                        took: started.elapsed(),
                        outcome,
                    }
                });
            } else {
                earliest(e.due);
            }
        }
        let interval = inner.routes.values().map(|r| r.interval).min();
        if let (Some(interval), false) = (interval, self.observers.is_empty()) {
            match inner.observe_due {
                Some(due) if due <= now && asks.is_empty() => {
                    inner.observe_due = Some(now + interval);
                    let observers = self.observers.clone();
                    let http = self.http.clone();
                    asks.spawn(async move {
                        futures::future::join_all(observers.iter().map(|o| http.fetch(o))).await
                    });
                    earliest(now + interval);
                }
                Some(due) => earliest(due.max(now + Duration::from_millis(10))),
                None => {
                    inner.observe_due = Some(now);
                    earliest(now);
                }
            }
        }
        next
    }

    fn probed(&self, p: Probed, wake: &mpsc::UnboundedSender<Touched>) {
        let started_ms = self.clock.ms_at(p.started);
        let mut inner = self.inner();
        let Some(e) = inner.clusters.get_mut(&p.cluster) else {
            return;
        };
        e.in_flight = false;
        let was = e.probes.healthy();
        let ok = p.outcome.is_ok();
        if let Err(err) = &p.outcome {
            debug!(cluster = %p.cluster.cluster, error = %err, "probe failed");
        }
        e.probes.record(p.started, started_ms, p.outcome);
        let failures = e.probes.consecutive_failures;
        self.metrics
            .probed(&p.cluster.cluster, ok, p.took.as_secs_f64(), failures);
        if was != Some(ok) {
            if ok {
                info!(cluster = %p.cluster.cluster, "cluster answers its probes");
            } else {
                warn!(cluster = %p.cluster.cluster, error = e.probes.last_error.as_deref().unwrap_or(""), "cluster fails its probes");
            }
        }
        if was != Some(ok) || !ok {
            wake_routes(&inner, |r| r.clusters().any(|c| *c == p.cluster), wake);
        }
    }

    fn observed(&self, views: Vec<View>, wake: &mpsc::UnboundedSender<Touched>) {
        for (o, v) in self.observers.iter().zip(&views) {
            self.metrics.observer_answered(&o.zone, v.rows.is_ok());
            if let Err(e) = &v.rows {
                debug!(zone = %o.zone, url = %o.url, error = %e, "observer did not answer");
            }
        }
        let mut inner = self.inner();
        inner.views = views.into_iter().map(Some).collect();
        // The votes only count for a failing primary.
        let failing: HashSet<RouteRecord> = inner
            .clusters
            .iter()
            .filter(|(_, e)| e.probes.consecutive_failures > 0)
            .map(|(c, _)| c.clone())
            .collect();
        if !failing.is_empty() {
            wake_routes(&inner, |r| failing.contains(&r.primary), wake);
        }
    }
}

fn wake_routes(
    inner: &Inner,
    which: impl Fn(&Registration) -> bool,
    wake: &mpsc::UnboundedSender<Touched>,
) {
    let tables: BTreeSet<(String, String)> = inner
        .routes
        .values()
        .filter(|r| which(r))
        .map(|r| (r.zone.clone(), r.table.clone()))
        .collect();
    for (zone, table) in tables {
        let _ = wake.send(Touched {
            zone,
            table: Some(table),
        });
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;
    use futures::future::BoxFuture;

    use super::*;
    use crate::reconcile::switchover::Drain;

    /// Clusters whose probes succeed unless switched off, counting the probes.
    #[derive(Default)]
    struct Fake {
        down: Mutex<BTreeSet<String>>,
        probes: Mutex<Vec<(String, String, Instant)>>,
    }

    impl ClusterCalls for Fake {
        fn probe<'a>(
            &'a self,
            cluster: &'a RouteRecord,
            table: &'a str,
            _deadline: Instant,
        ) -> BoxFuture<'a, Result<(), String>> {
            self.probes.lock().expect("lock").push((
                cluster.cluster.clone(),
                table.to_owned(),
                Instant::now(),
            ));
            let down = self.down.lock().expect("lock").contains(&cluster.cluster);
            async move { if down { Err("refused".into()) } else { Ok(()) } }.boxed()
        }
        fn deny<'a>(
            &'a self,
            _: &'a RouteRecord,
            _: &'a str,
            _: &'a str,
            _: Instant,
        ) -> BoxFuture<'a, Result<(), String>> {
            async { Ok(()) }.boxed()
        }
        fn lift<'a>(
            &'a self,
            _: &'a RouteRecord,
            _: &'a str,
            _: Instant,
        ) -> BoxFuture<'a, Result<(), String>> {
            async { Ok(()) }.boxed()
        }
        fn progress<'a>(
            &'a self,
            _: &'a RouteRecord,
            _: &'a str,
            _: &'a str,
            _: Instant,
        ) -> BoxFuture<'a, Result<Drain, String>> {
            async { Ok(Drain::Drained) }.boxed()
        }
    }

    fn record(name: &str) -> RouteRecord {
        RouteRecord::new(name, ["127.0.0.1:1"]).expect("record")
    }

    fn registration(table: &str, primary: &str, backup: &str, secs: u64) -> Registration {
        Registration {
            zone: "az1".into(),
            table: table.into(),
            primary: record(primary),
            backup: Some(record(backup)),
            interval: Duration::from_secs(secs),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn each_cluster_is_probed_once_per_interval_however_many_routes_name_it() {
        let fake = Arc::new(Fake::default());
        let prober = Arc::new(Prober::new(
            fake.clone(),
            Vec::new(),
            Clock::starting_at(0),
            Arc::new(Metrics::new()),
        ));
        prober.register("r1", registration("t2", "c1", "c2", 5));
        prober.register("r2", registration("t1", "c1", "c3", 2));
        prober.register("r3", registration("t3", "c4", "c2", 5));
        let (wake_tx, mut wake_rx) = mpsc::unbounded_channel();
        let (stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn(prober.clone().run(wake_tx, stop));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut first = BTreeSet::new();
        while let Ok(t) = wake_rx.try_recv() {
            first.insert(t.table.expect("a table"));
        }
        assert_eq!(
            first.len(),
            3,
            "the first probes wake every route: {first:?}"
        );
        tokio::time::sleep(Duration::from_secs(10)).await;
        let probes = fake.probes.lock().expect("lock").clone();
        let count = |c: &str| probes.iter().filter(|p| p.0 == c).count();
        // c1 at the shorter interval asked (2 s), the others at 5 s: at 0, 5, 10.
        assert_eq!(count("c1"), 6, "{probes:?}");
        assert_eq!((count("c2"), count("c3"), count("c4")), (3, 6, 3));
        assert!(
            probes.iter().filter(|p| p.0 == "c1").all(|p| p.1 == "t1"),
            "the smallest table name"
        );
        assert!(wake_rx.try_recv().is_err(), "healthy clusters wake nobody");

        fake.down.lock().expect("lock").insert("c2".into());
        tokio::time::sleep(Duration::from_secs(5)).await;
        let mut woken = BTreeSet::new();
        while let Ok(t) = wake_rx.try_recv() {
            woken.insert(t.table.expect("a table"));
        }
        assert_eq!(
            woken,
            BTreeSet::from(["t2".to_owned(), "t3".to_owned()]),
            "the routes naming c2"
        );
        let h = prober.health(&record("c1"), Some(&record("c2")));
        assert_eq!(h.primary.map(|p| p.consecutive_failures), Some(0));
        assert_eq!(h.backup.map(|p| p.consecutive_failures), Some(1));

        prober.unregister("r1");
        prober.unregister("r3");
        let before = fake.probes.lock().expect("lock").len();
        tokio::time::sleep(Duration::from_secs(10)).await;
        let after: Vec<String> = fake.probes.lock().expect("lock")[before..]
            .iter()
            .map(|p| p.0.clone())
            .collect();
        assert!(
            !after.contains(&"c2".to_owned()) && !after.contains(&"c4".to_owned()),
            "{after:?}"
        );
        let _ = stop_tx.send(true);
        task.await.expect("stops");
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_run_starts_with_no_history() {
        let fake = Arc::new(Fake::default());
        fake.down.lock().expect("lock").insert("c1".into());
        let prober = Arc::new(Prober::new(
            fake.clone(),
            Vec::new(),
            Clock::starting_at(0),
            Arc::new(Metrics::new()),
        ));
        prober.register("r1", registration("t", "c1", "c2", 1));
        for _ in 0..2 {
            let (wake_tx, _wake_rx) = mpsc::unbounded_channel();
            let (stop_tx, stop) = watch::channel(false);
            let task = tokio::spawn(prober.clone().run(wake_tx, stop));
            tokio::time::sleep(Duration::from_millis(3500)).await;
            let h = prober.health(&record("c1"), None);
            assert_eq!(h.primary.map(|p| p.consecutive_failures), Some(4));
            let _ = stop_tx.send(true);
            task.await.expect("stops");
        }
    }
}
