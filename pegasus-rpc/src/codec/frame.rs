//! Request and reply frames, decoded incrementally from a `BytesMut`.
//!
//! Request, header v0 (docs/protocol.md §3.1), all integers big-endian:
//! ```text
//!   0 "THFT" |  4 hdr_version=0 |  8 hdr_length=48 | 12 hdr_crc32 | 16 body_length | 20 body_crc32
//!  24 app_id | 28 partition_index | 32 client_timeout | 36 thread_hash | 40 partition_hash (u64)
//!  48 body (body_length bytes)
//! ```
//! Request, header v1 (§3.2):
//! ```text
//!   0 "THFT" | 4 hdr_version=1 | 8 meta_length | 12 body_length | 16 request_meta (thrift) | body
//! ```
//! Reply (§4): `i32 total_length (counting itself) | string rpc_error | body`.
//!
//! Request and reply in the native header of the C++ client (§3.5, [`super::native`]):
//! `"RDSN" | 188 more header bytes, little-endian | body`, the body without a message begin. A
//! connection speaks the header of its first frame; [`RequestDecoder`] holds it to that.
//!
//! A body starts with a thrift message begin, strict `80 01 00 TT | string name | i32 seqid` or
//! the old non-strict `string name | i8 TT | i32 seqid`, followed by the args or result struct.
//!
//! The decoders either consume nothing (need more bytes, or a broken header after which the stream
//! cannot be resumed) or exactly one whole frame, even when its content turns out malformed.

use std::borrow::Cow;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thrift::protocol::{TInputProtocol, TOutputProtocol, TType};

use super::base::{ErrorCode, Gpid};
use super::native::{self, NativeHeader, RDSN_MAGIC};
use super::wire::{
    self, ThriftWire, begin_struct, finish_struct, read_struct, write_opt_bool_field,
    write_opt_i32_field, write_opt_i64_field,
};
use super::{CodecError, rpc};

pub const THFT_MAGIC: [u8; 4] = *b"THFT";
pub const V0_HEADER_LEN: usize = 48;
const V1_FIXED_LEN: usize = 16;
/// Default limit on a request frame, for the side that answers (the proxy, a MetaServer). A
/// query_config request is about 130 bytes; an admin request with its app envs a few KiB.
pub const DEFAULT_MAX_REQUEST_FRAME: usize = 1 << 20;
/// Default limit on a reply frame, for the side that calls. A query_config reply for a table of
/// 1024 partitions with host names is about 150 KiB.
pub const DEFAULT_MAX_REPLY_FRAME: usize = 4 << 20;

const STRICT_VERSION: u32 = 0x8001_0000;

/// The thrift message type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    Call = 1,
    Reply = 2,
    Exception = 3,
    Oneway = 4,
}

impl MessageKind {
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(MessageKind::Call),
            2 => Some(MessageKind::Reply),
            3 => Some(MessageKind::Exception),
            4 => Some(MessageKind::Oneway),
            _ => None,
        }
    }
}

/// The message names a [`MessageBegin`] read from the wire keeps without a copy: the RPCs the
/// proxy answers or forwards, and the replies it reads.
const KNOWN_NAMES: &[&str] = &[
    rpc::QUERY_CONFIG,
    rpc::QUERY_CONFIG_ACK,
    rpc::NEGOTIATION,
    rpc::NEGOTIATION_ACK,
    rpc::LIST_APPS,
    rpc::LIST_APPS_ACK,
    rpc::UPDATE_APP_ENV,
    rpc::UPDATE_APP_ENV_ACK,
    rpc::QUERY_DUPLICATION,
    rpc::QUERY_DUPLICATION_ACK,
    rpc::ADD_DUPLICATION,
    rpc::ADD_DUPLICATION_ACK,
];

/// The thrift message begin at the start of every body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageBegin {
    /// A name read from the wire that is a known RPC's (`KNOWN_NAMES`) is borrowed: decoding
    /// a frame allocates nothing for its name (the proxy decodes one per request).
    pub name: Cow<'static, str>,
    pub kind: MessageKind,
    pub seqid: i32,
    /// Whether it came in the strict form (every current client and server writes strict).
    pub strict: bool,
}

impl MessageBegin {
    pub fn new(name: impl Into<String>, kind: MessageKind, seqid: i32) -> Self {
        MessageBegin {
            name: Cow::Owned(name.into()),
            kind,
            seqid,
            strict: true,
        }
    }

    /// Decodes from the start of `b`; returns the message begin and its length in bytes.
    pub fn decode(b: &[u8]) -> Result<(Self, usize), CodecError> {
        let mut r = b;
        let first = take_u32(&mut r, "message begin")?;
        let (name_len, kind_byte, strict) = if first & 0x8000_0000 != 0 {
            if first & 0xffff_0000 != STRICT_VERSION {
                return Err(CodecError::malformed(
                    "message begin",
                    format!("bad protocol version {first:#010x}"),
                ));
            }
            (take_u32(&mut r, "message name")?, None, true)
        } else {
            (first, Some(()), false)
        };
        let name_len = name_len as usize;
        if r.len() < name_len {
            return Err(CodecError::malformed("message name", "truncated"));
        }
        let name = std::str::from_utf8(&r[..name_len])
            .map_err(|_| CodecError::malformed("message name", "not UTF-8"))?;
        let name = match KNOWN_NAMES.iter().find(|known| **known == name) {
            Some(known) => Cow::Borrowed(*known),
            None => Cow::Owned(name.to_owned()),
        };
        r.advance(name_len);
        let kind_byte = match kind_byte {
            None => (first & 0xff) as u8,
            Some(()) => {
                if r.is_empty() {
                    return Err(CodecError::malformed("message begin", "truncated"));
                }
                r.get_u8()
            }
        };
        let kind = MessageKind::from_byte(kind_byte).ok_or_else(|| {
            CodecError::malformed("message begin", format!("unknown message type {kind_byte}"))
        })?;
        let seqid = take_u32(&mut r, "seqid")? as i32;
        Ok((
            MessageBegin {
                name,
                kind,
                seqid,
                strict,
            },
            b.len() - r.len(),
        ))
    }

    pub fn encode(&self, out: &mut BytesMut) {
        if self.strict {
            out.put_u32(STRICT_VERSION | self.kind as u32);
            put_string(out, &self.name);
        } else {
            put_string(out, &self.name);
            out.put_u8(self.kind as u8);
        }
        out.put_i32(self.seqid);
    }

    pub fn encoded_len(&self) -> usize {
        // strict: version, name length, name, seqid; non-strict: name length, name, type, seqid
        self.name.len() + if self.strict { 12 } else { 9 }
    }
}

/// The fields of a v0 header after the lengths. None of them matter to a MetaServer (§3.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeaderV0 {
    pub hdr_crc32: u32,
    pub body_crc32: u32,
    pub app_id: i32,
    pub partition_index: i32,
    pub client_timeout: i32,
    pub thread_hash: i32,
    pub partition_hash: u64,
}

/// The thrift `request_meta` of a v1 header. Absent fields stay absent when re-encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestMetaV1 {
    pub app_id: Option<i32>,
    pub partition_index: Option<i32>,
    pub client_timeout: Option<i32>,
    pub partition_hash: Option<i64>,
    pub is_backup_request: Option<bool>,
}

impl ThriftWire for RequestMetaV1 {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        let mut m = RequestMetaV1::default();
        read_struct(i, |i, id, ty| {
            match (id, ty) {
                (1, TType::I32) => m.app_id = Some(i.read_i32()?),
                (2, TType::I32) => m.partition_index = Some(i.read_i32()?),
                (3, TType::I32) => m.client_timeout = Some(i.read_i32()?),
                (4, TType::I64) => m.partition_hash = Some(i.read_i64()?),
                (5, TType::Bool) => m.is_backup_request = Some(i.read_bool()?),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(m)
    }

    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        begin_struct(o, "request_meta")?;
        write_opt_i32_field(o, 1, self.app_id)?;
        write_opt_i32_field(o, 2, self.partition_index)?;
        write_opt_i32_field(o, 3, self.client_timeout)?;
        write_opt_i64_field(o, 4, self.partition_hash)?;
        write_opt_bool_field(o, 5, self.is_backup_request)?;
        finish_struct(o)
    }
}

/// Which header a request came with: THFT v0 or v1 (chosen per frame), or native.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestHeader {
    V0(HeaderV0),
    V1(RequestMetaV1),
    Native(NativeHeader),
}

/// The two header families; a connection speaks one (the server picks its parser from the
/// first four bytes of the connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderFamily {
    Thft,
    Native,
}

impl HeaderFamily {
    fn magic(self) -> [u8; 4] {
        match self {
            HeaderFamily::Thft => THFT_MAGIC,
            HeaderFamily::Native => RDSN_MAGIC,
        }
    }

    /// Whether `buf` could start a frame of this family (what has come of the magic matches).
    fn could_start(self, buf: &[u8]) -> bool {
        let have = buf.len().min(4);
        buf[..have] == self.magic()[..have]
    }
}

/// Where a reply goes: under the seqid of a THFT request, or in the native header of the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyTo {
    Thft { seqid: i32 },
    Native(NativeHeader),
}

impl ReplyTo {
    /// Appends the reply frame: a THFT reply (§4) or a native one ([`native::encode_reply`]).
    pub fn encode(&self, out: &mut BytesMut, rpc_error: &str, ack_name: &str, body: &[u8]) {
        match self {
            ReplyTo::Thft { seqid } => encode_reply(out, rpc_error, ack_name, *seqid, body),
            ReplyTo::Native(h) => native::encode_reply(out, h, rpc_error, ack_name, body),
        }
    }

    /// Appends the bytes of [`ReplyTo::encode`] that come before the body, for a body of
    /// `body_len` bytes (the body follows them unchanged in both families).
    pub fn encode_header(
        &self,
        out: &mut BytesMut,
        rpc_error: &str,
        ack_name: &str,
        body_len: usize,
    ) {
        match self {
            ReplyTo::Thft { seqid } => {
                encode_reply_header(out, rpc_error, ack_name, *seqid, body_len)
            }
            ReplyTo::Native(h) => h.reply(ack_name, rpc_error).encode(body_len, out),
        }
    }
}

/// One request: its header, its message begin, and the bytes of its args struct.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestFrame {
    pub header: RequestHeader,
    pub message: MessageBegin,
    /// The args struct, a zero-copy slice of the received frame.
    pub args: Bytes,
}

impl RequestFrame {
    /// A CALL with a v0 header whose fields are all zero, as the Go and Python clients send to a
    /// MetaServer, apart from the timeout.
    pub fn call_v0(
        name: impl Into<String>,
        seqid: i32,
        client_timeout_ms: i32,
        args: Bytes,
    ) -> Self {
        RequestFrame {
            header: RequestHeader::V0(HeaderV0 {
                client_timeout: client_timeout_ms,
                ..Default::default()
            }),
            message: MessageBegin::new(name, MessageKind::Call, seqid),
            args,
        }
    }

    pub fn name(&self) -> &str {
        &self.message.name
    }

    /// The seqid of the message begin; for a native frame, the low 32 bits of its id (the reply
    /// carries the whole id: see [`RequestFrame::reply_to`]).
    pub fn seqid(&self) -> i32 {
        self.message.seqid
    }

    /// Where the reply to this request goes.
    pub fn reply_to(&self) -> ReplyTo {
        match &self.header {
            RequestHeader::Native(h) => ReplyTo::Native(*h),
            _ => ReplyTo::Thft {
                seqid: self.message.seqid,
            },
        }
    }

    pub fn family(&self) -> HeaderFamily {
        match &self.header {
            RequestHeader::Native(_) => HeaderFamily::Native,
            _ => HeaderFamily::Thft,
        }
    }

    pub fn gpid(&self) -> Gpid {
        match &self.header {
            RequestHeader::V0(h) => Gpid::new(h.app_id, h.partition_index),
            RequestHeader::V1(m) => {
                Gpid::new(m.app_id.unwrap_or(0), m.partition_index.unwrap_or(0))
            }
            RequestHeader::Native(h) => h.gpid,
        }
    }

    /// The timeout the client put in its header, in ms. Not to be trusted (§3.3).
    pub fn client_timeout(&self) -> Option<i32> {
        match &self.header {
            RequestHeader::V0(h) => Some(h.client_timeout),
            RequestHeader::V1(m) => m.client_timeout,
            RequestHeader::Native(h) => Some(h.timeout_ms),
        }
    }

    /// Appends the whole frame to `out`. A native frame is its header and the args (the name and
    /// id are the header's; the message begin is not on the wire).
    pub fn encode(&self, out: &mut BytesMut) {
        if let RequestHeader::Native(h) = &self.header {
            h.encode(self.args.len(), out);
            out.put_slice(&self.args);
            return;
        }
        let body_len = self.message.encoded_len() + self.args.len();
        match &self.header {
            RequestHeader::V0(h) => {
                out.reserve(V0_HEADER_LEN + body_len);
                out.put_slice(&THFT_MAGIC);
                out.put_u32(0);
                out.put_u32(V0_HEADER_LEN as u32);
                out.put_u32(h.hdr_crc32);
                out.put_u32(body_len as u32);
                out.put_u32(h.body_crc32);
                out.put_i32(h.app_id);
                out.put_i32(h.partition_index);
                out.put_i32(h.client_timeout);
                out.put_i32(h.thread_hash);
                out.put_u64(h.partition_hash);
            }
            RequestHeader::V1(meta) => {
                out.reserve(V1_FIXED_LEN + 48 + body_len);
                out.put_slice(&THFT_MAGIC);
                out.put_u32(1);
                let meta_len_at = out.len();
                out.put_u32(0);
                out.put_u32(body_len as u32);
                let meta_start = out.len();
                wire::encode(meta, out);
                let meta_len = (out.len() - meta_start) as u32;
                out[meta_len_at..meta_len_at + 4].copy_from_slice(&meta_len.to_be_bytes());
            }
            RequestHeader::Native(_) => unreachable!("written above"),
        }
        self.message.encode(out);
        out.put_slice(&self.args);
    }

    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }
}

/// Appends a v0 CALL frame built from its parts, without building a [`RequestFrame`]: the path
/// of the MetaServer client, which forwards a client's args under its own seqid.
pub fn encode_call(
    out: &mut BytesMut,
    name: &str,
    seqid: i32,
    client_timeout_ms: i32,
    args: &[u8],
) {
    let body_len = name.len() + 12 + args.len();
    out.reserve(V0_HEADER_LEN + body_len);
    out.put_slice(&THFT_MAGIC);
    out.put_u32(0);
    out.put_u32(V0_HEADER_LEN as u32);
    out.put_u32(0);
    out.put_u32(body_len as u32);
    out.put_bytes(0, 8); // body_crc32, app_id
    out.put_i32(0); // partition_index
    out.put_i32(client_timeout_ms);
    out.put_bytes(0, 12); // thread_hash, partition_hash
    out.put_u32(STRICT_VERSION | MessageKind::Call as u32);
    put_string(out, name);
    out.put_i32(seqid);
    out.put_slice(args);
}

/// Takes request frames off a connection's stream, holding the connection to the header family
/// of its first frame, as a Pegasus server does (it picks the parser once per connection).
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestDecoder {
    family: Option<HeaderFamily>,
}

impl RequestDecoder {
    /// The family of the connection, once its first frame has been decoded.
    pub fn family(&self) -> Option<HeaderFamily> {
        self.family
    }

    /// [`decode_request`], refusing a frame of the other family with `BadMagic`.
    pub fn decode(
        &mut self,
        buf: &mut BytesMut,
        max_frame: usize,
    ) -> Result<Option<RequestFrame>, CodecError> {
        if let Some(family) = self.family
            && !family.could_start(buf)
        {
            return Err(CodecError::BadMagic(buf[..buf.len().min(4)].to_vec()));
        }
        let frame = decode_request(buf, max_frame)?;
        if let Some(f) = &frame {
            self.family.get_or_insert(f.family());
        }
        Ok(frame)
    }
}

/// The total length the request frame at the front of `buf` announces, once its header has come
/// far enough to say (§3.1, §3.2, §3.5): `None` before that, or when the bytes are not a header
/// the decoder accepts.
pub fn announced_len(buf: &[u8]) -> Option<u64> {
    if HeaderFamily::Native.could_start(buf) {
        return native::announced_len(buf);
    }
    let word = |at: usize| -> Option<u64> {
        let bytes: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
        Some(u64::from(u32::from_be_bytes(bytes)))
    };
    if buf.get(..4)? != THFT_MAGIC {
        return None;
    }
    match word(4)? {
        // hdr_length (48) at 8, body_length at 16.
        0 => Some(word(8)? + word(16)?),
        // meta_length at 8, body_length at 12, after 16 fixed bytes.
        1 => Some(V1_FIXED_LEN as u64 + word(8)? + word(12)?),
        _ => None,
    }
}

/// Takes one request frame, THFT or native, off the front of `buf`.
///
/// `Ok(None)`: not a whole frame yet, nothing consumed. `Err` for a bad magic, version, header
/// length, header CRC or size: nothing consumed and the stream cannot be resumed. `Err(Malformed)`
/// (or a bad body CRC): the whole frame was consumed and its content was bad.
pub fn decode_request(
    buf: &mut BytesMut,
    max_frame: usize,
) -> Result<Option<RequestFrame>, CodecError> {
    if HeaderFamily::Native.could_start(buf) && !buf.is_empty() {
        return decode_native_request(buf, max_frame);
    }
    let have = buf.len().min(4);
    if buf[..have] != THFT_MAGIC[..have] {
        return Err(CodecError::BadMagic(buf[..have].to_vec()));
    }
    if buf.len() < 8 {
        return Ok(None);
    }
    let version = be_u32(buf, 4);
    let (header_len, total) = match version {
        0 => {
            if buf.len() < 12 {
                return Ok(None);
            }
            let hdr_len = be_u32(buf, 8);
            if hdr_len as usize != V0_HEADER_LEN {
                return Err(CodecError::BadHeaderLength(hdr_len));
            }
            if buf.len() < 20 {
                return Ok(None);
            }
            (V0_HEADER_LEN, V0_HEADER_LEN as u64 + be_u32(buf, 16) as u64)
        }
        1 => {
            if buf.len() < V1_FIXED_LEN {
                return Ok(None);
            }
            let meta_len = be_u32(buf, 8) as u64;
            let body_len = be_u32(buf, 12) as u64;
            (V1_FIXED_LEN, V1_FIXED_LEN as u64 + meta_len + body_len)
        }
        v => return Err(CodecError::UnsupportedVersion(v)),
    };
    if total > max_frame as u64 {
        return Err(CodecError::FrameTooLarge {
            len: total,
            limit: max_frame,
        });
    }
    let total = total as usize;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let frame = buf.split_to(total).freeze();
    let (header, body) = if version == 0 {
        let h = HeaderV0 {
            hdr_crc32: be_u32(&frame, 12),
            body_crc32: be_u32(&frame, 20),
            app_id: be_u32(&frame, 24) as i32,
            partition_index: be_u32(&frame, 28) as i32,
            client_timeout: be_u32(&frame, 32) as i32,
            thread_hash: be_u32(&frame, 36) as i32,
            partition_hash: u64::from_be_bytes(array8(&frame[40..48])),
        };
        (RequestHeader::V0(h), frame.slice(header_len..))
    } else {
        let meta_end = header_len + be_u32(&frame, 8) as usize;
        let meta = wire::decode::<RequestMetaV1>(&frame[header_len..meta_end], "request_meta")?;
        (RequestHeader::V1(meta), frame.slice(meta_end..))
    };
    let (message, used) = MessageBegin::decode(&body)?;
    if !matches!(message.kind, MessageKind::Call | MessageKind::Oneway) {
        return Err(CodecError::malformed(
            "request",
            format!("message type {:?} is not a call", message.kind),
        ));
    }
    Ok(Some(RequestFrame {
        header,
        message,
        args: body.slice(used..),
    }))
}

/// A native request: the header's name and id stand in for the message begin.
fn decode_native_request(
    buf: &mut BytesMut,
    max_frame: usize,
) -> Result<Option<RequestFrame>, CodecError> {
    let Some((header, body)) = native::decode_frame(buf, max_frame)? else {
        return Ok(None);
    };
    if !header.context.is_request() {
        return Err(CodecError::malformed(
            "native request",
            "is_request is not set: a reply, not a request",
        ));
    }
    let format = header.context.serialize_format();
    if format != native::MsgContext::THRIFT_BINARY {
        return Err(CodecError::malformed(
            "native request",
            format!("serialize_format {format}: only thrift binary (1) is served"),
        ));
    }
    let name = header.name()?.to_owned();
    Ok(Some(RequestFrame {
        message: MessageBegin::new(name, MessageKind::Call, header.id as i32),
        header: RequestHeader::Native(header),
        args: body,
    }))
}

/// One reply: the rpc-level error, the message begin and the bytes of the result struct (empty
/// when the rpc-level error is not `ERR_OK`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyFrame {
    pub rpc_error: ErrorCode,
    pub message: MessageBegin,
    pub body: Bytes,
}

impl ReplyFrame {
    /// The reply to `request_name` with its `_ACK` name.
    pub fn ack(request_name: &str, seqid: i32, rpc_error: ErrorCode, body: Bytes) -> Self {
        ReplyFrame {
            rpc_error,
            message: MessageBegin::new(
                super::rpc::ack_name(request_name),
                MessageKind::Reply,
                seqid,
            ),
            body,
        }
    }

    pub fn seqid(&self) -> i32 {
        self.message.seqid
    }

    pub fn encode(&self, out: &mut BytesMut) {
        let start = out.len();
        out.reserve(
            4 + 4 + self.rpc_error.as_str().len() + self.message.encoded_len() + self.body.len(),
        );
        out.put_u32(0);
        put_string(out, self.rpc_error.as_str());
        self.message.encode(out);
        out.put_slice(&self.body);
        let total = (out.len() - start) as u32;
        out[start..start + 4].copy_from_slice(&total.to_be_bytes());
    }

    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }
}

/// Appends a reply frame built from its parts, without building a [`ReplyFrame`]: the proxy's
/// path for giving an upstream body back under the client's seqid.
pub fn encode_reply(out: &mut BytesMut, rpc_error: &str, name: &str, seqid: i32, body: &[u8]) {
    out.reserve(reply_header_len(rpc_error, name) + body.len());
    encode_reply_header(out, rpc_error, name, seqid, body.len());
    out.put_slice(body);
}

/// The length of what [`encode_reply_header`] appends.
fn reply_header_len(rpc_error: &str, name: &str) -> usize {
    4 + 4 + rpc_error.len() + 4 + 4 + name.len() + 4
}

/// Appends the bytes of [`encode_reply`] that come before the body, for a body of `body_len`
/// bytes: a writer that sends a large shared body from where it is (a vectored write) needs only
/// these.
pub fn encode_reply_header(
    out: &mut BytesMut,
    rpc_error: &str,
    name: &str,
    seqid: i32,
    body_len: usize,
) {
    let header = reply_header_len(rpc_error, name);
    out.reserve(header);
    out.put_u32((header + body_len) as u32);
    put_string(out, rpc_error);
    out.put_u32(STRICT_VERSION | MessageKind::Reply as u32);
    put_string(out, name);
    out.put_i32(seqid);
}

/// Takes one reply frame off the front of `buf`, with the same contract as [`decode_request`].
pub fn decode_reply(
    buf: &mut BytesMut,
    max_frame: usize,
) -> Result<Option<ReplyFrame>, CodecError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let total = be_u32(buf, 0) as i32;
    if total < 4 {
        return Err(CodecError::BadReplyLength(total));
    }
    if total as usize > max_frame {
        return Err(CodecError::FrameTooLarge {
            len: total as u64,
            limit: max_frame,
        });
    }
    let total = total as usize;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let frame = buf.split_to(total).freeze();
    let mut r = &frame[4..];
    let err_len = take_u32(&mut r, "rpc error")? as usize;
    if r.len() < err_len {
        return Err(CodecError::malformed("rpc error", "truncated"));
    }
    let rpc_error = std::str::from_utf8(&r[..err_len])
        .map_err(|_| CodecError::malformed("rpc error", "not UTF-8"))?;
    let rpc_error = match rpc_error {
        "ERR_OK" => ErrorCode::OK,
        other => ErrorCode::new(other),
    };
    let body_at = 4 + 4 + err_len;
    let (message, used) = MessageBegin::decode(&frame[body_at..])?;
    Ok(Some(ReplyFrame {
        rpc_error,
        message,
        body: frame.slice(body_at + used..),
    }))
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn array8(b: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    a
}

fn take_u32(r: &mut &[u8], what: &'static str) -> Result<u32, CodecError> {
    if r.len() < 4 {
        return Err(CodecError::malformed(what, "truncated"));
    }
    Ok(r.get_u32())
}

fn put_string(out: &mut BytesMut, s: &str) {
    out.put_u32(s.len() as u32);
    out.put_slice(s.as_bytes());
}
