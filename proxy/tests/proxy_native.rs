//! C++ clients through the proxy: native ("RDSN") frames in, native replies out, matched by id,
//! the leader followed and hidden, errors answered, bad frames closing only their connection.

mod common;

use bytes::BytesMut;
use common::*;
use metaproxy_tests::raw::{native_frame, native_query_args};
use metaproxy_tests::sim::{SimConfig, TableSpec};
use pegasus_rpc::codec::{ErrorCode, QueryCfgResponse, RpcAddress, rpc};

#[tokio::test]
async fn native_query_config_is_answered_natively_with_the_leader_hidden() {
    // The leader is the second MetaServer: the first answers ERR_FORWARD_TO_OTHERS upstream.
    let sim = sim_with(SimConfig {
        leader: Some(1),
        ..SimConfig::loopback(2, vec![capture_table()])
    })
    .await;
    let routes = RoutesFile::new(&[("temp", &record("c1", &sim))]);
    let proxy = start_with_routes(&routes, |_| {}).await;
    let mut client = RawConn::connect(proxy.addr()).await;

    // Pipelined: three queries, ids far above 32 bits, then the replies matched by id.
    let ids = [1u64 << 40, (1 << 40) + 1, u64::MAX];
    let mut burst = BytesMut::new();
    for id in ids {
        burst.extend_from_slice(&native_frame(
            rpc::QUERY_CONFIG,
            id,
            &native_query_args("temp"),
        ));
    }
    client.send(&burst).await;
    let mut got = Vec::new();
    let metas: Vec<String> = sim.meta_addrs().iter().map(|a| a.to_string()).collect();
    for _ in ids {
        let (header, body) = client.native_reply().await;
        assert_eq!(
            header.name(),
            Ok("RPC_CM_QUERY_PARTITION_CONFIG_BY_INDEX_ACK")
        );
        assert_eq!(header.error_name(), Ok("ERR_OK"));
        assert!(!header.context.is_request() && !header.context.is_forwarded());
        assert_eq!(
            header.from_address,
            RpcAddress::INVALID,
            "no address to go to instead"
        );
        assert_eq!(
            header.trace_id, 0x1234_5678_9abc_def0,
            "the request's trace id is kept"
        );
        let resp = QueryCfgResponse::from_result(&body).expect("a query_cfg_response");
        assert_eq!(
            (resp.err, resp.app_id, resp.partitions.len()),
            (ErrorCode::OK, 2, 4)
        );
        for p in &resp.partitions {
            assert!(
                !metas.contains(&p.primary.to_string()),
                "a MetaServer address leaked"
            );
        }
        got.push(header.id);
    }
    got.sort();
    assert_eq!(got, ids);

    // Errors come back natively too: a table without a route, an RPC the proxy does not serve.
    client
        .send(&native_frame(
            rpc::QUERY_CONFIG,
            7,
            &native_query_args("nosuch"),
        ))
        .await;
    let (header, body) = client.native_reply().await;
    assert_eq!((header.id, header.error_name()), (7, Ok("ERR_OK")));
    let resp = QueryCfgResponse::from_result(&body).expect("a query_cfg_response");
    assert_eq!(resp.err, ErrorCode::OBJECT_NOT_FOUND);
    client
        .send(&native_frame("RPC_CM_LIST_NODES", 8, &[0x0c, 0, 0, 0, 0]))
        .await;
    let (header, body) = client.native_reply().await;
    assert_eq!(header.id, 8);
    assert_eq!(header.name(), Ok("RPC_CM_LIST_NODES_ACK"));
    assert_eq!(header.error_name(), Ok("ERR_HANDLER_NOT_FOUND"));
    assert!(body.is_empty());
    let counters = sim.counters();
    assert_eq!(
        counters.malformed, 0,
        "the MetaServers got sound THFT frames"
    );
}

#[tokio::test]
async fn bad_native_frames_close_only_their_connection() {
    let sim = sim(1, vec![capture_table()]).await;
    let routes = RoutesFile::new(&[("temp", &record("c1", &sim))]);
    let proxy = start_with_routes(&routes, |c| c.max_frame_bytes = Some(4096)).await;
    let mut bystander = RawConn::connect(proxy.addr()).await;
    let good = native_frame(rpc::QUERY_CONFIG, 1, &native_query_args("temp"));

    let mut header_length = good.to_vec();
    header_length[8] = 0xc1; // hdr_length 193
    let mut header_crc = good.to_vec();
    header_crc[12] = 1; // a CRC that does not match
    let mut a_reply = good.to_vec();
    a_reply[104] = 0x40; // is_request cleared
    let mut oversized = good.to_vec();
    oversized[16..20].copy_from_slice(&100_000u32.to_le_bytes());
    let thft_after_native = [&good[..], &query_frame("temp", 2)[..]].concat();
    let cases: [(&str, Vec<u8>, usize); 5] = [
        ("header length", header_length, 0),
        ("header CRC", header_crc, 0),
        ("a reply sent as a request", a_reply, 0),
        ("oversized", oversized, 0),
        ("a THFT frame on a native connection", thft_after_native, 1),
    ];
    for (what, bytes, answered) in cases {
        let mut client = RawConn::connect(proxy.addr()).await;
        client.send(&bytes).await;
        for _ in 0..answered {
            let (header, _) = client.native_reply().await;
            assert_eq!(
                header.id, 1,
                "{what}: the frame before the bad one is answered"
            );
        }
        client.expect_closed().await;
        assert_eq!(
            bystander.query("temp", 3).await.err,
            ErrorCode::OK,
            "after {what}"
        );
    }
}

#[tokio::test]
async fn the_proxy_answers_the_native_vectors_byte_for_byte() {
    // The 2-partition table of `doc-reply-2partitions.hex`: app 2 on 10.0.0.1..3:34801 (the
    // simulator's layout gives its ballots, primaries and decrees). The leader is the second
    // MetaServer, so the proxy follows a forward before it answers.
    let replicas = [1, 2, 3].map(|i| std::net::SocketAddrV4::new([10, 0, 0, i].into(), 34801));
    let sim = sim_with(SimConfig {
        leader: Some(1),
        ..SimConfig::loopback(2, vec![TableSpec::new("temp", 2, 2, replicas)])
    })
    .await;
    let routes = RoutesFile::new(&[("temp", &record("c1", &sim))]);
    let proxy = start_with_routes(&routes, |_| {}).await;
    // (request, reply): the same query with and without CRCs and with `is_forwarded` set gets the
    // same reply (the vectors share the id and trace id); each on its own connection.
    let cases = [
        ("query-temp.req.hex", "query-temp.reply.hex"),
        ("query-temp-crc.req.hex", "query-temp.reply.hex"),
        ("query-temp-forwarded.req.hex", "query-temp.reply.hex"),
        ("query-nosuch.req.hex", "query-nosuch.reply.hex"),
        ("list-nodes.req.hex", "list-nodes.reply.hex"),
    ];
    for (req, reply) in cases {
        let mut client = RawConn::connect(proxy.addr()).await;
        client.send(&vector(&format!("native/{req}"))).await;
        assert_eq!(
            client.raw_native_reply().await,
            vector(&format!("native/{reply}")),
            "{req}: the proxy's reply is {reply}, byte for byte"
        );
    }
    assert_eq!(sim.counters().malformed, 0);
}
