//! The proxy with routes in a real ZooKeeper (started by the harness): lazy reads, watches,
//! record changes and deletions, bad records, ZooKeeper restarts and session expiry.

mod common;

use std::time::Duration;

use common::*;
use metaproxy_tests::relay::Relay;
use metaproxy_tests::require;
use metaproxy_tests::zk::{ZOOKEEPER, ZkServer};
use pegasus_rpc::codec::ErrorCode;
use zookeeper_client as zk;

const ROOT: &str = "/metaproxy/c3srv-pegasus";

async fn zk_client(server: &ZkServer) -> zk::Client {
    let client = zk::Client::connect(&server.connect_string())
        .await
        .expect("zk connects");
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
