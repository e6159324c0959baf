//! Automatic failover and planned switchover, end to end: two simulated Pegasus clusters (the
//! primary duplicating into the backup, the same table with the same app id and partition
//! count), a real ZooKeeper, the proxy, clients that read and write through it (the kv
//! workload), and the `metaproxy-operator` binary over a routes directory.
//!
//! - the primary dies: the operator fails the table over once its window is complete, the proxy
//!   answers from the backup, the clients follow, and acknowledged writes lost stay within what
//!   duplication had not confirmed;
//! - only the operator's path to the primary is cut (a relay that black-holes it) while the
//!   proxy's traffic still reaches it: no failover, the status says the observers disagree;
//! - the operator is killed (SIGKILL) in every phase of a planned switchover: a new one resumes
//!   and completes it, or aborts it cleanly when a phase ran out meanwhile;
//! - two operators over the same routes directory: one flip.
//!
//! Each test prints the figures it measured as `FIGURE name value` lines (run with
//! `--nocapture`); `e2e/failover-figures.sh` collects them over repetitions.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use metaproxy::Proxy;
use metaproxy::config::{Config, Settings};
use metaproxy::route::RouteRecord;
use metaproxy_tests::client::ClientOptions;
use metaproxy_tests::harness::{eventually, http_get, scrape};
use metaproxy_tests::kv::{self, KvConfig, KvReport, KvRun};
use metaproxy_tests::load::{self, LoadConfig, Until};
use metaproxy_tests::operator::{Operator, znode};
use metaproxy_tests::relay::Relay;
use metaproxy_tests::require;
use metaproxy_tests::sim::{
    DuplicationSpec, ReplicaMode, SimConfig, SimHandle, Simulator, TableSpec,
};
use metaproxy_tests::zk::{ZOOKEEPER, ZkServer};
use pegasus_rpc::client::{GroupOptions, MetaGroup};
use tokio::time::Instant;
use zookeeper_client as zkc;

/// The binary under test, built by cargo before this test.
const OPERATOR: &str = env!("CARGO_BIN_EXE_metaproxy-operator");

const WAIT: Duration = Duration::from_secs(40);
const ROOT: &str = "/metaproxy/ft";
const PATH: &str = "/metaproxy/ft/temp";
const DENY: &str = "replica.deny_client_request";
/// The automatic failover's settings here: a window of 4 x 500 ms.
const INTERVAL: Duration = Duration::from_millis(500);
const THRESHOLD: u32 = 4;

fn figure(name: &str, value: impl std::fmt::Display) {
    eprintln!("FIGURE {name} {value}");
}

fn metas(sim: &SimHandle) -> Vec<String> {
    sim.meta_addrs().iter().map(|a| a.to_string()).collect()
}

/// Table `temp`: app 2, 8 partitions, on every replica node, in both clusters.
fn temp() -> TableSpec {
    TableSpec::served("temp", 2, 8)
}

/// The backup, then the primary duplicating `temp` into it.
async fn clusters(dup_lag: Duration) -> (SimHandle, SimHandle) {
    let mut b = SimConfig::with_replicas(1, 3, vec![temp()]);
    b.cluster_name = "c-b".into();
    b.cluster_id = 2;
    let backup = Simulator::start(b).await.expect("backup starts");
    let mut a = SimConfig::with_replicas(
        2,
        3,
        vec![temp().with_duplication(DuplicationSpec {
            cluster: Some("c-b".into()),
            ..DuplicationSpec::new(metas(&backup), "temp")
        })],
    );
    a.cluster_name = "c-a".into();
    a.dup_lag = dup_lag;
    let primary = Simulator::start(a).await.expect("primary starts");
    (primary, backup)
}

fn route_file(primary: &[String], backup: &[String], extra: &str) -> String {
    let list = |addrs: &[String]| {
        addrs
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "apiVersion: metaproxy.pegasus.io/v1alpha1\nkind: PegasusTableRoute\nmetadata: {{name: temp}}\n\
         spec:\n  table: temp\n  primary: {{cluster: c-a, metaServers: [{}]}}\n  \
         backup: {{cluster: c-b, metaServers: [{}]}}\n{extra}",
        list(primary),
        list(backup)
    )
}

fn automatic() -> String {
    format!(
        "  failover: {{mode: Automatic, probeInterval: {}ms, failureThreshold: {THRESHOLD}}}\n\
         \x20 switchover: {{fenceSettle: 1s, drainTimeout: 20s}}\n",
        INTERVAL.as_millis()
    )
}

fn write(dir: &Path, file: &str, text: &str) {
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, text).expect("write route file");
    std::fs::rename(&tmp, dir.join(file)).expect("rename route file");
}

async fn operator(zk: &ZkServer, dir: &Path, observers: &[String]) -> Operator {
    let mut args: Vec<String> = [
        "--zone",
        &format!("az1={}{ROOT}", zk.connect_string()),
        "--routes-dir",
        &dir.display().to_string(),
        "--poll",
        "100ms",
        "--zk-session-timeout",
        "4s",
        "--zk-request-timeout",
        "2s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for o in observers {
        args.push("--observer".into());
        args.push(o.clone());
    }
    Operator::launch(OPERATOR, &args, &[], WAIT)
        .await
        .expect("operator starts")
}

/// What every scenario here starts from: a real ZooKeeper and a client of it, the two
/// clusters, and a routes directory for the operator (empty until [`Scenario::route`]).
struct Scenario {
    zk_server: ZkServer,
    zk: zkc::Client,
    primary: SimHandle,
    backup: SimHandle,
    dir: tempfile::TempDir,
}

impl Scenario {
    async fn start(dup_lag: Duration) -> Scenario {
        let zk_server = ZkServer::launch().await.expect("zookeeper");
        let zk = zkc::Client::connect(&zk_server.connect_string())
            .await
            .expect("zk client");
        let (primary, backup) = clusters(dup_lag).await;
        Scenario {
            zk_server,
            zk,
            primary,
            backup,
            dir: tempfile::tempdir().expect("dir"),
        }
    }

    /// Writes `temp.yaml` from the primary to the backup, with `extra` spec lines.
    fn route(&self, extra: &str) {
        write(
            self.dir.path(),
            "temp.yaml",
            &route_file(&metas(&self.primary), &metas(&self.backup), extra),
        );
    }

    /// The proxy over the operator's ZooKeeper root.
    async fn proxy(&self) -> Proxy {
        metaproxy_tests::proxy::over_zk(&self.zk_server.connect_string(), ROOT, WAIT).await
    }

    /// An operator over the routes directory.
    async fn operator(&self, observers: &[String]) -> Operator {
        operator(&self.zk_server, self.dir.path(), observers).await
    }

    /// Waits until the znode routes to the primary.
    async fn routed_on_primary(&self) {
        eventually(WAIT, "the route on c-a", async || {
            (routed(&self.zk).await?.0 == "c-a").then_some(())
        })
        .await
        .expect("routed");
    }

    /// The test's ZooKeeper client and the two clusters.
    fn parts(&self) -> (&zkc::Client, &SimHandle, &SimHandle) {
        (&self.zk, &self.primary, &self.backup)
    }

    async fn shutdown(self) {
        self.backup.shutdown().await;
        self.primary.shutdown().await;
    }
}

/// The cluster the znode routes to, and its version.
async fn routed(zk: &zkc::Client) -> Option<(String, i32)> {
    let (data, version) = znode(zk, PATH).await?;
    Some((RouteRecord::parse(&data).ok()?.cluster, version))
}

/// The operator's state in the znode.
async fn state(zk: &zkc::Client) -> serde_json::Value {
    let Some((data, _)) = znode(zk, PATH).await else {
        return serde_json::Value::Null;
    };
    serde_json::from_slice::<serde_json::Value>(&data)
        .map(|v| v["state"].clone())
        .unwrap_or_default()
}

/// The route's entry on the operator's `/routes`.
async fn route_view(op: &Operator) -> Option<serde_json::Value> {
    let all = http_get(op.admin, "/routes").await.ok()?.json().ok()?;
    all.as_array()?
        .iter()
        .find(|r| r["file"] == "temp.yaml")
        .cloned()
}

fn condition(view: &serde_json::Value, type_: &str) -> Option<(String, String, String)> {
    view["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            (s("status"), s("reason"), s("message"))
        })
}

fn kv_through(proxy: &Proxy, verify: Vec<String>) -> KvConfig {
    KvConfig {
        workers: 16,
        until: Until::Elapsed(Duration::from_secs(300)),
        verify: Some(verify),
        client: ClientOptions::default(),
        ..KvConfig::new(vec![proxy.addr().to_string()], "temp")
    }
}

/// Waits for `n` more acknowledged writes.
async fn writes_flow(run: &KvRun, n: u64, what: &str) {
    let from = run.progress().writes_ok;
    eventually(WAIT, what, async || {
        (run.progress().writes_ok >= from + n).then_some(())
    })
    .await
    .expect("writes flow");
}

/// The kv workload through `proxy`, read back from `backup`, once 500 writes are acknowledged.
async fn kv_on_primary(proxy: &Proxy, backup: &SimHandle) -> KvRun {
    let run = kv::spawn(kv_through(proxy, metas(backup))).expect("kv starts");
    writes_flow(&run, 500, "writes on the primary").await;
    run
}

/// Writes committed on `sim`'s `temp` that duplication has not confirmed.
fn unconfirmed(sim: &SimHandle) -> i64 {
    let t = sim.table_state("temp").expect("temp");
    t.duplications
        .iter()
        .flat_map(|d| d.partitions.iter().enumerate())
        .map(|(p, s)| t.last_decrees.get(p).copied().unwrap_or(0) - s.confirmed_decree)
        .filter(|gap| *gap > 0)
        .sum()
}

fn assert_verified(report: &KvReport) -> u64 {
    let v = report.verify.as_ref().expect("verified");
    assert!(report.writes.ok > 0, "{report}");
    assert_eq!(
        v.checked, report.writes.ok,
        "every acknowledged write checked"
    );
    assert_eq!((v.wrong, v.unreadable), (0, 0), "{report}");
    v.lost
}

/// Where the proxy sends clients for `temp` now: the replica servers its answer names.
async fn proxy_answers_from(proxy: &Proxy, sim: &SimHandle) -> bool {
    let group = MetaGroup::new(
        "proxy",
        &[proxy.addr().to_string()],
        GroupOptions {
            hedge_after: None,
            ..GroupOptions::default()
        },
    )
    .expect("one address");
    let Ok(resp) = group
        .query_config("temp", Instant::now() + Duration::from_secs(2))
        .await
    else {
        return false;
    };
    let replicas = sim.replica_addrs();
    resp.err.is_ok()
        && resp.partitions.first().is_some_and(|p| {
            p.primary
                .to_socket()
                .is_some_and(|a| replicas.contains(&std::net::SocketAddr::V4(a)))
        })
}

/// The primary dies under load: the failover comes after the window, the proxy answers from
/// the backup, clients follow; what was lost is within what duplication had not confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_failover_after_the_window_under_load() {
    require!(ZOOKEEPER);
    let s = Scenario::start(Duration::ZERO).await;
    let proxy = s.proxy().await;
    s.route(&automatic());
    let observer = format!("az1=http://{}", proxy.admin_addr());
    let op = s.operator(&[observer]).await;
    s.routed_on_primary().await;
    let (zk, primary, backup) = s.parts();

    let run = kv_on_primary(&proxy, backup).await;
    let armed = eventually(WAIT, "the route armed", async || {
        let v = route_view(&op).await?;
        (condition(&v, "FailedOver")?.1 == "PrimaryHealthy").then_some(v)
    })
    .await
    .expect("armed");
    assert_eq!(
        condition(&armed, "PrimaryHealthy").map(|c| c.0),
        Some("True".into())
    );
    assert_eq!(
        condition(&armed, "BackupHealthy").map(|c| c.0),
        Some("True".into())
    );

    // The primary dies: MetaServers and replica servers refuse connections.
    let writes_before = run.progress();
    primary.stop_cluster().await;
    let died = Instant::now();
    let in_flight_dup = unconfirmed(primary);
    let (mut first_failure, mut flipped, mut proxy_moved, mut first_success) =
        (None, None, None, None);
    let failed_before = writes_before.failed;
    let deadline = died + WAIT;
    while Instant::now() < deadline && first_success.is_none() {
        let p = run.progress();
        let now = Instant::now();
        if first_failure.is_none() && p.failed > failed_before {
            first_failure = Some(now);
        }
        if flipped.is_none() && routed(zk).await.is_some_and(|(c, _)| c == "c-b") {
            flipped = Some(Instant::now());
        }
        if flipped.is_some() && proxy_moved.is_none() && proxy_answers_from(&proxy, backup).await {
            proxy_moved = Some(Instant::now());
        }
        let puts_on_backup = backup
            .counters()
            .replica
            .by_rpc
            .get("RPC_RRDB_RRDB_PUT")
            .copied()
            .unwrap_or(0);
        if first_failure.is_some() && puts_on_backup > 0 && p.writes_ok > writes_before.writes_ok {
            first_success = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let flipped = flipped.expect("flipped to c-b");
    let first_success = first_success.expect("clients write on the backup");
    writes_flow(&run, 300, "writes on the backup").await;
    run.stop();
    let report = run.finish().await.expect("report");
    eprintln!("{report}");

    let window = INTERVAL * THRESHOLD;
    let to_flip = flipped - died;
    figure("death_to_flip_ms", to_flip.as_millis());
    figure(
        "flip_to_proxy_ms",
        proxy_moved.map_or(0, |m| m.saturating_duration_since(flipped).as_millis()),
    );
    let unavailable = first_success - first_failure.unwrap_or(died);
    figure("client_unavailability_ms", unavailable.as_millis());
    let lost = assert_verified(&report);
    figure("lost_automatic", lost);
    figure("unconfirmed_at_death", in_flight_dup);
    assert!(
        to_flip >= window - INTERVAL && to_flip <= window + INTERVAL * 2,
        "death to flip {to_flip:?}: the window is {window:?} (a probe interval either way, and the probe's own time)"
    );
    assert!(
        unavailable <= window + Duration::from_secs(2),
        "clients were without the table for {unavailable:?}"
    );
    assert!(
        i64::try_from(lost).unwrap_or(i64::MAX) <= in_flight_dup,
        "lost {lost} acknowledged writes, more than the {in_flight_dup} duplication had not confirmed"
    );

    // The status tells the story.
    let view = eventually(WAIT, "FailedOver=True", async || {
        let v = route_view(&op).await?;
        (condition(&v, "FailedOver")?.0 == "True").then_some(v)
    })
    .await
    .expect("failed over");
    let f = &view["status"]["failover"];
    assert_eq!(f["from"], "c-a");
    assert_eq!(f["to"], "c-b");
    assert_eq!(f["fencing"], "FencingSkipped");
    assert!(
        f["probeFailures"].as_u64() >= Some(u64::from(THRESHOLD)),
        "{f}"
    );
    assert_eq!(f["observers"]["down"], 1, "{f}");
    assert_eq!(view["status"]["activeSide"], "backup");
    assert_eq!(
        view["spec"]["active"], "primary",
        "the spec is never rewritten"
    );
    let log = op.log();
    assert!(log.contains("FailedOver"), "a log line says it");
    let metrics = scrape(op.admin).await.expect("metrics");
    assert_eq!(
        metrics.value("metaproxy_operator_flips_total", &[("kind", "automatic")]),
        1.0
    );
    assert_eq!(
        metrics.value("metaproxy_operator_cluster_up", &[("cluster", "c-a")]),
        0.0
    );
    proxy.drain().await;
    s.shutdown().await;
}

/// The operator loses its path to the primary (a relay in front of the primary's MetaServers,
/// for the operator only, black-holes it) while the proxy still reaches it: its probes fail
/// for many windows, the observer sees the primary answer, and nothing moves. Then the primary
/// dies for everyone, and the observer agrees.
///
/// The proxy reads its routes from a file here: in ZooKeeper mode it would take the operator's
/// addresses (the relay) from the record, and the point is two paths to one cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_failover_when_only_the_operators_path_is_cut() {
    require!(ZOOKEEPER);
    let s = Scenario::start(Duration::ZERO).await;
    let (zk, primary, backup) = s.parts();
    let relays = futures::future::join_all(primary.meta_addrs().into_iter().map(Relay::start))
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .expect("relays");
    let through_relays: Vec<String> = relays.iter().map(|r| r.addr().to_string()).collect();

    let proxy_dir = tempfile::tempdir().expect("dir");
    let routes = proxy_dir.path().join("proxy-routes.yaml");
    std::fs::write(
        &routes,
        format!(
            "temp: {{cluster: c-a, meta_addrs: [{}]}}\n",
            metas(primary)
                .iter()
                .map(|a| format!("\"{a}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
    .expect("proxy routes");
    let proxy = Proxy::start(
        &Config::load(Settings {
            listen: Some("127.0.0.1:0".into()),
            admin_listen: Some("127.0.0.1:0".into()),
            routes: Some(routes),
            ..Settings::default()
        })
        .expect("valid"),
    )
    .await
    .expect("proxy starts");
    // Real traffic through the proxy: clients asking for their routes.
    let traffic = tokio::spawn(load::run(LoadConfig {
        connections: 1,
        depth: 1,
        until: Until::Elapsed(Duration::from_secs(600)),
        timeout: Duration::from_secs(2),
        ..LoadConfig::new(proxy.addr(), vec!["temp".into()])
    }));

    write(
        s.dir.path(),
        "temp.yaml",
        &route_file(&through_relays, &metas(backup), &automatic()),
    );
    let observer = format!("az1=http://{}", proxy.admin_addr());
    let op = s.operator(&[observer]).await;
    eventually(WAIT, "the route armed", async || {
        let v = route_view(&op).await?;
        (condition(&v, "FailedOver")?.1 == "PrimaryHealthy").then_some(())
    })
    .await
    .expect("armed");
    let (_, version) = routed(zk).await.expect("written");

    for r in &relays {
        r.black_hole(true);
    }
    let window = INTERVAL * THRESHOLD;
    let view = eventually(WAIT, "the observer's disagreement", async || {
        let v = route_view(&op).await?;
        (condition(&v, "FailedOver")?.1 == "NoQuorum").then_some(v)
    })
    .await
    .expect("no quorum");
    let (_, _, message) = condition(&view, "FailedOver").expect("condition");
    assert!(message.contains("az1 Up"), "{message}");
    assert_eq!(
        condition(&view, "PrimaryHealthy").map(|c| c.0),
        Some("False".into())
    );
    // Many windows later, still nothing moved.
    let watch_from = Instant::now();
    let mut flips = 0;
    while watch_from.elapsed() < window * 4 {
        if routed(zk).await.is_some_and(|(c, _)| c != "c-a") {
            flips += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    figure("flips_with_operator_path_cut", flips);
    assert_eq!(flips, 0);
    assert_eq!(routed(zk).await, Some(("c-a".into(), version)), "untouched");
    let metrics = scrape(op.admin).await.expect("metrics");
    assert!(
        metrics.value(
            "metaproxy_operator_cluster_probe_failures",
            &[("cluster", "c-a")]
        ) >= f64::from(THRESHOLD * 4),
    );
    assert_eq!(
        metrics.value("metaproxy_operator_observer_up", &[("zone", "az1")]),
        1.0
    );

    // Now the primary dies for everyone: the proxy's traffic fails too, and the observer
    // agrees.
    primary.stop_cluster().await;
    eventually(WAIT, "the failover", async || {
        (routed(zk).await?.0 == "c-b").then_some(())
    })
    .await
    .expect("failed over once the observer agrees");
    let view = eventually(WAIT, "FailedOver=True", async || {
        let v = route_view(&op).await?;
        (condition(&v, "FailedOver")?.0 == "True").then_some(v)
    })
    .await
    .expect("the status says so");
    assert_eq!(view["status"]["failover"]["observers"]["down"], 1, "{view}");
    traffic.abort();
    proxy.drain().await;
    s.shutdown().await;
}

/// The phases a SIGKILL hits, and how each is held long enough to hit: the fence request
/// answered too slowly; the settle; the drain held by a backup that takes no duplicated writes;
/// the reconfig refused by a primary whose MetaServers know no leader (that switchover without
/// fencing, which flips first: nothing can come between a drain and its flip).
const PHASES: [&str; 4] = ["fencing", "settling", "draining", "reconfiguring"];

/// A planned switchover with the operator killed in each phase: a new operator carries it on to
/// the end, the record flips once, no acknowledged write is lost, and the old primary is left
/// sending clients away. Killed in the drain and restarted after drainTimeout, the new
/// operator aborts and lifts the fence instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_killed_in_any_phase_resumes_or_aborts_cleanly() {
    require!(ZOOKEEPER);
    for (phase, abort) in PHASES
        .iter()
        .map(|p| (*p, false))
        .chain([("draining", true)])
    {
        let s = Scenario::start(Duration::ZERO).await;
        let proxy = s.proxy().await;
        let (zk, primary, backup) = s.parts();
        // An abort needs a drain that runs out while the operator is down; the others a drain
        // that has time to finish once the backup takes duplicated writes again (a batch lost in
        // the black hole is sent again after a timeout).
        let settings = if abort {
            "  switchover: {fenceSettle: 3s, drainTimeout: 6s}\n"
        } else if phase == "reconfiguring" {
            "  switchover: {fence: false}\n"
        } else {
            "  switchover: {fenceSettle: 3s, drainTimeout: 60s}\n"
        };
        s.route(settings);
        let mut op = s.operator(&[]).await;
        s.routed_on_primary().await;
        // Writes acknowledged by the primary after an abort, or between a flip without fencing
        // and the reconfig, reach the backup by duplication: read back once it caught up.
        let run = kv::spawn(KvConfig {
            verify_after: Duration::from_secs(2),
            ..kv_through(&proxy, metas(backup))
        })
        .expect("kv starts");
        writes_flow(&run, 300, "writes on the primary").await;

        match phase {
            "fencing" => {
                for i in 0..primary.meta_addrs().len() {
                    primary.set_delay(i, Duration::from_secs(3)).expect("delay");
                }
            }
            // The drain held until the backup takes duplicated writes again.
            "draining" => {
                backup
                    .set_all_replica_modes(ReplicaMode::Blackhole)
                    .await
                    .expect("blackhole");
            }
            "reconfiguring" => primary.set_leader(None).expect("no leader"),
            _ => {}
        }
        s.route(&format!("  active: backup\n{settings}"));
        eventually(WAIT, &format!("phase {phase}"), async || {
            (state(zk).await["switchover"]["phase"] == phase).then_some(())
        })
        .await
        .expect("in the phase");
        op.kill().await.expect("SIGKILL");
        let killed_on = routed(zk).await.expect("znode").0;
        for i in 0..primary.meta_addrs().len() {
            primary.set_delay(i, Duration::ZERO).expect("no delay");
        }
        primary.set_leader(Some(0)).expect("a leader");
        if abort {
            // Down for longer than the drain may take.
            tokio::time::sleep(Duration::from_secs(7)).await;
        } else {
            backup
                .set_all_replica_modes(ReplicaMode::Serving)
                .await
                .expect("serving");
        }
        let op2 = s.operator(&[]).await;
        let done = if abort { "Aborted" } else { "Completed" };
        let view = eventually(WAIT, &format!("the switchover {done}"), async || {
            let v = route_view(&op2).await?;
            (condition(&v, "Switchover")?.1 == done).then_some(v)
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "killed in {phase}: {e}\n{:#}\n{}",
                futures::executor::block_on(route_view(&op2)).unwrap_or_default(),
                op2.log()
            )
        });
        let (cluster, _) = routed(zk).await.expect("znode");
        let envs = primary.table_state("temp").expect("temp").envs;
        if abort {
            backup
                .set_all_replica_modes(ReplicaMode::Serving)
                .await
                .expect("serving");
            // A batch lost in the black hole is sent again after the shipper's timeout: wait
            // for the backlog to flow before the clients stop.
            eventually(WAIT, "duplication flowing again", async || {
                (unconfirmed(primary) < 100).then_some(())
            })
            .await
            .expect("duplication flows");
            assert_eq!(cluster, "c-a", "killed in {phase}: the route stays");
            assert_eq!(envs.get(DENY), None, "the fence is lifted: {envs:?}");
            assert!(
                condition(&view, "Switchover").is_some_and(|c| c.2.contains("did not drain")),
                "{view}"
            );
        } else {
            assert_eq!(cluster, "c-b", "killed in {phase} on {killed_on}");
            assert_eq!(
                envs.get(DENY).map(String::as_str),
                Some("reconfig*all"),
                "killed in {phase}"
            );
            writes_flow(&run, 200, "writes on the backup").await;
        }
        run.stop();
        let report = run.finish().await.expect("report");
        assert_eq!(
            unconfirmed(primary),
            0,
            "duplication caught up before the reading back"
        );
        let lost = assert_verified(&report);
        figure(
            &format!(
                "lost_planned_killed_in_{phase}{}",
                if abort { "_abort" } else { "" }
            ),
            lost,
        );
        assert_eq!(lost, 0, "killed in {phase}: {report}");
        proxy.drain().await;
        s.shutdown().await;
    }
}

/// Every version of the table's znode seen, with the cluster it routed to: polled every 2 ms by
/// a client of its own, connected again when ZooKeeper comes back.
struct History {
    seen: Arc<Mutex<Vec<(i32, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl History {
    fn record(connect: String) -> History {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = seen.clone();
        let task = tokio::spawn(async move {
            let mut client: Option<zkc::Client> = None;
            loop {
                if client.as_ref().is_none_or(|c| c.state().is_terminated()) {
                    let connecting = zkc::Client::connect(&connect);
                    client = tokio::time::timeout(Duration::from_secs(1), connecting)
                        .await
                        .ok()
                        .and_then(Result::ok);
                }
                // Quietly: ZooKeeper may be down on purpose. A request made while disconnected
                // waits for the connection: bounded, and the client started again.
                if let Some(c) = &client {
                    let read = Duration::from_millis(500);
                    match tokio::time::timeout(read, c.get_data(PATH)).await {
                        Ok(Ok((data, stat))) => {
                            if let Ok(record) = RouteRecord::parse(&data) {
                                let mut seen = into.lock().unwrap_or_else(PoisonError::into_inner);
                                if seen.last().is_none_or(|(v, _)| *v != stat.version) {
                                    seen.push((stat.version, record.cluster));
                                }
                            }
                        }
                        Ok(Err(zkc::Error::NoNode)) => {}
                        _ => client = None,
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        History { seen, task }
    }

    /// How many times the record moved to another cluster, and what was seen.
    fn moves(&self) -> (usize, Vec<(i32, String)>) {
        let seen = self
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        (seen.windows(2).filter(|w| w[0].1 != w[1].1).count(), seen)
    }
}

impl Drop for History {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Makes the primary's MetaServers answer later than any probe or call waits (a hung primary),
/// or on time again.
fn hang(sim: &SimHandle, hung: bool) {
    let delay = if hung {
        Duration::from_secs(3)
    } else {
        Duration::ZERO
    };
    for i in 0..sim.meta_addrs().len() {
        sim.set_delay(i, delay).expect("delay");
    }
}

/// The phases of an automatic failover a SIGKILL hits: the fencing written with the verdict
/// (held by the fence request to the hung primary, which runs out after a probe interval), and
/// the reconfig after the flip (held until the old primary answers).
const FAILOVER_PHASES: [&str; 2] = ["fencing", "reconfiguring"];

/// An automatic failover with the operator killed (SIGKILL) in each of its phases: the record
/// is never left half way. A new operator, with no probe history, carries the failover on from
/// the znode: the record flips once, the old primary gets `reconfig*all` when it answers again,
/// and the state and the status end complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_killed_during_an_automatic_failover_flips_once_after_a_restart() {
    require!(ZOOKEEPER);
    for phase in FAILOVER_PHASES {
        let s = Scenario::start(Duration::ZERO).await;
        s.route(&automatic());
        let mut op = s.operator(&[]).await;
        s.routed_on_primary().await;
        let Scenario { zk, primary, .. } = &s;
        eventually(WAIT, "the route armed", async || {
            let v = route_view(&op).await?;
            (condition(&v, "FailedOver")?.1 == "PrimaryHealthy").then_some(())
        })
        .await
        .expect("armed");
        let history = History::record(s.zk_server.connect_string());
        hang(primary, true);
        eventually(WAIT, &format!("phase {phase}"), async || {
            let st = state(zk).await;
            (st["switchover"]["phase"] == phase && st["switchover"]["automatic"] == true)
                .then_some(())
        })
        .await
        .expect("in the phase");
        op.kill().await.expect("SIGKILL");
        let killed = Instant::now();
        let killed_on = routed(zk).await.expect("znode").0;
        assert_eq!(
            killed_on,
            if phase == "fencing" { "c-a" } else { "c-b" },
            "the flip and the phase after it are one write"
        );

        let op2 = s.operator(&[]).await;
        eventually(WAIT, "the record on c-b", async || {
            (routed(zk).await?.0 == "c-b").then_some(())
        })
        .await
        .expect("flipped");
        // The reconfig waits for the old primary.
        assert_eq!(state(zk).await["switchover"]["phase"], "reconfiguring");
        hang(primary, false);
        let (view, st) = eventually(WAIT, "the failover complete", async || {
            let v = route_view(&op2).await?;
            let st = state(zk).await;
            (condition(&v, "FailedOver")?.0 == "True" && st["switchover"].is_null())
                .then_some((v, st))
        })
        .await
        .unwrap_or_else(|e| panic!("killed in {phase}: {e}\n{}", op2.log()));
        let done = killed.elapsed();
        let (moves, seen) = history.moves();
        assert_eq!(moves, 1, "killed in {phase}: one flip: {seen:?}");
        assert_eq!(routed(zk).await.map(|r| r.0), Some("c-b".into()));
        let envs = primary.table_state("temp").expect("temp").envs;
        assert_eq!(
            envs.get(DENY).map(String::as_str),
            Some("reconfig*all"),
            "killed in {phase}: clients sent away from the old primary"
        );
        assert_eq!(st["fenced"]["cluster"], "c-a", "{st}");
        assert_eq!(st["fenced"]["value"], "reconfig*all", "{st}");
        assert_eq!(st["failedOver"]["fencing"], "FencingSkipped", "{st}");
        assert!(st["flippedAt"].is_i64(), "{st}");
        assert_eq!(view["status"]["activeSide"], "backup");
        assert_eq!(view["status"]["failover"]["from"], "c-a");
        let flips = scrape(op2.admin)
            .await
            .expect("metrics")
            .value("metaproxy_operator_flips_total", &[("kind", "automatic")]);
        assert_eq!(
            flips,
            if phase == "fencing" { 1.0 } else { 0.0 },
            "killed in {phase}: the new operator flips only what was not flipped"
        );
        figure(
            &format!("double_flips_failover_killed_in_{phase}"),
            moves.saturating_sub(1),
        );
        figure(
            &format!("failover_killed_in_{phase}_to_complete_ms"),
            done.as_millis(),
        );
        drop(history);
        s.shutdown().await;
    }
}

/// ZooKeeper stops (SIGKILL) while a planned switchover settles: the operator cannot write the
/// next phase and counts it; once ZooKeeper is back, the switchover goes on from the phase the
/// znode keeps and completes, the record moving once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_interrupted_by_a_zookeeper_outage_resumes_when_it_returns() {
    require!(ZOOKEEPER);
    let mut s = Scenario::start(Duration::ZERO).await;
    let settings = "  switchover: {fenceSettle: 2s, drainTimeout: 30s}\n";
    s.route(settings);
    let op = s.operator(&[]).await;
    s.routed_on_primary().await;
    let history = History::record(s.zk_server.connect_string());
    let failures = async || {
        let m = scrape(op.admin).await.ok()?;
        let count = |reason| {
            m.find(
                "metaproxy_operator_reconcile_failures_total",
                &[("reason", reason)],
            )
            .unwrap_or(0.0)
        };
        Some(count("zookeeper_unavailable") + count("zookeeper_timeout"))
    };
    let before = failures().await.expect("metrics");
    s.route(&format!("  active: backup\n{settings}"));
    eventually(WAIT, "phase settling", async || {
        (state(&s.zk).await["switchover"]["phase"] == "settling").then_some(())
    })
    .await
    .expect("settling");
    let (_, stopped_at) = routed(&s.zk).await.expect("znode");
    s.zk_server.kill().await.expect("ZooKeeper stops");
    let stopped = Instant::now();
    eventually(WAIT, "the operator failing on ZooKeeper", async || {
        (failures().await? > before).then_some(())
    })
    .await
    .expect("counted");
    s.zk_server.restart().await.expect("ZooKeeper back");
    let down = stopped.elapsed();
    let view = eventually(WAIT, "the switchover Completed", async || {
        let v = route_view(&op).await?;
        (condition(&v, "Switchover")?.1 == "Completed").then_some(v)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", op.log()));
    let resumed = stopped.elapsed();
    let zk = zkc::Client::connect(&s.zk_server.connect_string())
        .await
        .expect("zk client");
    assert_eq!(routed(&zk).await.map(|r| r.0), Some("c-b".into()));
    assert_eq!(view["status"]["activeSide"], "backup");
    let (moves, seen) = history.moves();
    assert_eq!(moves, 1, "one flip: {seen:?}");
    assert!(
        seen.iter().any(|(v, _)| *v == stopped_at),
        "the settling version was seen: {seen:?}"
    );
    let envs = s.primary.table_state("temp").expect("temp").envs;
    assert_eq!(envs.get(DENY).map(String::as_str), Some("reconfig*all"));
    figure("zookeeper_down_in_settling_ms", down.as_millis());
    figure("zookeeper_down_to_completed_ms", resumed.as_millis());
    figure("double_flips_zookeeper_outage", moves.saturating_sub(1));
    drop(history);
    let mut op = op;
    let status = op.terminate(WAIT).await.expect("stops");
    assert!(status.success(), "{status}");
    s.shutdown().await;
}

/// Two operators over the same routes directory and ZooKeeper, both acting: when the primary
/// dies, both see it, both decide, and the compare-and-set lets one flip through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_operators_never_flip_twice() {
    require!(ZOOKEEPER);
    let s = Scenario::start(Duration::ZERO).await;
    s.route(&automatic());
    let a = s.operator(&[]).await;
    let b = s.operator(&[]).await;
    let Scenario { zk, primary, .. } = &s;
    eventually(WAIT, "both armed", async || {
        for op in [&a, &b] {
            let v = route_view(op).await?;
            (condition(&v, "FailedOver")?.1 == "PrimaryHealthy").then_some(())?;
        }
        Some(())
    })
    .await
    .expect("armed");
    primary.stop_cluster().await;
    // Every version of the znode, as it changes.
    let mut history: Vec<(i32, String)> = Vec::new();
    let until = Instant::now() + INTERVAL * THRESHOLD * 6;
    while Instant::now() < until {
        if let Some((c, v)) = routed(zk).await
            && history.last().is_none_or(|(lv, _)| *lv != v)
        {
            history.push((v, c));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let moves = history.windows(2).filter(|w| w[0].1 != w[1].1).count();
    let flips: f64 = futures::future::join_all([&a, &b].map(|op| scrape(op.admin)))
        .await
        .into_iter()
        .map(|m| {
            m.expect("metrics")
                .value("metaproxy_operator_flips_total", &[("kind", "automatic")])
        })
        .sum();
    figure("double_flips_two_operators", moves.saturating_sub(1));
    assert_eq!(moves, 1, "one flip: {history:?}");
    assert_eq!(flips, 1.0, "one operator flipped");
    assert_eq!(history.last().map(|h| h.1.as_str()), Some("c-b"));
    s.shutdown().await;
}

/// Kubernetes mode, two replicas under one Lease: only the leader probes; the leader is killed
/// (SIGKILL) in the middle of the primary's failing window; the standby takes the Lease over,
/// starts its own window from nothing, and fails over once. The status carries the story.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_kubernetes_flip_once_across_a_leader_crash() {
    use metaproxy_tests::k8s::{API_SERVER, ApiServer};
    require!(API_SERVER, ZOOKEEPER);
    let api = ApiServer::launch().await.expect("API server");
    let root = metaproxy_tests::k8s::repo_root();
    api.apply_path(&root.join("crds/pegasustableroutes.yaml"))
        .await
        .expect("CRD");
    api.crd_established("pegasustableroutes.metaproxy.pegasus.io")
        .await
        .expect("established");
    api.apply_path(&api.builtin_standins())
        .await
        .expect("stand-ins");
    api.crd_established("leases.coordination.k8s.io")
        .await
        .expect("Lease");
    let s = Scenario::start(Duration::ZERO).await;
    let Scenario {
        zk_server,
        zk,
        primary,
        backup,
        ..
    } = &s;
    let zone = format!("az1={}{ROOT}", zk_server.connect_string());
    let start = async |identity: &str| {
        Operator::on_kubernetes(
            OPERATOR,
            &api.kubeconfig(),
            (&zone, identity),
            ["3s", "2s", "300ms"],
            &[],
            WAIT,
        )
        .await
    };
    let a = start("op-a").await;
    eventually(WAIT, "op-a leads", async || {
        let m = scrape(a.admin).await.ok()?;
        (m.value("metaproxy_operator_leader", &[]) == 1.0).then_some(())
    })
    .await
    .expect("leader");
    let b = start("op-b").await;
    let mut route = route_file(&metas(primary), &metas(backup), &automatic());
    route = route.replace(
        "metadata: {name: temp}",
        "metadata: {name: temp, namespace: default}",
    );
    api.apply_yaml(&route).await.expect("kubectl apply");
    let status = async || api.get_json(&["ptr", "temp"]).await;
    eventually(WAIT, "the route armed", async || {
        let o = status().await?;
        (condition(&o, "FailedOver")?.1 == "PrimaryHealthy").then_some(())
    })
    .await
    .expect("armed");
    let probes = |m: &metaproxy_tests::harness::Metrics| {
        m.find(
            "metaproxy_operator_probes_total",
            &[("cluster", "c-a"), ("result", "ok")],
        )
    };
    let standby = scrape(b.admin).await.expect("metrics");
    assert_eq!(standby.value("metaproxy_operator_leader", &[]), 0.0);
    assert_eq!(probes(&standby), None, "the standby does not probe");

    // The primary dies; half way through the window the leader dies too.
    primary.stop_cluster().await;
    let mut a = a;
    eventually(WAIT, "the leader half way through the window", async || {
        let m = scrape(a.admin).await.ok()?;
        (m.value(
            "metaproxy_operator_cluster_probe_failures",
            &[("cluster", "c-a")],
        ) >= f64::from(THRESHOLD / 2))
        .then_some(())
    })
    .await
    .expect("failing");
    a.kill().await.expect("SIGKILL");
    let killed = Instant::now();
    assert_eq!(routed(zk).await.map(|r| r.0), Some("c-a".into()), "not yet");

    let mut history: Vec<(i32, String)> = Vec::new();
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        if let Some((c, v)) = routed(zk).await
            && history.last().is_none_or(|(lv, _)| *lv != v)
        {
            history.push((v, c));
        }
        if history.last().is_some_and(|h| h.1 == "c-b") && killed.elapsed() > Duration::from_secs(8)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let moves = history.windows(2).filter(|w| w[0].1 != w[1].1).count();
    assert_eq!(moves, 1, "one flip: {history:?}");
    let m = scrape(b.admin).await.expect("metrics");
    assert_eq!(m.value("metaproxy_operator_leader", &[]), 1.0);
    assert_eq!(
        m.value("metaproxy_operator_flips_total", &[("kind", "automatic")]),
        1.0
    );
    let o = eventually(WAIT, "FailedOver=True", async || {
        let o = status().await?;
        (condition(&o, "FailedOver")?.0 == "True").then_some(o)
    })
    .await
    .expect("status");
    assert_eq!(o["status"]["failover"]["fencing"], "FencingSkipped");
    assert_eq!(o["spec"]["active"], "primary");
    figure(
        "double_flips_two_kubernetes_replicas",
        moves.saturating_sub(1),
    );
    s.shutdown().await;
}

/// A planned switchover under load: nothing acknowledged is lost, and writes are refused only
/// from the first one the fence drops to the first one the new side accepts: about the settle,
/// the drain and the clients' timeout on the last dropped write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_switchover_loses_nothing_within_a_short_fence_window() {
    require!(ZOOKEEPER);
    // Some lag, so that the drain has something to wait for.
    let s = Scenario::start(Duration::from_millis(300)).await;
    let proxy = s.proxy().await;
    let settle = Duration::from_secs(1);
    let settings = "  switchover: {fenceSettle: 1s, drainTimeout: 20s}\n";
    s.route(settings);
    let op = s.operator(&[]).await;
    s.routed_on_primary().await;
    let (zk, primary, backup) = s.parts();
    let run = kv_on_primary(&proxy, backup).await;

    s.route(&format!("  active: backup\n{settings}"));
    let asked = Instant::now();
    let puts = |sim: &SimHandle| {
        sim.counters()
            .replica
            .by_rpc
            .get("RPC_RRDB_RRDB_PUT")
            .copied()
            .unwrap_or(0)
    };
    let (mut denied, mut draining, mut flipped, mut accepted) = (None, None, None, None);
    while accepted.is_none() && asked.elapsed() < WAIT {
        let now = Instant::now();
        if denied.is_none() && primary.counters().replica.dropped > 0 {
            denied = Some(now);
        }
        if draining.is_none() && state(zk).await["switchover"]["phase"] == "draining" {
            draining = Some(now);
        }
        if flipped.is_none() && routed(zk).await.is_some_and(|(c, _)| c == "c-b") {
            flipped = Some(now);
        }
        if puts(backup) > 0 {
            accepted = Some(now);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (denied, flipped, accepted) = (
        denied.expect("a write dropped by the fence"),
        flipped.expect("flipped"),
        accepted.expect("a client write on the backup"),
    );
    let drain = flipped - draining.unwrap_or(flipped);
    writes_flow(&run, 300, "writes on the backup").await;
    run.stop();
    let report = run.finish().await.expect("report");
    eprintln!("{report}");
    let lost = assert_verified(&report);
    let window = accepted - denied;
    figure("fence_window_ms", window.as_millis());
    figure("fence_settle_ms", settle.as_millis());
    figure("drain_ms", drain.as_millis());
    figure("lost_planned", lost);
    assert_eq!(lost, 0, "{report}");
    assert!(
        window <= settle + drain + Duration::from_secs(2),
        "writes refused for {window:?} (settle {settle:?}, drain {drain:?})"
    );
    let view = eventually(WAIT, "Completed", async || {
        let v = route_view(&op).await?;
        (condition(&v, "Switchover")?.1 == "Completed").then_some(v)
    })
    .await
    .expect("completed");
    assert_eq!(view["status"]["activeSide"], "backup");
    proxy.drain().await;
    s.shutdown().await;
}

/// How soon after a znode flip the proxy answers from the other cluster: the record flipped by
/// hand back and forth, each time a query_config through the proxy until it names the new
/// cluster's replica servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_answers_from_the_new_cluster_soon_after_a_flip() {
    require!(ZOOKEEPER);
    let s = Scenario::start(Duration::ZERO).await;
    let proxy = s.proxy().await;
    let Scenario {
        zk,
        primary: a,
        backup: b,
        ..
    } = &s;
    let record = |cluster: &str, sim: &SimHandle| {
        RouteRecord::new(cluster, metas(sim))
            .expect("record")
            .to_json()
    };
    let opts = zkc::CreateMode::Persistent.with_acls(zkc::Acls::anyone_all());
    zk.mkdir(ROOT, &opts).await.expect("root");
    zk.create(PATH, &record("c-a", a), &opts)
        .await
        .expect("znode");
    eventually(WAIT, "the proxy on c-a", async || {
        proxy_answers_from(&proxy, a).await.then_some(())
    })
    .await
    .expect("routed");
    let group = MetaGroup::new(
        "proxy",
        &[proxy.addr().to_string()],
        GroupOptions {
            hedge_after: None,
            ..GroupOptions::default()
        },
    )
    .expect("one address");
    let mut samples = Vec::new();
    for i in 0..100 {
        let (to, sim) = if i % 2 == 0 { ("c-b", &b) } else { ("c-a", &a) };
        let replicas = sim.replica_addrs();
        zk.set_data(PATH, &record(to, sim), None)
            .await
            .expect("flip");
        let flipped = Instant::now();
        loop {
            let answered = group
                .query_config("temp", Instant::now() + Duration::from_secs(2))
                .await
                .ok()
                .and_then(|r| r.partitions.first().and_then(|p| p.primary.to_socket()))
                .is_some_and(|p| replicas.contains(&std::net::SocketAddr::V4(p)));
            if answered {
                samples.push(flipped.elapsed());
                break;
            }
            assert!(
                flipped.elapsed() < WAIT,
                "the proxy never followed flip {i}"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    samples.sort();
    let pct = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    figure(
        "flip_to_proxy_p50_ms",
        format!("{:.1}", pct(50).as_secs_f64() * 1e3),
    );
    figure(
        "flip_to_proxy_p99_ms",
        format!("{:.1}", pct(99).as_secs_f64() * 1e3),
    );
    figure(
        "flip_to_proxy_max_ms",
        format!("{:.1}", samples[samples.len() - 1].as_secs_f64() * 1e3),
    );
    assert!(
        pct(99) <= Duration::from_millis(50),
        "p99 {:?} over {} flips",
        pct(99),
        samples.len()
    );
    proxy.drain().await;
    s.shutdown().await;
}
