//! `RPC_CM_LIST_APPS` (docs/protocol.md §14.5) as a proxy merges it: the response is read with
//! each `app_info` kept as the bytes the MetaServer wrote (its name read out), so the merged list
//! carries every field of every table as its cluster sent it, whatever its version. And the
//! error-only response every admin RPC's answer can be, for what the proxy answers itself.
//!
//! ```text
//!  configuration_list_apps_request   1 status i32   2 app_name_pattern string?  3 match_type i32?
//!  configuration_list_apps_response  1 err error_code   2 infos list<app_info>  3 hint_message string?
//!  app_info                          1 status i32  2 app_type string  3 app_name string  4 app_id i32
//!                                    5 partition_count i32  6 envs map<string,string>  7 is_stateful bool
//!                                    8 max_replica_count i32  9 expire_second i64  10 create_second i64
//!                                    11 drop_second i64  12 duplicating bool?  13 init_partition_count i32
//!                                    14 is_bulk_loading bool?  15 atomic_idempotent bool?
//! ```

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use thrift::protocol::{TInputProtocol, TOutputProtocol, TType};

use super::CodecError;
use super::base::ErrorCode;
use super::wire::{
    self, begin_struct, finish_struct, read_struct, write_i32_field, write_i64_field,
    write_string_field,
};

/// `app_status`.
pub mod app_status {
    pub const INVALID: i32 = 0;
    pub const AVAILABLE: i32 = 1;
    pub const DROPPED: i32 = 6;
}

/// One `app_info` of a list_apps response, as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawAppInfo {
    /// `app_name`, or empty when the struct has none.
    pub name: String,
    /// The whole struct, its STOP included.
    pub raw: Bytes,
}

/// A `configuration_list_apps_response` with its tables kept as bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListAppsResponse {
    pub err: ErrorCode,
    pub infos: Vec<RawAppInfo>,
    pub hint_message: Option<String>,
}

/// Reads `app_name` out of an `app_info`, skipping the rest (none of its fields is a Pegasus base
/// type, so the skip is safe; a struct-tagged field is refused).
struct AppName(String);

impl wire::ThriftWire for AppName {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        let mut name = String::new();
        read_struct(i, |i, id, ty| {
            match (id, ty) {
                (3, TType::String) => name = i.read_string()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(AppName(name))
    }

    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        begin_struct(o, "app_info")?;
        write_string_field(o, 3, &self.0)?;
        finish_struct(o)
    }
}

/// A byte cursor over a thrift binary struct, for the fields read by hand.
struct Cursor<'a> {
    bytes: &'a Bytes,
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], CodecError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| CodecError::malformed("list_apps response", "truncated"))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }
    fn i16(&mut self) -> Result<i16, CodecError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Result<i32, CodecError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn string(&mut self) -> Result<String, CodecError> {
        let len = usize::try_from(self.i32()?)
            .map_err(|_| CodecError::malformed("list_apps response", "negative length"))?;
        String::from_utf8(self.take(len)?.to_vec())
            .map_err(|_| CodecError::malformed("list_apps response", "not UTF-8"))
    }
    /// Decodes a value at the cursor with `f`, moving past it; returns it and its bytes.
    fn value<T>(
        &mut self,
        what: &'static str,
        f: impl FnOnce(&mut dyn TInputProtocol) -> thrift::Result<T>,
    ) -> Result<(T, Bytes), CodecError> {
        let (v, used) = wire::decode_with(&self.bytes[self.at..], what, f)?;
        let raw = self.bytes.slice(self.at..self.at + used);
        self.at += used;
        Ok((v, raw))
    }
}

fn ttype(b: u8) -> Result<TType, CodecError> {
    Ok(match b {
        0 => TType::Stop,
        2 => TType::Bool,
        3 => TType::I08,
        4 => TType::Double,
        6 => TType::I16,
        8 => TType::I32,
        10 => TType::I64,
        11 => TType::String,
        12 => TType::Struct,
        13 => TType::Map,
        14 => TType::Set,
        15 => TType::List,
        other => {
            return Err(CodecError::malformed(
                "list_apps response",
                format!("field type {other}"),
            ));
        }
    })
}

impl ListAppsResponse {
    /// Decodes the result struct of a list_apps reply body.
    pub fn from_result(body: &Bytes) -> Result<Self, CodecError> {
        let bad = |detail: &str| CodecError::malformed("list_apps response", detail);
        let mut c = Cursor { bytes: body, at: 0 };
        if c.u8()? != 12 || c.i16()? != 0 {
            return Err(bad("the result is not a struct in field 0"));
        }
        let mut resp = ListAppsResponse::default();
        loop {
            let ty = c.u8()?;
            if ty == 0 {
                break;
            }
            let id = c.i16()?;
            match (id, ty) {
                (1, 12) => resp.err = ErrorCode::new(c.string()?),
                (2, 15) => {
                    if c.u8()? != 12 {
                        return Err(bad("infos is not a list of structs"));
                    }
                    let n = c.i32()?;
                    if n < 0 || n as usize > body.len() {
                        return Err(bad("bad list size"));
                    }
                    resp.infos.clear();
                    for _ in 0..n {
                        let (AppName(name), raw) =
                            c.value("app_info", <AppName as wire::ThriftWire>::read)?;
                        resp.infos.push(RawAppInfo { name, raw });
                    }
                }
                (3, 11) => resp.hint_message = Some(c.string()?),
                _ => {
                    let ty = ttype(ty)?;
                    c.value("list_apps response", |i| wire::skip_plain(i, ty))?;
                }
            }
        }
        if c.u8()? != 0 {
            return Err(bad("more than one field in the result"));
        }
        if c.at != body.len() {
            return Err(bad("bytes after the result"));
        }
        Ok(resp)
    }

    /// Encodes the result struct: the infos' bytes as they are.
    pub fn to_result(&self, out: &mut BytesMut) {
        out.put_slice(&[12, 0, 0]);
        out.put_slice(&[12, 0, 1]);
        put_string(out, self.err.as_str());
        out.put_slice(&[15, 0, 2, 12]);
        out.put_i32(self.infos.len() as i32);
        for info in &self.infos {
            out.put_slice(&info.raw);
        }
        if let Some(hint) = &self.hint_message {
            out.put_slice(&[11, 0, 3]);
            put_string(out, hint);
        }
        out.put_slice(&[0, 0]);
    }
}

fn put_string(out: &mut BytesMut, s: &str) {
    out.put_i32(s.len() as i32);
    out.put_slice(s.as_bytes());
}

/// An `app_info` to write (the simulator's tables), with the fields a C++ MetaServer always
/// writes (1-11 and 13).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppInfo {
    pub status: i32,
    pub app_type: String,
    pub app_name: String,
    pub app_id: i32,
    pub partition_count: i32,
    pub envs: BTreeMap<String, String>,
    pub is_stateful: bool,
    pub max_replica_count: i32,
    pub create_second: i64,
}

impl AppInfo {
    /// The struct's bytes, as a [`RawAppInfo`].
    pub fn to_raw(&self) -> RawAppInfo {
        let mut out = BytesMut::new();
        wire::encode_with(&mut out, |o| {
            begin_struct(o, "app_info")?;
            write_i32_field(o, 1, self.status)?;
            write_string_field(o, 2, &self.app_type)?;
            write_string_field(o, 3, &self.app_name)?;
            write_i32_field(o, 4, self.app_id)?;
            write_i32_field(o, 5, self.partition_count)?;
            o.write_field_begin(&wire::field(TType::Map, 6))?;
            wire::write_map(o, TType::String, TType::String, &self.envs, |o, k, v| {
                o.write_string(k)?;
                o.write_string(v)
            })?;
            o.write_field_end()?;
            o.write_field_begin(&wire::field(TType::Bool, 7))?;
            o.write_bool(self.is_stateful)?;
            o.write_field_end()?;
            write_i32_field(o, 8, self.max_replica_count)?;
            write_i64_field(o, 9, 0)?;
            write_i64_field(o, 10, self.create_second)?;
            write_i64_field(o, 11, 0)?;
            write_i32_field(o, 13, self.partition_count)?;
            finish_struct(o)
        });
        RawAppInfo {
            name: self.app_name.clone(),
            raw: out.freeze(),
        }
    }
}

/// The result body of any admin response with only its `err` (field 1, as in every admin
/// response struct): what the proxy answers when it does not ask a cluster (no route, denied,
/// cluster unreachable). Clients read absent fields as their defaults.
pub fn error_only_result(err: &ErrorCode, out: &mut BytesMut) {
    out.put_slice(&[12, 0, 0, 12, 0, 1]);
    put_string(out, err.as_str());
    out.put_slice(&[0, 0]);
}

/// The status filter of a `configuration_list_apps_request` (field 1; absent = every status).
pub fn list_apps_status(args: &[u8]) -> Result<i32, CodecError> {
    struct Status(i32);
    impl wire::ThriftWire for Status {
        fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
            let mut s = app_status::INVALID;
            read_struct(i, |i, id, ty| {
                match (id, ty) {
                    (1, TType::I32) => s = i.read_i32()?,
                    _ => return Ok(false),
                }
                Ok(true)
            })?;
            Ok(Status(s))
        }
        fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
            begin_struct(o, "configuration_list_apps_request")?;
            write_i32_field(o, 1, self.0)?;
            finish_struct(o)
        }
    }
    wire::decode_args::<Status>(args, "configuration_list_apps_request").map(|s| s.0)
}

/// The args of a list_apps request for `status`.
pub fn list_apps_args(status: i32, out: &mut BytesMut) {
    out.put_slice(&[12, 0, 1, 8, 0, 1]);
    out.put_i32(status);
    out.put_slice(&[0, 0]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_round_trips_with_its_infos_as_bytes() {
        let a = AppInfo {
            status: app_status::AVAILABLE,
            app_type: "pegasus".into(),
            app_name: "temp".into(),
            app_id: 2,
            partition_count: 8,
            envs: [("k".to_owned(), "v".to_owned())].into(),
            is_stateful: true,
            max_replica_count: 3,
            create_second: 1_700_000_000,
        };
        let resp = ListAppsResponse {
            err: ErrorCode::OK,
            infos: vec![
                a.to_raw(),
                AppInfo {
                    app_name: "b".into(),
                    ..a.clone()
                }
                .to_raw(),
            ],
            hint_message: Some("h".into()),
        };
        let mut out = BytesMut::new();
        resp.to_result(&mut out);
        let out = out.freeze();
        let back = ListAppsResponse::from_result(&out).expect("decodes");
        assert_eq!(back, resp);
        assert_eq!(back.infos[1].name, "b");
        for cut in 0..out.len() {
            assert!(
                ListAppsResponse::from_result(&out.slice(..cut)).is_err(),
                "{cut}"
            );
        }
    }

    #[test]
    fn the_error_only_result_is_an_admin_response_with_its_err() {
        let mut out = BytesMut::new();
        error_only_result(&ErrorCode::new("ERR_ACL_DENY"), &mut out);
        let resp = ListAppsResponse::from_result(&out.freeze()).expect("decodes");
        assert_eq!(resp.err.as_str(), "ERR_ACL_DENY");
        assert!(resp.infos.is_empty());
        let mut args = BytesMut::new();
        list_apps_args(app_status::AVAILABLE, &mut args);
        assert_eq!(list_apps_status(&args), Ok(app_status::AVAILABLE));
    }
}
