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
use std::sync::atomic::{AtomicU64, Ordering};
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

/// Which THFT header the requests carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Header {
    /// 48 bytes, as the Go, Python and Node.js clients write it.
    V0,
    /// 16 bytes and a request_meta, as the Java client writes it.
    V1,
}

/// When the run ends: after a time, or after sending a number of requests. Requests in flight
/// at that point are still waited for (up to the timeout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Until {
    Elapsed(Duration),
    Requests(u64),
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

/// Latency percentiles in microseconds (within 1% of the exact values).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
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
        if self.errors.is_empty() {
            write!(f, "errors none")
        } else {
            let list: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            write!(f, "errors {}", list.join("  "))
        }
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
    let budget = Arc::new(Budget {
        issued: AtomicU64::new(0),
        limit: match config.until {
            Until::Requests(n) => Some(n),
            Until::Elapsed(_) => None,
        },
        deadline: match config.until {
            Until::Elapsed(d) => Some(started + d),
            Until::Requests(_) => None,
        },
    });
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

/// Who may send one more request.
struct Budget {
    issued: AtomicU64,
    limit: Option<u64>,
    deadline: Option<Instant>,
}

impl Budget {
    fn over(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
            || self
                .limit
                .is_some_and(|n| self.issued.load(Ordering::Relaxed) >= n)
    }

    fn take(&self) -> bool {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        match self.limit {
            Some(n) => self.issued.fetch_add(1, Ordering::Relaxed) < n,
            None => true,
        }
    }
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

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A log-linear histogram: exact below 128, then 128 buckets per power of two (under 1% error).
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; ((64 - SUB_BITS as usize) + 1) << SUB_BITS],
            total: 0,
            max: 0,
        }
    }
}

impl Histogram {
    fn index(v: u64) -> usize {
        if v < SUB {
            return v as usize;
        }
        let shift = 63 - v.leading_zeros() - SUB_BITS;
        (((shift + 1) as u64) << SUB_BITS | ((v >> shift) - SUB)) as usize
    }

    /// The middle of the values that fall in bucket `i`.
    fn value(i: usize) -> u64 {
        let i = i as u64;
        if i < SUB {
            return i;
        }
        let shift = (i >> SUB_BITS) - 1;
        let low = (SUB + (i & (SUB - 1))) << shift;
        low + ((1u64 << shift) >> 1)
    }

    pub fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value below which a fraction `q` of the recorded values fall.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::value(i).min(self.max);
            }
        }
        self.max
    }

    pub fn summary(&self) -> Latency {
        Latency {
            p50: self.quantile(0.50),
            p90: self.quantile(0.90),
            p99: self.quantile(0.99),
            p999: self.quantile(0.999),
            max: self.max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_contiguous_and_close() {
        let mut last = 0;
        for v in [
            0,
            1,
            127,
            128,
            129,
            255,
            256,
            1000,
            123_456,
            9_999_999,
            u64::MAX / 3,
        ] {
            let i = Histogram::index(v);
            assert!(i >= last, "index of {v} went back");
            last = i;
            let mid = Histogram::value(i);
            let err = (mid as f64 - v as f64).abs() / (v.max(1) as f64);
            assert!(err < 0.01, "{v} -> bucket {i} value {mid}");
        }
        assert!(Histogram::index(u64::MAX) < Histogram::default().counts.len());
    }

    #[test]
    fn histogram_quantiles() {
        let mut h = Histogram::default();
        for v in 1..=1000 {
            h.record(v);
        }
        let s = h.summary();
        assert!((495..=505).contains(&s.p50), "{s:?}");
        assert!((985..=1000).contains(&s.p99), "{s:?}");
        assert_eq!(s.max, 1000);
        let mut other = Histogram::default();
        other.record(5000);
        h.merge(&other);
        assert_eq!((h.count(), h.summary().max), (1001, 5000));
        assert_eq!(Histogram::default().summary(), Latency::default());
    }

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
