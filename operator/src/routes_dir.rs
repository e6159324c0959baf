//! `--routes-dir`: the reconciler run over a directory of PegasusTableRoute YAML files, for
//! Pegasus deployments without Kubernetes and for the local demo.
//!
//! The directory is scanned every `poll`. A new file is reconciled at once; a changed file too;
//! a removed file has its znode deleted, as a finalizer would. Every route is reconciled again
//! every `resync`, and at once when its znode changes (see [`crate::drift`]). Status goes to the
//! log (one line when it changes) and to `/routes` on the admin port.
//!
//! Files are `*.yaml` / `*.yml` (dot files ignored), one resource each. A file's id is its name;
//! its seniority (for conflicts) is when this process first saw it, ties broken by name, so at
//! start the file names decide. A file that stops parsing keeps its last good spec until fixed.
//! Removing a file while the operator is stopped leaves its znode in place: nothing remembers
//! it across restarts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::admin::RoutesView;
use crate::crd::{PegasusTableRoute, PegasusTableRouteStatus};
use crate::drift::{self, Touched};
use crate::reconcile::{Reconciler, RouteView, backoff, claim_of, now_rfc3339, status};

/// Timing of the directory loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirTiming {
    pub poll: Duration,
    pub resync: Duration,
    /// How soon a route that yielded to an older one looks again.
    pub conflict_recheck: Duration,
}

struct Entry {
    first_seen_ms: i64,
    content: Vec<u8>,
    route: Option<PegasusTableRoute>,
    parse_error: Option<String>,
    generation: i64,
    status: Option<PegasusTableRouteStatus>,
    removed: bool,
    failures: u32,
    due: Instant,
}

/// Runs until `shutdown` turns true. `routes` receives the `/routes` view after every pass.
pub async fn run(
    dir: PathBuf,
    reconciler: Arc<Reconciler>,
    timing: DirTiming,
    routes: RoutesView,
    ready: impl FnOnce(),
    mut shutdown: watch::Receiver<bool>,
) {
    let (tx, mut touched) = mpsc::unbounded_channel();
    drift::spawn(reconciler.clone(), tx, shutdown.clone());
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    let mut ready = Some(ready);
    loop {
        scan(&dir, &mut entries).await;
        reconcile_due(&reconciler, &mut entries, timing).await;
        routes.publish(view(&entries));
        if let Some(ready) = ready.take() {
            ready();
        }
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            _ = tokio::time::sleep(timing.poll) => {}
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

fn now_ms() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_millisecond()
}

fn is_route_file(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml"))
}

async fn scan(dir: &Path, entries: &mut BTreeMap<String, Entry>) {
    let mut seen = Vec::new();
    let mut reader = match tokio::fs::read_dir(dir).await {
        Ok(r) => r,
        Err(e) => {
            // Not the same as every file removed: keep the routes until the directory is back.
            warn!(dir = %dir.display(), error = %e, "cannot read the routes directory");
            return;
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
        let Ok(content) = tokio::fs::read(&path).await else {
            continue;
        };
        seen.push(name.clone());
        match entries.get_mut(&name) {
            Some(e) if e.content == content && !e.removed => {}
            Some(e) => {
                e.content = content;
                e.removed = false;
                e.generation += 1;
                e.due = Instant::now();
                e.failures = 0;
                apply_parse(&name, e);
            }
            None => {
                let mut e = Entry {
                    first_seen_ms: now_ms(),
                    content,
                    route: None,
                    parse_error: None,
                    generation: 1,
                    status: None,
                    removed: false,
                    failures: 0,
                    due: Instant::now(),
                };
                apply_parse(&name, &mut e);
                entries.insert(name, e);
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
}

fn apply_parse(name: &str, e: &mut Entry) {
    let parsed = std::str::from_utf8(&e.content)
        .map_err(|err| err.to_string())
        .and_then(|text| {
            serde_saphyr::from_str::<PegasusTableRoute>(text).map_err(|err| err.to_string())
        });
    match parsed {
        Ok(route) => {
            e.route = Some(route);
            e.parse_error = None;
        }
        Err(err) => {
            let err = err.lines().next().unwrap_or_default().to_owned();
            warn!(file = %name, error = %err, "route file does not parse; keeping its last good spec");
            e.parse_error = Some(err);
        }
    }
}

fn mark_touched(reconciler: &Reconciler, entries: &mut BTreeMap<String, Entry>, t: &Touched) {
    for (name, e) in entries.iter_mut() {
        let Some(route) = &e.route else { continue };
        let Some(claim) = claim_of(name, e.first_seen_ms, &route.spec, reconciler.zones()) else {
            continue;
        };
        if claim.zone == t.zone && t.table.as_ref().is_none_or(|table| *table == claim.table) {
            e.due = Instant::now();
        }
    }
}

async fn reconcile_due(
    reconciler: &Reconciler,
    entries: &mut BTreeMap<String, Entry>,
    timing: DirTiming,
) {
    loop {
        let now = Instant::now();
        let Some(name) = entries
            .iter()
            .find(|(_, e)| e.due <= now)
            .map(|(n, _)| n.clone())
        else {
            return;
        };
        let claims: Vec<_> = entries
            .iter()
            .filter_map(|(n, e)| {
                claim_of(
                    n,
                    e.first_seen_ms,
                    &e.route.as_ref()?.spec,
                    reconciler.zones(),
                )
            })
            .collect();
        let Some(e) = entries.get_mut(&name) else {
            return;
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
            created_ms: e.first_seen_ms,
            generation: Some(e.generation),
            spec: &route.spec,
            status: e.status.as_ref(),
            deleting: e.removed,
        };
        let report = reconciler.reconcile(&view, &claims, &now_rfc3339()).await;
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
        if let Some(next) = report.status {
            log_status_change(&name, e.status.as_ref(), &next);
            e.status = Some(next);
        }
        let yielded = e
            .status
            .as_ref()
            .and_then(|s| s.condition(status::CONFLICT))
            .is_some_and(|c| c.status == "True");
        e.due = match report.result {
            Ok(()) => {
                e.failures = 0;
                Instant::now()
                    + if yielded {
                        timing.conflict_recheck
                    } else {
                        timing.resync
                    }
            }
            Err(_) => {
                e.failures += 1;
                Instant::now() + backoff(e.failures - 1)
            }
        };
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
                "parseError": e.parse_error,
            })
        })
        .collect()
}
