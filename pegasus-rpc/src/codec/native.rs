//! The native "RDSN" frame of the C++ client and shell (docs/protocol.md §3.5): the in-memory
//! `message_header` of rDSN, 192 bytes, then the body. Every integer is little-endian (the C++
//! processes copy the struct to the socket as it is on x86-64).
//!
//! ```text
//!   0 "RDSN" |   4 hdr_version |   8 hdr_length=192 |  12 hdr_crc32 |  16 body_length | 20 body_crc32
//!  24 id (u64, matches the reply to its request)    |  32 trace_id (u64)
//!  40 rpc_name (48 bytes, NUL-terminated)           |  88 rpc_code {u32 local_code, u32 local_hash}
//!  96 gpid (u64: app_id low, partition_index high)  | 104 context (u64 bit field, below)
//! 112 from_address (rpc_address u64)                | 120 timeout_ms (i32) | 124 thread_hash (i32)
//! 128 partition_hash (u64)                          | 136 error_name (48 bytes) | 184 error_code {u32, u32}
//! 192 body: a struct whose one field (id 0) holds the request or response, then STOP
//! ```
//! context bits: 0 is_request, 1 is_forwarded, 6..10 serialize_format (1 = thrift binary),
//! 10 is_forward_supported, 11 is_backup_request.
//!
//! A CRC of 0 means "not computed"; a non-zero one is checked, as the C++ parser does: the header
//! CRC over the 192 bytes with its own field zeroed, the body CRC over the body. Both are
//! CRC-32C ([`crc32c`]).
//!
//! The body carries no thrift message begin: the name is `rpc_name` and the seqid is `id`. The
//! args struct's field id is 0 where THFT clients write 1; a MetaServer reads either.

use bytes::{BufMut, Bytes, BytesMut};

use super::CodecError;
use super::base::{Gpid, RpcAddress};
/// CRC-32C, rDSN's `crc32_calc(data, len, 0)` (`P:src/utils/crc.cpp`).
pub use super::crc::crc32c;

pub const RDSN_MAGIC: [u8; 4] = *b"RDSN";
pub const NATIVE_HEADER_LEN: usize = 192;
/// The size of `rpc_name` and `error_name`; a name keeps a NUL in its last byte, so it has at
/// most 47 characters.
pub const NATIVE_NAME_LEN: usize = 48;

/// An rDSN `fast_code`: a process-local number and the hash of the process's code table. The
/// receiver trusts the number only when the hash is non-zero and equal to its own; otherwise it
/// looks the name up. This crate always writes `{0, 0}` in what it creates, so the name decides.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FastCode {
    pub local_code: u32,
    pub local_hash: u32,
}

/// The `context` bit field of the header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsgContext(pub u64);

impl MsgContext {
    const IS_REQUEST: u64 = 1;
    const IS_FORWARDED: u64 = 1 << 1;
    const FORMAT_SHIFT: u32 = 6;
    const FORMAT_MASK: u64 = 0xf << Self::FORMAT_SHIFT;
    const FORWARD_SUPPORTED: u64 = 1 << 10;
    const BACKUP_REQUEST: u64 = 1 << 11;
    /// `serialize_format` of thrift binary (`DSF_THRIFT_BINARY`), the only one served here.
    pub const THRIFT_BINARY: u8 = 1;

    /// What `message_ex::create_request` sets: a request, thrift binary, forwarding supported.
    pub fn request() -> Self {
        MsgContext(
            Self::IS_REQUEST
                | (u64::from(Self::THRIFT_BINARY) << Self::FORMAT_SHIFT)
                | Self::FORWARD_SUPPORTED,
        )
    }
    pub fn is_request(self) -> bool {
        self.0 & Self::IS_REQUEST != 0
    }
    pub fn is_forwarded(self) -> bool {
        self.0 & Self::IS_FORWARDED != 0
    }
    pub fn is_forward_supported(self) -> bool {
        self.0 & Self::FORWARD_SUPPORTED != 0
    }
    pub fn is_backup_request(self) -> bool {
        self.0 & Self::BACKUP_REQUEST != 0
    }
    pub fn serialize_format(self) -> u8 {
        ((self.0 & Self::FORMAT_MASK) >> Self::FORMAT_SHIFT) as u8
    }
    /// The context of the reply to a request with this one: not a request, not forwarded (so the
    /// client never takes the reply's `from_address` for its MetaServers' leader), the rest kept.
    pub fn for_reply(self) -> Self {
        MsgContext(self.0 & !(Self::IS_REQUEST | Self::IS_FORWARDED))
    }
}

/// A native header, every field as received, so that a decoded frame re-encodes byte for byte.
/// `body_length` is not kept: it is the length of the body the header is encoded with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NativeHeader {
    pub hdr_version: u32,
    pub hdr_crc32: u32,
    pub body_crc32: u32,
    pub id: u64,
    pub trace_id: u64,
    pub rpc_name: [u8; NATIVE_NAME_LEN],
    pub rpc_code: FastCode,
    pub gpid: Gpid,
    pub context: MsgContext,
    pub from_address: RpcAddress,
    pub timeout_ms: i32,
    pub thread_hash: i32,
    pub partition_hash: u64,
    pub error_name: [u8; NATIVE_NAME_LEN],
    pub error_code: FastCode,
}

/// A name as the fixed array holds it: NUL-padded, cut to 47 bytes as `strncpy` does.
pub fn fixed_name(name: &str) -> [u8; NATIVE_NAME_LEN] {
    let mut out = [0u8; NATIVE_NAME_LEN];
    let n = name.len().min(NATIVE_NAME_LEN - 1);
    out[..n].copy_from_slice(&name.as_bytes()[..n]);
    out
}

/// The name in a fixed array: the bytes before the first NUL, which must be there.
fn name_of<'a>(raw: &'a [u8; NATIVE_NAME_LEN], what: &'static str) -> Result<&'a str, CodecError> {
    let end = raw
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| CodecError::malformed(what, "no NUL in its 48 bytes"))?;
    std::str::from_utf8(&raw[..end]).map_err(|_| CodecError::malformed(what, "not UTF-8"))
}

impl NativeHeader {
    /// A request header as the C++ client writes one for `name` (`create_request` then
    /// `rpc_engine::call`), with no CRCs and no code hash.
    pub fn request(name: &str, id: u64, timeout_ms: i32) -> Self {
        NativeHeader {
            hdr_version: 0,
            hdr_crc32: 0,
            body_crc32: 0,
            id,
            trace_id: 0,
            rpc_name: fixed_name(name),
            rpc_code: FastCode::default(),
            gpid: Gpid::default(),
            context: MsgContext::request(),
            from_address: RpcAddress::INVALID,
            timeout_ms,
            thread_hash: 0,
            partition_hash: 0,
            error_name: [0; NATIVE_NAME_LEN],
            error_code: FastCode::default(),
        }
    }

    /// The header of the reply to the request with this header, as a MetaServer builds it
    /// (`create_response` then `rpc_engine::reply`): the request's header with the reply's name
    /// and error, no CRCs and no code hashes, `is_request` and `is_forwarded` cleared, and
    /// `from_address` 0 (the proxy names no address a client could go to instead).
    pub fn reply(&self, ack_name: &str, rpc_error: &str) -> Self {
        NativeHeader {
            hdr_crc32: 0,
            body_crc32: 0,
            rpc_name: fixed_name(ack_name),
            rpc_code: FastCode::default(),
            context: self.context.for_reply(),
            from_address: RpcAddress::INVALID,
            error_name: fixed_name(rpc_error),
            error_code: FastCode::default(),
            ..*self
        }
    }

    /// The RPC name (`rpc_name` up to its NUL).
    pub fn name(&self) -> Result<&str, CodecError> {
        name_of(&self.rpc_name, "rpc_name")
    }

    /// The rpc-level error of a reply (`server.error_name` up to its NUL).
    pub fn error_name(&self) -> Result<&str, CodecError> {
        name_of(&self.error_name, "error_name")
    }

    /// Sets both CRCs for `body`, as a sender with `rpc_message_crc_required` does.
    pub fn seal(&mut self, body: &[u8]) {
        self.body_crc32 = crc32c(body);
        self.hdr_crc32 = 0;
        let mut h = BytesMut::with_capacity(NATIVE_HEADER_LEN);
        self.encode(body.len(), &mut h);
        self.hdr_crc32 = crc32c(&h);
    }

    /// Appends the 192 header bytes for a body of `body_len` bytes.
    pub fn encode(&self, body_len: usize, out: &mut BytesMut) {
        out.reserve(NATIVE_HEADER_LEN);
        out.put_slice(&RDSN_MAGIC);
        out.put_u32_le(self.hdr_version);
        out.put_u32_le(NATIVE_HEADER_LEN as u32);
        out.put_u32_le(self.hdr_crc32);
        out.put_u32_le(body_len as u32);
        out.put_u32_le(self.body_crc32);
        out.put_u64_le(self.id);
        out.put_u64_le(self.trace_id);
        out.put_slice(&self.rpc_name);
        out.put_u32_le(self.rpc_code.local_code);
        out.put_u32_le(self.rpc_code.local_hash);
        out.put_i64_le(self.gpid.to_i64());
        out.put_u64_le(self.context.0);
        out.put_u64_le(self.from_address.0);
        out.put_i32_le(self.timeout_ms);
        out.put_i32_le(self.thread_hash);
        out.put_u64_le(self.partition_hash);
        out.put_slice(&self.error_name);
        out.put_u32_le(self.error_code.local_code);
        out.put_u32_le(self.error_code.local_hash);
    }

    /// Reads the 192 bytes of `h` (whose length the caller checked).
    fn parse(h: &[u8]) -> Self {
        let u32_at = |at: usize| u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
        let u64_at = |at: usize| u64::from(u32_at(at)) | (u64::from(u32_at(at + 4)) << 32);
        let name_at = |at: usize| {
            let mut a = [0u8; NATIVE_NAME_LEN];
            a.copy_from_slice(&h[at..at + NATIVE_NAME_LEN]);
            a
        };
        let code_at = |at: usize| FastCode {
            local_code: u32_at(at),
            local_hash: u32_at(at + 4),
        };
        NativeHeader {
            hdr_version: u32_at(4),
            hdr_crc32: u32_at(12),
            body_crc32: u32_at(20),
            id: u64_at(24),
            trace_id: u64_at(32),
            rpc_name: name_at(40),
            rpc_code: code_at(88),
            gpid: Gpid::from_i64(u64_at(96) as i64),
            context: MsgContext(u64_at(104)),
            from_address: RpcAddress(u64_at(112)),
            timeout_ms: u32_at(120) as i32,
            thread_hash: u32_at(124) as i32,
            partition_hash: u64_at(128),
            error_name: name_at(136),
            error_code: code_at(184),
        }
    }
}

/// The length the native frame at the front of `buf` announces, once its `body_length` is in:
/// `None` before, or when `buf` does not start with `RDSN`.
pub fn announced_len(buf: &[u8]) -> Option<u64> {
    if buf.get(..4)? != RDSN_MAGIC {
        return None;
    }
    let len: [u8; 4] = buf.get(16..20)?.try_into().ok()?;
    Some(NATIVE_HEADER_LEN as u64 + u64::from(u32::from_le_bytes(len)))
}

/// Takes one native frame (request or reply) off the front of `buf`, with the contract of
/// [`super::decode_request`]: `Ok(None)` needs more bytes and consumed nothing; a bad magic,
/// header length, header CRC or size consumed nothing and the stream cannot be resumed; a bad
/// body CRC consumed the frame.
pub fn decode_frame(
    buf: &mut BytesMut,
    max_frame: usize,
) -> Result<Option<(NativeHeader, Bytes)>, CodecError> {
    let have = buf.len().min(4);
    if buf[..have] != RDSN_MAGIC[..have] {
        return Err(CodecError::BadMagic(buf[..have].to_vec()));
    }
    if buf.len() < 12 {
        return Ok(None);
    }
    let hdr_len = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
    if hdr_len as usize != NATIVE_HEADER_LEN {
        return Err(CodecError::BadHeaderLength(hdr_len));
    }
    if buf.len() < NATIVE_HEADER_LEN {
        return Ok(None);
    }
    let total = announced_len(buf).unwrap_or(u64::MAX);
    if total > max_frame as u64 {
        return Err(CodecError::FrameTooLarge {
            len: total,
            limit: max_frame,
        });
    }
    let header = NativeHeader::parse(&buf[..NATIVE_HEADER_LEN]);
    if header.hdr_crc32 != 0 {
        let mut zeroed = [0u8; NATIVE_HEADER_LEN];
        zeroed.copy_from_slice(&buf[..NATIVE_HEADER_LEN]);
        zeroed[12..16].fill(0);
        if crc32c(&zeroed) != header.hdr_crc32 {
            return Err(CodecError::BadChecksum("header"));
        }
    }
    let total = total as usize;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let body = buf.split_to(total).freeze().slice(NATIVE_HEADER_LEN..);
    if header.body_crc32 != 0 && crc32c(&body) != header.body_crc32 {
        return Err(CodecError::BadChecksum("body"));
    }
    Ok(Some((header, body)))
}

/// Appends a native reply to the request with header `request`: its header ([`NativeHeader::reply`])
/// and `body`.
pub fn encode_reply(
    out: &mut BytesMut,
    request: &NativeHeader,
    rpc_error: &str,
    ack_name: &str,
    body: &[u8],
) {
    out.reserve(NATIVE_HEADER_LEN + body.len());
    request.reply(ack_name, rpc_error).encode(body.len(), out);
    out.put_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_context_bits_are_where_the_bit_field_puts_them() {
        let c = MsgContext::request();
        // Checked against g++ on x86-64 with the bit field of `msg_context` (docs/protocol.md §3.5).
        assert_eq!(c.0, 0x441);
        assert!(c.is_request() && c.is_forward_supported() && !c.is_forwarded());
        assert_eq!(c.serialize_format(), MsgContext::THRIFT_BINARY);
        let r = MsgContext(0x443).for_reply();
        assert_eq!(r.0, 0x440);
        assert!(MsgContext(1 << 11).is_backup_request());
    }

    #[test]
    fn names_are_cut_and_padded_as_strncpy_does() {
        let long = "X".repeat(60);
        let fixed = fixed_name(&long);
        assert_eq!(fixed[46], b'X');
        assert_eq!(fixed[47], 0);
        assert_eq!(name_of(&fixed, "n").expect("name").len(), 47);
        assert!(name_of(&[b'A'; 48], "n").is_err(), "no NUL");
        let mut bad = fixed_name("ab");
        bad[0] = 0xff;
        assert!(name_of(&bad, "n").is_err(), "not UTF-8");
    }

    #[test]
    fn a_sealed_header_passes_its_checks_and_a_changed_byte_fails_them() {
        let body = b"\x0c\x00\x00\x0b\x00\x01\x00\x00\x00\x04temp\x00\x00";
        let mut h = NativeHeader::request("RPC_CM_QUERY_PARTITION_CONFIG_BY_INDEX", 7, 5000);
        h.seal(body);
        assert_ne!(h.hdr_crc32, 0);
        let mut frame = BytesMut::new();
        h.encode(body.len(), &mut frame);
        frame.put_slice(body);
        let good = frame.clone();
        let (got, got_body) = decode_frame(&mut frame, 1 << 20)
            .expect("ok")
            .expect("frame");
        assert_eq!((got, &got_body[..]), (h, &body[..]));

        let mut bad_header = BytesMut::from(&good[..]);
        bad_header[30] ^= 1; // inside id
        assert_eq!(
            decode_frame(&mut bad_header, 1 << 20),
            Err(CodecError::BadChecksum("header"))
        );
        assert_eq!(bad_header.len(), good.len(), "nothing consumed");

        let mut bad_body = BytesMut::from(&good[..]);
        let last = bad_body.len() - 3;
        bad_body[last] ^= 1;
        assert_eq!(
            decode_frame(&mut bad_body, 1 << 20),
            Err(CodecError::BadChecksum("body"))
        );
        assert!(bad_body.is_empty(), "the frame was consumed");
    }
}
