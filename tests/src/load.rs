//! A query_config load generator, for benchmarks and for measuring the simulator or the proxy.
//!
//! What flows through it: C connections to one target, each keeping D requests in flight
//! (pipelined, matched to replies by seqid) for a duration or a number of requests, over a list of
//! tables taken in turn. Out comes a [`LoadReport`]: requests per second, a latency distribution,
//! and errors by kind:
//!
//! | key | meaning |
//! |---|---|
//! | `rpc:<NAME>` | the reply's rpc-level error was not `ERR_OK` |
//! | `err:<NAME>` | the `query_cfg_response.err` was not `ERR_OK` (e.g. `err:ERR_OBJECT_NOT_FOUND`) |
//! | `timeout` | no reply within the timeout; the request is given up |
//! | `disconnect` | requests in flight when the connection dropped (it is then reopened) |
//! | `connect` | failed connection attempts |
//! | `bad_reply` | a reply that did not decode; the connection is dropped |
//! | `unmatched` | a reply whose seqid was not in flight (late after a timeout, or bogus) |
//!
//! Requests are encoded once per table with the codec and only their seqid is patched per send,
//! so the generator spends its time on the socket and on decoding replies.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use pegasus_rpc::codec::{
    self, DEFAULT_MAX_REPLY_FRAME, MessageBegin, MessageKind, QueryCfgRequest, QueryCfgResponse,
    RequestFrame, RequestHeader, RequestMetaV1, rpc,
};
use serde::Serialize;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::workload::{Budget, kinds, micros};
// Defined with what the workloads share; named here too, where they were first.
pub use crate::workload::{Histogram, Latency, Until};

/// Which THFT header the requests carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Header {
    /// 48 bytes, as the Go, Python and Node.js clients write it.
    V0,
    /// 16 bytes and a request_meta, as the Java client writes it.
    V1,
}

#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub target: SocketAddr,
    pub connections: usize,
    /// Requests in flight per connection.
    pub depth: usize,
    pub until: Until,
    /// Tables queried in turn, per connection.
    pub tables: Vec<String>,
    pub header: Header,
    /// How long a request may wait for its reply.
    pub timeout: Duration,
}

impl LoadConfig {
    pub fn new(target: SocketAddr, tables: Vec<String>) -> Self {
        LoadConfig {
            target,
            connections: 8,
            depth: 32,
            until: Until::Elapsed(Duration::from_secs(10)),
            tables,
            header: Header::V0,
            timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("invalid load configuration: {0}")]
    Config(String),
}

#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    pub target: SocketAddr,
    pub connections: usize,
    pub depth: usize,
    pub header: Header,
    pub tables: Vec<String>,
    pub elapsed_secs: f64,
    pub sent: u64,
    /// Replies received, whatever they said.
    pub replies: u64,
    /// Replies with rpc-level and response `ERR_OK`.
    pub ok: u64,
    /// Replies per second over the whole run.
    pub requests_per_sec: f64,
    pub latency_us: Latency,
    pub errors: BTreeMap<String, u64>,
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.latency_us;
        writeln!(
            f,
            "target {}  connections {}  depth {}  header {:?}  tables {}",
            self.target,
            self.connections,
            self.depth,
            self.header,
            self.tables.join(",")
        )?;
        writeln!(
            f,
            "elapsed {:.2} s  sent {}  replies {}  ok {}",
            self.elapsed_secs, self.sent, self.replies, self.ok
        )?;
        writeln!(f, "throughput {:.0} requests/s", self.requests_per_sec)?;
        writeln!(
            f,
            "latency us  p50 {}  p90 {}  p99 {}  p999 {}  max {}",
            l.p50, l.p90, l.p99, l.p999, l.max
        )?;
        write!(f, "errors {}", kinds(&self.errors))
    }
}

/// Runs the load and reports on it.
pub async fn run(config: LoadConfig) -> Result<LoadReport, LoadError> {
    if config.connections == 0 || config.depth == 0 {
        return Err(LoadError::Config(
            "connections and depth must be at least 1".into(),
        ));
    }
    if config.tables.is_empty() {
        return Err(LoadError::Config("no table to query".into()));
    }
    if config.timeout.is_zero() {
        return Err(LoadError::Config("the timeout must not be zero".into()));
    }
    let templates: Arc<[Template]> = config
        .tables
        .iter()
        .map(|t| Template::new(t, config.header, config.timeout))
        .collect();
    let started = Instant::now();
    let budget = Arc::new(Budget::new(config.until, started));
    let config = Arc::new(config);
    let workers: Vec<_> = (0..config.connections)
        .map(|_| {
            let worker = Worker {
                config: config.clone(),
                templates: templates.clone(),
                budget: budget.clone(),
                stats: Stats::default(),
                next_table: 0,
                next_seqid: 0,
            };
            tokio::spawn(worker.run())
        })
        .collect();
    let mut total = Stats::default();
    for w in workers {
        match w.await {
            Ok(stats) => total.merge(stats),
            // A worker only ends by returning; a panic is a bug worth seeing in the report.
            Err(e) => *total.errors.entry(format!("worker: {e}")).or_default() += 1,
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(LoadReport {
        target: config.target,
        connections: config.connections,
        depth: config.depth,
        header: config.header,
        tables: config.tables.clone(),
        elapsed_secs: elapsed,
        sent: total.sent,
        replies: total.replies,
        ok: total.ok,
        requests_per_sec: if elapsed > 0.0 {
            total.replies as f64 / elapsed
        } else {
            0.0
        },
        latency_us: total.latency.summary(),
        errors: total.errors,
    })
}

/// A request encoded once; only the seqid changes from send to send.
struct Template {
    bytes: Bytes,
    seqid_at: usize,
}

impl Template {
    fn new(table: &str, header: Header, timeout: Duration) -> Self {
        let mut args = BytesMut::new();
        QueryCfgRequest::new(table).to_args(&mut args);
        let args = args.freeze();
        let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        let frame = match header {
            Header::V0 => RequestFrame::call_v0(rpc::QUERY_CONFIG, 0, timeout_ms, args),
            Header::V1 => RequestFrame {
                header: RequestHeader::V1(RequestMetaV1 {
                    app_id: Some(-1),
                    partition_index: Some(-1),
                    client_timeout: Some(timeout_ms),
                    partition_hash: Some(0),
                    is_backup_request: Some(false),
                }),
                message: MessageBegin::new(rpc::QUERY_CONFIG, MessageKind::Call, 0),
                args,
            },
        };
        let bytes = frame.to_bytes();
        // The seqid is the last field of the message begin, right before the args.
        let seqid_at = bytes.len() - frame.args.len() - 4;
        Template { bytes, seqid_at }
    }

    fn write(&self, seqid: i32, out: &mut BytesMut) {
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        out[start + self.seqid_at..start + self.seqid_at + 4].copy_from_slice(&seqid.to_be_bytes());
    }
}

#[derive(Default)]
struct Stats {
    sent: u64,
    replies: u64,
    ok: u64,
    latency: Histogram,
    errors: BTreeMap<String, u64>,
}

impl Stats {
    fn error(&mut self, kind: &str, n: u64) {
        if n == 0 {
            return;
        }
        match self.errors.get_mut(kind) {
            Some(c) => *c += n,
            None => {
                self.errors.insert(kind.to_owned(), n);
            }
        }
    }

    fn merge(&mut self, other: Stats) {
        self.sent += other.sent;
        self.replies += other.replies;
        self.ok += other.ok;
        self.latency.merge(&other.latency);
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }
}

/// How a connection ended.
enum Ended {
    /// The budget is spent and nothing is in flight.
    Done,
    /// Dropped by the peer or by a bad reply; worth reconnecting if the budget allows.
    Dropped,
}

struct Worker {
    config: Arc<LoadConfig>,
    templates: Arc<[Template]>,
    budget: Arc<Budget>,
    stats: Stats,
    next_table: usize,
    next_seqid: i32,
}

impl Worker {
    async fn run(mut self) -> Stats {
        while !self.budget.over() {
            let connect =
                tokio::time::timeout(self.config.timeout, TcpStream::connect(self.config.target));
            match connect.await {
                Ok(Ok(stream)) => {
                    if let Ended::Done = self.drive(stream).await {
                        break;
                    }
                }
                _ => {
                    self.stats.error("connect", 1);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        self.stats
    }

    /// Sends requests while the budget lasts, keeping `depth` of them in flight.
    fn fill(&mut self, pending: &mut HashMap<i32, Instant>, out: &mut BytesMut) {
        let now = Instant::now();
        while pending.len() < self.config.depth && self.budget.take() {
            let seqid = self.next_seqid;
            self.next_seqid = self.next_seqid.wrapping_add(1);
            self.templates[self.next_table].write(seqid, out);
            self.next_table = (self.next_table + 1) % self.templates.len();
            pending.insert(seqid, now);
            self.stats.sent += 1;
        }
    }

    async fn drive(&mut self, mut stream: TcpStream) -> Ended {
        // Requests are small and latency is measured: do not let Nagle hold them back.
        let _ = stream.set_nodelay(true);
        let (mut rd, mut wr) = stream.split();
        let mut pending: HashMap<i32, Instant> = HashMap::with_capacity(self.config.depth * 2);
        let mut rbuf = BytesMut::with_capacity(64 << 10);
        let mut wbuf = BytesMut::with_capacity(self.config.depth * 160);
        let mut tick = tokio::time::interval(
            (self.config.timeout / 4).clamp(Duration::from_millis(1), Duration::from_millis(100)),
        );
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut key = String::new();
        loop {
            self.fill(&mut pending, &mut wbuf);
            if !wbuf.is_empty() {
                if wr.write_all(&wbuf).await.is_err() {
                    self.stats.error("disconnect", pending.len() as u64);
                    return Ended::Dropped;
                }
                wbuf.clear();
            }
            if pending.is_empty() && self.budget.over() {
                return Ended::Done;
            }
            tokio::select! {
                read = rd.read_buf(&mut rbuf) => {
                    if !matches!(read, Ok(n) if n > 0) {
                        self.stats.error("disconnect", pending.len() as u64);
                        return Ended::Dropped;
                    }
                    let now = Instant::now();
                    loop {
                        match codec::decode_reply(&mut rbuf, DEFAULT_MAX_REPLY_FRAME) {
                            Ok(Some(reply)) => {
                                let Some(sent) = pending.remove(&reply.seqid()) else {
                                    self.stats.error("unmatched", 1);
                                    continue;
                                };
                                self.stats.replies += 1;
                                self.stats.latency.record(micros(now - sent));
                                if !reply.rpc_error.is_ok() {
                                    error_key(&mut key, "rpc:", reply.rpc_error.as_str());
                                    self.stats.error(&key, 1);
                                    continue;
                                }
                                match QueryCfgResponse::peek_err(&reply.body) {
                                    Ok(err) if err.is_ok() => self.stats.ok += 1,
                                    Ok(err) => {
                                        error_key(&mut key, "err:", err.as_str());
                                        self.stats.error(&key, 1);
                                    }
                                    Err(_) => self.stats.error("bad_reply", 1),
                                }
                            }
                            Ok(None) => break,
                            Err(_) => {
                                self.stats.error("bad_reply", 1);
                                self.stats.error("disconnect", pending.len() as u64);
                                return Ended::Dropped;
                            }
                        }
                    }
                    if rbuf.capacity() - rbuf.len() < 4096 {
                        rbuf.reserve(64 << 10);
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    let timeout = self.config.timeout;
                    let before = pending.len();
                    pending.retain(|_, sent| now.duration_since(*sent) < timeout);
                    self.stats.error("timeout", (before - pending.len()) as u64);
                }
            }
        }
    }
}

fn error_key(key: &mut String, prefix: &str, name: &str) {
    key.clear();
    key.push_str(prefix);
    key.push_str(name);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_patch_the_seqid() {
        for header in [Header::V0, Header::V1] {
            let t = Template::new("temp", header, Duration::from_secs(5));
            let mut out = BytesMut::new();
            t.write(0x0102_0304, &mut out);
            let frame = codec::decode_request(&mut out, codec::DEFAULT_MAX_REQUEST_FRAME)
                .expect("decodes")
                .expect("whole");
            assert_eq!(frame.seqid(), 0x0102_0304);
            assert_eq!(frame.name(), rpc::QUERY_CONFIG);
            assert_eq!(
                QueryCfgRequest::from_args(&frame.args).expect("args"),
                QueryCfgRequest::new("temp")
            );
        }
    }
}
