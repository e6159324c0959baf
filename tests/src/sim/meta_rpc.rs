//! The MetaServer admin RPCs a failover uses (`docs/protocol.md` §14): `RPC_CM_UPDATE_APP_ENV`,
//! `RPC_CM_QUERY_DUPLICATION` and `RPC_CM_ADD_DUPLICATION`. The same operations back the
//! [`super::SimHandle`] methods and the admin HTTP API.
//!
//! | request | answer (rpc-level `ERR_OK`) |
//! |---|---|
//! | any of them, meta switched to not active | `ERR_SERVICE_NOT_ACTIVE`, other fields default |
//! | any of them, to a meta that is not the leader | `ERR_FORWARD_TO_OTHERS` and **no** leader address |
//! | update_app_env | §14.4, see [`super::envs::update`]; `ERR_OK` means stored on the meta, the replica nodes apply it at their next config sync |
//! | query_duplication, table missing | `ERR_APP_NOT_EXIST`, appid 0, no entries |
//! | query_duplication | one entry per duplication: dupid, `DS_LOG`, remote, create_ts, `FAIL_SLOW`; with `DupProgress::Full` (2.6) also remote_app_name, remote_replica_count and `partition_states` (confirmed, last committed decree per partition) |
//! | add_duplication, remote is this cluster or unknown, or a negative replica count | `ERR_INVALID_PARAMETERS` with a hint |
//! | add_duplication, table missing | `ERR_APP_NOT_EXIST` |
//! | add_duplication, one to that remote table exists | `ERR_DUP_EXIST` with its dupid (HEAD's answer) |
//! | add_duplication | `ERR_OK`, appid, dupid; shipping starts with the writes committed from now on (the checkpoint is never copied, whatever `is_duplicating_checkpoint` says) |
//! | list_apps | every table, `AS_AVAILABLE`, with its app_id, partition count and envs, and every dropped table `AS_DROPPED`, as the status filter asks (`AS_INVALID`: all) |
//! | create_app, drop_app, recall_app | they change the tables: see [`super::ddl`] |
//! | the other table-scoped admin RPCs ([`GENERIC_TABLE_RPCS`]) | their IDL response, as a table with nothing under way: see [`super::table_admin`]; nothing changes |

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use pegasus_rpc::codec::list_apps::{self, AppInfo, ListAppsResponse, app_status};
use pegasus_rpc::codec::wire::{self, read_struct};
use pegasus_rpc::codec::{
    AddDuplicationRequest, AddDuplicationResponse, CodecError, DuplicationEntry,
    DuplicationFailMode, DuplicationPartitionState, DuplicationStatus, ErrorCode,
    QueryDuplicationRequest, QueryDuplicationResponse, UpdateAppEnvRequest, UpdateAppEnvResponse,
};
use thrift::protocol::TType;
use tracing::info;

use super::config::{DupProgress, DuplicationSpec};
use super::ddl;
use super::dup;
use super::envs::{self, EnvAnswer, EnvUpdate};
use super::state::Shared;
use super::table::Table;
use super::table_admin::{self, Subject};

/// Why the meta answers without looking at the request: not active, or not the leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Gate {
    Open,
    Closed(ErrorCode),
}

impl Gate {
    pub fn of(not_active: bool, leader: bool) -> Gate {
        if not_active {
            Gate::Closed(ErrorCode::SERVICE_NOT_ACTIVE)
        } else if !leader {
            Gate::Closed(ErrorCode::FORWARD_TO_OTHERS)
        } else {
            Gate::Open
        }
    }
}

/// Changes a table's envs; the view is rebuilt with them when they changed.
pub(crate) fn update_app_env(shared: &Shared, table: &str, update: &EnvUpdate) -> EnvAnswer {
    let nodes = shared.node_addrs();
    let answer = shared.update(|v| {
        let mut tables = v.tables.clone();
        let answer = envs::update(tables.get(table).map(|t| &t.spec.envs), update);
        if let (Some(new), Some(t)) = (&answer.envs, tables.get(table)) {
            let mut spec = t.spec.clone();
            spec.envs = new.clone();
            let t = Arc::new(t.respec(spec, &nodes));
            tables.insert(table.to_owned(), t);
        }
        (v.leader, tables, answer)
    });
    info!(table, op = update.op, err = %answer.err, hint = %answer.hint, "update_app_env");
    answer
}

/// Starts a duplication of `table`; returns its dupid and whether it existed already.
pub(crate) fn add_duplication(
    shared: &Arc<Shared>,
    table: &Table,
    spec: DuplicationSpec,
) -> (i32, bool) {
    let remote = spec.cluster_name();
    let now_ms = i64::try_from(shared.clock.since_unix().as_millis()).unwrap_or(0);
    let (d, existed) = table.store.add_duplication(spec, remote, now_ms);
    if !existed {
        dup::start(shared, &table.spec.name, &table.store, d.clone());
    }
    (d.dupid, existed)
}

/// The query_duplication answer for `table`.
pub(crate) fn query_duplication(shared: &Shared, table: &str) -> QueryDuplicationResponse {
    let view = shared.view();
    let Some(t) = view.tables.get(table) else {
        return QueryDuplicationResponse {
            err: ErrorCode::APP_NOT_EXIST,
            ..Default::default()
        };
    };
    let full = shared.data.dup_progress == DupProgress::Full;
    let entry_list = t
        .store
        .duplication_states()
        .into_iter()
        .map(|d| DuplicationEntry {
            dupid: d.dupid,
            status: DuplicationStatus::LOG,
            remote: d.remote,
            create_ts: d.create_ts_ms,
            progress: None,
            fail_mode: Some(DuplicationFailMode::SLOW),
            remote_app_name: full.then_some(d.remote_app),
            remote_replica_count: full.then_some(t.replicas.len() as i32),
            mode: None,
            partition_states: full.then(|| {
                d.partitions
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        (
                            i as i32,
                            DuplicationPartitionState {
                                confirmed_decree: p.confirmed_decree,
                                last_committed_decree: p.last_committed_decree,
                            },
                        )
                    })
                    .collect::<BTreeMap<_, _>>()
            }),
        })
        .collect();
    QueryDuplicationResponse {
        err: ErrorCode::OK,
        appid: t.spec.app_id,
        entry_list,
    }
}

/// The add_duplication answer, starting the duplication when it is accepted.
pub(crate) fn answer_add_duplication(
    shared: &Arc<Shared>,
    req: &AddDuplicationRequest,
) -> AddDuplicationResponse {
    let refuse = |err: ErrorCode, hint: String| AddDuplicationResponse {
        err,
        hint: Some(hint),
        ..Default::default()
    };
    let remote = &req.remote_cluster_name;
    if *remote == shared.data.cluster_name {
        return refuse(
            ErrorCode::INVALID_PARAMETERS,
            format!("illegal operation: adding duplication to itself ({remote})"),
        );
    }
    let Some(metas) = shared.data.remote_clusters.get(remote) else {
        return refuse(
            ErrorCode::INVALID_PARAMETERS,
            format!("failed to find cluster[{remote}] address in config [pegasus.clusters]"),
        );
    };
    if req.remote_replica_count.is_some_and(|c| c < 0) {
        return refuse(
            ErrorCode::INVALID_PARAMETERS,
            "the remote replica count must not be negative".into(),
        );
    }
    let view = shared.view();
    let Some(table) = view.tables.get(&req.app_name) else {
        return refuse(ErrorCode::APP_NOT_EXIST, "app cannot be found".into());
    };
    let remote_app = req
        .remote_app_name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| req.app_name.clone());
    let spec = DuplicationSpec {
        to: metas.clone(),
        app: remote_app.clone(),
        cluster: Some(remote.clone()),
    };
    let (dupid, existed) = add_duplication(shared, table, spec);
    let full = shared.data.dup_progress == DupProgress::Full;
    AddDuplicationResponse {
        err: if existed {
            ErrorCode::new("ERR_DUP_EXIST")
        } else {
            ErrorCode::OK
        },
        appid: table.spec.app_id,
        dupid,
        hint: existed.then(|| format!("duplication to {remote} exists already")),
        remote_app_name: full.then_some(remote_app),
        remote_replica_count: full.then_some(
            req.remote_replica_count
                .filter(|&c| c > 0)
                .unwrap_or(table.replicas.len() as i32),
        ),
    }
}

fn body(write: impl FnOnce(&mut BytesMut)) -> Bytes {
    let mut out = BytesMut::new();
    write(&mut out);
    out.freeze()
}

/// The result body of an update_app_env request.
pub(crate) fn update_app_env_body(
    shared: &Shared,
    gate: Gate,
    args: &[u8],
) -> Result<Bytes, CodecError> {
    let req = UpdateAppEnvRequest::from_args(args)?;
    let resp = match gate {
        Gate::Closed(err) => UpdateAppEnvResponse {
            err,
            hint_message: String::new(),
        },
        Gate::Open => {
            let answer = update_app_env(
                shared,
                &req.app_name,
                &EnvUpdate {
                    op: req.op.0,
                    keys: req.keys,
                    values: req.values,
                    clear_prefix: req.clear_prefix,
                },
            );
            UpdateAppEnvResponse {
                err: answer.err,
                hint_message: answer.hint,
            }
        }
    };
    Ok(body(|out| resp.to_result(out)))
}

/// The result body of a query_duplication request.
pub(crate) fn query_duplication_body(
    shared: &Shared,
    gate: Gate,
    args: &[u8],
) -> Result<Bytes, CodecError> {
    let req = QueryDuplicationRequest::from_args(args)?;
    let resp = match gate {
        Gate::Closed(err) => QueryDuplicationResponse {
            err,
            ..Default::default()
        },
        Gate::Open => query_duplication(shared, &req.app_name),
    };
    Ok(body(|out| resp.to_result(out)))
}

/// The result body of an add_duplication request.
pub(crate) fn add_duplication_body(
    shared: &Arc<Shared>,
    gate: Gate,
    args: &[u8],
) -> Result<Bytes, CodecError> {
    let req = AddDuplicationRequest::from_args(args)?;
    let resp = match gate {
        Gate::Closed(err) => AddDuplicationResponse {
            err,
            ..Default::default()
        },
        Gate::Open => answer_add_duplication(shared, &req),
    };
    Ok(body(|out| resp.to_result(out)))
}

/// The table-scoped admin RPCs the simulator answers without modelling them, from the table they
/// name (field 1 of the request): see [`super::table_admin`].
pub(crate) const GENERIC_TABLE_RPCS: [&str; 14] = [
    "RPC_CM_QUERY_PARTITION_SPLIT",
    "RPC_CM_QUERY_BULK_LOAD_STATUS",
    "RPC_CM_QUERY_MANUAL_COMPACT_STATUS",
    "RPC_CM_GET_MAX_REPLICA_COUNT",
    "RPC_CM_GET_ATOMIC_IDEMPOTENT",
    "RPC_CM_MODIFY_DUPLICATION",
    "RPC_CM_START_PARTITION_SPLIT",
    "RPC_CM_CONTROL_PARTITION_SPLIT",
    "RPC_CM_START_BULK_LOAD",
    "RPC_CM_CONTROL_BULK_LOAD",
    "RPC_CM_CLEAR_BULK_LOAD",
    "RPC_CM_START_MANUAL_COMPACT",
    "RPC_CM_SET_MAX_REPLICA_COUNT",
    "RPC_CM_SET_ATOMIC_IDEMPOTENT",
];

/// The body of a generic table-scoped admin RPC `name` ([`table_admin::response`]).
pub(crate) fn generic_table_body(
    view: &super::state::View,
    gate: Gate,
    name: &str,
    args: &[u8],
) -> Result<Bytes, CodecError> {
    let field = 1;
    // The whole request is read (unknown fields skipped), as a MetaServer would.
    let (table, _) = wire::decode_with(args, "admin request", |i| {
        let mut table = String::new();
        i.read_struct_begin()?;
        i.read_field_begin()?;
        read_struct(i, |i, id, ty| {
            if id == field && ty == TType::String {
                table = i.read_string()?;
                return Ok(true);
            }
            Ok(false)
        })?;
        i.read_field_end()?;
        Ok(table)
    })?;
    let subject = match (gate, view.tables.get(&table)) {
        (Gate::Closed(err), _) => Subject::Gated(err),
        (Gate::Open, Some(t)) => Subject::Served(t),
        (Gate::Open, None) => Subject::Missing,
    };
    let (err, body) = table_admin::response(name, &table, subject);
    info!(rpc = name, %table, %err, "admin RPC");
    Ok(body)
}

/// The list_apps body: every table as available and every dropped one as dropped, for the
/// status filters that include them.
pub(crate) fn list_apps_body(
    shared: &Shared,
    view: &super::state::View,
    gate: Gate,
    args: &[u8],
) -> Result<Bytes, CodecError> {
    let status = list_apps::list_apps_status(args)?;
    let wanted = |s: i32| status == app_status::INVALID || status == s;
    let resp = match gate {
        Gate::Closed(err) => ListAppsResponse {
            err,
            ..Default::default()
        },
        Gate::Open => {
            let mut infos: Vec<_> = view
                .tables
                .values()
                .filter(|_| wanted(app_status::AVAILABLE))
                .map(|t| ddl::app_info(t, app_status::AVAILABLE))
                .collect();
            if wanted(app_status::DROPPED) {
                infos.extend(
                    shared
                        .dropped()
                        .values()
                        .map(|t| ddl::app_info(t, app_status::DROPPED)),
                );
            }
            ListAppsResponse {
                err: ErrorCode::OK,
                infos: infos.iter().map(AppInfo::to_raw).collect(),
                hint_message: None,
            }
        }
    };
    Ok(body(|out| resp.to_result(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_active_wins_over_not_leader() {
        assert_eq!(
            Gate::of(true, false),
            Gate::Closed(ErrorCode::SERVICE_NOT_ACTIVE)
        );
        assert_eq!(
            Gate::of(false, false),
            Gate::Closed(ErrorCode::FORWARD_TO_OTHERS)
        );
        assert_eq!(Gate::of(false, true), Gate::Open);
    }
}
