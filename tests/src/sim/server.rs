//! One MetaServer's listener and connections: request frames in, reply frames out.
//!
//! Each connection is one task. It reads whatever the socket has, decodes every whole frame in it,
//! appends all their replies to one write buffer and writes that with one call, so pipelined
//! requests cost one read and one write per batch. With a reply delay set, a batch's replies wait
//! in a queue until their time comes; requests keep being read meanwhile, so delays overlap rather
//! than add up. A frame the codec rejects ends its connection only.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use pegasus_rpc::codec::{
    self, CodecError, DEFAULT_MAX_REQUEST_FRAME, ErrorCode, MessageKind, NegotiationRequest,
    QueryCfgRequest, RequestFrame, rpc,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};
use tracing::{debug, info, trace, warn};

use super::meta_rpc::{self, Gate};
use super::state::{RecentCounters, Shared, View};

/// Stop reading from a client that does not read its replies once this much is waiting.
const HIGH_WATER: usize = 1 << 20;
const READ_CHUNK: usize = 64 << 10;
/// How long a connection closing on a bad frame may spend writing the replies it owes.
const LINGER: Duration = Duration::from_secs(1);

/// The reply name of query_config, built once.
const QUERY_CONFIG_ACK: &str = "RPC_CM_QUERY_PARTITION_CONFIG_BY_INDEX_ACK";
const NEGOTIATION_ACK: &str = "RPC_NEGOTIATION_ACK";
const UPDATE_APP_ENV_ACK: &str = "RPC_CM_UPDATE_APP_ENV_ACK";
const QUERY_DUPLICATION_ACK: &str = "RPC_CM_QUERY_DUPLICATION_ACK";
const ADD_DUPLICATION_ACK: &str = "RPC_CM_ADD_DUPLICATION_ACK";

/// Binds with `SO_REUSEADDR`, so a restarted meta gets its port back while connections it
/// closed are still in TIME_WAIT.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Accepts connections until `stop` fires (or its sender is dropped). Then it closes the
/// listener and every connection it accepted before returning.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    meta: usize,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    let addr = shared.metas[meta].addr;
    info!(%addr, meta, "MetaServer listening");
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    shared.counters.connection(meta);
                    debug!(%addr, %peer, "connection accepted");
                    conns.spawn(serve(stream, peer, meta, shared.clone()));
                }
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    warn!(%addr, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    conns.shutdown().await;
    info!(%addr, meta, "MetaServer stopped");
}

/// Why a connection ends.
enum End {
    PeerClosed,
    Io(io::Error),
    BadFrame(CodecError),
}

async fn serve(mut stream: TcpStream, peer: SocketAddr, meta: usize, shared: Arc<Shared>) {
    if let Err(e) = stream.set_nodelay(true) {
        debug!(%peer, error = %e, "set_nodelay failed");
    }
    let end = Connection::new(meta, shared.clone()).run(&mut stream).await;
    let addr = shared.metas[meta].addr;
    match end {
        End::PeerClosed => debug!(%addr, %peer, "connection closed by the client"),
        End::Io(e) => debug!(%addr, %peer, error = %e, "connection failed"),
        End::BadFrame(e) => {
            warn!(%addr, %peer, error = %e, kind = e.metric_label(), "bad frame, closing the connection")
        }
    }
}

struct Connection {
    meta: usize,
    shared: Arc<Shared>,
    view: Arc<View>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// Batches of replies held back by the reply delay, oldest first.
    delayed: VecDeque<(Instant, BytesMut)>,
    delayed_bytes: usize,
    counters: RecentCounters,
}

impl Connection {
    fn new(meta: usize, shared: Arc<Shared>) -> Self {
        Connection {
            meta,
            view: shared.view(),
            shared,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::with_capacity(READ_CHUNK),
            delayed: VecDeque::new(),
            delayed_bytes: 0,
            counters: RecentCounters::default(),
        }
    }

    async fn run(mut self, stream: &mut TcpStream) -> End {
        let (mut rd, mut wr) = stream.split();
        let mut reading = true;
        loop {
            let due = self.delayed.front().map(|(at, _)| *at);
            let can_read =
                reading && self.wbuf.len() < HIGH_WATER && self.delayed_bytes < HIGH_WATER;
            if !reading && self.wbuf.is_empty() && due.is_none() {
                return End::PeerClosed;
            }
            if self.rbuf.capacity() - self.rbuf.len() < 4096 {
                self.rbuf.reserve(READ_CHUNK);
            }
            // Some branch is always enabled: reading stops only while replies wait to be written
            // or released, and the loop has returned when nothing is left to do.
            tokio::select! {
                read = rd.read_buf(&mut self.rbuf), if can_read => match read {
                    // The client may have only shut its sending side: answer what it sent.
                    Ok(0) => reading = false,
                    Ok(_) => {
                        if let Err(e) = self.on_bytes() {
                            // Replies owed for the frames before the bad one still go out,
                            // except those held back by a delay.
                            let _ = tokio::time::timeout(LINGER, wr.write_all(&self.wbuf)).await;
                            return End::BadFrame(e);
                        }
                    }
                    Err(e) => return End::Io(e),
                },
                () = sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                    self.release_due();
                }
                written = wr.write_buf(&mut self.wbuf), if !self.wbuf.is_empty() => {
                    if let Err(e) = written {
                        return End::Io(e);
                    }
                }
            }
        }
    }

    /// Answers every whole frame in the read buffer.
    fn on_bytes(&mut self) -> Result<(), CodecError> {
        if self.shared.version() != self.view.version {
            self.view = self.shared.view();
        }
        let slot = &self.shared.metas[self.meta];
        let not_active = slot.not_active.load(Ordering::Relaxed);
        let delay = slot.delay_ms.load(Ordering::Relaxed);
        let mut held = BytesMut::new();
        let out = if delay == 0 {
            &mut self.wbuf
        } else {
            &mut held
        };
        let mut result = Ok(());
        let mut requests = 0;
        loop {
            match codec::decode_request(&mut self.rbuf, DEFAULT_MAX_REQUEST_FRAME) {
                Ok(Some(frame)) => {
                    requests += 1;
                    let (shared, view) = (&self.shared, &self.view);
                    let counters = &mut self.counters;
                    if let Err(e) =
                        answer(shared, view, counters, self.meta, not_active, &frame, out)
                    {
                        result = Err(e);
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        // Counted before any of the replies is written, so a client that has its reply can
        // rely on the counters.
        self.shared.counters.requests(self.meta, requests);
        if result.is_err() {
            self.shared.counters.malformed();
        }
        if !held.is_empty() {
            self.delayed_bytes += held.len();
            let at = Instant::now() + Duration::from_millis(delay);
            self.delayed.push_back((at, held));
        }
        result
    }

    /// Moves the delayed batches whose time has come to the write buffer. The delay is fixed per
    /// meta, so the queue is in deadline order unless the delay was just shortened; then newer
    /// batches wait for older ones, which only makes them later.
    fn release_due(&mut self) {
        let now = Instant::now();
        while let Some((at, _)) = self.delayed.front() {
            if *at > now {
                break;
            }
            if let Some((_, batch)) = self.delayed.pop_front() {
                self.delayed_bytes -= batch.len();
                self.wbuf.extend_from_slice(&batch);
            }
        }
    }
}

/// Appends the reply to one request to `out`; an error means the request is malformed.
fn answer(
    shared: &Arc<Shared>,
    view: &View,
    counters: &mut RecentCounters,
    meta: usize,
    not_active: bool,
    frame: &RequestFrame,
    out: &mut BytesMut,
) -> Result<(), CodecError> {
    let name = frame.name();
    let seqid = frame.seqid();
    counters.rpc(&shared.counters, name);
    trace!(meta, rpc = name, seqid, "request");
    let reply = match name {
        rpc::QUERY_CONFIG => {
            let req = QueryCfgRequest::from_args(&frame.args)?;
            counters.table(&shared.counters, &req.app_name);
            let body = if not_active {
                shared.bodies.not_active.clone()
            } else if view.leader != Some(meta) {
                view.forward.clone()
            } else {
                match view.tables.get(&req.app_name) {
                    Some(table) => table.body_for(req.partition_indices.as_deref()),
                    None => shared.bodies.not_found.clone(),
                }
            };
            Some((QUERY_CONFIG_ACK, body))
        }
        rpc::NEGOTIATION => {
            // Decoded only to hold the client to the protocol; any step gets "auth disabled".
            NegotiationRequest::from_args(&frame.args)?;
            Some((NEGOTIATION_ACK, shared.bodies.negotiation.clone()))
        }
        rpc::UPDATE_APP_ENV => {
            let gate = Gate::of(not_active, view.leader == Some(meta));
            let body = meta_rpc::update_app_env_body(shared, gate, &frame.args)?;
            Some((UPDATE_APP_ENV_ACK, body))
        }
        rpc::QUERY_DUPLICATION => {
            let gate = Gate::of(not_active, view.leader == Some(meta));
            let body = meta_rpc::query_duplication_body(shared, gate, &frame.args)?;
            Some((QUERY_DUPLICATION_ACK, body))
        }
        rpc::ADD_DUPLICATION => {
            let gate = Gate::of(not_active, view.leader == Some(meta));
            let body = meta_rpc::add_duplication_body(shared, gate, &frame.args)?;
            Some((ADD_DUPLICATION_ACK, body))
        }
        _ => None,
    };
    // A one-way call expects no reply.
    if frame.message.kind == MessageKind::Oneway {
        return Ok(());
    }
    match reply {
        Some((ack, body)) => codec::encode_reply(out, ErrorCode::OK.as_str(), ack, seqid, &body),
        None => codec::encode_reply(
            out,
            ErrorCode::HANDLER_NOT_FOUND.as_str(),
            &rpc::ack_name(name),
            seqid,
            &[],
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precomputed_reply_names_are_the_ack_names() {
        assert_eq!(QUERY_CONFIG_ACK, rpc::ack_name(rpc::QUERY_CONFIG));
        assert_eq!(NEGOTIATION_ACK, rpc::ack_name(rpc::NEGOTIATION));
        assert_eq!(UPDATE_APP_ENV_ACK, rpc::ack_name(rpc::UPDATE_APP_ENV));
        assert_eq!(QUERY_DUPLICATION_ACK, rpc::ack_name(rpc::QUERY_DUPLICATION));
        assert_eq!(ADD_DUPLICATION_ACK, rpc::ack_name(rpc::ADD_DUPLICATION));
    }
}
