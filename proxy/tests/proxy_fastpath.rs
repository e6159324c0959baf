//! The connection's fast path (`proxy/src/owed.rs`): pipelined query_configs for a table whose
//! route is cached wait on their upstream call together, with one future per call. Each request
//! must still be answered once, under its own seqid, with what the slow path would answer, and
//! counted as it would count it; the per-connection limit counts requests, not calls.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::BytesMut;
use common::*;
use metaproxy::Proxy;
use metaproxy_tests::require;
use metaproxy_tests::sim::SimHandle;
use metaproxy_tests::zk::{ZOOKEEPER, ZkServer};
use pegasus_rpc::codec::{self, DEFAULT_MAX_REPLY_FRAME, ErrorCode, QueryCfgResponse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zookeeper_client as zk;

/// Writes `n` pipelined query_configs for `table` (seqids `0..n`) in one write and reads `n`
/// replies: each reply's `err` and app id by seqid. Panics on a seqid answered twice, or when
/// the replies stop coming.
async fn pipelined(
    proxy: std::net::SocketAddr,
    table: &str,
    n: usize,
) -> BTreeMap<i32, (ErrorCode, i32)> {
    let mut stream = TcpStream::connect(proxy).await.expect("connect");
    stream.write_all(&burst(table, n)).await.expect("write");
    let mut buf = BytesMut::new();
    let mut answers = BTreeMap::new();
    while answers.len() < n {
        while let Some(frame) =
            codec::decode_reply(&mut buf, DEFAULT_MAX_REPLY_FRAME).expect("a valid reply")
        {
            assert!(frame.rpc_error.is_ok(), "{frame:?}");
            let resp = QueryCfgResponse::from_result(&frame.body).expect("a query_config reply");
            let seqid = frame.seqid();
            let again = answers.insert(seqid, (resp.err, resp.app_id));
            assert!(again.is_none(), "seqid {seqid} answered twice");
        }
        if answers.len() == n {
            break;
        }
        let read = tokio::time::timeout(WAIT, stream.read_buf(&mut buf))
            .await
            .expect("the replies keep coming")
            .expect("read");
        assert!(read > 0, "closed after {} replies of {n}", answers.len());
    }
    answers
}

/// Sends 64 pipelined queries for `temp` (app id 5) and checks that each was answered once, from
/// one upstream call the other 63 shared; returns the proxy's metrics after.
async fn sixty_four_on_one_call(proxy: &Proxy, sim: &SimHandle) -> Metrics {
    let answers = pipelined(proxy.addr(), "temp", 64).await;
    assert_eq!(answers.len(), 64);
    for (seqid, answer) in &answers {
        assert_eq!(*answer, (ErrorCode::OK, 5), "seqid {seqid}");
    }
    assert_eq!(
        sim.counters().by_table.get("temp"),
        Some(&1),
        "one upstream call"
    );
    let m = metrics(proxy).await;
    assert_eq!(queries(&m, "ok"), 64.0);
    assert_eq!(m.value("metaproxy_coalesced_requests_total", &[]), 63.0);
    m
}

fn queries(m: &Metrics, result: &str) -> f64 {
    m.value(
        "metaproxy_requests_total",
        &[("rpc", "query_config"), ("result", result)],
    )
}

/// 64 requests of one connection read while their call is in flight share it: the cluster sees
/// one query, and each request gets its own reply once.
#[tokio::test]
async fn requests_of_one_connection_on_one_call_are_each_answered_once() {
    let sim = sim(1, vec![table("temp", 5, 8)]).await;
    // Long enough that every request of the burst is read before the call ends.
    sim.set_delay(0, Duration::from_millis(500)).expect("delay");
    let routes = RoutesFile::new(&[("temp", &record("c1", &sim))]);
    let proxy = start_with_routes(&routes, |c| c.hedge_after = Some("off".into())).await;

    let m = sixty_four_on_one_call(&proxy, &sim).await;
    assert_eq!(m.value("metaproxy_requests_in_flight", &[]), 0.0);
}

/// A call that fails (its attempts time out) answers ERR_SERVICE_NOT_ACTIVE to every request
/// waiting on it, each counted as the cluster being unavailable.
#[tokio::test]
async fn a_failed_call_answers_service_not_active_to_all_its_waiters() {
    let sim = sim(1, vec![table("temp", 5, 8)]).await;
    sim.set_delay(0, Duration::from_secs(5)).expect("delay");
    let routes = RoutesFile::new(&[("temp", &record("c1", &sim))]);
    let proxy = start_with_routes(&routes, |c| {
        c.upstream_timeout = Some("400ms".into());
        c.upstream_attempt_timeout = Some("400ms".into());
        c.hedge_after = Some("off".into());
    })
    .await;

    let answers = pipelined(proxy.addr(), "temp", 32).await;
    for (seqid, (err, _)) in &answers {
        assert_eq!(*err, ErrorCode::SERVICE_NOT_ACTIVE, "seqid {seqid}");
    }
    let m = metrics(&proxy).await;
    assert_eq!(queries(&m, "cluster_unavailable"), 32.0);
    assert_eq!(m.value("metaproxy_coalesced_requests_total", &[]), 31.0);
}

/// Requests for a table without a route, and one-way queries, take the slow path and are
/// answered (or not) as before, on the same connection as requests taking the fast path.
#[tokio::test]
async fn requests_without_a_cached_route_and_one_way_ones_go_the_slow_path() {
    let sim = sim(1, vec![table("temp", 5, 8)]).await;
    let routes = RoutesFile::new(&[("temp", &record("c1", &sim))]);
    let proxy = start_with_routes(&routes, |_| {}).await;
    let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
    let mut args = BytesMut::new();
    codec::QueryCfgRequest::new("temp").to_args(&mut args);
    let mut oneway = codec::RequestFrame::call_v0(codec::rpc::QUERY_CONFIG, 1, 0, args.freeze());
    oneway.message.kind = codec::MessageKind::Oneway;
    let mut frames = Vec::new();
    frames.extend_from_slice(&query_frame("temp", 0));
    frames.extend_from_slice(&oneway.to_bytes());
    frames.extend_from_slice(&query_frame("nowhere", 2));
    frames.extend_from_slice(&query_frame("temp", 3));
    stream.write_all(&frames).await.expect("write");
    let mut replies = Replies::new(stream);
    let (mut seqids, _) = replies.take(3, WAIT).await;
    seqids.sort_unstable();
    assert_eq!(seqids, [0, 2, 3], "the one-way query gets no reply");
    let m = metrics(&proxy).await;
    assert_eq!(queries(&m, "ok"), 3.0, "the one-way query is counted too");
    assert_eq!(queries(&m, "no_route"), 1.0);
}

/// A table read from ZooKeeper on its first query: the requests that come while it loads take
/// the slow path, those after it the fast one, and all share the one upstream call.
#[tokio::test]
async fn a_route_being_loaded_goes_the_slow_path_and_shares_the_call() {
    require!(ZOOKEEPER);
    let server = ZkServer::launch().await.expect("zookeeper");
    let root = "/metaproxy/fastpath";
    let client = zk::Client::connect(&server.connect_string())
        .await
        .expect("zk connects");
    let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    client.mkdir(root, &opts).await.expect("root");
    let sim = sim(1, vec![table("temp", 5, 8)]).await;
    sim.set_delay(0, Duration::from_millis(500)).expect("delay");
    put_znode(
        &client,
        &format!("{root}/temp"),
        &record("c1", &sim).to_json(),
    )
    .await;
    let proxy = start_with_zk(&server.connect_string(), root, |c| {
        c.hedge_after = Some("off".into())
    })
    .await;

    sixty_four_on_one_call(&proxy, &sim).await;
}

/// `max_in_flight` counts requests, also when they all wait on one call: with a limit of 4 and
/// a call that takes a while, no more than 4 requests of the connection are ever being
/// answered, and every one of 20 is answered once.
#[tokio::test]
async fn the_in_flight_limit_counts_requests_not_calls() {
    let sim = sim(1, vec![table("temp", 5, 8)]).await;
    sim.set_delay(0, Duration::from_millis(100)).expect("delay");
    let routes = RoutesFile::new(&[("temp", &record("c1", &sim))]);
    let proxy = start_with_routes(&routes, |c| {
        c.max_in_flight = Some(4);
        c.hedge_after = Some("off".into());
    })
    .await;
    let metrics = proxy.metrics().clone();
    let gauge = || local_metrics(&metrics).value("metaproxy_requests_in_flight", &[]);

    let answering = tokio::spawn(pipelined(proxy.addr(), "temp", 20));
    let mut most = 0.0f64;
    while !answering.is_finished() {
        most = most.max(gauge());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let answers = answering.await.expect("answered");
    assert_eq!(answers.len(), 20);
    assert!(most <= 4.0, "{most} requests in flight");
    assert_eq!(most, 4.0, "the limit was reached (each call holds 4)");
    assert_eq!(
        sim.counters().by_table.get("temp"),
        Some(&5),
        "4 requests per call"
    );
}
