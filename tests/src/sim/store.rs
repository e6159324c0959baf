//! A table's data and its duplications, shared by every replica node of the cluster (the replicas
//! of a real partition hold the same data, so a primary moving to another node keeps it).
//!
//! The store outlives the cluster view: a view change (leader, layout, envs) carries the same
//! store over, and only dropping the table, or replacing it with another app id or partition
//! count, starts a new one.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::config::DuplicationSpec;
use super::storage::{LogArgs, PartitionData};
use crate::workload::{Histogram, Latency};

/// `duplication_status::DS_LOG`: the log is being shipped.
pub const DS_LOG: i32 = 3;

/// One duplication of the table: what the meta knows of it, and how far each partition got.
#[derive(Debug)]
pub struct Duplication {
    /// Unix seconds when it was added (made unique within the table).
    pub dupid: i32,
    pub spec: DuplicationSpec,
    /// The remote cluster's name, as reported.
    pub remote: String,
    pub create_ts_ms: i64,
    /// Per partition: the last decree the follower acknowledged.
    confirmed: Vec<AtomicI64>,
    /// From a write's commit to the follower's acknowledgement, over every shipped write, µs.
    lag: Mutex<Histogram>,
}

impl Duplication {
    pub fn confirmed(&self, pidx: usize) -> i64 {
        self.confirmed
            .get(pidx)
            .map_or(-1, |c| c.load(Ordering::Acquire))
    }

    /// Records how long shipped writes took from commit to acknowledgement.
    pub fn record_lag(&self, lags_us: impl IntoIterator<Item = u64>) {
        let mut h = lock(&self.lag);
        for us in lags_us {
            h.record(us);
        }
    }
}

/// A duplication as `GET /tables/{name}` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct DuplicationState {
    pub dupid: i32,
    pub status: String,
    pub remote: String,
    pub remote_metas: Vec<String>,
    pub remote_app: String,
    pub create_ts_ms: i64,
    /// Per partition, from 0.
    pub partitions: Vec<DupPartitionState>,
    /// Writes shipped and acknowledged so far.
    pub shipped: u64,
    /// From a write's commit on the source to the follower's acknowledgement (the injected lag
    /// included), µs.
    pub lag_us: Latency,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct DupPartitionState {
    pub confirmed_decree: i64,
    pub last_committed_decree: i64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A table's partitions and duplications.
#[derive(Debug)]
pub struct TableStore {
    pub app_id: i32,
    pub partition_count: i32,
    partitions: Vec<Mutex<PartitionData>>,
    /// Notified after each write logged for the duplications, per partition.
    written: Vec<Notify>,
    dups: RwLock<Vec<Arc<Duplication>>>,
    /// Whether the table duplicates anywhere: its idempotent writes are logged, the others
    /// refused.
    dup_master: AtomicBool,
    shippers: Mutex<Vec<AbortHandle>>,
}

impl TableStore {
    pub fn new(app_id: i32, partition_count: i32) -> Self {
        let n = usize::try_from(partition_count).unwrap_or(0);
        TableStore {
            app_id,
            partition_count,
            partitions: (0..n).map(|_| Mutex::default()).collect(),
            written: (0..n).map(|_| Notify::new()).collect(),
            dups: RwLock::default(),
            dup_master: AtomicBool::new(false),
            shippers: Mutex::default(),
        }
    }

    pub fn partition(&self, pidx: usize) -> Option<MutexGuard<'_, PartitionData>> {
        self.partitions.get(pidx).map(lock)
    }

    pub fn is_dup_master(&self) -> bool {
        self.dup_master.load(Ordering::Acquire)
    }

    /// Runs a write on partition `pidx`; the write logs itself for the duplications through the
    /// [`LogArgs`] it is given when the table duplicates anywhere.
    pub fn write<R>(
        &self,
        pidx: usize,
        code: &'static str,
        args: &Bytes,
        timestamp_us: i64,
        f: impl FnOnce(&mut PartitionData, LogArgs<'_>) -> R,
    ) -> Option<R> {
        let mut p = self.partition(pidx)?;
        let logging = self.is_dup_master();
        let log = if logging {
            LogArgs(Some((code, args, timestamp_us)))
        } else {
            LogArgs(None)
        };
        let before = p.last_decree();
        let result = f(&mut p, log);
        let logged = logging && p.last_decree() != before;
        drop(p);
        if logged && let Some(n) = self.written.get(pidx) {
            n.notify_waiters();
        }
        Some(result)
    }

    /// What is notified after each logged write on `pidx`.
    pub fn written(&self, pidx: usize) -> Option<&Notify> {
        self.written.get(pidx)
    }

    pub fn duplications(&self) -> Vec<Arc<Duplication>> {
        self.dups
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Adds a duplication that ships the writes committed from now on, each partition's progress
    /// starting at its current decree. Returns it, and whether one to the same follower table
    /// existed already (then nothing was added).
    pub fn add_duplication(
        &self,
        spec: DuplicationSpec,
        remote: String,
        now_ms: i64,
    ) -> (Arc<Duplication>, bool) {
        let mut dups = self.dups.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(d) = dups
            .iter()
            .find(|d| d.spec.to == spec.to && d.spec.app == spec.app)
        {
            return (d.clone(), true);
        }
        // From here on writes are logged; the decrees read below cover whatever came before.
        self.dup_master.store(true, Ordering::Release);
        let confirmed = self
            .partitions
            .iter()
            .map(|p| AtomicI64::new(lock(p).last_decree()))
            .collect();
        let mut dupid = i32::try_from(now_ms / 1000).unwrap_or(i32::MAX);
        while dups.iter().any(|d| d.dupid == dupid) {
            dupid += 1;
        }
        let dup = Arc::new(Duplication {
            dupid,
            spec,
            remote,
            create_ts_ms: now_ms,
            confirmed,
            lag: Mutex::default(),
        });
        dups.push(dup.clone());
        (dup, false)
    }

    /// Records that the follower acknowledged everything up to `decree` on `pidx`, and drops the
    /// logged writes every duplication has confirmed.
    pub fn confirm(&self, dup: &Duplication, pidx: usize, decree: i64) {
        if let Some(c) = dup.confirmed.get(pidx) {
            c.fetch_max(decree, Ordering::AcqRel);
        }
        let lowest = self
            .duplications()
            .iter()
            .map(|d| d.confirmed(pidx))
            .min()
            .unwrap_or(decree);
        if let Some(mut p) = self.partition(pidx) {
            p.trim_log(lowest);
        }
    }

    /// Keeps a shipper task, to stop it with the table.
    pub fn keep_shipper(&self, task: AbortHandle) {
        lock(&self.shippers).push(task);
    }

    /// Stops every shipper of the table (it was dropped or replaced).
    pub fn stop_shipping(&self) {
        for task in lock(&self.shippers).drain(..) {
            task.abort();
        }
    }

    /// The last decree of each partition.
    pub fn last_decrees(&self) -> Vec<i64> {
        self.partitions
            .iter()
            .map(|p| lock(p).last_decree())
            .collect()
    }

    /// Keys stored, over every partition.
    pub fn key_count(&self) -> usize {
        self.partitions.iter().map(|p| lock(p).key_count()).sum()
    }

    /// The duplications with their per-partition progress.
    pub fn duplication_states(&self) -> Vec<DuplicationState> {
        let last = self.last_decrees();
        self.duplications()
            .iter()
            .map(|d| (d, lock(&d.lag).clone()))
            .map(|(d, lag)| DuplicationState {
                dupid: d.dupid,
                status: "DS_LOG".into(),
                remote: d.remote.clone(),
                remote_metas: d.spec.to.clone(),
                remote_app: d.spec.app.clone(),
                create_ts_ms: d.create_ts_ms,
                partitions: last
                    .iter()
                    .enumerate()
                    .map(|(i, &l)| DupPartitionState {
                        confirmed_decree: d.confirmed(i),
                        last_committed_decree: l,
                    })
                    .collect(),
                shipped: lag.count(),
                lag_us: lag.summary(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplications_start_at_the_current_decree_and_trim_the_log() {
        let store = TableStore::new(2, 2);
        let args = Bytes::from_static(b"args");
        let put = |store: &TableStore, k: &str| {
            store
                .write(0, "RPC_RRDB_RRDB_PUT", &args, 0, |p, log| {
                    p.put(k.as_bytes(), Bytes::new(), 0, log)
                })
                .expect("partition 0")
        };
        assert_eq!(put(&store, "a"), 1);
        let spec = DuplicationSpec::new(["127.0.0.1:1"], "t");
        let (dup, existed) = store.add_duplication(spec.clone(), "b".into(), 1_700_000_000_000);
        assert!(!existed && store.is_dup_master());
        assert_eq!(dup.confirmed(0), 1);
        assert_eq!(dup.dupid, 1_700_000_000);
        let (again, existed) = store.add_duplication(spec, "b".into(), 0);
        assert!(existed && Arc::ptr_eq(&dup, &again));
        put(&store, "b");
        put(&store, "c");
        assert_eq!(store.partition(0).expect("p0").log_len(), 2);
        store.confirm(&dup, 0, 2);
        assert_eq!(store.partition(0).expect("p0").log_len(), 1);
        let states = store.duplication_states();
        assert_eq!(
            states[0].partitions[0],
            DupPartitionState {
                confirmed_decree: 2,
                last_committed_decree: 3
            }
        );
        assert_eq!(states[0].partitions[1].last_committed_decree, 0);
        assert!(store.write(5, "x", &args, 0, |_, _| ()).is_none());
    }
}
