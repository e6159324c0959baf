//! `RPC_NEGOTIATION` payloads (`idl/security.thrift`): enough to tell a client that authentication
//! is switched off, which clients with authentication on accept as success (docs/protocol.md §8).

use bytes::BytesMut;
use thrift::protocol::{TInputProtocol, TOutputProtocol, TType};

use super::CodecError;
use super::base::Blob;
use super::wire::{
    self, ThriftWire, begin_struct, finish_struct, read_struct, write_i32_field, write_struct_field,
};

/// `negotiation_status`. Values outside the enum are kept as they came.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NegotiationStatus(pub i32);

impl NegotiationStatus {
    pub const INVALID: Self = Self(0);
    pub const SASL_LIST_MECHANISMS: Self = Self(1);
    pub const SASL_LIST_MECHANISMS_RESP: Self = Self(2);
    pub const SASL_SUCC: Self = Self(8);
    pub const SASL_AUTH_DISABLE: Self = Self(9);
    pub const SASL_AUTH_FAIL: Self = Self(10);
}

/// `negotiation_request` and `negotiation_response` share one layout: status, then a blob.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Negotiation {
    status: NegotiationStatus,
    msg: Blob,
}

impl ThriftWire for Negotiation {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        let mut n = Negotiation::default();
        read_struct(i, |i, id, ty| {
            match (id, ty) {
                (1, TType::I32) => n.status = NegotiationStatus(i.read_i32()?),
                (2, TType::Struct) => n.msg = Blob::read(i)?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(n)
    }

    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        begin_struct(o, "negotiation")?;
        write_i32_field(o, 1, self.status.0)?;
        write_struct_field(o, 2, &self.msg)?;
        finish_struct(o)
    }
}

/// `negotiation_request`, as a client sends it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NegotiationRequest {
    pub status: NegotiationStatus,
    pub msg: Blob,
}

impl NegotiationRequest {
    pub fn from_args(args: &[u8]) -> Result<Self, CodecError> {
        let n: Negotiation = wire::decode_args(args, "negotiation_request")?;
        Ok(NegotiationRequest {
            status: n.status,
            msg: n.msg,
        })
    }

    pub fn to_args(&self, out: &mut BytesMut) {
        let n = Negotiation {
            status: self.status,
            msg: self.msg.clone(),
        };
        wire::encode_args(&n, 1, out)
    }
}

/// `negotiation_response`, as a server answers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NegotiationResponse {
    pub status: NegotiationStatus,
    pub msg: Blob,
}

impl NegotiationResponse {
    /// What a server without authentication answers to any negotiation step.
    pub fn auth_disabled() -> Self {
        NegotiationResponse {
            status: NegotiationStatus::SASL_AUTH_DISABLE,
            msg: Blob::default(),
        }
    }

    pub fn from_result(body: &[u8]) -> Result<Self, CodecError> {
        let n: Negotiation = wire::decode_result(body, "negotiation_response")?;
        Ok(NegotiationResponse {
            status: n.status,
            msg: n.msg,
        })
    }

    pub fn to_result(&self, out: &mut BytesMut) {
        let n = Negotiation {
            status: self.status,
            msg: self.msg.clone(),
        };
        wire::encode_result(&n, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_disabled_reply_round_trips() {
        let mut out = BytesMut::new();
        NegotiationResponse::auth_disabled().to_result(&mut out);
        // field 0 struct { field 1 i32 = 9, field 2 (0x0C) binary "" } STOP
        assert_eq!(
            &out[..],
            &[
                0x0c, 0, 0, 0x08, 0, 1, 0, 0, 0, 9, 0x0c, 0, 2, 0, 0, 0, 0, 0, 0
            ]
        );
        let back = NegotiationResponse::from_result(&out).expect("decode");
        assert_eq!(back.status, NegotiationStatus::SASL_AUTH_DISABLE);
    }

    #[test]
    fn request_round_trips() {
        let req = NegotiationRequest {
            status: NegotiationStatus::SASL_LIST_MECHANISMS,
            msg: Blob(bytes::Bytes::from_static(b"GSSAPI")),
        };
        let mut out = BytesMut::new();
        req.to_args(&mut out);
        assert_eq!(NegotiationRequest::from_args(&out).expect("decode"), req);
    }
}
