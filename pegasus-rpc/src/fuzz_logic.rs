//! The properties the codec is held to on arbitrary input, written once for two drivers: the
//! `cargo fuzz` targets in `pegasus-rpc/fuzz` (nightly, coverage-guided) and the property tests in
//! `tests/codec_props.rs` (stable, in every `cargo test`). Each entry point takes any bytes,
//! returns nothing and panics when a property fails: the panic is the finding.
//!
//! | entry point | fuzz target | what it checks |
//! |---|---|---|
//! | [`request_input`] | `request_frame` | framing contract and round trip of request frames (raw, or the fuzzer's bytes inside a sound header of each [`HeaderKind`]), payload properties of their args |
//! | [`reply_stream`] | `reply_frame` | framing contract and round trip of reply frames, payload properties of their bodies |
//! | [`query_config_payloads`] | `query_config` | payload properties of `query_cfg_request` (args) and `query_cfg_response` (result) |
//! | [`admin_payloads`] | `admin` | payload properties of the update_app_env, query_duplication and add_duplication requests and responses |
//!
//! The properties, besides "no panic":
//! - **framing contract** (docs/protocol.md §3.4): a decoder consumes nothing (`Ok(None)`, or an
//!   error decided from the header) or exactly one whole frame, as long as its header announces
//!   (`Ok(Some)`, or `Err(Malformed)`); `Ok(None)` only while the frame is incomplete; every
//!   proper prefix of a whole frame is `Ok(None)`; an error that consumes nothing stays the same
//!   error when more bytes arrive.
//! - **frame round trip**: a decoded frame re-encodes to a frame that decodes to the same value;
//!   a v0 request or a reply re-encodes to its own bytes, but for the byte of the strict message
//!   version that thrift ignores; a v1 request gets no longer (its `request_meta` is rewritten).
//! - **payload properties**: a payload that decodes is decided within its input (bytes appended
//!   after it change nothing: the decoder does not read past what it consumes); it re-encodes to
//!   bytes that decode to the same value and re-encode identically; no proper prefix of that
//!   encoding decodes.
//!
//! Not an API: hidden from the docs, and changed together with the targets and tests calling it.

use std::fmt::Debug;

use bytes::BytesMut;

use crate::codec::{
    self, AddDuplicationRequest, AddDuplicationResponse, CodecError, MessageKind, NativeHeader,
    NegotiationRequest, NegotiationResponse, QueryCfgRequest, QueryCfgResponse,
    QueryDuplicationRequest, QueryDuplicationResponse, RDSN_MAGIC, ReplyFrame, RequestFrame,
    RequestHeader, THFT_MAGIC, UpdateAppEnvRequest, UpdateAppEnvResponse, V0_HEADER_LEN,
};

/// The frame limit the properties decode with: well above what a fuzzer writes, so that frames
/// decode, and far below the lengths a header can announce, so that `FrameTooLarge` is reached.
pub const MAX_FRAME: usize = 1 << 16;

/// Appended to a payload that decoded, to show its decoding did not depend on what follows.
const TRAILER: [u8; 8] = [0xff, 0x0c, 0x00, 0x01, 0x0b, 0x00, 0x00, 0x00];

/// The header kinds the `request_frame` target can put around the fuzzer's bytes, so that its
/// effort goes past the header checks into message begins, `request_meta` and args: THFT v0 and
/// v1, and the native `RDSN` header (docs/protocol.md §3.5). The decoder under test stays
/// `decode_request`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderKind {
    V0,
    V1,
    Native,
}

impl HeaderKind {
    pub const ALL: [HeaderKind; 3] = [HeaderKind::V0, HeaderKind::V1, HeaderKind::Native];

    /// The first byte of a `request_frame` input that asks for this kind. Fixed per kind, so that
    /// a kind added later does not change what the committed inputs mean; 0 (and any byte that
    /// is no kind's) reads the rest as a raw stream.
    pub fn selector(self) -> u8 {
        match self {
            HeaderKind::V0 => 1,
            HeaderKind::V1 => 2,
            HeaderKind::Native => 3,
        }
    }

    fn from_selector(b: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.selector() == b)
    }

    /// A frame with a sound header of this kind around `inner`. v0: `inner` is the body and the
    /// header fields after the lengths are zero. v1: the first byte of `inner` is the length of
    /// the `request_meta` (cut to what follows it), then come the meta and the body. Native:
    /// `inner` is the args under the header the C++ client writes for a query_config.
    pub fn frame(self, inner: &[u8]) -> Vec<u8> {
        if self == HeaderKind::Native {
            let mut out = BytesMut::new();
            NativeHeader::request(codec::rpc::QUERY_CONFIG, 1, 5000).encode(inner.len(), &mut out);
            out.extend_from_slice(inner);
            return out.to_vec();
        }
        let mut out = Vec::with_capacity(V0_HEADER_LEN + inner.len());
        out.extend_from_slice(&THFT_MAGIC);
        match self {
            HeaderKind::V0 => {
                out.extend_from_slice(&0u32.to_be_bytes());
                out.extend_from_slice(&(V0_HEADER_LEN as u32).to_be_bytes());
                out.extend_from_slice(&0u32.to_be_bytes());
                out.extend_from_slice(&(inner.len() as u32).to_be_bytes());
                out.resize(V0_HEADER_LEN, 0);
                out.extend_from_slice(inner);
            }
            HeaderKind::V1 => {
                let (meta_len, rest) = match inner.split_first() {
                    Some((&n, rest)) => ((n as usize).min(rest.len()), rest),
                    None => (0, inner),
                };
                out.extend_from_slice(&1u32.to_be_bytes());
                out.extend_from_slice(&(meta_len as u32).to_be_bytes());
                out.extend_from_slice(&((rest.len() - meta_len) as u32).to_be_bytes());
                out.extend_from_slice(rest);
            }
            HeaderKind::Native => unreachable!("built above"),
        }
        out
    }

    /// The `request_frame` input that wraps `inner` in this kind of header.
    pub fn input(self, inner: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + inner.len());
        out.push(self.selector());
        out.extend_from_slice(inner);
        out
    }
}

/// The `request_frame` target. Byte 0 picks how the rest is read: a [`HeaderKind::selector`]
/// puts it inside a frame with that header, anything else reads it as a raw stream.
pub fn request_input(data: &[u8]) {
    match data.split_first() {
        Some((&select, rest)) => match HeaderKind::from_selector(select) {
            Some(kind) => request_stream(&kind.frame(rest)),
            None => request_stream(rest),
        },
        None => request_stream(data),
    }
}

/// Request frames off a client's stream: the framing contract, then each frame's round trip and
/// the payload properties of its args.
pub fn request_stream(stream: &[u8]) {
    walk(stream, &REQUESTS, |decoded, bytes| {
        if let Ok(frame) = decoded {
            request_round_trip(&frame, bytes);
            request_args(&frame.args);
        }
    });
}

/// Reply frames off a MetaServer's stream: the framing contract, then each frame's round trip
/// and the payload properties of its body.
pub fn reply_stream(stream: &[u8]) {
    walk(stream, &REPLIES, |decoded, bytes| {
        if let Ok(frame) = decoded {
            reply_round_trip(&frame, bytes);
            result_body(&frame.body);
        }
    });
}

/// The `query_config` target: the bytes as the args of a request and as the result of a reply.
pub fn query_config_payloads(data: &[u8]) {
    payload(data, QueryCfgRequest::from_args, QueryCfgRequest::to_args);
    query_cfg_response(data);
}

/// The `admin` target: the bytes as the args and the result of the admin RPCs the operator
/// sends (update_app_env, query_duplication, add_duplication).
pub fn admin_payloads(data: &[u8]) {
    payload(
        data,
        UpdateAppEnvRequest::from_args,
        UpdateAppEnvRequest::to_args,
    );
    payload(
        data,
        QueryDuplicationRequest::from_args,
        QueryDuplicationRequest::to_args,
    );
    payload(
        data,
        AddDuplicationRequest::from_args,
        AddDuplicationRequest::to_args,
    );
    payload(
        data,
        UpdateAppEnvResponse::from_result,
        UpdateAppEnvResponse::to_result,
    );
    payload(
        data,
        QueryDuplicationResponse::from_result,
        QueryDuplicationResponse::to_result,
    );
    payload(
        data,
        AddDuplicationResponse::from_result,
        AddDuplicationResponse::to_result,
    );
}

/// Every request payload this project decodes, over the args of a request.
fn request_args(args: &[u8]) {
    payload(args, QueryCfgRequest::from_args, QueryCfgRequest::to_args);
    payload(
        args,
        NegotiationRequest::from_args,
        NegotiationRequest::to_args,
    );
    payload(
        args,
        UpdateAppEnvRequest::from_args,
        UpdateAppEnvRequest::to_args,
    );
    payload(
        args,
        QueryDuplicationRequest::from_args,
        QueryDuplicationRequest::to_args,
    );
    payload(
        args,
        AddDuplicationRequest::from_args,
        AddDuplicationRequest::to_args,
    );
}

/// Every response payload this project decodes, over the body of a reply.
fn result_body(body: &[u8]) {
    query_cfg_response(body);
    payload(
        body,
        NegotiationResponse::from_result,
        NegotiationResponse::to_result,
    );
    payload(
        body,
        UpdateAppEnvResponse::from_result,
        UpdateAppEnvResponse::to_result,
    );
    payload(
        body,
        QueryDuplicationResponse::from_result,
        QueryDuplicationResponse::to_result,
    );
    payload(
        body,
        AddDuplicationResponse::from_result,
        AddDuplicationResponse::to_result,
    );
}

/// `query_cfg_response`, and `peek_err`, the fast path that reads only its `err`: it succeeds
/// whenever the full decode does, and agrees with it on an encoding. (On input that repeats the
/// `err` field, the peek keeps the first and the full decode the last, as thrift readers do.)
fn query_cfg_response(body: &[u8]) {
    let peeked = QueryCfgResponse::peek_err(body);
    let Some(resp) = payload(
        body,
        QueryCfgResponse::from_result,
        QueryCfgResponse::to_result,
    ) else {
        return;
    };
    assert!(
        peeked.is_ok(),
        "peek_err refuses a body that decodes: {peeked:?}"
    );
    let mut encoded = BytesMut::new();
    resp.to_result(&mut encoded);
    assert_eq!(QueryCfgResponse::peek_err(&encoded).as_ref(), Ok(&resp.err));
}

/// The payload properties of one type; returns the value when `input` decodes.
fn payload<T: PartialEq + Debug>(
    input: &[u8],
    decode: fn(&[u8]) -> Result<T, CodecError>,
    encode: fn(&T, &mut BytesMut),
) -> Option<T> {
    let value = match decode(input) {
        Ok(value) => value,
        Err(e) => {
            let _ = (e.metric_label(), e.to_string());
            return None;
        }
    };
    let mut longer = Vec::with_capacity(input.len() + TRAILER.len());
    longer.extend_from_slice(input);
    longer.extend_from_slice(&TRAILER);
    assert_eq!(
        decode(&longer).as_ref(),
        Ok(&value),
        "bytes after a decoded payload changed its decoding"
    );
    let mut encoded = BytesMut::new();
    encode(&value, &mut encoded);
    let back = decode(&encoded).unwrap_or_else(|e| {
        panic!("{value:?} encodes to {encoded:02x?}, which does not decode: {e}")
    });
    assert_eq!(back, value, "the round trip changed the value");
    let mut again = BytesMut::new();
    encode(&back, &mut again);
    assert_eq!(again, encoded, "the encoding is not stable");
    for cut in cuts(encoded.len()) {
        assert!(
            decode(&encoded[..cut]).is_err(),
            "{cut} of the {} bytes of an encoding decode",
            encoded.len()
        );
    }
    Some(value)
}

/// A frame decoder and how the frames of its stream announce their length.
struct Framing<T> {
    decode: fn(&mut BytesMut, usize) -> Result<Option<T>, CodecError>,
    /// The length the header at the front of the bytes announces, read here independently of the
    /// decoder; `None` while the bytes do not say yet (or are not a header at all).
    announced: fn(&[u8]) -> Option<u64>,
}

const REQUESTS: Framing<RequestFrame> = Framing {
    decode: codec::decode_request,
    announced: |b| {
        if b.starts_with(&RDSN_MAGIC) {
            let len = b.get(16..20)?;
            return Some(192 + u64::from(u32::from_le_bytes([len[0], len[1], len[2], len[3]])));
        }
        match be_u32(b, 4)? {
            0 => Some(V0_HEADER_LEN as u64 + be_u32(b, 16)? as u64),
            1 => Some(16 + be_u32(b, 8)? as u64 + be_u32(b, 12)? as u64),
            _ => None,
        }
    },
};

const REPLIES: Framing<ReplyFrame> = Framing {
    decode: codec::decode_reply,
    announced: |b| be_u32(b, 0).map(u64::from),
};

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    let word = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([word[0], word[1], word[2], word[3]]))
}

/// Decodes frames off `stream` until the decoder stops, checking the framing contract at each
/// step, and hands every frame consumed (decoded or malformed) to `each` with its bytes.
fn walk<T>(
    stream: &[u8],
    framing: &Framing<T>,
    mut each: impl FnMut(Result<T, CodecError>, &[u8]),
) {
    let mut buf = BytesMut::from(stream);
    loop {
        let rest = &stream[stream.len() - buf.len()..];
        let result = (framing.decode)(&mut buf, MAX_FRAME);
        let consumed = rest.len() - buf.len();
        let decoded = match result {
            Ok(Some(frame)) => Ok(frame),
            Err(e @ (CodecError::Malformed { .. } | CodecError::BadChecksum("body"))) => Err(e),
            Ok(None) => {
                assert_eq!(consumed, 0, "Ok(None) consumed bytes");
                if let Some(len) = (framing.announced)(rest) {
                    assert!(
                        len > rest.len() as u64,
                        "Ok(None) with the whole {len}-byte frame in {} bytes",
                        rest.len()
                    );
                }
                return;
            }
            Err(e) => {
                assert_eq!(consumed, 0, "{e} consumed bytes");
                let mut more = BytesMut::from(rest);
                more.extend_from_slice(&[0; 64]);
                let later = (framing.decode)(&mut more, MAX_FRAME).map(|f| f.is_some());
                assert_eq!(
                    later.map_err(|e| e.metric_label()),
                    Err(e.metric_label()),
                    "{e} changed when more bytes came"
                );
                return;
            }
        };
        assert_eq!(
            Some(consumed as u64),
            (framing.announced)(rest),
            "consumed {consumed} bytes, not the one frame its header announces"
        );
        let bytes = &rest[..consumed];
        for cut in cuts(consumed) {
            let mut part = BytesMut::from(&bytes[..cut]);
            let r = (framing.decode)(&mut part, MAX_FRAME).map(|f| f.is_some());
            assert_eq!(r, Ok(false), "{cut} of the {consumed} bytes of a frame");
            assert_eq!(part.len(), cut, "a prefix of a frame consumed bytes");
        }
        each(decoded, bytes);
    }
}

/// Where to cut a frame or an encoding of `len` bytes to get proper prefixes: every cut in the
/// first bytes, where the headers are, then a few spread over the rest and the last byte.
fn cuts(len: usize) -> impl Iterator<Item = usize> {
    (0..len.min(24))
        .chain((1..8).map(move |i| len * i / 8))
        .chain([len.saturating_sub(1)])
        .filter(move |&cut| cut < len)
}

/// Bytes the thrift binary protocol ignores: byte 2 of a strict message version
/// (`80 01 xx TT`), which the decoder reads past and the encoder writes as 0.
fn assert_same_bytes(original: &[u8], encoded: &[u8], strict_version_at: Option<usize>) {
    assert_eq!(
        original.len(),
        encoded.len(),
        "the re-encoding has another length"
    );
    let ignored = strict_version_at.map(|at| at + 2);
    for (i, (a, b)) in original.iter().zip(encoded).enumerate() {
        assert!(
            a == b || Some(i) == ignored,
            "byte {i} re-encodes as {b:#04x}, was {a:#04x}"
        );
    }
}

fn request_round_trip(frame: &RequestFrame, bytes: &[u8]) {
    let _ = (
        frame.gpid(),
        frame.client_timeout(),
        frame.name(),
        frame.seqid(),
    );
    let encoded = frame.to_bytes();
    match frame.header {
        RequestHeader::V0(_) => assert_same_bytes(
            bytes,
            &encoded,
            frame.message.strict.then_some(V0_HEADER_LEN),
        ),
        RequestHeader::V1(_) => assert!(
            encoded.len() <= bytes.len(),
            "a v1 frame of {} bytes re-encodes to {}",
            bytes.len(),
            encoded.len()
        ),
        RequestHeader::Native(h) => {
            assert_same_bytes(bytes, &encoded, None);
            native_reply_round_trip(&h, &frame.args);
        }
    }
    let mut buf = BytesMut::from(&encoded[..]);
    let back = codec::decode_request(&mut buf, MAX_FRAME.max(encoded.len()))
        .unwrap_or_else(|e| panic!("a re-encoded request does not decode: {e}"))
        .expect("a re-encoded request is whole");
    assert!(buf.is_empty(), "a re-encoded request is one frame");
    assert_eq!(&back, frame, "the round trip changed the request");
    assert_eq!(back.to_bytes(), encoded, "the encoding is not stable");

    // The upstream path builds calls from parts: the same message and args under a v0 header.
    if frame.message.strict && frame.message.kind == MessageKind::Call {
        let timeout = frame.client_timeout().unwrap_or(0);
        let mut call = BytesMut::new();
        codec::encode_call(&mut call, frame.name(), frame.seqid(), timeout, &frame.args);
        let limit = MAX_FRAME.max(call.len());
        let sent = codec::decode_request(&mut call, limit)
            .unwrap_or_else(|e| panic!("encode_call wrote a frame that does not decode: {e}"))
            .expect("encode_call writes a whole frame");
        assert_eq!((&sent.message, &sent.args), (&frame.message, &frame.args));
    }
}

/// The reply to a native request is a native frame that decodes to the reply header and body,
/// matched to the request by its id, naming no address and not taken for a request.
fn native_reply_round_trip(request: &NativeHeader, body: &[u8]) {
    let mut out = BytesMut::new();
    let ack = codec::rpc::ack_name(request.name().unwrap_or("RPC_X"));
    codec::native::encode_reply(&mut out, request, "ERR_OK", &ack, body);
    let limit = MAX_FRAME.max(out.len());
    let (h, b) = codec::native::decode_frame(&mut out, limit)
        .unwrap_or_else(|e| panic!("a native reply does not decode: {e}"))
        .expect("a native reply is whole");
    assert!(out.is_empty(), "a native reply is one frame");
    assert_eq!((h.id, &b[..]), (request.id, body));
    assert_eq!(h.error_name(), Ok("ERR_OK"));
    assert!(!h.context.is_request() && !h.context.is_forwarded());
    assert_eq!(h.from_address, codec::RpcAddress::INVALID);
}

fn reply_round_trip(frame: &ReplyFrame, bytes: &[u8]) {
    let encoded = frame.to_bytes();
    let message_at = 8 + frame.rpc_error.as_str().len();
    assert_same_bytes(bytes, &encoded, frame.message.strict.then_some(message_at));
    let mut buf = BytesMut::from(&encoded[..]);
    let back = codec::decode_reply(&mut buf, MAX_FRAME.max(encoded.len()))
        .unwrap_or_else(|e| panic!("a re-encoded reply does not decode: {e}"))
        .expect("a re-encoded reply is whole");
    assert!(buf.is_empty(), "a re-encoded reply is one frame");
    assert_eq!(&back, frame, "the round trip changed the reply");

    // The proxy's path answers from parts: the same bytes for a strict REPLY.
    if frame.message.strict && frame.message.kind == MessageKind::Reply {
        let mut parts = BytesMut::new();
        codec::encode_reply(
            &mut parts,
            frame.rpc_error.as_str(),
            &frame.message.name,
            frame.seqid(),
            &frame.body,
        );
        assert_eq!(parts, encoded, "encode_reply and ReplyFrame::encode differ");
    }
}
