//! The kv workload (clients that read and write, as the official ones do) through the proxy, with
//! routes in a real ZooKeeper: nothing acknowledged is lost in steady state, across replica
//! moves, and across a planned switchover to a duplication follower (fence the primary with
//! `timeout*write`, wait the config sync, wait for duplication to drain, flip the znode, send the
//! clients away with `reconfig*all`).
//!
//! The switchover test prints its timeline (run with `--nocapture` to see it).

use std::time::Duration;

use metaproxy::Proxy;
use metaproxy::route::RouteRecord;
use metaproxy_tests::client::ClientOptions;
use metaproxy_tests::harness::eventually;
use metaproxy_tests::kv::{self, KvConfig, KvReport};
use metaproxy_tests::load::Until;
use metaproxy_tests::require;
use metaproxy_tests::sim::{
    DuplicationSpec, ReplicaMode, SimConfig, SimHandle, Simulator, TableSpec,
};
use metaproxy_tests::zk::{ZOOKEEPER, ZkServer};
use pegasus_rpc::client::{GroupOptions, MetaGroup};
use pegasus_rpc::codec::{ErrorCode, UpdateAppEnvRequest};
use tokio::time::Instant;
use zookeeper_client as zkc;

const ROOT: &str = "/metaproxy/kv";
const WAIT: Duration = Duration::from_secs(30);
const DENY: &str = "replica.deny_client_request";

fn metas(sim: &SimHandle) -> Vec<String> {
    sim.meta_addrs().iter().map(|a| a.to_string()).collect()
}

fn record(cluster: &str, sim: &SimHandle) -> Vec<u8> {
    RouteRecord::new(cluster, metas(sim))
        .expect("valid record")
        .to_json()
}

async fn zk_client(server: &ZkServer) -> zkc::Client {
    let client = zkc::Client::connect(&server.connect_string())
        .await
        .expect("zk connects");
    let opts = zkc::CreateMode::Persistent.with_acls(zkc::Acls::anyone_all());
    client.mkdir(ROOT, &opts).await.expect("root");
    client
}

async fn put(client: &zkc::Client, table: &str, data: &[u8]) {
    let path = format!("{ROOT}/{table}");
    match client.set_data(&path, data, None).await {
        Ok(_) => {}
        Err(zkc::Error::NoNode) => {
            let opts = zkc::CreateMode::Persistent.with_acls(zkc::Acls::anyone_all());
            client.create(&path, data, &opts).await.expect("create");
        }
        Err(e) => panic!("set {path}: {e}"),
    }
}

async fn proxy(zk: &ZkServer) -> Proxy {
    metaproxy_tests::proxy::over_zk(&zk.connect_string(), ROOT, WAIT).await
}

async fn cluster(config: SimConfig) -> SimHandle {
    Simulator::start(config).await.expect("simulator starts")
}

/// Table `temp` (app 2, 8 partitions) on three replica nodes.
fn temp() -> TableSpec {
    TableSpec::served("temp", 2, 8)
}

fn kv_config(through: &Proxy, verify: Vec<String>) -> KvConfig {
    KvConfig {
        workers: 16,
        until: Until::Elapsed(Duration::from_secs(120)),
        verify: Some(verify),
        ..KvConfig::new(vec![through.addr().to_string()], "temp")
    }
}

fn assert_nothing_lost(report: &KvReport) {
    let v = report.verify.as_ref().expect("verified");
    assert!(report.writes.ok > 0, "{report}");
    assert_eq!(
        v.checked, report.writes.ok,
        "every acknowledged write checked"
    );
    assert_eq!(
        (v.lost, v.wrong, v.unreadable),
        (0, 0, 0),
        "acknowledged writes lost:\n{report}"
    );
}

#[tokio::test]
async fn kv_through_the_proxy_loses_nothing_across_a_replica_move() {
    require!(ZOOKEEPER);
    let zk = ZkServer::launch().await.expect("zookeeper");
    let zkc = zk_client(&zk).await;
    let a = cluster(SimConfig::with_replicas(3, 3, vec![temp()])).await;
    put(&zkc, "temp", &record("c-a", &a)).await;
    let proxy = proxy(&zk).await;

    let run = kv::spawn(kv_config(&proxy, vec![proxy.addr().to_string()])).expect("starts");
    eventually(WAIT, "writes", async || {
        (run.progress().writes_ok > 300).then_some(())
    })
    .await
    .expect("writes flow");
    // A replica server dies: its primaries move, clients are refused, ask again and follow.
    a.set_replica_mode(1, ReplicaMode::Stopped)
        .await
        .expect("stop");
    let moved = run.progress().writes_ok;
    eventually(WAIT, "writes after the move", async || {
        (run.progress().writes_ok > moved + 300).then_some(())
    })
    .await
    .expect("writes flow again");
    run.stop();
    let report = run.finish().await.expect("report");
    eprintln!("{report}");
    assert_nothing_lost(&report);
    assert!(report.requeries >= 2, "re-queried after the move: {report}");
    assert_eq!(a.counters().replica.key_mismatches, 0);
    proxy.drain().await;
    a.shutdown().await;
}

/// Sends an update_app_env to a cluster's metas.
async fn set_env(sim: &SimHandle, value: &str) {
    let group = MetaGroup::new("c-a", &metas(sim), GroupOptions::default()).expect("metas");
    let resp = group
        .update_app_env(
            &UpdateAppEnvRequest::set("temp", [(DENY, value)]),
            Instant::now() + WAIT,
        )
        .await
        .expect("answered");
    assert_eq!(resp.err, ErrorCode::OK, "{resp:?}");
}

/// Whether query_duplication says every partition is confirmed up to its last commit.
async fn drained(group: &MetaGroup) -> bool {
    let Ok(resp) = group.query_duplication("temp", Instant::now() + WAIT).await else {
        return false;
    };
    resp.err.is_ok()
        && resp.entry_list.first().is_some_and(|e| {
            e.partition_states.as_ref().is_some_and(|states| {
                states.len() == 8
                    && states
                        .values()
                        .all(|s| s.confirmed_decree >= s.last_committed_decree)
            })
        })
}

#[tokio::test]
async fn a_fenced_manual_flip_loses_no_acknowledged_write() {
    require!(ZOOKEEPER);
    let zk = ZkServer::launch().await.expect("zookeeper");
    let zkc = zk_client(&zk).await;
    let backup = cluster(SimConfig::with_replicas(1, 3, vec![temp()])).await;
    let mut config = SimConfig::with_replicas(
        3,
        3,
        vec![temp().with_duplication(DuplicationSpec::new(metas(&backup), "temp"))],
    );
    // Some lag, so that the drain has something to wait for.
    config.dup_lag = Duration::from_millis(300);
    let primary = cluster(config).await;
    put(&zkc, "temp", &record("c-a", &primary)).await;
    let proxy = proxy(&zk).await;
    let group = MetaGroup::new("c-a", &metas(&primary), GroupOptions::default()).expect("metas");
    let sync = primary.config_sync_interval();

    let mut cfg = kv_config(&proxy, metas(&backup));
    cfg.client = ClientOptions::default();
    let run = kv::spawn(cfg).expect("starts");
    let t0 = Instant::now();
    let at = |t: Instant| t.duration_since(t0).as_millis();
    eventually(WAIT, "writes", async || {
        (run.progress().writes_ok > 500).then_some(())
    })
    .await
    .expect("writes flow");

    // 1. Fence: the primary's replicas drop writes once they have synced the env.
    set_env(&primary, "timeout*write").await;
    let fenced = Instant::now();
    let first_denied = eventually(WAIT, "a dropped write", async || {
        (primary.counters().replica.dropped > 0).then(Instant::now)
    })
    .await
    .expect("writes are dropped");
    tokio::time::sleep(sync * 2 + Duration::from_millis(100)).await;
    let writes_at_fence = primary
        .table_state("temp")
        .expect("temp")
        .last_decrees
        .iter()
        .sum::<i64>();

    // 2. Drain: duplication catches up with the last committed decree everywhere.
    eventually(WAIT, "duplication drained", async || {
        drained(&group).await.then_some(())
    })
    .await
    .expect("drains");
    let drain_done = Instant::now();
    let after = primary.table_state("temp").expect("temp");
    assert_eq!(
        after.last_decrees.iter().sum::<i64>(),
        writes_at_fence,
        "no write committed on the fenced primary"
    );

    // 3. Flip the route, then send the clients away from the old primary.
    let puts_on_backup = || {
        backup
            .counters()
            .replica
            .by_rpc
            .get("RPC_RRDB_RRDB_PUT")
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(
        puts_on_backup(),
        0,
        "no client reached the backup before the flip"
    );
    put(&zkc, "temp", &record("c-b", &backup)).await;
    let flipped = Instant::now();
    set_env(&primary, "reconfig*all").await;
    let first_write_b = eventually(WAIT, "a client write on the backup", async || {
        (puts_on_backup() > 0).then(Instant::now)
    })
    .await
    .expect("clients moved");
    let moved = run.progress().writes_ok;
    eventually(WAIT, "writes on the backup", async || {
        (run.progress().writes_ok > moved + 300).then_some(())
    })
    .await
    .expect("writes flow on the backup");
    run.stop();
    let report = run.finish().await.expect("report");

    eprintln!("{report}");
    eprintln!(
        "switchover timeline (ms since the workload started): fence SET acknowledged {}, first \
         write dropped {}, sync waited until {}, duplication drained {}, znode flipped {}, \
         first client write on the backup {}; sync interval {:?}",
        at(fenced),
        at(first_denied),
        at(fenced + sync * 2 + Duration::from_millis(100)),
        at(drain_done),
        at(flipped),
        at(first_write_b),
        sync
    );
    assert_nothing_lost(&report);
    assert!(
        report
            .errors
            .keys()
            .all(|k| k.starts_with("write:") || k.starts_with("read:"))
    );
    proxy.drain().await;
    primary.shutdown().await;
    backup.shutdown().await;
}
