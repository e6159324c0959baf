//! The operator against the real API server for custom resources (crdserver) and a real
//! ZooKeeper: the generated CRD applied with kubectl, routes created, updated and deleted with
//! kubectl, znodes, status, conditions, finalizer, events, printer columns, validation messages,
//! conflicts and leader election.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use metaproxy::route::RouteRecord;
use metaproxy_tests::harness::{eventually, http_get, scrape};
use metaproxy_tests::k8s::{API_SERVER, ApiServer};
use metaproxy_tests::operator::{self, Operator, znode};
use metaproxy_tests::require;
use metaproxy_tests::zk::{ZOOKEEPER, ZkServer};
use zookeeper_client as zkc;

/// The binary under test, built by cargo before this test.
const OPERATOR: &str = env!("CARGO_BIN_EXE_metaproxy-operator");

const WAIT: Duration = Duration::from_secs(40);

/// A route whose primary is on closed loopback ports: nothing answers there, and a switchover's
/// calls to it fail at once without leaving the machine.
fn route(name: &str, table: &str, extra: &str) -> String {
    format!(
        "apiVersion: metaproxy.pegasus.io/v1alpha1\nkind: PegasusTableRoute\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  table: {table}\n  primary: {{cluster: c3srv-ad, metaServers: [\"127.0.0.1:1\", \"localhost:1\"]}}\n\
         \x20 backup: {{cluster: c3srv-bk, metaServers: [\"10.1.0.1:34601\"]}}\n{extra}"
    )
}

/// API server with the CRD (and optionally the Lease/Event stand-ins) applied.
async fn api_server(standins: bool) -> ApiServer {
    let api = ApiServer::launch().await.expect("API server starts");
    let crd = metaproxy_tests::k8s::repo_root().join("crds/pegasustableroutes.yaml");
    api.apply_path(&crd)
        .await
        .expect("the committed CRD applies");
    api.crd_established("pegasustableroutes.metaproxy.pegasus.io")
        .await
        .expect("CRD established");
    if standins {
        api.apply_path(&api.builtin_standins())
            .await
            .expect("stand-ins apply");
        api.crd_established("leases.coordination.k8s.io")
            .await
            .expect("Lease CRD");
        api.crd_established("events.events.k8s.io")
            .await
            .expect("Event CRD");
    }
    api
}

async fn start_operator(api: &ApiServer, zk: &ZkServer, identity: &str) -> Operator {
    let zone = format!("az1={}/metaproxy/c3srv", zk.connect_string());
    Operator::on_kubernetes(
        OPERATOR,
        &api.kubeconfig(),
        (&zone, identity),
        ["4s", "3s", "300ms"],
        &["--conflict-recheck", "1s"],
        WAIT,
    )
    .await
}

async fn apply(api: &ApiServer, yaml: &str) {
    api.apply_yaml(yaml).await.expect("kubectl apply");
}

fn condition(obj: &serde_json::Value, type_: &str) -> Option<serde_json::Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .cloned()
}

async fn wait_record(zk: &zkc::Client, path: &str, record: &RouteRecord, owner: &str) -> i32 {
    operator::wait_record(zk, path, record, owner, WAIT).await
}

const LEADER: &str = "metaproxy_operator_leader";

/// Waits until `op`'s leader gauge is 1. It is set as the lease is won, before any reconcile;
/// waiting keeps a test that has just seen the leader's work from depending on that order.
async fn leading(op: &Operator) {
    eventually(WAIT, "metaproxy_operator_leader 1", async || {
        let metrics = scrape(op.admin).await.ok()?;
        (metrics.value(LEADER, &[]) == 1.0).then_some(())
    })
    .await
    .expect("the leader says so");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_route_lifecycle_writes_and_removes_the_znode() {
    require!(API_SERVER, ZOOKEEPER);
    let api = api_server(true).await;
    let zk_server = ZkServer::launch().await.expect("zookeeper");
    let zk = zkc::Client::connect(&zk_server.connect_string())
        .await
        .expect("zk client");
    let mut op = start_operator(&api, &zk_server, "op-1").await;
    let path = "/metaproxy/c3srv/temp";

    // Create.
    apply(&api, &route("temp", "temp", "")).await;
    let primary = RouteRecord::new("c3srv-ad", ["127.0.0.1:1", "localhost:1"]).expect("record");
    assert_eq!(wait_record(&zk, path, &primary, "default/temp").await, 0);
    let obj = eventually(WAIT, "Ready=True", async || {
        api.get_json(&["ptr", "temp"])
            .await
            .filter(|o| condition(o, "Ready").is_some_and(|c| c["status"] == "True"))
    })
    .await
    .expect("ready");
    assert_eq!(obj["status"]["znode"], path);
    assert_eq!(obj["status"]["znodeVersion"], 0);
    assert_eq!(obj["status"]["activeCluster"], "c3srv-ad");
    assert_eq!(obj["status"]["zone"], "az1");
    assert_eq!(
        obj["status"]["observedGeneration"],
        obj["metadata"]["generation"]
    );
    assert_eq!(
        condition(&obj, "RouteSynced").expect("RouteSynced")["reason"],
        "Synced"
    );
    let conflict = condition(&obj, "Conflict").expect("Conflict");
    assert_eq!(
        (conflict["status"].as_str(), conflict["reason"].as_str()),
        (Some("False"), Some("NoConflict"))
    );
    assert!(condition(&obj, "Ready").expect("Ready")["lastTransitionTime"].is_string());
    assert_eq!(
        obj["metadata"]["finalizers"][0],
        "metaproxy.pegasus.io/znode"
    );

    // The admin port's view of the route, from the controller's cache.
    let view = eventually(WAIT, "/routes to show the route ready", async || {
        let all = http_get(op.admin, "/routes").await.ok()?.json().ok()?;
        all.as_array()?
            .iter()
            .find(|r| {
                r["route"] == "default/temp"
                    && condition(r, "Ready").is_some_and(|c| c["status"] == "True")
            })
            .cloned()
    })
    .await
    .expect("/routes");
    assert_eq!(view["spec"]["table"], "temp");
    assert_eq!(view["status"]["znode"], path);

    // The printer columns.
    let table = api
        .kubectl_ok(&["get", "ptr"], None)
        .await
        .expect("kubectl get ptr");
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME", "TABLE", "ZONE", "ACTIVE", "PRIMARY", "BACKUP", "MODE", "PHASE", "READY", "AGE"
        ],
        "{table}"
    );
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        &row[..8],
        // No switchover yet: the Phase column is empty.
        [
            "temp", "temp", "az1", "c3srv-ad", "c3srv-ad", "c3srv-bk", "Manual", "True"
        ],
        "{table}"
    );

    // Update: switch to the backup, without fencing: the record flips at once, then the
    // primary (which does not answer) is given up on sending its clients away after fenceTimeout.
    apply(
        &api,
        &route(
            "temp",
            "temp",
            "  active: backup\n  switchover: {fence: false, fenceTimeout: 1s}\n",
        ),
    )
    .await;
    let backup = RouteRecord::new("c3srv-bk", ["10.1.0.1:34601"]).expect("record");
    let (flipped, _) = operator::wait_route(&zk, path, &backup, "default/temp", WAIT).await;
    assert_eq!(flipped, 1);
    let obj = eventually(
        WAIT,
        "the switchover of generation 2 completed",
        async || {
            api.get_json(&["ptr", "temp"]).await.filter(|o| {
                o["status"]["observedGeneration"] == 2
                    && condition(o, "Switchover").is_some_and(|c| c["reason"] == "Completed")
            })
        },
    )
    .await
    .expect("observed");
    assert_eq!(obj["status"]["activeCluster"], "c3srv-bk");
    assert_eq!(obj["status"]["activeSide"], "backup");
    assert_eq!(obj["status"]["znodeVersion"], 2);
    assert_eq!(obj["status"]["switchover"]["phase"], "Completed");

    // Events went to events.k8s.io (served by the stand-in here).
    let events = eventually(WAIT, "events for the route", async || {
        let list = api
            .get_json(&["events.v1.events.k8s.io", "-n", "default"])
            .await?;
        let reasons: Vec<String> = list["items"]
            .as_array()?
            .iter()
            .filter(|e| e["regarding"]["name"] == "temp")
            .filter_map(|e| e["reason"].as_str().map(String::from))
            .collect();
        (reasons.contains(&"Created".to_string())
            && reasons.contains(&"Flipped".to_string())
            && reasons.contains(&"SwitchoverCompleted".to_string()))
        .then_some(reasons)
    })
    .await
    .expect("events published");
    assert!(!events.is_empty());

    // Hand edit: put back, with a warning event.
    zk.set_data(
        path,
        br#"{"cluster":"rogue","meta-addrs":["6.6.6.6:1"]}"#,
        None,
    )
    .await
    .expect("hand edit");
    assert_eq!(wait_record(&zk, path, &backup, "default/temp").await, 4);

    // Delete: the finalizer removes the znode, then the object goes.
    api.kubectl_ok(
        &["delete", "ptr", "temp", "--wait=true", "--timeout=40s"],
        None,
    )
    .await
    .expect("kubectl delete");
    assert!(
        matches!(zk.get_data(path).await, Err(zkc::Error::NoNode)),
        "znode removed"
    );
    assert!(
        api.get_json(&["ptr", "temp"]).await.is_none(),
        "object gone"
    );
    eventually(WAIT, "/routes to drop the deleted route", async || {
        let all = http_get(op.admin, "/routes").await.ok()?.json().ok()?;
        (all == serde_json::json!([])).then_some(())
    })
    .await
    .expect("/routes emptied");

    let status = op.terminate(WAIT).await.expect("stops");
    assert!(status.success(), "{status}\n{}", op.log());
    let log = op.log();
    assert!(log.contains("was changed outside the operator"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_routes_are_refused_by_the_api_server() {
    require!(API_SERVER);
    let api = api_server(false).await;
    let base = |spec: &str| {
        format!(
            "apiVersion: metaproxy.pegasus.io/v1alpha1\nkind: PegasusTableRoute\nmetadata: {{name: bad, namespace: default}}\nspec:\n{spec}"
        )
    };
    // Pegasus' limit is 256 characters.
    let too_long = format!(
        "  table: {}\n  primary: {{cluster: c1, metaServers: [\"10.0.0.1:1\"]}}\n",
        "t".repeat(257)
    );
    let cases: [(&str, &str); 12] = [
        (
            "  table: temp\n  primary: {cluster: c1, metaServers: [\"10.0.0.1:1\"]}\n  backup: {cluster: c1, metaServers: [\"10.0.0.2:1\"]}\n",
            "primary and backup must be different clusters",
        ),
        (
            "  table: temp\n  active: backup\n  primary: {cluster: c1, metaServers: [\"10.0.0.1:1\"]}\n",
            "active: backup needs a backup cluster",
        ),
        (
            "  table: temp\n  primary: {cluster: c1, metaServers: []}\n",
            "spec.primary.metaServers",
        ),
        (
            "  table: temp\n  primary: {cluster: c1, metaServers: [\"10.0.0.1\"]}\n",
            "spec.primary.metaServers[0]",
        ),
        (
            "  table: temp\n  primary: {cluster: c1, metaServers: [\"h:70000\"]}\n",
            "spec.primary.metaServers[0]",
        ),
        (
            "  table: a/b\n  primary: {cluster: c1, metaServers: [\"10.0.0.1:1\"]}\n",
            "spec.table",
        ),
        (
            "  table: my-table\n  primary: {cluster: c1, metaServers: [\"10.0.0.1:1\"]}\n",
            "spec.table",
        ),
        (
            "  table: '..'\n  primary: {cluster: c1, metaServers: [\"10.0.0.1:1\"]}\n",
            "table: . and .. are not table names",
        ),
        (&too_long, "spec.table"),
        (
            "  table: temp\n  active: sideways\n  primary: {cluster: c1, metaServers: [\"10.0.0.1:1\"]}\n",
            "spec.active",
        ),
        (
            "  table: temp\n  failover: {mode: Sometimes}\n  primary: {cluster: c1, metaServers: [\"10.0.0.1:1\"]}\n",
            "spec.failover.mode",
        ),
        (
            "  primary: {cluster: c1, metaServers: [\"10.0.0.1:1\"]}\n",
            "spec.table: Required value",
        ),
    ];
    for (spec, message) in cases {
        let out = api
            .kubectl_output(&["apply", "-f", "-"], Some(&base(spec)))
            .await
            .expect("kubectl");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "accepted:\n{spec}");
        assert!(
            stderr.contains(message),
            "{spec}\nwanted {message:?} in:\n{stderr}"
        );
    }
    // Valid ones are accepted by the same server: the longest name, and a leading dot.
    for table in ["t".repeat(256), ".v2:temp_1".to_owned()] {
        apply(
            &api,
            &base(&format!(
                "  table: '{table}'\n  primary: {{cluster: c1, metaServers: [\"10.0.0.1:1\"]}}\n"
            )),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_older_route_keeps_the_table_and_the_newer_waits() {
    require!(API_SERVER, ZOOKEEPER);
    let api = api_server(false).await;
    let zk_server = ZkServer::launch().await.expect("zookeeper");
    let zk = zkc::Client::connect(&zk_server.connect_string())
        .await
        .expect("zk client");
    let path = "/metaproxy/c3srv/shared";
    apply(&api, &route("older", "shared", "")).await;
    // Seniority is the creation time, then the name ("default/newer" sorts first), and creation
    // timestamps have one-second resolution: the second route must be created in a later second
    // than the first. Wait for the clock (the API server's: same machine) to pass that second.
    let created = async |name: &str| -> Timestamp {
        let obj = api
            .get_json(&["ptr", name])
            .await
            .expect("the route exists");
        let at = obj["metadata"]["creationTimestamp"]
            .as_str()
            .expect("creationTimestamp");
        at.parse().expect("an RFC 3339 time")
    };
    let older_created = created("older").await;
    eventually(
        WAIT,
        "the clock to pass the second `older` was created in",
        async || (Timestamp::now().as_second() > older_created.as_second()).then_some(()),
    )
    .await
    .expect("a later second");
    apply(&api, &route("newer", "shared", "  active: backup\n")).await;
    let newer_created = created("newer").await;
    assert!(
        newer_created > older_created,
        "`newer` ({newer_created}) must be created after `older` ({older_created})"
    );
    // The Lease stand-in only: leader election works, events.k8s.io is not served.
    let standins = std::fs::read_to_string(api.builtin_standins()).expect("stand-ins");
    let lease_only = standins
        .split("\n---\n")
        .find(|d| d.contains("kind: Lease"))
        .expect("Lease CRD");
    apply(&api, lease_only).await;
    api.crd_established("leases.coordination.k8s.io")
        .await
        .expect("Lease CRD");
    let mut op = start_operator(&api, &zk_server, "op-1").await;

    let primary = RouteRecord::new("c3srv-ad", ["127.0.0.1:1", "localhost:1"]).expect("record");
    wait_record(&zk, path, &primary, "default/older").await;
    let newer = eventually(WAIT, "Conflict=True on the newer route", async || {
        api.get_json(&["ptr", "newer"])
            .await
            .filter(|o| condition(o, "Conflict").is_some_and(|c| c["status"] == "True"))
    })
    .await
    .expect("conflict");
    assert_eq!(
        condition(&newer, "Conflict").expect("c")["reason"],
        "ConflictingRoute"
    );
    assert!(
        condition(&newer, "Conflict").expect("c")["message"]
            .as_str()
            .unwrap_or_default()
            .contains("default/older")
    );
    assert_eq!(condition(&newer, "Ready").expect("c")["status"], "False");
    assert_eq!(
        znode(&zk, path).await.map(|z| z.1),
        Some(0),
        "the newer route wrote nothing"
    );

    // The older one goes: the newer takes the table over.
    api.kubectl_ok(
        &["delete", "ptr", "older", "--wait=true", "--timeout=40s"],
        None,
    )
    .await
    .expect("delete");
    let backup = RouteRecord::new("c3srv-bk", ["10.1.0.1:34601"]).expect("record");
    wait_record(&zk, path, &backup, "default/newer").await;
    eventually(WAIT, "the newer route Ready", async || {
        api.get_json(&["ptr", "newer"])
            .await
            .filter(|o| condition(o, "Ready").is_some_and(|c| c["status"] == "True"))
    })
    .await
    .expect("ready");
    let status = op.terminate(WAIT).await.expect("stops");
    assert!(status.success(), "{status}\n{}", op.log());
    assert!(
        op.log()
            .contains("event skipped: the API server does not serve events.k8s.io/v1"),
        "{}",
        op.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_and_a_standby_takes_over_on_sigterm() {
    require!(API_SERVER, ZOOKEEPER);
    let api = api_server(true).await;
    let zk_server = ZkServer::launch().await.expect("zookeeper");
    let zk = zkc::Client::connect(&zk_server.connect_string())
        .await
        .expect("zk client");
    let mut first = start_operator(&api, &zk_server, "op-1").await;
    let lease_holder = async || {
        api.get_json(&[
            "leases.v1.coordination.k8s.io",
            "metaproxy-operator",
            "-n",
            "default",
        ])
        .await
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(String::from))
    };
    assert_eq!(
        eventually(WAIT, "op-1 to lead", lease_holder)
            .await
            .expect("leader"),
        "op-1"
    );
    let mut second = start_operator(&api, &zk_server, "op-2").await;

    apply(&api, &route("one", "t_one", "")).await;
    let primary = RouteRecord::new("c3srv-ad", ["127.0.0.1:1", "localhost:1"]).expect("record");
    wait_record(&zk, "/metaproxy/c3srv/t_one", &primary, "default/one").await;
    leading(&first).await;
    let standby = scrape(second.admin).await.expect("the standby's metrics");
    assert_eq!(standby.value(LEADER, &[]), 0.0);
    assert_eq!(
        standby.find("metaproxy_operator_reconciles_total", &[("result", "ok")]),
        None,
        "the standby did nothing"
    );

    // SIGTERM releases the lease: the standby takes over without waiting for it to expire.
    let status = first.terminate(WAIT).await.expect("stops");
    assert!(status.success(), "{status}\n{}", first.log());
    assert!(
        first.log().contains("released the lease"),
        "{}",
        first.log()
    );
    let holder = eventually(Duration::from_secs(3), "op-2 to lead", async || {
        lease_holder().await.filter(|h| h == "op-2")
    })
    .await
    .expect("op-2 leads within 3 s, before the 4 s lease could expire");
    assert_eq!(holder, "op-2");
    apply(&api, &route("two", "t_two", "")).await;
    wait_record(&zk, "/metaproxy/c3srv/t_two", &primary, "default/two").await;
    leading(&second).await;
    let status = second.terminate(WAIT).await.expect("stops");
    assert!(status.success(), "{status}\n{}", second.log());
}

/// Kubernetes mode, ZooKeeper down, 200 routes retrying: SIGTERM interrupts the reconciles in
/// flight (the controller's graceful shutdown waits for them), releases the lease and exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_zookeeper_down_and_200_routes_exits_at_once() {
    require!(API_SERVER, ZOOKEEPER);
    const ROUTES: usize = 200;
    let api = api_server(true).await;
    let mut zk_server = ZkServer::launch().await.expect("zookeeper");
    zk_server.kill().await.expect("zookeeper stops");
    let all: String = (0..ROUTES)
        .map(|i| route(&format!("r{i}"), &format!("t{i}"), ""))
        .collect::<Vec<_>>()
        .join("---\n");
    apply(&api, &all).await;
    let mut op = start_operator(&api, &zk_server, "op-1").await;
    eventually(WAIT, "every route to report ZooKeeper down", async || {
        let list = api.get_json(&["ptr"]).await?;
        let down = list["items"]
            .as_array()?
            .iter()
            .filter(|o| {
                condition(o, "Ready").is_some_and(|c| c["reason"] == "ZooKeeperUnavailable")
            })
            .count();
        (down == ROUTES).then_some(())
    })
    .await
    .expect("outage seen");
    let started = std::time::Instant::now();
    let status = op.terminate(Duration::from_secs(130)).await.expect("stops");
    let took = started.elapsed();
    eprintln!(
        "Kubernetes mode, SIGTERM with ZooKeeper down and {ROUTES} routes: exited after {took:?}"
    );
    assert!(status.success(), "{status}\n{}", op.log());
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(op.log().contains("released the lease"), "{}", op.log());
}
