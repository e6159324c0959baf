//! A Pegasus data client, enough for the load tool and the simulator's duplication: it reads and
//! writes a table the way the official clients do (`docs/protocol.md` §15).
//!
//! What flows through it: an operation's key is hashed (§15.5) to a partition of the table's
//! routing ([`route::Router`], from query_config through any MetaServer address, the proxy
//! included); the request goes to that partition's primary over a pipelined connection
//! ([`pegasus_rpc::client::Connection`], kept by [`session::SessionPool`]) with the header a
//! Go/Python client writes (v0: gpid, thread_hash, partition_hash) or the Java one (v1); the
//! reply comes back by seqid.
//!
//! Errors follow the Java client (§15.6), the one that retries within the operation's budget:
//!
//! | outcome of an attempt | reaction |
//! |---|---|
//! | rpc `ERR_OBJECT_NOT_FOUND`, `ERR_INVALID_STATE`, `ERR_PARENT_PARTITION_MISUSED` | re-query the routing (at most once per `requery_interval`), retry |
//! | connection refused or lost (`ERR_SESSION_RESET`) | the same |
//! | no reply before the operation's deadline | the operation fails with `ERR_TIMEOUT`; no re-query |
//! | any other rpc-level error | the operation fails at once |
//!
//! A retry waits for new routing up to [`ClientOptions::retry_wait`] (HEAD's Java re-sends at
//! once, v2.5.0 waits `timeout/3`), then goes to the primary of the routing held then. Unlike
//! Java, a retry recomputes the gpid from that routing, so after a switch to a cluster where the
//! table has another app id the retries land too.
//!
//! Replica addresses come from replies, so by default only loopback ones are dialled
//! ([`ClientOptions::allow_non_loopback`]).

pub mod route;
pub mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pegasus_rpc::client::CallError;
use pegasus_rpc::codec::key::{self, thread_hash};
use pegasus_rpc::codec::{
    Blob, ErrorCode, HeaderV0, Payload, ReadResponse, ReplyFrame, RequestHeader, RequestMetaV1,
    UpdateRequest, UpdateResponse, rocksdb, rpc,
};
use thiserror::Error;
use tokio::time::Instant;

use route::{RouteError, Router};
use session::SessionPool;

/// Which THFT header data requests carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HeaderKind {
    /// The Go, Python and Node.js clients' 48 bytes.
    #[default]
    V0,
    /// The Java client's, with a request_meta.
    V1,
}

#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// The budget of one operation, retries included (Java's default: 1 s).
    pub op_timeout: Duration,
    /// The least time between two queries for the table's routing (Java: op_timeout / 3).
    pub requery_interval: Duration,
    /// The longest a retry waits for new routing before trying again.
    pub retry_wait: Duration,
    pub connect_timeout: Duration,
    pub header: HeaderKind,
    /// Dial replica addresses that are not loopback.
    pub allow_non_loopback: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            op_timeout: Duration::from_secs(1),
            requery_interval: Duration::from_millis(333),
            retry_wait: Duration::from_millis(50),
            connect_timeout: Duration::from_millis(500),
            header: HeaderKind::V0,
            allow_non_loopback: false,
        }
    }
}

/// Why an operation failed, after its retries.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum OpError {
    /// No reply before the operation's deadline.
    #[error("ERR_TIMEOUT")]
    Timeout,
    /// The last attempt's rpc-level error.
    #[error("rpc-level {0}")]
    Rpc(ErrorCode),
    /// The last attempt found no connection (`ERR_SESSION_RESET`).
    #[error("ERR_SESSION_RESET: {0}")]
    SessionReset(String),
    /// The reply's application-level error (a rocksdb code, §15.2).
    #[error("storage error {0}")]
    App(i32),
    /// No routing for the table.
    #[error("{0}")]
    Route(#[from] RouteError),
    /// The partition has no primary in the routing.
    #[error("partition {0} has no primary")]
    NoPrimary(i32),
    /// The routing names a replica address this client will not dial.
    #[error("refusing to dial {0}: not a loopback address (allow it explicitly)")]
    NonLoopback(SocketAddr),
    /// The reply did not decode.
    #[error("bad reply: {0}")]
    BadReply(String),
    /// The key cannot be encoded.
    #[error("bad key: {0}")]
    BadKey(String),
}

impl OpError {
    /// A short, fixed label for reports (`rpc:ERR_INVALID_STATE`, `timeout`, ...).
    pub fn kind(&self) -> String {
        match self {
            OpError::Timeout => "timeout".into(),
            OpError::Rpc(e) => format!("rpc:{e}"),
            OpError::SessionReset(_) => "session_reset".into(),
            OpError::App(code) => format!("app:{code}"),
            OpError::Route(RouteError::Refused { err, .. }) => format!("route:{err}"),
            OpError::Route(RouteError::Unavailable { .. }) => "route:unavailable".into(),
            OpError::Route(RouteError::NoMetaServers { .. }) => "route:no_meta_servers".into(),
            OpError::NoPrimary(_) => "no_primary".into(),
            OpError::NonLoopback(_) => "non_loopback".into(),
            OpError::BadReply(_) => "bad_reply".into(),
            OpError::BadKey(_) => "bad_key".into(),
        }
    }
}

/// Every attempt that failed and was followed by a re-query (when, and its error kind), for
/// reports.
pub type AttemptLog = Arc<std::sync::Mutex<Vec<(Instant, String)>>>;

/// A client for one table.
pub struct TableClient {
    router: Arc<Router>,
    sessions: SessionPool,
    opts: ClientOptions,
    attempts: AttemptLog,
}

impl TableClient {
    /// A client of `table` through the MetaServers (or proxy) at `metas`, which must not be
    /// empty.
    pub fn new(table: &str, metas: &[String], opts: ClientOptions) -> Result<Self, RouteError> {
        Ok(TableClient {
            router: Arc::new(Router::new(table, metas, opts.requery_interval)?),
            sessions: SessionPool::new(opts.connect_timeout),
            opts,
            attempts: AttemptLog::default(),
        })
    }

    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// The failed attempts, with when and why.
    pub fn attempt_log(&self) -> AttemptLog {
        self.attempts.clone()
    }

    fn note_attempt(&self, kind: String) {
        self.attempts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((Instant::now(), kind));
    }

    /// Sends `name(args)` for a key of hash `hash` and returns the reply with rpc-level
    /// `ERR_OK`, retrying as the module docs say.
    pub async fn call(&self, name: &str, hash: u64, args: Bytes) -> Result<ReplyFrame, OpError> {
        let deadline = Instant::now() + self.opts.op_timeout;
        loop {
            let config = tokio::time::timeout_at(deadline, self.router.config(deadline))
                .await
                .map_err(|_| OpError::Timeout)??;
            let version = config.version;
            let failure = match config.partition_for(hash) {
                None => OpError::NoPrimary(-1),
                Some(pc) => match pc.primary.to_socket() {
                    None => OpError::NoPrimary(pc.pid.partition_index),
                    Some(primary) => {
                        let primary = SocketAddr::V4(primary);
                        if !self.opts.allow_non_loopback && !primary.ip().is_loopback() {
                            return Err(OpError::NonLoopback(primary));
                        }
                        let header = self.header(config.app_id, pc.pid.partition_index, hash);
                        let session = self.sessions.get(primary);
                        match session
                            .call_with_header(header, name, args.clone(), deadline)
                            .await
                        {
                            Ok(reply) if reply.rpc_error.is_ok() => return Ok(reply),
                            Ok(reply) => {
                                let e = reply.rpc_error;
                                let requery = e == ErrorCode::OBJECT_NOT_FOUND
                                    || e == ErrorCode::INVALID_STATE
                                    || e == ErrorCode::PARENT_PARTITION_MISUSED;
                                if !requery {
                                    return Err(OpError::Rpc(e));
                                }
                                OpError::Rpc(e)
                            }
                            Err(CallError::Timeout { .. }) => return Err(OpError::Timeout),
                            Err(e) => OpError::SessionReset(e.to_string()),
                        }
                    }
                },
            };
            self.note_attempt(failure.kind());
            self.router.requery();
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(failure);
            }
            self.router
                .changed_since(version, self.opts.retry_wait.min(left))
                .await;
            if Instant::now() >= deadline {
                return Err(failure);
            }
        }
    }

    fn header(&self, app_id: i32, pidx: i32, hash: u64) -> RequestHeader {
        let timeout = i32::try_from(self.opts.op_timeout.as_millis()).unwrap_or(i32::MAX);
        match self.opts.header {
            HeaderKind::V0 => RequestHeader::V0(HeaderV0 {
                app_id,
                partition_index: pidx,
                client_timeout: timeout,
                thread_hash: thread_hash(app_id, pidx),
                partition_hash: hash,
                ..Default::default()
            }),
            HeaderKind::V1 => RequestHeader::V1(RequestMetaV1 {
                app_id: Some(app_id),
                partition_index: Some(pidx),
                client_timeout: Some(timeout),
                partition_hash: Some(hash as i64),
                is_backup_request: Some(false),
            }),
        }
    }

    /// set(hash_key, sort_key, value) with a TTL in seconds (0: none). Returns the decree.
    pub async fn set(
        &self,
        hash_key: &[u8],
        sort_key: &[u8],
        value: &[u8],
        ttl_secs: i32,
    ) -> Result<i64, OpError> {
        let key = storage_key(hash_key, sort_key)?;
        let hash = key::key_hash(&key).map_err(|e| OpError::BadKey(e.to_string()))?;
        let expire = if ttl_secs > 0 {
            let now = crate::sim::storage::Clock::new().pegasus_secs();
            i32::try_from(now)
                .unwrap_or(i32::MAX)
                .saturating_add(ttl_secs)
        } else {
            0
        };
        let req = UpdateRequest {
            key: Blob::from(key),
            value: Blob::from_slice(value),
            expire_ts_seconds: expire,
            ..Default::default()
        };
        let reply = self.call(rpc::RRDB_PUT, hash, req.args_bytes()).await?;
        let resp = UpdateResponse::from_result(&reply.body)
            .map_err(|e| OpError::BadReply(e.to_string()))?;
        if resp.error != rocksdb::OK {
            return Err(OpError::App(resp.error));
        }
        Ok(resp.decree)
    }

    /// get(hash_key, sort_key): `None` when missing or expired.
    pub async fn get(&self, hash_key: &[u8], sort_key: &[u8]) -> Result<Option<Bytes>, OpError> {
        let key = storage_key(hash_key, sort_key)?;
        let hash = key::key_hash(&key).map_err(|e| OpError::BadKey(e.to_string()))?;
        let reply = self
            .call(rpc::RRDB_GET, hash, Blob::from(key).args_bytes())
            .await?;
        let resp =
            ReadResponse::from_result(&reply.body).map_err(|e| OpError::BadReply(e.to_string()))?;
        match resp.error {
            rocksdb::OK => Ok(Some(resp.value.0)),
            rocksdb::NOT_FOUND => Ok(None),
            other => Err(OpError::App(other)),
        }
    }

    /// del(hash_key, sort_key). Returns the decree.
    pub async fn del(&self, hash_key: &[u8], sort_key: &[u8]) -> Result<i64, OpError> {
        let key = storage_key(hash_key, sort_key)?;
        let hash = key::key_hash(&key).map_err(|e| OpError::BadKey(e.to_string()))?;
        let reply = self
            .call(rpc::RRDB_REMOVE, hash, Blob::from(key).args_bytes())
            .await?;
        let resp = UpdateResponse::from_result(&reply.body)
            .map_err(|e| OpError::BadReply(e.to_string()))?;
        if resp.error != rocksdb::OK {
            return Err(OpError::App(resp.error));
        }
        Ok(resp.decree)
    }
}

fn storage_key(hash_key: &[u8], sort_key: &[u8]) -> Result<Vec<u8>, OpError> {
    key::generate_key(hash_key, sort_key).map_err(|e| OpError::BadKey(e.to_string()))
}
