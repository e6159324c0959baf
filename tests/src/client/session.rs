//! The connections to replica servers: one [`Connection`] per address (calls pipelined on it,
//! replies matched by seqid, a deadline per call, a new connection on the next call after the old
//! one failed), each call carrying the header a client writes for its partition.
//!
//! A refused connection fails the call at once (the clients' `ERR_SESSION_RESET`); a lost one
//! fails every call in flight on it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pegasus_rpc::client::{ClientOptions, Connection};

/// Connections by replica address, shared by every caller of one client.
#[derive(Default)]
pub struct SessionPool {
    sessions: Mutex<HashMap<SocketAddr, Arc<Connection>>>,
    connect_timeout: Duration,
}

impl SessionPool {
    pub fn new(connect_timeout: Duration) -> Self {
        SessionPool {
            sessions: Mutex::new(HashMap::new()),
            connect_timeout,
        }
    }

    pub fn get(&self, addr: SocketAddr) -> Arc<Connection> {
        let opts = ClientOptions {
            connect_timeout: self.connect_timeout,
            ..ClientOptions::default()
        };
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(addr)
            .or_insert_with(|| {
                Arc::new(Connection::with_role(
                    addr.to_string(),
                    opts,
                    "replica server",
                ))
            })
            .clone()
    }

    /// Closes every connection.
    pub fn clear(&self) {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}
