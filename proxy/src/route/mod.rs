//! Where each table is served: the route record kept in ZooKeeper (or a static file), and the
//! sources that turn a table name into a cluster and the group of its MetaServers.
//!
//! ```text
//!  record read (znode or file) --> Resolver(record) --> group, held by the table's Route
//!  query_config(app_name) --> Routes::lookup --> Found(route) --> route.group
//!                                           \--> Missing / Invalid / Unavailable --> error reply
//! ```
//! The sources do not build groups: a [`Resolver`] is injected (the proxy's upstream pool, or a
//! fake in tests), so the route cache knows nothing of connections or coalescing.

mod backoff;
mod file;
pub mod record;
mod zk;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use thiserror::Error;

pub use file::{FileRoutes, RoutesFileError, parse_routes_file};
pub use record::{RecordError, RouteRecord, valid_table_name, validate_meta_addr};
pub use zk::{ZkOptions, ZkRoutes};

use pegasus_rpc::client::{MetaGroup, NoMetaServers};

/// What a route needs from the group of MetaServers it sends to. The proxy's groups are
/// [`MetaGroup`]s; tests of the route cache use fakes.
pub trait Group: fmt::Debug + Send + Sync + 'static {
    /// The MetaServer last known to be the cluster's leader, for the `/routes` view.
    fn leader(&self) -> String;
}

impl Group for MetaGroup {
    fn leader(&self) -> String {
        MetaGroup::leader(self)
    }
}

/// Why a record has no group to send to.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("no MetaServer group: {reason}")]
pub struct ResolveError {
    pub reason: String,
}

impl ResolveError {
    /// A fixed, small label for metrics.
    pub fn metric_label(&self) -> &'static str {
        "no_group"
    }
}

impl From<NoMetaServers> for ResolveError {
    fn from(e: NoMetaServers) -> Self {
        ResolveError {
            reason: e.to_string(),
        }
    }
}

/// Finds the group serving a record (the proxy's upstream pool, shared by the routes naming the
/// same record). The route sources call it when a record is read, never per request: a route
/// holds its group.
pub type Resolver<G = MetaGroup> =
    Arc<dyn Fn(&RouteRecord) -> Result<Arc<G>, ResolveError> + Send + Sync>;

/// A usable route of one table.
#[derive(Debug)]
pub struct Route<G = MetaGroup> {
    pub table: String,
    pub record: RouteRecord,
    /// The znode's data version; -1 for a static route.
    pub version: i32,
    /// When this record was read.
    pub read_at: SystemTime,
    /// The group of the record's MetaServers.
    pub group: Arc<G>,
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup<G = MetaGroup> {
    Found(Arc<Route<G>>),
    /// No record: the table is routed nowhere.
    Missing,
    /// A record exists but cannot be used (and no earlier good one is known).
    Invalid(String),
    /// The route cannot be known now (ZooKeeper unreachable and nothing cached).
    Unavailable(String),
}

// By hand: a derived Clone would ask for `G: Clone`, and only the `Arc` is cloned.
impl<G> Clone for Lookup<G> {
    fn clone(&self) -> Self {
        match self {
            Lookup::Found(route) => Lookup::Found(route.clone()),
            Lookup::Missing => Lookup::Missing,
            Lookup::Invalid(e) => Lookup::Invalid(e.clone()),
            Lookup::Unavailable(e) => Lookup::Unavailable(e.clone()),
        }
    }
}

/// One row of the `/routes` admin view.
#[derive(Clone, Debug, Serialize)]
pub struct RouteInfo {
    pub table: String,
    /// `found`, `missing`, `invalid`, `loading` or `unavailable`.
    pub state: &'static str,
    pub cluster: Option<String>,
    pub meta_addrs: Vec<String>,
    /// The MetaServer last known to be the cluster's leader.
    pub leader: Option<String>,
    pub znode_version: Option<i32>,
    /// Seconds since the record was last read.
    pub age_seconds: Option<f64>,
    pub last_error: Option<String>,
}

impl RouteInfo {
    fn of<G: Group>(
        table: &str,
        state: &'static str,
        route: Option<&Route<G>>,
        last_error: Option<String>,
    ) -> Self {
        RouteInfo {
            table: table.to_owned(),
            state,
            cluster: route.map(|r| r.record.cluster.clone()),
            meta_addrs: route
                .map(|r| r.record.meta_addrs.clone())
                .unwrap_or_default(),
            leader: route.map(|r| r.group.leader()),
            znode_version: route.map(|r| r.version).filter(|v| *v >= 0),
            age_seconds: route.map(|r| {
                SystemTime::now()
                    .duration_since(r.read_at)
                    .unwrap_or(Duration::ZERO)
                    .as_secs_f64()
            }),
            last_error,
        }
    }
}

/// The route source the proxy was configured with.
pub enum Routes<G = MetaGroup> {
    Zk(ZkRoutes<G>),
    File(FileRoutes<G>),
}

impl<G: Group> Routes<G> {
    pub async fn lookup(&self, table: &str) -> Lookup<G> {
        match self {
            Routes::Zk(zk) => zk.lookup(table).await,
            Routes::File(file) => file.lookup(table),
        }
    }

    /// The table's route when the cache holds a usable one now, without waiting and without
    /// starting a read: the connection's fast path asks this for every query_config, and goes the
    /// way of [`Routes::lookup`] on `None` (not cached, being loaded, missing, invalid, or
    /// unavailable), so that every other case keeps its one implementation.
    pub fn cached(&self, table: &str) -> Option<Arc<Route<G>>> {
        match self {
            Routes::Zk(zk) => zk.cached(table),
            Routes::File(file) => file.cached(table),
        }
    }

    /// Whether routes can be served: the first ZooKeeper session is up, or the file is loaded.
    pub fn is_ready(&self) -> bool {
        match self {
            Routes::Zk(zk) => zk.is_ready(),
            Routes::File(_) => true,
        }
    }

    /// Which source this is: `zookeeper` or `file`.
    pub fn kind(&self) -> &'static str {
        match self {
            Routes::Zk(_) => "zookeeper",
            Routes::File(_) => "file",
        }
    }

    /// Whether the source's session is connected now; `None` for a source without one.
    pub fn connected(&self) -> Option<bool> {
        match self {
            Routes::Zk(zk) => Some(zk.is_connected()),
            Routes::File(_) => None,
        }
    }

    /// How long cached routes have gone unconfirmed by their source.
    pub fn staleness(&self) -> Duration {
        match self {
            Routes::Zk(zk) => zk.staleness(),
            Routes::File(_) => Duration::ZERO,
        }
    }

    pub fn snapshot(&self) -> Vec<RouteInfo> {
        let mut rows = match self {
            Routes::Zk(zk) => zk.snapshot(),
            Routes::File(file) => file.snapshot(),
        };
        rows.sort_by(|a, b| a.table.cmp(&b.table));
        rows
    }

    /// Every table the source routes (for ZooKeeper, the nodes under the root now, whether
    /// cached or not), sorted.
    pub async fn tables(&self) -> Result<Vec<String>, String> {
        let mut tables = match self {
            Routes::Zk(zk) => zk.tables().await?,
            Routes::File(file) => file.tables(),
        };
        tables.sort();
        Ok(tables)
    }

    /// Tables in the cache.
    pub fn len(&self) -> usize {
        match self {
            Routes::Zk(zk) => zk.len(),
            Routes::File(file) => file.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops background work (the ZooKeeper session, the file poller).
    pub fn shutdown(&self) {
        match self {
            Routes::Zk(zk) => zk.shutdown(),
            Routes::File(file) => file.shutdown(),
        }
    }
}
