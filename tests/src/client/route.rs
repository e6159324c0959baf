//! A table's routing as the official clients keep it: the query_config answer, asked again only
//! when a replica's answer says the routing is stale (§15.6), never on a timer, and then at most
//! once per `requery_interval` per table (Java's `operationTimeout / 3`, 333 ms by default), with
//! one query in flight at a time. A new answer replaces the old one even when the app id changed,
//! as the Java and Go clients accept it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pegasus_rpc::client::{GroupOptions, MetaGroup};
use pegasus_rpc::codec::{ErrorCode, PartitionConfiguration};
use tokio::sync::watch;
use tokio::time::Instant;

/// One query_config answer for a table.
#[derive(Clone, Debug)]
pub struct TableConfig {
    pub app_id: i32,
    pub partition_count: i32,
    pub partitions: Vec<PartitionConfiguration>,
    /// Counts answers taken, from 1.
    pub version: u64,
}

impl TableConfig {
    /// The partition to send a key of hash `hash` to: `hash mod count`, or the parent of a split
    /// child that is not ready yet (ballot < 0), as every client does (§15.5).
    pub fn partition_for(&self, hash: u64) -> Option<&PartitionConfiguration> {
        let pidx = pegasus_rpc::codec::key::partition_index(hash, self.partition_count)?;
        let pc = self.partitions.get(usize::try_from(pidx).ok()?)?;
        if pc.ballot < 0 {
            let parent = pidx - self.partition_count / 2;
            return self.partitions.get(usize::try_from(parent).ok()?);
        }
        Some(pc)
    }
}

/// Why there is no routing.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    #[error("no MetaServer address given for table {table}")]
    NoMetaServers { table: String },
    #[error("no MetaServer answered for table {table}: {reason}")]
    Unavailable { table: String, reason: String },
    #[error("query_config for table {table} answered {err}")]
    Refused { table: String, err: ErrorCode },
}

/// When the router sent its queries (for a report's timeline).
pub type QueryLog = Arc<Mutex<Vec<Instant>>>;

/// The routing of one table through a list of MetaServers (or one proxy).
pub struct Router {
    table: String,
    metas: MetaGroup,
    requery_interval: Duration,
    current: watch::Sender<Option<Arc<TableConfig>>>,
    in_flight: AtomicBool,
    /// Held by the callers waiting for the first answer, so that they send one query.
    first: tokio::sync::Mutex<()>,
    last_query: Mutex<Option<Instant>>,
    versions: AtomicU64,
    queries: QueryLog,
}

impl Router {
    pub fn new(
        table: impl Into<String>,
        metas: &[String],
        requery_interval: Duration,
    ) -> Result<Self, RouteError> {
        let table = table.into();
        let metas =
            MetaGroup::new(table.clone(), metas, GroupOptions::default()).map_err(|_| {
                RouteError::NoMetaServers {
                    table: table.clone(),
                }
            })?;
        Ok(Router {
            metas,
            table,
            requery_interval,
            current: watch::Sender::new(None),
            in_flight: AtomicBool::new(false),
            first: tokio::sync::Mutex::new(()),
            last_query: Mutex::new(None),
            versions: AtomicU64::new(0),
            queries: Arc::default(),
        })
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// The times of every query sent so far.
    pub fn query_log(&self) -> QueryLog {
        self.queries.clone()
    }

    /// The routing, asking the MetaServers first if there is none yet (one query for all the
    /// callers that wait for it).
    pub async fn config(&self, deadline: Instant) -> Result<Arc<TableConfig>, RouteError> {
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let _first = self.first.lock().await;
        if let Some(c) = self.current() {
            return Ok(c);
        }
        self.query(deadline).await
    }

    /// The routing held now, if any.
    pub fn current(&self) -> Option<Arc<TableConfig>> {
        self.current.borrow().clone()
    }

    /// Queries now, whatever the rate limit, and takes a good answer.
    pub async fn query(&self, deadline: Instant) -> Result<Arc<TableConfig>, RouteError> {
        *self
            .last_query
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        self.queries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Instant::now());
        let resp = self
            .metas
            .query_config(&self.table, deadline)
            .await
            .map_err(|e| RouteError::Unavailable {
                table: self.table.clone(),
                reason: e.to_string(),
            })?;
        if !resp.err.is_ok() {
            return Err(RouteError::Refused {
                table: self.table.clone(),
                err: resp.err,
            });
        }
        let complete = resp.partition_count > 0
            && usize::try_from(resp.partition_count).ok() == Some(resp.partitions.len());
        if !complete {
            return Err(RouteError::Unavailable {
                table: self.table.clone(),
                reason: format!(
                    "{} partitions listed of {}",
                    resp.partitions.len(),
                    resp.partition_count
                ),
            });
        }
        let config = Arc::new(TableConfig {
            app_id: resp.app_id,
            partition_count: resp.partition_count,
            partitions: resp.partitions,
            version: self.versions.fetch_add(1, Ordering::Relaxed) + 1,
        });
        self.current.send_replace(Some(config.clone()));
        Ok(config)
    }

    /// Asks for new routing in the background, unless a query is in flight or the last one was
    /// less than the re-query interval ago. Returns whether a query was started.
    pub fn requery(self: &Arc<Self>) -> bool {
        {
            let last = self
                .last_query
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|t| t.elapsed() < self.requery_interval) {
                return false;
            }
        }
        if self.in_flight.swap(true, Ordering::AcqRel) {
            return false;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(5);
            if let Err(e) = me.query(deadline).await {
                tracing::debug!(table = %me.table, error = %e, "re-query failed; routing kept");
            }
            me.in_flight.store(false, Ordering::Release);
        });
        true
    }

    /// Waits until the routing is newer than `version`, or `timeout` passed.
    pub async fn changed_since(&self, version: u64, timeout: Duration) {
        let mut rx = self.current.subscribe();
        let _ = tokio::time::timeout(
            timeout,
            rx.wait_for(|c| c.as_ref().is_some_and(|c| c.version > version)),
        )
        .await;
    }
}
