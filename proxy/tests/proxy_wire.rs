//! The proxy on the wire, routes from a static file, clusters simulated: what each official
//! client sends gets exactly what the table's own MetaServer would have answered.

mod common;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::*;
use metaproxy::route::RouteRecord;
use metaproxy_tests::sim::SimConfig;
use pegasus_rpc::codec::{
    self, ErrorCode, MessageKind, NegotiationRequest, NegotiationResponse, NegotiationStatus,
    QueryCfgResponse, RequestFrame,
};

/// Each captured client request, sent through the proxy to a simulated cluster configured like
/// the capture, gets the captured reply byte for byte (the leader is not the first meta, so the
/// proxy follows a redirect for the first of them).
#[tokio::test]
async fn every_official_client_gets_the_metaservers_bytes() {
    let sim = sim_with(SimConfig {
        leader: Some(2),
        ..SimConfig::loopback(3, vec![capture_table()])
    })
    .await;
    let routes = RoutesFile::new(&[("temp", &record("c1", &sim))]);
    let proxy = start_with_routes(&routes, |_| {}).await;

    let cases = [
        // (request, expected reply): Python (v0, seqid 1, timeout 2000), Node.js (v0, seqid 0,
        // no partition_indices), Go (v0, the document's vector), Java (v1, seqid 0).
        (
            "python-v0-query-temp.req.hex",
            "python-v0-query-temp.reply.hex",
        ),
        (
            "python-v0-query-temp-fwd-nonleader.req.hex",
            "python-v0-query-temp-fwd-leader.reply.hex",
        ),
        (
            "python-v0-query-nosuch.req.hex",
            "python-v0-query-nosuch.reply.hex",
        ),
        ("node-v0-query-temp.req.hex", "node-v0-query-temp.reply.hex"),
        (
            "node-v0-query-temp-fwd-nonleader.req.hex",
            "node-v0-query-temp-fwd-leader.reply.hex",
        ),
        (
            "node-v0-query-nosuch.req.hex",
            "node-v0-query-nosuch.reply.hex",
        ),
        (
            "doc-go-v0-query-temp.req.hex",
            "python-v0-query-temp.reply.hex",
        ),
        (
            "doc-java-v1-query-temp.req.hex",
            "node-v0-query-temp.reply.hex",
        ),
    ];
    for (req, expected) in cases {
        let mut client = RawConn::connect(proxy.addr()).await;
        client.send(&vector(req)).await;
        assert_eq!(
            client.raw_reply().await,
            vector(expected),
            "{req} through the proxy"
        );
    }
    // The forward answers of metas 0 and 1 never reached a client; the leader answered every
    // query for `temp` and `nosuch` is answered by the proxy without asking the cluster.
    let counters = sim.counters();
    assert_eq!(
        counters.by_table.get("nosuch"),
        None,
        "no route for nosuch: the cluster is not asked"
    );
    assert_eq!(counters.by_meta[&sim.meta_addrs()[2].to_string()], 6);
}

#[tokio::test]
async fn a_redirect_is_followed_and_the_leader_is_never_revealed() {
    let sim = sim_with(SimConfig {
        leader: Some(1),
        ..SimConfig::loopback(3, vec![capture_table()])
    })
    .await;
    let routes = RoutesFile::new(&[("temp", &record("c1", &sim))]);
    let proxy = start_with_routes(&routes, |_| {}).await;
    let mut client = RawConn::connect(proxy.addr()).await;
    for seqid in 0..5 {
        let resp = client.query("temp", seqid).await;
        assert_eq!(resp.err, ErrorCode::OK);
        assert!(resp.is_stateful);
        let metas: Vec<String> = sim.meta_addrs().iter().map(|a| a.to_string()).collect();
        for p in &resp.partitions {
            let primary = p.primary.to_string();
            assert!(
                !metas.contains(&primary),
                "a MetaServer address reached the client: {primary}"
            );
        }
    }
    let counters = sim.counters();
    let meta0 = sim.meta_addrs()[0].to_string();
    assert_eq!(
        counters.by_meta.get(&meta0).copied().unwrap_or(0),
        1,
        "one redirect, then the leader is remembered"
    );

    // The leader moves: the old one redirects, the proxy follows again.
    sim.set_leader(Some(2)).expect("leader");
    assert_eq!(client.query("temp", 10).await.err, ErrorCode::OK);
    // The new leader goes down; another meta takes over.
    sim.stop_meta(2).await.expect("stop");
    sim.set_leader(Some(0)).expect("leader");
    assert_eq!(client.query("temp", 11).await.err, ErrorCode::OK);
    sim.start_meta(2).await.expect("restart");
}

#[tokio::test]
async fn pipelined_requests_are_answered_out_of_order_by_seqid() {
    let slow = sim(1, vec![table("slow", 3, 8)]).await;
    let fast = sim(1, vec![table("fast", 4, 8)]).await;
    slow.set_delay(0, Duration::from_millis(400))
        .expect("delay");
    let routes = RoutesFile::new(&[
        ("slow", &record("c-slow", &slow)),
        ("fast", &record("c-fast", &fast)),
    ]);
    let proxy = start_with_routes(&routes, |_| {}).await;

    let mut client = RawConn::connect(proxy.addr()).await;
    let mut batch = BytesMut::new();
    batch.extend_from_slice(&query_frame("slow", 1));
    for seqid in 2..52 {
        batch.extend_from_slice(&query_frame("fast", seqid));
    }
    client.send(&batch).await;
    let mut order = Vec::new();
    for _ in 0..51 {
        let reply = client.reply().await;
        let resp = QueryCfgResponse::from_result(&reply.body).expect("response");
        let expected_app = if reply.seqid() == 1 { 3 } else { 4 };
        assert_eq!(
            resp.app_id,
            expected_app,
            "seqid {} got its own table",
            reply.seqid()
        );
        order.push(reply.seqid());
    }
    assert_eq!(
        order.last(),
        Some(&1),
        "the slow request, sent first, is answered last"
    );
    order.sort_unstable();
    assert_eq!(
        order,
        (1..52).collect::<Vec<_>>(),
        "every request answered once"
    );
}

#[tokio::test]
async fn unknown_rpc_and_negotiation_keep_the_connection_open() {
    let sim = sim(1, vec![capture_table()]).await;
    let routes = RoutesFile::new(&[("temp", &record("c1", &sim))]);
    let proxy = start_with_routes(&routes, |_| {}).await;
    let mut client = RawConn::connect(proxy.addr()).await;

    // The document's RPC_FOO, seqid 7: ERR_HANDLER_NOT_FOUND with no body, byte for byte.
    let foo = RequestFrame::call_v0("RPC_FOO", 7, 0, Bytes::from_static(b"\x00"));
    client.send(&foo.to_bytes()).await;
    assert_eq!(
        client.raw_reply().await,
        vector("doc-reply-handler-not-found.hex")
    );

    let mut args = BytesMut::new();
    NegotiationRequest {
        status: NegotiationStatus::SASL_LIST_MECHANISMS,
        ..Default::default()
    }
    .to_args(&mut args);
    client
        .send(&RequestFrame::call_v0(codec::rpc::NEGOTIATION, 8, 0, args.freeze()).to_bytes())
        .await;
    let reply = client.reply().await;
    assert_eq!(
        (reply.rpc_error.clone(), &*reply.message.name, reply.seqid()),
        (ErrorCode::OK, "RPC_NEGOTIATION_ACK", 8)
    );
    let resp = NegotiationResponse::from_result(&reply.body).expect("negotiation response");
    assert_eq!(resp.status, NegotiationStatus::SASL_AUTH_DISABLE);

    // A one-way message gets no reply; the next query is answered.
    let mut oneway = RequestFrame::call_v0("RPC_BAR", 9, 0, Bytes::from_static(b"\x00"));
    oneway.message.kind = MessageKind::Oneway;
    client.send(&oneway.to_bytes()).await;
    assert_eq!(
        client.query("temp", 10).await.app_id,
        2,
        "same connection, still served"
    );
}

#[tokio::test]
async fn malformed_and_oversized_frames_close_only_their_connection() {
    let sim = sim(1, vec![capture_table()]).await;
    let routes = RoutesFile::new(&[("temp", &record("c1", &sim))]);
    let proxy = start_with_routes(&routes, |c| c.max_frame_bytes = Some(4096)).await;
    let mut bystander = RawConn::connect(proxy.addr()).await;
    assert_eq!(bystander.query("temp", 1).await.err, ErrorCode::OK);

    let bad_inputs: Vec<(&str, Vec<u8>)> = vec![
        ("HTTP", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        (
            "version 7",
            b"THFT\x00\x00\x00\x07\x00\x00\x00\x00".to_vec(),
        ),
        (
            "v0 header length 40",
            b"THFT\x00\x00\x00\x00\x00\x00\x00\x28".to_vec(),
        ),
        ("oversized", {
            let mut f = b"THFT\x00\x00\x00\x00\x00\x00\x00\x30\x00\x00\x00\x00".to_vec();
            f.extend_from_slice(&100_000u32.to_be_bytes());
            f
        }),
        ("garbage args", {
            let mut f = vector("python-v0-query-temp.req.hex");
            let n = f.len();
            f[n - 10..].fill(0xff);
            f
        }),
        ("reply in a request", {
            let mut f =
                RequestFrame::call_v0(codec::rpc::QUERY_CONFIG, 1, 0, Bytes::from_static(b"\x00"));
            f.message.kind = MessageKind::Reply;
            f.to_bytes().to_vec()
        }),
    ];
    for (what, input) in bad_inputs {
        let mut client = RawConn::connect(proxy.addr()).await;
        // A good request first: its answer is still delivered before the close.
        let mut stream = query_frame("temp", 5).to_vec();
        stream.extend_from_slice(&input);
        client.send(&stream).await;
        assert_eq!(
            client.reply().await.seqid(),
            5,
            "{what}: the request before it is answered"
        );
        assert!(client.is_closed().await, "{what}: the connection is closed");
        assert_eq!(
            bystander.query("temp", 2).await.err,
            ErrorCode::OK,
            "{what}: others are served"
        );
    }
}

#[tokio::test]
async fn identical_queries_in_flight_share_one_upstream_call() {
    let sim = sim(1, vec![capture_table()]).await;
    sim.set_delay(0, Duration::from_millis(500)).expect("delay");
    let routes = RoutesFile::new(&[("temp", &record("c1", &sim))]);
    let proxy = start_with_routes(&routes, |_| {}).await;

    let clients: Vec<_> =
        futures::future::join_all((0..20).map(|_| RawConn::connect(proxy.addr()))).await;
    let answers = futures::future::join_all(clients.into_iter().enumerate().map(
        |(i, mut c)| async move {
            let mut batch = BytesMut::new();
            for k in 0..10 {
                batch.extend_from_slice(&query_frame("temp", (i * 10 + k) as i32));
            }
            c.send(&batch).await;
            let mut got = Vec::new();
            for _ in 0..10 {
                let reply = c.reply().await;
                assert_eq!(
                    QueryCfgResponse::from_result(&reply.body)
                        .expect("resp")
                        .err,
                    ErrorCode::OK
                );
                got.push(reply.seqid());
            }
            got
        },
    ))
    .await;
    assert_eq!(
        answers.iter().map(Vec::len).sum::<usize>(),
        200,
        "200 clients' queries answered"
    );
    let upstream = sim.counters().by_table.get("temp").copied().unwrap_or(0);
    assert_eq!(
        upstream, 1,
        "200 identical queries within the 500 ms of one call: one upstream call"
    );
    let metrics = metrics(&proxy).await;
    assert_eq!(
        metrics.value("metaproxy_coalesced_requests_total", &[]),
        199.0
    );
}

#[tokio::test]
async fn an_unreachable_cluster_is_a_retryable_application_error() {
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    let record = RouteRecord::new("gone", [dead.to_string()]).expect("record");
    let routes = RoutesFile::new(&[("temp", &record)]);
    let proxy = start_with_routes(&routes, |c| c.upstream_timeout = Some("1s".into())).await;
    let mut client = RawConn::connect(proxy.addr()).await;
    let resp = client.query("temp", 3).await;
    assert_eq!(resp, QueryCfgResponse::error(ErrorCode::SERVICE_NOT_ACTIVE));
}

#[tokio::test]
async fn host_port_fields_pass_through_or_are_stripped() {
    let hp = sim_with(SimConfig {
        host_port_fields: true,
        ..SimConfig::loopback(1, vec![capture_table()])
    })
    .await;
    let routes = RoutesFile::new(&[("temp", &record("c1", &hp))]);
    let passthrough = start_with_routes(&routes, |_| {}).await;
    let stripping = start_with_routes(&routes, |c| c.strip_host_ports = Some(true)).await;

    let mut client = RawConn::connect(passthrough.addr()).await;
    client
        .send(&vector("python-v0-query-temp-hp.req.hex"))
        .await;
    assert_eq!(
        client.raw_reply().await,
        vector("python-v0-query-temp-hp.reply.hex"),
        "default: as received"
    );

    let mut client = RawConn::connect(stripping.addr()).await;
    client.send(&vector("node-v0-query-temp-hp.req.hex")).await;
    assert_eq!(
        client.raw_reply().await,
        vector("node-v0-query-temp.reply.hex"),
        "stripped: the pre-2.6 reply"
    );
}

#[tokio::test]
async fn a_changed_routes_file_moves_the_table() {
    let a = sim(1, vec![table("t1", 10, 4)]).await;
    let b = sim(1, vec![table("t1", 20, 4)]).await;
    let routes = RoutesFile::new(&[("t1", &record("a", &a))]);
    let proxy = start_with_routes(&routes, |_| {}).await;
    let mut client = RawConn::connect(proxy.addr()).await;
    assert_eq!(client.query("t1", 1).await.app_id, 10);

    routes.write(&[("t1", &record("b", &b))]);
    eventually("t1 is routed to cluster b", async || {
        client.query("t1", 2).await.app_id == 20
    })
    .await;

    // No route uses cluster a any more: its group (and with it its connection) is gone.
    assert_eq!(proxy.upstreams().group_count(), 1, "only cluster b");

    // A broken file keeps the routes in force and says why on /routes.
    std::fs::write(&routes.path, "t1: {cluster: [oops").expect("write");
    eventually("the error is reported", || async {
        let routes = http_get(proxy.admin_addr(), "/routes").await;
        routes.is_ok_and(|r| r.body.contains("not valid YAML"))
    })
    .await;
    assert_eq!(client.query("t1", 3).await.app_id, 20);
}

#[tokio::test]
async fn admin_endpoints() {
    let sim = sim(1, vec![capture_table()]).await;
    let routes = RoutesFile::new(&[("temp", &record("c1", &sim))]);
    let proxy = start_with_routes(&routes, |_| {}).await;
    let mut client = RawConn::connect(proxy.addr()).await;
    client.query("temp", 1).await;
    client.query("nosuch", 2).await;

    let get = async |path| {
        http_get(proxy.admin_addr(), path)
            .await
            .expect("admin answers")
    };
    assert_eq!(get("/live").await.status, 200);
    assert_eq!(get("/ready").await.status, 200);
    let metrics = metrics(&proxy).await;
    let requests = |result| {
        metrics.value(
            "metaproxy_requests_total",
            &[("rpc", "query_config"), ("result", result)],
        )
    };
    assert_eq!(requests("ok"), 1.0);
    assert_eq!(requests("no_route"), 1.0);
    assert_eq!(metrics.value("metaproxy_connections", &[]), 1.0);
    assert_eq!(
        metrics.value(
            "metaproxy_upstream_duration_seconds_count",
            &[("result", "ok")]
        ),
        1.0,
        "latency histogram"
    );
    let routes = get("/routes").await;
    assert_eq!(routes.status, 200);
    let view = routes.json().expect("json");
    assert_eq!(view["source"], "file");
    assert_eq!(view["routes"][0]["table"], "temp");
    assert_eq!(view["routes"][0]["cluster"], "c1");
    assert_eq!(view["routes"][0]["leader"], sim.meta_addrs()[0].to_string());
}

#[tokio::test]
async fn the_connection_cap_closes_extra_connections() {
    let sim = sim(1, vec![capture_table()]).await;
    let routes = RoutesFile::new(&[("temp", &record("c1", &sim))]);
    let proxy = start_with_routes(&routes, |c| c.max_connections = Some(2)).await;
    let mut a = RawConn::connect(proxy.addr()).await;
    let mut b = RawConn::connect(proxy.addr()).await;
    a.query("temp", 1).await;
    b.query("temp", 1).await;
    let mut c = RawConn::connect(proxy.addr()).await;
    assert!(
        c.is_closed().await,
        "the third connection is closed at once"
    );
    drop(a);
    eventually("a slot is free again", || async {
        let mut d = RawConn::connect(proxy.addr()).await;
        d.send(&query_frame("temp", 4)).await;
        d.try_reply().await.is_some()
    })
    .await;
}

#[tokio::test]
async fn meta_addresses_may_be_host_names() {
    let sim = sim(1, vec![capture_table()]).await;
    let by_name = RouteRecord::new("c1", [format!("localhost:{}", sim.meta_addrs()[0].port())])
        .expect("record");
    let routes = RoutesFile::new(&[("temp", &by_name)]);
    let proxy = start_with_routes(&routes, |_| {}).await;
    let mut client = RawConn::connect(proxy.addr()).await;
    assert_eq!(
        client.query("temp", 1).await.app_id,
        2,
        "resolved through DNS when connecting"
    );
}

/// On paused time: the proxy, the simulator and the client all run on this test's one thread
/// and talk over loopback, which delivers within the sending syscall, so the runtime has read
/// every reply before it advances the clock to the idle timer (it polls the sockets first).
#[tokio::test(start_paused = true)]
async fn idle_connections_are_closed() {
    let sim = sim(1, vec![capture_table()]).await;
    let routes = RoutesFile::new(&[("temp", &record("c1", &sim))]);
    let proxy = start_with_routes(&routes, |c| c.idle_timeout = Some("300ms".into())).await;
    let mut client = RawConn::connect(proxy.addr()).await;
    assert_eq!(client.query("temp", 1).await.err, ErrorCode::OK);
    let started = tokio::time::Instant::now();
    assert!(client.is_closed().await, "closed after the idle timeout");
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(300),
        "closed exactly the idle timeout after the last request, not before"
    );
}

/// The args of a query_config whose app_name is these raw bytes, laid out as the clients write
/// them: `struct { 1: struct query_cfg_request { 1: string app_name, 2: list<i32> [] } }`.
fn query_args_with_raw_name(name: &[u8]) -> Bytes {
    let mut args = Vec::new();
    args.extend_from_slice(&[0x0c, 0x00, 0x01]); // field 1, struct
    args.extend_from_slice(&[0x0b, 0x00, 0x01]); // field 1, string
    args.extend_from_slice(&(name.len() as u32).to_be_bytes());
    args.extend_from_slice(name);
    args.extend_from_slice(&[0x0f, 0x00, 0x02, 0x08, 0, 0, 0, 0]); // field 2, list<i32> []
    args.extend_from_slice(&[0x00, 0x00]); // STOP, STOP
    Bytes::from(args)
}

/// A table name that is not UTF-8 is a name no MetaServer has: ERR_OBJECT_NOT_FOUND like any
/// other unroutable name, on a connection that stays open. Broken structure still closes it.
#[tokio::test]
async fn a_table_name_that_is_not_utf8_is_not_found_and_the_connection_stays() {
    let sim = sim(1, vec![capture_table()]).await;
    let routes = RoutesFile::new(&[("temp", &record("c1", &sim))]);
    let proxy = start_with_routes(&routes, |_| {}).await;
    let mut client = RawConn::connect(proxy.addr()).await;

    for (seqid, name) in [(1, &b"\xff\xfe"[..]), (2, b"te\xc3mp"), (3, b"temp\x80")] {
        let args = query_args_with_raw_name(name);
        let frame = RequestFrame::call_v0(codec::rpc::QUERY_CONFIG, seqid, 0, args);
        client.send(&frame.to_bytes()).await;
        let reply = client.reply().await;
        assert_eq!(
            (reply.rpc_error.clone(), reply.seqid()),
            (ErrorCode::OK, seqid)
        );
        let resp = QueryCfgResponse::from_result(&reply.body).expect("a query_cfg_response");
        assert_eq!(resp.err, ErrorCode::OBJECT_NOT_FOUND, "{name:?}");
    }
    assert_eq!(
        client.query("temp", 4).await.app_id,
        2,
        "the same connection is still served"
    );
    assert_eq!(
        sim.counters().by_table.len(),
        1,
        "an undecodable name never reaches a cluster"
    );
    let m = metrics(&proxy).await;
    assert_eq!(
        m.value(
            "metaproxy_requests_total",
            &[("rpc", "query_config"), ("result", "no_route")]
        ),
        3.0
    );

    // The same name inside a struct that is cut short is still a malformed frame.
    let mut broken = query_args_with_raw_name(b"\xff").to_vec();
    broken.truncate(broken.len() - 6);
    let frame = RequestFrame::call_v0(codec::rpc::QUERY_CONFIG, 5, 0, Bytes::from(broken));
    client.send(&frame.to_bytes()).await;
    assert!(client.is_closed().await, "a malformed args struct closes");
}

/// `GET /clusters`: each cluster the proxy forwards to, with what its calls said (successes,
/// failures in a row, the last error), listed for `--cluster-history` after its last route went.
#[tokio::test]
async fn clusters_report_what_real_traffic_saw() {
    let up = sim(1, vec![capture_table()]).await;
    let dead_port = metaproxy_tests::free_port().expect("port");
    let down = RouteRecord::new("c-down", [format!("127.0.0.1:{dead_port}")]).expect("record");
    let routes = RoutesFile::new(&[("temp", &record("c-up", &up)), ("other", &down)]);
    let proxy = start_with_routes(&routes, |c| {
        c.cluster_history = Some("2s".into());
        c.upstream_timeout = Some("500ms".into());
    })
    .await;
    let mut client = RawConn::connect(proxy.addr()).await;
    let clusters = async || {
        let view = http_get(proxy.admin_addr(), "/clusters")
            .await
            .expect("admin answers")
            .json()
            .expect("json");
        assert_eq!(view["history_seconds"], 2.0);
        view["clusters"].as_array().cloned().unwrap_or_default()
    };
    let find = |rows: &[serde_json::Value], name: &str| {
        rows.iter().find(|r| r["cluster"] == name).cloned()
    };

    // Routed, never called yet: listed, nothing known.
    let rows = clusters().await;
    let fresh = find(&rows, "c-down").expect("c-down listed");
    assert_eq!(
        (fresh["routed"].clone(), fresh["calls"].clone()),
        (true.into(), 0.into())
    );

    assert_eq!(client.query("temp", 1).await.err, ErrorCode::OK);
    for seqid in 2..4 {
        assert_eq!(
            client.query("other", seqid).await.err,
            ErrorCode::SERVICE_NOT_ACTIVE
        );
    }
    let rows = clusters().await;
    let ok = find(&rows, "c-up").expect("c-up listed");
    assert_eq!(ok["meta_addrs"][0], up.meta_addrs()[0].to_string());
    assert_eq!(ok["leader"], up.meta_addrs()[0].to_string());
    assert_eq!(
        (
            ok["calls"].clone(),
            ok["failures"].clone(),
            ok["consecutive_failures"].clone()
        ),
        (1.into(), 0.into(), 0.into())
    );
    assert!(
        ok["last_success"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{ok}"
    );
    assert!(
        ok["last_success_seconds_ago"]
            .as_f64()
            .is_some_and(|s| s < 5.0),
        "{ok}"
    );
    assert!(ok["last_error"].is_null());

    let bad = find(&rows, "c-down").expect("c-down listed");
    assert_eq!(
        (
            bad["calls"].clone(),
            bad["failures"].clone(),
            bad["consecutive_failures"].clone()
        ),
        (2.into(), 2.into(), 2.into())
    );
    assert!(bad["last_success"].is_null(), "{bad}");
    assert!(
        bad["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{bad}"
    );
    assert!(bad["last_error_at"].as_str().is_some(), "{bad}");
    assert!(bad["last_error_seconds_ago"].as_f64().is_some(), "{bad}");

    // The route to c-down goes: still listed (evidence), no longer routed; gone after the window.
    routes.write(&[("temp", &record("c-up", &up))]);
    eventually("the route is gone", || async {
        find(&clusters().await, "c-down").is_some_and(|r| r["routed"] == false)
    })
    .await;
    eventually("forgotten after the history window", || async {
        find(&clusters().await, "c-down").is_none()
    })
    .await;
    assert!(
        find(&clusters().await, "c-up").is_some(),
        "a routed one stays"
    );
}
