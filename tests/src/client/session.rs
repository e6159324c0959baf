//! One connection to one replica server, as the official clients keep them: calls pipelined on a
//! single TCP connection, replies matched by seqid in whatever order they come, a deadline per
//! call, and a new connection on the next call after the old one failed.
//!
//! ```text
//!  call() --frame--> mpsc --> writer task --batched write--> socket
//!  call() <--oneshot-- pending[seqid] <-- reader task <--replies-- socket
//! ```
//! A refused connection fails the call at once (the clients' `ERR_SESSION_RESET`); a lost one
//! fails every call in flight on it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pegasus_rpc::codec::{
    self, DEFAULT_MAX_REPLY_FRAME, MessageBegin, MessageKind, ReplyFrame, RequestFrame,
    RequestHeader,
};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Why a call got no reply.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum SessionError {
    /// The connection could not be made (refused, unreachable, connect timeout).
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    /// The connection broke with the call in flight.
    #[error("connection to {addr} lost: {reason}")]
    Lost { addr: SocketAddr, reason: String },
    /// No reply before the deadline.
    #[error("no reply from {addr} before the deadline")]
    Timeout { addr: SocketAddr },
}

type Waiter = oneshot::Sender<Result<ReplyFrame, SessionError>>;

struct Pending {
    calls: HashMap<i32, Waiter>,
    closed: Option<String>,
}

struct Conn {
    frames: mpsc::UnboundedSender<Bytes>,
    pending: Arc<Mutex<Pending>>,
    closed: Arc<AtomicBool>,
    next_seqid: AtomicI32,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain inserts and removes: a poisoned lock still holds consistent data.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn close(addr: SocketAddr, pending: &Mutex<Pending>, closed: &AtomicBool, reason: String) {
    closed.store(true, Ordering::Release);
    let calls = {
        let mut p = lock(pending);
        if p.closed.is_some() {
            return;
        }
        p.closed = Some(reason.clone());
        std::mem::take(&mut p.calls)
    };
    for (_, w) in calls {
        let _ = w.send(Err(SessionError::Lost {
            addr,
            reason: reason.clone(),
        }));
    }
}

/// Removes a call's waiter when the caller stops waiting.
struct Guard<'a> {
    pending: &'a Mutex<Pending>,
    seqid: i32,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        lock(self.pending).calls.remove(&self.seqid);
    }
}

/// A replica server connection, opened on first use and reopened after a failure.
pub struct Session {
    addr: SocketAddr,
    connect_timeout: Duration,
    current: Mutex<Option<Arc<Conn>>>,
    connecting: tokio::sync::Mutex<()>,
}

impl Session {
    pub fn new(addr: SocketAddr, connect_timeout: Duration) -> Self {
        Session {
            addr,
            connect_timeout,
            current: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends `name(args)` with `header` and waits for the reply until `deadline`. The reply comes
    /// back whatever its rpc-level error.
    pub async fn call(
        &self,
        header: RequestHeader,
        name: &str,
        args: Bytes,
        deadline: Instant,
    ) -> Result<ReplyFrame, SessionError> {
        let timeout = SessionError::Timeout { addr: self.addr };
        match tokio::time::timeout_at(deadline, self.call_inner(header, name, args)).await {
            Ok(result) => result,
            Err(_) => Err(timeout),
        }
    }

    async fn call_inner(
        &self,
        header: RequestHeader,
        name: &str,
        args: Bytes,
    ) -> Result<ReplyFrame, SessionError> {
        let conn = self.connection().await?;
        let seqid = conn.next_seqid.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut p = lock(&conn.pending);
            if let Some(reason) = &p.closed {
                return Err(SessionError::Lost {
                    addr: self.addr,
                    reason: reason.clone(),
                });
            }
            p.calls.insert(seqid, tx);
        }
        let _guard = Guard {
            pending: &conn.pending,
            seqid,
        };
        let frame = RequestFrame {
            header,
            message: MessageBegin::new(name, MessageKind::Call, seqid),
            args,
        };
        let lost = || SessionError::Lost {
            addr: self.addr,
            reason: "connection closed".into(),
        };
        conn.frames.send(frame.to_bytes()).map_err(|_| lost())?;
        rx.await.unwrap_or_else(|_| Err(lost()))
    }

    /// Closes the connection; calls in flight fail, the next call connects again.
    pub fn disconnect(&self) {
        if let Some(conn) = lock(&self.current).take() {
            close(
                self.addr,
                &conn.pending,
                &conn.closed,
                "disconnected by the client".into(),
            );
        }
    }

    fn live(&self) -> Option<Arc<Conn>> {
        lock(&self.current)
            .as_ref()
            .filter(|c| !c.closed.load(Ordering::Acquire))
            .cloned()
    }

    async fn connection(&self) -> Result<Arc<Conn>, SessionError> {
        if let Some(c) = self.live() {
            return Ok(c);
        }
        let _one = self.connecting.lock().await;
        if let Some(c) = self.live() {
            return Ok(c);
        }
        let fail = |reason: String| SessionError::Connect {
            addr: self.addr,
            reason,
        };
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(self.addr))
            .await
            .map_err(|_| fail("connect timed out".into()))?
            .map_err(|e| fail(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let (mut rd, mut wr) = stream.into_split();
        let (frames, mut queue) = mpsc::unbounded_channel::<Bytes>();
        let pending = Arc::new(Mutex::new(Pending {
            calls: HashMap::new(),
            closed: None,
        }));
        let closed = Arc::new(AtomicBool::new(false));
        let addr = self.addr;
        let (stop_reader, mut reader_stopped) = oneshot::channel::<()>();
        {
            let (pending, closed) = (pending.clone(), closed.clone());
            tokio::spawn(async move {
                let mut batch = BytesMut::new();
                while let Some(first) = queue.recv().await {
                    batch.extend_from_slice(&first);
                    while batch.len() < 64 << 10 {
                        match queue.try_recv() {
                            Ok(more) => batch.extend_from_slice(&more),
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = wr.write_all(&batch).await {
                        close(addr, &pending, &closed, format!("write failed: {e}"));
                        break;
                    }
                    batch.clear();
                }
                let _ = wr.shutdown().await;
                close(addr, &pending, &closed, "connection closed".into());
                let _ = stop_reader.send(());
            });
        }
        {
            let (pending, closed) = (pending.clone(), closed.clone());
            tokio::spawn(async move {
                let mut buf = BytesMut::with_capacity(16 << 10);
                let reason = loop {
                    loop {
                        match codec::decode_reply(&mut buf, DEFAULT_MAX_REPLY_FRAME) {
                            Ok(Some(reply)) => {
                                let waiter = lock(&pending).calls.remove(&reply.seqid());
                                if let Some(w) = waiter {
                                    let _ = w.send(Ok(reply));
                                }
                            }
                            Ok(None) => break,
                            Err(e) => {
                                close(addr, &pending, &closed, format!("bad reply: {e}"));
                                return;
                            }
                        }
                    }
                    tokio::select! {
                        n = rd.read_buf(&mut buf) => match n {
                            Ok(0) => break "closed by the server".to_owned(),
                            Ok(_) => {}
                            Err(e) => break format!("read failed: {e}"),
                        },
                        _ = &mut reader_stopped => break "connection closed".to_owned(),
                    }
                };
                close(addr, &pending, &closed, reason);
            });
        }
        let conn = Arc::new(Conn {
            frames,
            pending,
            closed,
            next_seqid: AtomicI32::new(0),
        });
        *lock(&self.current) = Some(conn.clone());
        Ok(conn)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.disconnect();
    }
}

/// Sessions by replica address, shared by every caller of one client.
#[derive(Default)]
pub struct SessionPool {
    sessions: Mutex<HashMap<SocketAddr, Arc<Session>>>,
    connect_timeout: Duration,
}

impl SessionPool {
    pub fn new(connect_timeout: Duration) -> Self {
        SessionPool {
            sessions: Mutex::new(HashMap::new()),
            connect_timeout,
        }
    }

    pub fn get(&self, addr: SocketAddr) -> Arc<Session> {
        lock(&self.sessions)
            .entry(addr)
            .or_insert_with(|| Arc::new(Session::new(addr, self.connect_timeout)))
            .clone()
    }

    /// Closes every connection.
    pub fn clear(&self) {
        lock(&self.sessions).clear();
    }
}
