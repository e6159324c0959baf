//! The ZooKeeper route record at `<root>/<table>`: which cluster serves a table and where its
//! MetaServers are. Two JSON spellings exist and both are read (docs/architecture.md §4):
//!
//! ```text
//!  design spelling   {"cluster": "c3srv-ad", "meta-addrs": ["10.0.0.1:34601", "meta-1:34601"]}
//!  Go spelling       {"cluster_name": "c3srv-ad", "meta_addrs": "10.0.0.1:34601,meta-1:34601"}
//! ```
//!
//! The operator writes both in one object so that this proxy, the Go MetaProxy and the Pegasus
//! admin-cli all read the same node.

use std::fmt;

use serde_json::{Map, Value};
use thiserror::Error;

/// A table's route: its cluster and that cluster's MetaServers (`host:port`, resolved through DNS
/// when connecting).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RouteRecord {
    pub cluster: String,
    pub meta_addrs: Vec<String>,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RecordError {
    #[error("route record is not JSON: {0}")]
    NotJson(String),
    #[error("route record is not a JSON object")]
    NotAnObject,
    #[error("route record has no cluster (neither \"cluster\" nor \"cluster_name\")")]
    NoCluster,
    #[error("route record has no meta addresses (neither \"meta-addrs\" nor \"meta_addrs\")")]
    NoMetaAddrs,
    #[error("route record field {field:?} has the wrong type: {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("route record spellings disagree: {design} vs {go}")]
    SpellingsDisagree { design: String, go: String },
    #[error("invalid meta address {0:?}: expected host:port")]
    BadMetaAddr(String),
    #[error("invalid cluster name {0:?}")]
    BadCluster(String),
}

impl RecordError {
    /// A fixed, small label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            RecordError::NotJson(_) | RecordError::NotAnObject => "bad_json",
            RecordError::NoCluster | RecordError::NoMetaAddrs => "missing_field",
            RecordError::WrongType { .. } => "wrong_type",
            RecordError::SpellingsDisagree { .. } => "spellings_disagree",
            RecordError::BadMetaAddr(_) | RecordError::BadCluster(_) => "bad_value",
        }
    }
}

impl RouteRecord {
    /// Builds a record, checking the cluster name and every address.
    pub fn new(
        cluster: impl Into<String>,
        meta_addrs: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Self, RecordError> {
        let record = RouteRecord {
            cluster: cluster.into(),
            meta_addrs: meta_addrs.into_iter().map(Into::into).collect(),
        };
        record.validate()?;
        Ok(record)
    }

    fn validate(&self) -> Result<(), RecordError> {
        if self.cluster.trim().is_empty() || self.cluster.len() > 253 {
            return Err(RecordError::BadCluster(self.cluster.clone()));
        }
        if self.meta_addrs.is_empty() {
            return Err(RecordError::NoMetaAddrs);
        }
        for addr in &self.meta_addrs {
            validate_meta_addr(addr)?;
        }
        Ok(())
    }

    /// Parses a znode's data, in either spelling or both.
    pub fn parse(data: &[u8]) -> Result<Self, RecordError> {
        let value: Value =
            serde_json::from_slice(data).map_err(|e| RecordError::NotJson(e.to_string()))?;
        Self::from_value(&value)
    }

    /// Reads a record from a JSON value. The cluster may be under `cluster` or `cluster_name`, the
    /// addresses under `meta-addrs` or `meta_addrs`, as a list or a comma-separated string; when
    /// both keys of a pair are present they must agree.
    pub fn from_value(value: &Value) -> Result<Self, RecordError> {
        let obj = value.as_object().ok_or(RecordError::NotAnObject)?;
        let cluster =
            pick(obj, "cluster", "cluster_name", read_cluster)?.ok_or(RecordError::NoCluster)?;
        let meta_addrs =
            pick(obj, "meta-addrs", "meta_addrs", read_addrs)?.ok_or(RecordError::NoMetaAddrs)?;
        let record = RouteRecord {
            cluster,
            meta_addrs,
        };
        record.validate()?;
        Ok(record)
    }

    /// The JSON the operator writes: both spellings in one object, keys in a fixed order so that
    /// equal records give equal bytes.
    pub fn to_json(&self) -> Vec<u8> {
        // Built by hand: serde_json orders object keys alphabetically unless `preserve_order`.
        let mut out = String::with_capacity(64 + self.meta_addrs.len() * 24);
        out.push_str("{\"cluster\":");
        out.push_str(&json_string(&self.cluster));
        out.push_str(",\"meta-addrs\":[");
        for (i, a) in self.meta_addrs.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&json_string(a));
        }
        out.push_str("],\"cluster_name\":");
        out.push_str(&json_string(&self.cluster));
        out.push_str(",\"meta_addrs\":");
        out.push_str(&json_string(&self.meta_addrs.join(",")));
        out.push('}');
        out.into_bytes()
    }
}

impl fmt::Display for RouteRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.cluster, self.meta_addrs.join(","))
    }
}

fn json_string(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// The value under `design` or `go` (the two spellings of one field); both must agree.
fn pick<T: PartialEq + fmt::Debug>(
    obj: &Map<String, Value>,
    design: &'static str,
    go: &'static str,
    read: fn(&Value, &'static str) -> Result<T, RecordError>,
) -> Result<Option<T>, RecordError> {
    let d = obj.get(design).map(|v| read(v, design)).transpose()?;
    let g = obj.get(go).map(|v| read(v, go)).transpose()?;
    match (d, g) {
        (Some(d), Some(g)) if d != g => Err(RecordError::SpellingsDisagree {
            design: format!("{design}={d:?}"),
            go: format!("{go}={g:?}"),
        }),
        (Some(v), _) | (None, Some(v)) => Ok(Some(v)),
        (None, None) => Ok(None),
    }
}

fn read_cluster(v: &Value, field: &'static str) -> Result<String, RecordError> {
    v.as_str()
        .map(|s| s.trim().to_owned())
        .ok_or(RecordError::WrongType {
            field,
            expected: "a string",
        })
}

fn read_addrs(v: &Value, field: &'static str) -> Result<Vec<String>, RecordError> {
    let wrong = RecordError::WrongType {
        field,
        expected: "a list of strings or a comma-separated string",
    };
    match v {
        Value::String(s) => Ok(s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()),
        Value::Array(items) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(|s| s.trim().to_owned())
                    .ok_or_else(|| wrong.clone())
            })
            .collect(),
        _ => Err(wrong),
    }
}

/// Whether `name` is a Pegasus table name as the MetaServer's DDL accepts it: `0-9a-zA-Z.:_`,
/// 1..=256 characters. Also the guard that keeps a name from escaping the ZooKeeper root.
pub fn valid_table_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':'))
}

/// Checks a `host:port` meta address: a port in 1..=65535 and a plausible host (an IPv4 address
/// or a DNS name).
pub fn validate_meta_addr(addr: &str) -> Result<(), RecordError> {
    let bad = || RecordError::BadMetaAddr(addr.to_owned());
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 || host.is_empty() || host.len() > 253 {
        return Err(bad());
    }
    let host_ok = host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if !host_ok {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_design_spelling() {
        let r = RouteRecord::parse(br#"{"cluster": "c3srv-ad", "meta-addrs": ["127.0.0.1:34601", "meta-1.pegasus:34601"]}"#)
            .expect("parses");
        assert_eq!(r.cluster, "c3srv-ad");
        assert_eq!(r.meta_addrs, ["127.0.0.1:34601", "meta-1.pegasus:34601"]);
    }

    /// The operator writes its own fields beside the record (`owner`, `writer`, `state`):
    /// the proxy reads past them, whatever they hold.
    #[test]
    fn ignores_the_fields_it_does_not_know() {
        let r = RouteRecord::parse(
            br#"{"cluster":"c1","meta-addrs":["h:1"],"cluster_name":"c1","meta_addrs":"h:1","owner":"t.yaml","writer":"routes-dir:/etc/routes","state":{"flippedAt":5},"later":[null,{"x":1}]}"#,
        )
        .expect("parses");
        assert_eq!(r, RouteRecord::new("c1", ["h:1"]).expect("record"));
    }

    #[test]
    fn reads_the_go_spelling() {
        let r = RouteRecord::parse(
            br#"{"cluster_name":"c3srv-ad","meta_addrs":"127.0.0.1:34601, 127.0.0.1:34602,"}"#,
        )
        .expect("parses");
        assert_eq!(
            r,
            RouteRecord::new("c3srv-ad", ["127.0.0.1:34601", "127.0.0.1:34602"]).expect("valid")
        );
    }

    #[test]
    fn writes_both_spellings_and_reads_them_back() {
        let r = RouteRecord::new("c1", ["10.0.0.1:34601", "meta-0.pegasus:34601"]).expect("valid");
        let json = r.to_json();
        assert_eq!(
            std::str::from_utf8(&json).expect("utf8"),
            r#"{"cluster":"c1","meta-addrs":["10.0.0.1:34601","meta-0.pegasus:34601"],"cluster_name":"c1","meta_addrs":"10.0.0.1:34601,meta-0.pegasus:34601"}"#
        );
        assert_eq!(RouteRecord::parse(&json).expect("parses"), r);
        let v: Value = serde_json::from_slice(&json).expect("json");
        assert_eq!(v["meta_addrs"], "10.0.0.1:34601,meta-0.pegasus:34601");
    }

    #[test]
    fn rejects_bad_records_with_a_reason() {
        let cases: &[(&[u8], RecordError)] = &[
            (b"not json", RecordError::NotJson(String::new())),
            (b"[1,2]", RecordError::NotAnObject),
            (br#"{"app_id": 3}"#, RecordError::NoCluster),
            (br#"{"cluster": "c"}"#, RecordError::NoMetaAddrs),
            (br#"{"meta_addrs": "h:1"}"#, RecordError::NoCluster),
            (
                br#"{"cluster": "c", "meta-addrs": []}"#,
                RecordError::NoMetaAddrs,
            ),
            (
                br#"{"cluster": 7, "meta-addrs": ["a:1"]}"#,
                RecordError::WrongType {
                    field: "cluster",
                    expected: "a string",
                },
            ),
            (
                br#"{"cluster": "c", "meta-addrs": ["nohost"]}"#,
                RecordError::BadMetaAddr("nohost".into()),
            ),
            (
                br#"{"cluster": "c", "meta-addrs": ["h:0"]}"#,
                RecordError::BadMetaAddr("h:0".into()),
            ),
            (
                br#"{"cluster": "c", "meta-addrs": ["h:70000"]}"#,
                RecordError::BadMetaAddr("h:70000".into()),
            ),
            (
                br#"{"cluster": "", "meta-addrs": ["h:1"]}"#,
                RecordError::BadCluster(String::new()),
            ),
        ];
        for (data, expected) in cases {
            let err = RouteRecord::parse(data).expect_err("rejected");
            match (&err, expected) {
                (RecordError::NotJson(_), RecordError::NotJson(_)) => {}
                _ => assert_eq!(&err, expected, "{}", String::from_utf8_lossy(data)),
            }
        }
    }

    #[test]
    fn table_names() {
        for ok in ["temp", "a.b:c_1", "T"] {
            assert!(valid_table_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "../x", "a-b", "a b", &"x".repeat(257)] {
            assert!(!valid_table_name(bad), "{bad}");
        }
    }

    #[test]
    fn mixed_keys_are_read() {
        let r = RouteRecord::parse(br#"{"cluster": "c", "meta_addrs": ["h:1", "h:2"]}"#)
            .expect("parses");
        assert_eq!(r, RouteRecord::new("c", ["h:1", "h:2"]).expect("valid"));
    }

    #[test]
    fn disagreeing_spellings_are_an_error() {
        let err = RouteRecord::parse(
            br#"{"cluster":"a","meta-addrs":["h:1"],"cluster_name":"b","meta_addrs":"h:1"}"#,
        )
        .expect_err("rejected");
        assert_eq!(err.metric_label(), "spellings_disagree");
    }
}
