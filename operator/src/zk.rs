//! The ZooKeeper side of the operator: reads a table's znode and writes it with compare-and-set.
//!
//! One [`ZkStore`] per zone. It keeps one session and builds a new one when the old one reached
//! a terminal state (expired, closed): a dead `zookeeper_client::Client` never recovers. Every
//! request runs under a timeout, because requests issued while disconnected wait for the
//! connection instead of failing.
//!
//! Every write names the version it was computed from. A write that loses a race comes back as
//! [`ZkError::LostRace`]; the reconciler then reads again and decides again.
//!
//! The reconciler and the drift watch use a zone's records through [`Records`], so that tests
//! can put an in-memory store in ZooKeeper's place.
//!
//! While the ensemble is unreachable, a failed attempt to start a session is remembered for
//! [`CONNECT_HOLD_OFF`]: the requests queued behind it fail at once with the same reason instead
//! of each waiting out a connect timeout of its own (200 routes would take 200 timeouts).

use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use metaproxy::zk_auth::{self, ZkAuth};
use thiserror::Error;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use zookeeper_client as zkc;

#[cfg(test)]
pub mod memory;

/// How long a failed attempt to start a session answers for the requests that follow it.
pub const CONNECT_HOLD_OFF: Duration = Duration::from_secs(1);

/// What a watch below a zone root reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The znode at this path was created, changed or deleted.
    Node(String),
}

/// A zone's route records: read, compare-and-set writes, and a watch for outside changes.
pub trait Records: Send + Sync {
    /// The znode at `path`, or `None` when it does not exist.
    fn read<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Option<Znode>, ZkError>>;
    /// Creates `path` (and missing parents) holding `data`; the new version (0).
    /// [`ZkError::LostRace`] when it exists already.
    fn create<'a>(&'a self, path: &'a str, data: &'a [u8]) -> BoxFuture<'a, Result<i32, ZkError>>;
    /// Replaces the data of `path` if it is still at `version`; the new version.
    fn set<'a>(
        &'a self,
        path: &'a str,
        data: &'a [u8],
        version: i32,
    ) -> BoxFuture<'a, Result<i32, ZkError>>;
    /// Deletes `path` if it is still at `version`; gone already is fine.
    fn delete<'a>(&'a self, path: &'a str, version: i32) -> BoxFuture<'a, Result<(), ZkError>>;
    /// The names of the znodes right below `root`; none when it does not exist.
    fn children<'a>(&'a self, root: &'a str) -> BoxFuture<'a, Result<Vec<String>, ZkError>>;
    /// Every change below `root` (created when missing), until the session ends (the stream
    /// ends; watch again).
    fn watch<'a>(
        &'a self,
        root: &'a str,
    ) -> BoxFuture<'a, Result<BoxStream<'static, Change>, ZkError>>;
}

/// The data of a znode and the version it was read at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Znode {
    pub data: Vec<u8>,
    pub version: i32,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ZkError {
    #[error("ZooKeeper {hosts} is unreachable: {reason}")]
    Unavailable { hosts: String, reason: String },
    #[error("ZooKeeper {hosts} did not answer {op} {path} within {after:?}")]
    Timeout {
        hosts: String,
        op: &'static str,
        path: String,
        after: Duration,
    },
    #[error("znode {path} changed while it was being written")]
    LostRace { path: String },
    #[error("ZooKeeper refused {op} {path}: {reason}")]
    Refused {
        op: &'static str,
        path: String,
        reason: String,
    },
}

impl ZkError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            ZkError::Unavailable { .. } => "zookeeper_unavailable",
            ZkError::Timeout { .. } => "zookeeper_timeout",
            ZkError::LostRace { .. } => "lost_race",
            ZkError::Refused { .. } => "zookeeper_refused",
        }
    }
}

/// Session and request timeouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZkTimeouts {
    pub session: Duration,
    pub request: Duration,
}

impl Default for ZkTimeouts {
    fn default() -> Self {
        ZkTimeouts {
            session: Duration::from_secs(10),
            request: Duration::from_secs(5),
        }
    }
}

/// Who the operator is to ZooKeeper, and who may read what it writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ZkAccess {
    /// The operator's digest credentials (`--zk-auth-file`); `None`: anonymous.
    pub auth: Option<ZkAuth>,
    /// The proxies' digest identity, `user:BASE64(SHA1(user:password))`
    /// (`--zk-reader-digest`); `None`: anyone may read.
    pub reader: Option<String>,
}

/// The ACL of every znode the operator creates, records and their parents alike:
///
/// | operator authenticated | reader identity | ACL |
/// |---|---|---|
/// | no | (refused by the configuration) | `world:anyone` all (no ACL) |
/// | yes | none | the operator's identity all, `world:anyone` read |
/// | yes | `user:HASH` | the operator's identity all, `digest:user:HASH` read |
///
/// The operator's identity is ZooKeeper's `auth` scheme: whatever the session authenticated
/// as, so the operator's password is never written into an ACL.
pub fn record_acls(authenticated: bool, reader: Option<&str>) -> Vec<zkc::Acl> {
    if !authenticated {
        return zkc::Acls::anyone_all().to_vec();
    }
    let read = match reader {
        Some(id) => zkc::AuthId::new("digest", id),
        None => zkc::AuthId::anyone(),
    };
    vec![
        zkc::Acl::new(zkc::Permission::ALL, zkc::AuthId::authed()),
        zkc::Acl::new(zkc::Permission::READ, read),
    ]
}

/// An ACL entry as ZooKeeper's CLI shows it: `scheme:id:PERMISSIONS`.
pub fn show_acl(acl: &zkc::Acl) -> String {
    format!(
        "{}:{}:{}",
        acl.auth_id().scheme(),
        acl.auth_id().id(),
        acl.permission()
    )
}

/// Reads and writes the records of one zone.
pub struct ZkStore {
    hosts: String,
    timeouts: ZkTimeouts,
    auth: Option<ZkAuth>,
    acls: Vec<zkc::Acl>,
    client: Mutex<Session>,
}

/// The session, or why the last attempt to start one failed and when.
#[derive(Default)]
struct Session {
    client: Option<zkc::Client>,
    failed: Option<(Instant, ZkError)>,
}

impl ZkStore {
    /// A store for `hosts`; it connects on first use.
    pub fn new(hosts: impl Into<String>, timeouts: ZkTimeouts, access: &ZkAccess) -> Self {
        ZkStore {
            hosts: hosts.into(),
            timeouts,
            auth: access.auth.clone(),
            acls: record_acls(access.auth.is_some(), access.reader.as_deref()),
            client: Mutex::new(Session::default()),
        }
    }

    fn create_options(&self) -> zkc::CreateOptions<'_> {
        zkc::CreateMode::Persistent.with_acls(zkc::Acls::new(&self.acls))
    }

    pub fn hosts(&self) -> &str {
        &self.hosts
    }

    /// A live client: the cached one, or a new session when there is none or it is dead.
    async fn client(&self) -> Result<zkc::Client, ZkError> {
        let mut session = self.client.lock().await;
        if let Some(c) = session.client.as_ref() {
            if !c.state().is_terminated() {
                return Ok(c.clone());
            }
            warn!(hosts = %self.hosts, state = ?c.state(), "ZooKeeper session ended; starting a new one");
            session.client = None;
        }
        if let Some((at, e)) = &session.failed
            && at.elapsed() < CONNECT_HOLD_OFF
        {
            return Err(e.clone());
        }
        let mut connector = zkc::Client::connector().with_session_timeout(self.timeouts.session);
        if let Some(auth) = &self.auth {
            connector = connector.with_auth(zk_auth::SCHEME, &auth.auth_bytes());
        }
        let connect = connector.connect(&self.hosts);
        // The connector retries until about one session timeout; bound it in case it does not.
        let limit = self.timeouts.session + self.timeouts.request;
        let client = match tokio::time::timeout(limit, connect).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                let e = self.unavailable(e.to_string());
                session.failed = Some((Instant::now(), e.clone()));
                return Err(e);
            }
            Err(_) => {
                let e = self.unavailable(format!("no session within {limit:?}"));
                session.failed = Some((Instant::now(), e.clone()));
                return Err(e);
            }
        };
        info!(hosts = %self.hosts, session = ?client.session_id(), "ZooKeeper session established");
        session.client = Some(client.clone());
        session.failed = None;
        Ok(client)
    }

    fn unavailable(&self, reason: String) -> ZkError {
        ZkError::Unavailable {
            hosts: self.hosts.clone(),
            reason,
        }
    }

    /// Runs one request under the request timeout, dropping a session that died under it.
    async fn run<T>(
        &self,
        op: &'static str,
        path: &str,
        request: impl Future<Output = Result<T, zkc::Error>>,
    ) -> Result<Result<T, zkc::Error>, ZkError> {
        match tokio::time::timeout(self.timeouts.request, request).await {
            Ok(Err(
                e
                @ (zkc::Error::SessionExpired | zkc::Error::ClientClosed | zkc::Error::AuthFailed),
            )) => {
                self.forget_session().await;
                Err(self.unavailable(e.to_string()))
            }
            Ok(Err(
                e @ (zkc::Error::ConnectionLoss | zkc::Error::Custom(_) | zkc::Error::Timeout),
            )) => Err(self.unavailable(e.to_string())),
            Ok(result) => Ok(result),
            Err(_) => Err(ZkError::Timeout {
                hosts: self.hosts.clone(),
                op,
                path: path.to_owned(),
                after: self.timeouts.request,
            }),
        }
    }

    async fn forget_session(&self) {
        let mut session = self.client.lock().await;
        if session
            .client
            .as_ref()
            .is_some_and(|c| c.state().is_terminated())
        {
            session.client = None;
        }
    }

    fn refused(op: &'static str, path: &str, e: zkc::Error) -> ZkError {
        ZkError::Refused {
            op,
            path: path.to_owned(),
            reason: e.to_string(),
        }
    }

    /// The znode at `path`, or `None` when it does not exist.
    pub async fn read(&self, path: &str) -> Result<Option<Znode>, ZkError> {
        let client = self.client().await?;
        match self.run("get", path, client.get_data(path)).await? {
            Ok((data, stat)) => Ok(Some(Znode {
                data,
                version: stat.version,
            })),
            Err(zkc::Error::NoNode) => Ok(None),
            Err(e) => Err(Self::refused("get", path, e)),
        }
    }

    /// Creates `path` with `data`, creating missing parents. Returns the new version (0).
    /// [`ZkError::LostRace`] when someone else created it first.
    pub async fn create(&self, path: &str, data: &[u8]) -> Result<i32, ZkError> {
        let client = self.client().await?;
        let opts = self.create_options();
        for attempt in 0..2 {
            match self
                .run("create", path, client.create(path, data, &opts))
                .await?
            {
                Ok((stat, _)) => return Ok(stat.version),
                Err(zkc::Error::NodeExists) => {
                    return Err(ZkError::LostRace {
                        path: path.to_owned(),
                    });
                }
                Err(zkc::Error::NoNode) if attempt == 0 => {
                    let parent = parent_of(path);
                    debug!(%parent, "creating parent znodes");
                    match self
                        .run("mkdir", parent, client.mkdir(parent, &opts))
                        .await?
                    {
                        Ok(()) => {}
                        Err(e) => return Err(Self::refused("mkdir", parent, e)),
                    }
                }
                Err(e) => return Err(Self::refused("create", path, e)),
            }
        }
        // The parent vanished again between mkdir and create: someone is deleting the root.
        Err(ZkError::LostRace {
            path: path.to_owned(),
        })
    }

    /// Replaces the data of `path` if it is still at `version`. Returns the new version.
    pub async fn set(&self, path: &str, data: &[u8], version: i32) -> Result<i32, ZkError> {
        let client = self.client().await?;
        match self
            .run("set", path, client.set_data(path, data, Some(version)))
            .await?
        {
            Ok(stat) => Ok(stat.version),
            Err(zkc::Error::BadVersion | zkc::Error::NoNode) => Err(ZkError::LostRace {
                path: path.to_owned(),
            }),
            Err(e) => Err(Self::refused("set", path, e)),
        }
    }

    /// Deletes `path` if it is still at `version`. A node already gone is fine.
    pub async fn delete(&self, path: &str, version: i32) -> Result<(), ZkError> {
        let client = self.client().await?;
        match self
            .run("delete", path, client.delete(path, Some(version)))
            .await?
        {
            Ok(()) | Err(zkc::Error::NoNode) => Ok(()),
            Err(zkc::Error::BadVersion) => Err(ZkError::LostRace {
                path: path.to_owned(),
            }),
            Err(e) => Err(Self::refused("delete", path, e)),
        }
    }

    /// The names of the znodes right below `root`; none when it does not exist.
    pub async fn children(&self, root: &str) -> Result<Vec<String>, ZkError> {
        let client = self.client().await?;
        let path = if root.is_empty() { "/" } else { root };
        match self.run("list", path, client.list_children(path)).await? {
            Ok(names) => Ok(names),
            Err(zkc::Error::NoNode) => Ok(Vec::new()),
            Err(e) => Err(Self::refused("list", path, e)),
        }
    }

    /// A persistent recursive watch on `root`: every change below it, for noticing records
    /// changed behind the operator's back. The root is created when missing.
    pub async fn watch_below(&self, root: &str) -> Result<zkc::PersistentWatcher, ZkError> {
        let client = self.client().await?;
        if !root.is_empty() {
            let opts = self.create_options();
            if let Err(e) = self.run("mkdir", root, client.mkdir(root, &opts)).await? {
                return Err(Self::refused("mkdir", root, e));
            }
        }
        let path = if root.is_empty() { "/" } else { root };
        match self
            .run(
                "watch",
                path,
                client.watch(path, zkc::AddWatchMode::PersistentRecursive),
            )
            .await?
        {
            Ok(w) => Ok(w),
            Err(e) => Err(Self::refused("watch", path, e)),
        }
    }
}

impl Records for ZkStore {
    fn read<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Option<Znode>, ZkError>> {
        ZkStore::read(self, path).boxed()
    }

    fn create<'a>(&'a self, path: &'a str, data: &'a [u8]) -> BoxFuture<'a, Result<i32, ZkError>> {
        ZkStore::create(self, path, data).boxed()
    }

    fn set<'a>(
        &'a self,
        path: &'a str,
        data: &'a [u8],
        version: i32,
    ) -> BoxFuture<'a, Result<i32, ZkError>> {
        ZkStore::set(self, path, data, version).boxed()
    }

    fn delete<'a>(&'a self, path: &'a str, version: i32) -> BoxFuture<'a, Result<(), ZkError>> {
        ZkStore::delete(self, path, version).boxed()
    }

    fn children<'a>(&'a self, root: &'a str) -> BoxFuture<'a, Result<Vec<String>, ZkError>> {
        ZkStore::children(self, root).boxed()
    }

    fn watch<'a>(
        &'a self,
        root: &'a str,
    ) -> BoxFuture<'a, Result<BoxStream<'static, Change>, ZkError>> {
        async move {
            let watcher = self.watch_below(root).await?;
            Ok(changes(watcher).boxed())
        }
        .boxed()
    }
}

/// The watcher's events as changes, until the session ends or reconnects.
fn changes(watcher: zkc::PersistentWatcher) -> impl futures::Stream<Item = Change> {
    futures::stream::unfold(watcher, |mut watcher| async move {
        loop {
            let event = watcher.changed().await;
            match event.event_type {
                zkc::EventType::Session if event.session_state.is_terminated() => {
                    warn!(state = ?event.session_state, "ZooKeeper session ended under a watch");
                    return None;
                }
                // A reconnected session has lost the watch: zookeeper-client 0.11.2 does not set
                // persistent watches again (its SetWatches leaves them out) and a server keeps
                // watches per connection. The stream ends, and its reader watches again.
                zkc::EventType::Session
                    if event.session_state == zkc::SessionState::SyncConnected =>
                {
                    return None;
                }
                zkc::EventType::Session => continue,
                _ => return Some((Change::Node(event.path), watcher)),
            }
        }
    })
}

fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acls_of_what_the_operator_creates() {
        let id = "proxy:Zu9sYQ+4rhSqYVnEqbbxbAWhQqg=";
        let show = |acls: Vec<zkc::Acl>| acls.iter().map(show_acl).collect::<Vec<_>>();
        let cases: &[(bool, Option<&str>, &[&str])] = &[
            (false, None, &["world:anyone:ALL"]),
            (true, None, &["auth::ALL", "world:anyone:READ"]),
            (true, Some(id), &["auth::ALL", &format!("digest:{id}:READ")]),
        ];
        for (authenticated, reader, want) in cases {
            assert_eq!(
                show(record_acls(*authenticated, *reader)),
                *want,
                "{authenticated} {reader:?}"
            );
        }
    }

    #[test]
    fn parents() {
        assert_eq!(parent_of("/a/b/c"), "/a/b");
        assert_eq!(parent_of("/a"), "/");
    }
}
