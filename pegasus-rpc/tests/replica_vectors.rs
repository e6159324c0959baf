//! The data-plane vectors of `tests/vectors/` (`docs/protocol.md` §15.9: PUT, GET and REMOVE of ("h1", "s1") from the
//! official Node.js and Python clients and the document's Go and Java frames; the replica replies
//! the clients accepted) decode to the documented values and re-encode to the identical bytes; and
//! the key hash of §15.5 gives every worked example and check value of the document.

use bytes::Bytes;
use metaproxy_tests::vectors::{load as vector, reply, request};
use pegasus_rpc::codec::key::{
    self, crc64, crc64_table_entry, generate_key, hash_key_hash, key_hash, partition_index,
    thread_hash,
};
use pegasus_rpc::codec::{
    Blob, ErrorCode, HeaderV0, Payload, ReadResponse, ReplyFrame, RequestHeader, RequestMetaV1,
    TtlResponse, UpdateRequest, UpdateResponse, rpc,
};

const H1S1: [u8; 6] = [0x00, 0x02, b'h', b'1', b's', b'1'];
const H1_HASH: u64 = 0xAAE1_FD17_E635_E4DA;

/// Decodes a payload and checks that it encodes back to the same bytes.
fn args_round_trip<T: Payload + PartialEq + std::fmt::Debug>(name: &str, args: &Bytes) -> T {
    let value = T::from_args(args).unwrap_or_else(|e| panic!("{name}: args: {e}"));
    assert_eq!(&value.args_bytes()[..], &args[..], "{name}: args re-encode");
    value
}

fn result_round_trip<T: Payload + PartialEq + std::fmt::Debug>(name: &str, body: &Bytes) -> T {
    let value = T::from_result(body).unwrap_or_else(|e| panic!("{name}: result: {e}"));
    assert_eq!(
        &value.result_bytes()[..],
        &body[..],
        "{name}: result re-encodes"
    );
    value
}

fn v0_header(client_timeout: i32) -> RequestHeader {
    RequestHeader::V0(HeaderV0 {
        app_id: 2,
        partition_index: 2,
        client_timeout,
        thread_hash: 15840,
        partition_hash: H1_HASH,
        ..Default::default()
    })
}

fn put_h1s1() -> UpdateRequest {
    UpdateRequest {
        key: Blob::from_slice(&H1S1),
        value: Blob::from_slice(b"v1"),
        expire_ts_seconds: 0,
        ..Default::default()
    }
}

#[test]
fn put_requests_of_every_client() {
    for (name, header, seqid) in [
        ("node-v0-put-h1s1.req.hex", v0_header(0), 0),
        ("python-v0-put-h1s1.req.hex", v0_header(2000), 1),
        ("doc-go-v0-put-h1s1.req.hex", v0_header(1000), 1),
        (
            "doc-java-v1-put-h1s1.req.hex",
            RequestHeader::V1(RequestMetaV1 {
                app_id: Some(2),
                partition_index: Some(2),
                client_timeout: Some(1000),
                partition_hash: Some(H1_HASH as i64),
                is_backup_request: Some(false),
            }),
            0,
        ),
    ] {
        let frame = request(name).1;
        assert_eq!(frame.header, header, "{name}");
        assert_eq!(frame.name(), rpc::RRDB_PUT, "{name}");
        assert_eq!(frame.seqid(), seqid, "{name}");
        let put: UpdateRequest = args_round_trip(name, &frame.args);
        assert_eq!(put, put_h1s1(), "{name}");
        // The header's hashes are the ones §15.5 derives from the key.
        assert_eq!(key_hash(put.key.as_slice()), Ok(H1_HASH));
        assert_eq!(thread_hash(2, 2), 15840);
    }
}

#[test]
fn get_and_remove_requests() {
    for (name, rpc_name, header, seqid) in [
        ("node-v0-get-h1s1.req.hex", rpc::RRDB_GET, v0_header(0), 1),
        (
            "node-v0-remove-h1s1.req.hex",
            rpc::RRDB_REMOVE,
            v0_header(0),
            2,
        ),
        (
            "python-v0-get-h1s1.req.hex",
            rpc::RRDB_GET,
            v0_header(2000),
            2,
        ),
        (
            "python-v0-remove-h1s1.req.hex",
            rpc::RRDB_REMOVE,
            v0_header(2000),
            3,
        ),
    ] {
        let frame = request(name).1;
        assert_eq!(frame.header, header, "{name}");
        assert_eq!(frame.name(), rpc_name, "{name}");
        assert_eq!(frame.seqid(), seqid, "{name}");
        let key: Blob = args_round_trip(name, &frame.args);
        assert_eq!(key.as_slice(), &H1S1, "{name}");
    }
    assert_eq!(vector("node-v0-get-h1s1.req.hex").len(), 91);
    assert_eq!(vector("node-v0-remove-h1s1.req.hex").len(), 94);
}

fn update_ok(decree: i64) -> UpdateResponse {
    UpdateResponse {
        error: 0,
        app_id: 2,
        partition_index: 2,
        decree,
        server: "127.0.0.1:34801".into(),
    }
}

#[test]
fn write_replies() {
    for (name, rpc_name, seqid, decree) in [
        ("doc-replica-put-ok.reply.hex", rpc::RRDB_PUT, 0, 1),
        ("fake-replica-put-ok-node.reply.hex", rpc::RRDB_PUT, 0, 1),
        (
            "fake-replica-remove-ok-node.reply.hex",
            rpc::RRDB_REMOVE,
            2,
            2,
        ),
    ] {
        let frame = reply(name).1;
        assert_eq!(frame.rpc_error, ErrorCode::OK, "{name}");
        assert_eq!(frame.message.name, rpc::ack_name(rpc_name), "{name}");
        assert_eq!(frame.seqid(), seqid, "{name}");
        let resp: UpdateResponse = result_round_trip(name, &frame.body);
        assert_eq!(resp, update_ok(decree), "{name}");
    }
    assert_eq!(
        vector("doc-replica-put-ok.reply.hex"),
        vector("fake-replica-put-ok-node.reply.hex")
    );
    // Built from the values, the reply is the document's, byte for byte.
    let built = ReplyFrame::ack(rpc::RRDB_PUT, 0, ErrorCode::OK, update_ok(1).result_bytes());
    assert_eq!(built.to_bytes(), vector("doc-replica-put-ok.reply.hex"));
}

#[test]
fn read_replies() {
    let get_ok = reply("fake-replica-get-ok-node.reply.hex").1;
    assert_eq!(get_ok.message.name, rpc::ack_name(rpc::RRDB_GET));
    assert_eq!(get_ok.seqid(), 1);
    let resp: ReadResponse = result_round_trip("get ok", &get_ok.body);
    assert_eq!(
        resp,
        ReadResponse {
            error: 0,
            value: Blob::from_slice(b"v1"),
            app_id: 2,
            partition_index: 2,
            server: "127.0.0.1:34801".into(),
        }
    );

    let not_found = reply("doc-replica-get-not-found.reply.hex").1;
    assert_eq!(not_found.seqid(), 1);
    let resp: ReadResponse = result_round_trip("get not found", &not_found.body);
    assert_eq!(
        resp,
        ReadResponse {
            error: 1,
            value: Blob::default(),
            app_id: 2,
            partition_index: 2,
            server: "127.0.0.1:34801".into(),
        }
    );
    assert_eq!(vector("doc-replica-get-not-found.reply.hex").len(), 102);

    let ttl = reply("doc-replica-ttl-forever.reply.hex").1;
    assert_eq!(ttl.message.name, rpc::ack_name(rpc::RRDB_TTL));
    assert_eq!(ttl.seqid(), 2);
    let resp: TtlResponse = result_round_trip("ttl", &ttl.body);
    assert_eq!(
        resp,
        TtlResponse {
            error: 0,
            ttl_seconds: -1,
            app_id: 2,
            partition_index: 2,
            server: "127.0.0.1:34801".into(),
        }
    );
}

#[test]
fn rpc_level_refusals_have_no_body() {
    for (name, error, rpc_name, seqid, len) in [
        (
            "doc-replica-put-invalid-state.reply.hex",
            ErrorCode::INVALID_STATE,
            rpc::RRDB_PUT,
            0,
            58,
        ),
        (
            "doc-replica-get-object-not-found.reply.hex",
            ErrorCode::OBJECT_NOT_FOUND,
            rpc::RRDB_GET,
            1,
            61,
        ),
    ] {
        let frame = reply(name).1;
        assert_eq!(frame.rpc_error, error, "{name}");
        assert!(frame.body.is_empty(), "{name}");
        assert_eq!(vector(name).len(), len, "{name}");
        let built = ReplyFrame::ack(rpc_name, seqid, error, Bytes::new());
        assert_eq!(built.to_bytes(), vector(name), "{name}");
    }
}

#[test]
fn crc64_check_values_and_table() {
    assert_eq!(crc64(b"123456789"), 0xAE8B_1486_0A79_9888);
    assert_eq!(crc64_table_entry(1), 0x7F6E_F0C8_3035_8979);
    assert_eq!(crc64_table_entry(128), 0x9A6C_9329_AC4B_C9B5);
    assert_eq!(crc64_table_entry(0), 0);
    assert_eq!(crc64(b""), 0);
}

/// §15.5's worked examples: hash key, sort key, storage key (when given), crc64, the signed
/// value the Java/Python/Node clients see (when given), the partition of 8, 4 and 16.
#[test]
fn crc64_worked_examples() {
    type Row = (
        &'static [u8],
        &'static [u8],
        Option<&'static [u8]>,
        u64,
        Option<i64>,
        [i32; 3],
    );
    let rows: [Row; 7] = [
        (
            b"h1",
            b"s1",
            Some(&[0x00, 0x02, 0x68, 0x31, 0x73, 0x31]),
            0xAAE1_FD17_E635_E4DA,
            Some(-6133342938413538086),
            [2, 2, 10],
        ),
        (
            b"user_0001",
            b"",
            Some(&[
                0x00, 0x09, b'u', b's', b'e', b'r', b'_', b'0', b'0', b'0', b'1',
            ]),
            0xF8F4_662A_0063_CA1A,
            Some(-507668527404824038),
            [2, 2, 10],
        ),
        (b"", b"", Some(&[0x00, 0x00]), 0, Some(0), [0, 0, 0]),
        (
            b"",
            b"s1",
            Some(&[0x00, 0x00, 0x73, 0x31]),
            0x1A08_717B_7222_5E4D,
            Some(1875874019809582669),
            [5, 1, 13],
        ),
        (
            b"user_0002",
            b"",
            None,
            0x7947_7772_503D_5191,
            None,
            [1, 1, 1],
        ),
        (b"hello", b"", None, 0x3377_8570_0652_4257, None, [7, 3, 7]),
        (b"a", b"", None, 0x8C2F_8445_B4CB_FC3C, None, [4, 0, 12]),
    ];
    for (hash_key, sort_key, storage, crc, signed, pidx) in rows {
        let what = String::from_utf8_lossy(hash_key).into_owned();
        let key = generate_key(hash_key, sort_key).expect("fits");
        if let Some(storage) = storage {
            assert_eq!(key, storage, "{what}: storage key");
        }
        // The full-key hash (empty hash key: the sort key's) is the documented one.
        assert_eq!(key_hash(&key), Ok(crc), "{what}: key hash");
        if !hash_key.is_empty() {
            assert_eq!(hash_key_hash(hash_key), crc, "{what}: hash key hash");
            assert_eq!(crc64(hash_key), crc, "{what}: crc64");
        }
        if let Some(signed) = signed {
            assert_eq!(crc as i64, signed, "{what}: as i64");
        }
        for (count, want) in [8, 4, 16].into_iter().zip(pidx) {
            assert_eq!(
                partition_index(crc, count),
                Some(want),
                "{what}: partition of {count}"
            );
        }
    }
    // "" + "s1" by the hash-key rule (Go's, and the hash-key operations') hashes nothing.
    assert_eq!(hash_key_hash(b""), 0);
    assert!(key::split_key(&[0x00]).is_err());
}
