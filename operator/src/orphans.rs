//! The records of route files removed while the operator was down (routes-directory mode).
//!
//! A file removed while the operator runs has its znode deleted at once, as a finalizer would
//! ([`crate::routes_dir`]). One removed while it was stopped is in nothing a new process reads.
//! So every record written from a routes directory carries a marker beside its `owner` (the
//! file name): `"writer":"routes-dir:<id>"`, `<id>` being `--routes-dir-id`, by default the
//! directory's canonical path, the same for every operator over that directory. The owner
//! string is left as it was, so records written before the marker keep their ownership; they
//! get the marker when their route is next reconciled.
//!
//! At start-up and at every resync, the operator lists each zone's root and deletes the records
//! [`decide`] finds its own with no route file any more, each with a compare-and-set on the
//! version it read, so that a record rewritten meanwhile is not lost (it is judged again at the
//! next sweep). Only after the directory was read: an unreadable directory is not every file
//! removed.
//!
//! | record's writer | its owner's file | verdict |
//! |---|---|---|
//! | this directory's | gone | delete (log line, `routes_dir_orphans_deleted_total`) |
//! | this directory's | present (even unreadable or invalid) | keep: the route reconciles it |
//! | this directory's | not a file name | keep |
//! | another directory's, or none and not a record | | keep |
//! | none (a record from before the marker, by hand, by another tool) | | keep, logged once |
//!
//! A record whose switchover is still under way is deleted too: nothing can finish it without
//! its file, and a file removed while the operator runs is deleted in the middle of one the same
//! way. The log line names what is left behind (a fence on a cluster) for a person to lift.
//!
//! Kubernetes mode writes no marker and needs none: the finalizer deletes the znode before the
//! route object goes, whether or not the operator was running when it was deleted.

use std::collections::BTreeSet;
use std::path::Path;

use tracing::{info, warn};

use crate::reconcile::Reconciler;
use crate::reconcile::state::RouteState;
use crate::record;
use crate::zk::{ZkError, Znode};

/// What the writer marker of a routes directory starts with.
pub const WRITER_PREFIX: &str = "routes-dir:";

/// The writer marker of the routes directory `id`.
pub fn writer(id: &str) -> String {
    format!("{WRITER_PREFIX}{id}")
}

/// What to do with one znode below a zone's root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Ours, and its route file is gone: delete it at `version`. `left` says what the deletion
    /// leaves behind (a switchover under way, a fence), if anything.
    Delete {
        version: i32,
        file: String,
        left: Option<String>,
    },
    /// Ours, and its route file is there (or its owner names no file).
    Keep,
    /// Another writer's (another routes directory, Kubernetes mode, anything not a record).
    Foreign,
    /// A record with no marker: which directory wrote it cannot be told.
    Unmarked,
}

/// Whether `name` can be a route file's name (the owner of a routes-directory record).
fn is_file_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains('/') && !name.contains('\0')
}

/// Judges the znode `z` for the routes directory whose marker is `me`; `file_present` says
/// whether a route file of that name is in the directory.
pub fn decide(z: &Znode, me: &str, file_present: impl Fn(&str) -> bool) -> Verdict {
    match record::writer(&z.data) {
        Some(w) if w == me => {}
        Some(_) => return Verdict::Foreign,
        None if record::route(&z.data).is_some() => return Verdict::Unmarked,
        None => return Verdict::Foreign,
    }
    let Some(file) = record::owner(&z.data).filter(|o| is_file_name(o)) else {
        return Verdict::Keep;
    };
    if file_present(&file) {
        return Verdict::Keep;
    }
    Verdict::Delete {
        version: z.version,
        left: left_behind(&record::state(&z.data)),
        file,
    }
}

/// What deleting a record with `state` abandons, for the log.
fn left_behind(state: &RouteState) -> Option<String> {
    let mut left = Vec::new();
    if let Some(sw) = &state.switchover {
        left.push(format!(
            "a switchover from {} to {} in phase {:?}",
            sw.from_cluster, sw.to_cluster, sw.phase
        ));
        if sw.fence {
            left.push(format!(
                "a write fence that may be on {} (replica.deny_client_request)",
                sw.from_cluster
            ));
        }
    }
    if let Some(f) = &state.fenced {
        left.push(format!(
            "replica.deny_client_request={} on {}",
            f.value, f.cluster
        ));
    }
    (!left.is_empty()).then(|| left.join("; "))
}

/// Deletes the records of removed route files in every zone; returns how many were deleted.
/// `known` says whether a file name is one the directory loop knows (present, or removed and
/// being cleaned up by its own route); a name it does not know is looked up in `dir` again
/// right before judging, so that a file created since the scan is not taken for a removed one.
/// `unmarked` holds the paths already logged as impossible to clean up.
pub async fn sweep(
    reconciler: &Reconciler,
    dir: &Path,
    known: impl Fn(&str) -> bool,
    unmarked: &mut BTreeSet<String>,
) -> usize {
    let Some(me) = reconciler.writer() else {
        return 0;
    };
    let present = |name: &str| known(name) || dir.join(name).symlink_metadata().is_ok();
    let mut deleted = 0;
    for zone in reconciler.zones().iter() {
        let Some(store) = reconciler.store(&zone.name) else {
            continue;
        };
        let names = match store.children(&zone.root).await {
            Ok(n) => n,
            Err(e) => {
                warn!(zone = %zone.name, error = %e, "cannot list the records to clean up; trying again at the next resync");
                continue;
            }
        };
        for table in names {
            let path = zone.path_of(&table);
            let z = match store.read(&path).await {
                Ok(Some(z)) => z,
                Ok(None) => continue,
                Err(e) => {
                    warn!(%path, error = %e, "cannot read a record to clean up");
                    continue;
                }
            };
            match decide(&z, me, present) {
                Verdict::Delete {
                    version,
                    file,
                    left,
                } => match store.delete(&path, version).await {
                    Ok(()) => {
                        deleted += 1;
                        reconciler.metrics.orphans_deleted.inc();
                        match left {
                            None => {
                                info!(zone = %zone.name, %table, %file, %path, "deleted the record of a route file removed while the operator was down")
                            }
                            Some(left) => {
                                warn!(zone = %zone.name, %table, %file, %path, "deleted the record of a route file removed while the operator was down, leaving {left}")
                            }
                        }
                    }
                    Err(ZkError::LostRace { .. }) => {
                        info!(%path, "the record changed while being cleaned up; judged again at the next resync");
                    }
                    Err(e) => {
                        warn!(%path, error = %e, "cannot delete the record of a removed route file")
                    }
                },
                Verdict::Unmarked => {
                    if unmarked.insert(path.clone()) {
                        info!(zone = %zone.name, %table, %path, "a record without a writer marker: it cannot be told whether its route file was removed, so it is never cleaned up automatically");
                    }
                }
                Verdict::Keep | Verdict::Foreign => {}
            }
        }
    }
    deleted
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "routes-dir:/etc/routes";
    const RECORD: &str =
        r#""cluster":"c1","meta-addrs":["h:1"],"cluster_name":"c1","meta_addrs":"h:1""#;

    fn znode(rest: &str) -> Znode {
        Znode {
            data: format!("{{{RECORD}{rest}}}").into_bytes(),
            version: 4,
        }
    }

    #[test]
    fn the_verdicts() {
        let delete = |file: &str, left: Option<&str>| Verdict::Delete {
            version: 4,
            file: file.into(),
            left: left.map(str::to_owned),
        };
        let switching = r#","state":{"switchover":{"from":"primary","to":"backup","fromCluster":"c1","toCluster":"c2","phase":"draining","startedAt":1,"since":2,"fence":true}}"#;
        let fenced = r#","state":{"fenced":{"cluster":"c0","value":"reconfig*all"}}"#;
        // (what, the znode's data after the record, files present, verdict)
        let cases: Vec<(&str, String, &[&str], Verdict)> = vec![
            (
                "ours, file gone",
                format!(r#","owner":"a.yaml","writer":"{ME}""#),
                &["b.yaml"],
                delete("a.yaml", None),
            ),
            (
                "ours, file present",
                format!(r#","owner":"a.yaml","writer":"{ME}""#),
                &["a.yaml"],
                Verdict::Keep,
            ),
            (
                "another routes directory's",
                r#","owner":"a.yaml","writer":"routes-dir:/srv/other""#.into(),
                &[],
                Verdict::Foreign,
            ),
            (
                "no marker: from before markers, or by hand",
                r#","owner":"a.yaml""#.into(),
                &[],
                Verdict::Unmarked,
            ),
            ("no marker, no owner", String::new(), &[], Verdict::Unmarked),
            (
                "ours, its owner no file name",
                format!(r#","owner":"ns/a","writer":"{ME}""#),
                &[],
                Verdict::Keep,
            ),
            (
                "ours, a dot file's name",
                format!(r#","owner":"..","writer":"{ME}""#),
                &[],
                Verdict::Keep,
            ),
            (
                "ours, no owner",
                format!(r#","writer":"{ME}""#),
                &[],
                Verdict::Keep,
            ),
            (
                "ours, file gone in the middle of a switchover",
                format!(r#","owner":"a.yaml","writer":"{ME}"{switching}"#),
                &[],
                delete(
                    "a.yaml",
                    Some(
                        "a switchover from c1 to c2 in phase Draining; a write fence that may be \
                         on c1 (replica.deny_client_request)",
                    ),
                ),
            ),
            (
                "ours, file gone, a fence left by the last switchover",
                format!(r#","owner":"a.yaml","writer":"{ME}"{fenced}"#),
                &[],
                delete(
                    "a.yaml",
                    Some("replica.deny_client_request=reconfig*all on c0"),
                ),
            ),
        ];
        for (what, rest, files, want) in cases {
            let got = decide(&znode(&rest), ME, |f| files.contains(&f));
            assert_eq!(got, want, "{what}");
        }
        let not_a_record = Znode {
            data: b"hello".to_vec(),
            version: 0,
        };
        assert_eq!(decide(&not_a_record, ME, |_| false), Verdict::Foreign);
    }

    /// The sweep over an in-memory store: what it deletes and what it leaves, the unmarked
    /// record noted once.
    #[tokio::test]
    async fn the_sweep_deletes_only_its_removed_files_records() {
        use std::collections::BTreeMap;
        use std::sync::Arc;

        use crate::metrics::Metrics;
        use crate::zk::Records;
        use crate::zk::memory::MemoryRecords;
        use crate::zone::{Zone, Zones};

        let zk = Arc::new(MemoryRecords::default());
        let zones =
            Zones::new(vec![Zone::parse("az1=127.0.0.1:1/r").expect("zone")], None).expect("zones");
        let stores: BTreeMap<String, Arc<dyn Records>> =
            BTreeMap::from([("az1".to_owned(), zk.clone() as Arc<dyn Records>)]);
        let reconciler = Reconciler::with_stores(zones, stores, Arc::new(Metrics::new()))
            .writing_as(Some(ME.into()));
        let put = |table: &str, rest: &str| zk.put(&format!("/r/{table}"), &znode(rest).data);
        put("gone", &format!(r#","owner":"gone.yaml","writer":"{ME}""#));
        put("kept", &format!(r#","owner":"kept.yaml","writer":"{ME}""#));
        put(
            "fresh",
            &format!(r#","owner":"fresh.yaml","writer":"{ME}""#),
        );
        put("other", r#","owner":"gone.yaml","writer":"routes-dir:x""#);
        put("old", r#","owner":"gone.yaml""#);
        zk.put(
            "/elsewhere/gone",
            &znode(&format!(r#","owner":"gone.yaml","writer":"{ME}""#)).data,
        );
        let dir = tempfile::tempdir().expect("dir");
        // Created after the scan: not known to the loop, but in the directory.
        std::fs::write(dir.path().join("fresh.yaml"), "").expect("write");
        let mut unmarked = BTreeSet::new();
        let known = |n: &str| n == "kept.yaml";
        let deleted = sweep(&reconciler, dir.path(), known, &mut unmarked).await;
        assert_eq!(deleted, 1);
        assert_eq!(zk.get("/r/gone"), None);
        for kept in [
            "/r/kept",
            "/r/fresh",
            "/r/other",
            "/r/old",
            "/elsewhere/gone",
        ] {
            assert!(zk.get(kept).is_some(), "{kept}");
        }
        assert_eq!(unmarked, BTreeSet::from(["/r/old".to_owned()]));
        assert_eq!(reconciler.metrics.orphans_deleted.get(), 1);
        // A second sweep finds nothing more; ZooKeeper down is only a log line.
        assert_eq!(
            sweep(&reconciler, dir.path(), known, &mut unmarked).await,
            0
        );
        zk.set_down(true);
        assert_eq!(
            sweep(&reconciler, dir.path(), known, &mut unmarked).await,
            0
        );
        // Without a marker of its own (Kubernetes mode) it does nothing.
        zk.set_down(false);
        put("gone", &format!(r#","owner":"gone.yaml","writer":"{ME}""#));
        let unmarking = Reconciler::with_stores(
            Zones::new(vec![Zone::parse("az1=127.0.0.1:1/r").expect("zone")], None).expect("zones"),
            BTreeMap::from([("az1".to_owned(), zk.clone() as Arc<dyn Records>)]),
            Arc::new(Metrics::new()),
        );
        assert_eq!(sweep(&unmarking, dir.path(), known, &mut unmarked).await, 0);
        assert!(zk.get("/r/gone").is_some());
    }
}
