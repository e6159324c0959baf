//! The native-header vectors in `tests/vectors/native/` (see its README): query_config and
//! list_nodes as the C++ client sends them, and the proxy's native replies. Each header field is
//! read at the offset `message_header` gives it (docs/protocol.md §3.5) and compared with the
//! values the README documents, written out below; then the codec must decode the same values and
//! re-encode the identical bytes, and build each reply from its request's header.

use bytes::BytesMut;
use pegasus_rpc::codec::native::{self, MsgContext, NativeHeader, crc32c};
use pegasus_rpc::codec::{
    self, DEFAULT_MAX_REPLY_FRAME, ErrorCode, QueryCfgResponse, RequestHeader, RpcAddress,
};

use metaproxy_tests::vectors::{self, load};

/// What the README says a vector's header holds (the fields every vector shares: hdr_version 0,
/// hdr_length 192, trace_id, gpid 0, timeout 5000 ms, thread and partition hash 0, code hashes 0,
/// are checked for all).
struct Expect {
    file: &'static str,
    id: u64,
    rpc_name: &'static str,
    local_code: u32,
    context: u64,
    from_address: u64,
    error_name: &'static str,
    /// Whether both CRCs are set (`rpc_message_crc_required`); otherwise both are 0.
    crc: bool,
    body: Body,
}

enum Body {
    /// Bytes written out here.
    Exact(&'static [u8]),
    /// The body of a THFT reply vector (after its message begin).
    OfThftReply(&'static str),
}

/// 127.0.0.1:40000 as an `rpc_address` in memory: IPv4 in bits 32-63, port in 16-31, type
/// `HOST_TYPE_IPV4` (1) in bits 0-1.
const CLIENT: u64 = 0x7f00_0001_9c40_0001;
const TRACE_ID: u64 = 0x1234_5678_9abc_def0;
const QUERY: &str = "RPC_CM_QUERY_PARTITION_CONFIG_BY_INDEX";
const QUERY_ACK: &str = "RPC_CM_QUERY_PARTITION_CONFIG_BY_INDEX_ACK";
/// `{0: query_cfg_request {1: app_name "temp", 2: partition_indices []}}`.
const QUERY_TEMP_ARGS: &[u8] = b"\x0c\x00\x00\x0b\x00\x01\x00\x00\x00\x04temp\
    \x0f\x00\x02\x08\x00\x00\x00\x00\x00\x00";
/// `{0: query_cfg_request {1: app_name "nosuch", 2: partition_indices []}}`.
const QUERY_NOSUCH_ARGS: &[u8] = b"\x0c\x00\x00\x0b\x00\x01\x00\x00\x00\x06nosuch\
    \x0f\x00\x02\x08\x00\x00\x00\x00\x00\x00";
/// `{0: configuration_list_nodes_request {1: status NS_INVALID (0)}}`.
const LIST_NODES_ARGS: &[u8] = b"\x0c\x00\x00\x08\x00\x01\x00\x00\x00\x00\x00\x00";

/// A request as the C++ client sends it (`create_request`, `rpc_engine::call`): no CRCs, the
/// default context, from the client's address.
const fn request(
    file: &'static str,
    id: u64,
    rpc_name: &'static str,
    body: &'static [u8],
) -> Expect {
    Expect {
        file,
        id,
        rpc_name,
        local_code: 0x3a,
        context: 0x441,
        from_address: CLIENT,
        error_name: "",
        crc: false,
        body: Body::Exact(body),
    }
}

/// The proxy's reply: no CRCs, no code numbers, `is_request` clear, no address.
const fn reply(
    file: &'static str,
    id: u64,
    rpc_name: &'static str,
    error_name: &'static str,
    body: Body,
) -> Expect {
    Expect {
        file,
        id,
        rpc_name,
        local_code: 0,
        context: 0x440,
        from_address: 0,
        error_name,
        crc: false,
        body,
    }
}

const REQUESTS: [Expect; 5] = [
    request("native/query-temp.req.hex", 7, QUERY, QUERY_TEMP_ARGS),
    Expect {
        crc: true,
        ..request("native/query-temp-crc.req.hex", 7, QUERY, QUERY_TEMP_ARGS)
    },
    Expect {
        context: 0x443,
        ..request(
            "native/query-temp-forwarded.req.hex",
            7,
            QUERY,
            QUERY_TEMP_ARGS,
        )
    },
    request("native/query-nosuch.req.hex", 8, QUERY, QUERY_NOSUCH_ARGS),
    Expect {
        local_code: 0x3b,
        ..request(
            "native/list-nodes.req.hex",
            9,
            "RPC_CM_LIST_NODES",
            LIST_NODES_ARGS,
        )
    },
];

const REPLIES: [Expect; 3] = [
    reply(
        "native/query-temp.reply.hex",
        7,
        QUERY_ACK,
        "ERR_OK",
        Body::OfThftReply("doc-reply-2partitions.hex"),
    ),
    reply(
        "native/query-nosuch.reply.hex",
        8,
        QUERY_ACK,
        "ERR_OK",
        Body::OfThftReply("doc-reply-not-found.hex"),
    ),
    reply(
        "native/list-nodes.reply.hex",
        9,
        "RPC_CM_LIST_NODES_ACK",
        "ERR_HANDLER_NOT_FOUND",
        Body::Exact(b""),
    ),
];

/// Each reply vector and the request vector it answers.
const PAIRS: [(&str, &str); 3] = [
    ("native/query-temp.req.hex", "native/query-temp.reply.hex"),
    (
        "native/query-nosuch.req.hex",
        "native/query-nosuch.reply.hex",
    ),
    ("native/list-nodes.req.hex", "native/list-nodes.reply.hex"),
];

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// A 48-byte name field holding `name`: the name, then NULs to the end.
fn assert_name(field: &[u8], name: &str, what: &str) {
    assert_eq!(field.len(), 48);
    assert_eq!(&field[..name.len()], name.as_bytes(), "{what}");
    assert!(
        field[name.len()..].iter().all(|&b| b == 0),
        "{what}: NUL-padded"
    );
}

fn expected_body(body: &Body) -> Vec<u8> {
    match body {
        Body::Exact(b) => b.to_vec(),
        Body::OfThftReply(file) => vectors::reply(file).1.body.to_vec(),
    }
}

/// Checks the raw bytes of `e.file` against `e`, offset by offset; returns the bytes.
fn check_offsets(e: &Expect) -> Vec<u8> {
    let f = e.file;
    let bytes = load(f);
    let body = expected_body(&e.body);
    assert_eq!(bytes.len(), 192 + body.len(), "{f}: header and body");
    let (h, b) = bytes.split_at(192);
    assert_eq!(&h[0..4], b"RDSN", "{f}: hdr_type");
    assert_eq!(u32_at(h, 4), 0, "{f}: hdr_version");
    assert_eq!(u32_at(h, 8), 192, "{f}: hdr_length");
    assert_eq!(u32_at(h, 16) as usize, body.len(), "{f}: body_length");
    assert_eq!(u64_at(h, 24), e.id, "{f}: id");
    assert_eq!(u64_at(h, 32), TRACE_ID, "{f}: trace_id");
    assert_name(&h[40..88], e.rpc_name, f);
    assert_eq!(
        (u32_at(h, 88), u32_at(h, 92)),
        (e.local_code, 0),
        "{f}: rpc_code"
    );
    assert_eq!(u64_at(h, 96), 0, "{f}: gpid");
    assert_eq!(u64_at(h, 104), e.context, "{f}: context");
    assert_eq!(u64_at(h, 112), e.from_address, "{f}: from_address");
    assert_eq!(u32_at(h, 120), 5000, "{f}: timeout_ms");
    assert_eq!(u32_at(h, 124), 0, "{f}: thread_hash");
    assert_eq!(u64_at(h, 128), 0, "{f}: partition_hash");
    assert_name(&h[136..184], e.error_name, f);
    assert_eq!(u64_at(h, 184), 0, "{f}: error_code");
    assert_eq!(b, &body[..], "{f}: body");
    if e.crc {
        let mut zeroed = h.to_vec();
        zeroed[12..16].fill(0);
        assert_eq!(u32_at(h, 12), crc32c(&zeroed), "{f}: hdr_crc32");
        assert_eq!(u32_at(h, 20), crc32c(b), "{f}: body_crc32");
    } else {
        assert_eq!((u32_at(h, 12), u32_at(h, 20)), (0, 0), "{f}: no CRCs");
    }
    bytes
}

/// Checks that the codec decodes `e.file` to `e`'s values and re-encodes the same bytes.
fn decode(e: &Expect, bytes: &[u8]) -> NativeHeader {
    let f = e.file;
    let mut buf = BytesMut::from(bytes);
    let (h, body) = native::decode_frame(&mut buf, DEFAULT_MAX_REPLY_FRAME)
        .expect("decodes")
        .expect("a whole frame");
    assert!(buf.is_empty(), "{f}: one frame");
    assert_eq!((h.id, h.trace_id), (e.id, TRACE_ID), "{f}");
    assert_eq!(h.name(), Ok(e.rpc_name), "{f}");
    assert_eq!(h.error_name(), Ok(e.error_name), "{f}");
    assert_eq!(h.rpc_code.local_code, e.local_code, "{f}");
    assert_eq!(h.context, MsgContext(e.context), "{f}");
    assert_eq!(h.from_address, RpcAddress(e.from_address), "{f}");
    assert_eq!(h.gpid.to_i64(), 0, "{f}");
    assert_eq!((h.timeout_ms, h.thread_hash), (5000, 0), "{f}");
    assert_eq!(
        h.context.serialize_format(),
        MsgContext::THRIFT_BINARY,
        "{f}"
    );
    assert!(h.context.is_forward_supported(), "{f}");
    assert!(!h.context.is_backup_request(), "{f}");
    let mut again = BytesMut::new();
    h.encode(body.len(), &mut again);
    again.extend_from_slice(&body);
    assert_eq!(&again[..], bytes, "{f}: re-encodes to the same bytes");
    h
}

#[test]
fn native_requests_have_the_fields_the_cpp_client_writes() {
    for e in &REQUESTS {
        let bytes = check_offsets(e);
        let h = decode(e, &bytes);
        assert!(h.context.is_request(), "{}", e.file);
        assert_eq!(
            h.context.is_forwarded(),
            e.file.contains("forwarded"),
            "{}",
            e.file
        );
        assert_eq!(
            RpcAddress(e.from_address).to_string(),
            "127.0.0.1:40000",
            "{}: the caller",
            e.file
        );
        // As a request frame: the header's name and id stand in for the message begin.
        let (_, frame) = vectors::request(e.file);
        assert_eq!(frame.name(), e.rpc_name, "{}", e.file);
        assert_eq!(frame.seqid(), e.id as i32, "{}", e.file);
        assert!(
            matches!(frame.header, RequestHeader::Native(_)),
            "{}",
            e.file
        );
        assert_eq!(&frame.args[..], &expected_body(&e.body)[..], "{}", e.file);
    }
}

#[test]
fn the_three_query_temp_requests_differ_only_in_crcs_and_the_forwarded_bit() {
    let plain = load("native/query-temp.req.hex");
    let crc = load("native/query-temp-crc.req.hex");
    let fwd = load("native/query-temp-forwarded.req.hex");
    let differ = |a: &[u8], b: &[u8]| -> Vec<usize> {
        (0..a.len()).filter(|&i| a[i] != b[i]).collect::<Vec<_>>()
    };
    assert!(
        differ(&plain, &crc)
            .iter()
            .all(|i| (12..16).contains(i) || (20..24).contains(i))
    );
    assert_eq!(differ(&plain, &fwd), [104], "context byte 0: 0x41 -> 0x43");
}

#[test]
fn native_replies_are_the_request_header_with_the_reply_fields() {
    for e in &REPLIES {
        let bytes = check_offsets(e);
        let h = decode(e, &bytes);
        assert!(
            !h.context.is_request() && !h.context.is_forwarded(),
            "{}",
            e.file
        );
        let (req_file, _) = PAIRS
            .iter()
            .find(|(_, reply)| *reply == e.file)
            .expect("a request");
        let mut req_buf = BytesMut::from(&load(req_file)[..]);
        let (req, _) = native::decode_frame(&mut req_buf, DEFAULT_MAX_REPLY_FRAME)
            .expect("decodes")
            .expect("whole");
        let body = &bytes[192..];
        let mut built = BytesMut::new();
        native::encode_reply(&mut built, &req, e.error_name, e.rpc_name, body);
        assert_eq!(
            &built[..],
            &bytes[..],
            "{}: encode_reply on the request's header gives the vector",
            e.file
        );
    }
    // The bodies are the query_config responses of the THFT vectors.
    let ok = QueryCfgResponse::from_result(&load("native/query-temp.reply.hex")[192..])
        .expect("a query_cfg_response");
    assert_eq!(
        (ok.err, ok.app_id, ok.partitions.len()),
        (ErrorCode::OK, 2, 2)
    );
    let nosuch = QueryCfgResponse::from_result(&load("native/query-nosuch.reply.hex")[192..])
        .expect("a query_cfg_response");
    assert_eq!(nosuch.err, ErrorCode::OBJECT_NOT_FOUND);
    // A native reply is not a THFT reply: the THFT decoder refuses it.
    let mut buf = BytesMut::from(&load("native/list-nodes.reply.hex")[..]);
    assert!(codec::decode_reply(&mut buf, DEFAULT_MAX_REPLY_FRAME).is_err());
}
