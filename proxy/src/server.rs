//! Client connections: accept under a cap, read pipelined frames, answer each as soon as its
//! answer is ready (so replies leave in any order, matched by seqid), close idle connections, and
//! drain on shutdown.
//!
//! ```text
//!  accept --cap--> connection task: read -> decode_request -> Service::handle (in flight, many)
//!                                   answers as they complete -> encode -> write
//!  shutdown: stop accepting; each connection stops reading, finishes what is in flight, closes
//! ```
//! A frame that cannot be decoded (bad magic or version, oversized, malformed body) closes its
//! connection only, after the answers already in flight are written.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};
use prometheus_client::metrics::gauge::Gauge;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use crate::metrics::ReasonLabel;
use crate::service::{Reply, Service};
use pegasus_rpc::codec::{self, CodecError, DEFAULT_MAX_REQUEST_FRAME};

/// Limits on client connections.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub max_connections: usize,
    /// Largest request frame accepted (default [`DEFAULT_MAX_REQUEST_FRAME`], 1 MiB).
    pub max_frame: usize,
    /// A connection with nothing in flight and no request for this long is closed.
    pub idle_timeout: Duration,
    /// Requests in flight per connection before it stops reading.
    pub max_in_flight: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_connections: 10_000,
            max_frame: DEFAULT_MAX_REQUEST_FRAME,
            idle_timeout: Duration::from_secs(600),
            max_in_flight: 1024,
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
/// finish what they have in flight; those still open after it are cut.
pub async fn serve(
    listener: TcpListener,
    service: Arc<Service>,
    opts: ServerOptions,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let slots = Arc::new(Semaphore::new(opts.max_connections));
    let mut connections = JoinSet::new();
    let metrics = service.metrics().clone();
    let stop = shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, max = opts.max_connections, "connection cap reached; closing the new connection");
                    metrics.connections_rejected.inc();
                    drop(stream);
                    continue;
                };
                metrics.connections_accepted.inc();
                let (service, opts, shutdown) = (service.clone(), opts.clone(), stop.clone());
                connections.spawn(async move {
                    let _open = Open::new(service.metrics().connections.clone(), permit);
                    connection(stream, peer, &service, &opts, shutdown).await;
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
        tracing::warn!(
            left = connections.len(),
            "grace period over; closing the remaining connections"
        );
        connections.shutdown().await;
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

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    service: &Service,
    opts: &ServerOptions,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let (mut read, mut write) = stream.into_split();
    let mut rbuf = BytesMut::with_capacity(4096);
    let mut wbuf = BytesMut::with_capacity(4096);
    let mut in_flight = FuturesUnordered::new();
    let mut reading = !*shutdown.borrow();
    let idle = tokio::time::sleep(opts.idle_timeout);
    tokio::pin!(idle);

    while reading || !in_flight.is_empty() {
        tokio::select! {
            Some(reply) = in_flight.next(), if !in_flight.is_empty() => {
                // Answers often complete together (a shared upstream call wakes all its
                // waiters): take every one that is ready, so they leave in one write.
                let mut next = Some(reply);
                while let Some(reply) = next {
                    match reply {
                        Reply::Close(e) => {
                            frame_error(service, peer, &e);
                            reading = false;
                        }
                        reply => reply.encode(&mut wbuf),
                    }
                    next = in_flight.next().now_or_never().flatten();
                }
            }
            n = read.read_buf(&mut rbuf), if reading && in_flight.len() < opts.max_in_flight => {
                match n {
                    Ok(0) => reading = false,
                    Ok(_) => {
                        idle.as_mut().reset(tokio::time::Instant::now() + opts.idle_timeout);
                        loop {
                        match codec::decode_request(&mut rbuf, opts.max_frame) {
                            Ok(Some(frame)) => in_flight.push(service.handle(frame)),
                            Ok(None) => break,
                            Err(e) => {
                                frame_error(service, peer, &e);
                                reading = false;
                                break;
                            }
                        }
                        }
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "read failed");
                        return;
                    }
                }
            }
            () = &mut idle, if reading && in_flight.is_empty() => {
                tracing::debug!(%peer, timeout = ?opts.idle_timeout, "closing an idle connection");
                reading = false;
            }
            () = stopped(&mut shutdown), if reading => reading = false,
        }
        if !wbuf.is_empty() {
            if let Err(e) = write.write_all(&wbuf).await {
                tracing::debug!(%peer, error = %e, "write failed");
                return;
            }
            wbuf.clear();
        }
    }
    let _ = write.shutdown().await;
}

/// Resolves once `shutdown` is true (or its sender is gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

fn frame_error(service: &Service, peer: SocketAddr, e: &CodecError) {
    tracing::warn!(%peer, error = %e, "bad frame from client; closing its connection");
    service
        .metrics()
        .frame_errors
        .get_or_create(&ReasonLabel {
            reason: e.metric_label(),
        })
        .inc();
}
