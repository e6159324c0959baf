//! A well-behaved client beside an attack, and the memory of the process under it.
//!
//! [`Bystander`] queries one table through the proxy in a loop, one request at a time on one
//! connection (reconnecting only if the proxy closed it, which counts as an error), and keeps per
//! phase: how many queries, how many errors (any answer but `ERR_OK`, a closed connection, or no
//! answer within [`HANG`]), and the latency histogram. A robustness test takes a baseline phase,
//! runs the attack, takes the attack's phase, and asserts no error; the latency ratio is printed,
//! not asserted (a loaded 2-core machine makes timed assertions flaky). The one timed check is a
//! hang detector: a query over [`HANG`] is an error.
//!
//! [`PeakRss`] samples a process's resident set every few milliseconds while an attack runs.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pegasus_rpc::codec::ErrorCode;
use tokio::task::JoinHandle;

use crate::raw::{RawConn, query_frame};
use crate::workload::{Histogram, Latency, micros};

/// A query without an answer for this long is a hang, counted as an error.
pub const HANG: Duration = Duration::from_secs(2);

/// Pause between two queries: a steady trickle, not a load.
const PACE: Duration = Duration::from_millis(5);

/// What the bystander saw during one phase.
#[derive(Clone, Debug, Default)]
pub struct Phase {
    pub queries: u64,
    pub errors: u64,
    /// The first few errors, described.
    pub first_errors: Vec<String>,
    pub latency: Latency,
}

impl Phase {
    /// `p99 / baseline p99`, for the report (1.0 when the baseline is empty).
    pub fn p99_ratio(&self, baseline: &Phase) -> f64 {
        if baseline.latency.p99 == 0 {
            return 1.0;
        }
        self.latency.p99 as f64 / baseline.latency.p99 as f64
    }

    /// One line for a test's output: queries, errors, p50/p99/max in ms, the ratio of p99s.
    pub fn line(&self, baseline: &Phase) -> String {
        let ms = |us: u64| us as f64 / 1000.0;
        format!(
            "{} queries, {} errors, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, p99 x{:.1} of baseline",
            self.queries,
            self.errors,
            ms(self.latency.p50),
            ms(self.latency.p99),
            ms(self.latency.max),
            self.p99_ratio(baseline)
        )
    }
}

#[derive(Default)]
struct Tally {
    histogram: Histogram,
    errors: u64,
    first_errors: Vec<String>,
}

impl Tally {
    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.first_errors.len() < 5 {
            self.first_errors.push(what);
        }
    }
}

/// A client querying `table` through the proxy in a loop until dropped.
pub struct Bystander {
    tally: Arc<Mutex<Tally>>,
    task: JoinHandle<()>,
}

impl Bystander {
    /// Connects to `addr` and starts querying `table`.
    pub async fn start(addr: SocketAddr, table: &str) -> Bystander {
        let tally = Arc::new(Mutex::new(Tally::default()));
        let mut conn = RawConn::connect(addr).await;
        let task = {
            let tally = tally.clone();
            let table = table.to_owned();
            tokio::spawn(async move {
                let mut seqid = 0i32;
                loop {
                    seqid = seqid.wrapping_add(1);
                    let started = Instant::now();
                    conn.send(&query_frame(&table, seqid)).await;
                    let outcome = one_answer(&mut conn, seqid).await;
                    let took = started.elapsed();
                    let reconnect = {
                        let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
                        match outcome {
                            Ok(()) => {
                                t.histogram.record(micros(took));
                                false
                            }
                            Err(e) => {
                                t.error(format!("query {seqid}: {e}"));
                                true
                            }
                        }
                    };
                    if reconnect {
                        conn = RawConn::connect(addr).await;
                    }
                    tokio::time::sleep(PACE).await;
                }
            })
        };
        Bystander { tally, task }
    }

    /// What was seen since the last call (or the start); starts a new phase.
    pub fn phase(&self) -> Phase {
        let t = std::mem::take(&mut *self.tally.lock().unwrap_or_else(|p| p.into_inner()));
        Phase {
            queries: t.histogram.count() + t.errors,
            errors: t.errors,
            first_errors: t.first_errors,
            latency: t.histogram.summary(),
        }
    }

    /// Lets at least `queries` more queries be answered (or `timeout` pass), for a baseline.
    pub async fn run_for(&self, queries: u64, timeout: Duration) {
        let start = Instant::now();
        loop {
            let seen = {
                let t = self.tally.lock().unwrap_or_else(|p| p.into_inner());
                t.histogram.count() + t.errors
            };
            if seen >= queries || start.elapsed() > timeout {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits for the answer to `seqid`: `Err` unless it is an `ERR_OK` query_config answer within
/// [`HANG`].
async fn one_answer(conn: &mut RawConn, seqid: i32) -> Result<(), String> {
    let reply = match tokio::time::timeout(HANG, conn.try_reply()).await {
        Err(_) => return Err(format!("no answer within {HANG:?}")),
        Ok(None) => return Err("the proxy closed the connection".into()),
        Ok(Some(reply)) => reply,
    };
    if reply.seqid() != seqid {
        return Err(format!("answer for seqid {}", reply.seqid()));
    }
    if reply.rpc_error != ErrorCode::OK {
        return Err(format!("rpc error {:?}", reply.rpc_error));
    }
    match pegasus_rpc::codec::QueryCfgResponse::from_result(&reply.body) {
        Ok(resp) if resp.err == ErrorCode::OK => Ok(()),
        Ok(resp) => Err(format!("answered {:?}", resp.err)),
        Err(e) => Err(format!("undecodable answer: {e}")),
    }
}

/// The resident set size of process `pid`, in bytes (0 once it is gone).
pub fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

/// The highest resident set size of a process while this lives, sampled every 10 ms.
pub struct PeakRss {
    peak: Arc<Mutex<u64>>,
    task: JoinHandle<()>,
}

impl PeakRss {
    pub fn start(pid: u32) -> PeakRss {
        let peak = Arc::new(Mutex::new(rss(pid)));
        let task = {
            let peak = peak.clone();
            tokio::spawn(async move {
                loop {
                    let now = rss(pid);
                    {
                        let mut p = peak.lock().unwrap_or_else(|p| p.into_inner());
                        *p = (*p).max(now);
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };
        PeakRss { peak, task }
    }

    /// The peak so far, in bytes.
    pub fn peak(&self) -> u64 {
        *self.peak.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for PeakRss {
    fn drop(&mut self) {
        self.task.abort();
    }
}
