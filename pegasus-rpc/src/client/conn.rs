//! One connection to one Pegasus server, as the official clients keep them: pipelined calls on a
//! single TCP connection, replies matched by seqid in whatever order they come, a deadline on
//! every call, and a new connection (with a fresh DNS lookup) on the next call after the old one
//! failed. [`MetaClient`](super::MetaClient) is one to a MetaServer; the test suite's data client
//! keeps one per replica server, with the request header fields of each call.
//!
//! ```text
//!  call() --frame--> mpsc --> writer task --batched write--> socket
//!  call() <--oneshot-- pending[seqid] <-- reader task <--replies-- socket
//! ```
//! When either task fails, every pending call fails at once with the reason, and the next call
//! connects again.

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
use tokio::sync::{Notify, mpsc, oneshot};
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
    /// Frames queued for the writer before callers wait.
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

/// One live TCP connection and its two tasks.
struct Link {
    frames: mpsc::Sender<Bytes>,
    pending: Arc<Mutex<Pending>>,
    closed: Arc<AtomicBool>,
    next_seqid: AtomicI32,
    peer: SocketAddr,
}

impl Link {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
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
        {
            let mut p = lock(&conn.pending);
            if let Some(reason) = &p.closed {
                return Err(CallError::ConnectionLost {
                    addr: self.addr.clone(),
                    reason: reason.clone(),
                });
            }
            p.calls.insert(seqid, tx);
        }
        let _guard = PendingGuard {
            pending: &conn.pending,
            seqid,
        };

        if conn.frames.send(frame(seqid)).await.is_err() {
            return Err(CallError::ConnectionLost {
                addr: self.addr.clone(),
                reason: "writer stopped".into(),
            });
        }
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
        let (frames, rx) = mpsc::channel(self.opts.write_queue);
        let pending = Arc::new(Mutex::new(Pending {
            calls: HashMap::new(),
            closed: None,
        }));
        let closed = Arc::new(AtomicBool::new(false));
        let stop_reader = Arc::new(Notify::new());
        tokio::spawn(write_loop(
            self.addr.clone(),
            write,
            rx,
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
            frames,
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

/// Writes queued frames, batching whatever is queued into one write. Ends when the connection is
/// dropped (every sender gone) or a write fails; either way it stops the reader.
async fn write_loop(
    addr: String,
    mut write: OwnedWriteHalf,
    mut frames: mpsc::Receiver<Bytes>,
    pending: Arc<Mutex<Pending>>,
    closed: Arc<AtomicBool>,
    stop_reader: Arc<Notify>,
) {
    let mut batch = BytesMut::with_capacity(16 * 1024);
    while let Some(first) = frames.recv().await {
        batch.extend_from_slice(&first);
        while batch.len() < 64 * 1024 {
            match frames.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if let Err(e) = write.write_all(&batch).await {
            close(&addr, &pending, &closed, format!("write failed: {e}"));
            break;
        }
        batch.clear();
    }
    let _ = write.shutdown().await;
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
