//! `metaproxy-operator --routes-dir` against a real ZooKeeper: files added, changed and removed,
//! conflicts, hand edits, ZooKeeper outages, two operators at once, SIGTERM, bad configuration.

use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use metaproxy::route::RouteRecord;
use metaproxy_tests::harness::{Metrics, eventually, free_port, http_get, scrape};
use metaproxy_tests::operator::{self, Operator, znode};
use metaproxy_tests::require;
use metaproxy_tests::zk::{ZOOKEEPER, ZkServer};
use zookeeper_client as zkc;

/// The binary under test, built by cargo before this test.
const OPERATOR: &str = env!("CARGO_BIN_EXE_metaproxy-operator");

const WAIT: Duration = Duration::from_secs(30);

fn route_yaml(name: &str, table: &str, cluster: &str, addr: &str) -> String {
    format!(
        "apiVersion: metaproxy.pegasus.io/v1alpha1\nkind: PegasusTableRoute\nmetadata: {{name: {name}}}\n\
         spec:\n  table: {table}\n  primary: {{cluster: {cluster}, metaServers: [\"{addr}\"]}}\n\
         \x20 backup: {{cluster: {cluster}-bk, metaServers: [\"10.9.0.1:34601\"]}}\n"
    )
}

fn write(dir: &Path, file: &str, text: &str) {
    // Written beside and renamed, as an editor or config management would: never half a file.
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, text).expect("write route file");
    std::fs::rename(&tmp, dir.join(file)).expect("rename route file");
}

async fn wait_record(zk: &zkc::Client, path: &str, record: &RouteRecord, owner: &str) -> i32 {
    operator::wait_record(zk, path, record, owner, WAIT).await
}

async fn wait_gone(zk: &zkc::Client, path: &str) {
    eventually(WAIT, &format!("{path} to be deleted"), async || {
        matches!(zk.get_data(path).await, Err(zkc::Error::NoNode)).then_some(())
    })
    .await
    .expect("znode deleted");
}

/// `/routes`: every route file the operator knows, with its status.
async fn routes(op: &Operator) -> Option<serde_json::Value> {
    let response = http_get(op.admin, "/routes").await.ok()?;
    assert_eq!(response.status, 200);
    response.json().ok()
}

/// The `/routes` entry for `file`.
async fn route_view(op: &Operator, file: &str) -> Option<serde_json::Value> {
    let all = routes(op).await?;
    all.as_array()?.iter().find(|r| r["file"] == file).cloned()
}

/// Waits until the operator's metrics pass `done`, and returns them. The operator counts a
/// znode write once ZooKeeper has answered it, so a test that has just seen the znode may scrape
/// before the count.
async fn counted(op: &Operator, what: &str, done: impl Fn(&Metrics) -> bool) -> Metrics {
    eventually(WAIT, what, async || {
        scrape(op.admin).await.ok().filter(|m| done(m))
    })
    .await
    .expect("counted")
}

const WRITES: &str = "metaproxy_operator_znode_writes_total";

fn condition(view: &serde_json::Value, type_: &str) -> Option<(String, String)> {
    view["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_owned(),
                c["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
}

/// A real ZooKeeper and a test client of it.
async fn zookeeper() -> (ZkServer, zkc::Client) {
    let server = ZkServer::launch().await.expect("zookeeper");
    let zk = zkc::Client::connect(&server.connect_string())
        .await
        .expect("test client");
    (server, zk)
}

fn dir_operator_args(zk: &ZkServer, dir: &Path, root: &str) -> Vec<String> {
    vec![
        "--zone".into(),
        format!("az1={}{root}", zk.connect_string()),
        "--routes-dir".into(),
        dir.display().to_string(),
        "--poll".into(),
        "100ms".into(),
        "--conflict-recheck".into(),
        "1s".into(),
        "--zk-session-timeout".into(),
        "4s".into(),
        "--zk-request-timeout".into(),
        "2s".into(),
    ]
}

async fn start_dir_operator(zk: &ZkServer, dir: &Path, root: &str) -> Operator {
    let args = dir_operator_args(zk, dir, root);
    Operator::launch(OPERATOR, &args, &[], WAIT)
        .await
        .expect("operator starts and gets ready")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_dir_lifecycle_conflicts_and_hand_edits() {
    require!(ZOOKEEPER);
    let (server, zk) = zookeeper().await;
    let dir = tempfile::tempdir().expect("dir");
    let path = "/metaproxy/c3srv/temp";
    write(
        dir.path(),
        "a-temp.yaml",
        &route_yaml("temp", "temp", "c1", "10.0.0.1:34601"),
    );
    let mut op = start_dir_operator(&server, dir.path(), "/metaproxy/c3srv").await;

    // Added file: the znode is created (parents too) with both spellings.
    let c1 = RouteRecord::new("c1", ["10.0.0.1:34601"]).expect("record");
    assert_eq!(wait_record(&zk, path, &c1, "a-temp.yaml").await, 0);
    let (data, _) = znode(&zk, path).await.expect("exists");
    let json: serde_json::Value = serde_json::from_slice(&data).expect("json");
    assert_eq!(json["cluster"], "c1");
    assert_eq!(json["cluster_name"], "c1");
    assert_eq!(json["meta-addrs"][0], "10.0.0.1:34601");
    assert_eq!(json["meta_addrs"], "10.0.0.1:34601");
    let view = eventually(WAIT, "status Ready", async || {
        route_view(&op, "a-temp.yaml")
            .await
            .filter(|v| condition(v, "Ready") == Some(("True".into(), "Synced".into())))
    })
    .await
    .expect("ready");
    assert_eq!(view["status"]["znode"], path);
    assert_eq!(view["status"]["activeCluster"], "c1");

    // Changed file: switch to the backup. Without fencing the record flips at once; clients are
    // then sent away from c1, which does not answer (a closed loopback port), so that part gives
    // up after fenceTimeout and the switchover completes with a note.
    let closed = free_port().expect("a free port");
    write(
        dir.path(),
        "a-temp.yaml",
        &route_yaml("temp", "temp", "c1", "10.0.0.1:34601")
            .replace("10.0.0.1:34601", &format!("127.0.0.1:{closed}"))
            .replace(
                "spec:\n",
                "spec:\n  active: backup\n  switchover: {fence: false, fenceTimeout: 1s}\n",
            ),
    );
    let bk = RouteRecord::new("c1-bk", ["10.9.0.1:34601"]).expect("record");
    let (flipped, state) = operator::wait_route(&zk, path, &bk, "a-temp.yaml", WAIT).await;
    assert_eq!(flipped, 1, "flipped in one set_data");
    assert_eq!(state["switchover"]["phase"], "reconfiguring", "{state}");
    let view = eventually(WAIT, "the switchover to complete", async || {
        route_view(&op, "a-temp.yaml")
            .await
            .filter(|v| condition(v, "Switchover") == Some(("False".into(), "Completed".into())))
    })
    .await
    .expect("completed");
    assert!(
        view["status"]["switchover"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("clients were not sent away from c1")),
        "{view}"
    );
    assert_eq!(view["status"]["activeSide"], "backup");
    let done = view["status"]["znodeVersion"].as_i64().expect("version");
    assert_eq!(done, 2, "the end of the switchover written once");

    // A second, newer file for the same table yields and says so; the znode is untouched.
    write(
        dir.path(),
        "b-temp.yaml",
        &route_yaml("temp2", "temp", "c7", "10.7.0.1:34601"),
    );
    let loser = eventually(WAIT, "conflict on b-temp.yaml", async || {
        route_view(&op, "b-temp.yaml")
            .await
            .filter(|v| condition(v, "Conflict").is_some_and(|c| c.0 == "True"))
    })
    .await
    .expect("conflict reported");
    assert_eq!(
        condition(&loser, "Ready"),
        Some(("False".into(), "ConflictingRoute".into()))
    );
    assert_eq!(
        znode(&zk, path).await.map(|z| z.1),
        Some(2),
        "the loser wrote nothing"
    );

    // Edited by hand: put back, with a log line saying what was there.
    zk.set_data(
        path,
        br#"{"cluster_name":"by-hand","meta_addrs":"6.6.6.6:1"}"#,
        None,
    )
    .await
    .expect("hand edit");
    assert_eq!(wait_record(&zk, path, &bk, "a-temp.yaml").await, 4);
    eventually(WAIT, "a log line about the hand edit", async || {
        op.log()
            .contains(r#"was changed outside the operator; found {"cluster_name":"by-hand""#)
            .then_some(())
    })
    .await
    .expect("logged");
    counted(&op, "the revert to be counted", |m| {
        m.value("metaproxy_operator_znode_reverts_total", &[]) >= 1.0
    })
    .await;

    // The owner's file removed: its znode goes, and the waiting route takes the table over.
    std::fs::remove_file(dir.path().join("a-temp.yaml")).expect("rm");
    let c7 = RouteRecord::new("c7", ["10.7.0.1:34601"]).expect("record");
    wait_record(&zk, path, &c7, "b-temp.yaml").await;
    let writes = |m: &Metrics, kind: &str| m.find(WRITES, &[("op", kind)]);
    let metrics = counted(&op, "the delete and the second create to be counted", |m| {
        writes(m, "delete") >= Some(1.0) && writes(m, "create") >= Some(2.0)
    })
    .await;
    assert_eq!(writes(&metrics, "delete"), Some(1.0));
    assert_eq!(writes(&metrics, "create"), Some(2.0));

    // Last file removed: nothing left.
    std::fs::remove_file(dir.path().join("b-temp.yaml")).expect("rm");
    wait_gone(&zk, path).await;
    eventually(WAIT, "route gone from /routes", async || {
        route_view(&op, "b-temp.yaml").await.is_none().then_some(())
    })
    .await
    .expect("forgotten");

    let status = op.terminate(WAIT).await.expect("stops");
    assert!(status.success(), "exit status {status}:\n{}", op.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_outage_is_reported_and_recovered() {
    require!(ZOOKEEPER);
    let mut server = ZkServer::launch().await.expect("zookeeper");
    server.kill().await.expect("zookeeper stops");
    let dir = tempfile::tempdir().expect("dir");
    write(
        dir.path(),
        "t.yaml",
        &route_yaml("t", "t1", "c1", "10.0.0.1:34601"),
    );
    let mut op = start_dir_operator(&server, dir.path(), "/mp").await;

    let view = eventually(WAIT, "ZooKeeperUnavailable in the status", async || {
        route_view(&op, "t.yaml")
            .await
            .filter(|v| condition(v, "Ready").is_some_and(|c| c.1 == "ZooKeeperUnavailable"))
    })
    .await
    .expect("status says why");
    assert_eq!(
        condition(&view, "RouteSynced").map(|c| c.0),
        Some("False".into())
    );
    let live = http_get(op.admin, "/live").await.expect("live");
    assert_eq!(live.status, 200, "still alive while ZooKeeper is down");

    server.restart().await.expect("zookeeper back");
    let zk = zkc::Client::connect(&server.connect_string())
        .await
        .expect("test client");
    wait_record(
        &zk,
        "/mp/t1",
        &RouteRecord::new("c1", ["10.0.0.1:34601"]).expect("record"),
        "t.yaml",
    )
    .await;
    eventually(WAIT, "Ready again", async || {
        route_view(&op, "t.yaml")
            .await
            .filter(|v| condition(v, "Ready").is_some_and(|c| c.0 == "True"))
    })
    .await
    .expect("ready");
    // Either reason may be the one counted: a series never used is absent, so zero here.
    counted(&op, "the failures to be counted by reason", |m| {
        let failures = |reason| {
            m.find(
                "metaproxy_operator_reconcile_failures_total",
                &[("reason", reason)],
            )
            .unwrap_or(0.0)
        };
        failures("zookeeper_unavailable") + failures("zookeeper_timeout") >= 1.0
    })
    .await;
    let status = op.terminate(WAIT).await.expect("stops");
    assert!(status.success(), "{status}\n{}", op.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_operator_processes_write_each_znode_once() {
    require!(ZOOKEEPER);
    let (server, zk) = zookeeper().await;
    let dir = tempfile::tempdir().expect("dir");
    let tables: Vec<String> = (0..6).map(|i| format!("table_{i}")).collect();
    for (i, t) in tables.iter().enumerate() {
        write(
            dir.path(),
            &format!("{t}.yaml"),
            &route_yaml(t, t, &format!("c{i}"), "10.0.0.1:34601"),
        );
    }
    let mut a = start_dir_operator(&server, dir.path(), "/race").await;
    let mut b = start_dir_operator(&server, dir.path(), "/race").await;
    for (i, t) in tables.iter().enumerate() {
        let record = RouteRecord::new(format!("c{i}"), ["10.0.0.1:34601"]).expect("record");
        assert_eq!(
            wait_record(&zk, &format!("/race/{t}"), &record, &format!("{t}.yaml")).await,
            0,
            "{t} created once, never set"
        );
    }
    // Both have seen every route settle.
    for op in [&a, &b] {
        eventually(WAIT, "every route Ready in both operators", async || {
            let all = routes(op).await?;
            let all = all.as_array()?;
            tables
                .iter()
                .all(|t| {
                    all.iter()
                        .find(|v| v["file"] == format!("{t}.yaml"))
                        .is_some_and(|v| condition(v, "Ready").is_some_and(|c| c.0 == "True"))
                })
                .then_some(())
        })
        .await
        .expect("settled");
    }
    // A series never used is absent: that operator wrote none of that kind.
    let writes = |m: &Metrics, kind: &str| m.find(WRITES, &[("op", kind)]).unwrap_or(0.0);
    let (ma, mb) = eventually(WAIT, "every create to be counted", async || {
        let (ma, mb) = (scrape(a.admin).await.ok()?, scrape(b.admin).await.ok()?);
        (writes(&ma, "create") + writes(&mb, "create") >= tables.len() as f64).then_some((ma, mb))
    })
    .await
    .expect("counted");
    assert_eq!(
        writes(&ma, "create") + writes(&mb, "create"),
        tables.len() as f64,
        "one create per znode in all"
    );
    assert_eq!(writes(&ma, "set") + writes(&mb, "set"), 0.0, "no overwrite");
    for t in &tables {
        assert_eq!(
            znode(&zk, &format!("/race/{t}")).await.map(|z| z.1),
            Some(0)
        );
    }
    let status = a.terminate(WAIT).await.expect("a stops");
    assert!(status.success(), "{status}\n{}", a.log());
    let status = b.terminate(WAIT).await.expect("b stops");
    assert!(status.success(), "{status}\n{}", b.log());
}

#[test]
fn invalid_configuration_exits_64_before_binding() {
    let port = metaproxy_tests::free_port().expect("port");
    let cases: &[(&[&str], &str)] = &[
        (&[], "no zone is configured"),
        (
            &["--zone", "az1=127.0.0.1:2181"],
            "expected NAME=HOSTS/ROOT",
        ),
        (
            &["--zone", "a=127.0.0.1:1/a", "--zone", "b=127.0.0.1:1/b"],
            "say which is the default",
        ),
        (
            &["--zone", "a=127.0.0.1:1/a", "--resync", "60"],
            "resync: \"60\" is not a duration",
        ),
        (
            &["--zone", "a=127.0.0.1:1/a", "--retry-period", "0s"],
            "retry-period: must be more than zero",
        ),
        // The flags before the file keys took the flag names.
        (
            &["--zone", "a=127.0.0.1:1/a", "--resync-secs", "60"],
            "unexpected argument '--resync-secs'",
        ),
        (
            &["--zone", "a=127.0.0.1:1/a", "--check-config", "--poll", "1"],
            "poll:",
        ),
    ];
    for (args, reason) in cases {
        let out = std::process::Command::new(OPERATOR)
            .args(*args)
            .args(["--admin-listen", &format!("127.0.0.1:{port}")])
            .env_remove("METAPROXY_OPERATOR_ZONES")
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
        // Nothing was bound: the port is still free.
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("admin port never bound");
    }
}

#[test]
fn check_config_prints_the_effective_configuration() {
    let port = metaproxy_tests::free_port().expect("port");
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("operator.yaml");
    write(
        dir.path(),
        "operator.yaml",
        &format!(
            "zones:\n  - {{name: az1, hosts: '127.0.0.1:2181', root: /metaproxy/az1}}\n  - {{name: az2, hosts: '127.0.0.1:2182', root: /metaproxy/az2}}\n\
             default-zone: az1\nroutes-dir: {}\npoll: 250ms\nresync: 30s\nzk-session-timeout: 4s\n",
            dir.path().display()
        ),
    );
    let out = std::process::Command::new(OPERATOR)
        .arg("--config")
        .arg(&file)
        .args(["--check-config", "--default-zone", "az2"])
        .args(["--admin-listen", &format!("127.0.0.1:{port}")])
        .env("METAPROXY_OPERATOR_RESYNC", "2m")
        .env_remove("METAPROXY_OPERATOR_ZONES")
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout}");
    let json = stdout
        .trim_end()
        .strip_prefix("configuration OK: ")
        .unwrap_or_else(|| panic!("{stdout}"));
    let config: serde_json::Value = serde_json::from_str(json).expect("JSON");
    assert_eq!(config["default-zone"], "az2", "the flag wins");
    assert_eq!(config["resync"], "2m", "the environment beats the file");
    assert_eq!(config["zk-session-timeout"], "4s", "the file fills in");
    assert_eq!(config["zk-request-timeout"], "5s", "the default");
    assert_eq!(config["admin-listen"], format!("127.0.0.1:{port}"));
    assert_eq!(config["source"]["routes-dir"]["poll"], "250ms");
    assert_eq!(config["zones"][1]["hosts"], "127.0.0.1:2182");
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("admin port never bound");
}

/// The cluster a znode routes to (whatever else the record says).
async fn routed_cluster(zk: &zkc::Client, path: &str) -> Option<(String, i32)> {
    let (data, version) = znode(zk, path).await?;
    let record = RouteRecord::parse(&data).ok()?;
    Some((record.cluster, version))
}

/// Two files for one table: the one that holds the znode keeps it across restarts, although the
/// other sorts first. Before ownership was recorded in the znode, seniority was "first seen by
/// this process", so a restart handed the table to whichever file the scan met first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ownership_survives_restarts() {
    require!(ZOOKEEPER);
    const RESTARTS: usize = 12;
    let (server, zk) = zookeeper().await;
    let dir = tempfile::tempdir().expect("dir");
    let path = "/restarts/shared";
    write(
        dir.path(),
        "z-owner.yaml",
        &route_yaml("owner", "shared", "c1", "10.0.0.1:34601"),
    );
    let mut op = start_dir_operator(&server, dir.path(), "/restarts").await;
    eventually(WAIT, "z-owner.yaml to write the znode", async || {
        routed_cluster(&zk, path).await.filter(|(c, _)| c == "c1")
    })
    .await
    .expect("written");
    // A second file for the same table, sorting before the owner.
    write(
        dir.path(),
        "a-newer.yaml",
        &route_yaml("newer", "shared", "c2", "10.2.0.1:34601"),
    );
    eventually(WAIT, "a-newer.yaml to yield", async || {
        route_view(&op, "a-newer.yaml")
            .await
            .filter(|v| condition(v, "Conflict").is_some_and(|c| c.0 == "True"))
    })
    .await
    .expect("the newer file yields");
    let (_, first_version) = routed_cluster(&zk, path).await.expect("znode");

    let mut flips = 0;
    let mut owner = "c1".to_owned();
    for _ in 0..RESTARTS {
        let status = op.terminate(WAIT).await.expect("stops");
        assert!(status.success(), "{status}\n{}", op.log());
        op = start_dir_operator(&server, dir.path(), "/restarts").await;
        // Both files reconciled: one Ready, the other in conflict.
        eventually(
            WAIT,
            "both routes to settle after the restart",
            async || {
                let a = route_view(&op, "a-newer.yaml").await?;
                let z = route_view(&op, "z-owner.yaml").await?;
                let ready = |v: &serde_json::Value| condition(v, "Ready").map(|c| c.0);
                let conflict = |v: &serde_json::Value| condition(v, "Conflict").map(|c| c.0);
                let settled = (ready(&a).as_deref() == Some("True")
                    && conflict(&z).as_deref() == Some("True"))
                    || (ready(&z).as_deref() == Some("True")
                        && conflict(&a).as_deref() == Some("True"));
                settled.then_some(())
            },
        )
        .await
        .expect("settled");
        let (now, _) = routed_cluster(&zk, path).await.expect("znode");
        if now != owner {
            flips += 1;
            owner = now;
        }
    }
    let (_, last_version) = routed_cluster(&zk, path).await.expect("znode");
    let rewrites = last_version - first_version;
    eprintln!("{RESTARTS} restarts: {flips} owner flips, {rewrites} znode rewrites");
    assert_eq!((flips, rewrites), (0, 0), "the table stays with its owner");
    let status = op.terminate(WAIT).await.expect("stops");
    assert!(status.success(), "{status}\n{}", op.log());
}

/// Route files removed while the operator was down (killed with SIGKILL once, stopped with
/// SIGTERM once): at the next start their records are found by the writer marker and deleted.
/// The remaining file's record, a record made by hand (no marker) and another routes
/// directory's record are left as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_files_removed_while_the_operator_was_down_are_deleted_at_its_start() {
    use metaproxy_operator::reconcile::state::RouteState;
    use metaproxy_operator::record;
    require!(ZOOKEEPER);
    let (server, zk) = zookeeper().await;
    let dir = tempfile::tempdir().expect("dir");
    let start = async || {
        let mut args = dir_operator_args(&server, dir.path(), "/orphans");
        // The sweep runs again at each resync: a start whose listing failed is caught up soon.
        args.extend(["--resync".into(), "3s".into()]);
        Operator::launch(OPERATOR, &args, &[], WAIT)
            .await
            .expect("operator starts and gets ready")
    };
    let c1 = RouteRecord::new("c1", ["10.0.0.1:34601"]).expect("record");
    for t in ["a", "b", "c"] {
        write(
            dir.path(),
            &format!("{t}.yaml"),
            &route_yaml(t, &format!("t{t}"), "c1", "10.0.0.1:34601"),
        );
    }
    let mut op = start().await;
    for t in ["a", "b", "c"] {
        wait_record(&zk, &format!("/orphans/t{t}"), &c1, &format!("{t}.yaml")).await;
    }
    let canonical = std::fs::canonicalize(dir.path()).expect("canonical");
    let marked = znode(&zk, "/orphans/ta").await.expect("znode").0;
    assert_eq!(
        record::writer(&marked),
        Some(format!("routes-dir:{}", canonical.display())),
        "the default marker"
    );
    let opts = zkc::CreateMode::Persistent.with_acls(zkc::Acls::anyone_all());
    let hand = record::to_json(&c1, "gone.yaml");
    let other = record::with_state(
        &c1,
        "gone.yaml",
        Some("routes-dir:/elsewhere"),
        &RouteState::default(),
    );
    zk.create("/orphans/hand", &hand, &opts)
        .await
        .expect("create");
    zk.create("/orphans/other", &other, &opts)
        .await
        .expect("create");

    for (sigkill, file, table) in [(true, "a.yaml", "ta"), (false, "c.yaml", "tc")] {
        if sigkill {
            op.kill().await.expect("SIGKILL");
        } else {
            let status = op.terminate(WAIT).await.expect("stops");
            assert!(status.success(), "{status}\n{}", op.log());
        }
        std::fs::remove_file(dir.path().join(file)).expect("remove");
        let started = Instant::now();
        op = start().await;
        wait_gone(&zk, &format!("/orphans/{table}")).await;
        eprintln!(
            "FIGURE orphan_deleted_after_start_ms {}",
            started.elapsed().as_millis()
        );
        counted(&op, "the deletion counted", |m| {
            m.value("metaproxy_operator_routes_dir_orphans_deleted_total", &[]) == 1.0
        })
        .await;
        let log = op.log();
        assert!(
            log.lines().any(|l| l.contains(
                "deleted the record of a route file removed while the operator was down"
            ) && l.contains(table)
                && l.contains(file)),
            "{log}"
        );
        assert!(
            log.contains("/orphans/hand") && log.contains("without a writer marker"),
            "the unmarked record is reported: {log}"
        );
    }
    wait_record(&zk, "/orphans/tb", &c1, "b.yaml").await;
    assert_eq!(znode(&zk, "/orphans/hand").await, Some((hand, 0)));
    assert_eq!(znode(&zk, "/orphans/other").await, Some((other, 0)));
    let status = op.terminate(WAIT).await.expect("stops");
    assert!(status.success(), "{status}\n{}", op.log());
}

/// SIGTERM while ZooKeeper is down and every route is retrying: the retries and the ZooKeeper
/// waits in flight are interrupted, the process exits at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_zookeeper_down_and_200_routes_exits_at_once() {
    require!(ZOOKEEPER);
    const ROUTES: usize = 200;
    let mut server = ZkServer::launch().await.expect("zookeeper");
    server.kill().await.expect("zookeeper stops");
    let dir = tempfile::tempdir().expect("dir");
    for i in 0..ROUTES {
        write(
            dir.path(),
            &format!("t{i:03}.yaml"),
            &route_yaml(&format!("t{i}"), &format!("t{i}"), "c1", "10.0.0.1:34601"),
        );
    }
    let mut op = start_dir_operator(&server, dir.path(), "/down").await;
    // Every route has run into the outage and is retrying.
    eventually(WAIT, "every route to report ZooKeeper down", async || {
        let all = routes(&op).await?;
        let down = all
            .as_array()?
            .iter()
            .filter(|v| condition(v, "Ready").is_some_and(|c| c.1 == "ZooKeeperUnavailable"))
            .count();
        (down == ROUTES).then_some(())
    })
    .await
    .expect("outage seen");
    let started = std::time::Instant::now();
    let status = op.terminate(Duration::from_secs(130)).await.expect("stops");
    let took = started.elapsed();
    eprintln!("SIGTERM with ZooKeeper down and {ROUTES} routes: exited after {took:?}");
    assert!(status.success(), "exit status {status}:\n{}", op.log());
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

/// A FIFO used to block the scan (and SIGTERM with it); an integer table name and unknown
/// fields used to be accepted. Now the operator gets ready, writes the valid route, says in
/// `/routes` why each other file is not used, and stops at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_route_files_are_refused_without_blocking() {
    require!(ZOOKEEPER);
    let (server, zk) = zookeeper().await;
    let dir = tempfile::tempdir().expect("dir");
    let fifo = dir.path().join("a-fifo.yaml");
    let made = tokio::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .await
        .expect("mkfifo");
    assert!(made.success());
    write(
        dir.path(),
        "b-int.yaml",
        &route_yaml("int", "t1", "c1", "10.0.0.1:34601").replace("table: t1", "table: 12345"),
    );
    write(
        dir.path(),
        "c-typo.yaml",
        &route_yaml("typo", "t2", "c1", "10.0.0.1:34601")
            .replace("  table: t2\n", "  table: t2\n  zones: az1\n"),
    );
    write(dir.path(), "d-big.yaml", &"#".repeat(2 * 1024 * 1024));
    write(
        dir.path(),
        "e-good.yaml",
        &route_yaml("good", "good", "c1", "10.0.0.1:34601"),
    );
    let mut op = start_dir_operator(&server, dir.path(), "/hostile").await;
    let c1 = RouteRecord::new("c1", ["10.0.0.1:34601"]).expect("record");
    wait_record(&zk, "/hostile/good", &c1, "e-good.yaml").await;
    // Every file was read in the first pass, before the operator got ready.
    let all = routes(&op).await.expect("/routes");
    let error = |file: &str| {
        all.as_array()
            .and_then(|all| all.iter().find(|r| r["file"] == file))
            .and_then(|v| v["error"].as_str().map(String::from))
            .unwrap_or_default()
    };
    assert_eq!(error("a-fifo.yaml"), "not a regular file");
    assert!(
        error("b-int.yaml").contains("spec.table: expected a string, found an integer 12345"),
        "{}",
        error("b-int.yaml")
    );
    assert!(
        error("c-typo.yaml").contains("spec.zones: unknown field"),
        "{}",
        error("c-typo.yaml")
    );
    assert!(error("d-big.yaml").contains("more than the 1048576"));
    for table in ["12345", "t1", "t2"] {
        assert_eq!(
            znode(&zk, &format!("/hostile/{table}")).await,
            None,
            "{table}"
        );
    }
    let started = std::time::Instant::now();
    let status = op.terminate(WAIT).await.expect("stops");
    assert!(status.success(), "{status}\n{}", op.log());
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// A client of `server` authenticated with `credentials` (`None`: anonymous).
async fn zk_as(server: &ZkServer, credentials: Option<&str>) -> zkc::Client {
    let mut connector = zkc::Client::connector();
    if let Some(c) = credentials {
        connector = connector.with_auth("digest", c.as_bytes());
    }
    connector
        .connect(&server.connect_string())
        .await
        .expect("test client")
}

/// Digest authentication and ACLs against the real ZooKeeper: the operator, authenticated from a
/// file, creates its records and their parents writable by itself only and readable by the
/// proxies' identity only; an anonymous client can neither read nor write, a proxy's can read
/// but not write, and a proxy given its credentials file serves the route. No password reaches
/// a log or the configuration summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_acls_let_proxies_read_and_only_the_operator_write() {
    require!(ZOOKEEPER);
    let server = ZkServer::launch().await.expect("zookeeper");
    let secrets = tempfile::tempdir().expect("dir");
    let (op_creds, proxy_creds) = ("operator:op-s3cret", "proxy:px-s3cret");
    let op_file = secrets.path().join("operator-auth");
    let proxy_file = secrets.path().join("proxy-auth");
    std::fs::write(&op_file, format!("{op_creds}\n")).expect("write");
    std::fs::write(&proxy_file, format!("{proxy_creds}\n")).expect("write");
    let reader = metaproxy_tests::zk::digest_id(proxy_creds)
        .await
        .expect("digest");
    let operator_id = metaproxy_tests::zk::digest_id(op_creds)
        .await
        .expect("digest");

    let sim = metaproxy_tests::sim::Simulator::start(metaproxy_tests::sim::SimConfig::loopback(
        1,
        vec![metaproxy_tests::sim::TableSpec::new(
            "temp",
            4,
            8,
            ["127.0.0.1:34801".parse().expect("addr")],
        )],
    ))
    .await
    .expect("simulator");
    let meta = sim.meta_addrs()[0].to_string();
    let dir = tempfile::tempdir().expect("dir");
    write(
        dir.path(),
        "temp.yaml",
        &route_yaml("temp", "temp", "c1", &meta),
    );
    let root = "/metaproxy/acl/c3srv";
    let mut args = dir_operator_args(&server, dir.path(), root);
    args.extend([
        "--zk-auth-file".into(),
        op_file.display().to_string(),
        "--zk-reader-digest".into(),
        reader.clone(),
    ]);
    let op = Operator::launch(OPERATOR, &args, &[], WAIT)
        .await
        .expect("operator starts");

    let path = format!("{root}/temp");
    let record = RouteRecord::new("c1", [meta.clone()]).expect("record");
    let as_proxy = zk_as(&server, Some(proxy_creds)).await;
    wait_record(&as_proxy, &path, &record, "temp.yaml").await;

    let anonymous = zk_as(&server, None).await;
    let as_other = zk_as(&server, Some("mallory:guess")).await;
    let create = zkc::CreateMode::Persistent.with_acls(zkc::Acls::anyone_all());
    for (who, client) in [("anonymous", &anonymous), ("another user", &as_other)] {
        assert_eq!(
            client.get_data(&path).await.map(|_| ()),
            Err(zkc::Error::NoAuth),
            "{who} cannot read"
        );
        assert_eq!(
            client.set_data(&path, b"{}", None).await.map(|_| ()),
            Err(zkc::Error::NoAuth),
            "{who} cannot write"
        );
        assert_eq!(
            client.delete(&path, None).await,
            Err(zkc::Error::NoAuth),
            "{who} cannot delete"
        );
        assert_eq!(
            client
                .create(&format!("{root}/forged"), b"{}", &create)
                .await
                .map(|_| ()),
            Err(zkc::Error::NoAuth),
            "{who} cannot add a record"
        );
    }
    assert_eq!(
        as_proxy.set_data(&path, b"{}", None).await.map(|_| ()),
        Err(zkc::Error::NoAuth),
        "a proxy cannot write"
    );
    assert_eq!(
        as_proxy.delete(&path, None).await,
        Err(zkc::Error::NoAuth),
        "a proxy cannot delete"
    );
    assert_eq!(
        as_proxy
            .create(&format!("{root}/forged"), b"{}", &create)
            .await
            .map(|_| ()),
        Err(zkc::Error::NoAuth),
        "a proxy cannot add a record"
    );

    // The record and every parent the operator created carry the same ACL.
    let as_operator = zk_as(&server, Some(op_creds)).await;
    for node in ["/metaproxy", "/metaproxy/acl", root, path.as_str()] {
        let (acls, _) = as_operator.get_acl(node).await.expect("get_acl");
        let mut shown: Vec<String> = acls.iter().map(metaproxy_operator::zk::show_acl).collect();
        shown.sort();
        assert_eq!(
            shown,
            [
                format!("digest:{operator_id}:ALL"),
                format!("digest:{reader}:READ")
            ],
            "{node}"
        );
    }

    // A proxy with its credentials file reads the route and serves it.
    let config = metaproxy::config::Config::load(metaproxy::config::Settings {
        listen: Some("127.0.0.1:0".into()),
        admin_listen: Some("127.0.0.1:0".into()),
        zk: Some(server.connect_string()),
        zk_root: Some(root.into()),
        zk_auth_file: Some(proxy_file.clone()),
        ..Default::default()
    })
    .expect("proxy configuration");
    assert!(
        !config.summary().contains("px-s3cret"),
        "{}",
        config.summary()
    );
    let proxy = metaproxy::Proxy::start(&config).await.expect("proxy");
    let mut client = metaproxy_tests::raw::RawConn::connect(proxy.addr()).await;
    eventually(WAIT, "the proxy serves temp", async || {
        (client.query("temp", 1).await.app_id == 4).then_some(())
    })
    .await
    .expect("served");

    // Removing the file deletes the record: the operator can still delete what it wrote.
    std::fs::remove_file(dir.path().join("temp.yaml")).expect("remove");
    wait_gone(&as_operator, &path).await;
    let log = op.log();
    assert!(!log.contains("op-s3cret"), "the password is in the log");
    assert!(
        log.contains("operator from"),
        "the summary names the user and file"
    );
}
