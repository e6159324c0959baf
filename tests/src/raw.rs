//! A raw Pegasus client connection for tests: request bytes in, reply frames (or their exact
//! bytes) out, every wait bounded by [`WAIT`]. For the simulator's and the proxy's wire tests.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pegasus_rpc::codec::{
    self, DEFAULT_MAX_REPLY_FRAME, ErrorCode, NativeHeader, QueryCfgRequest, QueryCfgResponse,
    ReplyFrame, RequestFrame, native, rpc, wire,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous: the machine may be loaded, and a wait that ends early costs nothing.
pub const WAIT: Duration = Duration::from_secs(20);

/// One client connection.
pub struct RawConn {
    stream: TcpStream,
    buf: BytesMut,
}

impl RawConn {
    /// Connects to `addr`; panics unless it does within [`WAIT`].
    pub async fn connect(addr: SocketAddr) -> RawConn {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connects");
        RawConn {
            stream,
            buf: BytesMut::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// The next reply frame; panics if the connection closes first or none comes within
    /// [`WAIT`].
    pub async fn reply(&mut self) -> ReplyFrame {
        self.try_reply()
            .await
            .expect("a reply before the connection closed")
    }

    /// The next reply frame, or `None` when the peer closed the connection first; panics if
    /// neither happens within [`WAIT`].
    pub async fn try_reply(&mut self) -> Option<ReplyFrame> {
        tokio::time::timeout(WAIT, self.next_reply())
            .await
            .expect("a reply in time")
    }

    /// The next reply frame, or `None` if none comes within `within`; panics if the connection
    /// closes first.
    pub async fn reply_within(&mut self, within: Duration) -> Option<ReplyFrame> {
        tokio::time::timeout(within, self.next_reply())
            .await
            .ok()
            .map(|reply| reply.expect("a reply before the connection closed"))
    }

    async fn next_reply(&mut self) -> Option<ReplyFrame> {
        loop {
            if let Some(frame) =
                codec::decode_reply(&mut self.buf, DEFAULT_MAX_REPLY_FRAME).expect("a valid reply")
            {
                return Some(frame);
            }
            if self.stream.read_buf(&mut self.buf).await.unwrap_or(0) == 0 {
                return None;
            }
        }
    }

    /// The exact bytes of the next reply frame (split off by its length prefix, not decoded).
    pub async fn raw_reply(&mut self) -> Vec<u8> {
        tokio::time::timeout(WAIT, async {
            loop {
                if self.buf.len() >= 4 {
                    let len =
                        u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]])
                            as usize;
                    if self.buf.len() >= len {
                        return self.buf.split_to(len).to_vec();
                    }
                }
                let n = self.stream.read_buf(&mut self.buf).await.expect("read");
                assert!(n > 0, "connection closed while a reply was expected");
            }
        })
        .await
        .expect("a reply in time")
    }

    /// The exact bytes of the next native reply frame (split off by its `body_length`, not
    /// decoded).
    pub async fn raw_native_reply(&mut self) -> Vec<u8> {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(len) = native::announced_len(&self.buf)
                    && self.buf.len() as u64 >= len
                {
                    return self.buf.split_to(len as usize).to_vec();
                }
                let n = self.stream.read_buf(&mut self.buf).await.expect("read");
                assert!(n > 0, "connection closed while a native reply was expected");
            }
        })
        .await
        .expect("a native reply in time")
    }

    /// The next reply as a query_config answer (rpc-level `ERR_OK`, the ACK name), with its
    /// seqid.
    pub async fn query_reply(&mut self) -> (i32, QueryCfgResponse) {
        let frame = self.reply().await;
        assert_eq!(
            frame.rpc_error,
            ErrorCode::OK,
            "query_config never gets an rpc-level error"
        );
        assert_eq!(frame.message.name, rpc::ack_name(rpc::QUERY_CONFIG));
        let resp = QueryCfgResponse::from_result(&frame.body).expect("a query_cfg_response");
        (frame.seqid(), resp)
    }

    /// Sends a v0 query_config for `table` with `seqid` and decodes the answer.
    pub async fn query(&mut self, table: &str, seqid: i32) -> QueryCfgResponse {
        self.send(&query_frame(table, seqid)).await;
        let (got, resp) = self.query_reply().await;
        assert_eq!(got, seqid);
        resp
    }

    /// Whether the peer closed the connection (reads end) within [`WAIT`]; what it sends
    /// meanwhile is dropped.
    pub async fn is_closed(&mut self) -> bool {
        let mut scratch = [0u8; 256];
        tokio::time::timeout(WAIT, async {
            loop {
                match self.stream.read(&mut scratch).await {
                    Ok(0) | Err(_) => return true,
                    Ok(_) => continue,
                }
            }
        })
        .await
        .unwrap_or(false)
    }

    /// The next native reply (header and body); panics if none comes within [`WAIT`] or the
    /// connection closes first.
    pub async fn native_reply(&mut self) -> (NativeHeader, Bytes) {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(reply) = native::decode_frame(&mut self.buf, DEFAULT_MAX_REPLY_FRAME)
                    .expect("a valid native reply")
                {
                    return reply;
                }
                let n = self.stream.read_buf(&mut self.buf).await.expect("read");
                assert!(n > 0, "connection closed while a native reply was expected");
            }
        })
        .await
        .expect("a native reply in time")
    }

    /// Sends `name(args)` in a v0 frame with `seqid` and returns the reply, checking its name and
    /// seqid.
    pub async fn call(&mut self, name: &str, args: &[u8], seqid: i32) -> ReplyFrame {
        let frame = RequestFrame::call_v0(name, seqid, 0, Bytes::copy_from_slice(args));
        self.send(&frame.to_bytes()).await;
        let reply = self.reply().await;
        assert_eq!(
            (&*reply.message.name, reply.seqid()),
            (rpc::ack_name(name).as_str(), seqid)
        );
        reply
    }

    /// Panics unless the peer closes the connection within [`WAIT`].
    pub async fn expect_closed(&mut self) {
        assert!(self.is_closed().await, "the connection is closed in time");
    }

    /// Panics unless the next read from the peer, within [`WAIT`], finds the connection closed
    /// (no more bytes first).
    pub async fn expect_closed_silently(&mut self) {
        let mut scratch = [0u8; 16];
        let closed = tokio::time::timeout(WAIT, self.stream.read(&mut scratch)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "the open connection is closed"
        );
    }
}

/// A native frame of `name(args)` with id `id`, as the C++ client writes it: the args struct's
/// field is 0, the header as `create_request` and `rpc_engine::call` leave it.
pub fn native_frame(name: &str, id: u64, args: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    let mut header = NativeHeader::request(name, id, 5000);
    header.trace_id = 0x1234_5678_9abc_def0;
    header.from_address = codec::RpcAddress(0x7f00_0001_9c40_0001); // 127.0.0.1:40000
    header.encode(args.len(), &mut out);
    out.extend_from_slice(args);
    out.freeze()
}

/// The args of a native query_config for `table` (field 0, as the C++ client writes them).
pub fn native_query_args(table: &str) -> Bytes {
    let mut args = BytesMut::new();
    wire::encode_args(&QueryCfgRequest::new(table), 0, &mut args);
    args.freeze()
}

/// A v0 query_config frame for all partitions of `table`, as the Go client writes it.
pub fn query_frame(table: &str, seqid: i32) -> Bytes {
    query_frame_of(&QueryCfgRequest::new(table), seqid)
}

/// A v0 query_config frame carrying `request`.
pub fn query_frame_of(request: &QueryCfgRequest, seqid: i32) -> Bytes {
    let mut args = BytesMut::new();
    request.to_args(&mut args);
    RequestFrame::call_v0(rpc::QUERY_CONFIG, seqid, 0, args.freeze()).to_bytes()
}
