//! Static routes from a YAML file, for running without ZooKeeper. The file maps table names to a
//! route record (either spelling, docs/architecture.md §4; addresses listed or comma-separated):
//!
//! ```yaml
//! temp:  {cluster: c3srv-ad, meta_addrs: ["127.0.0.1:34601", "127.0.0.1:34602"]}
//! stat:  {cluster_name: c3srv-bk, meta_addrs: "10.1.0.1:34601"}
//! ```
//!
//! The file is polled and re-read when its content changes (a Kubernetes ConfigMap update swaps a
//! symlink, which file-change notifications miss). A change that does not parse is logged and the
//! routes already loaded stay in force. Tables naming the same record share one group, and a
//! record that stays in the file keeps its group (its connections, its known leader) across
//! reloads.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use thiserror::Error;
use tokio::task::JoinHandle;

use super::{Group, Lookup, Resolver, Route, RouteInfo, RouteRecord, valid_table_name};

/// Why a routes file cannot be used.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RoutesFileError {
    #[error("cannot read routes file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("routes file is not valid YAML: {0}")]
    Yaml(String),
    #[error("routes file must be a mapping of table name to route")]
    NotAMapping,
    #[error("routes file: {0:?} is not a valid Pegasus table name")]
    BadTable(String),
    #[error("routes file: table {table}: {reason}")]
    BadRoute { table: String, reason: String },
}

impl RoutesFileError {
    /// A fixed, small label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            RoutesFileError::Read { .. } => "read",
            RoutesFileError::Yaml(_) => "yaml",
            RoutesFileError::NotAMapping => "not_a_mapping",
            RoutesFileError::BadTable(_) => "bad_table",
            RoutesFileError::BadRoute { .. } => "bad_route",
        }
    }
}

/// Parses the content of a routes file.
pub fn parse_routes_file(text: &str) -> Result<BTreeMap<String, RouteRecord>, RoutesFileError> {
    if text.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    let value: serde_json::Value =
        serde_saphyr::from_str(text).map_err(|e| RoutesFileError::Yaml(e.to_string()))?;
    let map = match value {
        serde_json::Value::Object(map) => map,
        serde_json::Value::Null => return Ok(BTreeMap::new()),
        _ => return Err(RoutesFileError::NotAMapping),
    };
    map.into_iter()
        .map(|(table, v)| {
            if !valid_table_name(&table) {
                return Err(RoutesFileError::BadTable(table));
            }
            let record = RouteRecord::from_value(&v).map_err(|e| RoutesFileError::BadRoute {
                table: table.clone(),
                reason: e.to_string(),
            })?;
            Ok((table, record))
        })
        .collect()
}

fn read_file(path: &Path) -> Result<String, RoutesFileError> {
    std::fs::read_to_string(path).map_err(|e| RoutesFileError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

struct State<G> {
    content: String,
    routes: HashMap<String, Arc<Route<G>>>,
    last_error: Option<String>,
}

struct Inner<G> {
    path: PathBuf,
    resolve: Resolver<G>,
    state: RwLock<State<G>>,
}

/// Routes loaded from a file and kept in line with it.
pub struct FileRoutes<G> {
    inner: Arc<Inner<G>>,
    poller: JoinHandle<()>,
}

impl<G: Group> FileRoutes<G> {
    /// Loads the file (an error here is a configuration error) and starts polling it; `resolve`
    /// gives each record its group.
    pub fn start(
        path: impl Into<PathBuf>,
        resolve: Resolver<G>,
        poll: Duration,
    ) -> Result<Self, RoutesFileError> {
        let path = path.into();
        let content = read_file(&path)?;
        let records = parse_routes_file(&content)?;
        let inner = Arc::new(Inner {
            path,
            resolve,
            state: RwLock::new(State {
                content: String::new(),
                routes: HashMap::new(),
                last_error: None,
            }),
        });
        inner.install(content, records)?;
        let poller = tokio::spawn(poll_loop(inner.clone(), poll));
        Ok(FileRoutes { inner, poller })
    }

    pub fn lookup(&self, table: &str) -> Lookup<G> {
        match self.inner.read().routes.get(table) {
            Some(route) => Lookup::Found(route.clone()),
            None => Lookup::Missing,
        }
    }

    /// The table's route, if the file routes it (the same answer as [`FileRoutes::lookup`]'s
    /// `Found`).
    pub fn cached(&self, table: &str) -> Option<Arc<Route<G>>> {
        self.inner.read().routes.get(table).cloned()
    }

    /// Re-reads the file now; returns whether the routes changed.
    pub fn reload(&self) -> Result<bool, RoutesFileError> {
        self.inner.reload()
    }

    pub fn snapshot(&self) -> Vec<RouteInfo> {
        let state = self.inner.read();
        state
            .routes
            .values()
            .map(|r| RouteInfo::of(&r.table, "found", Some(r), state.last_error.clone()))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.inner.read().routes.len()
    }

    /// Every table the file routes.
    pub fn tables(&self) -> Vec<String> {
        self.inner.read().routes.keys().cloned().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn shutdown(&self) {
        self.poller.abort();
    }
}

impl<G> Drop for FileRoutes<G> {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

impl<G: Group> Inner<G> {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State<G>> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `records` the routes in force. Each distinct record gets one group: the one it has
    /// now when it is already in force, else a new one from the resolver. Nothing changes when
    /// a record cannot be resolved.
    fn install(
        &self,
        content: String,
        records: BTreeMap<String, RouteRecord>,
    ) -> Result<(), RoutesFileError> {
        let mut groups: HashMap<RouteRecord, Arc<G>> = self
            .read()
            .routes
            .values()
            .map(|r| (r.record.clone(), r.group.clone()))
            .collect();
        let now = SystemTime::now();
        let mut routes = HashMap::with_capacity(records.len());
        for (table, record) in records {
            let group = match groups.get(&record) {
                Some(group) => group.clone(),
                None => {
                    let group = (self.resolve)(&record).map_err(|e| RoutesFileError::BadRoute {
                        table: table.clone(),
                        reason: e.to_string(),
                    })?;
                    groups.insert(record.clone(), group.clone());
                    group
                }
            };
            let route = Route {
                table: table.clone(),
                record,
                version: -1,
                read_at: now,
                group,
            };
            routes.insert(table, Arc::new(route));
        }
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        *state = State {
            content,
            routes,
            last_error: None,
        };
        Ok(())
    }

    fn reload(&self) -> Result<bool, RoutesFileError> {
        let content = read_file(&self.path)?;
        if content == self.read().content {
            return Ok(false);
        }
        let installed = parse_routes_file(&content).and_then(|records| {
            let count = records.len();
            self.install(content.clone(), records).map(|()| count)
        });
        match installed {
            Ok(count) => {
                tracing::info!(path = %self.path.display(), routes = count, "routes file reloaded");
                Ok(true)
            }
            Err(e) => Err(self.remember_error(content, e)),
        }
    }

    /// Keeps the routes in force and remembers the bad content, so that the same error is logged
    /// once, not on every poll.
    fn remember_error(&self, content: String, e: RoutesFileError) -> RoutesFileError {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        state.content = content;
        state.last_error = Some(e.to_string());
        e
    }
}

async fn poll_loop<G: Group>(inner: Arc<Inner<G>>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = inner.reload() {
            tracing::error!(path = %inner.path.display(), error = %e, "routes file change not applied; keeping the routes loaded before");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::ResolveError;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A group that is only its record.
    #[derive(Debug)]
    struct FakeGroup(RouteRecord);

    impl Group for FakeGroup {
        fn leader(&self) -> String {
            self.0.meta_addrs[0].clone()
        }
    }

    /// A resolver that builds a new group on every call (no sharing of its own) and refuses the
    /// cluster `refused`; counts its calls.
    fn fake_resolver() -> (Resolver<FakeGroup>, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let resolve: Resolver<FakeGroup> = Arc::new(move |record: &RouteRecord| {
            counter.fetch_add(1, Ordering::SeqCst);
            if record.cluster == "refused" {
                return Err(ResolveError {
                    reason: "refused by the test".into(),
                });
            }
            Ok(Arc::new(FakeGroup(record.clone())))
        });
        (resolve, calls)
    }

    fn group_of(routes: &FileRoutes<FakeGroup>, table: &str) -> Arc<FakeGroup> {
        match routes.lookup(table) {
            Lookup::Found(route) => route.group.clone(),
            other => panic!("{table}: {other:?}"),
        }
    }

    #[tokio::test]
    async fn tables_on_one_record_share_a_group_and_a_changed_record_gets_a_new_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("routes.yaml");
        std::fs::write(
            &path,
            "a: {cluster: c1, meta_addrs: [\"h1:1\"]}\n\
             b: {cluster: c1, meta_addrs: [\"h1:1\"]}\n\
             c: {cluster: c2, meta_addrs: [\"h2:1\"]}\n",
        )
        .expect("write");
        let (resolve, calls) = fake_resolver();
        // Polled by hand below.
        let routes = FileRoutes::start(&path, resolve, Duration::from_secs(3600)).expect("loads");
        let (a, b, c) = (
            group_of(&routes, "a"),
            group_of(&routes, "b"),
            group_of(&routes, "c"),
        );
        assert!(Arc::ptr_eq(&a, &b), "a and b name the same record");
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(calls.load(Ordering::SeqCst), 2, "one resolve per record");
        assert!(matches!(routes.lookup("d"), Lookup::Missing));

        // b moves to another cluster; a and c stay.
        std::fs::write(
            &path,
            "a: {cluster: c1, meta_addrs: [\"h1:1\"]}\n\
             b: {cluster: c3, meta_addrs: [\"h3:1\"]}\n\
             c: {cluster: c2, meta_addrs: [\"h2:1\"]}\n",
        )
        .expect("write");
        assert_eq!(routes.reload(), Ok(true));
        assert!(
            Arc::ptr_eq(&group_of(&routes, "a"), &a),
            "an unchanged record keeps its group"
        );
        assert!(Arc::ptr_eq(&group_of(&routes, "c"), &c));
        let moved = group_of(&routes, "b");
        assert!(
            !Arc::ptr_eq(&moved, &a),
            "a changed record gets a new group"
        );
        assert_eq!(moved.0.cluster, "c3");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "only the new record resolved"
        );
        assert_eq!(routes.reload(), Ok(false), "same content, nothing to do");

        // A record the resolver refuses: the file is refused whole, the routes stay in force.
        std::fs::write(&path, "a: {cluster: refused, meta_addrs: [\"h1:1\"]}\n").expect("write");
        let err = routes.reload().expect_err("refused");
        assert_eq!(err.metric_label(), "bad_route");
        assert!(err.to_string().contains("refused by the test"), "{err}");
        assert!(Arc::ptr_eq(&group_of(&routes, "a"), &a));
        assert_eq!(routes.len(), 3);
        let rows = routes.snapshot();
        assert!(
            rows.iter().all(|r| r
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("refused"))),
            "{rows:?}"
        );

        let routes = crate::route::Routes::File(routes);
        assert_eq!((routes.kind(), routes.connected()), ("file", None));
        assert!(routes.is_ready());
    }

    #[test]
    fn parses_both_spellings_and_address_forms() {
        let routes = parse_routes_file(
            "temp: {cluster: c1, meta_addrs: [\"127.0.0.1:34601\", \"meta-1:34601\"]}\n\
             stat: {cluster_name: c2, meta_addrs: \"10.0.0.1:34601,10.0.0.2:34601\"}\n",
        )
        .expect("parses");
        assert_eq!(
            routes["temp"],
            RouteRecord::new("c1", ["127.0.0.1:34601", "meta-1:34601"]).expect("ok")
        );
        assert_eq!(
            routes["stat"].meta_addrs,
            ["10.0.0.1:34601", "10.0.0.2:34601"]
        );
        assert!(parse_routes_file("").expect("empty is fine").is_empty());
    }

    #[test]
    fn rejects_bad_files_with_the_table_named() {
        let err = parse_routes_file("temp: {cluster: c1}\n").expect_err("no addrs");
        assert!(err.to_string().contains("table temp"), "{err}");
        assert_eq!(
            parse_routes_file("- a\n- b\n"),
            Err(RoutesFileError::NotAMapping)
        );
        assert!(matches!(
            parse_routes_file("a/b: {cluster: c, meta_addrs: [\"h:1\"]}"),
            Err(RoutesFileError::BadTable(_))
        ));
        assert!(matches!(
            parse_routes_file("temp: {cluster: [unclosed"),
            Err(RoutesFileError::Yaml(_))
        ));
    }
}
