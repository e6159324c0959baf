//! The reconciler driven through whole switchovers and failovers on paused time, over an
//! in-memory ZooKeeper and scripted clusters: phases happen in order and on time, a restart in
//! any phase resumes (the phase lives in the znode), time limits abort, the window and the
//! cooldown hold. What goes over the wire is the integration tests' business
//! (`operator/tests/failover.rs`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use metaproxy::route::RouteRecord;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::*;
use crate::clock::Clock;
use crate::clusters::ClusterCalls;
use crate::crd::PegasusTableRouteSpec;
use crate::reconcile::switchover::Drain;
use crate::zk::memory::MemoryRecords;
use crate::zone::{Zone, Zones};

const PATH: &str = "/r/temp";
/// 2026-01-01T00:00:00Z
const T0_MS: i64 = 1_767_225_600_000;

/// One call a cluster got: when (since the start), which, and to which cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Call {
    at: Duration,
    what: String,
}

/// Scripted clusters: down ones refuse everything; drain answers come from a script (then
/// `Drained`).
struct Clusters {
    start: Instant,
    down: Mutex<BTreeSet<String>>,
    /// Calls refused by what they are (`deny reconfig*all c1`).
    refused: Mutex<BTreeSet<String>>,
    drains: Mutex<VecDeque<Drain>>,
    calls: Mutex<Vec<Call>>,
}

impl Clusters {
    fn new() -> Arc<Self> {
        Arc::new(Clusters {
            start: Instant::now(),
            down: Mutex::new(BTreeSet::new()),
            refused: Mutex::new(BTreeSet::new()),
            drains: Mutex::new(VecDeque::new()),
            calls: Mutex::new(Vec::new()),
        })
    }

    fn set_down(&self, cluster: &str, down: bool) {
        let mut d = self.down.lock().expect("lock");
        if down {
            d.insert(cluster.into());
        } else {
            d.remove(cluster);
        }
    }

    fn answer(&self, cluster: &RouteRecord, what: String) -> Result<(), String> {
        let what = format!("{what} {}", cluster.cluster);
        self.calls.lock().expect("lock").push(Call {
            at: self.start.elapsed(),
            what: what.clone(),
        });
        if self.down.lock().expect("lock").contains(&cluster.cluster)
            || self.refused.lock().expect("lock").contains(&what)
        {
            Err("connection refused".into())
        } else {
            Ok(())
        }
    }

    fn refuse(&self, what: &str) {
        self.refused.lock().expect("lock").insert(what.into());
    }

    /// The calls other than probes.
    fn admin_calls(&self) -> Vec<Call> {
        self.calls
            .lock()
            .expect("lock")
            .iter()
            .filter(|c| !c.what.starts_with("probe"))
            .cloned()
            .collect()
    }
}

impl ClusterCalls for Clusters {
    fn probe<'a>(
        &'a self,
        cluster: &'a RouteRecord,
        _: &'a str,
        _: Instant,
    ) -> BoxFuture<'a, Result<(), String>> {
        let r = self.answer(cluster, "probe".into());
        async move { r }.boxed()
    }
    fn deny<'a>(
        &'a self,
        cluster: &'a RouteRecord,
        _: &'a str,
        value: &'a str,
        _: Instant,
    ) -> BoxFuture<'a, Result<(), String>> {
        let r = self.answer(cluster, format!("deny {value}"));
        async move { r }.boxed()
    }
    fn lift<'a>(
        &'a self,
        cluster: &'a RouteRecord,
        _: &'a str,
        _: Instant,
    ) -> BoxFuture<'a, Result<(), String>> {
        let r = self.answer(cluster, "lift".into());
        async move { r }.boxed()
    }
    fn progress<'a>(
        &'a self,
        cluster: &'a RouteRecord,
        _: &'a str,
        _: &'a str,
        _: Instant,
    ) -> BoxFuture<'a, Result<Drain, String>> {
        let r = self.answer(cluster, "progress".into()).map(|()| {
            self.drains
                .lock()
                .expect("lock")
                .pop_front()
                .unwrap_or(Drain::Drained)
        });
        async move { r }.boxed()
    }
}

fn reconciler(zk: &Arc<MemoryRecords>, clusters: &Arc<Clusters>) -> Arc<Reconciler> {
    let zones =
        Zones::new(vec![Zone::parse("az1=127.0.0.1:1/r").expect("zone")], None).expect("zones");
    let stores: BTreeMap<String, Arc<dyn Records>> =
        BTreeMap::from([("az1".to_owned(), zk.clone() as Arc<dyn Records>)]);
    Arc::new(Reconciler::with_parts(
        zones,
        stores,
        clusters.clone(),
        Vec::new(),
        Clock::starting_at(T0_MS),
        Arc::new(Metrics::new()),
    ))
}

fn spec(yaml_extra: &str) -> PegasusTableRouteSpec {
    serde_saphyr::from_str(&format!(
        "table: temp\nprimary: {{cluster: c1, metaServers: ['127.0.0.1:1']}}\n\
         backup: {{cluster: c2, metaServers: ['127.0.0.1:2']}}\n{yaml_extra}"
    ))
    .expect("spec")
}

/// A route source in miniature: reconciles `spec` when due (a recheck, a wake from the prober,
/// or the resync), keeping the status, until `done` says so or `limit` passes.
struct Driver {
    reconciler: Arc<Reconciler>,
    status: Option<PegasusTableRouteStatus>,
    generation: i64,
    wake: Option<mpsc::UnboundedReceiver<schedule::Touched>>,
    stop: Option<watch::Sender<bool>>,
}

impl Driver {
    fn new(reconciler: Arc<Reconciler>) -> Self {
        Driver {
            reconciler,
            status: None,
            generation: 1,
            wake: None,
            stop: None,
        }
    }

    /// Runs the prober, as a route source does while it leads.
    fn probing(mut self) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop_tx, stop) = watch::channel(false);
        tokio::spawn(self.reconciler.prober().clone().run(tx, stop));
        self.wake = Some(rx);
        self.stop = Some(stop_tx);
        self
    }

    async fn once(&mut self, spec: &PegasusTableRouteSpec) -> Report {
        let view = RouteView {
            id: "ns/temp",
            created_ms: 1,
            generation: Some(self.generation),
            spec,
            status: self.status.as_ref(),
            deleting: false,
        };
        let report = self.reconciler.reconcile(&view, &[], "T").await;
        if let Some(s) = &report.status {
            self.status = Some(s.clone());
        }
        report
    }

    /// Reconciles until `done(status)`; the time it took.
    async fn until(
        &mut self,
        spec: &PegasusTableRouteSpec,
        limit: Duration,
        done: impl Fn(&PegasusTableRouteStatus) -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            let report = self.once(spec).await;
            assert!(report.result.is_ok(), "{:?}", report.result);
            if self.status.as_ref().is_some_and(&done) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < limit,
                "not done within {limit:?}: {:#?}",
                self.status
            );
            let wait = report.recheck.unwrap_or(Duration::from_secs(60));
            match self.wake.as_mut() {
                Some(rx) => {
                    tokio::select! {
                        _ = rx.recv() => {}
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                None => tokio::time::sleep(wait).await,
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(stop) = &self.stop {
            let _ = stop.send(true);
        }
    }
}

fn phase(s: &PegasusTableRouteStatus) -> Option<&str> {
    s.switchover.as_ref().map(|s| s.phase.as_str())
}

fn znode_state(zk: &MemoryRecords) -> (String, serde_json::Value) {
    let z = zk.get(PATH).expect("znode");
    let json: serde_json::Value = serde_json::from_slice(&z.data).expect("json");
    (
        json["cluster"].as_str().unwrap_or_default().to_owned(),
        json["state"].clone(),
    )
}

#[tokio::test(start_paused = true)]
async fn a_planned_switchover_fences_settles_drains_flips_and_sends_clients_away_on_time() {
    let zk = Arc::new(MemoryRecords::default());
    let clusters = Clusters::new();
    let mut d = Driver::new(reconciler(&zk, &clusters));
    d.until(&spec(""), Duration::from_secs(1), |s| {
        s.active_cluster.as_deref() == Some("c1")
    })
    .await;

    // Two drain checks find duplication behind, then it has caught up.
    clusters.drains.lock().expect("lock").extend([
        Drain::Lagging {
            behind: 40,
            partitions: 3,
        },
        Drain::Lagging {
            behind: 2,
            partitions: 1,
        },
    ]);
    let to_backup = spec("active: backup\n");
    d.generation = 2;
    let t0 = clusters.start.elapsed();
    let took = d
        .until(&to_backup, Duration::from_secs(120), |s| {
            phase(s) == Some("Completed")
        })
        .await;
    let calls: Vec<(u64, String)> = clusters
        .admin_calls()
        .iter()
        .map(|c| ((c.at - t0).as_millis() as u64, c.what.clone()))
        .collect();
    assert_eq!(
        calls,
        [
            (0, "deny timeout*write c1".to_owned()),
            (35_000, "progress c1".to_owned()),
            (36_000, "progress c1".to_owned()),
            (37_000, "progress c1".to_owned()),
            (37_000, "deny reconfig*all c1".to_owned()),
        ],
        "fence, fenceSettle 35 s, drain checks a second apart, the flip, the reconfig"
    );
    assert_eq!(took, Duration::from_secs(37));
    let (cluster, state) = znode_state(&zk);
    assert_eq!(cluster, "c2");
    assert_eq!(
        state,
        serde_json::json!({"flippedAt": T0_MS + 37_000 + t0.as_millis() as i64,
                           "fenced": {"cluster": "c1", "value": "reconfig*all"}})
    );
    let s = d.status.clone().expect("status");
    assert_eq!(s.active_side, Some(ActiveCluster::Backup));
    let c = s.condition(status::SWITCHOVER).expect("condition");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "Completed")
    );
    assert_eq!(d.reconciler.metrics.flips(false), 1);
}

#[tokio::test(start_paused = true)]
async fn a_drain_that_runs_out_aborts_lifts_the_fence_and_is_not_retried() {
    let zk = Arc::new(MemoryRecords::default());
    let clusters = Clusters::new();
    let mut d = Driver::new(reconciler(&zk, &clusters));
    let extra = "switchover: {fenceSettle: 2s, drainTimeout: 10s}\n";
    d.until(&spec(extra), Duration::from_secs(1), |s| {
        s.active_cluster.is_some()
    })
    .await;
    clusters
        .drains
        .lock()
        .expect("lock")
        .extend(std::iter::repeat_n(
            Drain::Lagging {
                behind: 7,
                partitions: 1,
            },
            100,
        ));
    let wanted = spec(&format!("active: backup\n{extra}"));
    let took = d
        .until(&wanted, Duration::from_secs(60), |s| {
            phase(s) == Some("Aborted")
        })
        .await;
    assert_eq!(
        took,
        Duration::from_secs(12),
        "settle 2 s, then drainTimeout 10 s"
    );
    let calls: Vec<String> = clusters.admin_calls().into_iter().map(|c| c.what).collect();
    assert_eq!(
        calls.first().map(String::as_str),
        Some("deny timeout*write c1")
    );
    assert_eq!(
        calls.last().map(String::as_str),
        Some("lift c1"),
        "{calls:?}"
    );
    assert!(!calls.iter().any(|c| c.contains("reconfig")), "{calls:?}");
    let (cluster, state) = znode_state(&zk);
    assert_eq!(cluster, "c1", "the route stays");
    assert_eq!(state["aborted"]["to"], "backup");
    let s = d.status.clone().expect("status");
    assert!(
        s.switchover
            .as_ref()
            .is_some_and(|so| so.message.contains("did not drain within 10s: 7 decrees")),
        "{s:?}"
    );

    // Not tried again while spec.active asks for the same thing...
    let before = clusters.admin_calls().len();
    tokio::time::sleep(Duration::from_secs(120)).await;
    d.once(&wanted).await;
    assert_eq!(clusters.admin_calls().len(), before);
    // ...until a person takes it back and asks again.
    d.once(&spec(extra)).await;
    assert_eq!(znode_state(&zk).1, serde_json::Value::Null);
    clusters.drains.lock().expect("lock").clear();
    d.until(&wanted, Duration::from_secs(60), |s| {
        phase(s) == Some("Completed")
    })
    .await;
    assert_eq!(znode_state(&zk).0, "c2");
}

/// Kills the operator (drops the reconciler, keeps ZooKeeper) in every phase: a new one with no
/// status (as a routes directory has after a restart) carries on, and the record flips once.
#[tokio::test(start_paused = true)]
async fn a_restart_in_any_phase_carries_on_and_flips_once() {
    for stop_in in ["fencing", "settling", "draining", "reconfiguring"] {
        let zk = Arc::new(MemoryRecords::default());
        let clusters = Clusters::new();
        let extra = "switchover: {fenceSettle: 5s}\n";
        let mut first = Driver::new(reconciler(&zk, &clusters));
        first
            .until(&spec(extra), Duration::from_secs(1), |s| {
                s.active_cluster.is_some()
            })
            .await;
        clusters
            .drains
            .lock()
            .expect("lock")
            .extend(std::iter::repeat_n(
                Drain::Lagging {
                    behind: 1,
                    partitions: 1,
                },
                3,
            ));
        // Hold the switchover in the phase: the fence or the reconfig refused.
        match stop_in {
            "fencing" => clusters.refuse("deny timeout*write c1"),
            "reconfiguring" => clusters.refuse("deny reconfig*all c1"),
            _ => {}
        }
        let wanted = spec(&format!("active: backup\n{extra}"));
        let mut seen_cluster = vec!["c1".to_owned()];
        loop {
            let report = first.once(&wanted).await;
            let (cluster, state) = znode_state(&zk);
            if seen_cluster.last() != Some(&cluster) {
                seen_cluster.push(cluster);
            }
            if state["switchover"]["phase"] == stop_in {
                break;
            }
            tokio::time::sleep(report.recheck.unwrap_or(Duration::from_secs(1))).await;
        }
        drop(first);
        clusters.refused.lock().expect("lock").clear();
        // The restarted operator: same ZooKeeper, no status, no probe history.
        let mut second = Driver::new(reconciler(&zk, &clusters));
        second
            .until(&wanted, Duration::from_secs(120), |s| {
                phase(s) == Some("Completed")
            })
            .await;
        let (cluster, state) = znode_state(&zk);
        if seen_cluster.last() != Some(&cluster) {
            seen_cluster.push(cluster);
        }
        assert_eq!(seen_cluster, ["c1", "c2"], "one flip, stopped in {stop_in}");
        assert_eq!(state["fenced"]["cluster"], "c1", "stopped in {stop_in}");
        let calls: Vec<String> = clusters.admin_calls().into_iter().map(|c| c.what).collect();
        assert!(
            calls.first().is_some_and(|c| c == "deny timeout*write c1")
                && calls.last().is_some_and(|c| c == "deny reconfig*all c1"),
            "stopped in {stop_in}: {calls:?}"
        );
    }
}

/// Automatic failover: the primary dies; the flip comes once the window is complete (threshold x
/// interval, give or take one interval), not before; the old primary does not answer the fence,
/// so fencing is skipped and clients are sent away from it when it answers again.
#[tokio::test(start_paused = true)]
async fn automatic_failover_after_the_window_then_the_dead_primary_is_fenced_when_back() {
    let zk = Arc::new(MemoryRecords::default());
    let clusters = Clusters::new();
    let extra = "failover: {mode: Automatic, probeInterval: 1s, failureThreshold: 4}\n";
    let route = spec(extra);
    let mut d = Driver::new(reconciler(&zk, &clusters)).probing();
    d.until(&route, Duration::from_secs(5), |s| {
        s.condition(status::FAILED_OVER)
            .is_some_and(|c| c.reason == "PrimaryHealthy")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    clusters.set_down("c1", true);
    let died = clusters.start.elapsed();
    let took = d
        .until(&route, Duration::from_secs(30), |s| {
            s.active_cluster.as_deref() == Some("c2")
        })
        .await;
    let flip_after = took;
    assert!(
        flip_after >= Duration::from_secs(3) && flip_after <= Duration::from_secs(5),
        "the window is 4 probes a second apart: {flip_after:?} after death at {died:?}"
    );
    let s = d.status.clone().expect("status");
    let c = s.condition(status::FAILED_OVER).expect("FailedOver");
    assert_eq!(c.status, "True", "{c:?}");
    let f = s.failover.as_ref().expect("failover status");
    assert_eq!(f.fencing, "FencingSkipped");
    assert_eq!(f.probe_failures, 4);
    assert!(f.reason.contains("no observers configured"), "{f:?}");
    assert_eq!(phase(&s), Some("Reconfiguring"));
    assert_eq!(d.reconciler.metrics.flips(true), 1);

    // Never back on its own, however healthy the primary gets; the pending reconfig lands.
    clusters.set_down("c1", false);
    d.until(&route, Duration::from_secs(30), |s| {
        phase(s) == Some("Completed")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3600)).await;
    d.once(&route).await;
    assert_eq!(znode_state(&zk).0, "c2");
    assert!(
        clusters
            .admin_calls()
            .iter()
            .any(|c| c.what == "deny reconfig*all c1")
    );

    // Acknowledge, then go back by hand: a planned switchover lifts the fence on c1 first.
    let ack = spec(&format!("active: backup\n{extra}"));
    d.once(&ack).await;
    let s = d.status.clone().expect("status");
    assert_eq!(
        s.condition(status::FAILED_OVER).map(|c| c.status.as_str()),
        Some("False")
    );
    assert!(s.failover.as_ref().is_some_and(|f| f.acknowledged));
    let back = spec(&format!(
        "active: primary\nswitchover: {{fenceSettle: 2s}}\n{extra}"
    ));
    d.until(&back, Duration::from_secs(60), |s| {
        phase(s) == Some("Completed") && s.active_cluster.as_deref() == Some("c1")
    })
    .await;
    let calls: Vec<String> = clusters.admin_calls().into_iter().map(|c| c.what).collect();
    let back_calls = &calls[calls.len() - 4..];
    assert_eq!(
        back_calls,
        [
            "lift c1",
            "deny timeout*write c2",
            "progress c2",
            "deny reconfig*all c2"
        ]
    );
    assert_eq!(znode_state(&zk).1["fenced"]["cluster"], "c2");
}

/// After a flip, the primary failing again within the cooldown is not failed over; after it is.
#[tokio::test(start_paused = true)]
async fn the_cooldown_holds_an_automatic_flip_back() {
    let zk = Arc::new(MemoryRecords::default());
    let clusters = Clusters::new();
    // The switchover back to the primary leaves the backup fenced: the failover lifts that fence
    // and lets it settle (1 s here) before the flip.
    let extra = "failover: {mode: Automatic, probeInterval: 1s, failureThreshold: 3, cooldown: 2m}\n\
                 switchover: {fence: false, fenceSettle: 1s}\n";
    // Start on the backup, then a planned switchover to the primary: a flip.
    let mut d = Driver::new(reconciler(&zk, &clusters)).probing();
    d.until(
        &spec(&format!("active: backup\n{extra}")),
        Duration::from_secs(5),
        |s| s.active_cluster.as_deref() == Some("c2"),
    )
    .await;
    let route = spec(extra);
    d.until(&route, Duration::from_secs(10), |s| {
        phase(s) == Some("Completed")
    })
    .await;
    let flipped = clusters.start.elapsed();
    clusters.set_down("c1", true);
    let took = d
        .until(&route, Duration::from_secs(300), |s| {
            s.active_cluster.as_deref() == Some("c2")
        })
        .await;
    let s = d.status.clone().expect("status");
    assert_eq!(
        s.failover.as_ref().map(|f| f.probe_failures > 100),
        Some(true)
    );
    let since_flip = clusters.start.elapsed() - flipped;
    assert!(
        since_flip >= Duration::from_secs(121) && since_flip <= Duration::from_secs(123),
        "held for the cooldown: {since_flip:?} (failing for {took:?})"
    );
}
