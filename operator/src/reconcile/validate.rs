//! Validate: a route's spec, checked against the operator's zones, becomes a [`Target`] (the
//! znode, and the records of its clusters) or the reason it cannot. Pure. Which cluster is
//! active is [`crate::reconcile::decide`]'s business, not this module's.
//!
//! The API server checks most of this already from the CRD schema; routes read from files are
//! not checked by anyone else, and zones are known only to the operator.

use metaproxy::route::{RouteRecord, valid_table_name, validate_meta_addr};

use crate::crd::{ActiveCluster, ClusterRef, FailoverMode, PegasusTableRouteSpec};
use crate::zone::Zones;

/// A valid route: where its record goes, and the records it may write there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub zone: String,
    pub table: String,
    /// `<root>/<table>`.
    pub path: String,
    /// The record routing to the primary cluster.
    pub primary: RouteRecord,
    /// The record routing to the backup cluster, if the route has one.
    pub backup: Option<RouteRecord>,
    /// The cluster the spec asks for (a backup exists when this is `Backup`).
    pub active: ActiveCluster,
    pub mode: FailoverMode,
}

impl Target {
    /// The record routing to `active` (the primary when there is no backup).
    pub fn record(&self, active: ActiveCluster) -> &RouteRecord {
        match (active, &self.backup) {
            (ActiveCluster::Backup, Some(backup)) => backup,
            _ => &self.primary,
        }
    }
}

/// Where a route that is going away (deleted, or moved to another table or zone) had its record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removal {
    pub zone: String,
    pub table: String,
    /// `<root>/<table>`.
    pub path: String,
    /// The records the route may have written there, when its spec is still valid: a znode
    /// without an owner that holds one of them is taken for this route's.
    pub records: Vec<RouteRecord>,
}

impl Removal {
    /// The place a target's record goes, for when the route leaves it.
    pub fn of(target: &Target) -> Removal {
        Removal {
            zone: target.zone.clone(),
            table: target.table.clone(),
            path: target.path.clone(),
            records: std::iter::once(target.primary.clone())
                .chain(target.backup.clone())
                .collect(),
        }
    }
}

fn record_of(c: &ClusterRef) -> Result<RouteRecord, Invalid> {
    RouteRecord::new(c.cluster.trim(), c.meta_servers.iter().map(String::as_str))
        .map_err(|e| Invalid::Spec(e.to_string()))
}

/// Why a route cannot be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// The spec is wrong on its own.
    Spec(String),
    /// The spec names a zone this operator does not serve.
    UnknownZone(String),
}

fn check_cluster(role: &str, c: &ClusterRef) -> Result<(), Invalid> {
    if c.cluster.trim().is_empty() {
        return Err(Invalid::Spec(format!("{role}.cluster is empty")));
    }
    if c.meta_servers.is_empty() {
        return Err(Invalid::Spec(format!(
            "{role}.metaServers is empty: list host:port addresses"
        )));
    }
    for addr in &c.meta_servers {
        if validate_meta_addr(addr).is_err() {
            return Err(Invalid::Spec(format!(
                "{role}.metaServers: {addr:?} is not host:port"
            )));
        }
    }
    Ok(())
}

/// Checks the spec and resolves its zone.
pub fn validate(spec: &PegasusTableRouteSpec, zones: &Zones) -> Result<Target, Invalid> {
    // The proxy's rule, so that the operator never writes a record the proxy refuses to read.
    if !valid_table_name(&spec.table) {
        return Err(Invalid::Spec(format!(
            "table {:?} is not a Pegasus table name (1 to 256 of 0-9a-zA-Z.:_, not . or ..)",
            spec.table
        )));
    }
    check_cluster("primary", &spec.primary)?;
    if let Some(backup) = &spec.backup {
        check_cluster("backup", backup)?;
        if backup.cluster == spec.primary.cluster {
            return Err(Invalid::Spec(
                "primary and backup must be different clusters".into(),
            ));
        }
    }
    if spec.active == ActiveCluster::Backup && spec.backup.is_none() {
        return Err(Invalid::Spec(
            "active: backup needs a backup cluster".into(),
        ));
    }
    let zone = zones.resolve(spec.zone.as_deref()).ok_or_else(|| {
        Invalid::UnknownZone(format!(
            "zone {:?} is not one of this operator's zones ({})",
            spec.zone.as_deref().unwrap_or_default(),
            zones
                .iter()
                .map(|z| z.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    Ok(Target {
        zone: zone.name.clone(),
        table: spec.table.clone(),
        path: zone.path_of(&spec.table),
        primary: record_of(&spec.primary)?,
        backup: spec.backup.as_ref().map(record_of).transpose()?,
        active: spec.active,
        mode: spec.failover.mode,
    })
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::zone::Zone;

    /// One row of `fixtures/validate.yaml`.
    #[derive(Deserialize)]
    struct Case {
        name: String,
        spec: PegasusTableRouteSpec,
        expect: Expect,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", rename_all_fields = "camelCase")]
    enum Expect {
        Ok {
            zone: String,
            path: String,
            primary: RecordFixture,
            #[serde(default)]
            backup: Option<RecordFixture>,
            #[serde(default)]
            active: ActiveCluster,
            #[serde(default)]
            mode: FailoverMode,
        },
        InvalidSpec(String),
        UnknownZone(String),
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "camelCase")]
    struct RecordFixture {
        cluster: String,
        meta_addrs: Vec<String>,
    }

    fn fixture(r: &RouteRecord) -> RecordFixture {
        RecordFixture {
            cluster: r.cluster.clone(),
            meta_addrs: r.meta_addrs.clone(),
        }
    }

    #[test]
    fn validate_fixtures() {
        let zones = Zones::new(
            vec![
                Zone::parse("az1=127.0.0.1:2181/metaproxy/az1").expect("az1"),
                Zone::parse("az2=127.0.0.1:2182/metaproxy/az2").expect("az2"),
            ],
            Some("az1".into()),
        )
        .expect("zones");
        let cases: Vec<Case> =
            serde_saphyr::from_str(include_str!("fixtures/validate.yaml")).expect("fixtures parse");
        assert!(cases.len() >= 8, "the fixture file lost its cases");
        for case in cases {
            let got = validate(&case.spec, &zones);
            match (&got, &case.expect) {
                (
                    Ok(t),
                    Expect::Ok {
                        zone,
                        path,
                        primary,
                        backup,
                        active,
                        mode,
                    },
                ) => {
                    assert_eq!((&t.zone, &t.path), (zone, path), "{}", case.name);
                    assert_eq!(&fixture(&t.primary), primary, "{}", case.name);
                    assert_eq!(&t.backup.as_ref().map(fixture), backup, "{}", case.name);
                    assert_eq!((&t.active, &t.mode), (active, mode), "{}", case.name);
                    assert_eq!(
                        Removal::of(t).records.len(),
                        1 + usize::from(backup.is_some())
                    );
                }
                (Err(Invalid::Spec(m)), Expect::InvalidSpec(want))
                | (Err(Invalid::UnknownZone(m)), Expect::UnknownZone(want)) => {
                    assert!(
                        m.contains(want.as_str()),
                        "{}: {m:?} should mention {want:?}",
                        case.name
                    );
                }
                _ => panic!("{}: got {got:?}", case.name),
            }
        }
    }
}
