//! The properties the route parsers are held to on arbitrary input, written once for two drivers:
//! the `cargo fuzz` targets in `proxy/fuzz` (nightly, coverage-guided) and the property tests in
//! `tests/route_props.rs` (stable, in every `cargo test`). Each entry point takes any bytes,
//! returns nothing and panics when a property fails. The codec's properties are
//! `pegasus_rpc::fuzz_logic`.
//!
//! | entry point | fuzz target | what it checks |
//! |---|---|---|
//! | [`route_record`] | `route_record` | the znode JSON: what parses is valid, round-trips through `to_json`, and reads the same from either spelling alone |
//! | [`routes_file`] | `routes_file` | the static routes YAML: only valid table names and valid records come out; refusals name the right culprit |
//!
//! Not an API: hidden from the docs, and changed together with the targets and tests calling it.

use serde_json::Value;

use crate::route::{
    RecordError, RouteRecord, RoutesFileError, parse_routes_file, valid_table_name,
    validate_meta_addr,
};

/// The `route_record` target: the bytes as the data of a route znode.
pub fn route_record(data: &[u8]) {
    match RouteRecord::parse(data) {
        Ok(record) => record_properties(&record),
        Err(e) => {
            let _ = (e.metric_label(), e.to_string());
        }
    }
}

/// The `routes_file` target: the bytes as the content of a routes file (read as UTF-8, as the
/// proxy reads it).
pub fn routes_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_routes_file(text) {
        Ok(routes) => {
            for (table, record) in &routes {
                assert!(valid_table_name(table), "table {table:?} was accepted");
                // Independently of valid_table_name: the name is one ZooKeeper path segment
                // under the root, never a way out of it.
                assert!(
                    !table.is_empty()
                        && table != "."
                        && table != ".."
                        && !table.contains(['/', '\0'])
                        && !table.chars().any(char::is_whitespace),
                    "table {table:?} is no single path segment"
                );
                record_properties(record);
            }
        }
        Err(e) => {
            let _ = (e.metric_label(), e.to_string());
            match &e {
                RoutesFileError::BadTable(table) => {
                    assert!(!valid_table_name(table), "{e}, but the name is valid")
                }
                // Tables are checked in order, the name before the record.
                RoutesFileError::BadRoute { table, .. } => {
                    assert!(valid_table_name(table), "{e}, but the name is the problem")
                }
                _ => {}
            }
        }
    }
}

/// What holds for every record the parsers let through: it is valid as `RouteRecord::new` checks
/// it; `to_json` gives bytes that parse back to it and are the same when written again; and each
/// spelling of those bytes alone reads as the same record (the Go MetaProxy and admin-cli read
/// only theirs).
fn record_properties(record: &RouteRecord) {
    let rebuilt = RouteRecord::new(record.cluster.clone(), record.meta_addrs.clone());
    assert_eq!(rebuilt.as_ref(), Ok(record), "a parsed record is not valid");
    for addr in &record.meta_addrs {
        assert_eq!(validate_meta_addr(addr), Ok(()));
    }
    let json = record.to_json();
    let back = RouteRecord::parse(&json).unwrap_or_else(|e| {
        panic!(
            "to_json wrote {}, which does not parse: {e}",
            String::from_utf8_lossy(&json)
        )
    });
    assert_eq!(&back, record, "the to_json round trip changed the record");
    assert_eq!(back.to_json(), json, "to_json is not stable");

    let value: Value = serde_json::from_slice(&json).expect("to_json writes JSON");
    for (keep, drop) in [
        (["cluster", "meta-addrs"], ["cluster_name", "meta_addrs"]),
        (["cluster_name", "meta_addrs"], ["cluster", "meta-addrs"]),
    ] {
        let mut one = value.clone();
        let obj = one.as_object_mut().expect("to_json writes an object");
        for key in drop {
            obj.remove(key);
        }
        let read: Result<RouteRecord, RecordError> = RouteRecord::from_value(&one);
        assert_eq!(
            read.as_ref(),
            Ok(record),
            "the {keep:?} spelling alone reads otherwise"
        );
    }
}
