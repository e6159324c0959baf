//! The `kv` workload of the load tool: clients that read and write a Pegasus table through a
//! MetaServer address (a simulated cluster's, or the proxy's) the way the official clients do
//! ([`crate::client`]), and that remember every write they got acknowledged, so that a failover
//! can be judged by what clients saw and by what survived.
//!
//! What flows through it: W workers, each with one operation in flight, write unique keys
//! (`<run>-<worker>-<seq>`, sort key `s`, a value naming the key) and read back keys they wrote,
//! in the ratio asked. Every acknowledged write is remembered. At the end, with verification
//! asked, every acknowledged key is read back, from the same MetaServer address or another one
//! (e.g. the backup cluster's), and the writes that are gone or different are reported as lost.
//!
//! The report has totals, latencies, final errors by kind (`write:timeout`,
//! `read:rpc:ERR_INVALID_STATE`, `read:missing`, ...), the attempts that were retried after a
//! re-query, the re-queries themselves, and a per-second timeline of all of it, from which a
//! failover window can be read.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::client::{ClientOptions, HeaderKind, OpError, TableClient};
use crate::workload::{Budget, Histogram, Latency, Until, kinds, micros};

/// How to run the workload.
#[derive(Clone, Debug)]
pub struct KvConfig {
    /// MetaServer addresses (`host:port`) of the cluster or of a proxy.
    pub metas: Vec<String>,
    pub table: String,
    /// Operations in flight.
    pub workers: usize,
    pub until: Until,
    /// The share of operations that are writes, in 0..=1. A worker writes until it has a key to
    /// read.
    pub write_ratio: f64,
    /// Bytes per value.
    pub value_size: usize,
    pub client: ClientOptions,
    /// Read every acknowledged write back at the end, through these MetaServer addresses.
    pub verify: Option<Vec<String>>,
    /// The table's name where it is verified (default: the same).
    pub verify_table: Option<String>,
    /// How long to wait between the last operation and the reading back: time for duplication
    /// to carry the last writes to a follower that is verified.
    pub verify_after: Duration,
}

impl KvConfig {
    pub fn new(metas: Vec<String>, table: impl Into<String>) -> Self {
        KvConfig {
            metas,
            table: table.into(),
            workers: 16,
            until: Until::Elapsed(Duration::from_secs(10)),
            write_ratio: 0.5,
            value_size: 32,
            client: ClientOptions::default(),
            verify: None,
            verify_table: None,
            verify_after: Duration::ZERO,
        }
    }
}

#[derive(Debug, Error)]
pub enum KvError {
    #[error("invalid kv workload configuration: {0}")]
    Config(String),
}

/// One second of the run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Second {
    /// Seconds since the start (this second covers [t, t + 1)).
    pub t: u64,
    pub writes_ok: u64,
    pub reads_ok: u64,
    /// Operations that failed, by kind.
    pub errors: BTreeMap<String, u64>,
    /// Attempts that failed and were retried after a re-query.
    pub retried: u64,
    /// query_config requests sent for the table.
    pub requeries: u64,
}

/// Counts and latency of one kind of operation.
#[derive(Clone, Debug, Default, Serialize)]
pub struct OpStats {
    pub ok: u64,
    pub failed: u64,
    pub latency_us: Latency,
}

/// Reading every acknowledged write back.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    pub metas: Vec<String>,
    pub table: String,
    /// Acknowledged writes checked.
    pub checked: u64,
    pub ok: u64,
    /// Acknowledged writes that are gone.
    pub lost: u64,
    /// Acknowledged writes whose value differs.
    pub wrong: u64,
    /// Keys that could not be read (after retries); neither found nor known lost.
    pub unreadable: u64,
    /// Some lost or wrong keys, for a look at the store.
    pub examples: Vec<String>,
}

impl VerifyReport {
    /// Acknowledged writes that did not survive.
    pub fn lost_or_wrong(&self) -> u64 {
        self.lost + self.wrong
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct KvReport {
    pub metas: Vec<String>,
    pub table: String,
    pub workers: usize,
    pub header: HeaderKind,
    pub elapsed_secs: f64,
    pub writes: OpStats,
    pub reads: OpStats,
    /// Successful operations per second over the run.
    pub ops_per_sec: f64,
    /// Failed operations by kind.
    pub errors: BTreeMap<String, u64>,
    /// Failed attempts that were retried, by kind.
    pub retried: BTreeMap<String, u64>,
    /// query_config requests sent for the table (the first one included).
    pub requeries: u64,
    pub timeline: Vec<Second>,
    pub verify: Option<VerifyReport>,
}

/// What a run has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub writes_ok: u64,
    pub reads_ok: u64,
    pub failed: u64,
}

#[derive(Default)]
struct Live {
    writes_ok: AtomicU64,
    reads_ok: AtomicU64,
    failed: AtomicU64,
}

/// A running workload.
pub struct KvRun {
    stop: watch::Sender<bool>,
    live: Arc<Live>,
    task: JoinHandle<Result<KvReport, KvError>>,
}

impl KvRun {
    /// Asks the workers to finish their operation in flight and stop.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    pub fn progress(&self) -> Progress {
        Progress {
            writes_ok: self.live.writes_ok.load(Ordering::Relaxed),
            reads_ok: self.live.reads_ok.load(Ordering::Relaxed),
            failed: self.live.failed.load(Ordering::Relaxed),
        }
    }

    /// Waits for the end of the run (and of the verification) and reports.
    pub async fn finish(self) -> Result<KvReport, KvError> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(KvError::Config(format!("the workload task failed: {e}"))),
        }
    }
}

/// Runs the workload to its end.
pub async fn run(config: KvConfig) -> Result<KvReport, KvError> {
    spawn(config)?.finish().await
}

/// Starts the workload in the background.
pub fn spawn(config: KvConfig) -> Result<KvRun, KvError> {
    if config.workers == 0 {
        return Err(KvError::Config("at least one worker".into()));
    }
    if !(0.0..=1.0).contains(&config.write_ratio) {
        return Err(KvError::Config("the write ratio is outside 0..=1".into()));
    }
    if config.metas.is_empty() {
        return Err(KvError::Config("no MetaServer address".into()));
    }
    if config.verify.as_ref().is_some_and(|v| v.is_empty()) {
        return Err(KvError::Config(
            "no MetaServer address to verify with".into(),
        ));
    }
    let client = TableClient::new(&config.table, &config.metas, config.client.clone())
        .map_err(|e| KvError::Config(e.to_string()))?;
    let (stop, stopped) = watch::channel(false);
    let live = Arc::new(Live::default());
    let task = tokio::spawn(drive(config, Arc::new(client), stopped, live.clone()));
    Ok(KvRun { stop, live, task })
}

/// A unique prefix per run, so that runs on the same table do not read each other's keys.
fn run_prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "kv{:x}",
        (nanos as u64) ^ u64::from(std::process::id()).rotate_left(40)
    )
}

fn key(prefix: &str, worker: usize, seq: u64) -> String {
    format!("{prefix}-{worker}-{seq}")
}

const SORT_KEY: &[u8] = b"s";

fn value(key: &str, size: usize) -> Vec<u8> {
    let mut v = key.as_bytes().to_vec();
    v.push(b':');
    v.resize(size.max(v.len()), b'x');
    v
}

/// A small xorshift generator: which operation, which key to read.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What one worker saw.
#[derive(Default)]
struct WorkerStats {
    acked: Vec<u64>,
    writes: OpCounts,
    reads: OpCounts,
    errors: BTreeMap<String, u64>,
    timeline: BTreeMap<u64, Second>,
}

#[derive(Default)]
struct OpCounts {
    ok: u64,
    failed: u64,
    latency: Histogram,
}

impl WorkerStats {
    fn second(&mut self, t: u64) -> &mut Second {
        self.timeline.entry(t).or_insert_with(|| Second {
            t,
            ..Default::default()
        })
    }

    fn error(&mut self, t: u64, kind: String) {
        *self.second(t).errors.entry(kind.clone()).or_default() += 1;
        *self.errors.entry(kind).or_default() += 1;
    }
}

async fn drive(
    config: KvConfig,
    client: Arc<TableClient>,
    mut stopped: watch::Receiver<bool>,
    live: Arc<Live>,
) -> Result<KvReport, KvError> {
    let started = Instant::now();
    let budget = Arc::new(Budget::new(config.until, started.into_std()));
    {
        let budget = budget.clone();
        tokio::spawn(async move {
            let _ = stopped.wait_for(|s| *s).await;
            budget.stop();
        });
    }
    let prefix = Arc::new(run_prefix());
    let workers: Vec<_> = (0..config.workers)
        .map(|w| {
            let (client, budget, prefix, live) =
                (client.clone(), budget.clone(), prefix.clone(), live.clone());
            let (ratio, size) = (config.write_ratio, config.value_size);
            tokio::spawn(async move {
                let mut stats = WorkerStats::default();
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((w as u64 + 1) << 17));
                let mut seq = 0u64;
                while budget.take() {
                    let write = stats.acked.is_empty() || rng.unit() < ratio;
                    let op_start = Instant::now();
                    if write {
                        let k = key(&prefix, w, seq);
                        let result = client
                            .set(k.as_bytes(), SORT_KEY, &value(&k, size), 0)
                            .await;
                        let t = started.elapsed().as_secs();
                        let us = micros(op_start.elapsed());
                        match result {
                            Ok(_) => {
                                stats.acked.push(seq);
                                stats.writes.ok += 1;
                                stats.writes.latency.record(us);
                                stats.second(t).writes_ok += 1;
                                live.writes_ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                stats.writes.failed += 1;
                                stats.error(t, format!("write:{}", e.kind()));
                                live.failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        seq += 1;
                    } else {
                        let pick = stats.acked[(rng.next() % stats.acked.len() as u64) as usize];
                        let k = key(&prefix, w, pick);
                        let result = client.get(k.as_bytes(), SORT_KEY).await;
                        let t = started.elapsed().as_secs();
                        let us = micros(op_start.elapsed());
                        let outcome = match result {
                            Ok(Some(v)) if v[..] == value(&k, size)[..] => Ok(()),
                            Ok(Some(_)) => Err("read:mismatch".to_owned()),
                            Ok(None) => Err("read:missing".to_owned()),
                            Err(e) => Err(format!("read:{}", e.kind())),
                        };
                        match outcome {
                            Ok(()) => {
                                stats.reads.ok += 1;
                                stats.reads.latency.record(us);
                                stats.second(t).reads_ok += 1;
                                live.reads_ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(kind) => {
                                stats.reads.failed += 1;
                                stats.error(t, kind);
                                live.failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
                stats
            })
        })
        .collect();
    let mut all = Vec::with_capacity(workers.len());
    for w in workers {
        match w.await {
            Ok(stats) => all.push(stats),
            Err(e) => return Err(KvError::Config(format!("a worker failed: {e}"))),
        }
    }
    let elapsed = started.elapsed();

    let mut writes = OpCounts::default();
    let mut reads = OpCounts::default();
    let mut errors = BTreeMap::new();
    let mut timeline: BTreeMap<u64, Second> = BTreeMap::new();
    for s in &all {
        writes.ok += s.writes.ok;
        writes.failed += s.writes.failed;
        writes.latency.merge(&s.writes.latency);
        reads.ok += s.reads.ok;
        reads.failed += s.reads.failed;
        reads.latency.merge(&s.reads.latency);
        for (k, v) in &s.errors {
            *errors.entry(k.clone()).or_default() += v;
        }
        for (t, sec) in &s.timeline {
            let into = timeline.entry(*t).or_insert_with(|| Second {
                t: *t,
                ..Default::default()
            });
            into.writes_ok += sec.writes_ok;
            into.reads_ok += sec.reads_ok;
            for (k, v) in &sec.errors {
                *into.errors.entry(k.clone()).or_default() += v;
            }
        }
    }
    let second_of = |at: Instant| at.saturating_duration_since(started).as_secs();
    let mut retried = BTreeMap::new();
    for (at, kind) in client
        .attempt_log()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
    {
        *retried.entry(kind.clone()).or_default() += 1;
        timeline
            .entry(second_of(*at))
            .or_insert_with(|| Second {
                t: second_of(*at),
                ..Default::default()
            })
            .retried += 1;
    }
    let queries = client.router().query_log();
    let queries = queries
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    for at in &queries {
        let t = second_of(*at);
        timeline
            .entry(t)
            .or_insert_with(|| Second {
                t,
                ..Default::default()
            })
            .requeries += 1;
    }
    // Every second of the run gets a row, quiet ones too: a gap is worth seeing.
    let last = timeline
        .keys()
        .next_back()
        .copied()
        .unwrap_or(0)
        .max(elapsed.as_secs().saturating_sub(1));
    let timeline: Vec<Second> = (0..=last)
        .map(|t| {
            timeline.remove(&t).unwrap_or(Second {
                t,
                ..Default::default()
            })
        })
        .collect();

    let verify = match &config.verify {
        None => None,
        Some(metas) => {
            tokio::time::sleep(config.verify_after).await;
            let acked: Vec<(usize, Vec<u64>)> = all
                .iter()
                .enumerate()
                .map(|(w, s)| (w, s.acked.clone()))
                .collect();
            Some(verify(&config, metas, &prefix, acked).await?)
        }
    };
    let secs = elapsed.as_secs_f64();
    Ok(KvReport {
        metas: config.metas.clone(),
        table: config.table.clone(),
        workers: config.workers,
        header: config.client.header,
        elapsed_secs: secs,
        writes: OpStats {
            ok: writes.ok,
            failed: writes.failed,
            latency_us: writes.latency.summary(),
        },
        reads: OpStats {
            ok: reads.ok,
            failed: reads.failed,
            latency_us: reads.latency.summary(),
        },
        ops_per_sec: if secs > 0.0 {
            (writes.ok + reads.ok) as f64 / secs
        } else {
            0.0
        },
        errors,
        retried,
        requeries: queries.len() as u64,
        timeline,
        verify,
    })
}

/// Reads every acknowledged write back through `metas`. A key that cannot be read is tried
/// again (5 times in all) before it counts as unreadable.
async fn verify(
    config: &KvConfig,
    metas: &[String],
    prefix: &str,
    acked: Vec<(usize, Vec<u64>)>,
) -> Result<VerifyReport, KvError> {
    let table = config.verify_table.clone().unwrap_or(config.table.clone());
    let client = Arc::new(
        TableClient::new(&table, metas, config.client.clone())
            .map_err(|e| KvError::Config(e.to_string()))?,
    );
    let keys: Vec<String> = acked
        .into_iter()
        .flat_map(|(w, seqs)| seqs.into_iter().map(move |s| (w, s)))
        .map(|(w, s)| key(prefix, w, s))
        .collect();
    let keys = Arc::new(keys);
    let next = Arc::new(AtomicU64::new(0));
    let size = config.value_size;
    let readers: Vec<_> = (0..config.workers.min(64))
        .map(|_| {
            let (client, keys, next) = (client.clone(), keys.clone(), next.clone());
            tokio::spawn(async move {
                let mut r = VerifyReport::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(k) = keys.get(i) else { break };
                    let mut result: Result<Option<Bytes>, OpError> = Err(OpError::Timeout);
                    for _ in 0..5 {
                        result = client.get(k.as_bytes(), SORT_KEY).await;
                        if result.is_ok() {
                            break;
                        }
                    }
                    r.checked += 1;
                    match result {
                        Ok(Some(v)) if v[..] == value(k, size)[..] => r.ok += 1,
                        Ok(Some(_)) => {
                            r.wrong += 1;
                            r.examples.push(format!("{k} (different value)"));
                        }
                        Ok(None) => {
                            r.lost += 1;
                            r.examples.push(k.clone());
                        }
                        Err(_) => r.unreadable += 1,
                    }
                }
                r
            })
        })
        .collect();
    let mut total = VerifyReport {
        metas: metas.to_vec(),
        table,
        ..Default::default()
    };
    for reader in readers {
        let r = reader
            .await
            .map_err(|e| KvError::Config(format!("a verifier failed: {e}")))?;
        total.checked += r.checked;
        total.ok += r.ok;
        total.lost += r.lost;
        total.wrong += r.wrong;
        total.unreadable += r.unreadable;
        total.examples.extend(r.examples);
    }
    total.examples.sort();
    total.examples.truncate(10);
    Ok(total)
}

impl fmt::Display for KvReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (w, r) = (&self.writes.latency_us, &self.reads.latency_us);
        writeln!(
            f,
            "kv workload  metas {}  table {}  workers {}  header {:?}",
            self.metas.join(","),
            self.table,
            self.workers,
            self.header
        )?;
        writeln!(
            f,
            "elapsed {:.2} s  writes ok {} failed {}  reads ok {} failed {}  {:.0} ok ops/s",
            self.elapsed_secs,
            self.writes.ok,
            self.writes.failed,
            self.reads.ok,
            self.reads.failed,
            self.ops_per_sec
        )?;
        writeln!(
            f,
            "latency us  write p50 {} p99 {} max {}  read p50 {} p99 {} max {}",
            w.p50, w.p99, w.max, r.p50, r.p99, r.max
        )?;
        writeln!(f, "errors {}", kinds(&self.errors))?;
        writeln!(
            f,
            "retried attempts {}  query_config sent {}",
            kinds(&self.retried),
            self.requeries
        )?;
        writeln!(f, "timeline")?;
        writeln!(
            f,
            "{:>5} {:>9} {:>9} {:>7} {:>7} {:>8}  errors",
            "t(s)", "writes", "reads", "failed", "retried", "queries"
        )?;
        for s in &self.timeline {
            let failed: u64 = s.errors.values().sum();
            writeln!(
                f,
                "{:>5} {:>9} {:>9} {:>7} {:>7} {:>8}  {}",
                s.t,
                s.writes_ok,
                s.reads_ok,
                failed,
                s.retried,
                s.requeries,
                if s.errors.is_empty() {
                    String::new()
                } else {
                    kinds(&s.errors)
                }
            )?;
        }
        match &self.verify {
            None => write!(f, "verify not asked"),
            Some(v) => write!(
                f,
                "verify via {} table {}: checked {}  ok {}  LOST {}  wrong {}  unreadable {}{}",
                v.metas.join(","),
                v.table,
                v.checked,
                v.ok,
                v.lost,
                v.wrong,
                v.unreadable,
                if v.examples.is_empty() {
                    String::new()
                } else {
                    format!("  e.g. {}", v.examples.join(" "))
                }
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_name_their_key_and_have_the_size_asked() {
        assert_eq!(value("k", 6), b"k:xxxx");
        assert_eq!(value("long-key", 2), b"long-key:");
        assert_ne!(key("p", 1, 2), key("p", 12, 0));
    }

    #[test]
    fn the_generator_spreads() {
        let mut r = Rng(7);
        let writes = (0..10_000).filter(|_| r.unit() < 0.3).count();
        assert!((2_700..3_300).contains(&writes), "{writes}");
    }
}
