//! The operator started as a library, as `main` starts it: `App::start`, the admin port,
//! readiness after the first pass over the routes directory, and `App::shutdown`.

use std::time::{Duration, Instant};

use clap::Parser;
use metaproxy_operator::App;
use metaproxy_operator::config::{Config, Settings};
use metaproxy_tests::harness::{Metrics, eventually, http_get};

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
    let status = |path| async move { http_get(admin, path).await.expect(path).status };
    assert_eq!(status("/live").await, 200);
    eventually(
        Duration::from_secs(20),
        "/routes to say ZooKeeperUnavailable",
        async || {
            let routes = http_get(admin, "/routes").await.ok()?;
            routes.body.contains("ZooKeeperUnavailable").then_some(())
        },
    )
    .await
    .expect("the route fails and says so");
    assert_eq!(status("/ready").await, 200, "ready after the first pass");
    // The failure is counted as it is reported: wait for the count, not only for the status.
    eventually(
        Duration::from_secs(20),
        "a reconcile failure counted with reason zookeeper_unavailable",
        async || {
            let metrics = Metrics::parse(&app.metrics().encode()).expect("valid exposition");
            metrics
                .find(
                    "metaproxy_operator_reconcile_failures_total",
                    &[("reason", "zookeeper_unavailable")],
                )
                .map(|_| ())
        },
    )
    .await
    .expect("counted");
    let stopping = Instant::now();
    app.shutdown().await.expect("clean stop");
    assert!(
        stopping.elapsed() < Duration::from_secs(2),
        "{:?}",
        stopping.elapsed()
    );
    assert!(
        http_get(admin, "/live").await.is_err(),
        "the admin port is closed"
    );
}
