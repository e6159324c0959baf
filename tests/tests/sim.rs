//! The MetaServer simulator over real TCP on loopback: raw request bytes in, raw reply bytes out.
//! Configured like the capture in `pegasus-rpc/tests/vectors/README.md`, it must give the captured
//! replies byte for byte; the control calls and the admin API must change what it answers.

use std::collections::BTreeMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use metaproxy_tests::free_port;
use metaproxy_tests::harness::{self, Method, Process, start_on_free_ports};
use metaproxy_tests::raw::{RawConn, WAIT, query_frame_of};
use metaproxy_tests::sim::{SimConfig, SimHandle, Simulator, TableSpec};
use pegasus_rpc::codec::{
    ErrorCode, HostPort, NegotiationRequest, NegotiationResponse, NegotiationStatus,
    QueryCfgRequest, QueryCfgResponse, RequestFrame, RpcAddress, rpc,
};
use tokio::net::TcpStream;

use metaproxy_tests::vectors::load as vector;

fn v4(s: &str) -> SocketAddrV4 {
    s.parse().expect("ip:port")
}

/// Table `temp` of the capture: app 2, 4 partitions on 127.0.0.1:34801..34803, hosts node1..3.
fn captured_temp() -> TableSpec {
    TableSpec::new(
        "temp",
        2,
        4,
        ["127.0.0.1:34801", "127.0.0.1:34802", "127.0.0.1:34803"].map(v4),
    )
    .with_hosts(["node1", "node2", "node3"])
}

async fn start(metas: usize, host_port_fields: bool) -> SimHandle {
    let mut config = SimConfig::loopback(metas, vec![captured_temp()]);
    config.host_port_fields = host_port_fields;
    Simulator::start(config).await.expect("simulator starts")
}

/// A v0 query_config request as the Go client writes it.
fn query(table: &str, seqid: i32, indices: Option<Vec<i32>>) -> Vec<u8> {
    let request = QueryCfgRequest {
        app_name: table.into(),
        partition_indices: indices.or(Some(vec![])),
    };
    query_frame_of(&request, seqid).to_vec()
}

fn rpc_address(addr: SocketAddr) -> RpcAddress {
    match addr {
        SocketAddr::V4(a) => RpcAddress::from_socket(a),
        SocketAddr::V6(_) => panic!("metas listen on IPv4"),
    }
}

/// `vector` with the captured leader address 127.0.0.1:34631 replaced by `leader`: the forward
/// reply names the leader's actual listen address, and tests bind free ports.
fn with_leader(mut vector: Vec<u8>, leader: SocketAddr) -> Vec<u8> {
    let captured = RpcAddress::from_socket(v4("127.0.0.1:34631"))
        .0
        .to_be_bytes();
    let at: Vec<usize> = (0..vector.len() - 7)
        .filter(|&i| vector[i..i + 8] == captured)
        .collect();
    assert_eq!(at.len(), 1, "the captured leader address occurs once");
    vector[at[0]..at[0] + 8].copy_from_slice(&rpc_address(leader).0.to_be_bytes());
    vector
}

#[tokio::test]
async fn leader_reproduces_the_captured_replies() {
    let sim = start(2, false).await;
    let leader = sim.meta_addrs()[0];
    let pairs = [
        (
            "python-v0-query-temp.req.hex",
            "python-v0-query-temp.reply.hex",
        ),
        ("node-v0-query-temp.req.hex", "node-v0-query-temp.reply.hex"),
        (
            "python-v0-query-temp-fwd-leader.req.hex",
            "python-v0-query-temp-fwd-leader.reply.hex",
        ),
        (
            "node-v0-query-temp-fwd-leader.req.hex",
            "node-v0-query-temp-fwd-leader.reply.hex",
        ),
        (
            "python-v0-query-nosuch.req.hex",
            "python-v0-query-nosuch.reply.hex",
        ),
        (
            "node-v0-query-nosuch.req.hex",
            "node-v0-query-nosuch.reply.hex",
        ),
        ("node-v0-query-nosuch.req.hex", "doc-reply-not-found.hex"),
        // The Go client's request (seqid 1) and the Java client's v1 request (seqid 0) get the
        // same replies as the Python (seqid 1) and Node.js (seqid 0) clients.
        (
            "doc-go-v0-query-temp.req.hex",
            "python-v0-query-temp.reply.hex",
        ),
        (
            "doc-java-v1-query-temp.req.hex",
            "node-v0-query-temp.reply.hex",
        ),
    ];
    // One connection per request, as in the capture ...
    for (req, reply) in pairs {
        let mut conn = RawConn::connect(leader).await;
        conn.send(&vector(req)).await;
        assert_eq!(conn.raw_reply().await, vector(reply), "{req} -> {reply}");
    }
    // ... and all of them on one connection, one at a time.
    let mut conn = RawConn::connect(leader).await;
    for (req, reply) in pairs {
        conn.send(&vector(req)).await;
        assert_eq!(conn.raw_reply().await, vector(reply), "{req} -> {reply}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn non_leader_reproduces_the_captured_forward_replies() {
    let sim = start(2, false).await;
    let [leader, other] = sim.meta_addrs()[..] else {
        panic!("two metas")
    };
    for (req, reply) in [
        (
            "python-v0-query-temp-fwd-nonleader.req.hex",
            "fake-meta-forward.reply.hex",
        ),
        (
            "node-v0-query-temp-fwd-nonleader.req.hex",
            "fake-meta-forward-node.reply.hex",
        ),
    ] {
        let mut conn = RawConn::connect(other).await;
        conn.send(&vector(req)).await;
        assert_eq!(
            conn.raw_reply().await,
            with_leader(vector(reply), leader),
            "{req} -> {reply}"
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn host_port_leader_reproduces_the_captured_hp_replies() {
    // Host-port fields for the whole cluster, or for the table only: the same bytes.
    let per_table = {
        let config = SimConfig::loopback(1, vec![captured_temp().with_host_port_fields(true)]);
        Simulator::start(config).await.expect("starts")
    };
    for sim in [start(1, true).await, per_table] {
        for (req, reply) in [
            (
                "python-v0-query-temp-hp.req.hex",
                "python-v0-query-temp-hp.reply.hex",
            ),
            (
                "node-v0-query-temp-hp.req.hex",
                "node-v0-query-temp-hp.reply.hex",
            ),
        ] {
            let mut conn = RawConn::connect(sim.meta_addrs()[0]).await;
            conn.send(&vector(req)).await;
            assert_eq!(conn.raw_reply().await, vector(reply), "{req} -> {reply}");
        }
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn reproduces_the_documents_two_partition_reply() {
    let table = TableSpec::new(
        "temp",
        2,
        2,
        ["10.0.0.1:34801", "10.0.0.2:34801", "10.0.0.3:34801"].map(v4),
    );
    let sim = Simulator::start(SimConfig::loopback(1, vec![table]))
        .await
        .expect("starts");
    let mut conn = RawConn::connect(sim.meta_addrs()[0]).await;
    conn.send(&vector("doc-java-v1-query-temp.req.hex")).await;
    assert_eq!(conn.raw_reply().await, vector("doc-reply-2partitions.hex"));
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_rpc_gets_handler_not_found_and_the_connection_stays_open() {
    let sim = start(1, false).await;
    let mut conn = RawConn::connect(sim.meta_addrs()[0]).await;
    // An empty args struct: the simulator never looks inside an unknown RPC.
    let foo = RequestFrame::call_v0("RPC_FOO", 7, 0, Bytes::from_static(&[0]));
    conn.send(&foo.to_bytes()).await;
    assert_eq!(
        conn.raw_reply().await,
        vector("doc-reply-handler-not-found.hex")
    );
    // The same connection still answers.
    conn.send(&vector("python-v0-query-temp.req.hex")).await;
    assert_eq!(
        conn.raw_reply().await,
        vector("python-v0-query-temp.reply.hex")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn negotiation_says_auth_is_disabled() {
    let sim = start(1, false).await;
    let mut conn = RawConn::connect(sim.meta_addrs()[0]).await;
    let mut args = BytesMut::new();
    NegotiationRequest {
        status: NegotiationStatus::SASL_LIST_MECHANISMS,
        ..Default::default()
    }
    .to_args(&mut args);
    conn.send(&RequestFrame::call_v0(rpc::NEGOTIATION, 42, 0, args.freeze()).to_bytes())
        .await;
    let reply = conn.reply().await;
    assert_eq!(reply.rpc_error, ErrorCode::OK);
    assert_eq!(reply.message.name, "RPC_NEGOTIATION_ACK");
    assert_eq!(reply.seqid(), 42);
    let resp = NegotiationResponse::from_result(&reply.body).expect("decodes");
    assert_eq!(resp, NegotiationResponse::auth_disabled());
    sim.shutdown().await;
}

#[tokio::test]
async fn forward_names_the_current_leader() {
    let sim = start(3, false).await;
    let addrs = sim.meta_addrs();
    let mut conns = Vec::new();
    for &a in &addrs {
        conns.push(RawConn::connect(a).await);
    }
    for leader in [2, 1, 0] {
        sim.set_leader(Some(leader)).expect("set leader");
        assert_eq!(sim.leader(), Some(leader));
        for (i, conn) in conns.iter_mut().enumerate() {
            let resp = conn.query("temp", i as i32).await;
            if i == leader {
                assert_eq!(resp.err, ErrorCode::OK);
                assert_eq!(resp.partitions.len(), 4);
            } else {
                assert_eq!(resp.err, ErrorCode::FORWARD_TO_OTHERS, "meta {i}");
                assert!(!resp.is_stateful);
                assert_eq!(resp.partitions.len(), 1);
                assert_eq!(resp.partitions[0].primary, rpc_address(addrs[leader]));
                assert!(!resp.partitions[0].has_host_ports());
            }
        }
    }
    // No leader known: every meta forwards, naming nobody.
    sim.set_leader(None).expect("no leader");
    for conn in &mut conns {
        let resp = conn.query("temp", 9).await;
        assert_eq!(resp, QueryCfgResponse::error(ErrorCode::FORWARD_TO_OTHERS));
    }
    assert!(sim.set_leader(Some(3)).is_err(), "no meta 3");
    sim.shutdown().await;
}

#[tokio::test]
async fn forward_carries_the_leader_host_port_in_host_port_mode() {
    let sim = start(2, true).await;
    let leader = sim.meta_addrs()[0];
    let mut conn = RawConn::connect(sim.meta_addrs()[1]).await;
    let resp = conn.query("temp", 1).await;
    assert_eq!(resp.err, ErrorCode::FORWARD_TO_OTHERS);
    let pc = &resp.partitions[0];
    assert_eq!(pc.primary, rpc_address(leader));
    assert_eq!(
        pc.hp_primary,
        Some(HostPort::new(leader.ip().to_string(), leader.port()))
    );
    assert_eq!(pc.hp_secondaries, Some(vec![]));
    assert_eq!(pc.hp_last_drops, Some(vec![]));
    // Everything else at its default, as in doc-reply-forward.hex.
    let mut rest = pc.clone();
    rest.primary = RpcAddress::INVALID;
    rest.strip_host_ports();
    assert_eq!(rest, Default::default());
    sim.shutdown().await;
}

#[tokio::test]
async fn stopped_meta_refuses_connections_until_restarted() {
    let sim = start(2, false).await;
    let addr = sim.meta_addrs()[1];
    let mut before = RawConn::connect(addr).await;
    before.query("temp", 1).await;

    sim.stop_meta(1).await.expect("stops");
    assert!(!sim.is_running(1).expect("meta 1"));
    before.expect_closed().await;
    let refused = TcpStream::connect(addr).await;
    assert_eq!(
        refused.expect_err("refused while stopped").kind(),
        std::io::ErrorKind::ConnectionRefused
    );
    sim.stop_meta(1).await.expect("stopping twice is fine");
    // The other meta is unaffected.
    RawConn::connect(sim.meta_addrs()[0])
        .await
        .query("temp", 2)
        .await;

    sim.start_meta(1).await.expect("restarts");
    assert!(sim.is_running(1).expect("meta 1"));
    sim.start_meta(1).await.expect("starting twice is fine");
    let resp = RawConn::connect(addr).await.query("temp", 3).await;
    assert_eq!(resp.err, ErrorCode::FORWARD_TO_OTHERS);
    assert!(sim.stop_meta(5).await.is_err(), "no meta 5");
    sim.shutdown().await;
}

#[tokio::test]
async fn not_active_meta_says_so() {
    let sim = start(2, false).await;
    let mut leader = RawConn::connect(sim.meta_addrs()[0]).await;
    let mut other = RawConn::connect(sim.meta_addrs()[1]).await;
    sim.set_not_active(0, true).expect("switch");
    sim.set_not_active(1, true).expect("switch");
    for conn in [&mut leader, &mut other] {
        for table in ["temp", "nosuch"] {
            assert_eq!(
                conn.query(table, 1).await,
                QueryCfgResponse::error(ErrorCode::SERVICE_NOT_ACTIVE)
            );
        }
    }
    sim.set_not_active(0, false).expect("switch");
    assert_eq!(leader.query("temp", 2).await.err, ErrorCode::OK);
    sim.shutdown().await;
}

#[tokio::test]
async fn delayed_replies_overlap_instead_of_adding_up() {
    let sim = start(1, false).await;
    let mut conn = RawConn::connect(sim.meta_addrs()[0]).await;
    let delay = Duration::from_millis(1000);
    sim.set_delay(0, delay).expect("delay");
    let started = Instant::now();
    for seqid in 0..5 {
        conn.send(&query("temp", seqid, None)).await;
    }
    let mut seqids = Vec::new();
    for _ in 0..5 {
        let (seqid, resp) = conn.query_reply().await;
        assert!(started.elapsed() >= delay, "a reply came before the delay");
        assert_eq!(resp.err, ErrorCode::OK);
        seqids.push(seqid);
    }
    seqids.sort();
    assert_eq!(seqids, [0, 1, 2, 3, 4]);
    // Five delays in a row would take 5 s; overlapping ones take about 1 s.
    assert!(started.elapsed() < 4 * delay, "{:?}", started.elapsed());

    sim.set_delay(0, Duration::ZERO).expect("no delay");
    assert_eq!(sim.state().metas[0].delay_ms, 0);
    assert_eq!(conn.query("temp", 5).await.err, ErrorCode::OK);
    sim.shutdown().await;
}

#[tokio::test]
async fn tables_change_while_serving() {
    let sim = start(1, false).await;
    let mut conn = RawConn::connect(sim.meta_addrs()[0]).await;
    assert_eq!(conn.query("t2", 1).await.err, ErrorCode::OBJECT_NOT_FOUND);

    sim.put_table(TableSpec::new("t2", 3, 2, [v4("10.1.1.1:1")]))
        .expect("added");
    let resp = conn.query("t2", 2).await;
    assert_eq!(
        (resp.err, resp.app_id, resp.partition_count),
        (ErrorCode::OK, 3, 2)
    );
    assert!(resp.is_stateful);

    // Replaced: more partitions, another replica set.
    sim.put_table(TableSpec::new(
        "temp",
        2,
        8,
        ["10.0.0.1:1", "10.0.0.2:1"].map(v4),
    ))
    .expect("replaced");
    let resp = conn.query("temp", 3).await;
    assert_eq!((resp.partition_count, resp.partitions.len()), (8, 8));
    assert_eq!(
        resp.partitions[7].primary,
        RpcAddress::from_socket(v4("10.0.0.2:1"))
    );

    // An app_id in use by another table is refused, and nothing changes.
    assert!(
        sim.put_table(TableSpec::new("t4", 3, 1, [v4("10.1.1.1:1")]))
            .is_err()
    );
    assert_eq!(conn.query("t4", 4).await.err, ErrorCode::OBJECT_NOT_FOUND);
    assert!(
        sim.put_table(TableSpec::new("bad", 9, 0, [v4("10.1.1.1:1")]))
            .is_err()
    );

    assert!(sim.drop_table("t2"));
    assert!(!sim.drop_table("t2"));
    assert_eq!(conn.query("t2", 5).await.err, ErrorCode::OBJECT_NOT_FOUND);
    let names: Vec<String> = sim.tables().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["temp"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn requested_partition_indices_are_honoured() {
    let sim = start(1, false).await;
    let mut conn = RawConn::connect(sim.meta_addrs()[0]).await;
    let pidx = |resp: &QueryCfgResponse| -> Vec<i32> {
        resp.partitions
            .iter()
            .map(|p| p.pid.partition_index)
            .collect()
    };
    for (asked, got) in [
        (vec![3, 1], vec![3, 1]),
        (vec![2, 9, -1], vec![2]),
        (vec![9], vec![0, 1, 2, 3]),
        (vec![], vec![0, 1, 2, 3]),
    ] {
        conn.send(&query("temp", 1, Some(asked.clone()))).await;
        let (_, resp) = conn.query_reply().await;
        assert_eq!(pidx(&resp), got, "asked {asked:?}");
        assert_eq!(resp.partition_count, 4);
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn pipelined_requests_are_all_answered() {
    let sim = start(1, false).await;
    let mut conn = RawConn::connect(sim.meta_addrs()[0]).await;
    let mut batch = Vec::new();
    for seqid in 0..100 {
        let table = if seqid % 3 == 0 { "nosuch" } else { "temp" };
        batch.extend(query(table, seqid, None));
    }
    conn.send(&batch).await;
    let mut answers = BTreeMap::new();
    for _ in 0..100 {
        let (seqid, resp) = conn.query_reply().await;
        assert!(
            answers.insert(seqid, resp.err).is_none(),
            "seqid {seqid} twice"
        );
    }
    assert_eq!(answers.len(), 100);
    for (seqid, err) in answers {
        let want = if seqid % 3 == 0 {
            ErrorCode::OBJECT_NOT_FOUND
        } else {
            ErrorCode::OK
        };
        assert_eq!(err, want, "seqid {seqid}");
    }
    assert_eq!(sim.counters().by_table["temp"], 66);
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_frames_close_only_their_connection() {
    let sim = start(1, false).await;
    let addr = sim.meta_addrs()[0];
    let mut good = RawConn::connect(addr).await;
    good.query("temp", 1).await;

    // Not a THFT frame at all.
    let mut http = RawConn::connect(addr).await;
    http.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    http.expect_closed().await;

    // A sound frame whose args are not a query_cfg_request, after a good request in the same
    // write: the good one is answered, then the connection closes.
    let mut bad_args = RawConn::connect(addr).await;
    let mut bytes = query("temp", 1, None);
    bytes.extend(
        RequestFrame::call_v0(
            rpc::QUERY_CONFIG,
            2,
            0,
            Bytes::from_static(&[0x0c, 0, 1, 0xff]),
        )
        .to_bytes(),
    );
    bad_args.send(&bytes).await;
    assert_eq!(bad_args.query_reply().await.0, 1);
    bad_args.expect_closed().await;

    // A v0 header with the wrong header length.
    let mut bad_header = RawConn::connect(addr).await;
    let mut frame = query("temp", 1, None);
    frame[11] = 47;
    bad_header.send(&frame).await;
    bad_header.expect_closed().await;

    good.query("temp", 2).await;
    assert_eq!(sim.counters().malformed, 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn counters_count_by_meta_rpc_and_table() {
    let sim = start(2, false).await;
    let [a, b] = sim.meta_addrs()[..] else {
        panic!("two metas")
    };
    let mut leader = RawConn::connect(a).await;
    let mut other = RawConn::connect(b).await;
    sim.reset_counters();
    leader.query("temp", 1).await;
    leader.query("temp", 2).await;
    leader.query("nosuch", 3).await;
    other.query("temp", 1).await;
    leader
        .send(&RequestFrame::call_v0("RPC_FOO", 4, 0, Bytes::from_static(&[0])).to_bytes())
        .await;
    leader.reply().await;

    let c = sim.counters();
    assert_eq!(c.requests, 5);
    assert_eq!(c.by_meta[&a.to_string()], 4);
    assert_eq!(c.by_meta[&b.to_string()], 1);
    assert_eq!(c.by_rpc[rpc::QUERY_CONFIG], 4);
    assert_eq!(c.by_rpc["RPC_FOO"], 1);
    assert_eq!(c.by_table["temp"], 3);
    assert_eq!(c.by_table["nosuch"], 1);
    assert_eq!(c.malformed, 0);

    sim.reset_counters();
    let c = sim.counters();
    assert_eq!(c.requests, 0);
    assert!(c.by_rpc.is_empty() && c.by_table.is_empty());
    assert_eq!(c.by_meta[&a.to_string()], 0);
    RawConn::connect(b).await.query("temp", 1).await;
    let c = sim.counters();
    assert_eq!(
        (c.connections, c.connections_by_meta[&b.to_string()]),
        (1, 1)
    );
    sim.shutdown().await;
}

/// One call to the admin API: the status and the JSON body.
async fn http(
    admin: SocketAddr,
    method: Method,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let response = harness::http(admin, method, path, body)
        .await
        .expect("the admin API answers");
    (response.status, response.json().expect("a JSON body"))
}

#[tokio::test]
async fn admin_http_api_steers_the_cluster() {
    let mut config = SimConfig::loopback(2, vec![captured_temp()]);
    config.admin_listen = Some("127.0.0.1:0".parse().expect("addr"));
    let sim = Simulator::start(config).await.expect("starts");
    let admin = sim.admin_addr().expect("admin port");
    let [a, b] = sim.meta_addrs()[..] else {
        panic!("two metas")
    };

    let (status, state) = http(admin, Method::GET, "/state", "").await;
    assert_eq!(status, 200);
    assert_eq!(state["leader"], a.to_string());
    assert_eq!(state["metas"][1]["addr"], b.to_string());
    assert_eq!(state["metas"][1]["running"], true);
    assert_eq!(state["tables"][0]["name"], "temp");

    // Leader by address, then by index.
    let (status, state) = http(
        admin,
        Method::POST,
        "/leader",
        &format!(r#"{{"meta": "{b}"}}"#),
    )
    .await;
    assert_eq!(
        (status, &state["leader"]),
        (200, &serde_json::json!(b.to_string()))
    );
    let resp = RawConn::connect(a).await.query("temp", 1).await;
    assert_eq!(resp.partitions[0].primary, rpc_address(b));
    assert_eq!(
        http(admin, Method::POST, "/leader", r#"{"meta": 0}"#)
            .await
            .0,
        200
    );
    assert_eq!(sim.leader(), Some(0));
    assert_eq!(
        http(admin, Method::POST, "/leader", r#"{"meta": 7}"#)
            .await
            .0,
        404
    );
    assert_eq!(
        http(admin, Method::POST, "/leader", r#"{"leader": 0}"#)
            .await
            .0,
        400
    );

    // Stop and start, by address and by index. A stopped MetaServer cuts the connections it
    // has; whether a new connect to its port is refused is not checked, because under parallel
    // tests another socket may take the freed port.
    let mut held = RawConn::connect(b).await;
    held.query("temp", 1).await;
    let (status, _) = http(admin, Method::POST, &format!("/metas/{b}/stop"), "").await;
    assert_eq!(status, 200);
    held.expect_closed().await;
    assert_eq!(
        http(admin, Method::GET, "/state", "").await.1["metas"][1]["running"],
        false
    );
    assert_eq!(http(admin, Method::POST, "/metas/1/start", "").await.0, 200);
    RawConn::connect(b).await.query("temp", 1).await;
    assert_eq!(
        http(admin, Method::POST, "/metas/9.9.9.9:1/stop", "")
            .await
            .0,
        404
    );

    // Not active and delay.
    let put = |path: &'static str, body: &'static str| http(admin, Method::PUT, path, body);
    assert_eq!(
        put("/metas/0/not-active", r#"{"not_active": true}"#)
            .await
            .0,
        200
    );
    assert_eq!(
        RawConn::connect(a).await.query("temp", 1).await.err,
        ErrorCode::SERVICE_NOT_ACTIVE
    );
    assert_eq!(
        put("/metas/0/not-active", r#"{"not_active": false}"#)
            .await
            .0,
        200
    );
    assert_eq!(put("/metas/0/delay", r#"{"delay_ms": 300}"#).await.0, 200);
    let started = Instant::now();
    assert_eq!(
        RawConn::connect(a).await.query("temp", 1).await.err,
        ErrorCode::OK
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(put("/metas/0/delay", r#"{"delay_ms": 0}"#).await.0, 200);
    assert_eq!(put("/metas/0/delay", r#"{"delay_ms": -1}"#).await.0, 400);

    // Tables.
    let t2 = r#"{"app_id": 3, "partition_count": 2, "replicas": ["10.1.1.1:1"], "replica_hosts": ["h1"]}"#;
    let (status, spec) = http(admin, Method::PUT, "/tables/t2", t2).await;
    assert_eq!((status, &spec["name"]), (200, &serde_json::json!("t2")));
    let resp = RawConn::connect(a).await.query("t2", 1).await;
    assert_eq!((resp.app_id, resp.partition_count), (3, 2));
    let (status, tables) = http(admin, Method::GET, "/tables", "").await;
    assert_eq!((status, tables.as_array().map(Vec::len)), (200, Some(2)));
    let clash = r#"{"app_id": 3, "partition_count": 1, "replicas": ["10.1.1.1:1"]}"#;
    let (status, err) = http(admin, Method::PUT, "/tables/t3", clash).await;
    assert_eq!(status, 400);
    assert!(
        err["error"]
            .as_str()
            .is_some_and(|e| e.contains("app_id 3")),
        "{err}"
    );
    assert_eq!(
        http(admin, Method::PUT, "/tables/t3", r#"{"app_id": 4}"#)
            .await
            .0,
        400
    );
    assert_eq!(http(admin, Method::DELETE, "/tables/t2", "").await.0, 200);
    assert_eq!(http(admin, Method::DELETE, "/tables/t2", "").await.0, 404);
    assert_eq!(
        RawConn::connect(a).await.query("t2", 1).await.err,
        ErrorCode::OBJECT_NOT_FOUND
    );

    // Counters.
    let (status, counters) = http(admin, Method::GET, "/counters", "").await;
    assert_eq!(status, 200);
    assert_eq!(counters["by_table"]["t2"], 2);
    assert_eq!(counters["requests"], sim.counters().requests);
    assert_eq!(
        http(admin, Method::POST, "/counters/reset", "").await.0,
        200
    );
    assert_eq!(
        http(admin, Method::GET, "/counters", "").await.1["requests"],
        0
    );

    sim.shutdown().await;
    assert!(
        TcpStream::connect(admin).await.is_err(),
        "admin port closed"
    );
}

#[tokio::test]
async fn binary_serves_the_yaml_tables_and_stops_on_sigterm() {
    let bin = env!("CARGO_BIN_EXE_pegasus-meta-sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let tables = dir.path().join("tables.yaml");
    std::fs::write(
        &tables,
        "tables:\n  - {name: temp, app_id: 2, partition_count: 4, replicas: \
         [\"127.0.0.1:34801\", \"127.0.0.1:34802\", \"127.0.0.1:34803\"], \
         replica_hosts: [node1, node2, node3]}\n",
    )
    .expect("write tables");

    // A bad configuration exits with 64 before binding anything.
    let bad = tokio::process::Command::new(bin)
        .args(["--tables", "/nonexistent.yaml", "--listen", "127.0.0.1:0"])
        .output()
        .await
        .expect("runs");
    assert_eq!(bad.status.code(), Some(64));

    // The metas bind port 0 and are found through /state; the admin port is picked here.
    let log = dir.path().join("sim.log");
    let (mut sim, admin) = start_on_free_ports("pegasus-meta-sim", async || {
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut cmd = std::process::Command::new(bin);
        cmd.arg("--tables")
            .arg(&tables)
            .args(["--listen", "127.0.0.1:0,127.0.0.1:0", "--leader", "1"])
            .args(["--admin-listen", &admin.to_string(), "--host-port-fields"]);
        let mut sim = Process::spawn("pegasus-meta-sim", &mut cmd, &log)?;
        let ready = sim
            .wait_ready(WAIT, async || {
                harness::http_get(admin, "/state").await.is_ok()
            })
            .await?;
        Ok(ready.map(|()| (sim, admin)))
    })
    .await
    .expect("the simulator starts");
    let (_, state) = http(admin, Method::GET, "/state", "").await;
    let meta = |i: usize| -> SocketAddr {
        state["metas"][i]["addr"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("meta address")
    };
    assert_eq!(state["leader"], meta(1).to_string());
    let mut conn = RawConn::connect(meta(1)).await;
    conn.send(&vector("node-v0-query-temp-hp.req.hex")).await;
    assert_eq!(
        conn.raw_reply().await,
        vector("node-v0-query-temp-hp.reply.hex")
    );

    let status = sim.terminate(WAIT).await.expect("exits in time");
    assert!(status.success(), "exit 0 on SIGTERM: {status}");
    conn.expect_closed().await;
}

#[tokio::test]
async fn create_drop_and_recall_change_the_tables() {
    use metaproxy_tests::idl;
    use pegasus_rpc::client::{GroupOptions, MetaGroup};
    use pegasus_rpc::codec::list_apps::{ListAppsResponse, app_status, list_apps_args};

    let sim = start(2, false).await;
    let metas: Vec<String> = sim.meta_addrs().iter().map(|a| a.to_string()).collect();
    let group = MetaGroup::new("sim", &metas, GroupOptions::default()).expect("metas");
    let deadline = || tokio::time::Instant::now() + Duration::from_secs(5);
    let call = async |name: &str, args: Vec<u8>| {
        let reply = group
            .call(name, &Bytes::from(args), deadline())
            .await
            .expect("answer");
        assert_eq!(reply.reply.rpc_error, ErrorCode::OK, "{name}");
        (reply.err, reply.reply.body)
    };
    let listed = async |status: i32| {
        let mut args = BytesMut::new();
        list_apps_args(status, &mut args);
        let (_, body) = call(rpc::LIST_APPS, args.to_vec()).await;
        let resp = ListAppsResponse::from_result(&body).expect("list_apps response");
        let mut names: Vec<String> = resp.infos.iter().map(|i| i.name.clone()).collect();
        names.sort();
        names
    };
    let query = async |table: &str| {
        group
            .query_config(table, deadline())
            .await
            .expect("query answered")
    };

    // create_app: configuration_create_app_response {1: err, 2: appid}; the new appid is one
    // above temp's (2).
    let (err, body) = call(
        "RPC_CM_CREATE_APP",
        idl::create_app("fresh", 8, vec![("k", "v")]),
    )
    .await;
    assert_eq!(err, ErrorCode::OK);
    assert_eq!(&body[body.len() - 9..], &[8, 0, 2, 0, 0, 0, 3, 0, 0]);
    let q = query("fresh").await;
    assert_eq!((q.err, q.app_id, q.partition_count), (ErrorCode::OK, 3, 8));
    assert_eq!(
        sim.table_state("fresh").expect("created").envs.get("k"),
        Some(&"v".to_owned())
    );
    let (err, _) = call("RPC_CM_CREATE_APP", idl::create_app("fresh", 8, vec![])).await;
    assert_eq!(err.as_str(), "ERR_APP_EXIST");
    assert_eq!(listed(app_status::AVAILABLE).await, ["fresh", "temp"]);

    // drop_app: gone from query_config, listed as dropped.
    let (err, _) = call("RPC_CM_DROP_APP", idl::drop_app("fresh")).await;
    assert_eq!(err, ErrorCode::OK);
    assert_eq!(query("fresh").await.err, ErrorCode::OBJECT_NOT_FOUND);
    assert_eq!(listed(app_status::AVAILABLE).await, ["temp"]);
    assert_eq!(listed(app_status::DROPPED).await, ["fresh"]);
    assert_eq!(listed(app_status::INVALID).await, ["fresh", "temp"]);
    let (err, _) = call("RPC_CM_DROP_APP", idl::drop_app("fresh")).await;
    assert_eq!(err, ErrorCode::APP_NOT_EXIST);

    // recall_app by appid under a new name: back, same appid and partitions.
    let (err, _) = call("RPC_CM_RECALL_APP", idl::recall_app(3, "temp")).await;
    assert_eq!(err.as_str(), "ERR_INVALID_PARAMETERS", "the name is in use");
    let (err, body) = call("RPC_CM_RECALL_APP", idl::recall_app(3, "again")).await;
    assert_eq!(err, ErrorCode::OK);
    assert!(
        body.windows(5).any(|w| w == b"again"),
        "the reply's app_info names the table"
    );
    let q = query("again").await;
    assert_eq!((q.err, q.app_id, q.partition_count), (ErrorCode::OK, 3, 8));
    assert_eq!(listed(app_status::DROPPED).await, Vec::<String>::new());
    assert!(sim.dropped_tables().is_empty());
    let (err, _) = call("RPC_CM_RECALL_APP", idl::recall_app(3, "again")).await;
    assert_eq!(err, ErrorCode::APP_NOT_EXIST, "nothing left to recall");
}

#[tokio::test]
async fn a_missing_rpc_is_handler_not_found() {
    let sim = start(1, false).await;
    sim.set_missing_rpcs(&["RPC_CM_LIST_APPS"]);
    let mut conn = RawConn::connect(sim.meta_addrs()[0]).await;
    let mut args = BytesMut::new();
    pegasus_rpc::codec::list_apps::list_apps_args(0, &mut args);
    let reply = conn.call(rpc::LIST_APPS, &args, 7).await;
    assert_eq!(reply.rpc_error, ErrorCode::HANDLER_NOT_FOUND);
    assert!(reply.body.is_empty());
    sim.set_missing_rpcs(&[]);
    let reply = conn.call(rpc::LIST_APPS, &args, 8).await;
    assert_eq!(reply.rpc_error, ErrorCode::OK);
}
