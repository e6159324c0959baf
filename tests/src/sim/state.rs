//! The state every MetaServer of the simulated cluster shares: the cluster view (tables, leader,
//! the encoded forward reply), each meta's switches (not active, reply delay), and the request
//! counters.
//!
//! Connections read the view once per batch of requests: a control call builds a new view and
//! bumps a version number, and a connection reloads only when the version moved. So a change is
//! seen by every request read after the call returned, and the hot path costs one atomic load.

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pegasus_rpc::codec::{ErrorCode, NegotiationResponse};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, oneshot};
use tokio::task::JoinHandle;

use super::config::DupProgress;
use super::decide::ReplicaMode;
use super::envs::Deny;
use super::storage::Clock;
use super::table::{self, Table};

/// The tables and the leader, as one immutable snapshot.
#[derive(Debug)]
pub(crate) struct View {
    pub version: u64,
    pub tables: HashMap<String, Arc<Table>>,
    /// The same tables by app id, for the replica servers.
    pub by_app: HashMap<i32, Arc<Table>>,
    pub leader: Option<usize>,
    /// What a non-leader answers a query with: it names the leader.
    pub forward: Bytes,
}

/// A running accept loop: the way to stop it and the task to wait for.
pub(crate) struct Running {
    pub stop: oneshot::Sender<()>,
    pub task: JoinHandle<()>,
}

/// One MetaServer's address and switches.
pub(crate) struct MetaSlot {
    /// The bound address (the actual port when port 0 was asked for), reused on restart.
    pub addr: SocketAddr,
    pub not_active: AtomicBool,
    pub delay_ms: AtomicU64,
    /// Whether the listener is open, for the state report.
    pub listening: AtomicBool,
    /// `Some` while listening. An async mutex: stop waits for the accept loop under it.
    pub running: Mutex<Option<Running>>,
}

/// One replica server node: its address, mode, and the app envs it last synced.
pub(crate) struct NodeSlot {
    pub addr: SocketAddrV4,
    mode: AtomicU8,
    /// Whether the listener is open, for the state report.
    pub listening: AtomicBool,
    /// `Some` while listening.
    pub running: Mutex<Option<Running>>,
    /// What `replica.deny_client_request` says per app id, as of this node's last config sync.
    synced: RwLock<Arc<HashMap<i32, Deny>>>,
}

impl NodeSlot {
    pub fn new(addr: SocketAddrV4, mode: ReplicaMode) -> Self {
        NodeSlot {
            addr,
            mode: AtomicU8::new(mode.to_u8()),
            listening: AtomicBool::new(false),
            running: Mutex::new(None),
            synced: RwLock::default(),
        }
    }

    pub fn mode(&self) -> ReplicaMode {
        ReplicaMode::from_u8(self.mode.load(Ordering::Acquire))
    }

    pub fn set_mode(&self, mode: ReplicaMode) -> ReplicaMode {
        ReplicaMode::from_u8(self.mode.swap(mode.to_u8(), Ordering::AcqRel))
    }

    pub fn deny(&self, app_id: i32) -> Deny {
        self.synced
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&app_id)
            .copied()
            .unwrap_or_default()
    }

    pub fn synced(&self) -> Arc<HashMap<i32, Deny>> {
        self.synced
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set_synced(&self, envs: HashMap<i32, Deny>) {
        *self.synced.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(envs);
    }
}

/// Cluster-wide settings of the data plane and duplication.
pub(crate) struct DataSettings {
    pub config_sync_interval: Duration,
    pub dup_progress: DupProgress,
    pub cluster_name: String,
    pub cluster_id: i8,
    pub remote_clusters: BTreeMap<String, Vec<String>>,
}

/// Replies that do not depend on the request, encoded once.
pub(crate) struct FixedBodies {
    pub not_found: Bytes,
    pub not_active: Bytes,
    pub negotiation: Bytes,
}

pub(crate) struct Shared {
    pub metas: Vec<MetaSlot>,
    pub nodes: Vec<NodeSlot>,
    pub host_port_fields: bool,
    pub bodies: FixedBodies,
    pub counters: CounterSet,
    pub data: DataSettings,
    pub clock: Clock,
    /// Extra delay before a write is shipped to a follower, in ms.
    pub dup_lag_ms: AtomicU64,
    /// The whole cluster is stopped: metas and replica nodes.
    pub cluster_stopped: AtomicBool,
    /// RPCs the metas answer `ERR_HANDLER_NOT_FOUND`, as a MetaServer older than them would.
    pub missing_rpcs: RwLock<Vec<String>>,
    /// Tables dropped by `RPC_CM_DROP_APP`, by app id, kept for `RPC_CM_RECALL_APP`.
    dropped: std::sync::Mutex<BTreeMap<i32, Arc<Table>>>,
    view: RwLock<Arc<View>>,
    version: AtomicU64,
}

impl Shared {
    pub fn new(
        metas: Vec<MetaSlot>,
        nodes: Vec<NodeSlot>,
        leader: Option<usize>,
        tables: Vec<Table>,
        host_port_fields: bool,
        data: DataSettings,
        dup_lag: Duration,
    ) -> Shared {
        let mut negotiation = BytesMut::new();
        NegotiationResponse::auth_disabled().to_result(&mut negotiation);
        let counters = CounterSet::new(metas.len());
        let tables: HashMap<String, Arc<Table>> = tables
            .into_iter()
            .map(|t| (t.spec.name.clone(), Arc::new(t)))
            .collect();
        let view = View {
            version: 0,
            forward: forward(&metas, leader, host_port_fields),
            by_app: by_app(&tables),
            tables,
            leader,
        };
        Shared {
            metas,
            nodes,
            host_port_fields,
            bodies: FixedBodies {
                not_found: table::error_body(ErrorCode::OBJECT_NOT_FOUND, Vec::new()),
                not_active: table::error_body(ErrorCode::SERVICE_NOT_ACTIVE, Vec::new()),
                negotiation: negotiation.freeze(),
            },
            counters,
            data,
            clock: Clock::new(),
            dup_lag_ms: AtomicU64::new(u64::try_from(dup_lag.as_millis()).unwrap_or(u64::MAX)),
            cluster_stopped: AtomicBool::new(false),
            missing_rpcs: RwLock::new(Vec::new()),
            dropped: std::sync::Mutex::new(BTreeMap::new()),
            view: RwLock::new(Arc::new(view)),
            version: AtomicU64::new(0),
        }
    }

    /// The dropped tables, by app id.
    pub fn dropped(&self) -> MutexGuard<'_, BTreeMap<i32, Arc<Table>>> {
        self.dropped.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the metas lack a handler for `rpc`.
    pub fn is_missing(&self, rpc: &str) -> bool {
        self.missing_rpcs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|m| m == rpc)
    }

    /// The served replica nodes' addresses.
    pub fn node_addrs(&self) -> Vec<SocketAddrV4> {
        self.nodes.iter().map(|n| n.addr).collect()
    }

    pub fn node_index(&self, addr: SocketAddrV4) -> Option<usize> {
        self.nodes.iter().position(|n| n.addr == addr)
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub fn view(&self) -> Arc<View> {
        self.view
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Builds the next view from the current one. `change` returns the new leader and tables.
    pub fn update<R>(
        &self,
        change: impl FnOnce(&View) -> (Option<usize>, HashMap<String, Arc<Table>>, R),
    ) -> R {
        let mut slot = self.view.write().unwrap_or_else(PoisonError::into_inner);
        let (leader, tables, result) = change(&slot);
        let version = slot.version + 1;
        *slot = Arc::new(View {
            version,
            forward: forward(&self.metas, leader, self.host_port_fields),
            by_app: by_app(&tables),
            tables,
            leader,
        });
        // Published under the write lock, after the view: whoever sees the new version and then
        // takes the read lock gets this view or a later one.
        self.version.store(version, Ordering::Release);
        result
    }
}

fn by_app(tables: &HashMap<String, Arc<Table>>) -> HashMap<i32, Arc<Table>> {
    tables
        .values()
        .map(|t| (t.spec.app_id, t.clone()))
        .collect()
}

fn forward(metas: &[MetaSlot], leader: Option<usize>, host_ports: bool) -> Bytes {
    let leader = leader
        .and_then(|i| metas.get(i))
        .and_then(|m| match m.addr {
            SocketAddr::V4(a) => Some(a),
            // Listen addresses are validated to be IPv4.
            SocketAddr::V6(_) => None,
        });
    table::forward_body(leader, host_ports)
}

/// How many requests reached the cluster, as returned by [`super::SimHandle::counters`] and
/// `GET /counters`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Every request frame that decoded, whatever its RPC.
    pub requests: u64,
    /// Frames that could not be decoded; each closed its connection.
    pub malformed: u64,
    /// Connections accepted.
    pub connections: u64,
    /// Requests by MetaServer listen address.
    pub by_meta: BTreeMap<String, u64>,
    /// Connections accepted by MetaServer listen address.
    pub connections_by_meta: BTreeMap<String, u64>,
    /// Requests by RPC name.
    pub by_rpc: BTreeMap<String, u64>,
    /// query_config requests by table name, whether the table exists or not.
    pub by_table: BTreeMap<String, u64>,
    /// Requests to the replica nodes.
    pub replica: ReplicaCounters,
}

/// What the replica nodes received and how they answered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaCounters {
    /// Every data request frame that decoded.
    pub requests: u64,
    /// Requests by RPC name.
    pub by_rpc: BTreeMap<String, u64>,
    /// Requests answered with an rpc-level error, by error.
    pub refused: BTreeMap<String, u64>,
    /// Requests left unanswered (black hole, `timeout*...` deny).
    pub dropped: u64,
    /// Requests whose key did not match the header or the partition (logged).
    pub key_mismatches: u64,
    /// Connections accepted, over every node.
    pub connections: u64,
}

/// Distinct names kept per keyed counter; beyond it they add up under [`OTHER_KEY`], so a client
/// sending random names cannot grow memory without bound.
const MAX_KEYS: usize = 4096;
pub const OTHER_KEY: &str = "<other>";

pub(crate) struct CounterSet {
    requests: AtomicU64,
    malformed: AtomicU64,
    connections: AtomicU64,
    by_meta: Vec<AtomicU64>,
    connections_by_meta: Vec<AtomicU64>,
    by_rpc: Keyed,
    by_table: Keyed,
    pub replica_requests: AtomicU64,
    pub replica_by_rpc: Keyed,
    pub replica_refused: Keyed,
    pub replica_dropped: AtomicU64,
    pub key_mismatches: AtomicU64,
    pub replica_connections: AtomicU64,
}

impl CounterSet {
    fn new(metas: usize) -> Self {
        let zeros = || (0..metas).map(|_| AtomicU64::new(0)).collect();
        CounterSet {
            requests: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            by_meta: zeros(),
            connections_by_meta: zeros(),
            by_rpc: Keyed::default(),
            by_table: Keyed::default(),
            replica_requests: AtomicU64::new(0),
            replica_by_rpc: Keyed::default(),
            replica_refused: Keyed::default(),
            replica_dropped: AtomicU64::new(0),
            key_mismatches: AtomicU64::new(0),
            replica_connections: AtomicU64::new(0),
        }
    }

    /// Adds `n` requests received by `meta`.
    pub fn requests(&self, meta: usize, n: u64) {
        self.requests.fetch_add(n, Ordering::Relaxed);
        if let Some(c) = self.by_meta.get(meta) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn malformed(&self) {
        self.malformed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection(&self, meta: usize) {
        self.connections.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self.connections_by_meta.get(meta) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self, metas: &[MetaSlot]) -> Counters {
        let per_meta = |v: &[AtomicU64]| {
            metas
                .iter()
                .zip(v)
                .map(|(m, c)| (m.addr.to_string(), c.load(Ordering::Relaxed)))
                .collect()
        };
        Counters {
            requests: self.requests.load(Ordering::Relaxed),
            malformed: self.malformed.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
            by_meta: per_meta(&self.by_meta),
            connections_by_meta: per_meta(&self.connections_by_meta),
            by_rpc: self.by_rpc.snapshot(),
            by_table: self.by_table.snapshot(),
            replica: ReplicaCounters {
                requests: self.replica_requests.load(Ordering::Relaxed),
                by_rpc: self.replica_by_rpc.snapshot(),
                refused: self.replica_refused.snapshot(),
                dropped: self.replica_dropped.load(Ordering::Relaxed),
                key_mismatches: self.key_mismatches.load(Ordering::Relaxed),
                connections: self.replica_connections.load(Ordering::Relaxed),
            },
        }
    }

    /// Zeroes every counter. Named counters are zeroed rather than removed, since connections
    /// hold on to them; a snapshot leaves out the zeros.
    pub fn reset(&self) {
        for c in [
            &self.requests,
            &self.malformed,
            &self.connections,
            &self.replica_requests,
            &self.replica_dropped,
            &self.key_mismatches,
            &self.replica_connections,
        ]
        .into_iter()
        .chain(&self.by_meta)
        .chain(&self.connections_by_meta)
        {
            c.store(0, Ordering::Relaxed);
        }
        self.by_rpc.reset();
        self.by_table.reset();
        self.replica_by_rpc.reset();
        self.replica_refused.reset();
    }
}

/// Counters by name, each shared so that a connection can keep the ones it uses.
#[derive(Default)]
pub(crate) struct Keyed(RwLock<HashMap<String, Arc<AtomicU64>>>);

impl Keyed {
    /// Adds one to the counter of `key`.
    pub fn add(&self, key: &str) {
        self.counter(key).fetch_add(1, Ordering::Relaxed);
    }

    fn counter(&self, key: &str) -> Arc<AtomicU64> {
        if let Some(c) = self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
        {
            return c.clone();
        }
        let mut map = self.0.write().unwrap_or_else(PoisonError::into_inner);
        let key = if map.len() < MAX_KEYS || map.contains_key(key) {
            key
        } else {
            OTHER_KEY
        };
        map.entry(key.to_owned()).or_default().clone()
    }

    fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.load(Ordering::Relaxed)))
            .filter(|(_, v)| *v > 0)
            .collect()
    }

    fn reset(&self) {
        for c in self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// A connection's shortcut to the named counters it used last: a client sends the same few RPC
/// and table names over and over, and finding them here takes no lock and no hashing.
#[derive(Default)]
pub(crate) struct RecentCounters {
    rpc: Vec<(String, Arc<AtomicU64>)>,
    table: Vec<(String, Arc<AtomicU64>)>,
}

/// Names remembered per connection and kind.
const RECENT: usize = 8;

impl RecentCounters {
    pub fn rpc(&mut self, set: &CounterSet, name: &str) {
        Self::add(&mut self.rpc, &set.by_rpc, name)
    }

    pub fn table(&mut self, set: &CounterSet, name: &str) {
        Self::add(&mut self.table, &set.by_table, name)
    }

    fn add(recent: &mut Vec<(String, Arc<AtomicU64>)>, keyed: &Keyed, name: &str) {
        let counter = match recent.iter().find(|(k, _)| k == name) {
            Some((_, c)) => c,
            None => {
                if recent.len() == RECENT {
                    recent.remove(0);
                }
                recent.push((name.to_owned(), keyed.counter(name)));
                &recent[recent.len() - 1].1
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_survive_a_reset_and_cap_their_names() {
        let set = CounterSet::new(1);
        let mut recent = RecentCounters::default();
        recent.table(&set, "temp");
        recent.table(&set, "temp");
        assert_eq!(set.by_table.snapshot()["temp"], 2);
        set.reset();
        assert!(set.by_table.snapshot().is_empty());
        // The connection's remembered counter is still the one a snapshot reads.
        recent.table(&set, "temp");
        assert_eq!(set.by_table.snapshot()["temp"], 1);

        for i in 0..MAX_KEYS + 10 {
            recent.rpc(&set, &format!("RPC_{i}"));
        }
        let by_rpc = set.by_rpc.snapshot();
        assert_eq!(
            by_rpc.len(),
            MAX_KEYS + 1,
            "the first names, then {OTHER_KEY}"
        );
        assert_eq!(by_rpc[OTHER_KEY], 10);
    }
}
