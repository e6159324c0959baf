//! The Pegasus base types. In the IDL they are empty structs and fields holding them are
//! tagged `STRUCT` (0x0C), but their bytes are not a thrift struct:
//!
//! ```text
//!  error_code   string                                   "ERR_OK"
//!  gpid         i64   (partition_index << 32) | (u32)app_id
//!  rpc_address  i64   (ipv4 << 32) | (port << 16) | type   type 1 = IPv4, 0 = invalid
//!  host_port    string host | i16 port | i8 type           the port is written signed
//!  blob         binary (i32 length + bytes)
//! ```
//!
//! Why they are encoded by hand: docs/protocol.md §6.

use std::borrow::Cow;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use bytes::Bytes;
use thrift::protocol::{TInputProtocol, TOutputProtocol};

use super::wire::ThriftWire;

/// An rDSN error name, carried as a string on the wire. Only names every official client knows
/// should be emitted (§6): the Java client throws on a name missing from its enum.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ErrorCode(Cow<'static, str>);

impl ErrorCode {
    pub const OK: ErrorCode = ErrorCode::from_static("ERR_OK");
    pub const FORWARD_TO_OTHERS: ErrorCode = ErrorCode::from_static("ERR_FORWARD_TO_OTHERS");
    pub const OBJECT_NOT_FOUND: ErrorCode = ErrorCode::from_static("ERR_OBJECT_NOT_FOUND");
    pub const SERVICE_NOT_ACTIVE: ErrorCode = ErrorCode::from_static("ERR_SERVICE_NOT_ACTIVE");
    pub const HANDLER_NOT_FOUND: ErrorCode = ErrorCode::from_static("ERR_HANDLER_NOT_FOUND");
    pub const INVALID_DATA: ErrorCode = ErrorCode::from_static("ERR_INVALID_DATA");
    pub const INVALID_PARAMETERS: ErrorCode = ErrorCode::from_static("ERR_INVALID_PARAMETERS");
    pub const BUSY: ErrorCode = ErrorCode::from_static("ERR_BUSY");
    pub const BUSY_CREATING: ErrorCode = ErrorCode::from_static("ERR_BUSY_CREATING");
    pub const BUSY_DROPPING: ErrorCode = ErrorCode::from_static("ERR_BUSY_DROPPING");
    pub const TIMEOUT: ErrorCode = ErrorCode::from_static("ERR_TIMEOUT");
    pub const UNKNOWN: ErrorCode = ErrorCode::from_static("ERR_UNKNOWN");
    // Replica servers (§15.3, §15.4) and admin RPCs (§14).
    pub const INVALID_STATE: ErrorCode = ErrorCode::from_static("ERR_INVALID_STATE");
    pub const OPERATION_DISABLED: ErrorCode = ErrorCode::from_static("ERR_OPERATION_DISABLED");
    pub const PARENT_PARTITION_MISUSED: ErrorCode =
        ErrorCode::from_static("ERR_PARENT_PARTITION_MISUSED");
    pub const SESSION_RESET: ErrorCode = ErrorCode::from_static("ERR_SESSION_RESET");
    pub const NOT_ENOUGH_MEMBER: ErrorCode = ErrorCode::from_static("ERR_NOT_ENOUGH_MEMBER");
    pub const APP_NOT_EXIST: ErrorCode = ErrorCode::from_static("ERR_APP_NOT_EXIST");

    /// The names above: one read from the wire as one of these is kept as the constant, so that
    /// cloning it (once per client a shared answer goes to) allocates nothing.
    const KNOWN: &[ErrorCode] = &[
        Self::OK,
        Self::FORWARD_TO_OTHERS,
        Self::OBJECT_NOT_FOUND,
        Self::SERVICE_NOT_ACTIVE,
        Self::HANDLER_NOT_FOUND,
        Self::INVALID_DATA,
        Self::INVALID_PARAMETERS,
        Self::BUSY,
        Self::BUSY_CREATING,
        Self::BUSY_DROPPING,
        Self::TIMEOUT,
        Self::UNKNOWN,
        Self::INVALID_STATE,
        Self::OPERATION_DISABLED,
        Self::PARENT_PARTITION_MISUSED,
        Self::SESSION_RESET,
        Self::NOT_ENOUGH_MEMBER,
        Self::APP_NOT_EXIST,
    ];

    pub const fn from_static(name: &'static str) -> Self {
        ErrorCode(Cow::Borrowed(name))
    }

    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        match Self::KNOWN.iter().find(|k| k.as_str() == name) {
            Some(known) => known.clone(),
            None => ErrorCode(Cow::Owned(name)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_ok(&self) -> bool {
        self.as_str() == "ERR_OK"
    }
}

impl Default for ErrorCode {
    fn default() -> Self {
        ErrorCode::OK
    }
}

impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl ThriftWire for ErrorCode {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        Ok(ErrorCode::new(i.read_string()?))
    }
    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        o.write_string(&self.0)
    }
}

/// A partition id: the table's app_id and the partition index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Gpid {
    pub app_id: i32,
    pub partition_index: i32,
}

impl Gpid {
    pub fn new(app_id: i32, partition_index: i32) -> Self {
        Gpid {
            app_id,
            partition_index,
        }
    }
    pub fn to_i64(self) -> i64 {
        ((self.partition_index as i64) << 32) | (self.app_id as u32 as i64)
    }
    pub fn from_i64(v: i64) -> Self {
        Gpid {
            app_id: v as i32,
            partition_index: (v >> 32) as i32,
        }
    }
}

impl ThriftWire for Gpid {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        Ok(Gpid::from_i64(i.read_i64()?))
    }
    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        o.write_i64(self.to_i64())
    }
}

/// An rDSN `rpc_address`: an IPv4 address and port packed in 64 bits. The raw value is kept so that
/// whatever a server sends is re-encoded unchanged.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RpcAddress(pub u64);

impl RpcAddress {
    pub const INVALID: RpcAddress = RpcAddress(0);
    const TYPE_IPV4: u64 = 1;

    pub fn from_socket(addr: SocketAddrV4) -> Self {
        RpcAddress(
            ((u32::from(*addr.ip()) as u64) << 32) | ((addr.port() as u64) << 16) | Self::TYPE_IPV4,
        )
    }
    pub fn is_ipv4(self) -> bool {
        self.0 & 0x3 == Self::TYPE_IPV4
    }
    /// The socket address, for an IPv4 address; `None` for the invalid or a group address.
    pub fn to_socket(self) -> Option<SocketAddrV4> {
        self.is_ipv4().then(|| {
            SocketAddrV4::new(Ipv4Addr::from((self.0 >> 32) as u32), (self.0 >> 16) as u16)
        })
    }
}

impl fmt::Debug for RpcAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for RpcAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_socket() {
            Some(addr) => write!(f, "{addr}"),
            None if self.0 == 0 => f.write_str("invalid"),
            None => write!(f, "rpc_address({:#018x})", self.0),
        }
    }
}

impl ThriftWire for RpcAddress {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        Ok(RpcAddress(i.read_i64()? as u64))
    }
    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        o.write_i64(self.0 as i64)
    }
}

/// A 2.6 `host_port`: a host name and port. The port is written as a signed i16 on the wire, so
/// ports above 32767 look negative to thrift; they are kept as `u16` here.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
    /// 1 = IPv4 (a resolvable host), 0 = invalid.
    pub kind: i8,
}

impl HostPort {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        HostPort {
            host: host.into(),
            port,
            kind: 1,
        }
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl ThriftWire for HostPort {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        let host = i.read_string()?;
        let port = i.read_i16()? as u16;
        let kind = i.read_i8()?;
        Ok(HostPort { host, port, kind })
    }
    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        o.write_string(&self.host)?;
        o.write_i16(self.port as i16)?;
        o.write_i8(self.kind)
    }
}

/// An rDSN `blob`: opaque bytes, written as thrift binary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Blob(pub Bytes);

impl ThriftWire for Blob {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        Ok(Blob(Bytes::from(i.read_bytes()?)))
    }
    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        o.write_bytes(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::wire;
    use bytes::BytesMut;

    #[test]
    fn known_error_names_from_the_wire_are_the_constants() {
        for name in ["ERR_OK", "ERR_OBJECT_NOT_FOUND", "ERR_APP_NOT_EXIST"] {
            let code = ErrorCode::new(name);
            assert!(matches!(code.0, Cow::Borrowed(_)), "{name}");
            assert_eq!(code.as_str(), name);
        }
        let other = ErrorCode::new("ERR_NOT_IN_THE_LIST");
        assert!(matches!(other.0, Cow::Owned(_)));
        assert_eq!(other.as_str(), "ERR_NOT_IN_THE_LIST");
        assert_eq!(ErrorCode::new("ERR_OK"), ErrorCode::OK);
    }

    #[test]
    fn rpc_address_layout_matches_the_document() {
        let a = RpcAddress::from_socket("10.0.0.1:34801".parse().expect("addr"));
        let mut out = BytesMut::new();
        wire::encode(&a, &mut out);
        assert_eq!(&out[..], &[0x0a, 0, 0, 0x01, 0x87, 0xf1, 0, 0x01]);
        assert_eq!(a.to_string(), "10.0.0.1:34801");
        assert_eq!(RpcAddress::INVALID.to_socket(), None);
    }

    #[test]
    fn gpid_layout_matches_the_go_client_vector() {
        let mut out = BytesMut::new();
        wire::encode(&Gpid::new(1, 2), &mut out);
        assert_eq!(&out[..], &[0, 0, 0, 2, 0, 0, 0, 1]);
        assert_eq!(
            wire::decode::<Gpid>(&out, "gpid").expect("decode"),
            Gpid::new(1, 2)
        );
        assert_eq!(
            Gpid::from_i64(Gpid::new(-1, -1).to_i64()),
            Gpid::new(-1, -1)
        );
    }

    #[test]
    fn host_port_writes_the_port_signed() {
        let mut out = BytesMut::new();
        wire::encode(&HostPort::new("node1", 34801), &mut out);
        assert_eq!(&out[..], b"\x00\x00\x00\x05node1\x87\xf1\x01");
        let back: HostPort = wire::decode(&out, "host_port").expect("decode");
        assert_eq!(back.port, 34801);
    }
}
