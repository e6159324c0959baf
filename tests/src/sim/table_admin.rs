//! The responses to the table-scoped admin RPCs the simulator does not model
//! ([`super::meta_rpc::GENERIC_TABLE_RPCS`]): each RPC's full response struct from the IDL
//! (`P:idl/meta_admin.thrift`, `partition_split.thrift`, `bulk_load.thrift`,
//! `duplication.thrift`), with the values of a table on which nothing is under way. Nothing
//! changes: a start or set is acknowledged and forgotten.
//!
//! | RPC | table served | no such table |
//! |---|---|---|
//! | query_partition_split | `ERR_INVALID_STATE` (not splitting), new_partition_count 0, status {}, a hint | `ERR_APP_NOT_EXIST`, 0, {}, a hint |
//! | query_bulk_load_status | `ERR_OK`, app_name, `BLS_INVALID`, `BLS_INVALID` per partition, max_replica_count, an empty map per partition (both address forms), a hint, is_bulk_loading false | `ERR_APP_NOT_EXIST`, app_name, `BLS_INVALID`, [], 0, [], a hint |
//! | query_manual_compact_status | `ERR_INVALID_STATE` (no compaction), a hint, no progress | `ERR_APP_NOT_EXIST`, a hint |
//! | get_max_replica_count | `ERR_OK`, the table's max_replica_count, hint "" | `ERR_APP_NOT_EXIST`, 0, a hint |
//! | get_atomic_idempotent | `ERR_OK`, false, hint "" | `ERR_APP_NOT_EXIST`, false, a hint |
//! | modify_duplication | `ERR_OK`, appid | `ERR_APP_NOT_EXIST`, 0 |
//! | set_max_replica_count | `ERR_OK`, old_max_replica_count, hint "" | `ERR_APP_NOT_EXIST`, 0, a hint |
//! | set_atomic_idempotent | `ERR_OK`, old false, hint "" | `ERR_APP_NOT_EXIST`, false, a hint |
//! | start_partition_split, start_bulk_load, clear_bulk_load, start_manual_compact | `ERR_OK`, hint_msg "" | `ERR_APP_NOT_EXIST`, a hint |
//! | control_partition_split, control_bulk_load | `ERR_OK` (the optional hint left out) | `ERR_APP_NOT_EXIST`, a hint |
//!
//! A meta that is not active or not the leader answers its `err` with the other fields default
//! and no optional field.

use bytes::Bytes;
use pegasus_rpc::codec::ErrorCode;

use super::table::Table;
use crate::idl::{self, Field};

/// What the answering meta knows of the table the request names.
pub(crate) enum Subject<'a> {
    Served(&'a Table),
    Missing,
    /// Not active or not the leader: the `err` that says which.
    Gated(ErrorCode),
}

/// `BLS_INVALID` of `bulk_load_status`: no bulk load ever ran.
const BLS_INVALID: i32 = 0;
/// Thrift types of the map keys and values in `bulk_load_states`: rpc_address or host_port to
/// partition_bulk_load_state, all structs.
const STRUCT: u8 = 12;

/// The `err` and result body of table-scoped admin RPC `name` (one of `GENERIC_TABLE_RPCS`)
/// naming `table`.
pub(crate) fn response(name: &str, table: &str, subject: Subject<'_>) -> (ErrorCode, Bytes) {
    let served = match subject {
        Subject::Served(t) => Some(t),
        _ => None,
    };
    let err = match &subject {
        Subject::Gated(err) => err.clone(),
        Subject::Missing => ErrorCode::APP_NOT_EXIST,
        Subject::Served(_)
            if matches!(
                name,
                "RPC_CM_QUERY_PARTITION_SPLIT" | "RPC_CM_QUERY_MANUAL_COMPACT_STATUS"
            ) =>
        {
            ErrorCode::new("ERR_INVALID_STATE")
        }
        Subject::Served(_) => ErrorCode::OK,
    };
    let missing_hint = format!("table {table} does not exist");
    let hint: Option<&str> = matches!(subject, Subject::Missing).then_some(&missing_hint);
    // The hint of a `string` field: "" unless the table is missing.
    let required_hint = |id| Field::Str(id, hint.unwrap_or(""));
    let max_replica_count = served.map_or(0, |t| t.replicas.len().min(3) as i32);
    let partitions = served.map_or(0, |t| t.spec.partition_count);
    let not_splitting = format!("table {table} is not splitting");
    let no_compaction = format!("table {table} has no manual compaction under way");
    let no_bulk_load = format!("table {table} has no bulk load under way");

    let mut fields = vec![Field::Error(1, err.as_str())];
    match name {
        "RPC_CM_QUERY_PARTITION_SPLIT" => {
            fields.push(Field::I32(2, 0));
            fields.push(Field::I32Map(3, vec![]));
            let h = if served.is_some() {
                Some(not_splitting.as_str())
            } else {
                hint
            };
            fields.extend(h.map(|h| Field::Str(4, h)));
        }
        "RPC_CM_QUERY_BULK_LOAD_STATUS" => {
            let gated = matches!(subject, Subject::Gated(_));
            fields.push(Field::Str(2, if gated { "" } else { table }));
            fields.push(Field::I32(3, BLS_INVALID));
            fields.push(Field::I32List(4, vec![BLS_INVALID; partitions as usize]));
            fields.push(Field::I32(5, max_replica_count));
            let maps = |id| Field::EmptyMaps {
                id,
                key: STRUCT,
                value: STRUCT,
                count: partitions,
            };
            fields.push(maps(6));
            if served.is_some() {
                fields.push(Field::Str(7, &no_bulk_load));
                fields.push(Field::Bool(8, false));
                fields.push(maps(9));
            } else {
                fields.extend(hint.map(|h| Field::Str(7, h)));
            }
        }
        "RPC_CM_QUERY_MANUAL_COMPACT_STATUS" => {
            let h = if served.is_some() {
                no_compaction.as_str()
            } else {
                hint.unwrap_or("")
            };
            fields.push(Field::Str(2, h));
        }
        "RPC_CM_GET_MAX_REPLICA_COUNT" | "RPC_CM_SET_MAX_REPLICA_COUNT" => {
            fields.push(Field::I32(2, max_replica_count));
            fields.push(required_hint(3));
        }
        "RPC_CM_GET_ATOMIC_IDEMPOTENT" | "RPC_CM_SET_ATOMIC_IDEMPOTENT" => {
            fields.push(Field::Bool(2, false));
            fields.push(required_hint(3));
        }
        "RPC_CM_MODIFY_DUPLICATION" => {
            fields.push(Field::I32(2, served.map_or(0, |t| t.spec.app_id)));
        }
        "RPC_CM_START_PARTITION_SPLIT"
        | "RPC_CM_START_BULK_LOAD"
        | "RPC_CM_CLEAR_BULK_LOAD"
        | "RPC_CM_START_MANUAL_COMPACT" => fields.push(required_hint(2)),
        "RPC_CM_CONTROL_PARTITION_SPLIT" | "RPC_CM_CONTROL_BULK_LOAD" => {
            fields.extend(hint.map(|h| Field::Str(2, h)));
        }
        other => unreachable!("{other} is not a generic table RPC"),
    }
    let body = Bytes::from(idl::result(&fields));
    (err, body)
}

#[cfg(test)]
mod tests {
    use pegasus_rpc::codec::QueryCfgResponse;

    use super::*;
    use crate::sim::meta_rpc::GENERIC_TABLE_RPCS;

    /// The body's `err` (field 1 of the response), read as the proxy's leader following reads it.
    fn err_of(body: &[u8]) -> ErrorCode {
        QueryCfgResponse::peek_err(body).expect("a response with err")
    }

    #[test]
    fn every_generic_rpc_answers_a_missing_table_and_a_closed_gate() {
        // A served table is covered byte for byte by the admin vectors (proxy/tests/admin_vectors.rs).
        for name in GENERIC_TABLE_RPCS {
            let (err, body) = response(name, "nosuch", Subject::Missing);
            assert_eq!(err, ErrorCode::APP_NOT_EXIST, "{name}");
            assert_eq!(err_of(&body), err, "{name}");
            let has_hint_field = !matches!(name, "RPC_CM_MODIFY_DUPLICATION");
            assert_eq!(
                body.windows(6).any(|w| w == b"nosuch"),
                has_hint_field,
                "{name}: the hint names the table"
            );
            let closed = ErrorCode::FORWARD_TO_OTHERS;
            let (err, body) = response(name, "temp", Subject::Gated(closed.clone()));
            assert_eq!((err, err_of(&body)), (closed.clone(), closed), "{name}");
            assert!(
                !body.windows(4).any(|w| w == b"temp"),
                "{name}: a closed gate says nothing of the table"
            );
        }
    }
}
