//! The admin vectors in `pegasus-rpc/tests/vectors/admin/` (see its README): one v0 request frame
//! per table-scoped admin RPC, naming table `temp`, and the simulator's replies to create_app,
//! drop_app and recall_app. Each request is read with a plain thrift walker, here, and checked
//! against the field the IDL gives the table in, independently of the proxy's table; then the
//! proxy's table must extract the same name. The replies must be what the simulator sends, byte
//! for byte, and have the IDL's fields.
//!
//! `METAPROXY_WRITE_VECTORS=1` writes the files again (from `metaproxy_tests::idl`) instead of
//! checking them; the checks below never use the writer.

use bytes::{Buf, Bytes};
use metaproxy::admin_rpc::{AdminRoute, TABLE_RPCS, route_of, table_of};
use metaproxy_tests::idl::{self, Field};
use metaproxy_tests::raw::RawConn;
use metaproxy_tests::sim::{DuplicationSpec, SimConfig, SimHandle, Simulator, TableSpec};
use metaproxy_tests::vectors;
use pegasus_rpc::codec::{ErrorCode, RequestFrame};

/// Which field of the request struct names the table, and its thrift type, as the IDL says
/// (`P:idl/meta_admin.thrift`, `duplication.thrift`, `partition_split.thrift`,
/// `bulk_load.thrift`): written out here, not taken from the proxy.
const IDL_TABLE_FIELD: [(&str, i16, u8); 20] = [
    ("RPC_CM_QUERY_DUPLICATION", 1, 11),
    ("RPC_CM_QUERY_PARTITION_SPLIT", 1, 11),
    ("RPC_CM_QUERY_BULK_LOAD_STATUS", 1, 11),
    ("RPC_CM_QUERY_MANUAL_COMPACT_STATUS", 1, 11),
    ("RPC_CM_GET_MAX_REPLICA_COUNT", 1, 11),
    ("RPC_CM_GET_ATOMIC_IDEMPOTENT", 1, 11),
    ("RPC_CM_CREATE_APP", 1, 11),
    ("RPC_CM_DROP_APP", 1, 11),
    ("RPC_CM_RECALL_APP", 2, 11),
    ("RPC_CM_UPDATE_APP_ENV", 1, 11),
    ("RPC_CM_ADD_DUPLICATION", 1, 11),
    ("RPC_CM_MODIFY_DUPLICATION", 1, 11),
    ("RPC_CM_START_PARTITION_SPLIT", 1, 11),
    ("RPC_CM_CONTROL_PARTITION_SPLIT", 1, 11),
    ("RPC_CM_START_BULK_LOAD", 1, 11),
    ("RPC_CM_CONTROL_BULK_LOAD", 1, 11),
    ("RPC_CM_CLEAR_BULK_LOAD", 1, 11),
    ("RPC_CM_START_MANUAL_COMPACT", 1, 11),
    ("RPC_CM_SET_MAX_REPLICA_COUNT", 1, 11),
    ("RPC_CM_SET_ATOMIC_IDEMPOTENT", 1, 11),
];

fn file_of(rpc: &str) -> String {
    format!(
        "admin/{}.req.hex",
        rpc.trim_start_matches("RPC_CM_")
            .to_lowercase()
            .replace('_', "-")
    )
}

/// The request args the writer puts in the vectors (`temp`, recall of app 2 as `temp`).
fn writer_args(rpc: &str) -> Vec<u8> {
    match rpc {
        "RPC_CM_CREATE_APP" => idl::create_app("temp", 4, vec![("k", "v")]),
        "RPC_CM_DROP_APP" => idl::drop_app("temp"),
        "RPC_CM_RECALL_APP" => idl::recall_app(2, "temp"),
        // configuration_update_app_env_request {1: app_name, 2: op (APP_ENV_OP_SET = 1),
        // 3: keys, 4: values}
        "RPC_CM_UPDATE_APP_ENV" => idl::args(&[
            Field::Str(1, "temp"),
            Field::I32(2, 1),
            Field::StrList(3, vec!["rocksdb.usage_scenario"]),
            Field::StrList(4, vec!["normal"]),
        ]),
        _ => idl::args(&[Field::Str(1, "temp")]),
    }
}

/// A thrift binary value's type and, for the types the table could be, its value; the walker
/// skips the rest.
#[derive(Debug, PartialEq)]
enum Value {
    Str(Vec<u8>),
    Other(u8),
}

fn skip(b: &mut &[u8], ty: u8) -> Value {
    match ty {
        2 | 3 => {
            b.advance(1);
        }
        6 => {
            b.advance(2);
        }
        8 => {
            b.advance(4);
        }
        10 | 4 => {
            b.advance(8);
        }
        11 => {
            let n = b.get_i32() as usize;
            let s = b[..n].to_vec();
            b.advance(n);
            return Value::Str(s);
        }
        12 => {
            fields(b);
        }
        13 => {
            let (k, v, n) = (b.get_u8(), b.get_u8(), b.get_i32());
            for _ in 0..n {
                skip(b, k);
                skip(b, v);
            }
        }
        14 | 15 => {
            let (e, n) = (b.get_u8(), b.get_i32());
            for _ in 0..n {
                skip(b, e);
            }
        }
        other => panic!("thrift type {other}"),
    }
    Value::Other(ty)
}

/// The fields of a struct up to its STOP: (id, type, value).
fn fields(b: &mut &[u8]) -> Vec<(i16, u8, Value)> {
    let mut out = Vec::new();
    loop {
        let ty = b.get_u8();
        if ty == 0 {
            return out;
        }
        let id = b.get_i16();
        out.push((id, ty, skip(b, ty)));
    }
}

fn write_vectors() {
    for (rpc, _, _) in IDL_TABLE_FIELD {
        let frame = RequestFrame::call_v0(rpc, 1, 0, Bytes::from(writer_args(rpc)));
        std::fs::write(
            vectors::dir().join(file_of(rpc)),
            vectors::hex_lines(&frame.to_bytes()),
        )
        .expect("write");
    }
}

#[test]
fn every_table_scoped_rpc_names_its_table_in_the_field_the_idl_says() {
    if std::env::var_os("METAPROXY_WRITE_VECTORS").is_some() {
        write_vectors();
    }
    assert_eq!(IDL_TABLE_FIELD.len(), TABLE_RPCS.len());
    for (rpc, field, ty) in IDL_TABLE_FIELD {
        let (_, frame) = vectors::request(&file_of(rpc));
        assert_eq!(frame.name(), rpc);
        let mut b = &frame.args[..];
        let args = fields(&mut b);
        assert!(b.is_empty(), "{rpc}: bytes after the args");
        let [(1, 12, _)] = args[..] else {
            panic!("{rpc}: args hold one struct in field 1: {args:?}")
        };
        let mut b = &frame.args[3..];
        let request = fields(&mut b);
        let named = request
            .iter()
            .find(|(id, t, _)| (*id, *t) == (field, ty))
            .unwrap_or_else(|| panic!("{rpc}: no field {field} of type {ty}: {request:?}"));
        assert_eq!(named.2, Value::Str(b"temp".to_vec()), "{rpc}");

        let AdminRoute::Table(entry) = route_of(rpc) else {
            panic!("{rpc} is table-scoped")
        };
        assert_eq!(entry.table_field, field, "{rpc}: the proxy's table");
        assert_eq!(
            table_of(&frame.args, entry.table_field),
            Ok(Ok("temp".to_owned())),
            "{rpc}"
        );
    }
}

/// The replies: (RPC, `err`, the response's fields after `err` as (id, type), from the IDL's
/// response struct). The reply vector is [`reply_file_of`] them.
type ReplyCase = (&'static str, &'static str, &'static [(i16, u8)]);

/// `admin/<rpc>-<err>.reply.hex`, both as in [`file_of`]: `ERR_INVALID_STATE` is `invalid-state`.
fn reply_file_of(rpc: &str, err: &str) -> String {
    let stem = |s: &str| s.to_lowercase().replace('_', "-");
    format!(
        "{}-{}.reply.hex",
        file_of(rpc).trim_end_matches(".req.hex"),
        stem(err.trim_start_matches("ERR_"))
    )
}

const DDL_REPLIES: [ReplyCase; 3] = [
    ("RPC_CM_DROP_APP", "ERR_OK", &[]),
    ("RPC_CM_RECALL_APP", "ERR_OK", &[(2, 12)]),
    ("RPC_CM_CREATE_APP", "ERR_OK", &[(2, 8)]),
];

/// The other 17, each to `temp` as it is (app 2, 4 partitions, one duplication), the read-only
/// ones first. Types: 2 bool, 8 i32, 11 string, 12 struct, 13 map, 15 list.
const OTHER_REPLIES: [ReplyCase; 17] = [
    // duplication_query_response {1 err, 3 appid, 4 entry_list}
    ("RPC_CM_QUERY_DUPLICATION", "ERR_OK", &[(3, 8), (4, 15)]),
    // query_split_response {1 err, 2 new_partition_count, 3 status, 4 optional hint_msg}
    (
        "RPC_CM_QUERY_PARTITION_SPLIT",
        "ERR_INVALID_STATE",
        &[(2, 8), (3, 13), (4, 11)],
    ),
    // query_bulk_load_response {1 err, 2 app_name, 3 app_status, 4 partitions_status,
    // 5 max_replica_count, 6 bulk_load_states, 7 optional hint_msg, 8 optional is_bulk_loading,
    // 9 optional hp_bulk_load_states}
    (
        "RPC_CM_QUERY_BULK_LOAD_STATUS",
        "ERR_OK",
        &[
            (2, 11),
            (3, 8),
            (4, 15),
            (5, 8),
            (6, 15),
            (7, 11),
            (8, 2),
            (9, 15),
        ],
    ),
    // query_app_manual_compact_response {1 err, 2 hint_msg, 3 optional progress}
    (
        "RPC_CM_QUERY_MANUAL_COMPACT_STATUS",
        "ERR_INVALID_STATE",
        &[(2, 11)],
    ),
    // configuration_get_max_replica_count_response {1 err, 2 max_replica_count, 3 hint_message}
    ("RPC_CM_GET_MAX_REPLICA_COUNT", "ERR_OK", &[(2, 8), (3, 11)]),
    // configuration_get_atomic_idempotent_response {1 err, 2 atomic_idempotent, 3 hint_message}
    ("RPC_CM_GET_ATOMIC_IDEMPOTENT", "ERR_OK", &[(2, 2), (3, 11)]),
    // configuration_update_app_env_response {1 err, 2 hint_message}
    ("RPC_CM_UPDATE_APP_ENV", "ERR_OK", &[(2, 11)]),
    // duplication_add_response {1 err, 2 appid, 3 dupid, 4 optional hint,
    // 5 optional remote_app_name}
    (
        "RPC_CM_ADD_DUPLICATION",
        "ERR_INVALID_PARAMETERS",
        &[(2, 8), (3, 8), (4, 11)],
    ),
    // duplication_modify_response {1 err, 2 appid}
    ("RPC_CM_MODIFY_DUPLICATION", "ERR_OK", &[(2, 8)]),
    // start_partition_split_response {1 err, 2 hint_msg}
    ("RPC_CM_START_PARTITION_SPLIT", "ERR_OK", &[(2, 11)]),
    // control_split_response {1 err, 2 optional hint_msg}
    ("RPC_CM_CONTROL_PARTITION_SPLIT", "ERR_OK", &[]),
    // start_bulk_load_response {1 err, 2 hint_msg}
    ("RPC_CM_START_BULK_LOAD", "ERR_OK", &[(2, 11)]),
    // control_bulk_load_response {1 err, 2 optional hint_msg}
    ("RPC_CM_CONTROL_BULK_LOAD", "ERR_OK", &[]),
    // clear_bulk_load_state_response {1 err, 2 hint_msg}
    ("RPC_CM_CLEAR_BULK_LOAD", "ERR_OK", &[(2, 11)]),
    // start_app_manual_compact_response {1 err, 2 hint_msg}
    ("RPC_CM_START_MANUAL_COMPACT", "ERR_OK", &[(2, 11)]),
    // configuration_set_max_replica_count_response {1 err, 2 old_max_replica_count,
    // 3 hint_message}
    ("RPC_CM_SET_MAX_REPLICA_COUNT", "ERR_OK", &[(2, 8), (3, 11)]),
    // configuration_set_atomic_idempotent_response {1 err, 2 old_atomic_idempotent,
    // 3 hint_message}
    ("RPC_CM_SET_ATOMIC_IDEMPOTENT", "ERR_OK", &[(2, 2), (3, 11)]),
];

/// The dupid and create_ts in `query-duplication-ok.reply.hex`: the simulator takes both from
/// the clock when the duplication starts, so the check puts the live ones in their place.
const VECTOR_DUPID: i32 = 1_764_633_678;
const VECTOR_CREATE_TS: i64 = 1_764_633_678_123;

/// `temp`: app 2, 4 partitions on 127.0.0.1:34801..34803.
async fn simulator(duplication: Option<DuplicationSpec>) -> SimHandle {
    let replicas =
        [34801, 34802, 34803].map(|p| std::net::SocketAddrV4::new([127, 0, 0, 1].into(), p));
    let mut temp = TableSpec::new("temp", 2, 4, replicas);
    temp.duplication = duplication;
    Simulator::start(SimConfig::loopback(1, vec![temp]))
        .await
        .expect("simulator")
}

/// `bytes` with `from` replaced by `to` (as long); `from` must occur once.
fn replace_once(bytes: &mut [u8], from: &[u8], to: &[u8]) {
    let at: Vec<usize> = (0..=bytes.len() - from.len())
        .filter(|&i| bytes[i..i + from.len()] == *from)
        .collect();
    assert_eq!(at.len(), 1, "{from:02x?} occurs once");
    bytes[at[0]..at[0] + to.len()].copy_from_slice(to);
}

/// Sends the request vector of `case` and checks the reply against its reply vector, then the
/// vector's fields against the IDL. `swaps`: (in the vector, in the live reply) byte strings of
/// values that legitimately differ; each is put in the other's place.
async fn check_reply(conn: &mut RawConn, case: ReplyCase, swaps: &[(Vec<u8>, Vec<u8>)]) {
    let (rpc, err, rest) = case;
    let file = &reply_file_of(rpc, err);
    let (req_bytes, req) = vectors::request(&file_of(rpc));
    conn.send(&req_bytes).await;
    let got_bytes = conn.reply().await.to_bytes().to_vec();
    if std::env::var_os("METAPROXY_WRITE_VECTORS").is_some() {
        let mut to_write = got_bytes.clone();
        for (vector, live) in swaps {
            replace_once(&mut to_write, live, vector);
        }
        std::fs::write(vectors::dir().join(file), vectors::hex_lines(&to_write)).expect("write");
    }
    let (mut want_bytes, want) = vectors::reply(file);
    for (vector, live) in swaps {
        replace_once(&mut want_bytes, vector, live);
    }
    assert_eq!(
        got_bytes, want_bytes,
        "{file}: the simulator's reply, byte for byte"
    );
    assert_eq!(want.seqid(), req.seqid());
    assert_eq!(want.rpc_error, ErrorCode::OK);
    // {0: response {1: err (error_code, written as a string), then `rest`}}
    let mut b = &want.body[..];
    assert_eq!(b.get_u8(), 12);
    assert_eq!(b.get_i16(), 0);
    assert_eq!((b.get_u8(), b.get_i16()), (12, 1), "{file}: err first");
    let n = b.get_i32() as usize;
    assert_eq!(&b[..n], err.as_bytes(), "{file}: err");
    b.advance(n);
    let after: Vec<(i16, u8)> = fields(&mut b).iter().map(|(i, t, _)| (*i, *t)).collect();
    assert_eq!(after, rest, "{file}");
    assert_eq!(b, [0], "{file}: the result's STOP");
}

#[tokio::test]
async fn the_simulator_answers_create_drop_and_recall_byte_for_byte() {
    let sim = simulator(None).await;
    let mut conn = RawConn::connect(sim.meta_addrs()[0]).await;
    // In this order: temp dropped, recalled, then created again as a new table (it exists: so
    // drop it once more first).
    for case in DDL_REPLIES {
        if case.0 == "RPC_CM_CREATE_APP" {
            let _ = conn
                .call("RPC_CM_DROP_APP", &idl::drop_app("temp"), 9)
                .await;
        }
        check_reply(&mut conn, case, &[]).await;
    }
}

#[tokio::test]
async fn the_simulator_answers_every_other_table_rpc_with_its_idl_response() {
    let sim = simulator(Some(DuplicationSpec::new(
        ["127.0.0.1:34701"],
        "temp_backup",
    )))
    .await;
    let live = sim.query_duplication("temp").entry_list;
    let [dup] = &live[..] else {
        panic!("one duplication: {live:?}")
    };
    let mut conn = RawConn::connect(sim.meta_addrs()[0]).await;
    let dup_swaps = [
        (
            VECTOR_DUPID.to_be_bytes().to_vec(),
            dup.dupid.to_be_bytes().to_vec(),
        ),
        (
            VECTOR_CREATE_TS.to_be_bytes().to_vec(),
            dup.create_ts.to_be_bytes().to_vec(),
        ),
    ];
    for case in OTHER_REPLIES {
        let swaps: &[_] = if case.0 == "RPC_CM_QUERY_DUPLICATION" {
            &dup_swaps
        } else {
            &[]
        };
        check_reply(&mut conn, case, swaps).await;
    }
}
