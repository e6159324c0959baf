//! Replica-server payloads (§15.1, §15.2, §15.8): the `rrdb` requests the official clients send
//! for reads and writes, the responses a replica server answers with, and the batch a duplication
//! source ships to its follower.
//!
//! Like the C++ server, every encoder writes each non-optional field, in id order; optional fields
//! only when set. Decoders accept fields in any order and leave absent ones at their defaults
//! (the clients leave some out: Node.js writes only ids 1, 3, 4 and 5 of `multi_get_request`).
//!
//! ```text
//!  blob field     0C <id> | i32 len | bytes            (tagged STRUCT, encoded as binary, §6)
//!  GET args       0C 00 01 | i32 len | storage key | 00
//!  PUT args       0C 00 01 | update_request | 00
//!  reply body     0C 00 00 | response | 00
//! ```
//!
//! The `error` field of every response is a `rocksdb::Status::Code` ([`rocksdb`]), not a dsn
//! error name: the rpc-level error of the reply frame carries those.

use bytes::{Bytes, BytesMut};
use thrift::protocol::{TInputProtocol, TOutputProtocol, TType};

use super::CodecError;
use super::base::Blob;
use super::wire::{
    self, ThriftWire, begin_struct, finish_struct, read_list, read_struct, write_bool_field,
    write_field, write_i32_field, write_i64_field, write_opt_bool_field, write_opt_i8_field,
    write_opt_i32_field, write_opt_i64_field, write_opt_string_field, write_opt_struct_field,
    write_string_field, write_struct_field, write_structs_field,
};

/// The `error` codes of the replica responses (`rocksdb::Status::Code`, §15.2).
pub mod rocksdb {
    pub const OK: i32 = 0;
    /// Missing or expired key (get, ttl).
    pub const NOT_FOUND: i32 = 1;
    pub const CORRUPTION: i32 = 2;
    /// Bad request: an empty multi_put, a bad filter type, incr on a non-integer.
    pub const INVALID_ARGUMENT: i32 = 4;
    pub const IO_ERROR: i32 = 5;
    /// multi_get stopped by a count or size limit.
    pub const INCOMPLETE: i32 = 7;
    /// check_and_set whose check failed.
    pub const TRY_AGAIN: i32 = 13;
}

/// A payload that travels as the single field of an args struct (requests) or as field 0 of a
/// result struct (responses).
pub trait Payload: ThriftWire {
    /// What the decoder calls it in errors.
    const WHAT: &'static str;

    /// Decodes the args struct of a request body.
    fn from_args(args: &[u8]) -> Result<Self, CodecError> {
        wire::decode_args(args, Self::WHAT)
    }

    /// Encodes the args struct, with the request in field 1 as the clients write it.
    fn to_args(&self, out: &mut BytesMut) {
        wire::encode_args(self, 1, out)
    }

    /// Decodes the result struct of a reply body.
    fn from_result(body: &[u8]) -> Result<Self, CodecError> {
        wire::decode_result(body, Self::WHAT)
    }

    /// Encodes the result struct (the response in field 0).
    fn to_result(&self, out: &mut BytesMut) {
        wire::encode_result(self, out)
    }

    /// [`Payload::to_args`] into fresh bytes.
    fn args_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.to_args(&mut out);
        out.freeze()
    }

    /// [`Payload::to_result`] into fresh bytes.
    fn result_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.to_result(&mut out);
        out.freeze()
    }
}

/// The args of REMOVE, GET and TTL (the storage key) and of SORTKEY_COUNT (the hash key).
impl Payload for Blob {
    const WHAT: &'static str = "blob";
}

impl Blob {
    pub fn from_slice(b: &[u8]) -> Self {
        Blob(Bytes::copy_from_slice(b))
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

impl From<&[u8]> for Blob {
    fn from(b: &[u8]) -> Self {
        Blob::from_slice(b)
    }
}

impl From<Vec<u8>> for Blob {
    fn from(b: Vec<u8>) -> Self {
        Blob(Bytes::from(b))
    }
}

fn get_blobs(i: &mut dyn TInputProtocol) -> thrift::Result<Vec<Blob>> {
    read_list(i, TType::Struct, Blob::read)
}

// ---------------------------------------------------------------------------------------------
// Writes

/// `update_request`, the args of PUT. Fields 4-7 exist only at HEAD and are set only by the
/// server itself (§15.2); they are kept when present so that nothing is lost in a round trip.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpdateRequest {
    /// The storage key (§15.5).
    pub key: Blob,
    pub value: Blob,
    /// Absolute expiry in seconds since 2016-01-01 UTC; 0 for none.
    pub expire_ts_seconds: i32,
    pub update_type: Option<i32>,
    pub check_value_returned: Option<bool>,
    pub check_value_exist: Option<bool>,
    pub check_value: Option<Blob>,
}

impl Payload for UpdateRequest {
    const WHAT: &'static str = "update_request";
}

impl ThriftWire for UpdateRequest {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        let mut r = UpdateRequest::default();
        read_struct(i, |i, id, ty| {
            match (id, ty) {
                (1, TType::Struct) => r.key = Blob::read(i)?,
                (2, TType::Struct) => r.value = Blob::read(i)?,
                (3, TType::I32) => r.expire_ts_seconds = i.read_i32()?,
                (4, TType::I32) => r.update_type = Some(i.read_i32()?),
                (5, TType::Bool) => r.check_value_returned = Some(i.read_bool()?),
                (6, TType::Bool) => r.check_value_exist = Some(i.read_bool()?),
                (7, TType::Struct) => r.check_value = Some(Blob::read(i)?),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(r)
    }

    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        begin_struct(o, "update_request")?;
        write_struct_field(o, 1, &self.key)?;
        write_struct_field(o, 2, &self.value)?;
        write_i32_field(o, 3, self.expire_ts_seconds)?;
        write_opt_i32_field(o, 4, self.update_type)?;
        write_opt_bool_field(o, 5, self.check_value_returned)?;
        write_opt_bool_field(o, 6, self.check_value_exist)?;
        write_opt_struct_field(o, 7, self.check_value.as_ref())?;
        finish_struct(o)
    }
}

/// `update_response`, the answer to PUT, MULTI_PUT and REMOVE.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpdateResponse {
    pub error: i32,
    pub app_id: i32,
    pub partition_index: i32,
    pub decree: i64,
    /// The replica's own address; no client reads it.
    pub server: String,
}

impl Payload for UpdateResponse {
    const WHAT: &'static str = "update_response";
}

impl ThriftWire for UpdateResponse {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        let mut r = UpdateResponse::default();
        read_struct(i, |i, id, ty| {
            match (id, ty) {
                (1, TType::I32) => r.error = i.read_i32()?,
                (2, TType::I32) => r.app_id = i.read_i32()?,
                (3, TType::I32) => r.partition_index = i.read_i32()?,
                (4, TType::I64) => r.decree = i.read_i64()?,
                (5, TType::String) => r.server = i.read_string()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(r)
    }

    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        begin_struct(o, "update_response")?;
        write_i32_field(o, 1, self.error)?;
        write_i32_field(o, 2, self.app_id)?;
        write_i32_field(o, 3, self.partition_index)?;
        write_i64_field(o, 4, self.decree)?;
        write_string_field(o, 5, &self.server)?;
        finish_struct(o)
    }
}

/// `key_value`: a sort key (not a storage key) and its value, in multi_put and multi_get.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Blob,
    pub value: Blob,
    /// Only in scan replies that asked for it; multi_put ignores it.
    pub expire_ts_seconds: Option<i32>,
}

impl KeyValue {
    pub fn new(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        KeyValue {
            key: Blob(key.into()),
            value: Blob(value.into()),
            expire_ts_seconds: None,
        }
    }
}

impl ThriftWire for KeyValue {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        let mut r = KeyValue::default();
        read_struct(i, |i, id, ty| {
            match (id, ty) {
                (1, TType::Struct) => r.key = Blob::read(i)?,
                (2, TType::Struct) => r.value = Blob::read(i)?,
                (3, TType::I32) => r.expire_ts_seconds = Some(i.read_i32()?),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(r)
    }

    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        begin_struct(o, "key_value")?;
        write_struct_field(o, 1, &self.key)?;
        write_struct_field(o, 2, &self.value)?;
        write_opt_i32_field(o, 3, self.expire_ts_seconds)?;
        finish_struct(o)
    }
}

/// `multi_put_request`: several sort keys of one hash key, one TTL for all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MultiPutRequest {
    pub hash_key: Blob,
    pub kvs: Vec<KeyValue>,
    pub expire_ts_seconds: i32,
}

impl Payload for MultiPutRequest {
    const WHAT: &'static str = "multi_put_request";
}

impl ThriftWire for MultiPutRequest {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        let mut r = MultiPutRequest::default();
        read_struct(i, |i, id, ty| {
            match (id, ty) {
                (1, TType::Struct) => r.hash_key = Blob::read(i)?,
                (2, TType::List) => r.kvs = read_list(i, TType::Struct, KeyValue::read)?,
                (3, TType::I32) => r.expire_ts_seconds = i.read_i32()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(r)
    }

    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        begin_struct(o, "multi_put_request")?;
        write_struct_field(o, 1, &self.hash_key)?;
        write_structs_field(o, 2, &self.kvs)?;
        write_i32_field(o, 3, self.expire_ts_seconds)?;
        finish_struct(o)
    }
}

/// `multi_remove_request`: sort keys of one hash key to delete.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MultiRemoveRequest {
    pub hash_key: Blob,
    pub sort_keys: Vec<Blob>,
    /// Deprecated; written, never used.
    pub max_count: i64,
}

impl Payload for MultiRemoveRequest {
    const WHAT: &'static str = "multi_remove_request";
}

impl ThriftWire for MultiRemoveRequest {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        let mut r = MultiRemoveRequest::default();
        read_struct(i, |i, id, ty| {
            match (id, ty) {
                (1, TType::Struct) => r.hash_key = Blob::read(i)?,
                (2, TType::List) => r.sort_keys = get_blobs(i)?,
                (3, TType::I64) => r.max_count = i.read_i64()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(r)
    }

    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        begin_struct(o, "multi_remove_request")?;
        write_struct_field(o, 1, &self.hash_key)?;
        write_structs_field(o, 2, &self.sort_keys)?;
        write_i64_field(o, 3, self.max_count)?;
        finish_struct(o)
    }
}

/// `multi_remove_response`. `count` is the number of sort keys asked for, not of those found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MultiRemoveResponse {
    pub error: i32,
    pub count: i64,
    pub app_id: i32,
    pub partition_index: i32,
    pub decree: i64,
    pub server: String,
}

impl Payload for MultiRemoveResponse {
    const WHAT: &'static str = "multi_remove_response";
}

impl ThriftWire for MultiRemoveResponse {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        let mut r = MultiRemoveResponse::default();
        read_struct(i, |i, id, ty| {
            match (id, ty) {
                (1, TType::I32) => r.error = i.read_i32()?,
                (2, TType::I64) => r.count = i.read_i64()?,
                (3, TType::I32) => r.app_id = i.read_i32()?,
                (4, TType::I32) => r.partition_index = i.read_i32()?,
                (5, TType::I64) => r.decree = i.read_i64()?,
                (6, TType::String) => r.server = i.read_string()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(r)
    }

    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        begin_struct(o, "multi_remove_response")?;
        write_i32_field(o, 1, self.error)?;
        write_i64_field(o, 2, self.count)?;
        write_i32_field(o, 3, self.app_id)?;
        write_i32_field(o, 4, self.partition_index)?;
        write_i64_field(o, 5, self.decree)?;
        write_string_field(o, 6, &self.server)?;
        finish_struct(o)
    }
}

/// `incr_request`: add to an integer value (a missing key counts as 0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IncrRequest {
    /// The storage key.
    pub key: Blob,
    pub increment: i64,
    /// 0 keeps the old TTL, >0 sets it, <0 clears it.
    pub expire_ts_seconds: i32,
}

impl Payload for IncrRequest {
    const WHAT: &'static str = "incr_request";
}

impl ThriftWire for IncrRequest {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        let mut r = IncrRequest::default();
        read_struct(i, |i, id, ty| {
            match (id, ty) {
                (1, TType::Struct) => r.key = Blob::read(i)?,
                (2, TType::I64) => r.increment = i.read_i64()?,
                (3, TType::I32) => r.expire_ts_seconds = i.read_i32()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(r)
    }

    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        begin_struct(o, "incr_request")?;
        write_struct_field(o, 1, &self.key)?;
        write_i64_field(o, 2, self.increment)?;
        write_i32_field(o, 3, self.expire_ts_seconds)?;
        finish_struct(o)
    }
}

/// `incr_response`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IncrResponse {
    pub error: i32,
    pub new_value: i64,
    pub app_id: i32,
    pub partition_index: i32,
    pub decree: i64,
    pub server: String,
}

impl Payload for IncrResponse {
    const WHAT: &'static str = "incr_response";
}

impl ThriftWire for IncrResponse {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        let mut r = IncrResponse::default();
        read_struct(i, |i, id, ty| {
            match (id, ty) {
                (1, TType::I32) => r.error = i.read_i32()?,
                (2, TType::I64) => r.new_value = i.read_i64()?,
                (3, TType::I32) => r.app_id = i.read_i32()?,
                (4, TType::I32) => r.partition_index = i.read_i32()?,
                (5, TType::I64) => r.decree = i.read_i64()?,
                (6, TType::String) => r.server = i.read_string()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(r)
    }

    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        begin_struct(o, "incr_response")?;
        write_i32_field(o, 1, self.error)?;
        write_i64_field(o, 2, self.new_value)?;
        write_i32_field(o, 3, self.app_id)?;
        write_i32_field(o, 4, self.partition_index)?;
        write_i64_field(o, 5, self.decree)?;
        write_string_field(o, 6, &self.server)?;
        finish_struct(o)
    }
}

/// `cas_check_type` (`idl/rrdb.thrift`): how check_and_set compares the checked value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CasCheckType(pub i32);

impl CasCheckType {
    pub const NO_CHECK: Self = Self(0);
    pub const VALUE_NOT_EXIST: Self = Self(1);
    pub const VALUE_NOT_EXIST_OR_EMPTY: Self = Self(2);
    pub const VALUE_EXIST: Self = Self(3);
    pub const VALUE_NOT_EMPTY: Self = Self(4);
    pub const VALUE_MATCH_ANYWHERE: Self = Self(5);
    pub const VALUE_MATCH_PREFIX: Self = Self(6);
    pub const VALUE_MATCH_POSTFIX: Self = Self(7);
    pub const VALUE_BYTES_LESS: Self = Self(8);
    pub const VALUE_BYTES_LESS_OR_EQUAL: Self = Self(9);
    pub const VALUE_BYTES_EQUAL: Self = Self(10);
    pub const VALUE_BYTES_GREATER_OR_EQUAL: Self = Self(11);
    pub const VALUE_BYTES_GREATER: Self = Self(12);
    pub const VALUE_INT_LESS: Self = Self(13);
    pub const VALUE_INT_LESS_OR_EQUAL: Self = Self(14);
    pub const VALUE_INT_EQUAL: Self = Self(15);
    pub const VALUE_INT_GREATER_OR_EQUAL: Self = Self(16);
    pub const VALUE_INT_GREATER: Self = Self(17);
}

/// `check_and_set_request`: check one sort key of a hash key, then set that or another one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckAndSetRequest {
    pub hash_key: Blob,
    pub check_sort_key: Blob,
    pub check_type: CasCheckType,
    pub check_operand: Blob,
    pub set_diff_sort_key: bool,
    pub set_sort_key: Blob,
    pub set_value: Blob,
    pub set_expire_ts_seconds: i32,
    pub return_check_value: bool,
}

impl Payload for CheckAndSetRequest {
    const WHAT: &'static str = "check_and_set_request";
}

impl ThriftWire for CheckAndSetRequest {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        let mut r = CheckAndSetRequest::default();
        read_struct(i, |i, id, ty| {
            match (id, ty) {
                (1, TType::Struct) => r.hash_key = Blob::read(i)?,
                (2, TType::Struct) => r.check_sort_key = Blob::read(i)?,
                (3, TType::I32) => r.check_type = CasCheckType(i.read_i32()?),
                (4, TType::Struct) => r.check_operand = Blob::read(i)?,
                (5, TType::Bool) => r.set_diff_sort_key = i.read_bool()?,
                (6, TType::Struct) => r.set_sort_key = Blob::read(i)?,
                (7, TType::Struct) => r.set_value = Blob::read(i)?,
                (8, TType::I32) => r.set_expire_ts_seconds = i.read_i32()?,
                (9, TType::Bool) => r.return_check_value = i.read_bool()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(r)
    }

    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        begin_struct(o, "check_and_set_request")?;
        write_struct_field(o, 1, &self.hash_key)?;
        write_struct_field(o, 2, &self.check_sort_key)?;
        write_i32_field(o, 3, self.check_type.0)?;
        write_struct_field(o, 4, &self.check_operand)?;
        write_bool_field(o, 5, self.set_diff_sort_key)?;
        write_struct_field(o, 6, &self.set_sort_key)?;
        write_struct_field(o, 7, &self.set_value)?;
        write_i32_field(o, 8, self.set_expire_ts_seconds)?;
        write_bool_field(o, 9, self.return_check_value)?;
        finish_struct(o)
    }
}

/// `check_and_set_response`. `error` 13 (kTryAgain) means the check failed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckAndSetResponse {
    pub error: i32,
    pub check_value_returned: bool,
    pub check_value_exist: bool,
    pub check_value: Blob,
    pub app_id: i32,
    pub partition_index: i32,
    pub decree: i64,
    pub server: String,
}

impl Payload for CheckAndSetResponse {
    const WHAT: &'static str = "check_and_set_response";
}

impl ThriftWire for CheckAndSetResponse {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        let mut r = CheckAndSetResponse::default();
        read_struct(i, |i, id, ty| {
            match (id, ty) {
                (1, TType::I32) => r.error = i.read_i32()?,
                (2, TType::Bool) => r.check_value_returned = i.read_bool()?,
                (3, TType::Bool) => r.check_value_exist = i.read_bool()?,
                (4, TType::Struct) => r.check_value = Blob::read(i)?,
                (5, TType::I32) => r.app_id = i.read_i32()?,
                (6, TType::I32) => r.partition_index = i.read_i32()?,
                (7, TType::I64) => r.decree = i.read_i64()?,
                (8, TType::String) => r.server = i.read_string()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(r)
    }

    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        begin_struct(o, "check_and_set_response")?;
        write_i32_field(o, 1, self.error)?;
        write_bool_field(o, 2, self.check_value_returned)?;
        write_bool_field(o, 3, self.check_value_exist)?;
        write_struct_field(o, 4, &self.check_value)?;
        write_i32_field(o, 5, self.app_id)?;
        write_i32_field(o, 6, self.partition_index)?;
        write_i64_field(o, 7, self.decree)?;
        write_string_field(o, 8, &self.server)?;
        finish_struct(o)
    }
}

// ---------------------------------------------------------------------------------------------
// Reads

/// `read_response`, the answer to GET. There is no field 5.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadResponse {
    /// 0, or 1 (kNotFound) for a missing or expired key.
    pub error: i32,
    /// Empty when not found; still written.
    pub value: Blob,
    pub app_id: i32,
    pub partition_index: i32,
    pub server: String,
}

impl Payload for ReadResponse {
    const WHAT: &'static str = "read_response";
}

impl ThriftWire for ReadResponse {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        let mut r = ReadResponse::default();
        read_struct(i, |i, id, ty| {
            match (id, ty) {
                (1, TType::I32) => r.error = i.read_i32()?,
                (2, TType::Struct) => r.value = Blob::read(i)?,
                (3, TType::I32) => r.app_id = i.read_i32()?,
                (4, TType::I32) => r.partition_index = i.read_i32()?,
                (6, TType::String) => r.server = i.read_string()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(r)
    }

    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        begin_struct(o, "read_response")?;
        write_i32_field(o, 1, self.error)?;
        write_struct_field(o, 2, &self.value)?;
        write_i32_field(o, 3, self.app_id)?;
        write_i32_field(o, 4, self.partition_index)?;
        write_string_field(o, 6, &self.server)?;
        finish_struct(o)
    }
}

/// `ttl_response`: the remaining seconds, -1 for no TTL (0 when not found).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TtlResponse {
    pub error: i32,
    pub ttl_seconds: i32,
    pub app_id: i32,
    pub partition_index: i32,
    pub server: String,
}

impl Payload for TtlResponse {
    const WHAT: &'static str = "ttl_response";
}

impl ThriftWire for TtlResponse {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        let mut r = TtlResponse::default();
        read_struct(i, |i, id, ty| {
            match (id, ty) {
                (1, TType::I32) => r.error = i.read_i32()?,
                (2, TType::I32) => r.ttl_seconds = i.read_i32()?,
                (3, TType::I32) => r.app_id = i.read_i32()?,
                (4, TType::I32) => r.partition_index = i.read_i32()?,
                (6, TType::String) => r.server = i.read_string()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(r)
    }

    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        begin_struct(o, "ttl_response")?;
        write_i32_field(o, 1, self.error)?;
        write_i32_field(o, 2, self.ttl_seconds)?;
        write_i32_field(o, 3, self.app_id)?;
        write_i32_field(o, 4, self.partition_index)?;
        write_string_field(o, 6, &self.server)?;
        finish_struct(o)
    }
}

/// `count_response`, the answer to SORTKEY_COUNT.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CountResponse {
    pub error: i32,
    pub count: i64,
    pub app_id: i32,
    pub partition_index: i32,
    pub server: String,
}

impl Payload for CountResponse {
    const WHAT: &'static str = "count_response";
}

impl ThriftWire for CountResponse {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        let mut r = CountResponse::default();
        read_struct(i, |i, id, ty| {
            match (id, ty) {
                (1, TType::I32) => r.error = i.read_i32()?,
                (2, TType::I64) => r.count = i.read_i64()?,
                (3, TType::I32) => r.app_id = i.read_i32()?,
                (4, TType::I32) => r.partition_index = i.read_i32()?,
                (6, TType::String) => r.server = i.read_string()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(r)
    }

    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        begin_struct(o, "count_response")?;
        write_i32_field(o, 1, self.error)?;
        write_i64_field(o, 2, self.count)?;
        write_i32_field(o, 3, self.app_id)?;
        write_i32_field(o, 4, self.partition_index)?;
        write_string_field(o, 6, &self.server)?;
        finish_struct(o)
    }
}

/// `filter_type` of multi_get's sort-key filter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FilterType(pub i32);

impl FilterType {
    pub const NO_FILTER: Self = Self(0);
    pub const MATCH_ANYWHERE: Self = Self(1);
    pub const MATCH_PREFIX: Self = Self(2);
    pub const MATCH_POSTFIX: Self = Self(3);
}

/// `multi_get_request`. With `sort_keys` non-empty it is a point read of those keys; otherwise a
/// range read of the hash key between `start_sortkey` and `stop_sortkey` (an empty stop means
/// the end of the hash key).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MultiGetRequest {
    pub hash_key: Blob,
    pub sort_keys: Vec<Blob>,
    /// ≤ 0: no limit.
    pub max_kv_count: i32,
    /// ≤ 0: no limit.
    pub max_kv_size: i32,
    pub no_value: bool,
    pub start_sortkey: Blob,
    pub stop_sortkey: Blob,
    pub start_inclusive: bool,
    pub stop_inclusive: bool,
    pub sort_key_filter_type: FilterType,
    pub sort_key_filter_pattern: Blob,
    pub reverse: bool,
}

impl Payload for MultiGetRequest {
    const WHAT: &'static str = "multi_get_request";
}

impl ThriftWire for MultiGetRequest {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        let mut r = MultiGetRequest::default();
        read_struct(i, |i, id, ty| {
            match (id, ty) {
                (1, TType::Struct) => r.hash_key = Blob::read(i)?,
                (2, TType::List) => r.sort_keys = get_blobs(i)?,
                (3, TType::I32) => r.max_kv_count = i.read_i32()?,
                (4, TType::I32) => r.max_kv_size = i.read_i32()?,
                (5, TType::Bool) => r.no_value = i.read_bool()?,
                (6, TType::Struct) => r.start_sortkey = Blob::read(i)?,
                (7, TType::Struct) => r.stop_sortkey = Blob::read(i)?,
                (8, TType::Bool) => r.start_inclusive = i.read_bool()?,
                (9, TType::Bool) => r.stop_inclusive = i.read_bool()?,
                (10, TType::I32) => r.sort_key_filter_type = FilterType(i.read_i32()?),
                (11, TType::Struct) => r.sort_key_filter_pattern = Blob::read(i)?,
                (12, TType::Bool) => r.reverse = i.read_bool()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(r)
    }

    /// All twelve fields, as the Go client writes them.
    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        begin_struct(o, "multi_get_request")?;
        write_struct_field(o, 1, &self.hash_key)?;
        write_structs_field(o, 2, &self.sort_keys)?;
        write_i32_field(o, 3, self.max_kv_count)?;
        write_i32_field(o, 4, self.max_kv_size)?;
        write_bool_field(o, 5, self.no_value)?;
        write_struct_field(o, 6, &self.start_sortkey)?;
        write_struct_field(o, 7, &self.stop_sortkey)?;
        write_bool_field(o, 8, self.start_inclusive)?;
        write_bool_field(o, 9, self.stop_inclusive)?;
        write_i32_field(o, 10, self.sort_key_filter_type.0)?;
        write_struct_field(o, 11, &self.sort_key_filter_pattern)?;
        write_bool_field(o, 12, self.reverse)?;
        finish_struct(o)
    }
}

/// `multi_get_response`. `error` 7 (kIncomplete) when a limit cut the answer short.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MultiGetResponse {
    pub error: i32,
    /// Sort keys and values, ascending unless the request asked for reverse.
    pub kvs: Vec<KeyValue>,
    pub app_id: i32,
    pub partition_index: i32,
    pub server: String,
}

impl Payload for MultiGetResponse {
    const WHAT: &'static str = "multi_get_response";
}

impl ThriftWire for MultiGetResponse {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        let mut r = MultiGetResponse::default();
        read_struct(i, |i, id, ty| {
            match (id, ty) {
                (1, TType::I32) => r.error = i.read_i32()?,
                (2, TType::List) => r.kvs = read_list(i, TType::Struct, KeyValue::read)?,
                (3, TType::I32) => r.app_id = i.read_i32()?,
                (4, TType::I32) => r.partition_index = i.read_i32()?,
                (6, TType::String) => r.server = i.read_string()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(r)
    }

    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        begin_struct(o, "multi_get_response")?;
        write_i32_field(o, 1, self.error)?;
        write_structs_field(o, 2, &self.kvs)?;
        write_i32_field(o, 3, self.app_id)?;
        write_i32_field(o, 4, self.partition_index)?;
        write_string_field(o, 6, &self.server)?;
        finish_struct(o)
    }
}

// ---------------------------------------------------------------------------------------------
// Duplication (§15.8, `duplication_internal.thrift`)

/// One shipped mutation. Every field is optional in the IDL; the source fills 1-4.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DuplicateEntry {
    /// The source mutation's timestamp, in microseconds.
    pub timestamp: Option<i64>,
    /// The write's rpc name, e.g. `RPC_RRDB_RRDB_PUT` (a `task_code`: a string tagged STRUCT).
    pub task_code: Option<String>,
    /// The write's args struct as the client sent it (`0c 00 01 <request> 00`).
    pub raw_message: Option<Blob>,
    /// The source cluster's id from `[duplication-group]`.
    pub cluster_id: Option<i8>,
    /// Never set by the sources of v2.5.0 and HEAD.
    pub verify_timetag: Option<bool>,
}

impl ThriftWire for DuplicateEntry {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        let mut r = DuplicateEntry::default();
        read_struct(i, |i, id, ty| {
            match (id, ty) {
                (1, TType::I64) => r.timestamp = Some(i.read_i64()?),
                (2, TType::Struct) => r.task_code = Some(i.read_string()?),
                (3, TType::Struct) => r.raw_message = Some(Blob::read(i)?),
                (4, TType::I08) => r.cluster_id = Some(i.read_i8()?),
                (5, TType::Bool) => r.verify_timetag = Some(i.read_bool()?),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(r)
    }

    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        begin_struct(o, "duplicate_entry")?;
        write_opt_i64_field(o, 1, self.timestamp)?;
        if let Some(v) = &self.task_code {
            // A string tagged STRUCT (§15.8).
            write_field(o, TType::Struct, 2, |o| o.write_string(v))?;
        }
        write_opt_struct_field(o, 3, self.raw_message.as_ref())?;
        write_opt_i8_field(o, 4, self.cluster_id)?;
        write_opt_bool_field(o, 5, self.verify_timetag)?;
        finish_struct(o)
    }
}

/// `duplicate_request`: the entries of one source partition, in decree order (v2.4+ batch form).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DuplicateRequest {
    pub entries: Vec<DuplicateEntry>,
}

impl Payload for DuplicateRequest {
    const WHAT: &'static str = "duplicate_request";
}

impl ThriftWire for DuplicateRequest {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        let mut r = DuplicateRequest::default();
        read_struct(i, |i, id, ty| {
            match (id, ty) {
                (1, TType::List) => r.entries = read_list(i, TType::Struct, DuplicateEntry::read)?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(r)
    }

    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        begin_struct(o, "duplicate_request")?;
        write_structs_field(o, 1, &self.entries)?;
        finish_struct(o)
    }
}

/// `duplicate_response`: a rocksdb code and a hint, both optional.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DuplicateResponse {
    pub error: Option<i32>,
    pub error_hint: Option<String>,
}

impl Payload for DuplicateResponse {
    const WHAT: &'static str = "duplicate_response";
}

impl ThriftWire for DuplicateResponse {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        let mut r = DuplicateResponse::default();
        read_struct(i, |i, id, ty| {
            match (id, ty) {
                (1, TType::I32) => r.error = Some(i.read_i32()?),
                (2, TType::String) => r.error_hint = Some(i.read_string()?),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(r)
    }

    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        begin_struct(o, "duplicate_response")?;
        write_opt_i32_field(o, 1, self.error)?;
        write_opt_string_field(o, 2, self.error_hint.as_deref())?;
        finish_struct(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_args_are_a_blob_in_field_one() {
        // §15.1: `0c 00 01 | 00 00 00 06 00 02 68 31 73 31 | 00`
        let key = Blob::from_slice(&[0, 2, b'h', b'1', b's', b'1']);
        let args = key.args_bytes();
        assert_eq!(
            &args[..],
            &[0x0c, 0, 1, 0, 0, 0, 6, 0, 2, b'h', b'1', b's', b'1', 0]
        );
        assert_eq!(Blob::from_args(&args).expect("decodes"), key);
    }

    #[test]
    fn node_multi_get_request_decodes_with_defaults() {
        // §15.2: what the Node.js client's encoder writes for hash key "h1".
        let hex = "0c000100000002683108000300000064080004000f42400200050000";
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        let (req, used) =
            wire::decode_with(&bytes, "multi_get_request", MultiGetRequest::read).expect("decodes");
        assert_eq!(used, bytes.len());
        assert_eq!(
            req,
            MultiGetRequest {
                hash_key: Blob::from_slice(b"h1"),
                max_kv_count: 100,
                max_kv_size: 1_000_000,
                ..Default::default()
            }
        );
    }

    #[test]
    fn duplicate_entry_task_code_is_a_string_tagged_struct() {
        let entry = DuplicateEntry {
            timestamp: Some(1),
            task_code: Some("RPC_RRDB_RRDB_PUT".into()),
            raw_message: Some(Blob::from_slice(&[0x0c, 0, 1, 0])),
            cluster_id: Some(2),
            verify_timetag: None,
        };
        let mut out = BytesMut::new();
        wire::encode(&entry, &mut out);
        assert_eq!(&out[11..14], &[0x0c, 0, 2]);
        assert_eq!(&out[14..18], &[0, 0, 0, 17]);
        assert_eq!(
            wire::decode::<DuplicateEntry>(&out, "entry").expect("decodes"),
            entry
        );
    }
}
