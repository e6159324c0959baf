//! `--routes-dir`: the reconciler run over a directory of PegasusTableRoute YAML files, for
//! Pegasus deployments without Kubernetes and for the local demo.
//!
//! The directory is scanned every `poll`. A new file is reconciled at once; a changed file too;
//! a removed file has its znode deleted, as a finalizer would. When each route is reconciled
//! again (resync, conflict re-check, backoff, a changed znode) is [`schedule`]'s policy, the
//! same as in Kubernetes mode. Status goes to the log (one line when it changes) and to
//! `/routes` on the admin port.
//!
//! Files are `*.yaml` / `*.yml` (dot files ignored), one resource each, checked like the API
//! server checks a resource ([`crate::route_file`]). Only regular files are read (a symlink is
//! followed to a regular file only), at most [`MAX_FILE_BYTES`]; anything else is an error shown
//! in `/routes`. A file's id is its name. Ownership of a table is kept in its znode; files that
//! claim a table nobody holds are taken in name order ([`crate::reconcile::decide`]). A file
//! that stops parsing or cannot be read keeps its last good spec until fixed. A file removed
//! while the operator was stopped is found from its record at the next start (and at every
//! resync): the records written from the directory carry a writer marker, and those whose file
//! is gone are deleted ([`crate::orphans`]).
//!
//! SIGTERM interrupts the pass in progress, ZooKeeper waits included.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::admin::RoutesView;
use crate::crd::{PegasusTableRoute, PegasusTableRouteStatus};
use crate::drift::{self, Touched};
use crate::orphans;
use crate::reconcile::schedule::{self, Timing};
use crate::reconcile::{Reconciler, RouteView, claim_of, now_rfc3339, status};
use crate::route_file;

/// The largest route file read.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Route files have no creation time that survives restarts: they are equally old, and the name
/// decides between them.
const FILE_CREATED_MS: i64 = 0;

struct Entry {
    content: Vec<u8>,
    route: Option<PegasusTableRoute>,
    /// Why the file's current content is not in use (cannot be read, does not parse).
    error: Option<String>,
    generation: i64,
    status: Option<PegasusTableRouteStatus>,
    removed: bool,
    failures: u32,
    due: Instant,
}

impl Entry {
    fn new(now: Instant) -> Entry {
        Entry {
            content: Vec::new(),
            route: None,
            error: None,
            generation: 0,
            status: None,
            removed: false,
            failures: 0,
            due: now,
        }
    }
}

/// Runs until `shutdown` turns true, even in the middle of a pass. `routes` receives the
/// `/routes` view after every pass; `ready` is called after the first one.
pub async fn run(
    dir: PathBuf,
    reconciler: Arc<Reconciler>,
    poll: Duration,
    timing: Timing,
    routes: RoutesView,
    ready: impl FnOnce(),
    mut shutdown: watch::Receiver<bool>,
) {
    let (tx, mut touched) = mpsc::unbounded_channel();
    drift::spawn(reconciler.clone(), tx.clone(), shutdown.clone());
    tokio::spawn(reconciler.prober().clone().run(tx, shutdown.clone()));
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    let mut ready = Some(ready);
    let mut sweep_due = Instant::now();
    let mut unmarked = std::collections::BTreeSet::new();
    loop {
        let scanned = Instant::now();
        let read = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            read = scan(&dir, &mut entries) => read,
        };
        // The records of files removed while the operator was down: only after the directory
        // was read, and before the routes are reconciled (a new file's record is not in
        // ZooKeeper yet, and the directory is looked at again for names it does not know).
        if read && scanned >= sweep_due {
            let known = |name: &str| entries.contains_key(name);
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => break,
                _ = orphans::sweep(&reconciler, &dir, known, &mut unmarked) => {}
            }
            sweep_due = scanned + timing.resync;
        }
        if !reconcile_due(&reconciler, &mut entries, &timing, &mut shutdown).await {
            break;
        }
        routes.publish(view(&entries));
        if let Some(ready) = ready.take() {
            ready();
        }
        let wake = entries
            .values()
            .map(|e| e.due)
            .fold(scanned + poll, Instant::min);
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            _ = tokio::time::sleep_until(wake) => {}
            Some(t) = touched.recv() => {
                mark_touched(&reconciler, &mut entries, &t);
                while let Ok(t) = touched.try_recv() {
                    mark_touched(&reconciler, &mut entries, &t);
                }
            }
        }
    }
    info!("routes directory loop stopped");
}

fn is_route_file(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml"))
}

/// The content of a route file: a regular file (symlinks followed) of at most
/// [`MAX_FILE_BYTES`]. Opened without blocking, so that a FIFO or a device cannot hold the scan;
/// checked after opening, so that it cannot be swapped in between.
fn read_route_file(path: &Path) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot open: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot stat: {e}"))?;
    if !meta.file_type().is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{} bytes, more than the {MAX_FILE_BYTES} a route file may have",
            meta.len()
        ));
    }
    let mut content = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut content)
        .map_err(|e| format!("cannot read: {e}"))?;
    if content.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "more than the {MAX_FILE_BYTES} bytes a route file may have"
        ));
    }
    Ok(content)
}

/// Reads the directory into `entries`; `false` when it could not be read (nothing changed).
async fn scan(dir: &Path, entries: &mut BTreeMap<String, Entry>) -> bool {
    let mut seen = Vec::new();
    let mut reader = match tokio::fs::read_dir(dir).await {
        Ok(r) => r,
        Err(e) => {
            // Not the same as every file removed: keep the routes until the directory is back.
            warn!(dir = %dir.display(), error = %e, "cannot read the routes directory");
            return false;
        }
    };
    while let Ok(Some(item)) = reader.next_entry().await {
        let path = item.path();
        if !is_route_file(&path) {
            continue;
        }
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        let read = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || read_route_file(&path))
                .await
                .unwrap_or_else(|e| Err(format!("cannot read: {e}")))
        };
        // Present, even if unreadable: an unreadable file is not a removed one.
        seen.push(name.clone());
        let now = Instant::now();
        let e = entries
            .entry(name.clone())
            .or_insert_with(|| Entry::new(now));
        let was_removed = std::mem::take(&mut e.removed);
        match read {
            Ok(content) if content == e.content && e.error.is_none() && !was_removed => {}
            Ok(content) => {
                if content != e.content || was_removed {
                    e.generation += 1;
                }
                e.content = content;
                e.due = now;
                e.failures = 0;
                apply_parse(&name, e);
            }
            Err(reason) => {
                if e.error.as_deref() != Some(reason.as_str()) {
                    warn!(file = %name, error = %reason, "route file cannot be used; keeping its last good spec");
                    e.error = Some(reason);
                }
                if was_removed {
                    e.due = now;
                }
            }
        }
    }
    for (name, e) in entries.iter_mut() {
        if !e.removed && !seen.contains(name) {
            info!(file = %name, "route file removed");
            e.removed = true;
            e.due = Instant::now();
            e.failures = 0;
        }
    }
    true
}

fn apply_parse(name: &str, e: &mut Entry) {
    let parsed = std::str::from_utf8(&e.content)
        .map_err(|err| format!("not UTF-8: {err}"))
        .and_then(route_file::parse);
    match parsed {
        Ok(route) => {
            e.route = Some(route);
            e.error = None;
        }
        Err(err) => {
            warn!(file = %name, error = %err, "route file is invalid; keeping its last good spec");
            e.error = Some(err);
        }
    }
}

fn mark_touched(reconciler: &Reconciler, entries: &mut BTreeMap<String, Entry>, t: &Touched) {
    let now = Instant::now();
    for (name, e) in entries.iter_mut() {
        let Some(route) = &e.route else { continue };
        let Some(claim) = claim_of(name, FILE_CREATED_MS, &route.spec, reconciler.zones()) else {
            continue;
        };
        if schedule::wakes(t, &claim) {
            e.due = now;
        }
    }
}

/// Reconciles every route that is due. `false` when interrupted by `shutdown`.
async fn reconcile_due(
    reconciler: &Reconciler,
    entries: &mut BTreeMap<String, Entry>,
    timing: &Timing,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    loop {
        if *shutdown.borrow() {
            return false;
        }
        let now = Instant::now();
        let Some(name) = entries
            .iter()
            .find(|(_, e)| e.due <= now)
            .map(|(n, _)| n.clone())
        else {
            return true;
        };
        let claims: Vec<_> = entries
            .iter()
            .filter_map(|(n, e)| {
                claim_of(
                    n,
                    FILE_CREATED_MS,
                    &e.route.as_ref()?.spec,
                    reconciler.zones(),
                )
            })
            .collect();
        let Some(e) = entries.get_mut(&name) else {
            return true;
        };
        let Some(route) = e.route.clone() else {
            // Never parsed: nothing was written, and nothing to do until it parses.
            if e.removed {
                entries.remove(&name);
            } else {
                e.due = now + timing.resync;
            }
            continue;
        };
        let view = RouteView {
            id: &name,
            created_ms: FILE_CREATED_MS,
            generation: Some(e.generation),
            spec: &route.spec,
            status: e.status.as_ref(),
            deleting: e.removed,
        };
        let now = now_rfc3339();
        let report = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return false,
            report = reconciler.reconcile(&view, &claims, &now) => report,
        };
        if let Some((zone, table)) = &report.released {
            mark_touched(
                reconciler,
                entries,
                &Touched {
                    zone: zone.clone(),
                    table: Some(table.clone()),
                },
            );
        }
        let Some(e) = entries.get_mut(&name) else {
            continue;
        };
        if e.removed && report.cleaned_up {
            info!(file = %name, "route removed");
            entries.remove(&name);
            continue;
        }
        let settled = report.settled();
        if let Some(next) = report.status {
            log_status_change(&name, e.status.as_ref(), &next);
            e.status = Some(next);
        }
        let (wait, failures) = schedule::next(settled, e.failures, timing);
        e.failures = failures;
        e.due = Instant::now() + wait;
    }
}

fn log_status_change(
    file: &str,
    prev: Option<&PegasusTableRouteStatus>,
    next: &PegasusTableRouteStatus,
) {
    let key = |s: &PegasusTableRouteStatus| {
        s.conditions
            .iter()
            .map(|c| {
                (
                    c.type_.clone(),
                    c.status.clone(),
                    c.reason.clone(),
                    c.message.clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    if prev.map(key) == Some(key(next)) && prev.map(|p| p.znode_version) == Some(next.znode_version)
    {
        return;
    }
    let ready = next.condition(status::READY);
    info!(
        file,
        ready = ready.map(|c| c.status.as_str()).unwrap_or("Unknown"),
        reason = ready.map(|c| c.reason.as_str()).unwrap_or(""),
        znode = next.znode.as_deref().unwrap_or(""),
        version = next.znode_version.unwrap_or(-1),
        active = next.active_cluster.as_deref().unwrap_or(""),
        "route status: {}",
        ready.map(|c| c.message.as_str()).unwrap_or("")
    );
}

fn view(entries: &BTreeMap<String, Entry>) -> serde_json::Value {
    entries
        .iter()
        .map(|(name, e)| {
            json!({
                "file": name,
                "name": e.route.as_ref().and_then(|r| r.metadata.name.clone()),
                "spec": e.route.as_ref().map(|r| &r.spec),
                "status": e.status,
                "removed": e.removed,
                "error": e.error,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::process::Command;

    use super::*;
    use crate::metrics::Metrics;
    use crate::zk::Records;
    use crate::zk::memory::MemoryRecords;
    use crate::zone::{Zone, Zones};

    const TIMING: Timing = Timing {
        resync: Duration::from_secs(60),
        conflict_recheck: Duration::from_secs(10),
    };

    fn route_file(table: &str) -> String {
        format!(
            "apiVersion: metaproxy.pegasus.io/v1alpha1\nkind: PegasusTableRoute\nmetadata: {{name: {table}}}\n\
             spec:\n  table: {table}\n  primary: {{cluster: c1, metaServers: ['10.0.0.1:34601']}}\n"
        )
    }

    fn reconciler(zk: &Arc<MemoryRecords>) -> Arc<Reconciler> {
        let zones =
            Zones::new(vec![Zone::parse("az1=127.0.0.1:1/r").expect("zone")], None).expect("zones");
        let stores: BTreeMap<String, Arc<dyn Records>> =
            BTreeMap::from([("az1".to_owned(), zk.clone() as Arc<dyn Records>)]);
        Arc::new(Reconciler::with_stores(
            zones,
            stores,
            Arc::new(Metrics::new()),
        ))
    }

    /// On paused time: a route whose ZooKeeper is down is retried after 1, 2, 4 s...; once it
    /// is written, after the resync period. The times are tokio's, exact.
    #[tokio::test(start_paused = true)]
    async fn backoff_then_resync_on_tokio_time() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("t.yaml"), route_file("t")).expect("write");
        let zk = Arc::new(MemoryRecords::default());
        zk.set_down(true);
        let mut reads = zk.reads();
        let (stop_tx, stop) = watch::channel(false);
        let loop_task = tokio::spawn(run(
            dir.path().to_owned(),
            reconciler(&zk),
            // Scans only when a route is due: every wake-up below is the schedule's.
            Duration::from_secs(3600),
            TIMING,
            RoutesView::default(),
            || {},
            stop,
        ));
        let mut at = Vec::new();
        while at.len() < 6 {
            let (path, when) = reads.recv().await.expect("a read");
            assert_eq!(path, "/r/t");
            at.push(when);
            if at.len() == 4 {
                // The fifth attempt finds ZooKeeper back.
                zk.set_down(false);
            }
        }
        let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
        let s = Duration::from_secs;
        assert_eq!(gaps, [s(1), s(2), s(4), s(8), s(60)]);
        assert!(zk.get("/r/t").is_some(), "written by the fifth attempt");
        let _ = stop_tx.send(true);
        loop_task.await.expect("loop ends");
    }

    /// SIGTERM in the middle of a pass whose ZooKeeper request never gets an answer.
    #[tokio::test]
    async fn shutdown_interrupts_a_pass_waiting_on_zookeeper() {
        let dir = tempfile::tempdir().expect("dir");
        for t in ["a", "b", "c"] {
            std::fs::write(dir.path().join(format!("{t}.yaml")), route_file(t)).expect("write");
        }
        let zk = Arc::new(MemoryRecords::default());
        zk.set_hanging(true);
        let mut reads = zk.reads();
        let (stop_tx, stop) = watch::channel(false);
        let loop_task = tokio::spawn(run(
            dir.path().to_owned(),
            reconciler(&zk),
            Duration::from_secs(1),
            TIMING,
            RoutesView::default(),
            || {},
            stop,
        ));
        reads
            .recv()
            .await
            .expect("the first route is waiting on ZooKeeper");
        let _ = stop_tx.send(true);
        tokio::time::timeout(Duration::from_secs(1), loop_task)
            .await
            .expect("stopped at once")
            .expect("no panic");
    }

    fn mkfifo(path: &Path) {
        let status = Command::new("mkfifo")
            .arg(path)
            .status()
            .expect("mkfifo runs");
        assert!(status.success());
    }

    #[test]
    fn only_regular_files_of_bounded_size_are_read() {
        let dir = tempfile::tempdir().expect("dir");
        let d = dir.path();
        std::fs::write(d.join("ok.yaml"), "table: t\n").expect("write");
        std::os::unix::fs::symlink(d.join("ok.yaml"), d.join("link.yaml")).expect("symlink");
        mkfifo(&d.join("fifo.yaml"));
        std::os::unix::fs::symlink(d.join("fifo.yaml"), d.join("fifo-link.yaml")).expect("symlink");
        std::fs::create_dir(d.join("dir.yaml")).expect("mkdir");
        std::fs::write(d.join("big.yaml"), vec![b'#'; MAX_FILE_BYTES as usize + 1]).expect("write");
        std::fs::write(d.join("edge.yaml"), vec![b'#'; MAX_FILE_BYTES as usize]).expect("write");
        std::os::unix::fs::symlink("/dev/zero", d.join("zero.yaml")).expect("symlink");

        assert_eq!(
            read_route_file(&d.join("ok.yaml")),
            Ok(b"table: t\n".to_vec())
        );
        assert_eq!(
            read_route_file(&d.join("link.yaml")),
            Ok(b"table: t\n".to_vec()),
            "a symlink to a regular file is followed"
        );
        assert_eq!(
            read_route_file(&d.join("edge.yaml")).map(|c| c.len()),
            Ok(MAX_FILE_BYTES as usize)
        );
        for (name, why) in [
            ("fifo.yaml", "not a regular file"),
            ("fifo-link.yaml", "not a regular file"),
            ("dir.yaml", "not a regular file"),
            ("zero.yaml", "not a regular file"),
            ("big.yaml", "more than the 1048576"),
            ("absent.yaml", "cannot open"),
        ] {
            let err = read_route_file(&d.join(name)).expect_err(name);
            assert!(err.contains(why), "{name}: {err}");
        }
    }

    /// A FIFO, an oversized file and an invalid file in the directory: the scan goes on, the
    /// valid route is written, the others show why in `/routes`.
    #[tokio::test]
    async fn bad_files_do_not_hold_the_scan_and_say_why() {
        let dir = tempfile::tempdir().expect("dir");
        let d = dir.path();
        mkfifo(&d.join("a-fifo.yaml"));
        std::fs::write(
            d.join("b-big.yaml"),
            vec![b'#'; MAX_FILE_BYTES as usize + 1],
        )
        .expect("write");
        std::fs::write(
            d.join("c-int.yaml"),
            route_file("x").replace("table: x", "table: 12345"),
        )
        .expect("write");
        std::fs::write(
            d.join("d-extra.yaml"),
            route_file("y").replace("  table: y\n", "  table: y\n  tabel: y\n"),
        )
        .expect("write");
        std::fs::write(d.join("e-good.yaml"), route_file("good")).expect("write");
        let zk = Arc::new(MemoryRecords::default());
        let routes = RoutesView::default();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop) = watch::channel(false);
        let loop_task = tokio::spawn(run(
            d.to_owned(),
            reconciler(&zk),
            Duration::from_secs(1),
            TIMING,
            routes.clone(),
            move || {
                let _ = ready_tx.send(());
            },
            stop,
        ));
        tokio::time::timeout(Duration::from_secs(5), ready_rx)
            .await
            .expect("the first pass ends")
            .expect("ready");
        assert!(zk.get("/r/good").is_some(), "the valid route is written");
        assert_eq!(zk.get("/r/x"), None);
        assert_eq!(zk.get("/r/y"), None);
        let view = routes.render();
        let error = |file: &str| -> String {
            view.as_array()
                .and_then(|all| all.iter().find(|r| r["file"] == file))
                .and_then(|r| r["error"].as_str())
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(error("a-fifo.yaml"), "not a regular file");
        assert!(
            error("b-big.yaml").contains("more than the 1048576"),
            "{view}"
        );
        assert!(
            error("c-int.yaml").contains("spec.table: expected a string, found an integer 12345"),
            "{view}"
        );
        assert!(
            error("d-extra.yaml").contains("spec.tabel: unknown field"),
            "{view}"
        );
        assert_eq!(error("e-good.yaml"), "");
        let _ = stop_tx.send(true);
        tokio::time::timeout(Duration::from_secs(1), loop_task)
            .await
            .expect("stops")
            .expect("no panic");
    }
}
