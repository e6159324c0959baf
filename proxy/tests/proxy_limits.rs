//! Client connections under hostile or careless clients, and the drain: pipelined bursts cut by
//! a graceful stop, frames that trickle in, partial frames that would hoard memory, clients that
//! stop reading.

mod common;

use std::time::{Duration, Instant};

use common::*;
use pegasus_rpc::codec::ErrorCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A client writes `requests` pipelined queries in one go and reads nothing until the proxy has
/// answered some and the drain has begun, as one that wrote its burst and then waits for the
/// answers. Every request the proxy read gets its reply, and the stream then ends in an orderly
/// close: no reset, nothing answered and lost.
async fn a_drain_during_a_burst(requests: usize, upstream_delay: Duration) {
    // Replies of about 13 KB (128 partitions) for the short burst and 3 KB (32) for the long
    // one: either way more than the socket buffers hold while the client is not reading, so the
    // proxy is still writing when the drain begins.
    let partitions = if requests > 5_000 { 32 } else { 128 };
    let sim = sim(1, vec![table("temp", 3, partitions)]).await;
    sim.set_delay(0, upstream_delay).expect("delay");
    let routes = RoutesFile::new(&[("temp", &record("c1", &sim))]);
    let proxy = start_with_routes(&routes, |c| {
        c.shutdown_grace = Some("30s".into());
        c.upstream_timeout = Some("10s".into());
        c.upstream_attempt_timeout = Some("10s".into());
        c.hedge_after = Some("off".into());
    })
    .await;
    let metrics = proxy.metrics().clone();
    let (mut read, mut write) = TcpStream::connect(proxy.addr())
        .await
        .expect("connect")
        .into_split();
    let bytes = burst("temp", requests);
    // The writer keeps its half open afterwards: a client that is still sending, not one that
    // said it is done.
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&bytes).await;
        write
    });
    // The signal comes once the burst has reached the cluster, before its answer with a delay.
    eventually("the burst reached the cluster", || async {
        sim.counters().by_table.contains_key("temp")
    })
    .await;
    let drain = tokio::spawn(proxy.drain());

    let (mut seqids, end) = read_replies(&mut read, WAIT).await;
    let answered = answered(&local_metrics(&metrics));
    drop(read);
    drop(writer.await.expect("writer"));
    tokio::time::timeout(WAIT, drain)
        .await
        .expect("the drain ends once the client has closed")
        .expect("drain");

    let received = seqids.len();
    assert_eq!(
        end,
        End::Eof,
        "an orderly close after {received} replies ({requests} sent, delay {upstream_delay:?})"
    );
    assert_eq!(
        received as f64, answered,
        "every reply the proxy produced reached the client ({requests} sent, delay {upstream_delay:?})"
    );
    assert!(received < requests, "the drain came during the burst");
    seqids.sort_unstable();
    assert_eq!(
        seqids,
        (0..received as i32).collect::<Vec<_>>(),
        "the requests read are a prefix of those sent, each answered once"
    );
    assert_eq!(
        local_metrics(&metrics).value("metaproxy_replies_dropped_total", &[]),
        0.0
    );
    eprintln!("{requests} sent, delay {upstream_delay:?}: {received} answered, then EOF");
}

#[tokio::test]
async fn a_drain_answers_every_request_read_from_a_burst_of_2000() {
    a_drain_during_a_burst(2_000, Duration::ZERO).await;
}

#[tokio::test]
async fn a_drain_answers_every_request_read_from_a_burst_of_20000() {
    a_drain_during_a_burst(20_000, Duration::ZERO).await;
}

#[tokio::test]
async fn a_drain_answers_every_request_read_from_a_slow_burst_of_2000() {
    a_drain_during_a_burst(2_000, Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_drain_answers_every_request_read_from_a_slow_burst_of_20000() {
    a_drain_during_a_burst(20_000, Duration::from_millis(300)).await;
}

/// Whether the proxy keeps the connection open for `wait` (reads nothing, no close).
async fn stays_open(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut byte = [0u8; 1];
    tokio::time::timeout(wait, stream.read(&mut byte))
        .await
        .is_err()
}

/// A request frame that arrives one byte every 200 ms is cut at the frame timeout, and so is a
/// header that stops halfway; a slow but whole-framed client is not.
#[tokio::test]
async fn a_frame_that_trickles_in_is_cut_at_the_frame_timeout() {
    let sim = sim(1, vec![capture_table()]).await;
    let routes = RoutesFile::new(&[("temp", &record("c1", &sim))]);
    let proxy = start_with_routes(&routes, |c| c.frame_timeout = Some("1s".into())).await;
    let mut bystander = RawConn::connect(proxy.addr()).await;

    let (mut read, mut write) = TcpStream::connect(proxy.addr())
        .await
        .expect("connect")
        .into_split();
    let frame = query_frame("temp", 1);
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        for byte in frame.iter() {
            if write.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let (replies, end) = read_replies(&mut read, WAIT).await;
    let cut_after = started.elapsed();
    trickle.abort();
    assert!(replies.is_empty());
    assert_ne!(end, End::Silent, "the connection was closed");
    assert!(
        (Duration::from_secs(1)..Duration::from_secs(4)).contains(&cut_after),
        "cut after {cut_after:?}, at the frame timeout"
    );

    // Half a header, then nothing.
    let mut half = TcpStream::connect(proxy.addr()).await.expect("connect");
    half.write_all(&query_frame("temp", 2)[..10])
        .await
        .expect("write");
    let started = Instant::now();
    let (_, end) = read_replies(&mut half, WAIT).await;
    assert_ne!(end, End::Silent, "a partial header is cut too");
    assert!(started.elapsed() < Duration::from_secs(4));

    // Whole frames, slowly: served.
    let mut slow = RawConn::connect(proxy.addr()).await;
    for seqid in 0..3 {
        assert_eq!(slow.query("temp", seqid).await.err, ErrorCode::OK);
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    assert_eq!(bystander.query("temp", 9).await.err, ErrorCode::OK);
    let m = metrics(&proxy).await;
    assert_eq!(
        m.value(
            "metaproxy_connections_closed_total",
            &[("reason", "frame_timeout")]
        ),
        2.0
    );
}

/// A v0 header announcing a frame of `total` bytes, and the first `body` bytes of its body.
fn announcing(total: u32, body: usize) -> Vec<u8> {
    let mut f = b"THFT\x00\x00\x00\x00\x00\x00\x00\x30\x00\x00\x00\x00".to_vec();
    f.extend_from_slice(&(total - 48).to_be_bytes());
    f.resize(48 + body, 0);
    f
}

/// Partly received frames reserve their announced size from one budget shared by every
/// connection: a frame that does not fit closes its connection, and the budget is given back
/// when a frame completes or its connection goes.
#[tokio::test]
async fn partial_frames_share_one_budget() {
    let sim = sim(1, vec![capture_table()]).await;
    let routes = RoutesFile::new(&[("temp", &record("c1", &sim))]);
    let proxy = start_with_routes(&routes, |c| {
        c.max_frame_bytes = Some(64 * 1024);
        c.partial_frame_budget = Some(100 * 1024);
        c.frame_timeout = Some("30s".into());
    })
    .await;
    // A whole query whose table name makes it 60,000 bytes long.
    let name = "t".repeat(60_000 - query_frame("", 0).len());
    let big = query_frame(&name, 7);
    assert_eq!(big.len(), 60_000);

    let mut a = TcpStream::connect(proxy.addr()).await.expect("connect");
    a.write_all(&big[..1000]).await.expect("write");
    assert!(stays_open(&mut a, Duration::from_millis(300)).await);
    let m = metrics(&proxy).await;
    assert_eq!(m.value("metaproxy_partial_frame_bytes", &[]), 60_000.0);

    let mut b = TcpStream::connect(proxy.addr()).await.expect("connect");
    b.write_all(&announcing(60_000, 100)).await.expect("write");
    let (_, end) = read_replies(&mut b, WAIT).await;
    assert_ne!(end, End::Silent, "no room for a second 60,000-byte frame");
    let m = metrics(&proxy).await;
    assert_eq!(
        m.value(
            "metaproxy_connections_closed_total",
            &[("reason", "frame_budget")]
        ),
        1.0
    );

    // The first frame completes: answered, and its reservation is returned.
    a.write_all(&big[1000..]).await.expect("write");
    let (mut read_a, _write_a) = a.into_split();
    let mut buf = bytes::BytesMut::new();
    let reply = loop {
        if let Some(r) =
            pegasus_rpc::codec::decode_reply(&mut buf, pegasus_rpc::codec::DEFAULT_MAX_REPLY_FRAME)
                .expect("reply")
        {
            break r;
        }
        assert!(read_a.read_buf(&mut buf).await.expect("read") > 0);
    };
    assert_eq!(reply.seqid(), 7);
    eventually("the reservation is returned", || async {
        metrics(&proxy)
            .await
            .value("metaproxy_partial_frame_bytes", &[])
            == 0.0
    })
    .await;
    let mut c = TcpStream::connect(proxy.addr()).await.expect("connect");
    c.write_all(&announcing(60_000, 100)).await.expect("write");
    assert!(
        stays_open(&mut c, Duration::from_millis(300)).await,
        "room again"
    );
    drop(c);
    eventually("a closed connection returns its reservation", || async {
        metrics(&proxy)
            .await
            .value("metaproxy_partial_frame_bytes", &[])
            == 0.0
    })
    .await;
}

/// A client that pipelines a burst and then keeps pausing its reading for longer than the idle
/// timeout is not idle: replies are owed. It gets every one of them.
#[tokio::test]
async fn a_client_that_pauses_reading_past_the_idle_timeout_gets_every_reply() {
    // More requests and replies than the socket buffers hold: the proxy has to wait for the
    // client on both sides.
    let sim = sim(1, vec![table("temp", 3, 32)]).await;
    let routes = RoutesFile::new(&[("temp", &record("c1", &sim))]);
    let proxy = start_with_routes(&routes, |c| c.idle_timeout = Some("300ms".into())).await;
    let (mut read, mut write) = TcpStream::connect(proxy.addr())
        .await
        .expect("connect")
        .into_split();
    let requests = 20_000;
    let bytes = burst("temp", requests);
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&bytes).await;
        write
    });
    // Eight pauses of 500 ms, each with the proxy waiting to write.
    let mut replies = Replies::new(&mut read);
    let mut seqids = Vec::new();
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (more, end) = replies.take(1_000, Duration::from_secs(5)).await;
        assert_eq!(more.len(), 1_000, "{end:?} after {} replies", seqids.len());
        seqids.extend(more);
    }
    let left = requests - seqids.len();
    let (rest, end) = replies.take(left, Duration::from_secs(5)).await;
    seqids.extend(rest);
    assert_eq!(
        seqids.len(),
        requests,
        "every reply, although the client kept pausing past the idle timeout ({end:?})"
    );
    drop(writer);
}

/// A client that sends and never reads is not read either once the replies it owes reach the
/// limits: the proxy holds a bounded number of requests and reply bytes for it.
#[tokio::test]
async fn a_client_that_does_not_read_is_not_read_either() {
    let sim = sim(1, vec![table("big", 3, 128)]).await;
    let routes = RoutesFile::new(&[("big", &record("c1", &sim))]);
    let proxy = start_with_routes(&routes, |c| {
        c.max_in_flight = Some(16);
        c.max_unsent_bytes = Some(16 * 1024);
    })
    .await;
    let metrics = proxy.metrics().clone();
    // A small receive buffer, so that the kernel holds few replies on the client's side.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let (mut read, mut write) = socket
        .connect(proxy.addr())
        .await
        .expect("connect")
        .into_split();
    let requests = 2_000;
    let bytes = burst("big", requests);
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&bytes).await;
        write
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let held = answered(&local_metrics(&metrics));
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let m = local_metrics(&metrics);
        assert!(m.value("metaproxy_requests_in_flight", &[]) <= 16.0);
        // The limit, and one reply past it at most.
        assert!(m.value("metaproxy_unsent_reply_bytes", &[]) <= (16 + 14) as f64 * 1024.0);
    }
    let later = answered(&local_metrics(&metrics));
    assert_eq!(
        held, later,
        "nothing more is read while the client reads nothing"
    );
    // Besides what the proxy holds, the kernel's socket buffers hold replies too (some MB on
    // loopback); far from the whole burst either way.
    assert!(
        held < requests as f64 / 4.0,
        "{held} requests answered for a client that reads nothing"
    );

    let (seqids, end) = Replies::new(&mut read)
        .take(requests, Duration::from_secs(5))
        .await;
    assert_eq!(
        seqids.len(),
        requests,
        "all answered once it reads ({end:?})"
    );
    let m = local_metrics(&metrics);
    assert_eq!(m.value("metaproxy_requests_in_flight", &[]), 0.0);
    assert_eq!(m.value("metaproxy_unsent_reply_bytes", &[]), 0.0);
    drop(writer);
}
