//! Zones: each proxy set reads its routes from one ZooKeeper ensemble under one root. A route is
//! written under its zone's root only, so two availability zones can route the same table to
//! different clusters with one resource each.
//!
//! On the command line a zone is `NAME=HOSTS/ROOT`, for example
//! `az1=10.0.0.5:2181,10.0.0.6:2181/metaproxy/c3srv-pegasus`: the root starts at the first `/`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// One zone: where its proxies read their routes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    pub name: String,
    /// The ZooKeeper connect string, `host:port[,host:port...]`.
    pub hosts: String,
    /// The absolute path under which the tables' records live, without a trailing `/`.
    pub root: String,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ZoneError {
    #[error("zone {0:?}: expected NAME=HOSTS/ROOT, e.g. az1=127.0.0.1:2181/metaproxy/c3srv")]
    Syntax(String),
    #[error("zone name {0:?}: use 1-63 letters, digits, '-' or '_'")]
    BadName(String),
    #[error("zone {zone}: invalid ZooKeeper address {addr:?}")]
    BadHosts { zone: String, addr: String },
    #[error("zone {zone}: invalid root {root:?}: an absolute ZooKeeper path is needed")]
    BadRoot { zone: String, root: String },
    #[error("zone {0} is configured twice")]
    Duplicate(String),
    #[error("no zone is configured (--zone NAME=HOSTS/ROOT)")]
    None,
    #[error("the default zone {0:?} is not configured")]
    UnknownDefault(String),
    #[error("{0} zones are configured: say which is the default (--default-zone)")]
    NoDefault(usize),
}

impl Zone {
    /// Parses `NAME=HOSTS/ROOT`.
    pub fn parse(s: &str) -> Result<Zone, ZoneError> {
        let (name, rest) = s
            .split_once('=')
            .ok_or_else(|| ZoneError::Syntax(s.to_owned()))?;
        let slash = rest
            .find('/')
            .ok_or_else(|| ZoneError::Syntax(s.to_owned()))?;
        Zone::new(name, &rest[..slash], &rest[slash..])
    }

    /// Builds a zone and checks each part.
    pub fn new(name: &str, hosts: &str, root: &str) -> Result<Zone, ZoneError> {
        let name = name.trim();
        if !name_ok(name) {
            return Err(ZoneError::BadName(name.to_owned()));
        }
        let hosts: Vec<&str> = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .collect();
        if hosts.is_empty() {
            return Err(ZoneError::BadHosts {
                zone: name.to_owned(),
                addr: String::new(),
            });
        }
        for h in &hosts {
            metaproxy::route::validate_meta_addr(h).map_err(|_| ZoneError::BadHosts {
                zone: name.to_owned(),
                addr: (*h).to_owned(),
            })?;
        }
        let root = root.trim();
        let trimmed = root.trim_end_matches('/');
        let bad_root = || ZoneError::BadRoot {
            zone: name.to_owned(),
            root: root.to_owned(),
        };
        // Not `/` itself: a table named `zookeeper` would land on ZooKeeper's reserved node, and
        // the proxy refuses such a root too.
        if !root.starts_with('/') || trimmed.is_empty() {
            return Err(bad_root());
        }
        if !trimmed[1..].split('/').all(path_component_ok) {
            return Err(bad_root());
        }
        Ok(Zone {
            name: name.to_owned(),
            hosts: hosts.join(","),
            root: trimmed.to_owned(),
        })
    }

    /// The znode of a table's record.
    pub fn path_of(&self, table: &str) -> String {
        format!("{}/{}", self.root, table)
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let root = if self.root.is_empty() {
            "/"
        } else {
            &self.root
        };
        write!(f, "{}={}{}", self.name, self.hosts, root)
    }
}

fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn path_component_ok(c: &str) -> bool {
    !c.is_empty()
        && c != "."
        && c != ".."
        && c != "zookeeper"
        && !c.chars().any(|ch| ch.is_control())
}

/// The configured zones and which one routes without a `zone` go to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zones {
    zones: BTreeMap<String, Zone>,
    default: String,
}

impl Zones {
    /// Checks that names are unique and the default exists. With one zone, it is the default.
    pub fn new(zones: Vec<Zone>, default: Option<String>) -> Result<Zones, ZoneError> {
        let mut map = BTreeMap::new();
        for z in zones {
            if map.contains_key(&z.name) {
                return Err(ZoneError::Duplicate(z.name));
            }
            map.insert(z.name.clone(), z);
        }
        let default = match default {
            Some(d) if map.contains_key(&d) => d,
            Some(d) => return Err(ZoneError::UnknownDefault(d)),
            None if map.len() == 1 => map.keys().next().cloned().ok_or(ZoneError::None)?,
            None if map.is_empty() => return Err(ZoneError::None),
            None => return Err(ZoneError::NoDefault(map.len())),
        };
        Ok(Zones {
            zones: map,
            default,
        })
    }

    /// The zone a route names, or the default zone.
    pub fn resolve(&self, name: Option<&str>) -> Option<&Zone> {
        self.zones.get(name.unwrap_or(&self.default))
    }

    pub fn default_name(&self) -> &str {
        &self.default
    }

    pub fn iter(&self) -> impl Iterator<Item = &Zone> {
        self.zones.values()
    }

    pub fn get(&self, name: &str) -> Option<&Zone> {
        self.zones.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_name_hosts_root() {
        let z = Zone::parse("az1=127.0.0.1:2181,zk-1.zk:2181/metaproxy/c3srv/").expect("parses");
        assert_eq!(z.name, "az1");
        assert_eq!(z.hosts, "127.0.0.1:2181,zk-1.zk:2181");
        assert_eq!(z.root, "/metaproxy/c3srv");
        assert_eq!(z.path_of("temp"), "/metaproxy/c3srv/temp");
        assert_eq!(
            z.to_string(),
            "az1=127.0.0.1:2181,zk-1.zk:2181/metaproxy/c3srv"
        );
    }

    #[test]
    fn refuses_bad_zones() {
        let cases = [
            ("az1", ZoneError::Syntax("az1".into())),
            ("az1=h:1", ZoneError::Syntax("az1=h:1".into())),
            ("=h:1/r", ZoneError::BadName(String::new())),
            ("a z=h:1/r", ZoneError::BadName("a z".into())),
            (
                "az1=/r",
                ZoneError::BadHosts {
                    zone: "az1".into(),
                    addr: String::new(),
                },
            ),
            (
                "az1=h/r",
                ZoneError::BadHosts {
                    zone: "az1".into(),
                    addr: "h".into(),
                },
            ),
            (
                "az1=h:1/",
                ZoneError::BadRoot {
                    zone: "az1".into(),
                    root: "/".into(),
                },
            ),
            (
                "az1=h:1/a//b",
                ZoneError::BadRoot {
                    zone: "az1".into(),
                    root: "/a//b".into(),
                },
            ),
            (
                "az1=h:1/a/../b",
                ZoneError::BadRoot {
                    zone: "az1".into(),
                    root: "/a/../b".into(),
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(Zone::parse(input), Err(expected), "{input}");
        }
    }

    #[test]
    fn default_zone_rules() {
        let a = Zone::parse("a=h:1/r").expect("a");
        let b = Zone::parse("b=h:1/s").expect("b");
        let one = Zones::new(vec![a.clone()], None).expect("single zone is the default");
        assert_eq!(one.resolve(None).map(|z| z.name.as_str()), Some("a"));
        assert_eq!(
            Zones::new(vec![a.clone(), b.clone()], None),
            Err(ZoneError::NoDefault(2))
        );
        assert_eq!(Zones::new(vec![], None), Err(ZoneError::None));
        assert_eq!(
            Zones::new(vec![a.clone(), a.clone()], None),
            Err(ZoneError::Duplicate("a".into()))
        );
        assert_eq!(
            Zones::new(vec![a.clone()], Some("x".into())),
            Err(ZoneError::UnknownDefault("x".into()))
        );
        let two = Zones::new(vec![a, b], Some("b".into())).expect("two");
        assert_eq!(two.resolve(None).map(|z| z.root.as_str()), Some("/s"));
        assert_eq!(two.resolve(Some("a")).map(|z| z.root.as_str()), Some("/r"));
        assert!(two.resolve(Some("c")).is_none());
    }
}
