//! The operator started as a library, as `main` starts it: `App::start`, the admin port,
//! readiness after the first pass over the routes directory, and `App::shutdown`.

use std::time::{Duration, Instant};

use clap::Parser;
use metaproxy_operator::App;
use metaproxy_operator::config::{Config, Settings};
use metaproxy_tests::operator::http_get;

async fn get(addr: std::net::SocketAddr, path: &'static str) -> (u16, String) {
    tokio::task::spawn_blocking(move || http_get(addr, path))
        .await
        .expect("no panic")
        .unwrap_or((0, String::new()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_starts_serves_and_shuts_down() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("t.yaml"),
        "apiVersion: metaproxy.pegasus.io/v1alpha1\nkind: PegasusTableRoute\nmetadata: {name: t}\n\
         spec: {table: t, primary: {cluster: c1, metaServers: ['10.0.0.1:34601']}}\n",
    )
    .expect("write");
    // Nothing listens on the zone's ZooKeeper port: the route fails and says so.
    let closed = metaproxy_tests::free_port().expect("port");
    let settings = Settings::try_parse_from([
        "metaproxy-operator",
        "--zone",
        &format!("az1=127.0.0.1:{closed}/m"),
        "--routes-dir",
        dir.path().to_str().expect("utf8"),
        "--admin-listen",
        "127.0.0.1:0",
        "--zk-session-timeout",
        "1s",
        "--zk-request-timeout",
        "1s",
    ])
    .expect("flags");
    let config = Config::load(settings).expect("valid");
    let app = App::start(&config).await.expect("starts");
    let admin = app.admin_addr();
    assert_ne!(admin.port(), 0, "the bound port");
    assert_eq!(get(admin, "/live").await.0, 200);
    let start = Instant::now();
    loop {
        let (_, body) = get(admin, "/routes").await;
        if body.contains("ZooKeeperUnavailable") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        get(admin, "/ready").await.0,
        200,
        "ready after the first pass"
    );
    assert!(
        app.metrics().encode().contains(
            "metaproxy_operator_reconcile_failures_total{reason=\"zookeeper_unavailable\"}"
        ),
        "{}",
        app.metrics().encode()
    );
    let stopping = Instant::now();
    app.shutdown().await.expect("clean stop");
    assert!(
        stopping.elapsed() < Duration::from_secs(2),
        "{:?}",
        stopping.elapsed()
    );
    assert_eq!(get(admin, "/live").await.0, 0, "the admin port is closed");
}
