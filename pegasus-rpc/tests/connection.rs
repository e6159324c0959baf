//! The write path of one [`Connection`] against servers on loopback: frames written from the
//! caller, finished by the writer task when the socket takes them only partly, queued behind one
//! another by many callers at once, and a failed write failing the pending calls.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pegasus_rpc::client::{CallError, ClientOptions, Connection};
use pegasus_rpc::codec::{self, ErrorCode, ReplyFrame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::Instant;

use metaproxy_tests::harness::eventually;

const NAME: &str = codec::rpc::QUERY_CONFIG;
const BIG: usize = 64 * 1024 * 1024;

fn options() -> ClientOptions {
    ClientOptions {
        max_frame: BIG,
        ..ClientOptions::default()
    }
}

fn soon(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

/// Args of `len` bytes that differ from call to call (`tag`) and along the frame, so that a
/// frame cut, shifted or mixed with another does not come back equal.
fn args(tag: usize, len: usize) -> Bytes {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ tag.wrapping_mul(131)) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// The replies to the whole requests at the front of `buf` (taken off it): each request
/// answered with its args as the reply body; and how many there were. `Err` when a frame
/// arrived damaged.
fn echo(buf: &mut BytesMut) -> Result<(BytesMut, usize), codec::CodecError> {
    let mut out = BytesMut::new();
    let mut n = 0;
    while let Some(req) = codec::decode_request(buf, BIG + 1024)? {
        ReplyFrame::ack(req.name(), req.seqid(), ErrorCode::OK, req.args.clone()).encode(&mut out);
        n += 1;
    }
    Ok((out, n))
}

/// A server that answers every request with its args as the reply body, once `start` fires,
/// and counts the requests; a frame that does not decode stops it (the calls then time out).
async fn echo_server(start: Option<oneshot::Receiver<()>>) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        if let Some(start) = start {
            let _ = start.await;
        }
        let mut buf = BytesMut::new();
        loop {
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let (out, n) =
                echo(&mut buf).unwrap_or_else(|e| panic!("a frame arrived damaged: {e}"));
            seen.fetch_add(n, Ordering::SeqCst);
            if stream.write_all(&out).await.is_err() {
                return;
            }
        }
    });
    (addr, count)
}

/// A server on a thread of its own that reads nothing until `start`, says on `drained` when it
/// has read `drain` bytes, and then answers every request with its args as the reply body.
fn held_echo_server(
    start: std::sync::mpsc::Receiver<()>,
    drained: std::sync::mpsc::Sender<()>,
    drain: usize,
) -> SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let _ = start.recv();
        let mut buf = BytesMut::new();
        let mut chunk = vec![0u8; 256 * 1024];
        let mut read = 0;
        let mut told = false;
        loop {
            let n = match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            read += n;
            buf.extend_from_slice(&chunk[..n]);
            if !told && read >= drain {
                told = true;
                let _ = drained.send(());
            }
            // Damaged: answer nothing more (the calls fail at their deadline).
            let Ok((out, _)) = echo(&mut buf) else {
                return;
            };
            if stream.write_all(&out).is_err() {
                return;
            }
        }
    });
    addr
}

#[tokio::test]
async fn a_frame_the_socket_takes_partly_is_finished_by_the_writer_task() {
    // 16 MiB cannot fit in loopback's socket buffers while the server reads nothing, so the
    // first call's own write is partial and the writer task must send the rest. Then, before
    // this runtime runs the writer task, the server starts reading and a second call is made:
    // its frame must leave behind the rest of the first, and both arrive whole.
    let (start, start_rx) = std::sync::mpsc::channel();
    let (drained_tx, drained) = std::sync::mpsc::channel();
    let addr = held_echo_server(start_rx, drained_tx, 256 * 1024);
    let conn = Connection::new(addr.to_string(), options());
    let big = args(1, 16 * 1024 * 1024);
    let small = args(2, 100);
    let mut first = std::pin::pin!(conn.call(NAME, &big, soon(10)));
    // The poll that finds the connection made also writes the frame (no await in between).
    loop {
        assert!(futures::poll!(first.as_mut()).is_pending(), "not read yet");
        if conn.is_connected() {
            break;
        }
        tokio::task::yield_now().await;
    }
    start.send(()).expect("server waiting");
    // Blocks this runtime: the writer task cannot run meanwhile.
    drained
        .recv_timeout(Duration::from_secs(10))
        .expect("the server read part of the frame");
    let mut second = std::pin::pin!(conn.call(NAME, &small, soon(10)));
    assert!(
        futures::poll!(second.as_mut()).is_pending(),
        "not answered yet"
    );
    let (first, second) = tokio::join!(first, second);
    let first = first.expect("the big call is answered");
    let second = second.expect("the small call is answered");
    assert_eq!(first.body, big, "the big frame arrived whole");
    assert_eq!(second.body, small, "the small frame arrived whole");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_of_many_callers_at_once_arrive_whole_each_in_one_piece() {
    let (addr, count) = echo_server(None).await;
    let conn = Arc::new(Connection::new(addr.to_string(), options()));
    // Sizes from empty to large enough that some writes are partial and queue the rest.
    let sizes = [0, 1, 17, 300, 4096, 70_000, 300_000, 1_500_000];
    let calls: Vec<_> = (0..400)
        .map(|i| {
            let conn = conn.clone();
            let sent = args(i, sizes[i % sizes.len()]);
            tokio::spawn(async move {
                let reply = conn.call(NAME, &sent, soon(10)).await.expect("answered");
                assert_eq!(reply.body, sent, "call {i}: its own frame came back whole");
            })
        })
        .collect();
    for call in calls {
        call.await.expect("call");
    }
    assert_eq!(count.load(Ordering::SeqCst), 400, "every frame decoded");
}

/// A server that reads requests and answers none until `reset` fires; then it resets the
/// connection (SO_LINGER 0: the client's next write fails at once) and reports it on `done` (a
/// blocking channel, so that the test's runtime does not run the client's reader before the
/// client writes). The next connection is answered.
fn resetting_server(
    reset: oneshot::Receiver<()>,
    done: std::sync::mpsc::Sender<()>,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    // On a thread and runtime of its own: the test may block its runtime while it waits.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = TcpListener::from_std(listener).expect("listener");
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut buf = BytesMut::new();
            tokio::pin!(reset);
            loop {
                tokio::select! {
                    _ = &mut reset => break,
                    read = stream.read_buf(&mut buf) => match read {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            while let Ok(Some(_)) = codec::decode_request(&mut buf, BIG) {
                                seen.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    },
                }
            }
            stream.set_zero_linger().expect("linger");
            drop(stream);
            let _ = done.send(());
            let (mut stream, _) = listener.accept().await.expect("accept again");
            let mut buf = BytesMut::new();
            while let Ok(n) = stream.read_buf(&mut buf).await {
                if n == 0 {
                    return;
                }
                let Ok((out, _)) = echo(&mut buf) else {
                    return;
                };
                let _ = stream.write_all(&out).await;
            }
        });
    });
    (addr, count)
}

fn lost_reason(result: Result<ReplyFrame, CallError>) -> String {
    match result {
        Err(CallError::ConnectionLost { reason, .. }) => reason,
        other => panic!("expected the connection lost, got {other:?}"),
    }
}

#[tokio::test]
async fn a_failed_write_fails_the_call_with_the_reason_and_the_next_call_reconnects() {
    let (reset, reset_rx) = oneshot::channel();
    let (done, done_rx) = std::sync::mpsc::channel();
    let (addr, _) = resetting_server(reset_rx, done);
    let conn = Connection::new(addr.to_string(), options());
    let err = tokio::time::timeout(
        Duration::from_millis(50),
        conn.call(NAME, &args(0, 10), soon(10)),
    )
    .await;
    assert!(err.is_err(), "the server answers nothing yet");
    assert!(conn.is_connected());
    reset.send(()).expect("server waiting");
    // Wait for the reset blocking this runtime: the client's reader must not see it first.
    done_rx.recv().expect("reset done");
    let reason = lost_reason(conn.call(NAME, &args(1, 10), soon(10)).await);
    assert!(
        reason.starts_with("write failed"),
        "the caller's own write failed: {reason}"
    );
    let reply = conn
        .call(NAME, &args(2, 10), soon(10))
        .await
        .expect("a new connection answers");
    assert_eq!(reply.body, args(2, 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_connection_fails_every_pending_call_with_one_reason() {
    let (reset, reset_rx) = oneshot::channel();
    let (done, _done_rx) = std::sync::mpsc::channel();
    let (addr, seen) = resetting_server(reset_rx, done);
    let conn = Arc::new(Connection::new(addr.to_string(), options()));
    // Pending calls, some through the caller's write and some queued for the writer task.
    let calls: Vec<_> = (0..50)
        .map(|i| {
            let conn = conn.clone();
            tokio::spawn(async move { conn.call(NAME, &args(i, 1000 * i), soon(10)).await })
        })
        .collect();
    eventually(
        Duration::from_secs(10),
        "the server to read 50 requests",
        async || (seen.load(Ordering::SeqCst) >= 50).then_some(()),
    )
    .await
    .expect("the requests arrive");
    reset.send(()).expect("server waiting");
    let mut reasons = Vec::new();
    for call in calls {
        reasons.push(lost_reason(call.await.expect("call")));
    }
    reasons.dedup();
    assert_eq!(reasons.len(), 1, "one reason for all: {reasons:?}");
    let reply = conn
        .call(NAME, &args(7, 10), soon(10))
        .await
        .expect("a new connection answers");
    assert_eq!(reply.body, args(7, 10));
}
