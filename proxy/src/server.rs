//! Client connections: accept under a cap, read pipelined frames, answer each as soon as its
//! answer is ready (so replies leave in any order, matched by seqid), close idle connections, and
//! drain on shutdown.
//!
//! ```text
//!  accept --cap--> connection task: read -> decode_request -> Owed: a cached query_config joins
//!                                   its upstream call (one future per call), any other request
//!                                   is a Service::handle future (crate::owed)
//!                                   (polled through crate::quiet: no wake-ups of itself)
//!                                   answers as they complete -> Outbox (crate::outbox: large
//!                                   bodies not copied) -> write (as the client takes them)
//!  shutdown: stop accepting; each connection stops reading, answers every request already read,
//!            writes the answers, then closes in order (FIN, the rest of its input discarded)
//! ```
//!
//! What a connection may hold, and for how long:
//!
//! | limit | what happens |
//! |---|---|
//! | `max_in_flight` requests being answered, or `max_unsent_bytes` of replies the client has not taken | the connection is not read until it is back under both |
//! | a frame partly received for `frame_timeout` (its header too) | the connection is closed |
//! | a partly received frame's announced size does not fit the `partial_frame_budget` shared by all connections | the connection is closed |
//! | idle for `idle_timeout`: nothing to read, no partial frame, no request in flight and no reply unsent | the connection is closed |
//!
//! A client that stops reading is not idle while replies are owed to it; the limits above keep
//! what it costs bounded. A frame that cannot be decoded (bad magic or version, oversized,
//! malformed body) closes its connection only, after the answers already owed are written.
//!
//! Every close is orderly: the answers owed are written, the write side is shut (FIN), and what
//! the client still sends is read and discarded until it closes too (for at most
//! [`CLOSE_LINGER`], or during a drain until the grace period ends). Closing a socket that has
//! unread input makes Linux send a reset, and a reset makes the client's kernel drop the replies
//! it has received but its application not read yet.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures::FutureExt;
use futures::stream::StreamExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::metrics::{Metrics, ReasonLabel};
use crate::outbox::Outbox;
use crate::owed::Owed;
use crate::quiet::QuietWakes;
use crate::service::{Reply, Service};
use crate::warnings::Kind;
use pegasus_rpc::codec::{CodecError, DEFAULT_MAX_REQUEST_FRAME, RequestDecoder, announced_len};

/// How much a connection reads at a time.
const READ_CHUNK: usize = 4096;

/// How long a connection closed by the proxy (idle, bad frame, limits) waits for its client to
/// close too, discarding what it sends meanwhile. A drain waits until its grace period ends.
pub const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Limits on client connections.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub max_connections: usize,
    /// Largest request frame accepted (default [`DEFAULT_MAX_REQUEST_FRAME`], 1 MiB).
    pub max_frame: usize,
    /// A connection with nothing to read, no partial frame, nothing in flight and nothing unsent
    /// for this long is closed.
    pub idle_timeout: Duration,
    /// Requests in flight per connection before it stops reading.
    pub max_in_flight: usize,
    /// Reply bytes waiting for the client to take them, per connection, before it stops reading.
    pub max_unsent_bytes: usize,
    /// Time a request frame may take to arrive once its first byte has.
    pub frame_timeout: Duration,
    /// Bytes that partly received frames may hold, across all connections.
    pub partial_frame_budget: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_connections: 10_000,
            max_frame: DEFAULT_MAX_REQUEST_FRAME,
            idle_timeout: Duration::from_secs(600),
            max_in_flight: 1024,
            // One 1024-partition reply (about 150 KiB) fits; thousands of small ones do.
            max_unsent_bytes: 256 << 10,
            frame_timeout: Duration::from_secs(5),
            partial_frame_budget: 64 << 20,
        }
    }
}

/// Why the client listener stopped serving although no shutdown was asked for.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ServeError {
    /// Its task ended (or was cancelled) without a shutdown request.
    #[error("the client listener stopped without a shutdown request")]
    Stopped,
    /// Its task panicked, with this message.
    #[error("the client listener panicked: {0}")]
    Panicked(String),
}

impl ServeError {
    /// A fixed, small label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ServeError::Stopped => "stopped",
            ServeError::Panicked(_) => "panicked",
        }
    }
}

/// Serves `listener` until `shutdown` turns true, then waits up to `grace` for the connections to
/// answer what they have read and close; those still open after it are cut.
pub async fn serve(
    listener: TcpListener,
    service: Arc<Service>,
    opts: ServerOptions,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let slots = Arc::new(Semaphore::new(opts.max_connections));
    let metrics = service.metrics().clone();
    let budget = FrameBudget::new(
        opts.partial_frame_budget,
        metrics.partial_frame_bytes.clone(),
    );
    let mut connections = JoinSet::new();
    let stop = shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        if let Some(suppressed) = metrics.warnings.admit(Kind::AcceptFailed, "") {
                            tracing::warn!(error = %e, suppressed, "accept failed");
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    if let Some(suppressed) = metrics.warnings.admit(Kind::ConnectionCap, "") {
                        tracing::warn!(%peer, max = opts.max_connections, suppressed, "connection cap reached; closing the new connection");
                    }
                    metrics.connections_rejected.inc();
                    drop(stream);
                    continue;
                };
                metrics.connections_accepted.inc();
                let (service, opts, budget, shutdown) =
                    (service.clone(), opts.clone(), budget.clone(), stop.clone());
                connections.spawn(async move {
                    let _open = Open::new(service.metrics().connections.clone(), permit);
                    connection(stream, peer, &service, &opts, &budget, shutdown).await;
                });
            }
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                // One connection's panic is its own; the listener goes on.
                if let Err(e) = done && e.is_panic() {
                    tracing::error!(error = %e, "a client connection task panicked");
                }
            }
            () = stopped(&mut shutdown) => break,
        }
    }
    drop(listener);
    tracing::info!(
        connections = connections.len(),
        ?grace,
        "draining client connections"
    );
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        let dropped_before = metrics.replies_dropped.get();
        let left = connections.len();
        connections.shutdown().await;
        tracing::warn!(
            connections = left,
            unanswered = metrics.replies_dropped.get() - dropped_before,
            "grace period over; cut the connections left"
        );
    }
}

/// An open client connection: counted in the gauge and holding its slot under the cap until
/// dropped, also when its task panics.
struct Open {
    gauge: Gauge,
    _slot: OwnedSemaphorePermit,
}

impl Open {
    fn new(gauge: Gauge, slot: OwnedSemaphorePermit) -> Self {
        gauge.inc();
        Open { gauge, _slot: slot }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Bytes that partly received frames may hold, shared by every connection. A connection reserves
/// a frame's announced size once its header is in, and gives it back when the frame is complete
/// or the connection goes.
#[derive(Clone)]
struct FrameBudget {
    bytes: Arc<Semaphore>,
    gauge: Gauge,
}

impl FrameBudget {
    fn new(bytes: usize, gauge: Gauge) -> Self {
        FrameBudget {
            bytes: Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))),
            gauge,
        }
    }

    /// `bytes` of the budget, or `None` when they are not free.
    fn reserve(&self, bytes: usize) -> Option<Reservation> {
        let permits = u32::try_from(bytes).ok()?;
        let permit = self.bytes.clone().try_acquire_many_owned(permits).ok()?;
        let bytes = i64::from(permits);
        self.gauge.inc_by(bytes);
        Some(Reservation {
            _permit: permit,
            gauge: self.gauge.clone(),
            bytes,
        })
    }
}

struct Reservation {
    _permit: OwnedSemaphorePermit,
    gauge: Gauge,
    bytes: i64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.gauge.dec_by(self.bytes);
    }
}

/// Why a connection closed: the `reason` label of `metaproxy_connections_closed_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Close {
    /// The client closed its side, and every request read was answered.
    ClientClosed,
    Idle,
    FrameTimeout,
    FrameBudget,
    BadFrame,
    /// The proxy is draining.
    Drain,
    /// Reading or writing failed (the client reset the connection, or went away).
    IoError,
}

impl Close {
    fn label(self) -> &'static str {
        match self {
            Close::ClientClosed => "client_closed",
            Close::Idle => "idle",
            Close::FrameTimeout => "frame_timeout",
            Close::FrameBudget => "frame_budget",
            Close::BadFrame => "bad_frame",
            Close::Drain => "drain",
            Close::IoError => "io_error",
        }
    }
}

/// What a connection owes and why it closed, kept in the process-wide gauges as it goes and
/// settled when it is dropped: also when its task is cut at the end of the grace period, or
/// panics.
struct Ledger {
    /// Requests read (decoded) so far.
    read: u64,
    /// Requests whose reply has been written whole (or that need none).
    settled: u64,
    /// Replies encoded but not yet written whole.
    unsent_replies: u64,
    /// Requests being answered.
    in_flight: i64,
    /// Reply bytes not yet written.
    unsent_bytes: i64,
    close: Option<Close>,
    /// The close reason is final: the connection was not cut by the end of the grace period.
    finished: bool,
    dropped: Counter,
    closed: Family<ReasonLabel, Counter>,
    in_flight_gauge: Gauge,
    unsent_gauge: Gauge,
}

impl Ledger {
    fn new(metrics: &Metrics) -> Self {
        Ledger {
            read: 0,
            settled: 0,
            unsent_replies: 0,
            in_flight: 0,
            unsent_bytes: 0,
            close: None,
            finished: false,
            dropped: metrics.replies_dropped.clone(),
            closed: metrics.connections_closed.clone(),
            in_flight_gauge: metrics.requests_in_flight.clone(),
            unsent_gauge: metrics.unsent_reply_bytes.clone(),
        }
    }

    /// A request was read and is being answered.
    fn request(&mut self) {
        self.read += 1;
        self.in_flight += 1;
        self.in_flight_gauge.inc();
    }

    /// A request's answer is there: `bytes` to write (0 when there is nothing to write).
    fn answered(&mut self, bytes: usize) {
        self.in_flight -= 1;
        self.in_flight_gauge.dec();
        if bytes == 0 {
            self.settled += 1;
        } else {
            self.unsent_replies += 1;
            self.unsent(bytes as i64);
        }
    }

    /// `bytes` of replies were written; `all` when nothing is left to write.
    fn wrote(&mut self, bytes: usize, all: bool) {
        self.unsent(-(bytes as i64));
        if all {
            self.settled += self.unsent_replies;
            self.unsent_replies = 0;
        }
    }

    fn unsent(&mut self, delta: i64) {
        self.unsent_bytes += delta;
        self.unsent_gauge.inc_by(delta);
    }

    /// Records why the connection closes; the first reason stands.
    fn close(&mut self, why: Close) {
        self.close.get_or_insert(why);
    }

    /// Reading or writing failed: that is why it closes, whatever was decided before, and
    /// nothing more can be written.
    fn failed(&mut self) {
        self.close = Some(Close::IoError);
        self.finished = true;
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.in_flight_gauge.dec_by(self.in_flight);
        self.unsent_gauge.dec_by(self.unsent_bytes);
        let owed = self.read.saturating_sub(self.settled);
        if owed > 0 {
            self.dropped.inc_by(owed);
        }
        let reason = match self.close {
            Some(why) if self.finished || why != Close::Drain => why.label(),
            // Cut before it could finish.
            Some(_) | None => "grace_over",
        };
        self.closed.get_or_create(&ReasonLabel { reason }).inc();
    }
}

/// The frame being received, when the front of the read buffer holds part of one.
struct Partial {
    since: Instant,
    reservation: Option<Reservation>,
}

/// What a pass over the read buffer left there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decoded {
    /// No whole frame left: the buffer is empty or holds the start of one.
    NeedMore,
    /// Whole frames may be left, held back by the limits on what the connection owes.
    Held,
}

/// Whether a connection owing this much may read more requests.
fn under_limits(in_flight: usize, unsent_bytes: usize, opts: &ServerOptions) -> bool {
    in_flight < opts.max_in_flight && unsent_bytes < opts.max_unsent_bytes
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    service: &Service,
    opts: &ServerOptions,
    budget: &FrameBudget,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let mut ledger = Ledger::new(service.metrics());
    let mut rbuf = BytesMut::new();
    let mut outbox = Outbox::default();
    // The connection speaks the header of its first frame, THFT or native, as a MetaServer's.
    let mut decoder = RequestDecoder::default();
    // What the connection is answering; nothing is allocated for it until the first request.
    // Without the wakes of this task made while it polls its requests (see `quiet`): each one
    // would wake the other worker thread for nothing.
    let mut owed = QuietWakes::new(Owed::new(service));
    // Whether more bytes are read from the socket: until the client closes its side, a close is
    // decided, or the drain begins.
    let mut reading = true;
    let mut draining = false;
    let mut partial: Option<Partial> = None;
    let mut last_activity = Instant::now();
    let timer = tokio::time::sleep_until(last_activity + opts.idle_timeout);
    tokio::pin!(timer);
    if *shutdown.borrow() {
        draining = true;
        reading = false;
        ledger.close(Close::Drain);
    }

    loop {
        // Write what is ready, as far as the client takes it now.
        while !outbox.is_empty() {
            match outbox.write_with(|slices| stream.try_write_vectored(slices)) {
                Ok(n) => {
                    ledger.wrote(n, outbox.is_empty());
                    last_activity = Instant::now();
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "write failed");
                    ledger.failed();
                    return;
                }
            }
        }
        // Take the whole frames read so far, as far as the limits allow.
        let mut decoded = Decoded::NeedMore;
        while !rbuf.is_empty() {
            if !under_limits(owed.len(), outbox.unsent(), opts) {
                decoded = Decoded::Held;
                break;
            }
            match decoder.decode(&mut rbuf, opts.max_frame) {
                Ok(Some(frame)) => {
                    ledger.request();
                    partial = None;
                    owed.push(frame, |frame| service.handle(frame));
                }
                Ok(None) => break,
                Err(e) => {
                    frame_error(service, peer, &e);
                    ledger.close(Close::BadFrame);
                    reading = false;
                    rbuf.clear();
                }
            }
        }
        // The start of a frame: it must be whole within the frame timeout, and its announced
        // size must fit the budget.
        if decoded == Decoded::Held || rbuf.is_empty() || !reading {
            partial = None;
        } else {
            let p = partial.get_or_insert_with(|| Partial {
                since: Instant::now(),
                reservation: None,
            });
            if p.reservation.is_none()
                && let Some(total) = announced_len(&rbuf)
            {
                match usize::try_from(total).ok().and_then(|n| budget.reserve(n)) {
                    Some(r) => p.reservation = Some(r),
                    None => {
                        if let Some(suppressed) =
                            service.metrics().warnings.admit(Kind::FrameBudget, "")
                        {
                            tracing::warn!(%peer, frame = total, suppressed, "partial frame budget exhausted; closing the connection");
                        }
                        ledger.close(Close::FrameBudget);
                        reading = false;
                        rbuf.clear();
                        partial = None;
                    }
                }
            }
        }
        if !reading && owed.is_empty() && outbox.is_empty() && decoded == Decoded::NeedMore {
            break;
        }

        let may_read = reading
            && decoded == Decoded::NeedMore
            && under_limits(owed.len(), outbox.unsent(), opts);
        let frame_deadline = partial
            .as_ref()
            .filter(|_| may_read)
            .map(|p| p.since + opts.frame_timeout);
        let idle = reading && rbuf.is_empty() && owed.is_empty() && outbox.is_empty();
        // An idle connection holds no read buffer. A new connection is reported readable once
        // before it has sent anything (the read, with the buffer reserved, finds nothing), and
        // one that was answered may then wait for minutes: 10,000 idle connections held 40 MiB
        // of empty read buffers. The next read reserves again, once per idle period.
        if idle && rbuf.capacity() > 0 {
            rbuf = BytesMut::new();
        }
        let idle_deadline = idle.then(|| last_activity + opts.idle_timeout);
        let deadline = match (frame_deadline, idle_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(d) = deadline
            && timer.deadline() != d
        {
            timer.as_mut().reset(d);
        }

        tokio::select! {
            biased;
            Some(reply) = owed.next(), if !owed.is_empty() && outbox.unsent() < opts.max_unsent_bytes => {
                // Answers often complete together (a shared upstream call wakes all its
                // waiters; upstream replies read together wake their calls one after another):
                // take every one that is ready, let the tasks already woken run once (a yield)
                // while more are owed, and take those too, so that they leave in one write.
                // Each write to a client wakes it, and on loopback a write costs the proxy the
                // client's share of the delivery too: fewer writes are the largest saving.
                let mut next = Some(reply);
                for pass in 0..2 {
                    while let Some(reply) = next {
                        let before = outbox.unsent();
                        if let Reply::Close(e) = &reply {
                            frame_error(service, peer, e);
                            ledger.close(Close::BadFrame);
                            reading = false;
                            rbuf.clear();
                        }
                        outbox.push(&reply);
                        ledger.answered(outbox.unsent() - before);
                        next = if outbox.unsent() < opts.max_unsent_bytes {
                            owed.next().now_or_never().flatten()
                        } else {
                            None
                        };
                    }
                    if pass == 1 || owed.is_empty() || outbox.unsent() >= opts.max_unsent_bytes {
                        break;
                    }
                    tokio::task::yield_now().await;
                    next = owed.next().now_or_never().flatten();
                }
            }
            ready = stream.writable(), if !outbox.is_empty() => {
                if let Err(e) = ready {
                    tracing::debug!(%peer, error = %e, "write failed");
                    ledger.failed();
                    return;
                }
            }
            ready = stream.readable(), if may_read => {
                let read = ready.and_then(|()| {
                    rbuf.reserve(READ_CHUNK);
                    stream.try_read_buf(&mut rbuf)
                });
                match read {
                    Ok(0) => {
                        ledger.close(Close::ClientClosed);
                        reading = false;
                    }
                    Ok(_) => last_activity = Instant::now(),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "read failed");
                        ledger.failed();
                        return;
                    }
                }
            }
            () = &mut timer, if deadline.is_some() => {
                let now = Instant::now();
                if frame_deadline.is_some_and(|d| d <= now) {
                    tracing::debug!(%peer, timeout = ?opts.frame_timeout, "a frame took too long to arrive; closing the connection");
                    ledger.close(Close::FrameTimeout);
                    reading = false;
                    rbuf.clear();
                    partial = None;
                } else if idle_deadline.is_some_and(|d| d <= now) {
                    tracing::debug!(%peer, timeout = ?opts.idle_timeout, "closing an idle connection");
                    ledger.close(Close::Idle);
                    reading = false;
                }
            }
            () = stopped(&mut shutdown), if !draining => {
                draining = true;
                reading = false;
                ledger.close(Close::Drain);
            }
        }
    }
    // Everything read is answered and written. The client has its replies; now close in order.
    ledger.finished = true;
    drop(ledger);
    linger(stream, (!draining).then_some(CLOSE_LINGER)).await;
}

/// Shuts the write side (the client reads a FIN after the last reply), then reads and discards
/// what the client still sends until it closes too, or for `limit` (`None`: until the task is
/// cut, which the drain does when its grace period ends).
async fn linger(mut stream: TcpStream, limit: Option<Duration>) {
    let _ = stream.shutdown().await;
    let discard = async {
        // On the heap, and only while lingering: in the future it would make every connection's
        // task 4 KiB larger, idle or not.
        let mut scratch = vec![0u8; 4096];
        loop {
            match tokio::io::AsyncReadExt::read(&mut stream, &mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    match limit {
        Some(limit) => {
            let _ = tokio::time::timeout(limit, discard).await;
        }
        None => discard.await,
    }
}

/// Resolves once `shutdown` is true (or its sender is gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

fn frame_error(service: &Service, peer: SocketAddr, e: &CodecError) {
    if let Some(suppressed) = service.metrics().warnings.admit(Kind::BadFrame, "") {
        tracing::warn!(%peer, error = %e, suppressed, "bad frame from client; closing its connection");
    }
    service
        .metrics()
        .frame_errors
        .get_or_create(&ReasonLabel {
            reason: e.metric_label(),
        })
        .inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_announced_length_is_read_from_the_header_once_it_is_there() {
        let v0 = |body: u32| {
            let mut h = b"THFT\x00\x00\x00\x00\x00\x00\x00\x30\x00\x00\x00\x00".to_vec();
            h.extend_from_slice(&body.to_be_bytes());
            h
        };
        let native = {
            let mut h = b"RDSN\x00\x00\x00\x00\xc0\x00\x00\x00\x00\x00\x00\x00".to_vec();
            h.extend_from_slice(&300u32.to_le_bytes());
            h
        };
        let v1 = {
            let mut h = b"THFT\x00\x00\x00\x01".to_vec();
            h.extend_from_slice(&20u32.to_be_bytes());
            h.extend_from_slice(&100u32.to_be_bytes());
            h
        };
        let cases: Vec<(&str, Vec<u8>, Option<u64>)> = vec![
            ("empty", vec![], None),
            ("magic only", b"THFT".to_vec(), None),
            ("v0 without body length", v0(0)[..16].to_vec(), None),
            ("v0", v0(100), Some(148)),
            (
                "v0, largest body",
                v0(u32::MAX),
                Some(48 + u64::from(u32::MAX)),
            ),
            ("v1 without body length", v1[..15].to_vec(), None),
            ("v1", v1.clone(), Some(136)),
            ("not THFT", b"GET / HTTP/1.1\\r\\n\\r\\n".to_vec(), None),
            ("native without body length", native[..19].to_vec(), None),
            ("native", native.clone(), Some(192 + 300)),
            (
                "version 7",
                b"THFT\x00\x00\x00\x07\x00\x00\x00\x00\x00\x00\x00\x00".to_vec(),
                None,
            ),
        ];
        for (what, bytes, want) in cases {
            assert_eq!(announced_len(&bytes), want, "{what}");
        }
    }

    #[test]
    fn a_connection_reads_while_under_both_limits() {
        let opts = ServerOptions {
            max_in_flight: 2,
            max_unsent_bytes: 100,
            ..ServerOptions::default()
        };
        let cases = [
            (0, 0, true),
            (1, 99, true),
            (2, 0, false),
            (0, 100, false),
            (5, 500, false),
        ];
        for (in_flight, unsent, want) in cases {
            assert_eq!(
                under_limits(in_flight, unsent, &opts),
                want,
                "{in_flight} in flight, {unsent} bytes unsent"
            );
        }
    }

    #[test]
    fn the_budget_is_shared_and_given_back() {
        let gauge = Gauge::default();
        let budget = FrameBudget::new(100, gauge.clone());
        let a = budget.reserve(60).expect("fits");
        assert!(budget.reserve(60).is_none(), "over the budget");
        let b = budget.reserve(40).expect("the rest fits");
        assert_eq!(gauge.get(), 100);
        drop(a);
        assert_eq!(gauge.get(), 40);
        assert!(budget.reserve(60).is_some(), "given back");
        drop(b);
        assert!(
            budget.reserve(usize::MAX).is_none(),
            "more than a frame can be"
        );
    }
}
