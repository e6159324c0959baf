//! The ZooKeeper harness starts a real server, serves a client, stops it by PID.

use std::time::Duration;

use metaproxy_tests::require;
use metaproxy_tests::zk::{self, ZOOKEEPER, ZkEnsemble, ZkServer};
use zookeeper_client as zkc;

#[tokio::test]
async fn standalone_server_serves_and_stops() {
    require!(ZOOKEEPER);
    let mut server = ZkServer::start().expect("zookeeper starts");
    assert_eq!(zk::mode(server.port()).as_deref(), Some("standalone"));

    let client = zkc::Client::connect(&server.connect_string()).await.expect("connects");
    let opts = zkc::CreateMode::Persistent.with_acls(zkc::Acls::anyone_all());
    client.mkdir("/metaproxy/test", &opts).await.expect("mkdir");
    client.create("/metaproxy/test/temp", b"{}", &opts).await.expect("create");
    let (data, _) = client.get_data("/metaproxy/test/temp").await.expect("get");
    assert_eq!(data, b"{}");

    let pid = server.pid().expect("running");
    server.stop();
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "process {pid} is gone");
    assert_eq!(zk::mode(server.port()), None, "stopped");

    // Restarted on the same port, with the data kept.
    server.start_again().expect("restarts");
    let client = zkc::Client::connect(&server.connect_string()).await.expect("reconnects");
    let (data, _) = client.get_data("/metaproxy/test/temp").await.expect("data survived");
    assert_eq!(data, b"{}");
}

#[tokio::test]
async fn ensemble_survives_losing_its_leader() {
    require!(ZOOKEEPER);
    let mut ensemble = tokio::task::spawn_blocking(|| ZkEnsemble::start(3)).await.expect("join").expect("ensemble");
    let leader = ensemble.leader().expect("a leader");
    let client = zkc::Client::connect(&ensemble.connect_string()).await.expect("connects");
    let opts = zkc::CreateMode::Persistent.with_acls(zkc::Acls::anyone_all());
    client.create("/k", b"1", &opts).await.expect("create");

    ensemble.stop(leader);
    let started = std::time::Instant::now();
    let new_leader = loop {
        if let Some(l) = ensemble.leader() {
            break l;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no new leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(new_leader, leader);
    let (data, _) = tokio::time::timeout(Duration::from_secs(20), client.get_data("/k"))
        .await
        .expect("answers after failover")
        .expect("get");
    assert_eq!(data, b"1");

    ensemble.start_again(leader).expect("restart");
    ensemble.wait_serving(leader, Duration::from_secs(30)).expect("rejoins");
    assert_eq!(ensemble.mode(leader).as_deref(), Some("follower"));
}
