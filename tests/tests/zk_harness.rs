//! The ZooKeeper harness starts a real server, serves a client, stops it by PID.

use std::time::Duration;

use metaproxy_tests::harness::eventually;
use metaproxy_tests::require;
use metaproxy_tests::zk::{self, ZOOKEEPER, ZkEnsemble, ZkServer};
use zookeeper_client as zkc;

#[tokio::test]
async fn standalone_server_serves_and_stops() {
    require!(ZOOKEEPER);
    let mut server = ZkServer::launch().await.expect("zookeeper starts");
    assert_eq!(zk::mode(server.port()).await.as_deref(), Some("standalone"));

    let client = zkc::Client::connect(&server.connect_string())
        .await
        .expect("connects");
    let opts = zkc::CreateMode::Persistent.with_acls(zkc::Acls::anyone_all());
    client.mkdir("/metaproxy/test", &opts).await.expect("mkdir");
    client
        .create("/metaproxy/test/temp", b"{}", &opts)
        .await
        .expect("create");
    let (data, _) = client.get_data("/metaproxy/test/temp").await.expect("get");
    assert_eq!(data, b"{}");

    let pid = server.pid().expect("running");
    server.kill().await.expect("stops");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} is gone"
    );
    assert_eq!(server.pid(), None);
    assert_eq!(zk::mode(server.port()).await, None, "stopped");

    // Restarted on the same port, with the data kept.
    server.restart().await.expect("restarts");
    let client = zkc::Client::connect(&server.connect_string())
        .await
        .expect("reconnects");
    let (data, _) = client
        .get_data("/metaproxy/test/temp")
        .await
        .expect("data survived");
    assert_eq!(data, b"{}");
}

/// A client port taken by someone else when ZooKeeper starts: the harness sees ZooKeeper exit
/// and starts it again on another port; a restart, which must keep its port, says why it cannot.
#[tokio::test]
async fn a_taken_port_is_noticed() {
    require!(ZOOKEEPER);
    let mut server = ZkServer::launch().await.expect("zookeeper starts");
    let port = server.port();
    server.kill().await.expect("stops");
    let squatter = std::net::TcpListener::bind(("127.0.0.1", port)).expect("take its port");
    let err = server.restart().await.expect_err("the port is not free");
    assert!(
        format!("{err:#}").contains(&format!("port {port} was taken")),
        "{err:#}"
    );
    drop(squatter);
    server.restart().await.expect("the port is free again");
    assert_eq!(zk::mode(port).await.as_deref(), Some("standalone"));
}

#[tokio::test]
async fn ensemble_survives_losing_its_leader() {
    require!(ZOOKEEPER);
    let mut ensemble = ZkEnsemble::launch(3).await.expect("ensemble");
    let leader = ensemble.leader().await.expect("a leader");
    let client = zkc::Client::connect(&ensemble.connect_string())
        .await
        .expect("connects");
    let opts = zkc::CreateMode::Persistent.with_acls(zkc::Acls::anyone_all());
    client.create("/k", b"1", &opts).await.expect("create");

    ensemble.kill(leader).await.expect("stops");
    let new_leader = eventually(Duration::from_secs(30), "a new leader", async || {
        ensemble.leader().await
    })
    .await
    .expect("elected");
    assert_ne!(new_leader, leader);
    let (data, _) = tokio::time::timeout(Duration::from_secs(20), client.get_data("/k"))
        .await
        .expect("answers after failover")
        .expect("get");
    assert_eq!(data, b"1");

    ensemble.restart(leader).expect("restart");
    ensemble
        .wait_serving(leader, Duration::from_secs(30))
        .await
        .expect("rejoins");
    assert_eq!(ensemble.mode(leader).await.as_deref(), Some("follower"));
}
