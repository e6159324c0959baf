//! A query_config load generator, for benchmarks and for measuring the simulator or the proxy.
//!
//! What flows through it: C connections to one target (loopback only, unless allowed), each
//! pipelining requests (matched to replies by seqid) for a duration or a number of requests,
//! over a list of tables taken in turn, paced one of two ways ([`Pace`]):
//!
//! - closed loop: each connection keeps D requests in flight, sending one as each reply comes;
//!   latency runs from the send.
//! - open loop: requests are due at a fixed total rate, each at its intended time whatever the
//!   replies do; latency runs from the intended time, so a server that falls behind shows its
//!   queue in the latency instead of slowing the sender down.
//!
//! Out comes a [`LoadReport`]: requests per second, a latency distribution, and errors by kind.
//! Every reply is checked ([`check_reply`]), so a fast wrong answer counts as an error:
//!
//! | key | meaning |
//! |---|---|
//! | `rpc:<NAME>` | the reply's rpc-level error was not `ERR_OK` |
//! | `err:<NAME>` | the `query_cfg_response.err` was not `ERR_OK` (e.g. `err:ERR_OBJECT_NOT_FOUND`) |
//! | `bad_name` | the reply is not named `RPC_CM_QUERY_PARTITION_CONFIG_BY_INDEX_ACK` |
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
    self, DEFAULT_MAX_REPLY_FRAME, ErrorCode, MessageBegin, MessageKind, QueryCfgRequest,
    QueryCfgResponse, RequestFrame, RequestHeader, RequestMetaV1, rpc,
};
use serde::Serialize;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant as TokioInstant;

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

/// How requests are paced.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pace {
    /// Each connection keeps `depth` requests in flight.
    Closed,
    /// Requests are due at this many per second in all, spread evenly over the connections.
    Open { rate: f64 },
}

#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub target: SocketAddr,
    pub connections: usize,
    /// Requests in flight per connection (closed loop).
    pub depth: usize,
    pub pace: Pace,
    /// Whether a target that is not a loopback address may be loaded.
    pub allow_non_loopback: bool,
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
            pace: Pace::Closed,
            allow_non_loopback: false,
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
    pub pace: Pace,
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
    /// Open loop: how late requests left after their intended time (the sender's own delay,
    /// included in `latency_us`).
    pub send_lag_us: Option<Latency>,
    pub errors: BTreeMap<String, u64>,
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.latency_us;
        let pace = match self.pace {
            Pace::Closed => format!("depth {}", self.depth),
            Pace::Open { rate } => format!("open loop at {rate} requests/s"),
        };
        writeln!(
            f,
            "target {}  connections {}  {pace}  header {:?}  tables {}",
            self.target,
            self.connections,
            self.header,
            table_list(&self.tables)
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
        if let Some(l) = &self.send_lag_us {
            writeln!(
                f,
                "send lag us  p50 {}  p99 {}  max {}",
                l.p50, l.p99, l.max
            )?;
        }
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
    if let Pace::Open { rate } = config.pace
        && !(rate.is_finite() && rate > 0.0)
    {
        return Err(LoadError::Config(format!(
            "the rate must be a positive number of requests per second, not {rate}"
        )));
    }
    if !config.allow_non_loopback && !config.target.ip().is_loopback() {
        return Err(LoadError::Config(format!(
            "{} is not a loopback address (allow it with --allow-non-loopback)",
            config.target
        )));
    }
    let templates: Arc<[Template]> = config
        .tables
        .iter()
        .map(|t| Template::new(t, config.header, config.timeout))
        .collect();
    let started = Instant::now();
    let budget = Arc::new(Budget::new(config.until, started));
    let config = Arc::new(config);
    let per_connection = match config.pace {
        Pace::Closed => None,
        Pace::Open { rate } => Some(rate / config.connections as f64),
    };
    let workers: Vec<_> = (0..config.connections)
        .map(|i| {
            let worker = Worker {
                config: config.clone(),
                templates: templates.clone(),
                budget: budget.clone(),
                stats: Stats::default(),
                // Connections start staggered over one interval, so that together they send
                // evenly rather than in bursts of C.
                pacer: per_connection.map(|rate| {
                    Pacer::new(
                        TokioInstant::from_std(started),
                        rate,
                        i as f64 / config.connections as f64,
                    )
                }),
                // Each connection starts at a different table, so that a mix of distinct
                // tables is spread over the connections from the start.
                next_table: i % templates.len(),
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
        pace: config.pace,
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
        send_lag_us: matches!(config.pace, Pace::Open { .. }).then(|| total.send_lag.summary()),
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

/// The tables `<prefix>0` to `<prefix><n-1>`: a mix of distinct tables, which defeats the
/// proxy's coalescing of identical queries in flight.
pub fn distinct_tables(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// A table list for a report line: short lists in full, long ones by their ends.
fn table_list(tables: &[String]) -> String {
    match tables {
        [first, .., last] if tables.len() > 4 => {
            format!("{first},...,{last} ({} tables)", tables.len())
        }
        _ => tables.join(","),
    }
}

/// What a reply says, once matched to its request by seqid.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// An error of this kind: a key prefix and an error name (`("err:",
    /// Some(ERR_OBJECT_NOT_FOUND))`), or a fixed key without one.
    Error(&'static str, Option<ErrorCode>),
}

/// Checks a query_config reply: its name, its rpc-level error and its response's `err`.
pub fn check_reply(reply: &codec::ReplyFrame) -> Verdict {
    if reply.message.name != rpc::QUERY_CONFIG_ACK {
        return Verdict::Error("bad_name", None);
    }
    if !reply.rpc_error.is_ok() {
        return Verdict::Error("rpc:", Some(reply.rpc_error.clone()));
    }
    match QueryCfgResponse::peek_err(&reply.body) {
        Ok(err) if err.is_ok() => Verdict::Ok,
        Ok(err) => Verdict::Error("err:", Some(err)),
        Err(_) => Verdict::Error("bad_reply", None),
    }
}

/// The open loop's schedule for one connection: request `k` is due at `start + (k + phase) /
/// rate` seconds, whatever became of the ones before it.
#[derive(Clone, Debug)]
pub struct Pacer {
    start: TokioInstant,
    /// Seconds between two requests.
    interval: f64,
    /// Where in the first interval this connection starts, in 0..1.
    phase: f64,
    /// Requests sent so far.
    sent: u64,
}

impl Pacer {
    pub fn new(start: TokioInstant, rate: f64, phase: f64) -> Self {
        Pacer {
            start,
            interval: 1.0 / rate,
            phase,
            sent: 0,
        }
    }

    /// When request `k` is due.
    pub fn intended(&self, k: u64) -> TokioInstant {
        self.start + Duration::from_secs_f64((k as f64 + self.phase) * self.interval)
    }

    /// When the next request is due.
    pub fn next_due(&self) -> TokioInstant {
        self.intended(self.sent)
    }

    /// Takes the next request if it is due at `now`, returning its intended time.
    pub fn take_due(&mut self, now: TokioInstant) -> Option<TokioInstant> {
        let at = self.next_due();
        (at <= now).then(|| {
            self.sent += 1;
            at
        })
    }
}

#[derive(Default)]
struct Stats {
    sent: u64,
    replies: u64,
    ok: u64,
    latency: Histogram,
    send_lag: Histogram,
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
        self.send_lag.merge(&other.send_lag);
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
    /// Open loop: the schedule; closed loop: none.
    pacer: Option<Pacer>,
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

    /// Sends requests while the budget lasts: closed loop, keeping `depth` of them in flight;
    /// open loop, every one that is due. Each is recorded with the time its latency runs from.
    fn fill(&mut self, pending: &mut HashMap<i32, TokioInstant>, out: &mut BytesMut) {
        let now = TokioInstant::now();
        loop {
            let since = match &mut self.pacer {
                None if pending.len() < self.config.depth => now,
                None => return,
                Some(pacer) => match pacer.take_due(now) {
                    Some(intended) => {
                        self.stats.send_lag.record(micros(now - intended));
                        intended
                    }
                    None => return,
                },
            };
            if !self.budget.take() {
                return;
            }
            let seqid = self.next_seqid;
            self.next_seqid = self.next_seqid.wrapping_add(1);
            self.templates[self.next_table].write(seqid, out);
            self.next_table = (self.next_table + 1) % self.templates.len();
            pending.insert(seqid, since);
            self.stats.sent += 1;
        }
    }

    async fn drive(&mut self, mut stream: TcpStream) -> Ended {
        // Requests are small and latency is measured: do not let Nagle hold them back.
        let _ = stream.set_nodelay(true);
        let (mut rd, mut wr) = stream.split();
        let mut pending: HashMap<i32, TokioInstant> = HashMap::with_capacity(self.config.depth * 2);
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
            let next_due = self
                .pacer
                .as_ref()
                .filter(|_| !self.budget.over())
                .map(Pacer::next_due);
            tokio::select! {
                read = rd.read_buf(&mut rbuf) => {
                    if !matches!(read, Ok(n) if n > 0) {
                        self.stats.error("disconnect", pending.len() as u64);
                        return Ended::Dropped;
                    }
                    let now = TokioInstant::now();
                    loop {
                        match codec::decode_reply(&mut rbuf, DEFAULT_MAX_REPLY_FRAME) {
                            Ok(Some(reply)) => {
                                let Some(sent) = pending.remove(&reply.seqid()) else {
                                    self.stats.error("unmatched", 1);
                                    continue;
                                };
                                self.stats.replies += 1;
                                self.stats.latency.record(micros(now.saturating_duration_since(sent)));
                                match check_reply(&reply) {
                                    Verdict::Ok => self.stats.ok += 1,
                                    Verdict::Error(prefix, name) => {
                                        error_key(&mut key, prefix, name.as_ref().map_or("", ErrorCode::as_str));
                                        self.stats.error(&key, 1);
                                    }
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
                () = tokio::time::sleep_until(next_due.unwrap_or_else(TokioInstant::now)), if next_due.is_some() => {}
                _ = tick.tick() => {
                    let now = TokioInstant::now();
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

    #[test]
    fn the_open_loop_schedule_is_fixed_by_the_rate_not_by_the_replies() {
        let start = TokioInstant::now();
        let ms = Duration::from_millis;
        // (rate, phase, k, due after start)
        let cases = [
            (1000.0, 0.0, 0, ms(0)),
            (1000.0, 0.0, 1, ms(1)),
            (1000.0, 0.0, 2500, ms(2500)),
            (1000.0, 0.5, 0, Duration::from_micros(500)),
            (1000.0, 0.5, 3, Duration::from_micros(3500)),
            (2500.0, 0.0, 5, ms(2)),
        ];
        for (rate, phase, k, want) in cases {
            let got = Pacer::new(start, rate, phase).intended(k) - start;
            let off = got.abs_diff(want);
            assert!(
                off < Duration::from_micros(1),
                "{rate}/s phase {phase} k {k}: {got:?}"
            );
        }
        // Taking what is due: nothing early; everything late at once, each with its own time.
        let mut p = Pacer::new(start, 1000.0, 0.0);
        assert_eq!(p.take_due(start), Some(start));
        assert_eq!(p.take_due(start), None, "the next one is due in 1 ms");
        let late = start + ms(3);
        let taken: Vec<_> = std::iter::from_fn(|| p.take_due(late)).collect();
        assert_eq!(taken, vec![start + ms(1), start + ms(2), start + ms(3)]);
        assert_eq!(p.next_due(), start + ms(4));
    }

    #[test]
    fn replies_are_checked_by_name_rpc_error_and_err() {
        let body = |err: ErrorCode| {
            let mut out = BytesMut::new();
            QueryCfgResponse::error(err).to_result(&mut out);
            out.freeze()
        };
        let reply = |name: &str, rpc: ErrorCode, body: Bytes| codec::ReplyFrame {
            rpc_error: rpc,
            message: MessageBegin::new(name, MessageKind::Reply, 7),
            body,
        };
        let ok = body(codec::ErrorCode::OK);
        let cases = [
            (
                reply(rpc::QUERY_CONFIG_ACK, ErrorCode::OK, ok.clone()),
                Verdict::Ok,
            ),
            (
                reply(
                    "RPC_CM_QUERY_PARTITION_CONFIG_BY_INDEX",
                    ErrorCode::OK,
                    ok.clone(),
                ),
                Verdict::Error("bad_name", None),
            ),
            (
                reply(rpc::NEGOTIATION_ACK, ErrorCode::OK, ok.clone()),
                Verdict::Error("bad_name", None),
            ),
            (
                reply(
                    rpc::QUERY_CONFIG_ACK,
                    ErrorCode::HANDLER_NOT_FOUND,
                    Bytes::new(),
                ),
                Verdict::Error("rpc:", Some(ErrorCode::HANDLER_NOT_FOUND)),
            ),
            (
                reply(
                    rpc::QUERY_CONFIG_ACK,
                    ErrorCode::OK,
                    body(ErrorCode::OBJECT_NOT_FOUND),
                ),
                Verdict::Error("err:", Some(ErrorCode::OBJECT_NOT_FOUND)),
            ),
            (
                reply(
                    rpc::QUERY_CONFIG_ACK,
                    ErrorCode::OK,
                    Bytes::from_static(b"\x01"),
                ),
                Verdict::Error("bad_reply", None),
            ),
        ];
        for (reply, want) in &cases {
            assert_eq!(&check_reply(reply), want, "{:?}", reply.message.name);
        }
    }

    #[test]
    fn table_mixes_and_their_report_line() {
        assert_eq!(distinct_tables("t", 3), ["t0", "t1", "t2"]);
        assert!(distinct_tables("t", 0).is_empty());
        assert_eq!(table_list(&distinct_tables("t", 4)), "t0,t1,t2,t3");
        assert_eq!(
            table_list(&distinct_tables("t", 100)),
            "t0,...,t99 (100 tables)"
        );
    }

    #[tokio::test]
    async fn targets_that_are_not_loopback_are_refused_unless_allowed() {
        let config = LoadConfig::new("10.1.2.3:34601".parse().expect("addr"), vec!["t".into()]);
        let err = run(config.clone()).await.expect_err("refused");
        assert!(err.to_string().contains("--allow-non-loopback"), "{err}");
        let open = LoadConfig {
            pace: Pace::Open { rate: 0.0 },
            target: "127.0.0.1:1".parse().expect("addr"),
            ..config
        };
        assert!(run(open).await.is_err(), "a zero rate is refused");
    }
}
