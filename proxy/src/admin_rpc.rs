//! Which MetaServer admin RPCs the proxy serves, and how: a table-scoped RPC goes to the cluster
//! its table's route names (the request's bytes forwarded unchanged, the leader followed as for
//! query_config); `RPC_CM_LIST_APPS` is merged from every routed cluster (`crate::list_apps`);
//! cluster-scoped RPCs have no single cluster and stay `ERR_HANDLER_NOT_FOUND`.
//!
//! | RPC | table in | access |
//! |---|---|---|
//! | `RPC_CM_LIST_APPS` | (every routed table) | read |
//! | `RPC_CM_QUERY_DUPLICATION`, `RPC_CM_QUERY_PARTITION_SPLIT`, `RPC_CM_QUERY_BULK_LOAD_STATUS`, `RPC_CM_QUERY_MANUAL_COMPACT_STATUS`, `RPC_CM_GET_MAX_REPLICA_COUNT`, `RPC_CM_GET_ATOMIC_IDEMPOTENT` | field 1 `app_name` | read |
//! | `RPC_CM_CREATE_APP`, `RPC_CM_DROP_APP`, `RPC_CM_UPDATE_APP_ENV`, `RPC_CM_ADD_DUPLICATION`, `RPC_CM_MODIFY_DUPLICATION`, `RPC_CM_START_PARTITION_SPLIT`, `RPC_CM_CONTROL_PARTITION_SPLIT`, `RPC_CM_START_BULK_LOAD`, `RPC_CM_CONTROL_BULK_LOAD`, `RPC_CM_CLEAR_BULK_LOAD`, `RPC_CM_START_MANUAL_COMPACT`, `RPC_CM_SET_MAX_REPLICA_COUNT`, `RPC_CM_SET_ATOMIC_IDEMPOTENT` | field 1 `app_name` | write |
//! | `RPC_CM_RECALL_APP` | field 2 `new_app_name` (field 1 is a per-cluster app_id) | write |
//!
//! A write goes upstream under [`CallPolicy::WRITE`] (never hedged, never sent again to a
//! MetaServer it may have reached), a read under [`CallPolicy::READ`] ([`policy_of`]).
//!
//! `--admin-rpcs` ([`AdminRpcs`]) decides which are answered; one it denies gets what a
//! MetaServer gives a caller its ACL refuses: rpc-level `ERR_OK`, `err = ERR_ACL_DENY`
//! (`meta_service::check_status_and_authz`).

use std::fmt;

use serde::{Deserialize, Serialize};
use thrift::protocol::TType;

use pegasus_rpc::client::CallPolicy;
use pegasus_rpc::codec::CodecError;
use pegasus_rpc::codec::wire::{self, skip_plain};

/// What an admin RPC does to a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// How an RPC of this access may be repeated upstream: a read freely, a write at most once per
/// MetaServer that may have got it.
pub fn policy_of(access: Access) -> CallPolicy {
    match access {
        Access::Read => CallPolicy::READ,
        Access::Write => CallPolicy::WRITE,
    }
}

/// A table-scoped admin RPC: its name, which field of its request struct names the table (a
/// thrift string), and whether it changes anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableRpc {
    pub name: &'static str,
    pub table_field: i16,
    pub access: Access,
}

const fn rpc(name: &'static str, table_field: i16, access: Access) -> TableRpc {
    TableRpc {
        name,
        table_field,
        access,
    }
}

/// The table-scoped admin RPCs, from `P:idl/meta_admin.thrift`, `duplication.thrift`,
/// `partition_split.thrift`, `bulk_load.thrift` (docs/protocol.md §14.6).
pub const TABLE_RPCS: [TableRpc; 20] = [
    rpc("RPC_CM_QUERY_DUPLICATION", 1, Access::Read),
    rpc("RPC_CM_QUERY_PARTITION_SPLIT", 1, Access::Read),
    rpc("RPC_CM_QUERY_BULK_LOAD_STATUS", 1, Access::Read),
    rpc("RPC_CM_QUERY_MANUAL_COMPACT_STATUS", 1, Access::Read),
    rpc("RPC_CM_GET_MAX_REPLICA_COUNT", 1, Access::Read),
    rpc("RPC_CM_GET_ATOMIC_IDEMPOTENT", 1, Access::Read),
    rpc("RPC_CM_CREATE_APP", 1, Access::Write),
    rpc("RPC_CM_DROP_APP", 1, Access::Write),
    rpc("RPC_CM_RECALL_APP", 2, Access::Write),
    rpc("RPC_CM_UPDATE_APP_ENV", 1, Access::Write),
    rpc("RPC_CM_ADD_DUPLICATION", 1, Access::Write),
    rpc("RPC_CM_MODIFY_DUPLICATION", 1, Access::Write),
    rpc("RPC_CM_START_PARTITION_SPLIT", 1, Access::Write),
    rpc("RPC_CM_CONTROL_PARTITION_SPLIT", 1, Access::Write),
    rpc("RPC_CM_START_BULK_LOAD", 1, Access::Write),
    rpc("RPC_CM_CONTROL_BULK_LOAD", 1, Access::Write),
    rpc("RPC_CM_CLEAR_BULK_LOAD", 1, Access::Write),
    rpc("RPC_CM_START_MANUAL_COMPACT", 1, Access::Write),
    rpc("RPC_CM_SET_MAX_REPLICA_COUNT", 1, Access::Write),
    rpc("RPC_CM_SET_ATOMIC_IDEMPOTENT", 1, Access::Write),
];

/// List the tables: answered by merging every routed cluster's list.
pub const LIST_APPS: &str = "RPC_CM_LIST_APPS";

/// MetaServer RPCs with no single cluster (or none that the proxy could tell), answered
/// `ERR_HANDLER_NOT_FOUND` like any RPC the proxy does not serve. Listed for the README and the
/// tests; not consulted per request.
pub const NOT_SERVED: [&str; 19] = [
    "RPC_CM_LIST_NODES",
    "RPC_CM_CLUSTER_INFO",
    "RPC_CM_PROPOSE_BALANCER",
    "RPC_CM_CONTROL_META",
    "RPC_CM_START_RECOVERY",
    "RPC_CM_DDD_DIAGNOSE",
    "RPC_CM_ADD_BACKUP_POLICY",
    "RPC_CM_QUERY_BACKUP_POLICY",
    "RPC_CM_MODIFY_BACKUP_POLICY",
    "RPC_CM_START_BACKUP_APP",
    "RPC_CM_QUERY_BACKUP_STATUS",
    "RPC_CM_START_RESTORE",
    "RPC_CM_QUERY_RESTORE_STATUS",
    "RPC_CM_RENAME_APP",
    "RPC_CM_LIST_DUPLICATION",
    "RPC_CLI_CLI_CALL",
    "RPC_QUERY_APP_INFO",
    "RPC_CM_CONFIG_SYNC",
    "RPC_CM_DUPLICATION_SYNC",
];

/// How the proxy treats an RPC by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminRoute {
    Table(&'static TableRpc),
    ListApps,
    NotServed,
}

/// The route of RPC `name` (query_config and negotiation are the service's own).
pub fn route_of(name: &str) -> AdminRoute {
    if name == LIST_APPS {
        return AdminRoute::ListApps;
    }
    match TABLE_RPCS.iter().find(|r| r.name == name) {
        Some(rpc) => AdminRoute::Table(rpc),
        None => AdminRoute::NotServed,
    }
}

/// `--admin-rpcs`: which admin RPCs the proxy answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdminRpcs {
    /// None: every admin RPC is denied.
    Off,
    /// list_apps and the RPCs that only read (the default): a proxy exposed to applications
    /// cannot be used to drop or change tables.
    #[default]
    ReadOnly,
    All,
}

impl AdminRpcs {
    /// `off`, `read-only` (the default) or `all`.
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        match value.unwrap_or("read-only") {
            "off" => Ok(AdminRpcs::Off),
            "read-only" => Ok(AdminRpcs::ReadOnly),
            "all" => Ok(AdminRpcs::All),
            other => Err(format!(
                "admin-rpcs: {other:?} is not off, read-only or all"
            )),
        }
    }

    pub fn allows(self, access: Access) -> bool {
        match self {
            AdminRpcs::Off => false,
            AdminRpcs::ReadOnly => access == Access::Read,
            AdminRpcs::All => true,
        }
    }
}

impl fmt::Display for AdminRpcs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AdminRpcs::Off => "off",
            AdminRpcs::ReadOnly => "read-only",
            AdminRpcs::All => "all",
        })
    }
}

/// The table a request names: `Ok` when UTF-8, its raw bytes otherwise (no cluster has it).
pub type TableName = Result<String, Vec<u8>>;

/// Reads the table name from a request's args: the args struct's one field holds the request
/// struct, whose field `field` is the name. Fields before it are skipped (none of them may be
/// struct-tagged: see [`skip_plain`]); nothing after it is read, since the request goes on as it
/// came and the MetaServer reads it whole. A request without the field names the empty table.
pub fn table_of(args: &[u8], field: i16) -> Result<TableName, CodecError> {
    wire::decode_with(args, "admin request", |i| {
        i.read_struct_begin()?;
        let outer = i.read_field_begin()?;
        if outer.field_type != TType::Struct {
            return Err(thrift::Error::Protocol(thrift::ProtocolError::new(
                thrift::ProtocolErrorKind::InvalidData,
                format!(
                    "the args hold a {:?}, not a request struct",
                    outer.field_type
                ),
            )));
        }
        i.read_struct_begin()?;
        loop {
            let f = i.read_field_begin()?;
            if f.field_type == TType::Stop {
                return Ok(Ok(String::new()));
            }
            if f.id == Some(field) && f.field_type == TType::String {
                let raw = i.read_bytes()?;
                return Ok(String::from_utf8(raw).map_err(|e| e.into_bytes()));
            }
            skip_plain(i, f.field_type)?;
            i.read_field_end()?;
        }
    })
    .map(|(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rpc_has_one_route() {
        for rpc in &TABLE_RPCS {
            assert_eq!(route_of(rpc.name), AdminRoute::Table(rpc), "{}", rpc.name);
            assert!(!NOT_SERVED.contains(&rpc.name), "{}", rpc.name);
        }
        assert_eq!(route_of(LIST_APPS), AdminRoute::ListApps);
        for name in NOT_SERVED {
            assert_eq!(route_of(name), AdminRoute::NotServed, "{name}");
        }
        let mut names: Vec<_> = TABLE_RPCS.iter().map(|r| r.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), TABLE_RPCS.len(), "no RPC twice");
    }

    #[test]
    fn writes_are_neither_hedged_nor_sent_again() {
        for rpc in &TABLE_RPCS {
            let policy = policy_of(rpc.access);
            let write = rpc.access == Access::Write;
            assert_eq!(policy.hedge, !write, "{}", rpc.name);
            assert_eq!(policy.retry_after_send, !write, "{}", rpc.name);
        }
        let writes: Vec<_> = TABLE_RPCS
            .iter()
            .filter(|r| r.access == Access::Write)
            .map(|r| r.name)
            .collect();
        for name in [
            "RPC_CM_CREATE_APP",
            "RPC_CM_DROP_APP",
            "RPC_CM_RECALL_APP",
            "RPC_CM_UPDATE_APP_ENV",
            "RPC_CM_START_MANUAL_COMPACT",
            "RPC_CM_SET_ATOMIC_IDEMPOTENT",
        ] {
            assert!(writes.contains(&name), "{name} is a write");
        }
    }

    #[test]
    fn the_switch_allows_by_access() {
        let cases = [
            (AdminRpcs::Off, Access::Read, false),
            (AdminRpcs::Off, Access::Write, false),
            (AdminRpcs::ReadOnly, Access::Read, true),
            (AdminRpcs::ReadOnly, Access::Write, false),
            (AdminRpcs::All, Access::Read, true),
            (AdminRpcs::All, Access::Write, true),
        ];
        for (switch, access, want) in cases {
            assert_eq!(switch.allows(access), want, "{switch} {access:?}");
        }
        for switch in [AdminRpcs::Off, AdminRpcs::ReadOnly, AdminRpcs::All] {
            assert_eq!(AdminRpcs::parse(Some(&switch.to_string())), Ok(switch));
        }
        assert_eq!(AdminRpcs::parse(None), Ok(AdminRpcs::ReadOnly));
        assert!(AdminRpcs::parse(Some("yes")).is_err());
    }

    /// args { 0 or 1: request { fields } } as the clients write them.
    fn args(fields: &[u8]) -> Vec<u8> {
        let mut out = vec![0x0c, 0x00, 0x01];
        out.extend_from_slice(fields);
        out.extend_from_slice(&[0x00, 0x00]);
        out
    }

    #[test]
    fn the_table_is_read_from_its_field() {
        let name_1 = b"\x0b\x00\x01\x00\x00\x00\x04temp";
        let recall = b"\x08\x00\x01\x00\x00\x00\x07\x0b\x00\x02\x00\x00\x00\x03new";
        let struct_first = b"\x0c\x00\x01\x00\x0b\x00\x02\x00\x00\x00\x01t";
        let cases: Vec<(Vec<u8>, i16, Result<TableName, ()>)> = vec![
            (args(name_1), 1, Ok(Ok("temp".into()))),
            (args(recall), 2, Ok(Ok("new".into()))),
            (args(b""), 1, Ok(Ok(String::new()))),
            (
                args(b"\x0b\x00\x01\x00\x00\x00\x02\xff\x41"),
                1,
                Ok(Err(vec![0xff, 0x41])),
            ),
            (args(struct_first), 2, Err(())),
            (vec![0x0b, 0x00, 0x01, 0, 0, 0, 0, 0], 1, Err(())),
            (args(name_1)[..8].to_vec(), 1, Err(())),
        ];
        for (bytes, field, want) in cases {
            let got = table_of(&bytes, field).map_err(|_| ());
            assert_eq!(got, want, "{bytes:02x?}");
        }
    }
}
