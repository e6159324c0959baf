//! Admin RPCs through the proxy, with two simulated clusters: each table-scoped RPC reaches the
//! cluster its table's route names (and only it), `--admin-rpcs` denies as a MetaServer's ACL
//! does, list_apps merges the clusters, cluster-scoped RPCs are not served.

mod common;

use bytes::{BufMut, BytesMut};
use common::*;
use metaproxy::admin_rpc::{NOT_SERVED, TABLE_RPCS};
use metaproxy_tests::idl;
use metaproxy_tests::sim::SimConfig;
use pegasus_rpc::codec::list_apps::{ListAppsResponse, app_status, list_apps_args};
use pegasus_rpc::codec::{
    AddDuplicationRequest, ErrorCode, QueryCfgResponse, QueryDuplicationRequest,
    UpdateAppEnvRequest,
};

/// The args of admin RPC `name` for `table`, built from the IDL (`P:idl/*.thrift`), not from the
/// proxy's table: recall_app names the table in field 2 after an app_id, the others in field 1,
/// most followed by more fields the proxy must pass on untouched.
fn admin_args(name: &str, table: &str) -> Vec<u8> {
    let mut out = BytesMut::new();
    let string = |out: &mut BytesMut, id: u8, s: &str| {
        out.put_slice(&[0x0b, 0, id]);
        out.put_i32(s.len() as i32);
        out.put_slice(s.as_bytes());
    };
    match name {
        "RPC_CM_UPDATE_APP_ENV" => {
            UpdateAppEnvRequest::set(table, [("replica.deny_client_request", "timeout*write")])
                .to_args(&mut out);
            return out.to_vec();
        }
        "RPC_CM_QUERY_DUPLICATION" => {
            QueryDuplicationRequest::new(table).to_args(&mut out);
            return out.to_vec();
        }
        "RPC_CM_ADD_DUPLICATION" => {
            AddDuplicationRequest::new(table, "nowhere").to_args(&mut out);
            return out.to_vec();
        }
        "RPC_CM_CREATE_APP" => return idl::create_app(table, 4, vec![]),
        "RPC_CM_DROP_APP" => return idl::drop_app(table),
        // app_id 5: t2, dropped just before.
        "RPC_CM_RECALL_APP" => return idl::recall_app(5, table),
        _ => {}
    }
    out.put_slice(&[0x0c, 0, 1]);
    string(&mut out, 1, table);
    out.put_slice(&[0x08, 0, 2, 0, 0, 0, 4]); // a second field, e.g. a count or a type
    out.put_slice(&[0, 0]);
    out.to_vec()
}

/// What the simulator answers a table that exists: see `tests/src/sim/meta_rpc.rs` and
/// `table_admin.rs` (no split or manual compaction is under way).
fn expected_err(name: &str) -> &'static str {
    match name {
        "RPC_CM_CREATE_APP" => "ERR_APP_EXIST",
        "RPC_CM_ADD_DUPLICATION" => "ERR_INVALID_PARAMETERS",
        "RPC_CM_QUERY_PARTITION_SPLIT" | "RPC_CM_QUERY_MANUAL_COMPACT_STATUS" => {
            "ERR_INVALID_STATE"
        }
        _ => "ERR_OK",
    }
}

#[tokio::test]
async fn every_table_scoped_admin_rpc_reaches_the_cluster_of_its_table() {
    // The leader of c2 is its second MetaServer: the proxy follows it for admin RPCs too.
    let c1 = sim(2, vec![table("t1", 1, 4)]).await;
    let c2 = sim_with(SimConfig {
        leader: Some(1),
        ..SimConfig::loopback(2, vec![table("t2", 5, 4)])
    })
    .await;
    let routes = RoutesFile::new(&[("t1", &record("c1", &c1)), ("t2", &record("c2", &c2))]);
    let proxy = start_with_routes(&routes, |c| c.admin_rpcs = Some("all".into())).await;
    let mut client = RawConn::connect(proxy.addr()).await;
    for (seqid, rpc) in TABLE_RPCS.iter().enumerate() {
        let reply = client
            .call(rpc.name, &admin_args(rpc.name, "t2"), seqid as i32)
            .await;
        assert_eq!(reply.rpc_error, ErrorCode::OK, "{}", rpc.name);
        let err = QueryCfgResponse::peek_err(&reply.body)
            .unwrap_or_else(|e| panic!("{}: an admin response with err: {e}", rpc.name));
        assert_eq!(err.as_str(), expected_err(rpc.name), "{}", rpc.name);
    }
    let (on_c1, on_c2) = (c1.counters().by_rpc, c2.counters().by_rpc);
    for rpc in &TABLE_RPCS {
        assert_eq!(on_c1.get(rpc.name), None, "{} reached c1", rpc.name);
        assert!(
            on_c2.get(rpc.name).copied().unwrap_or(0) >= 1,
            "{} did not reach c2",
            rpc.name
        );
    }

    // A table without a route: answered by the proxy, no cluster asked.
    let reply = client
        .call(
            "RPC_CM_DROP_APP",
            &admin_args("RPC_CM_DROP_APP", "nosuch"),
            100,
        )
        .await;
    let resp = ListAppsResponse::from_result(&reply.body).expect("err-only response");
    assert_eq!(resp.err, ErrorCode::OBJECT_NOT_FOUND);
    assert_eq!(c1.counters().by_rpc.get("RPC_CM_DROP_APP"), None);
}

#[tokio::test]
async fn read_only_by_default_denies_writes_as_an_acl_does() {
    let c1 = sim(1, vec![table("t1", 1, 4)]).await;
    let routes = RoutesFile::new(&[("t1", &record("c1", &c1))]);
    let proxy = start_with_routes(&routes, |_| {}).await;
    let off = start_with_routes(&routes, |c| c.admin_rpcs = Some("off".into())).await;
    let mut client = RawConn::connect(proxy.addr()).await;
    let mut denied_all = RawConn::connect(off.addr()).await;
    for (seqid, rpc) in TABLE_RPCS.iter().enumerate() {
        let args = admin_args(rpc.name, "t1");
        let reply = client.call(rpc.name, &args, seqid as i32).await;
        let err = ListAppsResponse::from_result(&reply.body)
            .expect("response")
            .err;
        let read = rpc.name.contains("QUERY") || rpc.name.contains("_GET_");
        let want = if read {
            expected_err(rpc.name)
        } else {
            "ERR_ACL_DENY"
        };
        assert_eq!(err.as_str(), want, "{} with read-only", rpc.name);
        let reply = denied_all.call(rpc.name, &args, seqid as i32).await;
        let err = ListAppsResponse::from_result(&reply.body)
            .expect("response")
            .err;
        assert_eq!(err.as_str(), "ERR_ACL_DENY", "{} with off", rpc.name);
    }
    let mut args = BytesMut::new();
    list_apps_args(app_status::INVALID, &mut args);
    let reply = denied_all.call("RPC_CM_LIST_APPS", &args, 99).await;
    let err = ListAppsResponse::from_result(&reply.body)
        .expect("response")
        .err;
    assert_eq!(err.as_str(), "ERR_ACL_DENY");
    let on_c1 = c1.counters().by_rpc;
    assert_eq!(
        on_c1.get("RPC_CM_DROP_APP"),
        None,
        "a denied RPC reached the cluster"
    );
    assert_eq!(on_c1.get("RPC_CM_GET_MAX_REPLICA_COUNT"), Some(&1));
}

#[tokio::test]
async fn list_apps_lists_each_routed_table_once_from_its_cluster() {
    // t1 exists on both clusters; its route names c1. x has no route.
    let c1 = sim(1, vec![table("t1", 1, 4), table("x", 2, 4)]).await;
    let c2 = sim(1, vec![table("t2", 1, 8), table("t1", 7, 8)]).await;
    let routes = RoutesFile::new(&[("t1", &record("c1", &c1)), ("t2", &record("c2", &c2))]);
    let proxy = start_with_routes(&routes, |c| c.upstream_timeout = Some("1s".into())).await;
    let mut client = RawConn::connect(proxy.addr()).await;
    let mut args = BytesMut::new();
    list_apps_args(app_status::AVAILABLE, &mut args);
    let reply = client.call("RPC_CM_LIST_APPS", &args, 1).await;
    let resp = ListAppsResponse::from_result(&reply.body).expect("list_apps response");
    assert_eq!(resp.err, ErrorCode::OK);
    let names: Vec<&str> = resp.infos.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["t1", "t2"]);
    assert!(resp.hint_message.is_none());
    // t1's info is c1's (app_id 1, 4 partitions), byte for byte as c1 wrote it.
    let mut direct = RawConn::connect(c1.meta_addrs()[0]).await;
    let c1_list = direct.call("RPC_CM_LIST_APPS", &args, 1).await;
    let c1_list = ListAppsResponse::from_result(&c1_list.body).expect("c1's list");
    let c1_t1 = c1_list
        .infos
        .iter()
        .find(|i| i.name == "t1")
        .expect("t1 on c1");
    assert_eq!(&resp.infos[0], c1_t1);

    // c2 goes away: the reply says the list is incomplete, never ERR_OK.
    c2.stop_meta(0).await.expect("stop");
    let reply = client.call("RPC_CM_LIST_APPS", &args, 2).await;
    let resp = ListAppsResponse::from_result(&reply.body).expect("list_apps response");
    assert_eq!(resp.err, ErrorCode::SERVICE_NOT_ACTIVE);
    assert!(resp.hint_message.expect("a hint").contains("c2"));
}

#[tokio::test]
async fn cluster_scoped_rpcs_are_not_served_and_the_connection_stays() {
    let c1 = sim(1, vec![table("t1", 1, 4)]).await;
    let routes = RoutesFile::new(&[("t1", &record("c1", &c1))]);
    let proxy = start_with_routes(&routes, |c| c.admin_rpcs = Some("all".into())).await;
    let mut client = RawConn::connect(proxy.addr()).await;
    for (seqid, name) in NOT_SERVED.iter().enumerate() {
        let reply = client.call(name, &[0x0c, 0, 1, 0, 0], seqid as i32).await;
        assert_eq!(reply.rpc_error, ErrorCode::HANDLER_NOT_FOUND, "{name}");
        assert!(reply.body.is_empty());
    }
    assert_eq!(client.query("t1", 1000).await.err, ErrorCode::OK);
    assert_eq!(
        c1.counters().by_rpc.len(),
        1,
        "only query_config reached the cluster"
    );
}

#[tokio::test]
async fn an_rpc_every_metaserver_lacks_is_handler_not_found_not_unavailable() {
    let c1 = sim(2, vec![table("t1", 1, 4)]).await;
    c1.set_missing_rpcs(&["RPC_CM_GET_ATOMIC_IDEMPOTENT", "RPC_CM_LIST_APPS"]);
    let routes = RoutesFile::new(&[("t1", &record("c1", &c1))]);
    let proxy = start_with_routes(&routes, |_| {}).await;
    let mut client = RawConn::connect(proxy.addr()).await;
    let name = "RPC_CM_GET_ATOMIC_IDEMPOTENT";
    let reply = client.call(name, &admin_args(name, "t1"), 1).await;
    assert_eq!(reply.rpc_error, ErrorCode::HANDLER_NOT_FOUND);
    assert!(reply.body.is_empty());
    // Each MetaServer asked once: the one without the handler is not asked again.
    assert_eq!(c1.counters().by_rpc.get(name), Some(&2));

    // list_apps: the cluster's answer makes the merged list incomplete, and says why.
    let mut args = BytesMut::new();
    list_apps_args(app_status::INVALID, &mut args);
    let reply = client.call("RPC_CM_LIST_APPS", &args, 2).await;
    let resp = ListAppsResponse::from_result(&reply.body).expect("list_apps response");
    assert_eq!(resp.err, ErrorCode::SERVICE_NOT_ACTIVE);
    let hint = resp.hint_message.unwrap_or_default();
    assert!(hint.contains("ERR_HANDLER_NOT_FOUND"), "{hint}");

    // Served again: the answer is the cluster's.
    c1.set_missing_rpcs(&[]);
    let reply = client.call(name, &admin_args(name, "t1"), 3).await;
    assert_eq!(reply.rpc_error, ErrorCode::OK);
}
