//! The record as the operator writes it: the proxy's route record (both spellings, see
//! [`metaproxy::route::RouteRecord::to_json`]) plus the route that owns the table in this zone:
//!
//! ```text
//!  {"cluster":"c1","meta-addrs":["10.0.0.1:34601"],"cluster_name":"c1",
//!   "meta_addrs":"10.0.0.1:34601","owner":"default/temp"}
//! ```
//!
//! Readers of the record ignore `owner` (the proxy's parser, the Go MetaProxy and the admin-cli
//! read only the fields they know). The operator reads it back to decide ownership: the route
//! that holds the znode keeps the table until it is deleted, across operator restarts.
//! Equal records with equal owners give equal bytes, so an unchanged route never rewrites its
//! znode.

use metaproxy::route::RouteRecord;
use serde_json::Value;

/// The JSON key naming the owner.
pub const OWNER_KEY: &str = "owner";

/// The bytes written to a table's znode: `record` owned by route `owner`.
pub fn to_json(record: &RouteRecord, owner: &str) -> Vec<u8> {
    let mut out = record.to_json();
    // to_json writes one object and ends with its closing brace; the owner goes before it.
    if out.last() == Some(&b'}') {
        out.pop();
        out.extend_from_slice(b",\"");
        out.extend_from_slice(OWNER_KEY.as_bytes());
        out.extend_from_slice(b"\":");
        out.extend_from_slice(Value::String(owner.to_owned()).to_string().as_bytes());
        out.push(b'}');
    }
    out
}

/// The owner a znode's data names, if it is a JSON object with a string `owner`.
pub fn owner(data: &[u8]) -> Option<String> {
    match serde_json::from_slice::<Value>(data).ok()?.get(OWNER_KEY)? {
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
}
