//! query_config payloads (docs/protocol.md §7): `query_cfg_request`, `query_cfg_response` and
//! `partition_configuration`, including the optional 2.6 `hp_*` fields.

use bytes::BytesMut;
use thrift::protocol::{TInputProtocol, TOutputProtocol, TType};

use super::CodecError;
use super::base::{ErrorCode, Gpid, HostPort, RpcAddress};
use super::wire::{
    self, ThriftWire, begin_struct, finish_struct, read_list, read_struct, write_bool_field,
    write_field, write_i32_field, write_i64_field, write_list, write_opt_struct_field,
    write_opt_structs_field, write_string_field, write_struct_field, write_structs_field,
};

/// `query_cfg_request`. `partition_indices` is `None` when the field is absent (the Node.js client
/// leaves it out) and `Some(vec![])` for "all partitions" as the other clients write it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryCfgRequest {
    pub app_name: String,
    pub partition_indices: Option<Vec<i32>>,
}

impl QueryCfgRequest {
    pub fn new(app_name: impl Into<String>) -> Self {
        QueryCfgRequest {
            app_name: app_name.into(),
            partition_indices: Some(Vec::new()),
        }
    }

    /// Decodes the args struct of a query_config request body.
    pub fn from_args(args: &[u8]) -> Result<Self, CodecError> {
        wire::decode_args(args, "query_cfg_request")
    }

    /// Encodes the args struct (the request in field 1, as the clients write it).
    pub fn to_args(&self, out: &mut BytesMut) {
        wire::encode_args(self, 1, out)
    }
}

impl ThriftWire for QueryCfgRequest {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        let mut req = QueryCfgRequest::default();
        read_struct(i, |i, id, ty| {
            match (id, ty) {
                (1, TType::String) => req.app_name = i.read_string()?,
                (2, TType::List) => {
                    req.partition_indices = Some(read_list(i, TType::I32, |i| i.read_i32())?)
                }
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(req)
    }

    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        begin_struct(o, "query_cfg_request")?;
        write_string_field(o, 1, &self.app_name)?;
        if let Some(indices) = &self.partition_indices {
            write_field(o, TType::List, 2, |o| {
                write_list(o, TType::I32, indices, |o, v| o.write_i32(*v))
            })?;
        }
        finish_struct(o)
    }
}

/// `partition_configuration`. Fields 1-8 are always written; the 2.6 `hp_*` fields 9-11 only
/// when present.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionConfiguration {
    pub pid: Gpid,
    pub ballot: i64,
    pub max_replica_count: i32,
    pub primary: RpcAddress,
    pub secondaries: Vec<RpcAddress>,
    pub last_drops: Vec<RpcAddress>,
    pub last_committed_decree: i64,
    pub partition_flags: i32,
    pub hp_primary: Option<HostPort>,
    pub hp_secondaries: Option<Vec<HostPort>>,
    pub hp_last_drops: Option<Vec<HostPort>>,
}

impl PartitionConfiguration {
    /// Whether any of the 2.6 `hp_*` fields is present.
    pub fn has_host_ports(&self) -> bool {
        self.hp_primary.is_some() || self.hp_secondaries.is_some() || self.hp_last_drops.is_some()
    }

    /// Drops the 2.6 `hp_*` fields, which pre-2.6 clients cannot parse (docs/protocol.md §7.4).
    pub fn strip_host_ports(&mut self) {
        self.hp_primary = None;
        self.hp_secondaries = None;
        self.hp_last_drops = None;
    }
}

impl ThriftWire for PartitionConfiguration {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        let mut pc = PartitionConfiguration::default();
        read_struct(i, |i, id, ty| {
            match (id, ty) {
                (1, TType::Struct) => pc.pid = Gpid::read(i)?,
                (2, TType::I64) => pc.ballot = i.read_i64()?,
                (3, TType::I32) => pc.max_replica_count = i.read_i32()?,
                (4, TType::Struct) => pc.primary = RpcAddress::read(i)?,
                (5, TType::List) => pc.secondaries = read_list(i, TType::Struct, RpcAddress::read)?,
                (6, TType::List) => pc.last_drops = read_list(i, TType::Struct, RpcAddress::read)?,
                (7, TType::I64) => pc.last_committed_decree = i.read_i64()?,
                (8, TType::I32) => pc.partition_flags = i.read_i32()?,
                (9, TType::Struct) => pc.hp_primary = Some(HostPort::read(i)?),
                (10, TType::List) => {
                    pc.hp_secondaries = Some(read_list(i, TType::Struct, HostPort::read)?)
                }
                (11, TType::List) => {
                    pc.hp_last_drops = Some(read_list(i, TType::Struct, HostPort::read)?)
                }
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(pc)
    }

    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        begin_struct(o, "partition_configuration")?;
        write_struct_field(o, 1, &self.pid)?;
        write_i64_field(o, 2, self.ballot)?;
        write_i32_field(o, 3, self.max_replica_count)?;
        write_struct_field(o, 4, &self.primary)?;
        write_structs_field(o, 5, &self.secondaries)?;
        write_structs_field(o, 6, &self.last_drops)?;
        write_i64_field(o, 7, self.last_committed_decree)?;
        write_i32_field(o, 8, self.partition_flags)?;
        write_opt_struct_field(o, 9, self.hp_primary.as_ref())?;
        write_opt_structs_field(o, 10, self.hp_secondaries.as_deref())?;
        write_opt_structs_field(o, 11, self.hp_last_drops.as_deref())?;
        finish_struct(o)
    }
}

/// `query_cfg_response`. The MetaServer always writes all five fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryCfgResponse {
    pub err: ErrorCode,
    pub app_id: i32,
    pub partition_count: i32,
    pub is_stateful: bool,
    pub partitions: Vec<PartitionConfiguration>,
}

impl QueryCfgResponse {
    /// A reply carrying only an error, with every other field at its default, as the MetaServer
    /// writes "table not found" (docs/protocol.md §7.2).
    pub fn error(err: ErrorCode) -> Self {
        QueryCfgResponse {
            err,
            ..Default::default()
        }
    }

    /// Decodes the result struct of a query_config reply body.
    pub fn from_result(body: &[u8]) -> Result<Self, CodecError> {
        wire::decode_result(body, "query_cfg_response")
    }

    /// Encodes the result struct (the response in field 0).
    pub fn to_result(&self, out: &mut BytesMut) {
        wire::encode_result(self, out)
    }

    /// Reads only `err` from a reply body, without decoding the partitions: the fast path of a
    /// proxy that passes replies through. Falls back to a full decode when `err` is not the first
    /// field.
    pub fn peek_err(body: &[u8]) -> Result<ErrorCode, CodecError> {
        let first = wire::decode_with(body, "query_cfg_response", |i| {
            i.read_struct_begin()?;
            let result = i.read_field_begin()?;
            if result.field_type != TType::Struct || result.id != Some(0) {
                return Err(wire::invalid("expected the result in field 0 as a struct"));
            }
            i.read_struct_begin()?;
            let f = i.read_field_begin()?;
            if f.id == Some(1) && f.field_type == TType::Struct {
                Ok(Some(ErrorCode::read(i)?))
            } else {
                Ok(None)
            }
        })?;
        match first.0 {
            Some(err) => Ok(err),
            None => Self::from_result(body).map(|r| r.err),
        }
    }

    /// Whether any partition carries 2.6 `hp_*` fields.
    pub fn has_host_ports(&self) -> bool {
        self.partitions
            .iter()
            .any(PartitionConfiguration::has_host_ports)
    }

    /// Drops the 2.6 `hp_*` fields of every partition.
    pub fn strip_host_ports(&mut self) {
        self.partitions
            .iter_mut()
            .for_each(PartitionConfiguration::strip_host_ports);
    }
}

impl ThriftWire for QueryCfgResponse {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        let mut resp = QueryCfgResponse::default();
        read_struct(i, |i, id, ty| {
            match (id, ty) {
                (1, TType::Struct) => resp.err = ErrorCode::read(i)?,
                (2, TType::I32) => resp.app_id = i.read_i32()?,
                (3, TType::I32) => resp.partition_count = i.read_i32()?,
                (4, TType::Bool) => resp.is_stateful = i.read_bool()?,
                (5, TType::List) => {
                    resp.partitions = read_list(i, TType::Struct, PartitionConfiguration::read)?
                }
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(resp)
    }

    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        begin_struct(o, "query_cfg_response")?;
        write_struct_field(o, 1, &self.err)?;
        write_i32_field(o, 2, self.app_id)?;
        write_i32_field(o, 3, self.partition_count)?;
        write_bool_field(o, 4, self.is_stateful)?;
        write_structs_field(o, 5, &self.partitions)?;
        finish_struct(o)
    }
}
