//! The table lifecycle a MetaServer runs on request: `RPC_CM_CREATE_APP`, `RPC_CM_DROP_APP`,
//! `RPC_CM_RECALL_APP` (`P:idl/meta_admin.thrift`), on the leader only, changing the cluster
//! view so that later query_config and list_apps see the change.
//!
//! | request | answer (`err`, then the response's other fields) |
//! |---|---|
//! | create_app, table exists | `ERR_APP_EXIST` (`ERR_OK` with `success_if_exist`), its appid |
//! | create_app, partition count not positive | `ERR_INVALID_PARAMETERS`, appid 0 |
//! | create_app | `ERR_OK`, a new appid (one above every appid in use or dropped); the table is served on every replica node, or reported on `127.0.0.1:34801..34803` when the cluster serves none; envs from the options |
//! | drop_app, no such table | `ERR_APP_NOT_EXIST` (`ERR_OK` with `success_if_not_exist`) |
//! | drop_app | `ERR_OK`; the table leaves the view (query_config: `ERR_OBJECT_NOT_FOUND`) and list_apps shows it `AS_DROPPED`; its data is kept for a recall |
//! | recall_app, no dropped table of that appid | `ERR_APP_NOT_EXIST`, a default app_info |
//! | recall_app, the name (`new_app_name`, or the old one when empty) is in use | `ERR_INVALID_PARAMETERS`, a default app_info |
//! | recall_app | `ERR_OK`, the table's app_info; it is back, with its data, under that name |
//!
//! Not modelled: `reserve_seconds` (a dropped table stays recallable until the simulator stops),
//! replica_count, app_type and is_stateful of the options (the simulator's tables are all
//! stateful `pegasus` tables).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use pegasus_rpc::codec::list_apps::{AppInfo, app_status};
use pegasus_rpc::codec::wire::{self, read_struct};
use pegasus_rpc::codec::{CodecError, ErrorCode};
use thrift::protocol::{TInputProtocol, TType};
use tracing::info;

use super::config::TableSpec;
use super::meta_rpc::Gate;
use super::state::Shared;
use super::table::Table;

pub(crate) const CREATE_APP: &str = "RPC_CM_CREATE_APP";
pub(crate) const DROP_APP: &str = "RPC_CM_DROP_APP";
pub(crate) const RECALL_APP: &str = "RPC_CM_RECALL_APP";

/// A `configuration_create_app_request`, the fields the simulator uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CreateApp {
    pub app_name: String,
    pub partition_count: i32,
    pub success_if_exist: bool,
    pub envs: BTreeMap<String, String>,
}

/// Reads the request struct inside the args (field 1 of the args), every field of it offered to
/// `field`; unknown ones are skipped.
fn read_request<T: Default>(
    args: &[u8],
    what: &'static str,
    mut field: impl FnMut(&mut T, &mut dyn TInputProtocol, i16, TType) -> thrift::Result<bool>,
) -> Result<T, CodecError> {
    wire::decode_with(args, what, |i| {
        let mut req = T::default();
        i.read_struct_begin()?;
        i.read_field_begin()?;
        read_struct(i, |i, id, ty| field(&mut req, i, id, ty))?;
        i.read_field_end()?;
        Ok(req)
    })
    .map(|(req, _)| req)
}

impl CreateApp {
    pub fn from_args(args: &[u8]) -> Result<Self, CodecError> {
        read_request(
            args,
            "configuration_create_app_request",
            |req: &mut CreateApp, i, id, ty| {
                match (id, ty) {
                    (1, TType::String) => req.app_name = i.read_string()?,
                    (2, TType::Struct) => read_struct(i, |i, id, ty| {
                        match (id, ty) {
                            (1, TType::I32) => req.partition_count = i.read_i32()?,
                            (3, TType::Bool) => req.success_if_exist = i.read_bool()?,
                            (6, TType::Map) => {
                                let m = i.read_map_begin()?;
                                for _ in 0..m.size {
                                    let k = i.read_string()?;
                                    let v = i.read_string()?;
                                    req.envs.insert(k, v);
                                }
                                i.read_map_end()?;
                            }
                            _ => return Ok(false),
                        }
                        Ok(true)
                    })?,
                    _ => return Ok(false),
                }
                Ok(true)
            },
        )
    }
}

/// A `configuration_drop_app_request`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct DropApp {
    pub app_name: String,
    pub success_if_not_exist: bool,
}

impl DropApp {
    pub fn from_args(args: &[u8]) -> Result<Self, CodecError> {
        read_request(
            args,
            "configuration_drop_app_request",
            |req: &mut DropApp, i, id, ty| {
                match (id, ty) {
                    (1, TType::String) => req.app_name = i.read_string()?,
                    (2, TType::Struct) => read_struct(i, |i, id, ty| {
                        if (id, ty) == (1, TType::Bool) {
                            req.success_if_not_exist = i.read_bool()?;
                            return Ok(true);
                        }
                        Ok(false)
                    })?,
                    _ => return Ok(false),
                }
                Ok(true)
            },
        )
    }
}

/// A `configuration_recall_app_request`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RecallApp {
    pub app_id: i32,
    pub new_app_name: String,
}

impl RecallApp {
    pub fn from_args(args: &[u8]) -> Result<Self, CodecError> {
        read_request(
            args,
            "configuration_recall_app_request",
            |req: &mut RecallApp, i, id, ty| {
                match (id, ty) {
                    (1, TType::I32) => req.app_id = i.read_i32()?,
                    (2, TType::String) => req.new_app_name = i.read_string()?,
                    _ => return Ok(false),
                }
                Ok(true)
            },
        )
    }
}

/// The app_info list_apps and recall_app give for a table.
pub(crate) fn app_info(table: &Table, status: i32) -> AppInfo {
    AppInfo {
        status,
        app_type: "pegasus".into(),
        app_name: table.spec.name.clone(),
        app_id: table.spec.app_id,
        partition_count: table.spec.partition_count,
        envs: table.spec.envs.clone(),
        is_stateful: true,
        max_replica_count: table.replicas.len().min(3) as i32,
        create_second: 0,
    }
}

/// `{0: {1: err, then the other fields}}`: a result struct whose response starts with `err`.
fn result_with_err(err: &ErrorCode, rest: impl FnOnce(&mut BytesMut)) -> Bytes {
    let mut out = BytesMut::new();
    out.put_slice(&[12, 0, 0, 12, 0, 1]);
    out.put_i32(err.as_str().len() as i32);
    out.put_slice(err.as_str().as_bytes());
    rest(&mut out);
    out.put_slice(&[0, 0]);
    out.freeze()
}

/// The result body of a `configuration_create_app_response {1: err, 2: appid}`.
pub(crate) fn create_app_result(err: &ErrorCode, appid: i32) -> Bytes {
    result_with_err(err, |out| {
        out.put_slice(&[8, 0, 2]);
        out.put_i32(appid);
    })
}

/// The result body of a `configuration_drop_app_response {1: err}`.
pub(crate) fn drop_app_result(err: &ErrorCode) -> Bytes {
    result_with_err(err, |_| {})
}

/// The result body of a `configuration_recall_app_response {1: err, 2: info}`.
pub(crate) fn recall_app_result(err: &ErrorCode, info: &AppInfo) -> Bytes {
    result_with_err(err, |out| {
        out.put_slice(&[12, 0, 2]);
        out.put_slice(&info.to_raw().raw);
    })
}

/// The replicas of a created table: every served node, or three reported addresses.
fn created_replicas(shared: &Shared) -> Vec<SocketAddrV4> {
    if shared.nodes.is_empty() {
        (34801..=34803)
            .map(|p| SocketAddrV4::new(Ipv4Addr::LOCALHOST, p))
            .collect()
    } else {
        Vec::new()
    }
}

/// Creates a table; its `err` and appid.
pub(crate) fn create_app(shared: &Shared, req: &CreateApp) -> (ErrorCode, i32) {
    if req.partition_count <= 0 || req.app_name.is_empty() {
        return (ErrorCode::INVALID_PARAMETERS, 0);
    }
    let nodes = shared.node_addrs();
    let dropped_max = shared.dropped().keys().max().copied().unwrap_or(0);
    let answer = shared.update(|v| {
        let mut tables = v.tables.clone();
        if let Some(t) = tables.get(&req.app_name) {
            let err = if req.success_if_exist {
                ErrorCode::OK
            } else {
                ErrorCode::new("ERR_APP_EXIST")
            };
            let appid = t.spec.app_id;
            return (v.leader, tables, (err, appid));
        }
        let in_use = tables.values().map(|t| t.spec.app_id).max().unwrap_or(0);
        let appid = in_use.max(dropped_max) + 1;
        let mut spec = TableSpec::new(
            req.app_name.clone(),
            appid,
            req.partition_count,
            created_replicas(shared),
        );
        spec.envs = req.envs.clone();
        let table = Table::new(spec, &nodes, shared.host_port_fields);
        tables.insert(req.app_name.clone(), Arc::new(table));
        (v.leader, tables, (ErrorCode::OK, appid))
    });
    info!(table = %req.app_name, err = %answer.0, appid = answer.1, "create_app");
    answer
}

/// Drops a table, keeping it for a recall.
pub(crate) fn drop_app(shared: &Shared, req: &DropApp) -> ErrorCode {
    let gone = shared.update(|v| {
        let mut tables = v.tables.clone();
        let gone = tables.remove(&req.app_name);
        (v.leader, tables, gone)
    });
    let err = match gone {
        Some(table) => {
            table.store.stop_shipping();
            shared.dropped().insert(table.spec.app_id, table);
            ErrorCode::OK
        }
        None if req.success_if_not_exist => ErrorCode::OK,
        None => ErrorCode::APP_NOT_EXIST,
    };
    info!(table = %req.app_name, %err, "drop_app");
    err
}

/// Brings a dropped table back; its `err` and app_info.
pub(crate) fn recall_app(shared: &Shared, req: &RecallApp) -> (ErrorCode, AppInfo) {
    let nodes = shared.node_addrs();
    let mut dropped = shared.dropped();
    let Some(table) = dropped.get(&req.app_id).cloned() else {
        return (ErrorCode::APP_NOT_EXIST, AppInfo::default());
    };
    let name = if req.new_app_name.is_empty() {
        table.spec.name.clone()
    } else {
        req.new_app_name.clone()
    };
    let answer = shared.update(|v| {
        let mut tables = v.tables.clone();
        if tables.contains_key(&name) {
            return (v.leader, tables, None);
        }
        let mut spec = table.spec.clone();
        spec.name = name.clone();
        let back = Arc::new(table.respec(spec, &nodes));
        tables.insert(name.clone(), back.clone());
        (v.leader, tables, Some(back))
    });
    let answer = match answer {
        Some(back) => {
            dropped.remove(&req.app_id);
            (ErrorCode::OK, app_info(&back, app_status::AVAILABLE))
        }
        None => (ErrorCode::INVALID_PARAMETERS, AppInfo::default()),
    };
    info!(app_id = req.app_id, table = %name, err = %answer.0, "recall_app");
    answer
}

/// The reply body of create_app, drop_app or recall_app (`name`), `None` for another RPC.
pub(crate) fn body(
    shared: &Shared,
    gate: Gate,
    name: &str,
    args: &[u8],
) -> Option<Result<Bytes, CodecError>> {
    let closed = match gate {
        Gate::Closed(err) => Some(err),
        Gate::Open => None,
    };
    Some(match name {
        CREATE_APP => CreateApp::from_args(args).map(|req| {
            let (err, appid) = match closed {
                Some(err) => (err, 0),
                None => create_app(shared, &req),
            };
            create_app_result(&err, appid)
        }),
        DROP_APP => DropApp::from_args(args)
            .map(|req| drop_app_result(&closed.unwrap_or_else(|| drop_app(shared, &req)))),
        RECALL_APP => RecallApp::from_args(args).map(|req| {
            let (err, info) = match closed {
                Some(err) => (err, AppInfo::default()),
                None => recall_app(shared, &req),
            };
            recall_app_result(&err, &info)
        }),
        _ => return None,
    })
}
