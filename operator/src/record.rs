//! The record as the operator writes it: the proxy's route record (both spellings, see
//! [`metaproxy::route::RouteRecord::to_json`]) plus the route that owns the table in this zone:
//!
//! ```text
//!  {"cluster":"c1","meta-addrs":["10.0.0.1:34601"],"cluster_name":"c1",
//!   "meta_addrs":"10.0.0.1:34601","owner":"default/temp"}
//! ```
//!
//! An operator reading a routes directory also marks what it wrote with `writer`
//! (`routes-dir:<id>`, see [`crate::orphans`]), so that after a restart it can find and delete
//! the records of route files removed while it was down. Kubernetes mode writes no marker: its
//! finalizer deletes the znode before the route goes.
//!
//! Readers of the record ignore `owner` and `writer` (the proxy's parser, the Go MetaProxy and
//! the admin-cli read only the fields they know). The operator reads it back to decide ownership: the route
//! that holds the znode keeps the table until it is deleted, across operator restarts.
//! Equal records with equal owners give equal bytes, so an unchanged route never rewrites its
//! znode.
//!
//! A route that has switched clusters also keeps its [`RouteState`] there, under `state` (absent
//! while there is nothing to remember); readers ignore it too.

use metaproxy::route::RouteRecord;
use serde_json::Value;

use crate::reconcile::state::RouteState;

/// The JSON key naming the owner.
pub const OWNER_KEY: &str = "owner";
/// The JSON key naming the writer (routes-directory mode).
pub const WRITER_KEY: &str = "writer";
/// The JSON key of the operator's state.
pub const STATE_KEY: &str = "state";

/// The bytes written to a table's znode: `record` owned by route `owner`.
pub fn to_json(record: &RouteRecord, owner: &str) -> Vec<u8> {
    with_state(record, owner, None, &RouteState::default())
}

/// The bytes written to a table's znode: `record` owned by route `owner`, marked with `writer`
/// when there is one, with `state` unless it is empty.
pub fn with_state(
    record: &RouteRecord,
    owner: &str,
    writer: Option<&str>,
    state: &RouteState,
) -> Vec<u8> {
    let mut out = record.to_json();
    // to_json writes one object and ends with its closing brace; the rest goes before it.
    if out.last() == Some(&b'}') {
        out.pop();
        out.extend_from_slice(b",\"");
        out.extend_from_slice(OWNER_KEY.as_bytes());
        out.extend_from_slice(b"\":");
        out.extend_from_slice(Value::String(owner.to_owned()).to_string().as_bytes());
        if let Some(writer) = writer {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(WRITER_KEY.as_bytes());
            out.extend_from_slice(b"\":");
            out.extend_from_slice(Value::String(writer.to_owned()).to_string().as_bytes());
        }
        if !state.is_empty() {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(STATE_KEY.as_bytes());
            out.extend_from_slice(b"\":");
            // A struct of strings, numbers and enums: serializing cannot fail.
            out.extend_from_slice(&serde_json::to_vec(state).unwrap_or_else(|_| b"{}".to_vec()));
        }
        out.push(b'}');
    }
    out
}

/// The operator's state in a znode's data; empty when there is none or it does not parse (a
/// hand edit: the record is then put back, see [`crate::reconcile::decide`]).
pub fn state(data: &[u8]) -> RouteState {
    serde_json::from_slice::<Value>(data)
        .ok()
        .and_then(|v| v.get(STATE_KEY).cloned())
        .and_then(|s| serde_json::from_value(s).ok())
        .unwrap_or_default()
}

/// The owner a znode's data names, if it is a JSON object with a string `owner`.
pub fn owner(data: &[u8]) -> Option<String> {
    string_field(data, OWNER_KEY)
}

/// The writer a znode's data names, if it is a JSON object with a string `writer`.
pub fn writer(data: &[u8]) -> Option<String> {
    string_field(data, WRITER_KEY)
}

fn string_field(data: &[u8], key: &str) -> Option<String> {
    match serde_json::from_slice::<Value>(data).ok()?.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// The route record in a znode's data, whatever else it holds.
pub fn route(data: &[u8]) -> Option<RouteRecord> {
    RouteRecord::parse(data).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proxy_reads_an_owned_record_as_the_plain_one() {
        let record = RouteRecord::new("c1", ["10.0.0.1:34601", "meta-1:34601"]).expect("record");
        let data = to_json(&record, "default/temp");
        assert_eq!(
            String::from_utf8(data.clone()).expect("utf8"),
            r#"{"cluster":"c1","meta-addrs":["10.0.0.1:34601","meta-1:34601"],"cluster_name":"c1","meta_addrs":"10.0.0.1:34601,meta-1:34601","owner":"default/temp"}"#
        );
        assert_eq!(RouteRecord::parse(&data), Ok(record.clone()));
        assert_eq!(owner(&data).as_deref(), Some("default/temp"));
        assert_eq!(route(&data), Some(record.clone()));
        assert_eq!(data, to_json(&record, "default/temp"), "deterministic");
    }

    #[test]
    fn odd_owners_are_escaped_and_foreign_data_has_none() {
        let record = RouteRecord::new("c1", ["h:1"]).expect("record");
        let data = to_json(&record, "a \"quoted\"\nname.yaml");
        assert_eq!(owner(&data).as_deref(), Some("a \"quoted\"\nname.yaml"));
        assert_eq!(RouteRecord::parse(&data), Ok(record.clone()));
        for foreign in [
            &b"not json"[..],
            br#"{"cluster":"c1","meta-addrs":["h:1"]}"#,
            br#"{"cluster":"c1","meta-addrs":["h:1"],"owner":7}"#,
            br#"{"cluster":"c1","meta-addrs":["h:1"],"owner":""}"#,
            br#"["owner"]"#,
        ] {
            assert_eq!(owner(foreign), None, "{}", String::from_utf8_lossy(foreign));
        }
        assert_eq!(route(b"not json"), None);
    }

    #[test]
    fn the_writer_marker_rides_along_and_readers_ignore_it() {
        use crate::reconcile::state::RouteState;
        let record = RouteRecord::new("c1", ["h:1"]).expect("record");
        let s = RouteState {
            flipped_at: Some(5),
            ..RouteState::default()
        };
        let data = with_state(&record, "t.yaml", Some("routes-dir:/etc/\"r\""), &s);
        assert_eq!(
            String::from_utf8(data.clone()).expect("utf8"),
            r#"{"cluster":"c1","meta-addrs":["h:1"],"cluster_name":"c1","meta_addrs":"h:1","owner":"t.yaml","writer":"routes-dir:/etc/\"r\"","state":{"flippedAt":5}}"#
        );
        assert_eq!(
            RouteRecord::parse(&data),
            Ok(record.clone()),
            "the proxy's parser"
        );
        assert_eq!(owner(&data).as_deref(), Some("t.yaml"));
        assert_eq!(writer(&data).as_deref(), Some("routes-dir:/etc/\"r\""));
        assert_eq!(state(&data), s);
        assert_eq!(writer(&to_json(&record, "t.yaml")), None, "no marker");
        assert_eq!(writer(br#"{"writer":7}"#), None);
    }

    #[test]
    fn the_state_rides_along_and_readers_ignore_it() {
        use crate::crd::ActiveCluster;
        use crate::reconcile::state::{Aborted, RouteState};
        let record = RouteRecord::new("c1", ["h:1"]).expect("record");
        assert_eq!(
            with_state(&record, "o", None, &RouteState::default()),
            to_json(&record, "o"),
            "an empty state is not written"
        );
        let s = RouteState {
            flipped_at: Some(5),
            aborted: Some(Aborted {
                to: ActiveCluster::Backup,
                at: 6,
                reason: "why \"not\"".into(),
            }),
            ..RouteState::default()
        };
        let data = with_state(&record, "o", None, &s);
        assert_eq!(
            String::from_utf8(data.clone()).expect("utf8"),
            r#"{"cluster":"c1","meta-addrs":["h:1"],"cluster_name":"c1","meta_addrs":"h:1","owner":"o","state":{"flippedAt":5,"aborted":{"to":"backup","at":6,"reason":"why \"not\""}}}"#
        );
        assert_eq!(state(&data), s);
        assert_eq!(RouteRecord::parse(&data), Ok(record.clone()));
        assert_eq!(owner(&data).as_deref(), Some("o"));
        assert_eq!(
            state(br#"{"state":{"flippedAt":"soon"}}"#),
            RouteState::default()
        );
        assert_eq!(state(b"not json"), RouteState::default());
    }
}
