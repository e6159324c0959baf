//! Every frame in `tests/vectors/` (docs/protocol.md §12: frames written from the protocol notes
//! and frames captured from the official Python and Node.js clients) decodes to the values its
//! README documents and re-encodes to the identical bytes.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use pegasus_rpc::codec::{
    self, DEFAULT_MAX_REPLY_FRAME, ErrorCode, Gpid, HostPort, PartitionConfiguration,
    QueryCfgRequest, QueryCfgResponse, ReplyFrame, RequestFrame, RequestHeader, RpcAddress,
};
use pegasus_rpc::codec::{
    AppEnvOperation, DuplicationEntry, DuplicationFailMode, DuplicationPartitionState,
    DuplicationStatus, QueryDuplicationRequest, QueryDuplicationResponse, UpdateAppEnvRequest,
    UpdateAppEnvResponse,
};

use metaproxy_tests::vectors::{load as vector, reply, request};

/// A query_config reply: checks the frame, decodes the response, re-encodes it.
fn query_reply(name: &str, seqid: i32) -> QueryCfgResponse {
    let (_, frame) = reply(name);
    assert_eq!(frame.rpc_error, ErrorCode::OK);
    assert_eq!(
        frame.message.name,
        "RPC_CM_QUERY_PARTITION_CONFIG_BY_INDEX_ACK"
    );
    assert_eq!(frame.seqid(), seqid, "{name}: seqid");
    let resp = QueryCfgResponse::from_result(&frame.body).expect("response decodes");
    let mut body = BytesMut::new();
    resp.to_result(&mut body);
    assert_eq!(
        &body[..],
        &frame.body[..],
        "{name}: the response re-encodes to the same body"
    );
    assert_eq!(
        QueryCfgResponse::peek_err(&frame.body).expect("peek"),
        resp.err
    );
    resp
}

fn addr(s: &str) -> RpcAddress {
    RpcAddress::from_socket(s.parse().expect("socket address"))
}

fn pc(
    pidx: i32,
    app_id: i32,
    ballot: i64,
    primary: &str,
    secondaries: [&str; 2],
    lcd: i64,
) -> PartitionConfiguration {
    PartitionConfiguration {
        pid: Gpid::new(app_id, pidx),
        ballot,
        max_replica_count: 3,
        primary: addr(primary),
        secondaries: secondaries.iter().map(|s| addr(s)).collect(),
        last_drops: vec![],
        last_committed_decree: lcd,
        partition_flags: 0,
        ..Default::default()
    }
}

/// Table `temp` of the captures (vectors README): app 2, 4 partitions on 127.0.0.1:34801..34803.
fn captured_temp(with_hp: bool) -> QueryCfgResponse {
    let rows = [
        (
            3,
            "127.0.0.1:34801",
            ["127.0.0.1:34802", "127.0.0.1:34803"],
            100,
            [1, 2, 3],
        ),
        (
            4,
            "127.0.0.1:34802",
            ["127.0.0.1:34801", "127.0.0.1:34803"],
            200,
            [2, 1, 3],
        ),
        (
            5,
            "127.0.0.1:34803",
            ["127.0.0.1:34801", "127.0.0.1:34802"],
            300,
            [3, 1, 2],
        ),
        (
            6,
            "127.0.0.1:34801",
            ["127.0.0.1:34802", "127.0.0.1:34803"],
            400,
            [1, 2, 3],
        ),
    ];
    let node = |n: u16| HostPort::new(format!("node{n}"), 34800 + n);
    let partitions = rows
        .iter()
        .enumerate()
        .map(|(i, (ballot, primary, secs, lcd, hosts))| {
            let mut p = pc(i as i32, 2, *ballot, primary, *secs, *lcd);
            if with_hp {
                p.hp_primary = Some(node(hosts[0]));
                p.hp_secondaries = Some(vec![node(hosts[1]), node(hosts[2])]);
                p.hp_last_drops = Some(vec![]);
            }
            p
        })
        .collect();
    QueryCfgResponse {
        err: ErrorCode::OK,
        app_id: 2,
        partition_count: 4,
        is_stateful: true,
        partitions,
    }
}

fn forward(leader: &str, hp: Option<HostPort>) -> QueryCfgResponse {
    let mut p = PartitionConfiguration {
        primary: addr(leader),
        ..Default::default()
    };
    if let Some(hp) = hp {
        p.hp_primary = Some(hp);
        p.hp_secondaries = Some(vec![]);
        p.hp_last_drops = Some(vec![]);
    }
    QueryCfgResponse {
        err: ErrorCode::FORWARD_TO_OTHERS,
        partitions: vec![p],
        ..Default::default()
    }
}

fn v0_query(name: &str, seqid: i32, timeout: i32, table: &str, indices: Option<Vec<i32>>) {
    let (_, frame) = request(name);
    let RequestHeader::V0(h) = frame.header else {
        panic!("{name}: expected a v0 header")
    };
    assert_eq!(
        (h.app_id, h.partition_index, h.thread_hash, h.partition_hash),
        (0, 0, 0, 0)
    );
    assert_eq!((h.hdr_crc32, h.body_crc32), (0, 0));
    assert_eq!(h.client_timeout, timeout, "{name}: client_timeout");
    assert_eq!(frame.name(), codec::rpc::QUERY_CONFIG);
    assert_eq!(frame.seqid(), seqid);
    assert!(frame.message.strict);
    let req = QueryCfgRequest::from_args(&frame.args).expect("request decodes");
    assert_eq!(
        req,
        QueryCfgRequest {
            app_name: table.into(),
            partition_indices: indices
        }
    );
    let mut args = BytesMut::new();
    req.to_args(&mut args);
    assert_eq!(&args[..], &frame.args[..], "{name}: args re-encode");
}

#[test]
fn go_v0_request_is_the_go_client_codec_vector() {
    v0_query("doc-go-v0-query-temp.req.hex", 1, 0, "temp", Some(vec![]));
    // And it is built from scratch to the same bytes.
    let mut args = BytesMut::new();
    QueryCfgRequest::new("temp").to_args(&mut args);
    let built = RequestFrame::call_v0(codec::rpc::QUERY_CONFIG, 1, 0, args.freeze());
    assert_eq!(built.to_bytes(), vector("doc-go-v0-query-temp.req.hex"));
    let mut parts = BytesMut::new();
    codec::encode_call(&mut parts, codec::rpc::QUERY_CONFIG, 1, 0, &args_of(&built));
    assert_eq!(&parts[..], &vector("doc-go-v0-query-temp.req.hex")[..]);
    let mut parts = BytesMut::new();
    codec::encode_call(
        &mut parts,
        codec::rpc::QUERY_CONFIG,
        1,
        2000,
        &args_of(&built),
    );
    assert_eq!(&parts[..], &vector("python-v0-query-temp.req.hex")[..]);
}

fn args_of(frame: &RequestFrame) -> Bytes {
    frame.args.clone()
}

#[test]
fn java_v1_request() {
    let (bytes, frame) = request("doc-java-v1-query-temp.req.hex");
    assert_eq!(bytes.len(), 127);
    let RequestHeader::V1(meta) = frame.header else {
        panic!("expected a v1 header")
    };
    assert_eq!(meta.app_id, Some(-1));
    assert_eq!(meta.partition_index, Some(-1));
    assert_eq!(meta.client_timeout, Some(5000));
    assert_eq!(meta.partition_hash, Some(0));
    assert_eq!(meta.is_backup_request, Some(false));
    assert_eq!(frame.gpid(), Gpid::new(-1, -1));
    assert_eq!(frame.seqid(), 0);
    let req = QueryCfgRequest::from_args(&frame.args).expect("request decodes");
    assert_eq!(req, QueryCfgRequest::new("temp"));
}

#[test]
fn python_requests() {
    for name in [
        "python-v0-query-temp.req.hex",
        "python-v0-query-temp-fwd-nonleader.req.hex",
        "python-v0-query-temp-fwd-leader.req.hex",
        "python-v0-query-temp-hp.req.hex",
    ] {
        v0_query(name, 1, 2000, "temp", Some(vec![]));
    }
    v0_query(
        "python-v0-query-nosuch.req.hex",
        1,
        2000,
        "nosuch",
        Some(vec![]),
    );
}

#[test]
fn node_requests_have_no_partition_indices() {
    for name in [
        "node-v0-query-temp.req.hex",
        "node-v0-query-temp-fwd-nonleader.req.hex",
        "node-v0-query-temp-fwd-leader.req.hex",
        "node-v0-query-temp-hp.req.hex",
    ] {
        v0_query(name, 0, 0, "temp", None);
    }
    v0_query("node-v0-query-nosuch.req.hex", 0, 0, "nosuch", None);
}

#[test]
fn captured_replies_for_table_temp() {
    for (name, seqid) in [
        ("python-v0-query-temp.reply.hex", 1),
        ("python-v0-query-temp-fwd-leader.reply.hex", 1),
        ("node-v0-query-temp.reply.hex", 0),
        ("node-v0-query-temp-fwd-leader.reply.hex", 0),
    ] {
        assert_eq!(query_reply(name, seqid), captured_temp(false), "{name}");
    }
    for (name, seqid) in [
        ("python-v0-query-temp-hp.reply.hex", 1),
        ("node-v0-query-temp-hp.reply.hex", 0),
    ] {
        let resp = query_reply(name, seqid);
        assert_eq!(resp, captured_temp(true), "{name}");
        // Stripping the 2.6 fields gives the pre-2.6 reply byte for byte.
        let mut stripped = resp.clone();
        stripped.strip_host_ports();
        let mut body = BytesMut::new();
        stripped.to_result(&mut body);
        let plain = reply(&name.replace("-hp", "")).1;
        assert_eq!(&body[..], &plain.body[..]);
    }
}

#[test]
fn captured_forward_and_not_found_replies() {
    for (name, seqid) in [
        ("fake-meta-forward.reply.hex", 1),
        ("fake-meta-forward-node.reply.hex", 0),
    ] {
        let resp = query_reply(name, seqid);
        assert_eq!(resp, forward("127.0.0.1:34631", None), "{name}");
        assert!(!resp.is_stateful);
    }
    for (name, seqid) in [
        ("python-v0-query-nosuch.reply.hex", 1),
        ("node-v0-query-nosuch.reply.hex", 0),
    ] {
        let resp = query_reply(name, seqid);
        assert_eq!(
            resp,
            QueryCfgResponse::error(ErrorCode::OBJECT_NOT_FOUND),
            "{name}"
        );
    }
    assert_eq!(
        vector("node-v0-query-nosuch.reply.hex"),
        vector("doc-reply-not-found.hex")
    );
}

#[test]
fn document_replies() {
    let two = QueryCfgResponse {
        err: ErrorCode::OK,
        app_id: 2,
        partition_count: 2,
        is_stateful: true,
        partitions: vec![
            pc(
                0,
                2,
                3,
                "10.0.0.1:34801",
                ["10.0.0.2:34801", "10.0.0.3:34801"],
                100,
            ),
            pc(
                1,
                2,
                4,
                "10.0.0.2:34801",
                ["10.0.0.1:34801", "10.0.0.3:34801"],
                200,
            ),
        ],
    };
    assert_eq!(vector("doc-reply-2partitions.hex").len(), 294);
    assert_eq!(query_reply("doc-reply-2partitions.hex", 0), two);

    let mut two_hp = two.clone();
    for p in &mut two_hp.partitions {
        p.hp_primary = Some(HostPort::new("node1", 34801));
        p.hp_secondaries = Some(vec![
            HostPort::new("node2", 34801),
            HostPort::new("node3", 34801),
        ]);
        p.hp_last_drops = Some(vec![]);
    }
    assert_eq!(vector("doc-reply-2partitions-hp.hex").len(), 404);
    assert_eq!(query_reply("doc-reply-2partitions-hp.hex", 0), two_hp);

    assert_eq!(
        query_reply("doc-reply-not-found.hex", 0),
        QueryCfgResponse::error(ErrorCode::OBJECT_NOT_FOUND)
    );
    assert_eq!(
        query_reply("doc-reply-forward.hex", 0),
        forward("10.0.0.9:34601", Some(HostPort::new("meta3", 34601)))
    );

    // A reply built from scratch equals the document's bytes.
    let mut body = BytesMut::new();
    two.to_result(&mut body);
    let built = ReplyFrame::ack(codec::rpc::QUERY_CONFIG, 0, ErrorCode::OK, body.freeze());
    assert_eq!(built.to_bytes(), vector("doc-reply-2partitions.hex"));
}

#[test]
fn handler_not_found_has_no_body() {
    let (bytes, frame) = reply("doc-reply-handler-not-found.hex");
    assert_eq!(bytes.len(), 52);
    assert_eq!(frame.rpc_error, ErrorCode::HANDLER_NOT_FOUND);
    assert_eq!(frame.message.name, "RPC_FOO_ACK");
    assert_eq!(frame.seqid(), 7);
    assert!(frame.body.is_empty());
    let built = ReplyFrame::ack("RPC_FOO", 7, ErrorCode::HANDLER_NOT_FOUND, Bytes::new());
    assert_eq!(built.to_bytes(), bytes);
}

#[test]
fn admin_frames_keep_their_bodies() {
    for (name, rpc, seqid) in [
        (
            "doc-admin-update-app-env-set.req.hex",
            "RPC_CM_UPDATE_APP_ENV",
            1,
        ),
        ("doc-admin-query-dup.req.hex", "RPC_CM_QUERY_DUPLICATION", 2),
    ] {
        let (_, frame) = request(name);
        assert_eq!((frame.name(), frame.seqid()), (rpc, seqid));
        // Both requests carry app_name "temp" as field 1 of their request struct.
        assert_eq!(
            QueryCfgRequest::from_args(&frame.args)
                .expect("decodes")
                .app_name,
            "temp"
        );
    }
    for (name, rpc, seqid, len) in [
        (
            "doc-admin-update-app-env-set.reply.hex",
            "RPC_CM_UPDATE_APP_ENV_ACK",
            1,
            76,
        ),
        (
            "doc-admin-query-dup.reply.hex",
            "RPC_CM_QUERY_DUPLICATION_ACK",
            2,
            222,
        ),
    ] {
        let (bytes, frame) = reply(name);
        assert_eq!(bytes.len(), len);
        assert_eq!((&*frame.message.name, frame.seqid()), (rpc, seqid));
        assert_eq!(
            QueryCfgResponse::peek_err(&frame.body).expect("err"),
            ErrorCode::OK
        );
    }
}

/// A request frame with a v0 header of zeros (as the vectors were built) around `args`.
fn admin_request(name: &str, seqid: i32, args: &BytesMut) -> Bytes {
    RequestFrame::call_v0(name, seqid, 0, Bytes::copy_from_slice(args)).to_bytes()
}

#[test]
fn update_app_env_set_vectors() {
    let (bytes, frame) = request("doc-admin-update-app-env-set.req.hex");
    assert_eq!(bytes.len(), 168);
    assert_eq!(
        (frame.name(), frame.seqid()),
        (codec::rpc::UPDATE_APP_ENV, 1)
    );
    let req = UpdateAppEnvRequest::from_args(&frame.args).expect("decodes");
    assert_eq!(
        req,
        UpdateAppEnvRequest {
            app_name: "temp".into(),
            op: AppEnvOperation::SET,
            keys: Some(vec!["replica.deny_client_request".into()]),
            values: Some(vec!["timeout*write".into()]),
            clear_prefix: None,
        }
    );
    let mut args = BytesMut::new();
    UpdateAppEnvRequest::set("temp", [("replica.deny_client_request", "timeout*write")])
        .to_args(&mut args);
    assert_eq!(
        &args[..],
        &frame.args[..],
        "the args re-encode to the same bytes"
    );
    assert_eq!(
        admin_request(codec::rpc::UPDATE_APP_ENV, 1, &args),
        bytes,
        "a request built from scratch is the document's"
    );

    let (bytes, frame) = reply("doc-admin-update-app-env-set.reply.hex");
    assert_eq!(bytes.len(), 76);
    assert_eq!(frame.rpc_error, ErrorCode::OK);
    assert_eq!(
        (&*frame.message.name, frame.seqid()),
        ("RPC_CM_UPDATE_APP_ENV_ACK", 1)
    );
    let resp = UpdateAppEnvResponse::from_result(&frame.body).expect("decodes");
    assert_eq!(
        resp,
        UpdateAppEnvResponse {
            err: ErrorCode::OK,
            hint_message: String::new(),
        }
    );
    let mut body = BytesMut::new();
    resp.to_result(&mut body);
    assert_eq!(&body[..], &frame.body[..]);
    let built = ReplyFrame::ack(codec::rpc::UPDATE_APP_ENV, 1, ErrorCode::OK, body.freeze());
    assert_eq!(built.to_bytes(), bytes);
}

/// The query_duplication reply of the vectors: one duplication in DS_LOG whose partition 1 is 5 decrees
/// behind, as a 2.6 server writes it.
fn documented_duplications() -> QueryDuplicationResponse {
    QueryDuplicationResponse {
        err: ErrorCode::OK,
        appid: 2,
        entry_list: vec![DuplicationEntry {
            dupid: 1_700_000_000,
            status: DuplicationStatus::LOG,
            remote: "target_cluster".into(),
            create_ts: 1_700_000_000_123,
            progress: None,
            fail_mode: Some(DuplicationFailMode::SLOW),
            remote_app_name: Some("temp".into()),
            remote_replica_count: Some(3),
            mode: None,
            partition_states: Some(BTreeMap::from([
                (
                    0,
                    DuplicationPartitionState {
                        confirmed_decree: 100,
                        last_committed_decree: 100,
                    },
                ),
                (
                    1,
                    DuplicationPartitionState {
                        confirmed_decree: 195,
                        last_committed_decree: 200,
                    },
                ),
            ])),
        }],
    }
}

#[test]
fn query_duplication_vectors() {
    let (bytes, frame) = request("doc-admin-query-dup.req.hex");
    assert_eq!(bytes.len(), 100);
    assert_eq!(
        (frame.name(), frame.seqid()),
        (codec::rpc::QUERY_DUPLICATION, 2)
    );
    let req = QueryDuplicationRequest::from_args(&frame.args).expect("decodes");
    assert_eq!(req, QueryDuplicationRequest::new("temp"));
    let mut args = BytesMut::new();
    req.to_args(&mut args);
    assert_eq!(
        admin_request(codec::rpc::QUERY_DUPLICATION, 2, &args),
        bytes
    );

    let (bytes, frame) = reply("doc-admin-query-dup.reply.hex");
    assert_eq!(bytes.len(), 222);
    assert_eq!(
        (&*frame.message.name, frame.seqid()),
        ("RPC_CM_QUERY_DUPLICATION_ACK", 2)
    );
    let resp = QueryDuplicationResponse::from_result(&frame.body).expect("decodes");
    assert_eq!(resp, documented_duplications());
    let behind: Vec<(i32, i64)> = resp.entry_list[0]
        .partition_states
        .iter()
        .flatten()
        .map(|(p, s)| (*p, s.last_committed_decree - s.confirmed_decree))
        .collect();
    assert_eq!(behind, [(0, 0), (1, 5)]);
    let mut body = BytesMut::new();
    resp.to_result(&mut body);
    assert_eq!(&body[..], &frame.body[..]);
    let built = ReplyFrame::ack(
        codec::rpc::QUERY_DUPLICATION,
        2,
        ErrorCode::OK,
        body.freeze(),
    );
    assert_eq!(built.to_bytes(), bytes);

    // A v2.5.0 server leaves out fields 8, 9 and 11: 141 bytes in all (docs/protocol.md §14.2).
    let mut old = documented_duplications();
    let entry = &mut old.entry_list[0];
    entry.remote_app_name = None;
    entry.remote_replica_count = None;
    entry.partition_states = None;
    let mut body = BytesMut::new();
    old.to_result(&mut body);
    let old_bytes = ReplyFrame::ack(
        codec::rpc::QUERY_DUPLICATION,
        2,
        ErrorCode::OK,
        body.freeze(),
    )
    .to_bytes();
    assert_eq!(old_bytes.len(), 141);
    assert_eq!(&old_bytes[..4], &[0, 0, 0, 0x8d]);
    assert_eq!(
        &old_bytes[4..0x88],
        &bytes[4..0x88],
        "after the length, the same bytes up to field 8"
    );
    let back = QueryDuplicationResponse::from_result(&reply_body(&old_bytes)).expect("decodes");
    assert_eq!(back, old);
}

fn reply_body(bytes: &[u8]) -> Bytes {
    let mut buf = BytesMut::from(bytes);
    codec::decode_reply(&mut buf, DEFAULT_MAX_REPLY_FRAME)
        .expect("decodes")
        .expect("whole frame")
        .body
}

/// A known RPC name read from the wire is borrowed from the constants (the proxy decodes a name
/// per request), any other is kept as read; both re-encode to the same bytes.
#[test]
fn known_message_names_are_not_copied() {
    use std::borrow::Cow;
    let cases = [
        (codec::rpc::QUERY_CONFIG, true),
        (codec::rpc::NEGOTIATION, true),
        (codec::rpc::LIST_APPS, true),
        ("RPC_CM_QUERY_PARTITION_CONFIG_BY_INDEX_X", false),
        ("RPC_NOT_A_KNOWN_ONE", false),
    ];
    for (name, known) in cases {
        let sent = RequestFrame::call_v0(name, 7, 0, Bytes::from_static(b"\x00"));
        let bytes = sent.to_bytes();
        let mut buf = BytesMut::from(&bytes[..]);
        let frame = codec::decode_request(&mut buf, codec::DEFAULT_MAX_REQUEST_FRAME)
            .expect("decodes")
            .expect("whole");
        assert_eq!(&*frame.message.name, name);
        assert_eq!(
            matches!(frame.message.name, Cow::Borrowed(_)),
            known,
            "{name}"
        );
        assert_eq!(frame.to_bytes(), bytes, "{name}");
    }
}
