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
//! routes already loaded stay in force.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use thiserror::Error;
use tokio::task::JoinHandle;

use super::{Lookup, Route, RouteInfo, RouteRecord, valid_table_name};
use crate::upstream::Upstreams;

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

struct State {
    content: String,
    routes: HashMap<String, Arc<Route>>,
    last_error: Option<String>,
}

struct Inner {
    path: PathBuf,
    upstreams: Arc<Upstreams>,
    state: RwLock<State>,
}

/// Routes loaded from a file and kept in line with it.
pub struct FileRoutes {
    inner: Arc<Inner>,
    poller: JoinHandle<()>,
}

impl FileRoutes {
    /// Loads the file (an error here is a configuration error) and starts polling it.
    pub fn start(
        path: impl Into<PathBuf>,
        upstreams: Arc<Upstreams>,
        poll: Duration,
    ) -> Result<Self, RoutesFileError> {
        let path = path.into();
        let content = read_file(&path)?;
        let records = parse_routes_file(&content)?;
        let inner = Arc::new(Inner {
            path,
            upstreams,
            state: RwLock::new(State {
                content: String::new(),
                routes: HashMap::new(),
                last_error: None,
            }),
        });
        inner.install(content, records);
        let poller = tokio::spawn(poll_loop(inner.clone(), poll));
        Ok(FileRoutes { inner, poller })
    }

    pub fn lookup(&self, table: &str) -> Lookup {
        match self.inner.read().routes.get(table) {
            Some(route) => Lookup::Found(route.clone()),
            None => Lookup::Missing,
        }
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

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn shutdown(&self) {
        self.poller.abort();
    }
}

impl Drop for FileRoutes {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

impl Inner {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn install(&self, content: String, records: BTreeMap<String, RouteRecord>) {
        let now = SystemTime::now();
        let routes = records
            .into_iter()
            .map(|(table, record)| {
                let group = self.upstreams.group(&record);
                (
                    table.clone(),
                    Arc::new(Route {
                        table,
                        record,
                        version: -1,
                        read_at: now,
                        group,
                    }),
                )
            })
            .collect();
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        *state = State {
            content,
            routes,
            last_error: None,
        };
    }

    fn reload(&self) -> Result<bool, RoutesFileError> {
        let content = read_file(&self.path)?;
        if content == self.read().content {
            return Ok(false);
        }
        match parse_routes_file(&content) {
            Ok(records) => {
                let count = records.len();
                self.install(content, records);
                tracing::info!(path = %self.path.display(), routes = count, "routes file reloaded");
                Ok(true)
            }
            Err(e) => {
                let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
                // Remember the bad content so that the same error is logged once, not every poll.
                state.content = content;
                state.last_error = Some(e.to_string());
                Err(e)
            }
        }
    }
}

async fn poll_loop(inner: Arc<Inner>, every: Duration) {
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
