//! The proxy with routes in a real ZooKeeper (started by the harness): lazy reads, watches,
//! record changes and deletions, bad records, ZooKeeper restarts and session expiry.

mod common;

use std::time::Duration;

use common::*;
use metaproxy_tests::bystander::{Bystander, HANG, Phase};
use metaproxy_tests::relay::Relay;
use metaproxy_tests::require;
use metaproxy_tests::sim::SimHandle;
use metaproxy_tests::zk::{ZOOKEEPER, ZkEnsemble, ZkServer};
use pegasus_rpc::codec::ErrorCode;
use zookeeper_client as zk;

const ROOT: &str = "/metaproxy/c3srv-pegasus";

async fn zk_client(server: &ZkServer) -> zk::Client {
    zk_client_at(&server.connect_string()).await
}

/// A client of the ZooKeeper at `connect`, with the root created.
async fn zk_client_at(connect: &str) -> zk::Client {
    let client = zk::Client::connect(connect).await.expect("zk connects");
    let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    client.mkdir(ROOT, &opts).await.expect("root");
    client
}

async fn put(client: &zk::Client, table: &str, data: &[u8]) {
    put_znode(client, &format!("{ROOT}/{table}"), data).await;
}

/// Waits until a query for `table` answers with `app_id` (or with `err`).
async fn until_answer(client: &mut RawConn, table: &str, want: Result<i32, ErrorCode>) {
    eventually(&format!("{table} answers {want:?}"), async || {
        let resp = client.query(table, 1).await;
        match &want {
            Ok(app_id) => resp.err == ErrorCode::OK && resp.app_id == *app_id,
            Err(err) => resp.err == *err,
        }
    })
    .await;
}

#[tokio::test]
async fn routes_follow_the_record_through_change_and_deletion() {
    require!(ZOOKEEPER);
    let server = ZkServer::launch().await.expect("zookeeper");
    let zkc = zk_client(&server).await;
    let a = sim(1, vec![table("temp", 2, 8)]).await;
    let b = sim(1, vec![table("temp", 7, 8)]).await;
    // The design spelling first; later the Go spelling that admin-cli's migrator writes.
    put(&zkc, "temp", &record("cluster-a", &a).to_json()).await;
    let proxy = start_with_zk(&server.connect_string(), ROOT, |_| {}).await;
    let mut client = RawConn::connect(proxy.addr()).await;

    assert_eq!(client.query("temp", 1).await.app_id, 2);
    let go_spelling = format!(
        "{{\"cluster_name\":\"cluster-b\",\"meta_addrs\":\"{}\"}}",
        b.meta_addrs()[0]
    );
    put(&zkc, "temp", go_spelling.as_bytes()).await;
    until_answer(&mut client, "temp", Ok(7)).await;

    zkc.delete(&format!("{ROOT}/temp"), None)
        .await
        .expect("delete");
    until_answer(&mut client, "temp", Err(ErrorCode::OBJECT_NOT_FOUND)).await;

    // Created again: the root's recursive watch tells the proxy, which knew the table missing.
    put(&zkc, "temp", &record("cluster-a", &a).to_json()).await;
    until_answer(&mut client, "temp", Ok(2)).await;

    let view = http_get(proxy.admin_addr(), "/routes")
        .await
        .expect("admin answers")
        .json()
        .expect("json");
    assert_eq!(view["source"], "zookeeper");
    assert_eq!(view["zk_connected"], true);
    let row = &view["routes"][0];
    assert_eq!(
        (
            row["table"].as_str(),
            row["state"].as_str(),
            row["cluster"].as_str()
        ),
        (Some("temp"), Some("found"), Some("cluster-a"))
    );
    assert_eq!(row["znode_version"], 0, "a new node");
}

#[tokio::test]
async fn a_missing_table_is_the_metaservers_not_found() {
    require!(ZOOKEEPER);
    let server = ZkServer::launch().await.expect("zookeeper");
    let _zkc = zk_client(&server).await;
    let proxy = start_with_zk(&server.connect_string(), ROOT, |_| {}).await;
    let mut client = RawConn::connect(proxy.addr()).await;
    client.send(&vector("python-v0-query-nosuch.req.hex")).await;
    assert_eq!(
        client.raw_reply().await,
        vector("python-v0-query-nosuch.reply.hex")
    );
    // A name no MetaServer would have never reaches ZooKeeper.
    assert_eq!(
        client.query("../etc", 2).await.err,
        ErrorCode::OBJECT_NOT_FOUND
    );
    let reads = metrics(&proxy).await;
    assert_eq!(
        reads.value("metaproxy_zk_reads_total", &[("result", "missing")]),
        1.0,
        "only nosuch was read"
    );
}

#[tokio::test]
async fn not_ready_and_retryable_until_zookeeper_serves() {
    require!(ZOOKEEPER);
    let mut server = ZkServer::launch().await.expect("zookeeper");
    let zkc = zk_client(&server).await;
    let a = sim(1, vec![capture_table()]).await;
    put(&zkc, "temp", &record("c1", &a).to_json()).await;
    drop(zkc);
    server.kill().await.expect("zookeeper stops");
    let proxy = start(cli(|c| {
        c.zk = Some(server.connect_string());
        c.zk_root = Some(ROOT.into());
    }))
    .await;
    assert_eq!(
        http_get(proxy.admin_addr(), "/ready")
            .await
            .expect("admin answers")
            .status,
        503,
        "no session yet"
    );
    let mut client = RawConn::connect(proxy.addr()).await;
    assert_eq!(
        client.query("temp", 1).await.err,
        ErrorCode::SERVICE_NOT_ACTIVE,
        "clients retry this"
    );

    server.restart().await.expect("zookeeper starts");
    eventually("ready once the session is up", || async {
        let ready = http_get(proxy.admin_addr(), "/ready").await;
        ready.is_ok_and(|r| r.status == 200)
    })
    .await;
    until_answer(&mut client, "temp", Ok(2)).await;
}

#[tokio::test]
async fn concurrent_first_queries_cause_one_read() {
    require!(ZOOKEEPER);
    let server = ZkServer::launch().await.expect("zookeeper");
    let zkc = zk_client(&server).await;
    let a = sim(1, vec![capture_table()]).await;
    put(&zkc, "temp", &record("c1", &a).to_json()).await;
    let proxy = start_with_zk(&server.connect_string(), ROOT, |_| {}).await;
    let answers = futures::future::join_all((0..50).map(|i| {
        let addr = proxy.addr();
        async move { RawConn::connect(addr).await.query("temp", i).await.err }
    }))
    .await;
    assert!(answers.iter().all(|e| *e == ErrorCode::OK));
    let reads = metrics(&proxy).await;
    assert_eq!(
        reads.value("metaproxy_zk_reads_total", &[("result", "found")]),
        1.0,
        "50 concurrent first queries, one ZooKeeper read"
    );
}

#[tokio::test]
async fn a_bad_record_is_an_error_reply_and_a_good_one_survives_a_bad_update() {
    require!(ZOOKEEPER);
    let server = ZkServer::launch().await.expect("zookeeper");
    let zkc = zk_client(&server).await;
    let a = sim(1, vec![table("good", 3, 4)]).await;
    put(&zkc, "broken", b"{not json").await;
    put(&zkc, "nofields", br#"{"app_id": 3}"#).await;
    put(&zkc, "good", &record("c1", &a).to_json()).await;
    let proxy = start_with_zk(&server.connect_string(), ROOT, |_| {}).await;
    let mut client = RawConn::connect(proxy.addr()).await;

    assert_eq!(client.query("broken", 1).await.err, ErrorCode::INVALID_DATA);
    assert_eq!(
        client.query("nofields", 2).await.err,
        ErrorCode::INVALID_DATA
    );
    assert_eq!(
        client.query("good", 3).await.app_id,
        3,
        "other tables are served"
    );

    // The good record is overwritten with garbage: the last good route stays in force.
    put(&zkc, "good", b"garbage").await;
    eventually("the bad update is reported", || async {
        let routes = http_get(proxy.admin_addr(), "/routes").await;
        routes.is_ok_and(|r| r.body.contains("not JSON"))
    })
    .await;
    assert_eq!(client.query("good", 4).await.app_id, 3);
    // Fixed again, it is picked up.
    let b = sim(1, vec![table("good", 9, 4)]).await;
    put(&zkc, "good", &record("c2", &b).to_json()).await;
    until_answer(&mut client, "good", Ok(9)).await;
}

#[tokio::test]
async fn zookeeper_restart_and_session_expiry_keep_routes_served() {
    require!(ZOOKEEPER);
    let mut server = ZkServer::launch().await.expect("zookeeper");
    let zkc = zk_client(&server).await;
    let a = sim(1, vec![table("temp", 2, 4)]).await;
    let b = sim(1, vec![table("temp", 5, 4)]).await;
    put(&zkc, "temp", &record("a", &a).to_json()).await;
    drop(zkc);
    let proxy = start_with_zk(&server.connect_string(), ROOT, |c| {
        c.zk_session_timeout = Some("2s".into())
    })
    .await;
    let mut client = RawConn::connect(proxy.addr()).await;
    assert_eq!(client.query("temp", 1).await.app_id, 2);

    // ZooKeeper goes away for longer than the session timeout: the session expires on the
    // client side, and cached routes keep being served all along.
    server.kill().await.expect("zookeeper stops");
    eventually("the proxy sees ZooKeeper gone", || async {
        !proxy.routes().is_empty() && proxy.routes().staleness() > Duration::ZERO
    })
    .await;
    let expired_before = metrics(&proxy)
        .await
        .value("metaproxy_zk_session_expirations_total", &[]);
    // Until the session has expired and the staleness shows 4 s of it, every query is served.
    eventually("the session expired and staleness exposed", async || {
        assert_eq!(
            client.query("temp", 2).await.app_id,
            2,
            "served from the cache"
        );
        let m = metrics(&proxy).await;
        m.value("metaproxy_route_staleness_seconds", &[]) >= 4.0
            && m.value("metaproxy_zk_session_expirations_total", &[]) > expired_before
    })
    .await;
    assert_eq!(
        metrics(&proxy).await.value("metaproxy_zk_connected", &[]),
        0.0
    );

    // Back: a new session, the route re-read, and later changes arrive through the new root watch.
    server.restart().await.expect("zookeeper restarts");
    eventually("a new session", || async {
        matches!(proxy.routes(), metaproxy::route::Routes::Zk(zk) if zk.is_connected())
    })
    .await;
    let zkc = zk_client(&server).await;
    put(&zkc, "temp", &record("b", &b).to_json()).await;
    until_answer(&mut client, "temp", Ok(5)).await;
    assert_eq!(proxy.routes().staleness(), Duration::ZERO);
}

/// A network partition between the proxy and a ZooKeeper that stays up: the session expires, the
/// record changes meanwhile, and once the partition heals the new session reads the change.
#[tokio::test]
async fn a_partition_expires_the_session_and_missed_changes_arrive_after() {
    require!(ZOOKEEPER);
    let server = ZkServer::launch().await.expect("zookeeper");
    let zkc = zk_client(&server).await;
    let relay = Relay::start(
        format!("127.0.0.1:{}", server.port())
            .parse()
            .expect("addr"),
    )
    .await
    .expect("relay");
    let a = sim(1, vec![table("temp", 2, 4)]).await;
    let b = sim(1, vec![table("temp", 5, 4)]).await;
    put(&zkc, "temp", &record("a", &a).to_json()).await;
    let proxy = start_with_zk(&relay.addr().to_string(), ROOT, |c| {
        c.zk_session_timeout = Some("2s".into())
    })
    .await;
    let mut client = RawConn::connect(proxy.addr()).await;
    assert_eq!(client.query("temp", 1).await.app_id, 2);

    relay.black_hole(true);
    put(&zkc, "temp", &record("b", &b).to_json()).await;
    eventually("the session expired", || async {
        let m = metrics(&proxy).await;
        m.value("metaproxy_zk_session_expirations_total", &[]) >= 1.0
    })
    .await;
    assert_eq!(
        client.query("temp", 2).await.app_id,
        2,
        "the cached route is served meanwhile"
    );

    relay.black_hole(false);
    until_answer(&mut client, "temp", Ok(5)).await;
    assert!(
        metrics(&proxy)
            .await
            .value("metaproxy_zk_sessions_total", &[])
            >= 2.0,
        "a new session was built"
    );

    // Watches were re-armed on the new session: a later change arrives too.
    put(&zkc, "temp", &record("a", &a).to_json()).await;
    until_answer(&mut client, "temp", Ok(2)).await;
}

/// Records `temp` as routed to `to` (answering `app_id`) through a new client of `connect`, and
/// waits until the proxy answers with it: how long that took.
async fn time_to_follow(
    connect: &str,
    client: &mut RawConn,
    to: &SimHandle,
    app_id: i32,
) -> Duration {
    let started = std::time::Instant::now();
    put(
        &zk_client_at(connect).await,
        "temp",
        &record("c", to).to_json(),
    )
    .await;
    until_answer(client, "temp", Ok(app_id)).await;
    started.elapsed()
}

/// Asks for a table never asked before: it must be ERR_SERVICE_NOT_ACTIVE within the
/// bystander's hang bound (clients give up after about 1 to 5 s), not after a ZooKeeper request
/// timeout. How long the answer took.
async fn never_seen(client: &mut RawConn, n: &mut i32) -> Duration {
    *n += 1;
    let started = std::time::Instant::now();
    let resp = client.query(&format!("never_seen_{n}"), *n).await;
    let took = started.elapsed();
    assert_eq!(resp.err, ErrorCode::SERVICE_NOT_ACTIVE, "never_seen_{n}");
    assert!(took < HANG, "never_seen_{n} answered after {took:?}");
    took
}

/// Prints one row of the ZooKeeper fault matrix and checks the bystander saw no error.
fn zk_row(fault: &str, phase: &Phase, baseline: &Phase, figures: &str) {
    eprintln!("| {fault} | {figures} | {} |", phase.line(baseline));
    assert_eq!(
        phase.errors, 0,
        "{fault}: the cached table failed: {:?}",
        phase.first_errors
    );
    assert!(phase.queries > 0, "{fault}: the bystander was served");
}

/// A three-member ensemble loses its leader; then its quorum for longer than the session timeout;
/// then stops altogether for 30 s. Throughout, a cached table is answered without an error, a
/// table never asked before is ERR_SERVICE_NOT_ACTIVE at once, and after each recovery a change
/// reaches the proxy. Each row prints how long each step took.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ensemble_losing_its_leader_its_quorum_and_everything() {
    require!(ZOOKEEPER);
    let mut ensemble = ZkEnsemble::launch(3).await.expect("ensemble");
    let connect = ensemble.connect_string();
    let a = sim(1, vec![table("temp", 2, 4)]).await;
    let b = sim(1, vec![table("temp", 5, 4)]).await;
    put(
        &zk_client_at(&connect).await,
        "temp",
        &record("c", &a).to_json(),
    )
    .await;
    let proxy = start_with_zk(&connect, ROOT, |c| c.zk_session_timeout = Some("2s".into())).await;
    let mut client = RawConn::connect(proxy.addr()).await;
    assert_eq!(client.query("temp", 1).await.app_id, 2);
    let bystander = Bystander::start(proxy.addr(), "temp").await;
    bystander.run_for(300, Duration::from_secs(30)).await;
    let baseline = bystander.phase();
    let mut asked = 0;
    let connected = || proxy.routes().staleness() == Duration::ZERO;

    // The leader goes: a new one is elected, the proxy's session moves to another member.
    let leader = ensemble.leader().await.expect("a leader");
    let started = std::time::Instant::now();
    ensemble.kill(leader).await.expect("kill the leader");
    let elected = metaproxy_tests::harness::eventually(WAIT, "a new leader", async || {
        for i in (0..3).filter(|i| *i != leader) {
            if ensemble.mode(i).await.as_deref() == Some("leader") {
                return Some(started.elapsed());
            }
        }
        None
    })
    .await
    .expect("elected");
    let followed = time_to_follow(&connect, &mut client, &b, 5).await;
    zk_row(
        "ZooKeeper: the leader killed",
        &bystander.phase(),
        &baseline,
        &format!(
            "new leader after {elected:.1?}; a change reached the proxy {followed:.1?} after it was written"
        ),
    );
    ensemble.restart(leader).expect("restart");
    ensemble.wait_serving(leader, WAIT).await.expect("serving");

    // Two of three go for 4 s, twice the session timeout: no quorum.
    let leader = ensemble.leader().await.expect("a leader");
    let follower = (0..3).find(|i| *i != leader).expect("a follower");
    ensemble.kill(follower).await.expect("kill a follower");
    ensemble.kill(leader).await.expect("kill the leader");
    let down = std::time::Instant::now();
    eventually("the proxy sees the quorum gone", async || !connected()).await;
    let noticed = down.elapsed();
    let mut unseen = vec![never_seen(&mut client, &mut asked).await];
    tokio::time::sleep(Duration::from_secs(4).saturating_sub(down.elapsed())).await;
    unseen.push(never_seen(&mut client, &mut asked).await);
    ensemble.restart(leader).expect("restart");
    ensemble.restart(follower).expect("restart");
    let back = std::time::Instant::now();
    ensemble.wait_serving(leader, WAIT).await.expect("serving");
    ensemble
        .wait_serving(follower, WAIT)
        .await
        .expect("serving");
    let quorum_back = back.elapsed();
    let followed = time_to_follow(&connect, &mut client, &a, 2).await;
    zk_row(
        "ZooKeeper: quorum lost for 4 s (session 2 s)",
        &bystander.phase(),
        &baseline,
        &format!(
            "disconnect noticed after {noticed:.1?}; tables never seen answered in {unseen:.0?}; \
             quorum back {quorum_back:.1?} after the restarts; a change reached the proxy \
             {followed:.1?} after it was written"
        ),
    );

    // Everything stops for 30 s.
    let sessions_before = metrics(&proxy)
        .await
        .value("metaproxy_zk_sessions_total", &[]);
    for i in 0..3 {
        ensemble.kill(i).await.expect("kill");
    }
    let down = std::time::Instant::now();
    eventually("the proxy sees ZooKeeper gone", async || !connected()).await;
    let mut unseen = Vec::new();
    while down.elapsed() < Duration::from_secs(30) {
        unseen.push(never_seen(&mut client, &mut asked).await);
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    for i in 0..3 {
        ensemble.restart(i).expect("restart");
    }
    let back = std::time::Instant::now();
    for i in 0..3 {
        ensemble.wait_serving(i, WAIT).await.expect("serving");
    }
    let serving = back.elapsed();
    let followed = time_to_follow(&connect, &mut client, &b, 5).await;
    let slowest = unseen.iter().max().copied().unwrap_or_default();
    zk_row(
        "ZooKeeper: the whole ensemble stopped for 30 s",
        &bystander.phase(),
        &baseline,
        &format!(
            "{} tables never seen, answered in {slowest:.0?} at most; serving {serving:.1?} after \
             the restarts; a change reached the proxy {followed:.1?} after it was written",
            unseen.len()
        ),
    );
    // The old session may have expired, or come back (a restarted ensemble restarts its
    // sessions' clocks): either way a new session set the root watch again.
    assert!(
        metrics(&proxy)
            .await
            .value("metaproxy_zk_sessions_total", &[])
            > sessions_before,
        "a new session after the 30 s outage"
    );
}

/// Admin RPCs with routes in ZooKeeper: a table-scoped RPC goes to the cluster the table's record
/// names, and list_apps merges both clusters, taking each table from the cluster its record
/// names (`shared` lives on both; its record names c2).
#[tokio::test]
async fn admin_rpcs_and_list_apps_follow_the_zookeeper_records() {
    use bytes::BytesMut;
    use pegasus_rpc::codec::list_apps::{ListAppsResponse, app_status, list_apps_args};

    require!(ZOOKEEPER);
    let server = ZkServer::launch().await.expect("zookeeper");
    let zkc = zk_client(&server).await;
    let c1 = sim(1, vec![table("t1", 1, 4), table("shared", 3, 4)]).await;
    let c2 = sim(1, vec![table("t2", 1, 8), table("shared", 9, 8)]).await;
    put(&zkc, "t1", &record("c1", &c1).to_json()).await;
    put(&zkc, "t2", &record("c2", &c2).to_json()).await;
    put(&zkc, "shared", &record("c2", &c2).to_json()).await;
    let proxy = start_with_zk(&server.connect_string(), ROOT, |_| {}).await;
    let mut client = RawConn::connect(proxy.addr()).await;

    // get_max_replica_count {1: app_name}: to c2 only.
    let name = "RPC_CM_GET_MAX_REPLICA_COUNT";
    let args = metaproxy_tests::idl::args(&[metaproxy_tests::idl::Field::Str(1, "shared")]);
    let reply = client.call(name, &args, 1).await;
    assert_eq!(reply.rpc_error, ErrorCode::OK);
    assert_eq!(
        pegasus_rpc::codec::QueryCfgResponse::peek_err(&reply.body).expect("err"),
        ErrorCode::OK
    );
    assert_eq!(c2.counters().by_rpc.get(name), Some(&1));
    assert_eq!(c1.counters().by_rpc.get(name), None);

    let mut args = BytesMut::new();
    list_apps_args(app_status::AVAILABLE, &mut args);
    let reply = client.call("RPC_CM_LIST_APPS", &args, 2).await;
    let resp = ListAppsResponse::from_result(&reply.body).expect("list_apps response");
    assert_eq!(resp.err, ErrorCode::OK, "{:?}", resp.hint_message);
    let names: Vec<&str> = resp.infos.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["shared", "t1", "t2"]);
    let mut direct = RawConn::connect(c2.meta_addrs()[0]).await;
    let c2_list = direct.call("RPC_CM_LIST_APPS", &args, 1).await;
    let c2_list = ListAppsResponse::from_result(&c2_list.body).expect("c2's list");
    let c2_shared = c2_list.infos.iter().find(|i| i.name == "shared");
    assert_eq!(Some(&resp.infos[0]), c2_shared, "shared comes from c2");
}
