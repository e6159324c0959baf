//! Where each table is served: the route record kept in ZooKeeper (or a static file), and the
//! sources that turn a table name into a cluster and its MetaServers.
//!
//! ```text
//!  query_config(app_name) --> Routes::lookup --> Found(route) --> route.group (upstream pool)
//!                                           \--> Missing / Invalid / Unavailable --> error reply
//! ```

mod file;
pub mod record;
mod zk;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

pub use file::{FileRoutes, RoutesFileError, parse_routes_file};
pub use record::{RecordError, RouteRecord, valid_table_name, validate_meta_addr};
pub use zk::{ZkOptions, ZkRoutes};

use pegasus_rpc::client::MetaGroup;

/// A usable route of one table.
#[derive(Debug)]
pub struct Route {
    pub table: String,
    pub record: RouteRecord,
    /// The znode's data version; -1 for a static route.
    pub version: i32,
    /// When this record was read.
    pub read_at: SystemTime,
    /// The upstream group of the record's cluster.
    pub group: Arc<MetaGroup>,
}

/// What a lookup found.
#[derive(Clone, Debug)]
pub enum Lookup {
    Found(Arc<Route>),
    /// No record: the table is routed nowhere.
    Missing,
    /// A record exists but cannot be used (and no earlier good one is known).
    Invalid(String),
    /// The route cannot be known now (ZooKeeper unreachable and nothing cached).
    Unavailable(String),
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
    fn of(
        table: &str,
        state: &'static str,
        route: Option<&Route>,
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
pub enum Routes {
    Zk(ZkRoutes),
    File(FileRoutes),
}

impl Routes {
    pub async fn lookup(&self, table: &str) -> Lookup {
        match self {
            Routes::Zk(zk) => zk.lookup(table).await,
            Routes::File(file) => file.lookup(table),
        }
    }

    /// Whether routes can be served: the first ZooKeeper session is up, or the file is loaded.
    pub fn is_ready(&self) -> bool {
        match self {
            Routes::Zk(zk) => zk.is_ready(),
            Routes::File(_) => true,
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
