//! The MetaServer admin payloads that a failover or a switchover needs (docs/protocol.md §14):
//! `RPC_CM_UPDATE_APP_ENV` sets, deletes or clears a table's app envs (the fence is
//! `replica.deny_client_request`), and `RPC_CM_QUERY_DUPLICATION` lists a table's duplications
//! with, from 2.6 on, how far the follower has confirmed each partition.
//!
//! ```text
//!  configuration_update_app_env_request   1 app_name string    2 op i32 (app_env_operation)
//!                                         3 keys list<string>? 4 values list<string>?
//!                                         5 clear_prefix string?
//!  configuration_update_app_env_response  1 err error_code     2 hint_message string
//!  duplication_query_request              1 app_name string
//!  duplication_query_response             1 err error_code     3 appid i32
//!                                         4 entry_list list<duplication_entry>      (no field 2)
//!  duplication_entry                      1 dupid i32   2 status i32   3 remote string
//!                                         4 create_ts i64 (ms)  5 progress map<i32,i64>?
//!                                         7 fail_mode i32?  8 remote_app_name string?
//!                                         9 remote_replica_count i32?  10 mode i32?
//!                                         11 partition_states map<i32,duplication_partition_state>?
//!  duplication_partition_state            1 confirmed_decree i64  2 last_committed_decree i64
//!  duplication_add_request                1 app_name string    2 remote_cluster_name string
//!                                         3 is_duplicating_checkpoint bool?
//!                                         4 remote_app_name string?  5 remote_replica_count i32?
//!  duplication_add_response               1 err error_code     2 appid i32   3 dupid i32
//!                                         4 hint string?  5 remote_app_name string?
//!                                         6 remote_replica_count i32?
//! ```
//! `?` marks an optional field: `None` here, absent on the wire, written only when set, as the
//! C++ server does. Enum fields are kept as numbers (newtypes with named constants), so a value
//! a newer server sends survives a round trip.

use std::collections::BTreeMap;

use bytes::BytesMut;
use thrift::protocol::{TInputProtocol, TOutputProtocol, TType};

use super::CodecError;
use super::base::ErrorCode;
use super::wire::{
    self, ThriftWire, begin_struct, finish_struct, read_list, read_map, read_struct, write_field,
    write_i32_field, write_i64_field, write_map, write_opt_bool_field, write_opt_i32_field,
    write_opt_string_field, write_opt_strings_field, write_string_field, write_struct_field,
    write_structs_field,
};

/// `app_env_operation`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AppEnvOperation(pub i32);

impl AppEnvOperation {
    pub const INVALID: Self = Self(0);
    pub const SET: Self = Self(1);
    pub const DEL: Self = Self(2);
    pub const CLEAR: Self = Self(3);
}

/// `configuration_update_app_env_request`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpdateAppEnvRequest {
    pub app_name: String,
    pub op: AppEnvOperation,
    /// SET and DEL.
    pub keys: Option<Vec<String>>,
    /// SET, one per key.
    pub values: Option<Vec<String>>,
    /// CLEAR: `""` clears every env, `p` those whose key starts with `p.`.
    pub clear_prefix: Option<String>,
}

impl UpdateAppEnvRequest {
    /// Sets `key = value` for each pair (the MetaServer checks every pair before applying any).
    pub fn set<K: Into<String>, V: Into<String>>(
        app_name: impl Into<String>,
        envs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let (keys, values) = envs.into_iter().map(|(k, v)| (k.into(), v.into())).unzip();
        UpdateAppEnvRequest {
            app_name: app_name.into(),
            op: AppEnvOperation::SET,
            keys: Some(keys),
            values: Some(values),
            clear_prefix: None,
        }
    }

    /// Deletes the given keys.
    pub fn del(
        app_name: impl Into<String>,
        keys: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        UpdateAppEnvRequest {
            app_name: app_name.into(),
            op: AppEnvOperation::DEL,
            keys: Some(keys.into_iter().map(Into::into).collect()),
            values: None,
            clear_prefix: None,
        }
    }

    /// Deletes the keys under `prefix` (`""`: every key).
    pub fn clear(app_name: impl Into<String>, prefix: impl Into<String>) -> Self {
        UpdateAppEnvRequest {
            app_name: app_name.into(),
            op: AppEnvOperation::CLEAR,
            keys: None,
            values: None,
            clear_prefix: Some(prefix.into()),
        }
    }

    /// Decodes the args struct of an update_app_env request body.
    pub fn from_args(args: &[u8]) -> Result<Self, CodecError> {
        wire::decode_args(args, "configuration_update_app_env_request")
    }

    /// Encodes the args struct (the request in field 1).
    pub fn to_args(&self, out: &mut BytesMut) {
        wire::encode_args(self, 1, out)
    }
}

impl ThriftWire for UpdateAppEnvRequest {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        let mut req = UpdateAppEnvRequest::default();
        read_struct(i, |i, id, ty| {
            match (id, ty) {
                (1, TType::String) => req.app_name = i.read_string()?,
                (2, TType::I32) => req.op = AppEnvOperation(i.read_i32()?),
                (3, TType::List) => req.keys = Some(read_strings(i)?),
                (4, TType::List) => req.values = Some(read_strings(i)?),
                (5, TType::String) => req.clear_prefix = Some(i.read_string()?),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(req)
    }

    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        begin_struct(o, "configuration_update_app_env_request")?;
        write_string_field(o, 1, &self.app_name)?;
        write_i32_field(o, 2, self.op.0)?;
        write_opt_strings_field(o, 3, self.keys.as_deref())?;
        write_opt_strings_field(o, 4, self.values.as_deref())?;
        write_opt_string_field(o, 5, self.clear_prefix.as_deref())?;
        finish_struct(o)
    }
}

/// `configuration_update_app_env_response`. `err` is `ERR_OK` once the change is persisted on
/// the MetaServer, not once replicas apply it (docs/protocol.md §14.1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpdateAppEnvResponse {
    pub err: ErrorCode,
    /// Always written; `""` when there is nothing to say.
    pub hint_message: String,
}

impl UpdateAppEnvResponse {
    /// Decodes the result struct of an update_app_env reply body.
    pub fn from_result(body: &[u8]) -> Result<Self, CodecError> {
        wire::decode_result(body, "configuration_update_app_env_response")
    }

    /// Encodes the result struct (the response in field 0).
    pub fn to_result(&self, out: &mut BytesMut) {
        wire::encode_result(self, out)
    }
}

impl ThriftWire for UpdateAppEnvResponse {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        let mut resp = UpdateAppEnvResponse::default();
        read_struct(i, |i, id, ty| {
            match (id, ty) {
                (1, TType::Struct) => resp.err = ErrorCode::read(i)?,
                (2, TType::String) => resp.hint_message = i.read_string()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(resp)
    }

    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        begin_struct(o, "configuration_update_app_env_response")?;
        write_struct_field(o, 1, &self.err)?;
        write_string_field(o, 2, &self.hint_message)?;
        finish_struct(o)
    }
}

/// `duplication_status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DuplicationStatus(pub i32);

impl DuplicationStatus {
    pub const INIT: Self = Self(0);
    /// The checkpoint is prepared.
    pub const PREPARE: Self = Self(1);
    /// The follower copies the checkpoint.
    pub const APP: Self = Self(2);
    /// The log is shipped: the steady state.
    pub const LOG: Self = Self(3);
    pub const PAUSE: Self = Self(4);
    pub const REMOVED: Self = Self(5);
}

/// `duplication_fail_mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DuplicationFailMode(pub i32);

impl DuplicationFailMode {
    pub const SLOW: Self = Self(0);
    pub const SKIP: Self = Self(1);
    pub const FAST: Self = Self(2);
}

/// `duplication_mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DuplicationMode(pub i32);

impl DuplicationMode {
    pub const FULL: Self = Self(0);
    pub const INCREMENTAL: Self = Self(1);
}

/// `duplication_partition_state` (2.6): decrees of the source partition's log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DuplicationPartitionState {
    /// The highest decree the follower acknowledged (-1 right after the duplication was added).
    pub confirmed_decree: i64,
    /// The primary's commit point when it last confirmed (-1 until its first confirm).
    pub last_committed_decree: i64,
}

impl ThriftWire for DuplicationPartitionState {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        let mut state = DuplicationPartitionState::default();
        read_struct(i, |i, id, ty| {
            match (id, ty) {
                (1, TType::I64) => state.confirmed_decree = i.read_i64()?,
                (2, TType::I64) => state.last_committed_decree = i.read_i64()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(state)
    }

    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        begin_struct(o, "duplication_partition_state")?;
        write_i64_field(o, 1, self.confirmed_decree)?;
        write_i64_field(o, 2, self.last_committed_decree)?;
        finish_struct(o)
    }
}

/// `duplication_entry`: one duplication of a table. Fields 1-4 are always written; the others
/// only when set. Field 6 (`not_confirmed`, removed in 2020) is skipped when an old server sends
/// it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DuplicationEntry {
    /// Unix seconds when the duplication was added.
    pub dupid: i32,
    pub status: DuplicationStatus,
    /// The follower cluster's name.
    pub remote: String,
    /// Milliseconds since the epoch.
    pub create_ts: i64,
    /// Partition -> confirmed decree. Only the internal sync RPC fills it; no query reply does.
    pub progress: Option<BTreeMap<i32, i64>>,
    pub fail_mode: Option<DuplicationFailMode>,
    /// 2.6.
    pub remote_app_name: Option<String>,
    /// 2.6.
    pub remote_replica_count: Option<i32>,
    pub mode: Option<DuplicationMode>,
    /// 2.6: partition -> how far the follower has confirmed. Absent from older servers, which
    /// expose no progress through the MetaServer at all.
    pub partition_states: Option<BTreeMap<i32, DuplicationPartitionState>>,
}

impl ThriftWire for DuplicationEntry {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        let mut e = DuplicationEntry::default();
        read_struct(i, |i, id, ty| {
            match (id, ty) {
                (1, TType::I32) => e.dupid = i.read_i32()?,
                (2, TType::I32) => e.status = DuplicationStatus(i.read_i32()?),
                (3, TType::String) => e.remote = i.read_string()?,
                (4, TType::I64) => e.create_ts = i.read_i64()?,
                (5, TType::Map) => {
                    e.progress = Some(read_map(i, TType::I32, TType::I64, |i| {
                        Ok((i.read_i32()?, i.read_i64()?))
                    })?)
                }
                (7, TType::I32) => e.fail_mode = Some(DuplicationFailMode(i.read_i32()?)),
                (8, TType::String) => e.remote_app_name = Some(i.read_string()?),
                (9, TType::I32) => e.remote_replica_count = Some(i.read_i32()?),
                (10, TType::I32) => e.mode = Some(DuplicationMode(i.read_i32()?)),
                (11, TType::Map) => {
                    e.partition_states = Some(read_map(i, TType::I32, TType::Struct, |i| {
                        Ok((i.read_i32()?, DuplicationPartitionState::read(i)?))
                    })?)
                }
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(e)
    }

    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        begin_struct(o, "duplication_entry")?;
        write_i32_field(o, 1, self.dupid)?;
        write_i32_field(o, 2, self.status.0)?;
        write_string_field(o, 3, &self.remote)?;
        write_i64_field(o, 4, self.create_ts)?;
        if let Some(progress) = &self.progress {
            write_field(o, TType::Map, 5, |o| {
                write_map(o, TType::I32, TType::I64, progress, |o, k, v| {
                    o.write_i32(*k)?;
                    o.write_i64(*v)
                })
            })?;
        }
        write_opt_i32_field(o, 7, self.fail_mode.map(|m| m.0))?;
        write_opt_string_field(o, 8, self.remote_app_name.as_deref())?;
        write_opt_i32_field(o, 9, self.remote_replica_count)?;
        write_opt_i32_field(o, 10, self.mode.map(|m| m.0))?;
        if let Some(states) = &self.partition_states {
            write_field(o, TType::Map, 11, |o| {
                write_map(o, TType::I32, TType::Struct, states, |o, k, v| {
                    o.write_i32(*k)?;
                    v.write(o)
                })
            })?;
        }
        finish_struct(o)
    }
}

/// `duplication_query_request`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryDuplicationRequest {
    pub app_name: String,
}

impl QueryDuplicationRequest {
    pub fn new(app_name: impl Into<String>) -> Self {
        QueryDuplicationRequest {
            app_name: app_name.into(),
        }
    }

    /// Decodes the args struct of a query_duplication request body.
    pub fn from_args(args: &[u8]) -> Result<Self, CodecError> {
        wire::decode_args(args, "duplication_query_request")
    }

    /// Encodes the args struct (the request in field 1).
    pub fn to_args(&self, out: &mut BytesMut) {
        wire::encode_args(self, 1, out)
    }
}

impl ThriftWire for QueryDuplicationRequest {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        let mut req = QueryDuplicationRequest::default();
        read_struct(i, |i, id, ty| {
            match (id, ty) {
                (1, TType::String) => req.app_name = i.read_string()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(req)
    }

    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        begin_struct(o, "duplication_query_request")?;
        write_string_field(o, 1, &self.app_name)?;
        finish_struct(o)
    }
}

/// `duplication_query_response`. A missing (or not available) table is `ERR_APP_NOT_EXIST`,
/// appid 0 and no entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryDuplicationResponse {
    pub err: ErrorCode,
    pub appid: i32,
    pub entry_list: Vec<DuplicationEntry>,
}

impl QueryDuplicationResponse {
    /// Decodes the result struct of a query_duplication reply body.
    pub fn from_result(body: &[u8]) -> Result<Self, CodecError> {
        wire::decode_result(body, "duplication_query_response")
    }

    /// Encodes the result struct (the response in field 0).
    pub fn to_result(&self, out: &mut BytesMut) {
        wire::encode_result(self, out)
    }
}

impl ThriftWire for QueryDuplicationResponse {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        let mut resp = QueryDuplicationResponse::default();
        read_struct(i, |i, id, ty| {
            match (id, ty) {
                (1, TType::Struct) => resp.err = ErrorCode::read(i)?,
                (3, TType::I32) => resp.appid = i.read_i32()?,
                (4, TType::List) => {
                    resp.entry_list = read_list(i, TType::Struct, DuplicationEntry::read)?
                }
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(resp)
    }

    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        begin_struct(o, "duplication_query_response")?;
        write_struct_field(o, 1, &self.err)?;
        write_i32_field(o, 3, self.appid)?;
        write_structs_field(o, 4, &self.entry_list)?;
        finish_struct(o)
    }
}

/// `duplication_add_request` (§14.3). Fields 4 and 5 exist from 2.6 on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddDuplicationRequest {
    pub app_name: String,
    /// The follower cluster's name, as the source's `[pegasus.clusters]` knows it.
    pub remote_cluster_name: String,
    /// Copy the checkpoint first (the server's default, true) or ship only the log from now on.
    pub is_duplicating_checkpoint: Option<bool>,
    /// The table's name on the follower (default: the same name).
    pub remote_app_name: Option<String>,
    /// The follower table's replica count (0 or absent: the source's).
    pub remote_replica_count: Option<i32>,
}

impl AddDuplicationRequest {
    pub fn new(app_name: impl Into<String>, remote_cluster_name: impl Into<String>) -> Self {
        AddDuplicationRequest {
            app_name: app_name.into(),
            remote_cluster_name: remote_cluster_name.into(),
            ..Default::default()
        }
    }

    /// Decodes the args struct of an add_duplication request body.
    pub fn from_args(args: &[u8]) -> Result<Self, CodecError> {
        wire::decode_args(args, "duplication_add_request")
    }

    /// Encodes the args struct (the request in field 1).
    pub fn to_args(&self, out: &mut BytesMut) {
        wire::encode_args(self, 1, out)
    }
}

impl ThriftWire for AddDuplicationRequest {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        let mut req = AddDuplicationRequest::default();
        read_struct(i, |i, id, ty| {
            match (id, ty) {
                (1, TType::String) => req.app_name = i.read_string()?,
                (2, TType::String) => req.remote_cluster_name = i.read_string()?,
                (3, TType::Bool) => req.is_duplicating_checkpoint = Some(i.read_bool()?),
                (4, TType::String) => req.remote_app_name = Some(i.read_string()?),
                (5, TType::I32) => req.remote_replica_count = Some(i.read_i32()?),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(req)
    }

    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        begin_struct(o, "duplication_add_request")?;
        write_string_field(o, 1, &self.app_name)?;
        write_string_field(o, 2, &self.remote_cluster_name)?;
        write_opt_bool_field(o, 3, self.is_duplicating_checkpoint)?;
        write_opt_string_field(o, 4, self.remote_app_name.as_deref())?;
        write_opt_i32_field(o, 5, self.remote_replica_count)?;
        finish_struct(o)
    }
}

/// `duplication_add_response` (§14.3). The MetaServer replies after its ZooKeeper write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddDuplicationResponse {
    pub err: ErrorCode,
    pub appid: i32,
    pub dupid: i32,
    /// Why the request was refused.
    pub hint: Option<String>,
    /// 2.6.
    pub remote_app_name: Option<String>,
    /// 2.6.
    pub remote_replica_count: Option<i32>,
}

impl AddDuplicationResponse {
    /// Decodes the result struct of an add_duplication reply body.
    pub fn from_result(body: &[u8]) -> Result<Self, CodecError> {
        wire::decode_result(body, "duplication_add_response")
    }

    /// Encodes the result struct (the response in field 0).
    pub fn to_result(&self, out: &mut BytesMut) {
        wire::encode_result(self, out)
    }
}

impl ThriftWire for AddDuplicationResponse {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        let mut resp = AddDuplicationResponse::default();
        read_struct(i, |i, id, ty| {
            match (id, ty) {
                (1, TType::Struct) => resp.err = ErrorCode::read(i)?,
                (2, TType::I32) => resp.appid = i.read_i32()?,
                (3, TType::I32) => resp.dupid = i.read_i32()?,
                (4, TType::String) => resp.hint = Some(i.read_string()?),
                (5, TType::String) => resp.remote_app_name = Some(i.read_string()?),
                (6, TType::I32) => resp.remote_replica_count = Some(i.read_i32()?),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(resp)
    }

    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        begin_struct(o, "duplication_add_response")?;
        write_struct_field(o, 1, &self.err)?;
        write_i32_field(o, 2, self.appid)?;
        write_i32_field(o, 3, self.dupid)?;
        write_opt_string_field(o, 4, self.hint.as_deref())?;
        write_opt_string_field(o, 5, self.remote_app_name.as_deref())?;
        write_opt_i32_field(o, 6, self.remote_replica_count)?;
        finish_struct(o)
    }
}

fn read_strings(i: &mut dyn TInputProtocol) -> thrift::Result<Vec<String>> {
    read_list(i, TType::String, |i| i.read_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_fill_the_fields_of_their_op() {
        let set = UpdateAppEnvRequest::set("temp", [("a", "1"), ("b", "2")]);
        assert_eq!(set.op, AppEnvOperation::SET);
        assert_eq!(
            set.keys.as_deref(),
            Some(&["a".to_owned(), "b".to_owned()][..])
        );
        assert_eq!(
            set.values.as_deref(),
            Some(&["1".to_owned(), "2".to_owned()][..])
        );
        assert_eq!(set.clear_prefix, None);
        let del = UpdateAppEnvRequest::del("temp", ["a"]);
        assert_eq!((del.op, del.values), (AppEnvOperation::DEL, None));
        let clear = UpdateAppEnvRequest::clear("temp", "");
        assert_eq!(
            (clear.op, clear.keys, clear.clear_prefix.as_deref()),
            (AppEnvOperation::CLEAR, None, Some(""))
        );
    }

    #[test]
    fn add_duplication_layout() {
        let req = AddDuplicationRequest {
            is_duplicating_checkpoint: Some(false),
            ..AddDuplicationRequest::new("t", "b")
        };
        let mut out = BytesMut::new();
        req.to_args(&mut out);
        // args { 1: { 1: "t", 2: "b", 3: false } }
        assert_eq!(
            &out[..],
            &[
                0x0c, 0, 1, 0x0b, 0, 1, 0, 0, 0, 1, b't', 0x0b, 0, 2, 0, 0, 0, 1, b'b', 0x02, 0, 3,
                0, 0, 0
            ]
        );
        assert_eq!(
            AddDuplicationRequest::from_args(&out).expect("decodes"),
            req
        );

        let resp = AddDuplicationResponse {
            err: ErrorCode::OK,
            appid: 2,
            dupid: 1_700_000_000,
            ..Default::default()
        };
        let mut out = BytesMut::new();
        resp.to_result(&mut out);
        // result { 0: { 1: "ERR_OK", 2: 2, 3: dupid } }: no optional field.
        assert_eq!(out.len(), 3 + 3 + 4 + 6 + 7 + 7 + 1 + 1);
        assert_eq!(
            AddDuplicationResponse::from_result(&out).expect("decodes"),
            resp
        );
    }

    #[test]
    fn a_map_with_the_wrong_element_types_is_refused() {
        // entry { 11: map<i32, i64> {0: 1} }: partition_states must hold structs.
        let entry = DuplicationEntry {
            progress: Some(BTreeMap::from([(0, 1)])),
            ..Default::default()
        };
        let mut out = BytesMut::new();
        wire::encode(&entry, &mut out);
        let at = out
            .windows(3)
            .position(|w| w == [0x0d, 0x00, 0x05])
            .expect("field 5");
        out[at + 2] = 11;
        let err = wire::decode::<DuplicationEntry>(&out, "duplication_entry").expect_err("refused");
        assert!(err.to_string().contains("expected I32 -> Struct"), "{err}");
    }
}
