//! Duplication shipping: per duplication and partition, a task that sends the partition's
//! committed idempotent writes to the follower cluster, in decree order, as the source replica
//! servers do (`docs/protocol.md` §15.8).
//!
//! ```text
//!  write on the primary --> partition log (decree, µs, rpc name, args)
//!  shipper: entries after `confirmed`, ready (older than the injected lag), up to 4 KiB
//!        --> RPC_RRDB_RRDB_DUPLICATE to the follower partition's primary
//!            (found through the follower's MetaServers with query_config)
//!        <-- ERR_OK + error 0: confirmed = the batch's last decree, the log is trimmed
//!        <-- anything else: the routing is asked again and the same batch re-sent after 1 s
//! ```
//!
//! A partition ships while its primary's node is serving and the cluster runs. With nothing
//! ready the shipper waits for the next write, at most 100 ms (`dup_no_mutation_load_delay_ms`).
//! The follower must have the same partition count. Follower replica addresses that are not
//! loopback are refused, like the load tool does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use pegasus_rpc::client::{GroupOptions, MetaGroup};
use pegasus_rpc::codec::key::thread_hash;
use pegasus_rpc::codec::{
    Blob, DuplicateEntry, DuplicateRequest, DuplicateResponse, HeaderV0, Payload, RequestHeader,
    rocksdb, rpc,
};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::replica::node_serves;
use super::state::Shared;
use super::store::{Duplication, TableStore};
use crate::client::session::SessionPool;

/// Most bytes of write args in one batch (`duplicate_log_batch_bytes`).
const BATCH_BYTES: usize = 4096;
/// How long a shipper waits with nothing to do before looking again.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// Between two tries of a failed batch (FAIL_SLOW).
const RETRY: Duration = Duration::from_secs(1);
/// A DUPLICATE call's deadline. Pegasus uses 100 s; shorter here so that a follower that drops
/// requests (`timeout*write`) holds a test up less.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts shipping every partition of `dup`.
pub(crate) fn start(
    shared: &Arc<Shared>,
    table: &str,
    store: &Arc<TableStore>,
    dup: Arc<Duplication>,
) {
    let metas = match MetaGroup::new(dup.remote.clone(), &dup.spec.to, GroupOptions::default()) {
        Ok(m) => Arc::new(m),
        // The spec was validated to name MetaServers.
        Err(e) => {
            warn!(table, error = %e, "duplication not started");
            return;
        }
    };
    let sessions = Arc::new(SessionPool::new(Duration::from_secs(1)));
    info!(table, dupid = dup.dupid, remote = %dup.remote, follower_app = %dup.spec.app, "duplication started");
    for pidx in 0..usize::try_from(store.partition_count).unwrap_or(0) {
        let shipper = Shipper {
            shared: shared.clone(),
            table: table.to_owned(),
            store: store.clone(),
            dup: dup.clone(),
            pidx,
            metas: metas.clone(),
            sessions: sessions.clone(),
            follower: None,
        };
        let task = tokio::spawn(shipper.run());
        store.keep_shipper(task.abort_handle());
    }
}

/// Where the follower's partition is.
#[derive(Clone, Copy, Debug)]
struct Follower {
    app_id: i32,
    primary: SocketAddr,
}

struct Shipper {
    shared: Arc<Shared>,
    table: String,
    store: Arc<TableStore>,
    dup: Arc<Duplication>,
    pidx: usize,
    metas: Arc<MetaGroup>,
    sessions: Arc<SessionPool>,
    follower: Option<Follower>,
}

impl Shipper {
    async fn run(mut self) {
        let store = self.store.clone();
        loop {
            let written = store.written(self.pidx).map(|n| n.notified());
            let Some(written) = written else { return };
            tokio::pin!(written);
            written.as_mut().enable();

            let lag_us = i64::try_from(self.shared.dup_lag_ms.load(Ordering::Relaxed))
                .unwrap_or(i64::MAX / 2)
                .saturating_mul(1000);
            let now_us = self.shared.clock.unix_micros();
            let confirmed = self.dup.confirmed(self.pidx);
            let (batch, next) = match self.store.partition(self.pidx) {
                Some(p) => {
                    let batch = p.log_after(confirmed, BATCH_BYTES, |e| {
                        e.timestamp_us + lag_us <= now_us
                    });
                    let next = p
                        .log_after(confirmed, 0, |_| true)
                        .first()
                        .map(|e| e.timestamp_us + lag_us - now_us);
                    (batch, next)
                }
                None => return,
            };
            if batch.is_empty() || !self.primary_serves() {
                let wait = next
                    .filter(|&us| us > 0)
                    .map(|us| Duration::from_micros(us as u64))
                    .unwrap_or(IDLE_POLL)
                    .min(IDLE_POLL);
                tokio::select! {
                    _ = &mut written => {}
                    _ = tokio::time::sleep(wait) => {}
                }
                continue;
            }
            let last = batch.last().map_or(confirmed, |e| e.decree);
            let committed: Vec<i64> = batch.iter().map(|e| e.timestamp_us).collect();
            match self.ship(batch).await {
                Ok(()) => {
                    self.store.confirm(&self.dup, self.pidx, last);
                    let now_us = self.shared.clock.unix_micros();
                    self.dup.record_lag(
                        committed
                            .iter()
                            .map(|&t| u64::try_from(now_us - t).unwrap_or(0)),
                    );
                }
                Err(why) => {
                    debug!(table = %self.table, pidx = self.pidx, error = %why, "duplicate batch failed; retrying in 1 s");
                    self.follower = None;
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    /// Whether this partition's primary is up to ship: the cluster runs and, when the primary is
    /// one of the served nodes, that node is serving.
    fn primary_serves(&self) -> bool {
        if self.shared.cluster_stopped.load(Ordering::Acquire) {
            return false;
        }
        let view = self.shared.view();
        let Some(table) = view.tables.get(&self.table) else {
            return false;
        };
        match table.layout.get(self.pidx).and_then(|l| l.primary) {
            None => false,
            Some(primary) => match self.shared.node_index(primary) {
                Some(i) => node_serves(self.shared.nodes[i].mode()),
                None => true,
            },
        }
    }

    async fn follower(&mut self) -> Result<Follower, String> {
        if let Some(f) = self.follower {
            return Ok(f);
        }
        let deadline = Instant::now() + CALL_TIMEOUT;
        let resp = self
            .metas
            .query_config(&self.dup.spec.app, deadline)
            .await
            .map_err(|e| e.to_string())?;
        if !resp.err.is_ok() {
            return Err(format!("the follower answered {}", resp.err));
        }
        if resp.partition_count != self.store.partition_count {
            return Err(format!(
                "the follower table has {} partitions, the source {}",
                resp.partition_count, self.store.partition_count
            ));
        }
        let primary = resp
            .partitions
            .get(self.pidx)
            .and_then(|pc| pc.primary.to_socket())
            .map(SocketAddr::V4)
            .ok_or_else(|| format!("the follower's partition {} has no primary", self.pidx))?;
        if !primary.ip().is_loopback() {
            return Err(format!(
                "refusing to dial the follower replica {primary}: not loopback"
            ));
        }
        let f = Follower {
            app_id: resp.app_id,
            primary,
        };
        self.follower = Some(f);
        Ok(f)
    }

    async fn ship(&mut self, batch: Vec<super::storage::LogEntry>) -> Result<(), String> {
        let follower = self.follower().await?;
        let request = DuplicateRequest {
            entries: batch
                .into_iter()
                .map(|e| DuplicateEntry {
                    timestamp: Some(e.timestamp_us),
                    task_code: Some(e.code.to_owned()),
                    raw_message: Some(Blob(e.args)),
                    cluster_id: Some(self.shared.data.cluster_id),
                    verify_timetag: None,
                })
                .collect(),
        };
        let pidx = self.pidx as i32;
        let header = RequestHeader::V0(HeaderV0 {
            app_id: follower.app_id,
            partition_index: pidx,
            client_timeout: CALL_TIMEOUT.as_millis() as i32,
            thread_hash: thread_hash(follower.app_id, pidx),
            ..Default::default()
        });
        let session = self.sessions.get(follower.primary);
        let reply = session
            .call_with_header(
                header,
                rpc::RRDB_DUPLICATE,
                request.args_bytes(),
                Instant::now() + CALL_TIMEOUT,
            )
            .await
            .map_err(|e| e.to_string())?;
        if !reply.rpc_error.is_ok() {
            return Err(format!("the follower answered {}", reply.rpc_error));
        }
        let resp = DuplicateResponse::from_result(&reply.body).map_err(|e| e.to_string())?;
        match resp.error {
            None | Some(rocksdb::OK) => Ok(()),
            Some(e) => {
                let hint = resp.error_hint.unwrap_or_default();
                warn!(table = %self.table, pidx, error = e, %hint, "the follower refused a duplicated batch");
                Err(format!("error {e}: {hint}"))
            }
        }
    }
}
