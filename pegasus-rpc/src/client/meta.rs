//! A client for one Pegasus MetaServer: a [`Connection`] whose calls carry the all-zero v0 header
//! every client sends a MetaServer, and the decoded query_config.

use std::net::SocketAddr;

use bytes::BytesMut;
use tokio::time::Instant;

use super::conn::{CallError, ClientOptions, Connection};
use crate::codec::{self, QueryCfgRequest, QueryCfgResponse, ReplyFrame};

/// A client for one MetaServer address (`host:port`; host names are resolved on each connect).
pub struct MetaClient {
    conn: Connection,
}

impl MetaClient {
    pub fn new(addr: impl Into<String>, opts: ClientOptions) -> Self {
        MetaClient {
            conn: Connection::with_role(addr, opts, "MetaServer"),
        }
    }

    pub fn addr(&self) -> &str {
        self.conn.addr()
    }

    /// The socket address of the live connection, if there is one.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.conn.peer()
    }

    /// Whether a live connection exists.
    pub fn is_connected(&self) -> bool {
        self.conn.is_connected()
    }

    /// Sends `name(args)` and waits for the reply until `deadline`. The reply is returned
    /// whatever its rpc-level error; a transport failure or the deadline is an `Err`.
    pub async fn call(
        &self,
        name: &str,
        args: &[u8],
        deadline: Instant,
    ) -> Result<ReplyFrame, CallError> {
        self.conn.call(name, args, deadline).await
    }

    /// query_config for `table`, decoded. An rpc-level error is an `Err`.
    pub async fn query_config(
        &self,
        table: &str,
        deadline: Instant,
    ) -> Result<QueryCfgResponse, CallError> {
        let mut args = BytesMut::new();
        QueryCfgRequest::new(table).to_args(&mut args);
        let reply = self.call(codec::rpc::QUERY_CONFIG, &args, deadline).await?;
        if !reply.rpc_error.is_ok() {
            return Err(CallError::Rpc {
                addr: self.addr().to_owned(),
                error: reply.rpc_error,
            });
        }
        QueryCfgResponse::from_result(&reply.body).map_err(|source| CallError::BadReply {
            addr: self.addr().to_owned(),
            source,
        })
    }

    /// Closes the connection; pending calls fail and the next call connects again.
    pub fn disconnect(&self) {
        self.conn.disconnect();
    }
}
