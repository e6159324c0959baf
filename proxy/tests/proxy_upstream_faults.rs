//! MetaServer faults under a well-behaved client (`metaproxy_tests::bystander`): the leader
//! moving every second under load, a MetaServer that accepts connections and never answers
//! listed first, and a whole cluster down. Latency is printed (`--nocapture`), not asserted,
//! beyond the bystander's hang bound; each printed line is a row of docs/robustness.md.

mod common;

use std::time::{Duration, Instant};

use common::*;
use metaproxy::route::RouteRecord;
use metaproxy_tests::bystander::{Bystander, HANG, Phase};
use metaproxy_tests::workload::{Histogram, micros};
use pegasus_rpc::codec::ErrorCode;

/// The bystander's baseline: 300 queries.
async fn baseline(bystander: &Bystander) -> Phase {
    bystander.run_for(300, Duration::from_secs(30)).await;
    bystander.phase()
}

fn row(fault: &str, figures: &str, phase: &Phase, baseline: &Phase) {
    eprintln!("| {fault} | {figures} | {} |", phase.line(baseline));
    assert_eq!(phase.errors, 0, "{fault}: {:?}", phase.first_errors);
    assert!(phase.queries > 0, "{fault}: the bystander was served");
}

/// The leader moves to the next of three MetaServers every second for 10 s while eight clients
/// query: every query is answered (the proxy follows the redirects), none fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_moving_every_second_under_load() {
    let sim = sim(3, vec![capture_table()]).await;
    let routes = RoutesFile::new(&[("temp", &record("c1", &sim))]);
    let proxy = start_with_routes(&routes, |_| {}).await;
    let bystander = Bystander::start(proxy.addr(), "temp").await;
    let base = baseline(&bystander).await;
    let load: Vec<Bystander> =
        futures::future::join_all((0..8).map(|_| Bystander::start(proxy.addr(), "temp"))).await;
    let moves = 10;
    for i in 1..=moves {
        tokio::time::sleep(Duration::from_secs(1)).await;
        sim.set_leader(Some(i % 3)).expect("move the leader");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let phase = bystander.phase();
    let load_phases: Vec<Phase> = load.iter().map(Bystander::phase).collect();
    let load_queries: u64 = load_phases.iter().map(|p| p.queries).sum();
    let load_errors: u64 = load_phases.iter().map(|p| p.errors).sum();
    let redirects = sim.counters().by_meta.len();
    row(
        "MetaServer leader moving every second",
        &format!(
            "{moves} moves in 10 s, 8 clients of load beside: {load_queries} load queries, \
             {load_errors} errors; all 3 MetaServers asked ({redirects})"
        ),
        &phase,
        &base,
    );
    assert_eq!(load_errors, 0, "{:?}", load_phases[0].first_errors);
    assert_eq!(redirects, 3);
}

/// The first MetaServer of the record accepts connections and never answers: the attempt
/// timeout and the hedge move on to the others; once the leader is known it is asked directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_hole_listed_first() {
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hole_addr = hole.local_addr().expect("addr");
    // Accepts, keeps every connection, reads nothing, answers nothing.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hole.accept().await {
            held.push(s);
        }
    });
    let sim = sim(3, vec![capture_table()]).await;
    let mut addrs = vec![hole_addr.to_string()];
    addrs.extend(sim.meta_addrs().iter().map(|a| a.to_string()));
    let route = RouteRecord::new("c1", addrs).expect("record");
    let routes = RoutesFile::new(&[("temp", &route)]);
    let proxy = start_with_routes(&routes, |_| {}).await;

    // The first queries, each on a fresh proxy state for the cluster: the cost of the hole.
    let mut client = RawConn::connect(proxy.addr()).await;
    let started = Instant::now();
    assert_eq!(client.query("temp", 1).await.err, ErrorCode::OK);
    let first = started.elapsed();
    assert!(first < HANG, "the first query took {first:?}");

    let bystander = Bystander::start(proxy.addr(), "temp").await;
    bystander.run_for(1_000, Duration::from_secs(60)).await;
    let phase = bystander.phase();
    row(
        "a MetaServer that never answers, listed first",
        &format!(
            "the first query answered after {first:.0?} (hedge 500 ms, attempt timeout 1 s); then \
             p99 {:.2} ms over {} queries",
            phase.latency.p99 as f64 / 1000.0,
            phase.queries
        ),
        &phase,
        &phase,
    );
    holder.abort();
}

/// Every MetaServer of a cluster down (connections refused): each query is an application-level
/// ERR_SERVICE_NOT_ACTIVE (which clients retry), at once, never a closed connection.
#[tokio::test]
async fn a_whole_cluster_down_answers_fast_application_errors() {
    let dead: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", metaproxy_tests::free_port().expect("port")))
        .collect();
    let routes = RoutesFile::new(&[("temp", &RouteRecord::new("down", dead).expect("record"))]);
    let proxy = start_with_routes(&routes, |_| {}).await;
    let mut client = RawConn::connect(proxy.addr()).await;
    let mut latency = Histogram::default();
    let queries = 200;
    for seqid in 0..queries {
        let started = Instant::now();
        let resp = client.query("temp", seqid).await;
        latency.record(micros(started.elapsed()));
        assert_eq!(resp.err, ErrorCode::SERVICE_NOT_ACTIVE, "query {seqid}");
    }
    let l = latency.summary();
    eprintln!(
        "| a whole cluster down (3 MetaServers refusing) | {queries} queries: all \
         ERR_SERVICE_NOT_ACTIVE on an open connection, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms |",
        l.p50 as f64 / 1000.0,
        l.p99 as f64 / 1000.0,
        l.max as f64 / 1000.0
    );
    assert!(
        Duration::from_micros(l.max) < HANG,
        "max {} µs: errors come at once",
        l.max
    );
}
