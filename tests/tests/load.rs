//! The load tool against the simulator: it counts what the simulator answered, by kind.

use std::time::{Duration, Instant};

use metaproxy_tests::compare::{self, CompareConfig, Target, Watched};
use metaproxy_tests::harness::eventually;
use metaproxy_tests::load::{self, Header, LoadConfig, Pace, Until};
use metaproxy_tests::sim::{SimConfig, SimHandle, Simulator, TableSpec};

async fn sim(metas: usize) -> SimHandle {
    let table = TableSpec::new(
        "temp",
        2,
        8,
        ["127.0.0.1:34801", "127.0.0.1:34802", "127.0.0.1:34803"].map(|s| s.parse().expect("addr")),
    );
    Simulator::start(SimConfig::loopback(metas, vec![table]))
        .await
        .expect("starts")
}

fn config(sim: &SimHandle, meta: usize, until: Until, tables: &[&str]) -> LoadConfig {
    let mut c = LoadConfig::new(
        sim.meta_addrs()[meta],
        tables.iter().map(|t| t.to_string()).collect(),
    );
    c.connections = 2;
    c.depth = 8;
    c.until = until;
    c
}

#[tokio::test]
async fn counts_replies_and_response_errors() {
    let sim = sim(2).await;
    let report = load::run(config(&sim, 0, Until::Requests(500), &["temp", "nosuch"]))
        .await
        .expect("runs");
    assert_eq!((report.sent, report.replies, report.ok), (500, 500, 250));
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert_eq!(report.errors["err:ERR_OBJECT_NOT_FOUND"], 250);
    assert!(report.latency_us.p50 <= report.latency_us.max);
    assert!(report.requests_per_sec > 0.0);
    let counters = sim.counters();
    assert_eq!(counters.requests, 500);
    assert_eq!(counters.connections, 2);

    // The Java-style header gets the same answers; a non-leader forwards every one.
    let mut c = config(&sim, 1, Until::Requests(100), &["temp"]);
    c.header = Header::V1;
    let report = load::run(c).await.expect("runs");
    assert_eq!((report.replies, report.ok), (100, 0));
    assert_eq!(report.errors["err:ERR_FORWARD_TO_OTHERS"], 100);
    sim.shutdown().await;
}

#[tokio::test]
async fn runs_for_a_duration() {
    let sim = sim(1).await;
    let started = Instant::now();
    let report = load::run(config(
        &sim,
        0,
        Until::Elapsed(Duration::from_millis(300)),
        &["temp"],
    ))
    .await
    .expect("runs");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(report.ok > 0 && report.ok == report.replies && report.sent == report.replies);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    sim.shutdown().await;
}

#[tokio::test]
async fn counts_timeouts_disconnects_and_failed_connects() {
    let sim = sim(1).await;
    // Replies slower than the timeout: every request times out.
    sim.set_delay(0, Duration::from_secs(30)).expect("delay");
    let mut c = config(&sim, 0, Until::Requests(4), &["temp"]);
    c.timeout = Duration::from_millis(200);
    let report = load::run(c).await.expect("runs");
    assert_eq!((report.sent, report.replies), (4, 0));
    assert_eq!(report.errors["timeout"], 4);

    // The meta stops while 8 requests are in flight on one connection.
    sim.reset_counters();
    let mut c = config(&sim, 0, Until::Requests(8), &["temp"]);
    c.connections = 1;
    c.timeout = Duration::from_secs(60);
    let run = tokio::spawn(load::run(c));
    eventually(
        Duration::from_secs(20),
        "the 8 requests to arrive",
        async || (sim.counters().requests >= 8).then_some(()),
    )
    .await
    .expect("the requests arrived");
    sim.stop_meta(0).await.expect("stops");
    let report = run.await.expect("joins").expect("runs");
    assert_eq!(report.errors["disconnect"], 8, "{:?}", report.errors);
    assert_eq!(report.replies, 0);

    // Nothing listens: only failed connects.
    let c = config(
        &sim,
        0,
        Until::Elapsed(Duration::from_millis(300)),
        &["temp"],
    );
    let report = load::run(c).await.expect("runs");
    assert!(report.errors["connect"] >= 2, "{:?}", report.errors);
    assert_eq!(report.sent, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn refuses_an_empty_load() {
    let sim = sim(1).await;
    let mut c = config(&sim, 0, Until::Requests(1), &[]);
    assert!(load::run(c.clone()).await.is_err());
    c.tables = vec!["temp".into()];
    c.depth = 0;
    assert!(load::run(c).await.is_err());
    sim.shutdown().await;
}

#[tokio::test]
async fn the_open_loop_sends_at_its_rate_whatever_the_replies_do() {
    let sim = sim(1).await;
    // 400 requests at 2,000/s: about 200 ms, however slow the replies.
    sim.set_delay(0, Duration::from_millis(100)).expect("delay");
    let mut c = config(&sim, 0, Until::Requests(400), &["temp"]);
    c.pace = Pace::Open { rate: 2000.0 };
    let started = Instant::now();
    let report = load::run(c).await.expect("runs");
    assert_eq!((report.sent, report.ok), (400, 400), "{:?}", report.errors);
    assert!(started.elapsed() >= Duration::from_millis(190));
    // Latency runs from the intended send time: at least the reply delay.
    assert!(report.latency_us.p50 >= 100_000, "{:?}", report.latency_us);
    assert!(report.send_lag_us.is_some());
    sim.shutdown().await;
}

#[tokio::test]
async fn compare_alternates_targets_and_accounts_cpu() {
    let sim = sim(2).await;
    let metas = sim.meta_addrs();
    let config = CompareConfig {
        load: config(&sim, 0, Until::Requests(200), &["temp"]),
        targets: vec![
            Target {
                label: "a".into(),
                addr: metas[0],
            },
            Target {
                label: "b".into(),
                addr: metas[1],
            },
        ],
        rounds: 2,
        watched: vec![Watched {
            label: "me".into(),
            pid: std::process::id(),
        }],
        pause: Duration::ZERO,
    };
    let report = compare::run(config).await.expect("runs");
    let order: Vec<(&str, usize)> = report
        .runs
        .iter()
        .map(|r| (r.target.as_str(), r.round))
        .collect();
    assert_eq!(order, [("a", 1), ("b", 1), ("a", 2), ("b", 2)]);
    assert_eq!(report.summary.len(), 2);
    assert_eq!(report.summary[0].throughput_ratio, 1.0);
    // The second MetaServer is not the leader: it forwards, and that is counted as an error.
    assert_eq!(report.summary[1].errors, 400);
    assert!(report.runs[0].cpu.contains_key("me") && report.runs[0].cpu.contains_key("load"));
    sim.shutdown().await;
}
