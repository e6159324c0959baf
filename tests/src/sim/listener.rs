//! The listener and connection loop every simulated server (MetaServer, replica node) runs:
//! request frames in, reply frames out; what answers them is a [`Responder`].
//!
//! Each connection is one task. It reads whatever the socket has, has the responder answer every
//! whole frame in it, appending all their replies to one write buffer, and writes that with one
//! call, so pipelined requests cost one read and one write per batch. With a reply delay set, a
//! batch's replies wait in a queue until their time comes; requests keep being read meanwhile, so
//! delays overlap rather than add up. A frame the codec rejects ends its connection only.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use pegasus_rpc::codec::CodecError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};
use tracing::{debug, info, warn};

/// Stop reading from a client that does not read its replies once this much is waiting.
const HIGH_WATER: usize = 1 << 20;
const READ_CHUNK: usize = 64 << 10;
/// How long a connection closing on a bad frame may spend writing the replies it owes.
const LINGER: Duration = Duration::from_secs(1);

/// What answers the requests of one connection.
pub(crate) trait Responder: Send + 'static {
    /// How long the replies to the bytes just read are held back (zero: written at once).
    fn reply_delay(&self) -> Duration {
        Duration::ZERO
    }

    /// Answers every whole frame at the front of `rbuf`, appending the replies to `out`. An
    /// error (a frame the codec rejects) ends the connection once the replies before it are out.
    fn answer(&mut self, rbuf: &mut BytesMut, out: &mut BytesMut) -> Result<(), CodecError>;
}

/// Which server a listener is, for its logs.
#[derive(Clone, Copy)]
pub(crate) struct Label {
    /// "MetaServer", "replica server".
    pub role: &'static str,
    /// Its index among the servers of its role.
    pub index: usize,
    pub addr: SocketAddr,
}

/// Binds with `SO_REUSEADDR`, so a restarted server gets its port back while connections it
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

/// Accepts connections until `stop` fires (or its sender is dropped), serving each with the
/// responder `accepted` makes for it. Then it closes the listener and every connection it
/// accepted before returning.
pub(crate) async fn accept_loop<R: Responder>(
    listener: TcpListener,
    label: Label,
    mut stop: oneshot::Receiver<()>,
    mut accepted: impl FnMut() -> R,
) {
    let Label { role, index, addr } = label;
    info!(%addr, index, "{role} listening");
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            result = listener.accept() => match result {
                Ok((stream, peer)) => {
                    debug!(%addr, %peer, "{role} connection accepted");
                    conns.spawn(serve(stream, peer, label, accepted()));
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
    info!(%addr, index, "{role} stopped");
}

/// Why a connection ends.
enum End {
    PeerClosed,
    Io(io::Error),
    BadFrame(CodecError),
}

async fn serve<R: Responder>(mut stream: TcpStream, peer: SocketAddr, label: Label, responder: R) {
    if let Err(e) = stream.set_nodelay(true) {
        debug!(%peer, error = %e, "set_nodelay failed");
    }
    let end = Connection::new(responder).run(&mut stream).await;
    let Label { role, addr, .. } = label;
    match end {
        End::PeerClosed => debug!(%addr, %peer, "{role} connection closed by the client"),
        End::Io(e) => debug!(%addr, %peer, error = %e, "{role} connection failed"),
        End::BadFrame(e) => {
            warn!(%addr, %peer, error = %e, kind = e.metric_label(), "bad frame, closing the {role} connection")
        }
    }
}

struct Connection<R> {
    responder: R,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// Batches of replies held back by the reply delay, oldest first.
    delayed: VecDeque<(Instant, BytesMut)>,
    delayed_bytes: usize,
}

impl<R: Responder> Connection<R> {
    fn new(responder: R) -> Self {
        Connection {
            responder,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::with_capacity(READ_CHUNK),
            delayed: VecDeque::new(),
            delayed_bytes: 0,
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

    /// Answers every whole frame in the read buffer, now or after the reply delay.
    fn on_bytes(&mut self) -> Result<(), CodecError> {
        let delay = self.responder.reply_delay();
        if delay.is_zero() {
            return self.responder.answer(&mut self.rbuf, &mut self.wbuf);
        }
        let mut held = BytesMut::new();
        let result = self.responder.answer(&mut self.rbuf, &mut held);
        if !held.is_empty() {
            self.delayed_bytes += held.len();
            self.delayed.push_back((Instant::now() + delay, held));
        }
        result
    }

    /// Moves the delayed batches whose time has come to the write buffer. The delay is fixed per
    /// server, so the queue is in deadline order unless the delay was just shortened; then newer
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
