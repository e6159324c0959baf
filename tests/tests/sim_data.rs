//! The simulator's replica servers over real TCP on loopback: the official clients' request
//! frames get the documented replies byte for byte; pipelined requests, the failure modes, the
//! layout after a replica stops, the deny env after the config sync, and duplication between two
//! simulated clusters (with lag, and fenced then drained).

use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use metaproxy_tests::client::{ClientOptions, OpError, TableClient};
use metaproxy_tests::raw::{RawConn, WAIT};
use metaproxy_tests::sim::{
    DuplicationSpec, ReplicaMode, SimConfig, SimHandle, Simulator, TableSpec,
};
use metaproxy_tests::vectors::load as vector;
use pegasus_rpc::codec::key::{generate_key, key_hash, partition_index, thread_hash};
use pegasus_rpc::codec::{
    self, Blob, DEFAULT_MAX_REPLY_FRAME, ErrorCode, HeaderV0, IncrRequest, MessageBegin,
    MessageKind, Payload, ReadResponse, ReplyFrame, RequestFrame, RequestHeader, TtlResponse,
    UpdateRequest, UpdateResponse, rpc,
};
use tokio::net::TcpStream;

/// A reply with its `server` field set to the capture's address, so that a reply from a node on
/// a free port can be compared with the vectors byte for byte.
fn as_captured(reply: &ReplyFrame) -> Bytes {
    let body = match &*reply.message.name {
        "RPC_RRDB_RRDB_PUT_ACK" | "RPC_RRDB_RRDB_REMOVE_ACK" => {
            let mut r = UpdateResponse::from_result(&reply.body).expect("update_response");
            r.server = "127.0.0.1:34801".into();
            r.result_bytes()
        }
        "RPC_RRDB_RRDB_GET_ACK" => {
            let mut r = ReadResponse::from_result(&reply.body).expect("read_response");
            r.server = "127.0.0.1:34801".into();
            r.result_bytes()
        }
        "RPC_RRDB_RRDB_TTL_ACK" => {
            let mut r = TtlResponse::from_result(&reply.body).expect("ttl_response");
            r.server = "127.0.0.1:34801".into();
            r.result_bytes()
        }
        _ => reply.body.clone(),
    };
    ReplyFrame {
        body,
        ..reply.clone()
    }
    .to_bytes()
}

async fn start(config: SimConfig) -> SimHandle {
    Simulator::start(config).await.expect("simulator starts")
}

/// Table `temp` of §15.9: app 2, 8 partitions, on `replicas` served nodes.
async fn temp_on(replicas: usize) -> SimHandle {
    start(SimConfig::with_replicas(
        1,
        replicas,
        vec![TableSpec::served("temp", 2, 8)],
    ))
    .await
}

fn metas(sim: &SimHandle) -> Vec<String> {
    sim.meta_addrs().iter().map(|a| a.to_string()).collect()
}

fn client(sim: &SimHandle, table: &str) -> TableClient {
    TableClient::new(table, &metas(sim), ClientOptions::default()).expect("metas given")
}

/// A v0 data request as the Go client writes it, for the key of (hash_key, sort_key).
fn request(name: &str, seqid: i32, gpid: (i32, i32), hash: u64, args: Bytes) -> Bytes {
    RequestFrame {
        header: RequestHeader::V0(HeaderV0 {
            app_id: gpid.0,
            partition_index: gpid.1,
            client_timeout: 1000,
            thread_hash: thread_hash(gpid.0, gpid.1),
            partition_hash: hash,
            ..Default::default()
        }),
        message: MessageBegin::new(name, MessageKind::Call, seqid),
        args,
    }
    .to_bytes()
}

fn key_of(hash_key: &str, sort_key: &str) -> (Vec<u8>, u64) {
    let key = generate_key(hash_key.as_bytes(), sort_key.as_bytes()).expect("key");
    let hash = key_hash(&key).expect("hash");
    (key, hash)
}

fn pidx(hash: u64, count: i32) -> i32 {
    partition_index(hash, count).expect("positive count")
}

#[tokio::test]
async fn official_client_frames_get_the_documented_replies() {
    let sim = temp_on(1).await;
    let node = sim.replica_addrs()[0];
    let mut conn = RawConn::connect(node).await;

    // Node.js: PUT (seqid 0), GET (1), REMOVE (2), as captured.
    conn.send(&vector("node-v0-put-h1s1.req.hex")).await;
    let put = conn.reply().await;
    assert_eq!(as_captured(&put), vector("doc-replica-put-ok.reply.hex"));
    assert_eq!(
        as_captured(&put),
        vector("fake-replica-put-ok-node.reply.hex")
    );
    let server = UpdateResponse::from_result(&put.body)
        .expect("decodes")
        .server;
    assert_eq!(server, node.to_string(), "the node names itself");

    conn.send(&vector("node-v0-get-h1s1.req.hex")).await;
    assert_eq!(
        as_captured(&conn.reply().await),
        vector("fake-replica-get-ok-node.reply.hex")
    );

    // TTL of a key written without one (seqid 2): -1.
    let (key, hash) = key_of("h1", "s1");
    conn.send(&request(
        rpc::RRDB_TTL,
        2,
        (2, 2),
        hash,
        Blob::from(key.clone()).args_bytes(),
    ))
    .await;
    assert_eq!(
        as_captured(&conn.reply().await),
        vector("doc-replica-ttl-forever.reply.hex")
    );

    conn.send(&vector("node-v0-remove-h1s1.req.hex")).await;
    assert_eq!(
        as_captured(&conn.reply().await),
        vector("fake-replica-remove-ok-node.reply.hex")
    );

    // The Python GET after the remove (seqid 2 in its capture; the reply vector has seqid 1).
    conn.send(&vector("node-v0-get-h1s1.req.hex")).await;
    assert_eq!(
        as_captured(&conn.reply().await),
        vector("doc-replica-get-not-found.reply.hex")
    );

    // Java (v1) and Go (v0) PUTs are served the same way.
    for name in ["doc-java-v1-put-h1s1.req.hex", "doc-go-v0-put-h1s1.req.hex"] {
        conn.send(&vector(name)).await;
        let reply = conn.reply().await;
        assert_eq!(reply.rpc_error, ErrorCode::OK, "{name}");
        let resp = UpdateResponse::from_result(&reply.body).expect("decodes");
        assert_eq!((resp.error, resp.app_id, resp.partition_index), (0, 2, 2));
    }
    assert_eq!(
        sim.read("temp", b"h1", b"s1").expect("table"),
        Some("v1".into())
    );
    assert_eq!(sim.counters().replica.key_mismatches, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn refusals_are_the_documented_bytes() {
    // Two nodes: partition 2 (where "h1" goes) has its primary on node 0 and a secondary on 1.
    let sim = temp_on(2).await;
    let [n0, n1] = [sim.replica_addrs()[0], sim.replica_addrs()[1]];
    let state = sim.table_state("temp").expect("temp");
    assert_eq!(state.layout[2].primary.map(SocketAddr::V4), Some(n0));

    let mut secondary = RawConn::connect(n1).await;
    secondary.send(&vector("node-v0-put-h1s1.req.hex")).await;
    assert_eq!(
        secondary.reply().await.to_bytes(),
        vector("doc-replica-put-invalid-state.reply.hex")
    );

    // A node that does not host the gpid: app 3 is no table here.
    let other = start(SimConfig::with_replicas(
        1,
        1,
        vec![TableSpec::served("other", 3, 8)],
    ))
    .await;
    let mut conn = RawConn::connect(other.replica_addrs()[0]).await;
    conn.send(&vector("node-v0-get-h1s1.req.hex")).await;
    assert_eq!(
        conn.reply().await.to_bytes(),
        vector("doc-replica-get-object-not-found.reply.hex")
    );
    // An unknown RPC, and app_id 0: the handler is not found; the connection stays open.
    let (key, hash) = key_of("h1", "s1");
    for (name, gpid) in [("RPC_RRDB_RRDB_NOPE", (3, 2)), (rpc::RRDB_GET, (0, 2))] {
        conn.send(&request(
            name,
            7,
            gpid,
            hash,
            Blob::from(key.clone()).args_bytes(),
        ))
        .await;
        let reply = conn.reply().await;
        assert_eq!(reply.rpc_error, ErrorCode::HANDLER_NOT_FOUND, "{name}");
        assert!(reply.body.is_empty());
    }
    sim.shutdown().await;
    other.shutdown().await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let sim = temp_on(1).await;
    let mut conn = RawConn::connect(sim.replica_addrs()[0]).await;
    let mut batch = BytesMut::new();
    let n = 300;
    for i in 0..n {
        let (key, hash) = key_of(&format!("k{i}"), "s");
        let put = UpdateRequest {
            key: Blob::from(key.clone()),
            value: Blob::from(format!("v{i}").into_bytes()),
            ..Default::default()
        };
        let gpid = (2, pidx(hash, 8));
        batch.extend_from_slice(&request(rpc::RRDB_PUT, 2 * i, gpid, hash, put.args_bytes()));
        batch.extend_from_slice(&request(
            rpc::RRDB_GET,
            2 * i + 1,
            gpid,
            hash,
            Blob::from(key).args_bytes(),
        ));
    }
    conn.send(&batch).await;
    for i in 0..n {
        let put = conn.reply().await;
        assert_eq!((put.seqid(), put.rpc_error.is_ok()), (2 * i, true));
        let get = conn.reply().await;
        assert_eq!(get.seqid(), 2 * i + 1);
        let resp = ReadResponse::from_result(&get.body).expect("read_response");
        assert_eq!(resp.value.as_slice(), format!("v{i}").as_bytes());
    }
    let state = sim.table_state("temp").expect("temp");
    assert_eq!(state.key_count, n as usize);
    assert_eq!(state.last_decrees.iter().sum::<i64>(), i64::from(n));
    let counters = sim.counters();
    assert_eq!(counters.replica.requests, 2 * n as u64);
    assert_eq!(counters.replica.key_mismatches, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_client_reads_and_writes_through_the_meta() {
    let sim = temp_on(3).await;
    let c = client(&sim, "temp");
    for i in 0..50 {
        c.set(
            format!("h{i}").as_bytes(),
            b"s",
            format!("v{i}").as_bytes(),
            0,
        )
        .await
        .expect("set");
    }
    for i in 0..50 {
        let v = c.get(format!("h{i}").as_bytes(), b"s").await.expect("get");
        assert_eq!(v, Some(Bytes::from(format!("v{i}"))));
    }
    c.del(b"h0", b"s").await.expect("del");
    assert_eq!(c.get(b"h0", b"s").await.expect("get"), None);
    assert_eq!(
        sim.read("temp", b"h1", b"s").expect("table"),
        Some("v1".into())
    );
    // Every partition's primary got its share: three nodes, none idle.
    let by_node = sim.counters().replica.connections;
    assert_eq!(by_node, 3, "one connection per primary node");
    sim.shutdown().await;
}

#[tokio::test]
async fn failure_modes_of_a_replica_node() {
    let sim = temp_on(1).await;
    let node = sim.replica_addrs()[0];
    let (key, hash) = key_of("h1", "s1");
    let get = |seqid| {
        request(
            rpc::RRDB_GET,
            seqid,
            (2, 2),
            hash,
            Blob::from(key.clone()).args_bytes(),
        )
    };
    let mut conn = RawConn::connect(node).await;

    for (mode, want) in [
        (ReplicaMode::NotHosting, Some(ErrorCode::OBJECT_NOT_FOUND)),
        (ReplicaMode::InvalidState, Some(ErrorCode::INVALID_STATE)),
        (ReplicaMode::Blackhole, None),
        (ReplicaMode::Serving, Some(ErrorCode::OK)),
    ] {
        sim.set_replica_mode(0, mode).await.expect("mode");
        conn.send(&get(1)).await;
        let reply = conn.reply_within(Duration::from_millis(300)).await;
        assert_eq!(reply.map(|r| r.rpc_error), want, "{mode:?}");
    }

    // Stopped: connections are closed and refused until it serves again.
    sim.set_replica_mode(0, ReplicaMode::Stopped)
        .await
        .expect("stop");
    conn.expect_closed_silently().await;
    assert!(
        TcpStream::connect(node).await.is_err(),
        "refused while stopped"
    );
    sim.set_replica_mode(0, ReplicaMode::Serving)
        .await
        .expect("start");
    let mut conn = RawConn::connect(node).await;
    conn.send(&get(2)).await;
    assert_eq!(conn.reply().await.rpc_error, ErrorCode::OK);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_stopped_node_loses_its_primaries_and_clients_follow() {
    let sim = temp_on(3).await;
    let nodes = sim.replica_addrs();
    let SocketAddr::V4(n0) = nodes[0] else {
        panic!("IPv4")
    };
    let before = sim.table_state("temp").expect("temp").layout;
    let c = client(&sim, "temp");
    for i in 0..40 {
        c.set(format!("k{i}").as_bytes(), b"", b"v", 0)
            .await
            .expect("set");
    }

    sim.set_replica_mode(0, ReplicaMode::Stopped)
        .await
        .expect("stop");
    let after = sim.table_state("temp").expect("temp").layout;
    for (b, a) in before.iter().zip(&after) {
        assert!(!a.is_member(n0), "the stopped node serves nothing");
        if b.primary == Some(n0) {
            assert_eq!(
                a.primary,
                b.secondaries.first().copied(),
                "a secondary took over"
            );
            assert_eq!(a.ballot, b.ballot + 1);
        }
    }
    // The client gets refused connections, asks the meta again and reaches the new primaries.
    for i in 0..40 {
        let v = c
            .get(format!("k{i}").as_bytes(), b"")
            .await
            .expect("get after the move");
        assert_eq!(v, Some(Bytes::from("v")));
    }
    let queries = c.router().query_log().lock().expect("log").len();
    assert!(
        queries >= 2,
        "re-queried after the move ({queries} queries)"
    );

    sim.set_replica_mode(0, ReplicaMode::Serving)
        .await
        .expect("start");
    let back = sim.table_state("temp").expect("temp").layout;
    assert!(
        back.iter().all(|l| l.is_member(n0)),
        "back as a secondary everywhere"
    );
    assert!(back.iter().all(|l| l.primary != Some(n0)));
    sim.shutdown().await;
}

#[tokio::test]
async fn stopping_the_whole_cluster_stops_metas_and_replicas() {
    let sim = temp_on(2).await;
    let c = client(&sim, "temp");
    c.set(b"a", b"", b"1", 0).await.expect("set");
    let layout = sim.table_state("temp").expect("temp").layout;
    sim.stop_cluster().await;
    for addr in sim.meta_addrs().into_iter().chain(sim.replica_addrs()) {
        assert!(TcpStream::connect(addr).await.is_err(), "{addr} refuses");
    }
    assert_eq!(
        c.get(b"a", b"").await.map_err(|e| e.kind()),
        Err("session_reset".to_string())
    );
    sim.start_cluster().await.expect("start");
    assert_eq!(sim.table_state("temp").expect("temp").layout, layout);
    assert_eq!(c.get(b"a", b"").await.expect("get"), Some(Bytes::from("1")));
    sim.shutdown().await;
}

/// DEL of `replica.deny_client_request`.
fn del_deny() -> metaproxy_tests::sim::EnvUpdate {
    metaproxy_tests::sim::EnvUpdate {
        op: metaproxy_tests::sim::envs::OP_DEL,
        keys: Some(vec!["replica.deny_client_request".into()]),
        ..Default::default()
    }
}

/// Waits for the replica nodes' config sync to pick up an env change: the interval plus margin.
async fn after_sync(sim: &SimHandle) {
    tokio::time::sleep(sim.config_sync_interval() * 2 + Duration::from_millis(100)).await;
}

#[tokio::test]
async fn deny_env_takes_effect_after_the_config_sync() {
    let sim = temp_on(1).await;
    let c = client(&sim, "temp");
    c.set(b"a", b"", b"1", 0).await.expect("set");

    let answer = sim.set_app_env("temp", "replica.deny_client_request", "timeout*write");
    assert!(answer.err.is_ok(), "{answer:?}");
    after_sync(&sim).await;
    // Writes are dropped: the client times out; reads are served.
    assert_eq!(c.set(b"b", b"", b"2", 0).await, Err(OpError::Timeout));
    assert_eq!(c.get(b"a", b"").await.expect("get"), Some(Bytes::from("1")));
    assert_eq!(sim.read("temp", b"b", b"").expect("table"), None);
    assert!(sim.counters().replica.dropped >= 1);

    sim.set_app_env("temp", "replica.deny_client_request", "reconfig*write");
    after_sync(&sim).await;
    assert_eq!(
        c.set(b"b", b"", b"2", 0).await,
        Err(OpError::Rpc(ErrorCode::INVALID_STATE))
    );
    assert!(c.get(b"a", b"").await.is_ok());

    sim.set_app_env("temp", "replica.deny_client_request", "reconfig*all");
    after_sync(&sim).await;
    assert_eq!(
        c.get(b"a", b"").await,
        Err(OpError::Rpc(ErrorCode::INVALID_STATE))
    );

    // An invalid value is refused by the meta and changes nothing.
    let refused = sim.set_app_env("temp", "replica.deny_client_request", "later*write");
    assert_eq!(refused.err, ErrorCode::INVALID_PARAMETERS);
    let unknown = sim.set_app_env("temp", "max_replica_count.update", "3");
    assert_eq!(
        unknown.hint,
        "app_env 'max_replica_count.update' is not supported"
    );

    let del = sim.update_app_env("temp", &del_deny());
    assert_eq!(del.hint, "deleted keys:\n    replica.deny_client_request");
    after_sync(&sim).await;
    c.set(b"b", b"", b"2", 0).await.expect("writes again");
    sim.shutdown().await;
}

/// A source cluster duplicating table `temp` to a follower cluster's `temp`.
async fn pair(lag: Duration) -> (SimHandle, SimHandle) {
    let follower = start(SimConfig::with_replicas(
        1,
        2,
        vec![TableSpec::served("temp", 2, 8)],
    ))
    .await;
    let mut config = SimConfig::with_replicas(
        1,
        2,
        vec![
            TableSpec::served("temp", 2, 8)
                .with_duplication(DuplicationSpec::new(metas(&follower), "temp")),
        ],
    );
    config.dup_lag = lag;
    config.cluster_id = 1;
    let source = start(config).await;
    (source, follower)
}

/// Waits until every partition's confirmed decree reaches its last decree.
async fn drained(sim: &SimHandle, table: &str) -> Vec<i64> {
    metaproxy_tests::harness::eventually(WAIT, "duplication drained", async || {
        let state = sim.table_state(table)?;
        let dup = state.duplications.first()?;
        dup.partitions
            .iter()
            .all(|p| p.confirmed_decree >= p.last_committed_decree)
            .then(|| state.last_decrees.clone())
    })
    .await
    .expect("drains")
}

#[tokio::test]
async fn duplication_ships_writes_with_the_injected_lag() {
    let (source, follower) = pair(Duration::from_millis(400)).await;
    let c = client(&source, "temp");
    let start = tokio::time::Instant::now();
    c.set(b"dup", b"1", b"v", 0).await.expect("set");
    c.set(b"dup", b"2", b"v", 0).await.expect("set");
    c.del(b"dup", b"1").await.expect("del");
    // Not there before the lag, there after it.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(follower.read("temp", b"dup", b"2").expect("table"), None);
    let seen =
        metaproxy_tests::harness::eventually(WAIT, "the write on the follower", async || {
            follower.read("temp", b"dup", b"2").ok().flatten()
        })
        .await
        .expect("shipped");
    assert_eq!(seen, Bytes::from("v"));
    assert!(start.elapsed() >= Duration::from_millis(400));
    drained(&source, "temp").await;
    assert_eq!(
        follower.read("temp", b"dup", b"1").expect("table"),
        None,
        "the remove shipped too"
    );
    let state = source.table_state("temp").expect("temp");
    assert!(state.duplicating);
    let dup = &state.duplications[0];
    assert_eq!(dup.remote_app, "temp");
    assert_eq!(dup.shipped, 3);
    assert!(
        dup.lag_us.p50 >= 400_000,
        "the lag counts: {:?}",
        dup.lag_us
    );
    // Non-idempotent writes are refused on a duplication master.
    let (key, hash) = key_of("n", "");
    let incr = IncrRequest {
        key: Blob::from(key),
        increment: 1,
        expire_ts_seconds: 0,
    };
    let err = c.call(rpc::RRDB_INCR, hash, incr.args_bytes()).await;
    assert_eq!(
        err.map(|_| ()),
        Err(OpError::Rpc(ErrorCode::OPERATION_DISABLED))
    );
    source.shutdown().await;
    follower.shutdown().await;
}

#[tokio::test]
async fn a_fenced_primary_drains_to_its_follower() {
    let (source, follower) = pair(Duration::from_millis(200)).await;
    let c = client(&source, "temp");
    for i in 0..100 {
        c.set(format!("k{i}").as_bytes(), b"", b"v", 0)
            .await
            .expect("set");
    }
    source.set_app_env("temp", "replica.deny_client_request", "timeout*write");
    after_sync(&source).await;
    assert_eq!(c.set(b"late", b"", b"v", 0).await, Err(OpError::Timeout));
    let last = drained(&source, "temp").await;
    assert_eq!(last.iter().sum::<i64>(), 100, "no decree after the fence");
    for i in 0..100 {
        assert!(
            follower
                .read("temp", format!("k{i}").as_bytes(), b"")
                .expect("table")
                .is_some(),
            "k{i} reached the follower"
        );
    }
    source.shutdown().await;
    follower.shutdown().await;
}

#[tokio::test]
async fn a_denied_follower_stalls_duplication_without_losing_it() {
    let (source, follower) = pair(Duration::ZERO).await;
    follower.set_app_env("temp", "replica.deny_client_request", "reconfig*write");
    after_sync(&follower).await;
    let c = client(&source, "temp");
    c.set(b"x", b"", b"1", 0).await.expect("set");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(follower.read("temp", b"x", b"").expect("table"), None);
    let state = source.table_state("temp").expect("temp");
    let p = partition_index(
        key_hash(&generate_key(b"x", b"").expect("key")).expect("hash"),
        8,
    )
    .expect("pidx") as usize;
    let dp = state.duplications[0].partitions[p];
    assert!(dp.confirmed_decree < dp.last_committed_decree, "{dp:?}");
    let undo = follower.update_app_env("temp", &del_deny());
    assert!(undo.err.is_ok());
    follower.sync_replicas_now();
    drained(&source, "temp").await;
    assert_eq!(
        follower.read("temp", b"x", b"").expect("table"),
        Some("1".into())
    );
    source.shutdown().await;
    follower.shutdown().await;
}

#[allow(dead_code)]
fn v4(addr: SocketAddr) -> SocketAddrV4 {
    match addr {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => panic!("IPv4 only"),
    }
}

// ----- The meta's admin RPCs -------------------------------------------------------------------

use pegasus_rpc::client::{GroupOptions, MetaGroup};
use pegasus_rpc::codec::{
    AddDuplicationRequest, AddDuplicationResponse, QueryDuplicationResponse, UpdateAppEnvRequest,
};

fn group(sim: &SimHandle) -> MetaGroup {
    MetaGroup::new("sim", &metas(sim), GroupOptions::default()).expect("metas given")
}

fn soon() -> tokio::time::Instant {
    tokio::time::Instant::now() + WAIT
}

#[tokio::test]
async fn update_app_env_is_the_documented_exchange() {
    let sim = temp_on(1).await;
    let mut meta = RawConn::connect(sim.meta_addrs()[0]).await;
    meta.send(&vector("doc-admin-update-app-env-set.req.hex"))
        .await;
    assert_eq!(
        meta.reply().await.to_bytes(),
        vector("doc-admin-update-app-env-set.reply.hex")
    );
    let envs = sim.table_state("temp").expect("temp").envs;
    assert_eq!(envs["replica.deny_client_request"], "timeout*write");

    let g = group(&sim);
    let refused = g
        .update_app_env(
            &UpdateAppEnvRequest::set("temp", [("replica.deny_client_request", "bogus")]),
            soon(),
        )
        .await
        .expect("answered");
    assert_eq!(refused.err, ErrorCode::INVALID_PARAMETERS);
    let missing = g
        .update_app_env(&UpdateAppEnvRequest::del("nosuch", ["x"]), soon())
        .await
        .expect("answered");
    assert_eq!(
        (missing.err, missing.hint_message.as_str()),
        (ErrorCode::APP_NOT_EXIST, "app cannot be found")
    );
    let cleared = g
        .update_app_env(&UpdateAppEnvRequest::clear("temp", "replica"), soon())
        .await
        .expect("answered");
    assert_eq!(
        cleared.hint_message,
        "deleted keys:\n    replica.deny_client_request"
    );
    assert!(sim.table_state("temp").expect("temp").envs.is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn admin_rpcs_need_an_active_leader() {
    let sim = start(SimConfig {
        leader: Some(1),
        ..SimConfig::with_replicas(2, 1, vec![TableSpec::served("temp", 2, 8)])
    })
    .await;
    let mut follower = RawConn::connect(sim.meta_addrs()[0]).await;
    follower
        .send(&vector("doc-admin-update-app-env-set.req.hex"))
        .await;
    let reply = follower.reply().await;
    let resp = pegasus_rpc::codec::UpdateAppEnvResponse::from_result(&reply.body).expect("body");
    assert_eq!(resp.err, ErrorCode::FORWARD_TO_OTHERS);
    assert!(sim.table_state("temp").expect("temp").envs.is_empty());
    follower.send(&vector("doc-admin-query-dup.req.hex")).await;
    let reply = follower.reply().await;
    let resp = QueryDuplicationResponse::from_result(&reply.body).expect("body");
    assert_eq!(
        resp,
        QueryDuplicationResponse {
            err: ErrorCode::FORWARD_TO_OTHERS,
            ..Default::default()
        }
    );
    sim.set_not_active(1, true).expect("switch");
    let resp = group(&sim)
        .query_duplication("temp", soon())
        .await
        .expect("answered");
    assert_eq!(resp.err, ErrorCode::SERVICE_NOT_ACTIVE);
    sim.shutdown().await;
}

/// The document's 2.6 query_duplication reply with this run's dupid, create time and decrees, so
/// that the simulator's reply can be compared with it field by field.
fn documented_like(ours: &QueryDuplicationResponse) -> QueryDuplicationResponse {
    let mut doc = QueryDuplicationResponse::from_result(
        &codec::decode_reply(
            &mut BytesMut::from(&vector("doc-admin-query-dup.reply.hex")[..]),
            DEFAULT_MAX_REPLY_FRAME,
        )
        .expect("decodes")
        .expect("whole")
        .body,
    )
    .expect("response");
    let (d, o) = (&mut doc.entry_list[0], &ours.entry_list[0]);
    d.dupid = o.dupid;
    d.create_ts = o.create_ts;
    d.remote = o.remote.clone();
    d.remote_replica_count = o.remote_replica_count;
    d.partition_states = o.partition_states.clone();
    doc.appid = ours.appid;
    doc
}

#[tokio::test]
async fn query_duplication_in_the_2_6_and_2_5_shapes() {
    let follower = temp_on(1).await;
    for (progress, with_states) in [
        (metaproxy_tests::sim::DupProgress::Full, true),
        (metaproxy_tests::sim::DupProgress::None, false),
    ] {
        let mut config = SimConfig::with_replicas(
            1,
            1,
            vec![
                TableSpec::served("temp", 2, 8).with_duplication(DuplicationSpec {
                    cluster: Some("target_cluster".into()),
                    ..DuplicationSpec::new(metas(&follower), "temp")
                }),
            ],
        );
        config.dup_progress = progress;
        let source = start(config).await;
        let c = client(&source, "temp");
        c.set(b"h1", b"s1", b"v1", 0).await.expect("set");
        drained(&source, "temp").await;

        let mut meta = RawConn::connect(source.meta_addrs()[0]).await;
        meta.send(&vector("doc-admin-query-dup.req.hex")).await;
        let reply = meta.reply().await;
        assert_eq!(reply.seqid(), 2);
        let ours = QueryDuplicationResponse::from_result(&reply.body).expect("response");
        let entry = &ours.entry_list[0];
        assert_eq!(entry.remote, "target_cluster");
        if with_states {
            assert_eq!(ours, documented_like(&ours));
            let states = entry.partition_states.as_ref().expect("2.6 progress");
            assert_eq!(states.len(), 8);
            assert_eq!(states[&2].confirmed_decree, 1, "h1 is in partition 2");
            assert_eq!(states[&2].last_committed_decree, 1);
        } else {
            // 2.5.0 writes fields 1-4 and 7 only: no progress at all through the meta.
            let mut doc = documented_like(&ours);
            let e = &mut doc.entry_list[0];
            (
                e.remote_app_name,
                e.remote_replica_count,
                e.partition_states,
            ) = (None, None, None);
            assert_eq!(ours, doc);
            // The document's v2.5.0 reply is 141 bytes with the 14-byte remote name.
            assert_eq!(reply.to_bytes().len(), 141, "the v2.5.0 shape");
        }
        source.shutdown().await;
    }
    follower.shutdown().await;
}

#[tokio::test]
async fn add_duplication_over_rpc() {
    let follower = temp_on(1).await;
    let mut config = SimConfig::with_replicas(1, 1, vec![TableSpec::served("temp", 2, 8)]);
    config.cluster_name = "primary".into();
    config
        .remote_clusters
        .insert("backup".into(), metas(&follower));
    let source = start(config).await;
    let g = group(&source);
    let add = async |req: AddDuplicationRequest| {
        let mut args = BytesMut::new();
        req.to_args(&mut args);
        let reply = g
            .call(
                pegasus_rpc::codec::rpc::ADD_DUPLICATION,
                &args.freeze(),
                soon(),
            )
            .await
            .expect("answered");
        AddDuplicationResponse::from_result(&reply.reply.body).expect("response")
    };
    for (remote, err) in [
        ("primary", ErrorCode::INVALID_PARAMETERS),
        ("elsewhere", ErrorCode::INVALID_PARAMETERS),
    ] {
        let resp = add(AddDuplicationRequest::new("temp", remote)).await;
        assert_eq!(resp.err, err, "{remote}");
        assert!(resp.hint.is_some());
    }
    let missing = add(AddDuplicationRequest::new("nosuch", "backup")).await;
    assert_eq!(missing.err, ErrorCode::APP_NOT_EXIST);
    let ok = add(AddDuplicationRequest::new("temp", "backup")).await;
    assert_eq!((ok.err, ok.appid), (ErrorCode::OK, 2));
    assert_eq!(ok.remote_app_name.as_deref(), Some("temp"));
    let again = add(AddDuplicationRequest::new("temp", "backup")).await;
    assert_eq!(
        (again.err.as_str(), again.dupid),
        ("ERR_DUP_EXIST", ok.dupid)
    );
    let c = client(&source, "temp");
    c.set(b"after", b"", b"1", 0).await.expect("set");
    drained(&source, "temp").await;
    assert_eq!(
        follower.read("temp", b"after", b"").expect("table"),
        Some("1".into())
    );
    let q = g.query_duplication("temp", soon()).await.expect("answered");
    assert_eq!((q.err, q.entry_list.len()), (ErrorCode::OK, 1));
    assert_eq!(q.entry_list[0].remote, "backup");
    source.shutdown().await;
    follower.shutdown().await;
}

// ----- The admin HTTP API and the binaries ----------------------------------------------------

/// One admin API exchange: the status and the JSON body.
async fn http(admin: SocketAddr, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let method: metaproxy_tests::harness::Method = method.parse().expect("an HTTP method");
    let response = metaproxy_tests::harness::http(admin, method, path, body)
        .await
        .expect("the admin API answers");
    (response.status, response.json().expect("JSON"))
}

#[tokio::test]
async fn admin_api_drives_the_data_plane() {
    let follower = temp_on(1).await;
    let mut config = SimConfig::with_replicas(1, 2, vec![TableSpec::served("temp", 2, 8)]);
    config.admin_listen = Some("127.0.0.1:0".parse().expect("addr"));
    let sim = start(config).await;
    let admin = sim.admin_addr().expect("admin");
    let c = client(&sim, "temp");
    c.set(b"h1", b"s1", b"v1", 0).await.expect("set");

    let (status, data) = http(admin, "GET", "/data/temp?hash_key=h1&sort_key=s1", "").await;
    assert_eq!(
        (status, &data["found"], &data["value"]),
        (200, &true.into(), &"v1".into())
    );
    let (_, data) = http(admin, "GET", "/data/temp?hash_key=nope", "").await;
    assert_eq!(data["found"], false);
    assert_eq!(
        http(admin, "GET", "/data/nosuch?hash_key=a", "").await.0,
        404
    );

    let envs =
        r#"{"op": "set", "keys": ["replica.deny_client_request"], "values": ["reconfig*all"]}"#;
    let (status, answer) = http(admin, "POST", "/tables/temp/envs", envs).await;
    assert_eq!((status, &answer["err"]), (200, &"ERR_OK".into()));
    let bad = r#"{"op": "set", "keys": ["nope"], "values": ["1"]}"#;
    let (_, answer) = http(admin, "POST", "/tables/temp/envs", bad).await;
    assert_eq!(answer["hint"], "app_env 'nope' is not supported");

    let dup = format!(
        r#"{{"to": ["{}"], "app": "temp"}}"#,
        follower.meta_addrs()[0]
    );
    let (status, added) = http(admin, "POST", "/tables/temp/duplications", &dup).await;
    assert_eq!((status, &added["existed"]), (200, &false.into()));
    assert_eq!(
        http(admin, "PUT", "/duplication/lag", r#"{"lag_ms": 20}"#)
            .await
            .0,
        200
    );
    assert_eq!(sim.dup_lag(), Duration::from_millis(20));

    let (status, table) = http(admin, "GET", "/tables/temp", "").await;
    assert_eq!(status, 200);
    assert_eq!(table["app_id"], 2);
    assert_eq!(table["envs"]["replica.deny_client_request"], "reconfig*all");
    assert_eq!(table["key_count"], 1);
    assert_eq!(table["last_decrees"][2], 1, "h1 is in partition 2");
    assert_eq!(table["duplicating"], true);
    let d = &table["duplications"][0];
    assert_eq!(d["remote_app"], "temp");
    assert_eq!(d["partitions"].as_array().map(Vec::len), Some(8));
    assert_eq!(http(admin, "GET", "/tables/nosuch", "").await.0, 404);

    let node = sim.replica_addrs()[1];
    let (status, replicas) = http(
        admin,
        "PUT",
        &format!("/replicas/{node}/mode"),
        r#"{"mode": "stopped"}"#,
    )
    .await;
    assert_eq!((status, &replicas[1]["mode"]), (200, &"stopped".into()));
    assert!(TcpStream::connect(node).await.is_err());
    let (_, table) = http(admin, "GET", "/tables/temp", "").await;
    assert_eq!(
        table["layout"][1]["primary"],
        sim.replica_addrs()[0].to_string()
    );
    assert_eq!(
        http(admin, "PUT", "/replicas/9/mode", r#"{"mode": "serving"}"#)
            .await
            .0,
        404
    );
    assert_eq!(
        http(admin, "PUT", "/replicas/0/mode", r#"{"mode": "sleepy"}"#)
            .await
            .0,
        400
    );
    let (_, all) = http(admin, "PUT", "/replicas/mode", r#"{"mode": "blackhole"}"#).await;
    assert_eq!(
        (&all[0]["mode"], &all[1]["mode"]),
        (&"blackhole".into(), &"blackhole".into())
    );
    assert_eq!(sim.replica_mode(0).expect("node 0"), ReplicaMode::Blackhole);

    assert_eq!(http(admin, "POST", "/cluster/stop", "").await.0, 200);
    assert!(TcpStream::connect(sim.meta_addrs()[0]).await.is_err());
    let (_, state) = http(admin, "GET", "/state", "").await;
    assert_eq!(state["cluster_stopped"], true);
    assert_eq!(http(admin, "POST", "/cluster/start", "").await.0, 200);
    assert!(TcpStream::connect(sim.meta_addrs()[0]).await.is_ok());
    let (_, counters) = http(admin, "GET", "/counters", "").await;
    assert!(
        counters["replica"]["requests"]
            .as_u64()
            .is_some_and(|n| n >= 1)
    );
    sim.shutdown().await;
    follower.shutdown().await;
}

#[tokio::test]
async fn the_binaries_serve_and_load_the_data_plane() {
    let port = || metaproxy_tests::free_port().expect("free port");
    let (meta, r1, r2) = (port(), port(), port());
    let dir = tempfile::tempdir().expect("tempdir");
    let tables = dir.path().join("tables.yaml");
    std::fs::write(
        &tables,
        "tables:\n  - {name: temp, app_id: 2, partition_count: 8}\n  \
         - {name: shown, app_id: 3, partition_count: 4, replicas: [\"10.0.0.1:34801\"]}\n",
    )
    .expect("tables.yaml");
    let mut sim = std::process::Command::new(env!("CARGO_BIN_EXE_pegasus-meta-sim"))
        .args(["--tables", tables.to_str().expect("utf-8")])
        .args(["--listen", &format!("127.0.0.1:{meta}")])
        .args([
            "--replica-listen",
            &format!("127.0.0.1:{r1},127.0.0.1:{r2}"),
            "--config-sync-interval",
            "100ms",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("simulator starts");
    let meta_addr: SocketAddr = format!("127.0.0.1:{meta}").parse().expect("addr");
    metaproxy_tests::harness::eventually(WAIT, "the simulator listening", async || {
        TcpStream::connect(meta_addr).await.ok()
    })
    .await
    .expect("listens");
    let load = tokio::process::Command::new(env!("CARGO_BIN_EXE_pegasus-load"))
        .args(["--workload", "kv", "--target", &meta_addr.to_string()])
        .args(["--connections", "2", "--depth", "4", "--requests", "400"])
        .args(["--table", "temp", "--verify", "--json"])
        .output()
        .await
        .expect("pegasus-load runs");
    let _ = sim.kill();
    let _ = sim.wait();
    assert!(
        load.status.success(),
        "{}",
        String::from_utf8_lossy(&load.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&load.stdout).expect("JSON report");
    let writes = report["writes"]["ok"].as_u64().expect("writes");
    assert!(writes > 0);
    assert_eq!(
        writes + report["reads"]["ok"].as_u64().expect("reads"),
        400,
        "every operation succeeded: {report}"
    );
    assert_eq!(report["verify"]["checked"], writes);
    assert_eq!(report["verify"]["lost"], 0);
    assert!(report["timeline"].as_array().is_some_and(|t| !t.is_empty()));
}
