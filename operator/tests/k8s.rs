//! The operator against the real API server for custom resources (crdserver) and a real
//! ZooKeeper: the generated CRD applied with kubectl, routes created, updated and deleted with
//! kubectl, znodes, status, conditions, finalizer, events, printer columns, validation messages,
//! conflicts and leader election.

use std::time::Duration;

use metaproxy::route::RouteRecord;
use metaproxy_tests::k8s::{API_SERVER, ApiServer};
use metaproxy_tests::operator::{self, Operator, eventually, znode};
use metaproxy_tests::require;
use metaproxy_tests::zk::{ZOOKEEPER, ZkServer};
use zookeeper_client as zkc;

/// The binary under test, built by cargo before this test.
const OPERATOR: &str = env!("CARGO_BIN_EXE_metaproxy-operator");

const WAIT: Duration = Duration::from_secs(40);

fn route(name: &str, table: &str, extra: &str) -> String {
    format!(
        "apiVersion: metaproxy.pegasus.io/v1alpha1\nkind: PegasusTableRoute\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  table: {table}\n  primary: {{cluster: c3srv-ad, metaServers: [\"10.0.0.1:34601\", \"meta-0.pegasus-ad:34601\"]}}\n\
         \x20 backup: {{cluster: c3srv-bk, metaServers: [\"10.1.0.1:34601\"]}}\n{extra}"
    )
}

/// API server with the CRD (and optionally the Lease/Event stand-ins) applied.
fn api_server(standins: bool) -> ApiServer {
    let api = ApiServer::start().expect("API server starts");
    let crd = metaproxy_tests::k8s::repo_root().join("crds/pegasustableroutes.yaml");
    api.apply_file(&crd).expect("the committed CRD applies");
    api.wait_crd("pegasustableroutes.metaproxy.pegasus.io")
        .expect("CRD established");
    if standins {
        api.apply_file(&api.builtin_standins())
            .expect("stand-ins apply");
        api.wait_crd("leases.coordination.k8s.io")
            .expect("Lease CRD");
        api.wait_crd("events.events.k8s.io").expect("Event CRD");
    }
    api
}

fn start_operator(api: &ApiServer, zk: &ZkServer, identity: &str) -> Operator {
    let args: Vec<String> = [
        "--zone",
        &format!("az1={}/metaproxy/c3srv", zk.connect_string()),
        "--identity",
        identity,
        "--lease-duration",
        "4s",
        "--renew-deadline",
        "3s",
        "--retry-period",
        "300ms",
        "--conflict-recheck",
        "1s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut op = Operator::start(
        OPERATOR,
        &args,
        &[("KUBECONFIG", api.kubeconfig().display().to_string())],
    )
    .expect("starts");
    op.wait_ready(WAIT).expect("ready");
    op
}

fn apply(api: &ApiServer, yaml: &str) {
    let out = api
        .kubectl_stdin(&["apply", "-f", "-"], yaml)
        .expect("kubectl");
    assert!(
        out.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn get_json(api: &ApiServer, args: &[&str]) -> Option<serde_json::Value> {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    let out = api.kubectl(&all).ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_route_lifecycle_writes_and_removes_the_znode() {
    require!(API_SERVER, ZOOKEEPER);
    let api = api_server(true);
    let zk_server = ZkServer::start().expect("zookeeper");
    let zk = zkc::Client::connect(&zk_server.connect_string())
        .await
        .expect("zk client");
    let mut op = start_operator(&api, &zk_server, "op-1");
    let path = "/metaproxy/c3srv/temp";

    // Create.
    apply(&api, &route("temp", "temp", ""));
    let primary = RouteRecord::new("c3srv-ad", ["10.0.0.1:34601", "meta-0.pegasus-ad:34601"])
        .expect("record");
    assert_eq!(wait_record(&zk, path, &primary, "default/temp").await, 0);
    let obj = eventually(WAIT, "Ready=True", async || {
        get_json(&api, &["ptr", "temp"])
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
        let (_, body) = op.get("/routes").ok()?;
        let all: serde_json::Value = serde_json::from_str(&body).ok()?;
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
    let out = api.kubectl(&["get", "ptr"]).expect("kubectl get ptr");
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME", "TABLE", "ZONE", "ACTIVE", "PRIMARY", "BACKUP", "MODE", "READY", "AGE"
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
        [
            "temp", "temp", "az1", "c3srv-ad", "c3srv-ad", "c3srv-bk", "Manual", "True"
        ],
        "{table}"
    );

    // Update: switch to the backup.
    apply(&api, &route("temp", "temp", "  active: backup\n"));
    let backup = RouteRecord::new("c3srv-bk", ["10.1.0.1:34601"]).expect("record");
    assert_eq!(wait_record(&zk, path, &backup, "default/temp").await, 1);
    let obj = eventually(WAIT, "status for generation 2", async || {
        get_json(&api, &["ptr", "temp"]).filter(|o| o["status"]["observedGeneration"] == 2)
    })
    .await
    .expect("observed");
    assert_eq!(obj["status"]["activeCluster"], "c3srv-bk");
    assert_eq!(obj["status"]["znodeVersion"], 1);

    // Events went to events.k8s.io (served by the stand-in here).
    let events = eventually(WAIT, "events for the route", async || {
        let list = get_json(&api, &["events.v1.events.k8s.io", "-n", "default"])?;
        let reasons: Vec<String> = list["items"]
            .as_array()?
            .iter()
            .filter(|e| e["regarding"]["name"] == "temp")
            .filter_map(|e| e["reason"].as_str().map(String::from))
            .collect();
        (reasons.contains(&"Created".to_string()) && reasons.contains(&"Updated".to_string()))
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
    assert_eq!(wait_record(&zk, path, &backup, "default/temp").await, 3);

    // Delete: the finalizer removes the znode, then the object goes.
    let out = api
        .kubectl(&["delete", "ptr", "temp", "--wait=true", "--timeout=40s"])
        .expect("kubectl delete");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        matches!(zk.get_data(path).await, Err(zkc::Error::NoNode)),
        "znode removed"
    );
    assert!(get_json(&api, &["ptr", "temp"]).is_none(), "object gone");
    eventually(WAIT, "/routes to drop the deleted route", async || {
        let (_, body) = op.get("/routes").ok()?;
        (serde_json::from_str::<serde_json::Value>(&body).ok()? == serde_json::json!([]))
            .then_some(())
    })
    .await
    .expect("/routes emptied");

    let status = op.terminate(WAIT).expect("stops");
    assert!(status.success(), "{status}\n{}", op.log());
    let log = op.log();
    assert!(log.contains("was changed outside the operator"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_routes_are_refused_by_the_api_server() {
    require!(API_SERVER);
    let api = api_server(false);
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
            .kubectl_stdin(&["apply", "-f", "-"], &base(spec))
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
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_older_route_keeps_the_table_and_the_newer_waits() {
    require!(API_SERVER, ZOOKEEPER);
    let api = api_server(false);
    let zk_server = ZkServer::start().expect("zookeeper");
    let zk = zkc::Client::connect(&zk_server.connect_string())
        .await
        .expect("zk client");
    let path = "/metaproxy/c3srv/shared";
    apply(&api, &route("older", "shared", ""));
    // Creation timestamps have one-second resolution: make sure the second one is newer.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    apply(&api, &route("newer", "shared", "  active: backup\n"));
    // The Lease stand-in only: leader election works, events.k8s.io is not served.
    let standins = std::fs::read_to_string(api.builtin_standins()).expect("stand-ins");
    let lease_only = standins
        .split("\n---\n")
        .find(|d| d.contains("kind: Lease"))
        .expect("Lease CRD");
    let out = api
        .kubectl_stdin(&["apply", "-f", "-"], lease_only)
        .expect("kubectl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    api.wait_crd("leases.coordination.k8s.io")
        .expect("Lease CRD");
    let mut op = start_operator(&api, &zk_server, "op-1");

    let primary = RouteRecord::new("c3srv-ad", ["10.0.0.1:34601", "meta-0.pegasus-ad:34601"])
        .expect("record");
    wait_record(&zk, path, &primary, "default/older").await;
    let newer = eventually(WAIT, "Conflict=True on the newer route", async || {
        get_json(&api, &["ptr", "newer"])
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
    let out = api
        .kubectl(&["delete", "ptr", "older", "--wait=true", "--timeout=40s"])
        .expect("delete");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let backup = RouteRecord::new("c3srv-bk", ["10.1.0.1:34601"]).expect("record");
    wait_record(&zk, path, &backup, "default/newer").await;
    eventually(WAIT, "the newer route Ready", async || {
        get_json(&api, &["ptr", "newer"])
            .filter(|o| condition(o, "Ready").is_some_and(|c| c["status"] == "True"))
    })
    .await
    .expect("ready");
    assert!(op.terminate(WAIT).expect("stops").success());
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
    let api = api_server(true);
    let zk_server = ZkServer::start().expect("zookeeper");
    let zk = zkc::Client::connect(&zk_server.connect_string())
        .await
        .expect("zk client");
    let mut first = start_operator(&api, &zk_server, "op-1");
    let lease_holder = async || {
        get_json(
            &api,
            &[
                "leases.v1.coordination.k8s.io",
                "metaproxy-operator",
                "-n",
                "default",
            ],
        )
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(String::from))
    };
    assert_eq!(
        eventually(WAIT, "op-1 to lead", lease_holder)
            .await
            .expect("leader"),
        "op-1"
    );
    let mut second = start_operator(&api, &zk_server, "op-2");

    apply(&api, &route("one", "t_one", ""));
    let primary = RouteRecord::new("c3srv-ad", ["10.0.0.1:34601", "meta-0.pegasus-ad:34601"])
        .expect("record");
    wait_record(&zk, "/metaproxy/c3srv/t_one", &primary, "default/one").await;
    assert_eq!(first.metric("metaproxy_operator_leader"), Some(1.0));
    assert_eq!(second.metric("metaproxy_operator_leader"), Some(0.0));
    assert_eq!(
        second.metric("metaproxy_operator_reconciles_total{result=\"ok\"}"),
        None,
        "the standby did nothing"
    );

    // SIGTERM releases the lease: the standby takes over without waiting for it to expire.
    assert!(first.terminate(WAIT).expect("stops").success());
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
    apply(&api, &route("two", "t_two", ""));
    wait_record(&zk, "/metaproxy/c3srv/t_two", &primary, "default/two").await;
    assert_eq!(second.metric("metaproxy_operator_leader"), Some(1.0));
    assert!(second.terminate(WAIT).expect("stops").success());
}

/// Kubernetes mode, ZooKeeper down, 200 routes retrying: SIGTERM interrupts the reconciles in
/// flight (the controller's graceful shutdown waits for them), releases the lease and exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_zookeeper_down_and_200_routes_exits_at_once() {
    require!(API_SERVER, ZOOKEEPER);
    const ROUTES: usize = 200;
    let api = api_server(true);
    let mut zk_server = ZkServer::start().expect("zookeeper");
    zk_server.stop();
    let all: String = (0..ROUTES)
        .map(|i| route(&format!("r{i}"), &format!("t{i}"), ""))
        .collect::<Vec<_>>()
        .join("---\n");
    apply(&api, &all);
    let mut op = start_operator(&api, &zk_server, "op-1");
    eventually(WAIT, "every route to report ZooKeeper down", async || {
        let list = get_json(&api, &["ptr"])?;
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
    let status = op.terminate(Duration::from_secs(130)).expect("stops");
    let took = started.elapsed();
    eprintln!(
        "Kubernetes mode, SIGTERM with ZooKeeper down and {ROUTES} routes: exited after {took:?}"
    );
    assert!(status.success(), "{status}\n{}", op.log());
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(op.log().contains("released the lease"), "{}", op.log());
}
