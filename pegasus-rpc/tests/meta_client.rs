//! The MetaServer client and group against scripted MetaServers on loopback: pipelining with
//! replies out of order, deadlines, reconnecting, leader redirects, hedging.
//!
//! The timing tests run on paused time. With real sockets that holds only because loopback TCP
//! delivers within the sending syscall: when the (single-threaded) test runtime runs out of work,
//! it polls the sockets once before it advances the clock to the next timer, and whatever a task
//! of this runtime wrote is readable by then. Nothing here waits on another thread or process.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pegasus_rpc::client::{
    CallError, CallPolicy, ClientOptions, GroupError, GroupOptions, MetaClient, MetaGroup,
};
use pegasus_rpc::codec::{
    self, DEFAULT_MAX_REQUEST_FRAME, ErrorCode, PartitionConfiguration, QueryCfgRequest,
    QueryCfgResponse, ReplyFrame, RequestFrame, RpcAddress,
};
use pegasus_rpc::codec::{
    DuplicationEntry, DuplicationStatus, QueryDuplicationRequest, QueryDuplicationResponse,
    UpdateAppEnvRequest, UpdateAppEnvResponse,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use metaproxy_tests::wakes::WakeCount;

/// What a scripted MetaServer does with the requests of one read: returns the replies to write
/// (in that order), or `None` to close the connection.
type Script = Arc<dyn Fn(Vec<RequestFrame>) -> Option<Vec<ReplyFrame>> + Send + Sync>;

struct Fake {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
}

async fn fake(script: Script) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let requests = Arc::new(AtomicUsize::new(0));
    let connections = Arc::new(AtomicUsize::new(0));
    let (req_count, conn_count) = (requests.clone(), connections.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            conn_count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(stream, script.clone(), req_count.clone()));
        }
    });
    Fake {
        addr,
        requests,
        connections,
    }
}

async fn serve(mut stream: TcpStream, script: Script, count: Arc<AtomicUsize>) {
    let mut buf = BytesMut::new();
    loop {
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut frames = Vec::new();
        while let Ok(Some(f)) = codec::decode_request(&mut buf, DEFAULT_MAX_REQUEST_FRAME) {
            frames.push(f);
        }
        count.fetch_add(frames.len(), Ordering::SeqCst);
        let Some(replies) = script(frames) else {
            return;
        };
        let mut out = BytesMut::new();
        for r in replies {
            r.encode(&mut out);
        }
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

fn answer(req: &RequestFrame, resp: &QueryCfgResponse) -> ReplyFrame {
    let mut body = BytesMut::new();
    resp.to_result(&mut body);
    ReplyFrame::ack(req.name(), req.seqid(), ErrorCode::OK, body.freeze())
}

/// A table whose app_id tells which request it answers: app_id = the request's seqid.
fn echo_seqid(req: &RequestFrame) -> ReplyFrame {
    let table = QueryCfgRequest::from_args(&req.args)
        .expect("query")
        .app_name;
    let resp = QueryCfgResponse {
        app_id: req.seqid(),
        partition_count: table.len() as i32,
        is_stateful: true,
        ..Default::default()
    };
    answer(req, &resp)
}

fn forward_to(leader: SocketAddr) -> impl Fn(&RequestFrame) -> ReplyFrame {
    move |req| {
        let SocketAddr::V4(v4) = leader else {
            panic!("ipv4")
        };
        let resp = QueryCfgResponse {
            err: ErrorCode::FORWARD_TO_OTHERS,
            partitions: vec![PartitionConfiguration {
                primary: RpcAddress::from_socket(v4),
                ..Default::default()
            }],
            ..Default::default()
        };
        answer(req, &resp)
    }
}

/// A MetaServer answering every query with [`echo_seqid`].
async fn echo_server() -> Fake {
    fake(Arc::new(|reqs: Vec<RequestFrame>| {
        Some(reqs.iter().map(echo_seqid).collect())
    }))
    .await
}

/// A MetaServer that is not the leader and names `leader` in its forward replies.
async fn forwarding_server(leader: SocketAddr) -> Fake {
    let fwd = forward_to(leader);
    fake(Arc::new(move |reqs: Vec<RequestFrame>| {
        Some(reqs.iter().map(&fwd).collect())
    }))
    .await
}

fn soon(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms)
}

#[tokio::test]
async fn pipelined_calls_get_their_own_replies_out_of_order() {
    // Replies to each batch of requests are written in reverse order.
    let server = fake(Arc::new(|reqs: Vec<RequestFrame>| {
        Some(reqs.iter().rev().map(echo_seqid).collect())
    }))
    .await;
    let client = Arc::new(MetaClient::new(
        server.addr.to_string(),
        ClientOptions::default(),
    ));
    let calls = (0..64).map(|i| {
        let client = client.clone();
        async move {
            let table = "t".repeat(i % 7 + 1);
            let resp = client
                .query_config(&table, soon(5000))
                .await
                .expect("answer");
            assert_eq!(
                resp.partition_count as usize,
                table.len(),
                "the reply to this call"
            );
            resp.app_id
        }
    });
    let seqids = futures::future::join_all(calls).await;
    let mut sorted = seqids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 64, "64 distinct seqids");
    assert_eq!(
        server.connections.load(Ordering::SeqCst),
        1,
        "one connection for all calls"
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_without_reply_times_out_and_later_calls_still_work() {
    // The first request gets no reply; later ones do.
    let first = Arc::new(AtomicUsize::new(0));
    let script: Script = Arc::new(move |reqs: Vec<RequestFrame>| {
        Some(
            reqs.iter()
                .filter(|_| first.fetch_add(1, Ordering::SeqCst) > 0)
                .map(echo_seqid)
                .collect(),
        )
    });
    let server = fake(script).await;
    let client = MetaClient::new(server.addr.to_string(), ClientOptions::default());
    let started = Instant::now();
    let err = client
        .query_config("t", soon(200))
        .await
        .expect_err("no reply");
    assert!(matches!(err, CallError::Timeout { .. }), "{err}");
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(200),
        "at the deadline"
    );
    client
        .query_config("t", soon(5000))
        .await
        .expect("the connection still works");
}

#[tokio::test]
async fn a_closed_connection_fails_pending_calls_and_reconnects() {
    // The first connection is closed on its first request; the second one answers.
    let conns = Arc::new(AtomicUsize::new(0));
    let c = conns.clone();
    let script: Script = Arc::new(move |reqs: Vec<RequestFrame>| {
        if c.fetch_add(1, Ordering::SeqCst) == 0 {
            None
        } else {
            Some(reqs.iter().map(echo_seqid).collect())
        }
    });
    let server = fake(script).await;
    let client = MetaClient::new(server.addr.to_string(), ClientOptions::default());
    let err = client
        .query_config("t", soon(5000))
        .await
        .expect_err("connection closed");
    assert!(matches!(err, CallError::ConnectionLost { .. }), "{err}");
    client
        .query_config("t", soon(5000))
        .await
        .expect("reconnected");
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn connection_refused_is_a_connect_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let client = MetaClient::new(format!("127.0.0.1:{port}"), ClientOptions::default());
    let err = client
        .query_config("t", soon(5000))
        .await
        .expect_err("refused");
    assert!(matches!(err, CallError::Connect { .. }), "{err}");
    assert_eq!(err.metric_label(), "connect");
}

#[tokio::test]
async fn an_rpc_level_error_is_reported_with_its_name() {
    let server = handlerless_server().await;
    let client = MetaClient::new(server.addr.to_string(), ClientOptions::default());
    let err = client
        .query_config("t", soon(5000))
        .await
        .expect_err("rpc error");
    assert_eq!(
        err,
        CallError::Rpc {
            addr: server.addr.to_string(),
            error: ErrorCode::HANDLER_NOT_FOUND
        }
    );
}

#[tokio::test]
async fn group_follows_the_leader_and_remembers_it() {
    let leader = echo_server().await;
    let follower = forwarding_server(leader.addr).await;
    let group = MetaGroup::new(
        "c1",
        &[follower.addr.to_string(), leader.addr.to_string()],
        GroupOptions::default(),
    )
    .expect("metas given");

    let resp = group
        .query_config("temp", soon(5000))
        .await
        .expect("answer");
    assert_eq!(
        resp.err,
        ErrorCode::OK,
        "the forward reply is never returned"
    );
    assert_eq!(group.leader(), leader.addr.to_string());
    assert_eq!(follower.requests.load(Ordering::SeqCst), 1);

    group
        .query_config("temp", soon(5000))
        .await
        .expect("answer");
    assert_eq!(
        follower.requests.load(Ordering::SeqCst),
        1,
        "the remembered leader is asked first"
    );
    assert_eq!(leader.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn group_learns_a_leader_it_was_not_configured_with() {
    let leader = echo_server().await;
    let follower = forwarding_server(leader.addr).await;
    let group = MetaGroup::new("c1", &[follower.addr.to_string()], GroupOptions::default())
        .expect("metas given");
    let resp = group
        .query_config("temp", soon(5000))
        .await
        .expect("answer");
    assert_eq!(resp.err, ErrorCode::OK);
    assert_eq!(
        group.meta_addrs(),
        [follower.addr.to_string(), leader.addr.to_string()]
    );
}

#[tokio::test(start_paused = true)]
async fn group_moves_on_from_a_dead_meta_and_hedges_a_slow_one() {
    let dead_port = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let alive = echo_server().await;
    let group = MetaGroup::new(
        "c1",
        &[format!("127.0.0.1:{dead_port}"), alive.addr.to_string()],
        GroupOptions::default(),
    )
    .expect("metas given");
    group
        .query_config("temp", soon(5000))
        .await
        .expect("the other meta answers");
    assert_eq!(group.leader(), alive.addr.to_string());

    // A meta that never answers: the hedge asks the next one long before the attempt timeout.
    let silent = fake(Arc::new(|_: Vec<RequestFrame>| Some(vec![]))).await;
    let opts = GroupOptions {
        attempt_timeout: Duration::from_secs(30),
        hedge_after: Some(Duration::from_millis(50)),
        ..GroupOptions::default()
    };
    let group = MetaGroup::new(
        "c2",
        &[silent.addr.to_string(), alive.addr.to_string()],
        opts,
    )
    .expect("metas given");
    let started = Instant::now();
    group
        .query_config("temp", soon(20_000))
        .await
        .expect("hedged answer");
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(50),
        "answered by the hedge at its delay, not after the attempt timeout"
    );
    assert_eq!(silent.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn group_of_dead_metas_fails_with_the_reason() {
    let ports: Vec<String> = futures::future::join_all((0..2).map(|_| async {
        let p = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        format!("127.0.0.1:{p}")
    }))
    .await;
    let group = MetaGroup::new("c1", &ports, GroupOptions::default()).expect("metas given");
    let err = group
        .query_config("temp", soon(3000))
        .await
        .expect_err("nobody answers");
    let GroupError::Unavailable {
        cluster,
        attempts,
        last,
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(cluster, "c1");
    assert!(*attempts >= 2, "{err}");
    assert!(last.contains("cannot connect"), "{err}");
}

#[tokio::test]
async fn service_not_active_everywhere_is_returned_as_the_answer() {
    let not_active = |reqs: Vec<RequestFrame>| {
        Some(
            reqs.iter()
                .map(|r| answer(r, &QueryCfgResponse::error(ErrorCode::SERVICE_NOT_ACTIVE)))
                .collect(),
        )
    };
    let a = fake(Arc::new(not_active)).await;
    let b = fake(Arc::new(not_active)).await;
    let group = MetaGroup::new(
        "c1",
        &[a.addr.to_string(), b.addr.to_string()],
        GroupOptions::default(),
    )
    .expect("metas given");
    let resp = group
        .query_config("temp", soon(5000))
        .await
        .expect("an answer");
    assert_eq!(resp.err, ErrorCode::SERVICE_NOT_ACTIVE);
    assert!(
        a.requests.load(Ordering::SeqCst) >= 1 && b.requests.load(Ordering::SeqCst) >= 1,
        "both were tried"
    );
}

/// The foundation's acceptance check: the simulator answers the MetaServer client directly, and
/// the group after a leader redirect.
#[tokio::test]
async fn the_simulator_answers_the_client_directly_and_after_a_redirect() {
    use metaproxy_tests::sim::{SimConfig, Simulator, TableSpec};
    let replicas =
        [34801, 34802, 34803].map(|p| std::net::SocketAddrV4::new([127, 0, 0, 1].into(), p));
    let table = TableSpec::new("temp", 2, 4, replicas);
    let sim = Simulator::start(SimConfig {
        leader: Some(1),
        ..SimConfig::loopback(2, vec![table])
    })
    .await
    .expect("simulator");
    let [follower, leader] = [sim.meta_addrs()[0], sim.meta_addrs()[1]];

    let direct = MetaClient::new(leader.to_string(), ClientOptions::default());
    let resp = direct
        .query_config("temp", soon(5000))
        .await
        .expect("leader answers");
    assert_eq!(
        (
            resp.err.clone(),
            resp.app_id,
            resp.partition_count,
            resp.partitions.len()
        ),
        (ErrorCode::OK, 2, 4, 4)
    );
    assert_eq!(resp.partitions[1].primary.to_string(), "127.0.0.1:34802");

    let to_follower = MetaClient::new(follower.to_string(), ClientOptions::default());
    let fwd = to_follower
        .query_config("temp", soon(5000))
        .await
        .expect("follower answers");
    assert_eq!(fwd.err, ErrorCode::FORWARD_TO_OTHERS);
    assert_eq!(
        fwd.partitions[0]
            .primary
            .to_socket()
            .map(std::net::SocketAddr::V4),
        Some(leader)
    );

    let group = MetaGroup::new(
        "sim",
        &[follower.to_string(), leader.to_string()],
        GroupOptions::default(),
    )
    .expect("metas given");
    assert_eq!(
        group
            .query_config("temp", soon(5000))
            .await
            .expect("followed"),
        resp
    );
    assert_eq!(group.leader(), leader.to_string());
    sim.shutdown().await;
}

fn reply_with<F: Fn(&mut BytesMut)>(req: &RequestFrame, encode: F) -> ReplyFrame {
    let mut body = BytesMut::new();
    encode(&mut body);
    ReplyFrame::ack(req.name(), req.seqid(), ErrorCode::OK, body.freeze())
}

/// A MetaServer that is not the leader, as it answers admin RPCs: `ERR_FORWARD_TO_OTHERS` and
/// no leader address (docs/protocol.md §14).
async fn admin_follower() -> Fake {
    fake(Arc::new(|reqs: Vec<RequestFrame>| {
        Some(
            reqs.iter()
                .map(|r| {
                    let forward = UpdateAppEnvResponse {
                        err: ErrorCode::FORWARD_TO_OTHERS,
                        hint_message: String::new(),
                    };
                    reply_with(r, |b| forward.to_result(b))
                })
                .collect(),
        )
    }))
    .await
}

fn duplications() -> QueryDuplicationResponse {
    QueryDuplicationResponse {
        err: ErrorCode::OK,
        appid: 2,
        entry_list: vec![DuplicationEntry {
            dupid: 1_700_000_000,
            status: DuplicationStatus::LOG,
            remote: "backup".into(),
            ..Default::default()
        }],
    }
}

/// The admin leader: applies nothing, but echoes what it was asked in the hint.
async fn admin_leader() -> Fake {
    fake(Arc::new(|reqs: Vec<RequestFrame>| {
        Some(
            reqs.iter()
                .map(|r| match r.name() {
                    codec::rpc::UPDATE_APP_ENV => {
                        let req = UpdateAppEnvRequest::from_args(&r.args).expect("request");
                        let resp = UpdateAppEnvResponse {
                            err: ErrorCode::OK,
                            hint_message: format!("{req:?}"),
                        };
                        reply_with(r, |b| resp.to_result(b))
                    }
                    codec::rpc::QUERY_DUPLICATION => {
                        let req = QueryDuplicationRequest::from_args(&r.args).expect("request");
                        assert_eq!(req.app_name, "temp");
                        reply_with(r, |b| duplications().to_result(b))
                    }
                    other => panic!("unexpected {other}"),
                })
                .collect(),
        )
    }))
    .await
}

#[tokio::test]
async fn group_sends_admin_calls_to_the_leader_past_a_forward_without_an_address() {
    let follower = admin_follower().await;
    let leader = admin_leader().await;
    let group = MetaGroup::new(
        "c1",
        &[follower.addr.to_string(), leader.addr.to_string()],
        GroupOptions::default(),
    )
    .expect("metas given");

    let fence =
        UpdateAppEnvRequest::set("temp", [("replica.deny_client_request", "timeout*write")]);
    let resp = group
        .update_app_env(&fence, soon(5000))
        .await
        .expect("answer");
    assert_eq!(resp.err, ErrorCode::OK);
    assert_eq!(
        resp.hint_message,
        format!("{fence:?}"),
        "the leader got the request as sent"
    );
    assert_eq!(follower.requests.load(Ordering::SeqCst), 1);
    assert_eq!(group.leader(), leader.addr.to_string(), "remembered");
    assert_eq!(
        group.meta_addrs().len(),
        2,
        "nothing learned from an admin forward"
    );

    let dups = group
        .query_duplication("temp", soon(5000))
        .await
        .expect("answer");
    assert_eq!(dups, duplications());
    assert_eq!(
        follower.requests.load(Ordering::SeqCst),
        1,
        "the leader is asked first now"
    );
}

#[tokio::test]
async fn a_final_answer_that_does_not_decode_is_a_bad_reply() {
    // `err` reads as ERR_OK, then the body breaks off: final for the group, useless to the caller.
    let truncated = fake(Arc::new(|reqs: Vec<RequestFrame>| {
        Some(
            reqs.iter()
                .map(|r| {
                    let mut body = BytesMut::new();
                    duplications().to_result(&mut body);
                    body.truncate(body.len() - 3);
                    ReplyFrame::ack(r.name(), r.seqid(), ErrorCode::OK, body.freeze())
                })
                .collect(),
        )
    }))
    .await;
    let group = MetaGroup::new("c1", &[truncated.addr.to_string()], GroupOptions::default())
        .expect("metas given");
    let err = group
        .query_duplication("temp", soon(5000))
        .await
        .expect_err("bad reply");
    assert!(
        matches!(&err, GroupError::BadReply { cluster, meta, .. }
            if cluster == "c1" && *meta == truncated.addr.to_string()),
        "{err}"
    );
    assert_eq!(err.metric_label(), "bad_reply");
    assert_eq!(truncated.requests.load(Ordering::SeqCst), 1, "not retried");
}

fn query_args(table: &str) -> Bytes {
    let mut args = BytesMut::new();
    QueryCfgRequest::new(table).to_args(&mut args);
    args.freeze()
}

fn unused_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("127.0.0.1:{port}")
}

#[tokio::test(start_paused = true)]
async fn a_write_is_not_hedged_nor_sent_again_where_it_may_have_arrived() {
    let opts = GroupOptions {
        attempt_timeout: Duration::from_secs(1),
        hedge_after: Some(Duration::from_millis(50)),
        ..GroupOptions::default()
    };
    // One MetaServer that reads and never answers: a read is sent again after each attempt
    // timeout, a write only once.
    for (policy, sent_again) in [(CallPolicy::READ, true), (CallPolicy::WRITE, false)] {
        let silent = fake(Arc::new(|_: Vec<RequestFrame>| Some(vec![]))).await;
        let group =
            MetaGroup::new("c1", &[silent.addr.to_string()], opts.clone()).expect("metas given");
        let err = group
            .call_with(
                codec::rpc::QUERY_CONFIG,
                &query_args("t"),
                soon(5000),
                policy,
            )
            .await
            .expect_err("no answer");
        let requests = silent.requests.load(Ordering::SeqCst);
        assert_eq!(requests > 1, sent_again, "{policy:?}: {requests} requests");
        if !sent_again {
            assert!(err.to_string().contains("may have been applied"), "{err}");
        }
    }
    // A silent MetaServer first, an answering one second, and a deadline before the attempt
    // timeout: only a hedge can get the answer, and only a read is hedged.
    let opts = GroupOptions {
        attempt_timeout: Duration::from_secs(30),
        ..opts
    };
    for (policy, hedged) in [(CallPolicy::READ, true), (CallPolicy::WRITE, false)] {
        let silent = fake(Arc::new(|_: Vec<RequestFrame>| Some(vec![]))).await;
        let alive = echo_server().await;
        let group = MetaGroup::new(
            "c1",
            &[silent.addr.to_string(), alive.addr.to_string()],
            opts.clone(),
        )
        .expect("metas given");
        let got = group
            .call_with(
                codec::rpc::QUERY_CONFIG,
                &query_args("t"),
                soon(5000),
                policy,
            )
            .await;
        assert_eq!(got.is_ok(), hedged, "{policy:?}: {got:?}");
        assert_eq!(alive.requests.load(Ordering::SeqCst), usize::from(hedged));
    }
}

#[tokio::test]
async fn a_write_moves_on_from_a_refused_connection() {
    let alive = echo_server().await;
    let group = MetaGroup::new(
        "c1",
        &[unused_port(), alive.addr.to_string()],
        GroupOptions::default(),
    )
    .expect("metas given");
    let reply = group
        .call_with(
            codec::rpc::QUERY_CONFIG,
            &query_args("t"),
            soon(5000),
            CallPolicy::WRITE,
        )
        .await
        .expect("never sent to the first: sent to the second");
    assert_eq!(reply.meta, alive.addr.to_string());
    assert_eq!(alive.requests.load(Ordering::SeqCst), 1);
}

/// A MetaServer older than every RPC: rpc-level `ERR_HANDLER_NOT_FOUND`, no body.
async fn handlerless_server() -> Fake {
    fake(Arc::new(|reqs: Vec<RequestFrame>| {
        Some(
            reqs.iter()
                .map(|r| {
                    ReplyFrame::ack(
                        r.name(),
                        r.seqid(),
                        ErrorCode::HANDLER_NOT_FOUND,
                        Bytes::new(),
                    )
                })
                .collect(),
        )
    }))
    .await
}

#[tokio::test]
async fn handler_not_found_everywhere_is_the_answer() {
    let old = [handlerless_server().await, handlerless_server().await];
    let group = MetaGroup::new(
        "c1",
        &old.iter().map(|m| m.addr.to_string()).collect::<Vec<_>>(),
        GroupOptions::default(),
    )
    .expect("metas given");
    let reply = group
        .call("RPC_CM_GET_ATOMIC_IDEMPOTENT", &query_args("t"), soon(5000))
        .await
        .expect("the MetaServers' own answer");
    assert_eq!(reply.reply.rpc_error, ErrorCode::HANDLER_NOT_FOUND);
    assert_eq!(reply.err, ErrorCode::HANDLER_NOT_FOUND);
    assert!(reply.reply.body.is_empty());
    for m in &old {
        assert_eq!(m.requests.load(Ordering::SeqCst), 1, "each asked once");
    }

    // A MetaServer that has the handler but is not active: its answer is the real one.
    let not_active = fake(Arc::new(|reqs: Vec<RequestFrame>| {
        Some(
            reqs.iter()
                .map(|r| answer(r, &QueryCfgResponse::error(ErrorCode::SERVICE_NOT_ACTIVE)))
                .collect(),
        )
    }))
    .await;
    let old = handlerless_server().await;
    let group = MetaGroup::new(
        "c1",
        &[old.addr.to_string(), not_active.addr.to_string()],
        GroupOptions::default(),
    )
    .expect("metas given");
    let reply = group
        .call("RPC_CM_GET_ATOMIC_IDEMPOTENT", &query_args("t"), soon(5000))
        .await
        .expect("an answer");
    assert_eq!(reply.reply.rpc_error, ErrorCode::OK);
    assert_eq!(reply.err, ErrorCode::SERVICE_NOT_ACTIVE);

    // The leader answers after an old MetaServer said it has no handler: the leader's answer.
    let alive = echo_server().await;
    let old = handlerless_server().await;
    let group = MetaGroup::new(
        "c1",
        &[old.addr.to_string(), alive.addr.to_string()],
        GroupOptions::default(),
    )
    .expect("metas given");
    let reply = group
        .call(codec::rpc::QUERY_CONFIG, &query_args("t"), soon(5000))
        .await
        .expect("an answer");
    assert_eq!(reply.err, ErrorCode::OK);
    assert_eq!(reply.meta, alive.addr.to_string());
}

#[tokio::test]
async fn a_group_call_does_not_wake_its_task_while_it_is_polled() {
    // On a multi-threaded runtime a task woken while it runs is queued again and another worker
    // is woken for it: a wake-up of a thread for nothing on every upstream call. The call is
    // polled by hand, until its reply came, with a waker that counts when it is woken.
    let server = echo_server().await;
    let group =
        MetaGroup::new("c1", &[server.addr.to_string()], GroupOptions::default()).expect("group");
    let args = query_args("t");
    let count = Arc::new(WakeCount::default());
    let mut call = std::pin::pin!(group.call(codec::rpc::QUERY_CONFIG, &args, soon(5000)));
    let reply = loop {
        if let std::task::Poll::Ready(reply) = count.poll(|cx| call.as_mut().poll(cx)) {
            break reply;
        }
        // Let the connection's tasks and the server run.
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    reply.expect("answered");
    assert_eq!(count.during_poll(), 0, "woken while polled");
}
