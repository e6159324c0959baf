//! Hostile clients against the `metaproxy` binary, each beside a well-behaved client that keeps
//! querying through the same proxy (`metaproxy_tests::bystander`): the attack does what it does
//! (its connections are cut, capped, not read), the bystander sees no error, and the proxy's
//! resident memory is reported before, at its peak and after each attack.
//!
//! Latency is reported, not asserted: the bystander's p99 during the attack over its p99 before
//! it. The only timed check is the bystander's hang detector (a query over 2 s is an error).
//! Every line printed (`--nocapture`) is a row of the matrix in docs/robustness.md.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use metaproxy_tests::bystander::{Bystander, PeakRss, Phase};
use metaproxy_tests::harness::Process;
use metaproxy_tests::sim::SimHandle;
use pegasus_rpc::codec::{self, ErrorCode, QueryCfgResponse, RequestFrame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A proxy process serving `temp` from a simulated cluster, with a bystander querying it.
struct Siege {
    proxy: Process,
    addr: SocketAddr,
    admin: SocketAddr,
    bystander: Bystander,
    baseline: Phase,
    sim: SimHandle,
    _routes: RoutesFile,
    _logs: tempfile::TempDir,
}

const MIB: f64 = 1024.0 * 1024.0;

impl Siege {
    /// The proxy with `args`, and the bystander's baseline (500 queries).
    async fn start(args: &[&str]) -> Siege {
        let sim = sim(1, vec![capture_table()]).await;
        let routes = RoutesFile::new(&[("temp", &record("c1", &sim))]);
        let logs = tempfile::tempdir().expect("tempdir");
        let (proxy, addr, admin) =
            spawn_proxy(&routes, args, &logs.path().join("metaproxy.log")).await;
        let bystander = Bystander::start(addr, "temp").await;
        bystander.run_for(500, Duration::from_secs(30)).await;
        let baseline = bystander.phase();
        assert_eq!(baseline.errors, 0, "baseline: {:?}", baseline.first_errors);
        eprintln!("baseline: {}", baseline.line(&baseline));
        Siege {
            proxy,
            addr,
            admin,
            bystander,
            baseline,
            sim,
            _routes: routes,
            _logs: logs,
        }
    }

    /// Runs `attack` (which returns what it tried and what came of it), then lets the proxy
    /// settle for a moment; prints the row and asserts that the bystander saw no error and
    /// that the proxy is still running.
    async fn attack(&mut self, name: &str, attack: impl Future<Output = String>) -> Phase {
        let pid = self.proxy.pid();
        let before = rss(pid);
        let peak = PeakRss::start(pid);
        self.bystander.phase();
        let started = Instant::now();
        let outcome = attack.await;
        let took = started.elapsed();
        let phase = self.bystander.phase();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = rss(pid);
        let peak = peak.peak().max(after);
        eprintln!(
            "| {name} | {outcome} | {took:.1?} | {} | RSS {:.1} / {:.1} / {:.1} MiB |",
            phase.line(&self.baseline),
            before as f64 / MIB,
            peak as f64 / MIB,
            after as f64 / MIB,
        );
        assert_eq!(
            phase.errors, 0,
            "{name}: the bystander saw errors: {:?}",
            phase.first_errors
        );
        assert!(phase.queries > 0, "{name}: the bystander was served");
        assert!(
            self.proxy.exited().expect("status").is_none(),
            "{name}: the proxy exited:\n{}",
            self.proxy.log_tail()
        );
        phase
    }

    async fn metrics(&self) -> Metrics {
        scrape(self.admin).await.expect("metrics")
    }

    /// Client connections the proxy closed for `reason`.
    async fn closed_for(&self, reason: &str) -> f64 {
        self.metrics()
            .await
            .value("metaproxy_connections_closed_total", &[("reason", reason)])
    }
}

/// Opens `n` connections at once; those that connected.
async fn connect_many(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    futures::future::join_all((0..n).map(|_| TcpStream::connect(addr)))
        .await
        .into_iter()
        .filter_map(Result::ok)
        .collect()
}

/// How a connection ended after the client wrote its bytes: closed by the proxy (EOF or
/// reset) within `wait`, with the time it took, or still open.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut scratch = [0u8; 4096];
    tokio::time::timeout(wait, async {
        loop {
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

/// Writes `bytes` on `n` connections at once and waits until the proxy has closed each:
/// how many it closed, and the longest it took after the bytes were written.
async fn each_closed(addr: SocketAddr, n: usize, bytes: Bytes) -> (usize, Duration) {
    let results = futures::future::join_all((0..n).map(|_| {
        let bytes = bytes.clone();
        async move {
            let mut s = TcpStream::connect(addr).await.ok()?;
            // The proxy may close while this is still being written.
            let _ = s.write_all(&bytes).await;
            closed_within(&mut s, Duration::from_secs(20)).await
        }
    }))
    .await;
    let closed: Vec<Duration> = results.into_iter().flatten().collect();
    let longest = closed.iter().copied().max().unwrap_or_default();
    (closed.len(), longest)
}

/// Bytes from a fixed xorshift sequence (never "THFT" at the start, so each is garbage at once).
fn garbage(seed: u64, len: usize) -> Bytes {
    let mut x = seed | 1;
    let mut out: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    out[0] = b'G';
    Bytes::from(out)
}

/// A v0 header announcing a frame of `total` bytes (the 48-byte header and the body).
fn header_announcing(total: u32) -> Bytes {
    let mut f = b"THFT\x00\x00\x00\x00\x00\x00\x00\x30\x00\x00\x00\x00".to_vec();
    f.extend_from_slice(&(total - 48).to_be_bytes());
    f.resize(48, 0);
    Bytes::from(f)
}

/// Garbage, a header announcing a 2 GiB body, and frames dribbled one byte at a time: each
/// closes its own connection (the dribbled ones at the frame timeout); the bystander is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_huge_headers_and_dribbled_frames_leave_others_served() {
    let mut siege = Siege::start(&["--frame-timeout", "1s"]).await;
    let addr = siege.addr;

    siege
        .attack("garbage bytes", async {
            let conns = 500;
            let closed = futures::future::join_all((0..conns).map(|i| async move {
                let mut s = TcpStream::connect(addr).await.ok()?;
                let _ = s.write_all(&garbage(i + 1, 4096)).await;
                closed_within(&mut s, Duration::from_secs(20)).await
            }))
            .await
            .into_iter()
            .flatten()
            .count();
            assert_eq!(closed, conns as usize, "every garbage connection is closed");
            format!("{conns} connections x 4 KiB of random bytes: {closed} closed")
        })
        .await;

    siege
        .attack("2 GiB announced", async {
            let conns = 200;
            let (closed, longest) = each_closed(addr, conns, header_announcing(u32::MAX)).await;
            assert_eq!(closed, conns, "every oversized header is refused");
            format!(
                "{conns} connections, a v0 header announcing 4 GiB - 1 (body 2 GiB+): {closed} closed, \
                 the slowest after {longest:.0?}"
            )
        })
        .await;
    let frames_refused = siege.closed_for("bad_frame").await;
    assert_eq!(
        frames_refused, 700.0,
        "each garbage and oversized connection closed as a bad frame"
    );

    siege
        .attack("dribbled frame", async {
            let conns = 50;
            let frame = query_frame("temp", 1);
            let results = futures::future::join_all((0..conns).map(|_| {
                let frame = frame.clone();
                async move {
                    let (mut read, mut write) = TcpStream::connect(addr).await.ok()?.into_split();
                    let started = Instant::now();
                    let dribble = tokio::spawn(async move {
                        for byte in frame.iter() {
                            if write.write_all(&[*byte]).await.is_err() {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    });
                    let mut scratch = [0u8; 64];
                    let cut =
                        tokio::time::timeout(Duration::from_secs(20), read.read(&mut scratch))
                            .await
                            .ok()
                            .map(|_| started.elapsed());
                    dribble.abort();
                    cut
                }
            }))
            .await;
            let cut: Vec<Duration> = results.into_iter().flatten().collect();
            assert_eq!(cut.len(), conns, "every dribbling connection is cut");
            let (first, last) = (
                cut.iter().min().copied().unwrap_or_default(),
                cut.iter().max().copied().unwrap_or_default(),
            );
            assert!(
                first >= Duration::from_secs(1),
                "not before the frame timeout: {first:?}"
            );
            format!(
                "{conns} connections dribbling a {}-byte query, 1 byte/100 ms: all cut, \
                 after {first:.1?}..{last:.1?} (frame timeout 1 s)",
                frame.len()
            )
        })
        .await;
    assert_eq!(siege.closed_for("frame_timeout").await, 50.0);
}

/// 10,000 connections opened at once against a cap of 2,000: the excess is closed at once, the
/// rest are served; then 1,000 connections that send half a frame and stall are closed by the
/// frame timeout (the idle timeout is 10 minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_connections_and_stalled_half_frames() {
    let cap = 2_000usize;
    let cap_flag = cap.to_string();
    let mut siege = Siege::start(&[
        "--max-connections",
        &cap_flag,
        "--frame-timeout",
        "1s",
        "--idle-timeout",
        "10m",
    ])
    .await;
    let (addr, admin) = (siege.addr, siege.admin);

    siege
        .attack("10,000 connections at once", async {
            let tried = 10_000;
            let mut conns = connect_many(addr, tried).await;
            let connected = conns.len();
            // Each one asks once: served (answered) or closed by the cap.
            let outcomes =
                futures::future::join_all(conns.iter_mut().enumerate().map(|(i, s)| async move {
                    let _ = s.write_all(&query_frame("temp", i as i32)).await;
                    let mut buf = bytes::BytesMut::new();
                    loop {
                        if let Ok(Some(reply)) =
                            codec::decode_reply(&mut buf, codec::DEFAULT_MAX_REPLY_FRAME)
                        {
                            return Some(reply.seqid() == i as i32);
                        }
                        match tokio::time::timeout(Duration::from_secs(30), s.read_buf(&mut buf))
                            .await
                        {
                            Ok(Ok(0)) | Ok(Err(_)) => return None,
                            Ok(Ok(_)) => {}
                            Err(_) => panic!("connection {i}: neither served nor closed"),
                        }
                    }
                }))
                .await;
            let served = outcomes.iter().filter(|o| **o == Some(true)).count();
            let closed = outcomes.iter().filter(|o| o.is_none()).count();
            // The bystander holds one slot.
            assert_eq!(served, (cap - 1).min(connected), "the cap's worth served");
            assert_eq!(served + closed, connected, "every other one closed");
            let held = scrape(admin)
                .await
                .expect("metrics")
                .value("metaproxy_connections", &[]);
            assert_eq!(held as usize, cap, "the cap is full while they are held");
            drop(conns);
            format!(
                "{tried} opened at once ({connected} connected), cap {cap}: {served} served, \
                 {closed} closed at once; {held} connections counted while held"
            )
        })
        .await;
    let m = siege.metrics().await;
    assert_eq!(
        m.value("metaproxy_connections_rejected_total", &[]) as usize,
        10_000 - (cap - 1)
    );

    siege
        .attack("half a frame, then silence", async {
            let conns = 1_000;
            let half = query_frame("temp", 1).slice(..30);
            let (closed, longest) = each_closed(addr, conns, half).await;
            assert_eq!(closed, conns, "each stalled connection is closed");
            assert!(
                longest < Duration::from_secs(20),
                "by the frame timeout, not the idle timeout of 10 min: {longest:?}"
            );
            format!(
                "{conns} connections sending 30 of a query's bytes, then nothing: all closed by \
                 the frame timeout (1 s), the slowest after {longest:.1?}"
            )
        })
        .await;
    assert_eq!(siege.closed_for("frame_timeout").await, 1_000.0);
}

/// Clients that pipeline without reading: the proxy stops reading each once it owes
/// `--max-in-flight` answers or `--max-unsent-bytes` of replies; its memory stays bounded, and
/// each client gets every answer once it reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_hold_bounded_memory() {
    let mut siege = Siege::start(&[]).await;
    let addr = siege.addr;
    let clients = 8;
    let per_client = 20_000;
    let mut readers = Vec::new();
    let admin = siege.admin;
    siege
        .attack("pipelining, never reading", async {
            let mut writers = Vec::new();
            for _ in 0..clients {
                let socket = tokio::net::TcpSocket::new_v4().expect("socket");
                socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
                let (read, mut write) = socket.connect(addr).await.expect("connect").into_split();
                let bytes = burst("temp", per_client);
                writers.push(tokio::spawn(async move {
                    let _ = write.write_all(&bytes).await;
                    write
                }));
                readers.push(read);
            }
            // Let them push until the proxy stops reading them.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let m = scrape(admin).await.expect("metrics");
            let in_flight = m.value("metaproxy_requests_in_flight", &[]);
            let unsent = m.value("metaproxy_unsent_reply_bytes", &[]);
            let answered = answered(&m);
            // Defaults: 1,024 requests and 256 KiB of replies per connection (one reply past it
            // at most).
            assert!(in_flight <= (clients * 1024) as f64, "{in_flight} in flight");
            assert!(
                unsent <= (clients * (256 + 2) * 1024) as f64,
                "{unsent} reply bytes unsent"
            );
            assert!(
                answered < (clients * per_client / 2) as f64,
                "{answered} answered for clients that read nothing"
            );
            for w in writers {
                w.abort();
            }
            format!(
                "{clients} clients x {per_client} pipelined queries, none read: after 3 s {answered} \
                 answered, {in_flight} in flight, {:.0} KiB unsent (limits 1,024 and 256 KiB each)",
                unsent / 1024.0
            )
        })
        .await;
    // Once they read, every answer comes.
    let totals = futures::future::join_all(readers.into_iter().map(|read| async move {
        Replies::new(read)
            .take(per_client, Duration::from_secs(10))
            .await
            .0
            .len()
    }))
    .await;
    assert!(
        totals.iter().all(|n| *n == per_client),
        "answers once read: {totals:?}"
    );
}

/// The args of a query_config whose request struct is `fields` (raw thrift fields, then STOP).
fn query_args(fields: &[u8]) -> Bytes {
    let mut args = vec![0x0c, 0x00, 0x01];
    args.extend_from_slice(fields);
    args.extend_from_slice(&[0x00, 0x00]);
    Bytes::from(args)
}

/// A thrift string field 1 (`app_name`) holding `name`, and an empty `partition_indices`.
fn name_field(name: &[u8]) -> Vec<u8> {
    let mut f = vec![0x0b, 0x00, 0x01];
    f.extend_from_slice(&(name.len() as u32).to_be_bytes());
    f.extend_from_slice(name);
    f.extend_from_slice(&[0x0f, 0x00, 0x02, 0x08, 0, 0, 0, 0]);
    f
}

/// What the proxy did with one request: its query_config answer, or the connection closed.
#[derive(Clone, Debug, PartialEq)]
enum Answer {
    Answered(ErrorCode),
    Closed,
}

async fn ask(addr: SocketAddr, args: Bytes) -> Answer {
    let mut conn = RawConn::connect(addr).await;
    conn.send(&RequestFrame::call_v0(codec::rpc::QUERY_CONFIG, 7, 0, args).to_bytes())
        .await;
    match conn.try_reply().await {
        None => Answer::Closed,
        Some(reply) => {
            let resp = QueryCfgResponse::from_result(&reply.body).expect("a query_cfg_response");
            // The connection stays usable after an answer.
            assert_eq!(conn.query("temp", 8).await.err, ErrorCode::OK);
            Answer::Answered(resp.err)
        }
    }
}

/// Absurd table names are names no MetaServer has (ERR_OBJECT_NOT_FOUND, connection kept);
/// thrift bodies with wrong field types or cut strings close their connection only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_table_names_and_broken_thrift_bodies() {
    let mut siege = Siege::start(&[]).await;
    let addr = siege.addr;
    let long = vec![b'a'; 10 * 1024];
    let names: Vec<(&str, Vec<u8>)> = vec![
        ("10 KiB name", long),
        ("../x", b"../x".to_vec()),
        ("..", b"..".to_vec()),
        ("empty", Vec::new()),
        ("non-UTF-8", b"\xff\xfe\x80".to_vec()),
        ("a/b", b"temp/../temp".to_vec()),
        ("NUL", b"te\0mp".to_vec()),
        ("257 characters", vec![b'b'; 257]),
    ];
    /// A string field 1 announcing `len` bytes, followed by `temp`.
    fn string_announcing(len: i32) -> Vec<u8> {
        let mut f = vec![0x0b, 0x00, 0x01];
        f.extend_from_slice(&len.to_be_bytes());
        f.extend_from_slice(b"temp");
        f
    }
    let not_found = Answer::Answered(ErrorCode::OBJECT_NOT_FOUND);
    const ROUNDS: usize = 20;
    let bodies: Vec<(&str, Bytes, Answer)> = vec![
        // A field of another type than declared is skipped, as thrift does: no name.
        (
            "app_name an i32",
            query_args(&[0x08, 0x00, 0x01, 0, 0, 0, 5]),
            not_found.clone(),
        ),
        (
            "partition_indices a list of strings",
            query_args(&[
                0x0b, 0x00, 0x01, 0, 0, 0, 4, b't', b'e', b'm', b'p', 0x0f, 0x00, 0x02, 0x0b, 0, 0,
                0, 1, 0, 0, 0, 1, b'x',
            ]),
            Answer::Closed,
        ),
        (
            "a string announcing 1 GiB",
            query_args(&string_announcing(1 << 30)),
            Answer::Closed,
        ),
        (
            "a string cut short",
            query_args(&string_announcing(100)),
            Answer::Closed,
        ),
        (
            "a negative string length",
            query_args(&string_announcing(-1)),
            Answer::Closed,
        ),
        // The args' own field a string: like the MetaServer (unmarshall_thrift_internal), the
        // proxy does not check that field's type and reads a struct after its header; here the
        // string's length begins with a zero byte, an empty struct: no name, not found.
        (
            "the args' field a string",
            Bytes::from(string_announcing(100)),
            not_found.clone(),
        ),
        (
            "an unknown field type 0x7f",
            query_args(&[0x7f, 0x00, 0x03, 1, 2, 3]),
            Answer::Closed,
        ),
        ("no args at all", Bytes::new(), Answer::Closed),
    ];
    let mut seen = Vec::new();
    siege
        .attack("absurd names, broken thrift", async {
            for round in 0..ROUNDS {
                for (what, name) in &names {
                    let answer = ask(addr, query_args(&name_field(name))).await;
                    assert_eq!(answer, not_found, "{what}: not a table any MetaServer has");
                    if round == 0 {
                        seen.push(format!("{what}: {answer:?}"));
                    }
                }
                for (what, args, expected) in &bodies {
                    let answer = ask(addr, args.clone()).await;
                    assert_eq!(answer, *expected, "{what}");
                    if round == 0 {
                        seen.push(format!("{what}: {answer:?}"));
                    }
                }
            }
            format!(
                "{} names and {} broken bodies, {ROUNDS} times each, each on its own connection",
                names.len(),
                bodies.len()
            )
        })
        .await;
    eprintln!("{}", seen.join("\n"));
    let asked: Vec<String> = siege.sim.counters().by_table.into_keys().collect();
    assert_eq!(asked, ["temp"], "no absurd name reached the cluster");
    assert_eq!(siege.bystander.phase().errors, 0, "still served afterwards");
}
