//! One connection to one Pegasus server, as the official clients keep them: pipelined calls on a
//! single TCP connection, replies matched by seqid in whatever order they come, a deadline on
//! every call, and a new connection (with a fresh DNS lookup) on the next call after the old one
//! failed. [`MetaClient`](super::MetaClient) is one to a MetaServer; the test suite's data client
//! keeps one per replica server, with the request header fields of each call.
//!
//! ```text
//!  call() --frame, alone and the writer idle--> try_write --> socket
//!  call() --frame, otherwise--> outbox --> writer task --batched write--> socket
//!  call() <--oneshot-- pending[seqid] <-- reader task <--replies-- socket
//! ```
//! A call that is the only one pending on the connection, while the writer task holds nothing,
//! writes its frame from the caller (a hand-off to the writer task less on the path of a lone
//! query); what the socket does not take then goes to the writer task. When other calls are
//! pending, frames join the outbox and the writer task sends whatever came together in one write
//! (under load, one write for many calls costs less than a write per call). Frames are never
//! interleaved: the socket is written by whoever holds it, the callers under the outbox's lock or
//! the writer task, and the bytes of a frame leave in order after everything queued before them.
//! When a write or a read fails, every pending call fails at once with the reason, and the next
//! call connects again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::codec::{
    self, CodecError, DEFAULT_MAX_REPLY_FRAME, ErrorCode, MessageBegin, MessageKind, ReplyFrame,
    RequestFrame, RequestHeader,
};

/// Why a call to a server failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CallError {
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("no reply from {addr} before the deadline")]
    Timeout { addr: String },
    #[error("connection to {addr} lost: {reason}")]
    ConnectionLost { addr: String, reason: String },
    #[error("{addr} answered with the rpc-level error {error}")]
    Rpc { addr: String, error: ErrorCode },
    #[error("bad reply from {addr}: {source}")]
    BadReply { addr: String, source: CodecError },
}

impl CallError {
    /// A fixed, small label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            CallError::Connect { .. } => "connect",
            CallError::Timeout { .. } => "timeout",
            CallError::ConnectionLost { .. } => "connection_lost",
            CallError::Rpc { .. } => "rpc_error",
            CallError::BadReply { .. } => "bad_reply",
        }
    }
}

/// Settings of a [`Connection`] (and so of a [`MetaClient`](super::MetaClient)).
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Limit on the DNS lookup plus the TCP connect.
    pub connect_timeout: Duration,
    /// Largest reply frame accepted (default [`DEFAULT_MAX_REPLY_FRAME`], 4 MiB).
    pub max_frame: usize,
    /// Frames queued for the writer task (not yet taken by it) before callers wait.
    pub write_queue: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(2),
            max_frame: DEFAULT_MAX_REPLY_FRAME,
            write_queue: 4096,
        }
    }
}

type Waiter = oneshot::Sender<Result<ReplyFrame, CallError>>;

/// The calls waiting on one connection, and whether it is closed.
struct Pending {
    calls: HashMap<i32, Waiter>,
    closed: Option<String>,
}

/// The write side of one connection, shared by the callers and the writer task.
struct Outbox {
    state: Mutex<Outgoing>,
    /// Wakes the writer task: work was handed to it, or the connection stopped.
    wake: Notify,
    /// Wakes callers waiting for room in a full queue, when the writer task takes the queue.
    room: Notify,
}

struct Outgoing {
    /// The socket, while no one writes it from outside the lock; the writer task takes it out
    /// for the time it writes (it awaits the socket, which cannot be done under the lock).
    socket: Option<OwnedWriteHalf>,
    /// Whether the writer task has work: bytes are queued or it is writing. Callers then append
    /// to `queued` instead of writing, so that bytes leave in the order they were given.
    busy: bool,
    /// Bytes for the writer task to send, whole frames but for the first, which may be the end
    /// of a frame the socket took only partly from a caller.
    queued: BytesMut,
    /// Frames in `queued`, for [`ClientOptions::write_queue`].
    frames: usize,
    /// The connection is gone (the link dropped, or a write failed): the writer shuts down.
    stopped: bool,
}

/// How a caller's frame goes out.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// Written from the caller now (as far as the socket takes it).
    Direct,
    /// Appended to the queue of the writer task, which is told when it was idle.
    Queue { wake_writer: bool },
    /// The queue is full: wait for the writer task to take it.
    Wait,
}

/// Where a caller's frame goes: written by the caller only when the writer task holds nothing
/// (else it would overtake queued bytes) and the call is the only one pending (else other calls
/// are coming and going together, and one write for all of them is cheaper than one each).
fn route(busy: bool, socket_here: bool, alone: bool, frames: usize, limit: usize) -> Route {
    if !busy && socket_here && alone {
        Route::Direct
    } else if frames >= limit.max(1) {
        Route::Wait
    } else {
        Route::Queue { wake_writer: !busy }
    }
}

/// One live TCP connection and its two tasks.
struct Link {
    out: Arc<Outbox>,
    pending: Arc<Mutex<Pending>>,
    closed: Arc<AtomicBool>,
    next_seqid: AtomicI32,
    peer: SocketAddr,
}

impl Link {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Sends `frame`: from the caller when `route` says so, else through the writer task. A
    /// failed write fails every pending call (this one's too) with the reason.
    async fn send(&self, addr: &str, frame: Bytes, alone: bool, limit: usize) {
        loop {
            // Enabled before the queue is looked at, so that the writer task taking the queue
            // between the look and the wait is not missed.
            let room = self.out.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let mut out = lock(&self.out.state);
                if out.stopped {
                    // The pending call fails with the connection's reason (set by whoever
                    // stopped it), or with this one when the link was dropped meanwhile.
                    drop(out);
                    close(
                        addr,
                        &self.pending,
                        &self.closed,
                        "connection closed".into(),
                    );
                    return;
                }
                match route(out.busy, out.socket.is_some(), alone, out.frames, limit) {
                    Route::Direct => {
                        let result = match &out.socket {
                            Some(socket) => write_now(socket, &frame),
                            None => Ok(0),
                        };
                        match result {
                            Ok(n) if n == frame.len() => {}
                            Ok(n) => {
                                // The rest goes first thing from the writer task.
                                out.queued.extend_from_slice(&frame[n..]);
                                out.frames += 1;
                                out.busy = true;
                                self.out.wake.notify_one();
                            }
                            Err(e) => {
                                // Every pending call fails with the reason first; then the
                                // writer task shuts the socket down and stops the reader.
                                drop(out);
                                close(
                                    addr,
                                    &self.pending,
                                    &self.closed,
                                    format!("write failed: {e}"),
                                );
                                lock(&self.out.state).stopped = true;
                                self.out.wake.notify_one();
                            }
                        }
                        return;
                    }
                    Route::Queue { wake_writer } => {
                        out.queued.extend_from_slice(&frame);
                        out.frames += 1;
                        out.busy = true;
                        if wake_writer {
                            self.out.wake.notify_one();
                        }
                        return;
                    }
                    Route::Wait => {}
                }
            }
            room.await;
        }
    }
}

impl Drop for Link {
    /// No caller holds the link any more: the writer task shuts the socket down and stops the
    /// reader (as the writer did when the last sender of its queue went away).
    fn drop(&mut self) {
        lock(&self.out.state).stopped = true;
        self.out.wake.notify_one();
    }
}

/// Writes as much of `frame` as the socket takes now; `Ok(0)` when it takes nothing.
fn write_now(socket: &OwnedWriteHalf, frame: &[u8]) -> std::io::Result<usize> {
    let mut written = 0;
    while written < frame.len() {
        match socket.try_write(&frame[written..]) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    "the socket took no bytes",
                ));
            }
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

/// Fails every pending call of a connection with `reason`, and refuses new ones.
fn close(addr: &str, pending: &Mutex<Pending>, closed: &AtomicBool, reason: String) {
    closed.store(true, Ordering::Release);
    let calls = {
        let mut p = lock(pending);
        if p.closed.is_some() {
            return;
        }
        p.closed = Some(reason.clone());
        std::mem::take(&mut p.calls)
    };
    for (_, waiter) in calls {
        let _ = waiter.send(Err(CallError::ConnectionLost {
            addr: addr.to_owned(),
            reason: reason.clone(),
        }));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves the data consistent (plain inserts and
    // removes), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes a call's waiter when the caller stops waiting (deadline, or the future dropped).
struct PendingGuard<'a> {
    pending: &'a Mutex<Pending>,
    seqid: i32,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        lock(self.pending).calls.remove(&self.seqid);
    }
}

/// A connection to one server address (`host:port`; host names are resolved on each connect),
/// opened on the first call and opened again on the call after a failure.
pub struct Connection {
    addr: String,
    /// What the server is, for messages ("MetaServer", "replica server").
    role: &'static str,
    opts: ClientOptions,
    current: Mutex<Option<Arc<Link>>>,
    connecting: tokio::sync::Mutex<()>,
}

impl Connection {
    pub fn new(addr: impl Into<String>, opts: ClientOptions) -> Self {
        Self::with_role(addr, opts, "server")
    }

    /// Like [`Connection::new`], naming what the server is in errors and logs ("closed by the
    /// MetaServer").
    pub fn with_role(addr: impl Into<String>, opts: ClientOptions, role: &'static str) -> Self {
        Connection {
            addr: addr.into(),
            role,
            opts,
            current: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The socket address of the live connection, if there is one.
    pub fn peer(&self) -> Option<SocketAddr> {
        lock(&self.current)
            .as_ref()
            .filter(|c| !c.is_closed())
            .map(|c| c.peer)
    }

    /// Whether a live connection exists.
    pub fn is_connected(&self) -> bool {
        self.peer().is_some()
    }

    /// Sends `name(args)` with a v0 header whose fields are all zero but the timeout (what a
    /// MetaServer gets from every client), and waits for the reply until `deadline`. The reply is
    /// returned whatever its rpc-level error; a transport failure or the deadline is an `Err`.
    pub async fn call(
        &self,
        name: &str,
        args: &[u8],
        deadline: Instant,
    ) -> Result<ReplyFrame, CallError> {
        self.call_framed(deadline, |seqid| {
            let timeout_ms = deadline
                .saturating_duration_since(Instant::now())
                .as_millis()
                .min(i32::MAX as u128) as i32;
            let mut frame =
                BytesMut::with_capacity(codec::V0_HEADER_LEN + name.len() + 12 + args.len());
            codec::encode_call(&mut frame, name, seqid, timeout_ms, args);
            frame.freeze()
        })
        .await
    }

    /// Sends `name(args)` with `header` as given (a replica server reads the gpid, the hashes and
    /// the timeout from it), and waits for the reply until `deadline`, like [`Connection::call`].
    pub async fn call_with_header(
        &self,
        header: RequestHeader,
        name: &str,
        args: Bytes,
        deadline: Instant,
    ) -> Result<ReplyFrame, CallError> {
        self.call_framed(deadline, |seqid| {
            RequestFrame {
                header,
                message: MessageBegin::new(name, MessageKind::Call, seqid),
                args,
            }
            .to_bytes()
        })
        .await
    }

    /// Sends the frame `frame(seqid)` builds and waits for the reply to `seqid` until `deadline`.
    async fn call_framed(
        &self,
        deadline: Instant,
        frame: impl FnOnce(i32) -> Bytes,
    ) -> Result<ReplyFrame, CallError> {
        match tokio::time::timeout_at(deadline, self.call_inner(frame)).await {
            Ok(result) => result,
            Err(_) => Err(CallError::Timeout {
                addr: self.addr.clone(),
            }),
        }
    }

    async fn call_inner(&self, frame: impl FnOnce(i32) -> Bytes) -> Result<ReplyFrame, CallError> {
        let conn = self.connection().await?;
        let seqid = conn.next_seqid.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let alone = {
            let mut p = lock(&conn.pending);
            if let Some(reason) = &p.closed {
                return Err(CallError::ConnectionLost {
                    addr: self.addr.clone(),
                    reason: reason.clone(),
                });
            }
            p.calls.insert(seqid, tx);
            p.calls.len() == 1
        };
        let _guard = PendingGuard {
            pending: &conn.pending,
            seqid,
        };

        conn.send(&self.addr, frame(seqid), alone, self.opts.write_queue)
            .await;
        match rx.await {
            Ok(result) => result,
            Err(_) => Err(CallError::ConnectionLost {
                addr: self.addr.clone(),
                reason: "connection dropped".into(),
            }),
        }
    }

    /// Closes the connection; pending calls fail and the next call connects again.
    pub fn disconnect(&self) {
        if let Some(conn) = lock(&self.current).take() {
            close(
                &self.addr,
                &conn.pending,
                &conn.closed,
                "disconnected by the client".into(),
            );
        }
    }

    async fn connection(&self) -> Result<Arc<Link>, CallError> {
        if let Some(conn) = self.live() {
            return Ok(conn);
        }
        // One connect at a time; those who waited use its result.
        let _connecting = self.connecting.lock().await;
        if let Some(conn) = self.live() {
            return Ok(conn);
        }
        let conn = Arc::new(self.connect().await?);
        *lock(&self.current) = Some(conn.clone());
        Ok(conn)
    }

    fn live(&self) -> Option<Arc<Link>> {
        lock(&self.current)
            .as_ref()
            .filter(|c| !c.is_closed())
            .cloned()
    }

    async fn connect(&self) -> Result<Link, CallError> {
        let fail = |reason: String| CallError::Connect {
            addr: self.addr.clone(),
            reason,
        };
        let stream =
            tokio::time::timeout(self.opts.connect_timeout, TcpStream::connect(&self.addr))
                .await
                .map_err(|_| fail(format!("timed out after {:?}", self.opts.connect_timeout)))?
                .map_err(|e| fail(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let peer = stream.peer_addr().map_err(|e| fail(e.to_string()))?;
        tracing::debug!(server = %self.addr, %peer, "connected to {}", self.role);

        let (read, write) = stream.into_split();
        let out = Arc::new(Outbox {
            state: Mutex::new(Outgoing {
                socket: Some(write),
                busy: false,
                queued: BytesMut::new(),
                frames: 0,
                stopped: false,
            }),
            wake: Notify::new(),
            room: Notify::new(),
        });
        let pending = Arc::new(Mutex::new(Pending {
            calls: HashMap::new(),
            closed: None,
        }));
        let closed = Arc::new(AtomicBool::new(false));
        let stop_reader = Arc::new(Notify::new());
        tokio::spawn(write_loop(
            self.addr.clone(),
            out.clone(),
            pending.clone(),
            closed.clone(),
            stop_reader.clone(),
        ));
        tokio::spawn(read_loop(
            self.addr.clone(),
            self.role,
            read,
            self.opts.max_frame,
            pending.clone(),
            closed.clone(),
            stop_reader,
        ));
        Ok(Link {
            out,
            pending,
            closed,
            next_seqid: AtomicI32::new(1),
            peer,
        })
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.disconnect();
    }
}

/// Writes what callers queued, everything queued at the time in one write, holding the socket
/// until the queue is empty; then gives the socket back to the callers. Ends when the link is
/// dropped or a write failed; either way it shuts the socket down and stops the reader.
async fn write_loop(
    addr: String,
    out: Arc<Outbox>,
    pending: Arc<Mutex<Pending>>,
    closed: Arc<AtomicBool>,
    stop_reader: Arc<Notify>,
) {
    let mut batch = BytesMut::with_capacity(16 * 1024);
    let mut socket: Option<OwnedWriteHalf> = None;
    let failure = loop {
        let wake = out.wake.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        {
            let mut state = lock(&out.state);
            if state.stopped {
                socket = socket.or_else(|| state.socket.take());
                break None;
            }
            if state.busy {
                // Take the socket (unless already held) and everything queued; the queue gets
                // the emptied buffer of the last batch, so that both keep their capacity.
                socket = socket.or_else(|| state.socket.take());
                std::mem::swap(&mut batch, &mut state.queued);
                state.frames = 0;
                if batch.is_empty() {
                    // Nothing came while the last batch was written: give the socket back.
                    state.socket = socket.take();
                    state.busy = false;
                }
            }
        }
        if batch.is_empty() {
            wake.await;
            continue;
        }
        out.room.notify_waiters();
        let Some(held) = socket.as_mut() else {
            // Unreachable: the socket is in the state whenever the writer does not hold it.
            break Some("the writer lost the socket".to_owned());
        };
        if let Err(e) = held.write_all(&batch).await {
            break Some(format!("write failed: {e}"));
        }
        batch.clear();
    };
    // The reason first, so that a caller who sees the outbox stopped finds the calls failed
    // with it.
    if let Some(reason) = failure {
        close(&addr, &pending, &closed, reason);
    }
    {
        let mut state = lock(&out.state);
        state.stopped = true;
        state.queued = BytesMut::new();
    }
    out.room.notify_waiters();
    if let Some(mut socket) = socket {
        let _ = socket.shutdown().await;
    }
    close(&addr, &pending, &closed, "connection closed".into());
    stop_reader.notify_one();
}

/// Reads replies and hands each to the call waiting for its seqid.
async fn read_loop(
    addr: String,
    role: &'static str,
    mut read: OwnedReadHalf,
    max_frame: usize,
    pending: Arc<Mutex<Pending>>,
    closed: Arc<AtomicBool>,
    stop: Arc<Notify>,
) {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let reason = loop {
        loop {
            match codec::decode_reply(&mut buf, max_frame) {
                Ok(Some(reply)) => {
                    let waiter = lock(&pending).calls.remove(&reply.seqid());
                    match waiter {
                        Some(w) => {
                            let _ = w.send(Ok(reply));
                        }
                        None => {
                            tracing::debug!(server = %addr, seqid = reply.seqid(), "reply for no pending call (timed out?)")
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(server = %addr, error = %e, "bad reply from {role}; closing the connection");
                    let reason = format!("bad reply: {e}");
                    close(&addr, &pending, &closed, reason);
                    return;
                }
            }
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        tokio::select! {
            n = read.read_buf(&mut buf) => match n {
                Ok(0) => break format!("closed by the {role}"),
                Ok(_) => {}
                Err(e) => break format!("read failed: {e}"),
            },
            _ = stop.notified() => break "connection closed".to_owned(),
        }
    };
    close(&addr, &pending, &closed, reason);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_written_by_the_caller_only_when_alone_and_the_writer_idle() {
        // (busy, socket here, alone, frames queued, limit) -> route
        let cases = [
            ((false, true, true, 0, 8), Route::Direct),
            // Other calls pending: one batched write for all of them.
            (
                (false, true, false, 0, 8),
                Route::Queue { wake_writer: true },
            ),
            // The writer holds bytes (or the socket): behind them, and it is awake already.
            (
                (true, true, true, 0, 8),
                Route::Queue { wake_writer: false },
            ),
            (
                (true, false, true, 3, 8),
                Route::Queue { wake_writer: false },
            ),
            (
                (true, false, false, 7, 8),
                Route::Queue { wake_writer: false },
            ),
            // A full queue: wait for the writer to take it.
            ((true, false, false, 8, 8), Route::Wait),
            ((true, false, true, 9, 8), Route::Wait),
            // A queue of zero frames still takes one at a time.
            (
                (true, false, false, 0, 0),
                Route::Queue { wake_writer: false },
            ),
            ((true, false, false, 1, 0), Route::Wait),
        ];
        for ((busy, socket_here, alone, frames, limit), want) in cases {
            assert_eq!(
                route(busy, socket_here, alone, frames, limit),
                want,
                "busy {busy}, socket here {socket_here}, alone {alone}, {frames} of {limit} queued"
            );
        }
    }
}
