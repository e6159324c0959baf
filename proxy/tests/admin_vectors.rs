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
use metaproxy_tests::sim::{SimConfig, Simulator, TableSpec};
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
        // update_app_env_request {1: app_name, 2: op (SET = 0), 3: keys, 4: values}: keys and
        // values as maps are not what the IDL has, so only the name and the op.
        "RPC_CM_UPDATE_APP_ENV" => idl::args(&[Field::Str(1, "temp"), Field::I32(2, 0)]),
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

/// The replies: (request vector, reply vector, `err`, the response's fields after `err` as
/// (id, type)).
type ReplyCase = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(i16, u8)],
);

const REPLIES: [ReplyCase; 3] = [
    (
        "RPC_CM_DROP_APP",
        "admin/drop-app-ok.reply.hex",
        "ERR_OK",
        &[],
    ),
    (
        "RPC_CM_RECALL_APP",
        "admin/recall-app-ok.reply.hex",
        "ERR_OK",
        &[(2, 12)],
    ),
    (
        "RPC_CM_CREATE_APP",
        "admin/create-app-ok.reply.hex",
        "ERR_OK",
        &[(2, 8)],
    ),
];

#[tokio::test]
async fn the_simulator_answers_create_drop_and_recall_byte_for_byte() {
    let replicas =
        [34801, 34802, 34803].map(|p| std::net::SocketAddrV4::new([127, 0, 0, 1].into(), p));
    let sim = Simulator::start(SimConfig::loopback(
        1,
        vec![TableSpec::new("temp", 2, 4, replicas)],
    ))
    .await
    .expect("simulator");
    let mut conn = RawConn::connect(sim.meta_addrs()[0]).await;
    let write = std::env::var_os("METAPROXY_WRITE_VECTORS").is_some();
    // In this order: temp dropped, recalled, then created again as a new table (it exists: so
    // drop it once more first).
    for (rpc, file, err, rest) in REPLIES {
        if rpc == "RPC_CM_CREATE_APP" {
            let _ = conn
                .call("RPC_CM_DROP_APP", &idl::drop_app("temp"), 9)
                .await;
        }
        let (req_bytes, req) = vectors::request(&file_of(rpc));
        conn.send(&req_bytes).await;
        let got = conn.reply().await;
        let got_bytes = got.to_bytes();
        if write {
            std::fs::write(vectors::dir().join(file), vectors::hex_lines(&got_bytes))
                .expect("write");
        }
        let (want_bytes, want) = vectors::reply(file);
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
        assert_eq!(&b[..n], err.as_bytes());
        b.advance(n);
        let after: Vec<(i16, u8)> = fields(&mut b).iter().map(|(i, t, _)| (*i, *t)).collect();
        assert_eq!(after, rest, "{file}");
        assert_eq!(b, [0], "{file}: the result's STOP");
    }
}
