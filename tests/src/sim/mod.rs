//! A simulated Pegasus cluster: one or more MetaServers that speak the MetaServer RPC protocol
//! (`docs/protocol.md`) byte for byte, and, when asked, replica servers that serve the
//! official clients' reads and writes, app envs and duplication to another simulated cluster; for
//! the tests, the demo and the benchmarks.
//!
//! What flows through it: `THFT` request frames arrive on each meta's or replica node's listener
//! (`listener.rs`; a meta's answers are `server.rs`'s, a node's `replica.rs`'s), are decoded with the project's codec, answered from a shared
//! cluster view (`state.rs`: tables, layout, leader) and the tables' stores (`store.rs`,
//! `storage.rs`), and written back as reply frames; duplication shippers (`dup.rs`) send the
//! stores' logged writes to follower clusters; control calls (the [`SimHandle`] methods, or the
//! admin HTTP API in [`admin`]) change the view while it serves.
//!
//! # Answers
//!
//! | request | answer (rpc-level error `ERR_OK` unless said) |
//! |---|---|
//! | `RPC_CM_QUERY_PARTITION_CONFIG_BY_INDEX`, meta switched to not active | `ERR_SERVICE_NOT_ACTIVE`, other fields default |
//! | the same, to a meta that is not the leader | `ERR_FORWARD_TO_OTHERS`, `partitions = [pc]` with only `pc.primary` set, to the leader's listen address (plus `hp_primary` and empty `hp_secondaries`/`hp_last_drops` with host-port fields on); `partitions = []` when no leader is set |
//! | the same, to the leader, table missing | `ERR_OBJECT_NOT_FOUND`, other fields default |
//! | the same, to the leader, table present | `ERR_OK`, app_id, partition_count, is_stateful true, the partitions at the valid requested indices (in the order asked, duplicates kept), or all of them when none was asked or none is valid |
//! | `RPC_NEGOTIATION` | `negotiation_response{SASL_AUTH_DISABLE, ""}` |
//! | `RPC_CM_UPDATE_APP_ENV`, `RPC_CM_QUERY_DUPLICATION`, `RPC_CM_ADD_DUPLICATION`, `RPC_CM_LIST_APPS`, the other table-scoped admin RPCs | §14, on the leader only; see `meta_rpc.rs` |
//! | `RPC_CM_CREATE_APP`, `RPC_CM_DROP_APP`, `RPC_CM_RECALL_APP` | the tables change; see `ddl.rs` |
//! | an RPC named by [`SimHandle::set_missing_rpcs`] | rpc-level `ERR_HANDLER_NOT_FOUND`, no body, as from a MetaServer older than it |
//! | any other RPC | rpc-level `ERR_HANDLER_NOT_FOUND`, no body; the connection stays open |
//! | a frame the codec rejects | the connection is closed, after the replies owed before it |
//!
//! Replies carry the request's seqid and the name `<request name>_ACK`; one-way calls get none.
//! A real MetaServer that is not the leader would forward before checking whether it is active;
//! here "not active" wins, so a test can make any meta say it.
//!
//! # Partitions
//!
//! Partition `i` of a table with replicas `R` (n of them) starts with pid `gpid(app_id, i)`, ballot
//! `i + 3`, max_replica_count `n`, primary `R[i % n]`, the other replicas as secondaries in list
//! order, no last_drops, last_committed_decree `100 * (i + 1)` and flags 0. With host-port fields
//! on (for the cluster, or per table), `hp_primary`/`hp_secondaries` name the same replicas by
//! `replica_hosts` (default: the replica's IP) and `hp_last_drops` names the dropped ones.
//! Configured like the capture in `pegasus-rpc/tests/vectors/README.md`, it reproduces the
//! captured replies byte for byte. When a served replica node stops, the layout changes as a
//! real meta's would ([`layout`]): its primaries move to a live secondary and the ballots go up.
//!
//! # Replica servers
//!
//! Only the nodes of [`SimConfig::replica_listen`] (`--replica-listen`, loopback only) are
//! listened on. A table that names no replicas is placed on all of them; a table that names other
//! addresses (the demo's `10.0.0.1:34801`, the proxy tests' `127.0.0.1:34801`) is reported by
//! query_config and never served, as before. The nodes serve PUT, MULTI_PUT, REMOVE,
//! MULTI_REMOVE, GET, MULTI_GET, TTL, SORTKEY_COUNT, INCR, CHECK_AND_SET and DUPLICATE with the
//! checks of [`decide`] in the real server's order, replies byte-exact to §15 (every non-optional
//! field, id order; `server` is the node's own address), one decree per applied write, TTLs in
//! Pegasus epoch seconds on a clock that follows `tokio::time`. Other data RPCs (scans,
//! BATCH_GET, CHECK_AND_MUTATE) get `ERR_HANDLER_NOT_FOUND`; CLEAR_SCANNER, which a real server
//! never answers, gets nothing. The data of a table lives once per cluster (a partition's
//! replicas hold the same data), so a primary that moves keeps it.
//!
//! Each node has a mode ([`ReplicaMode`]): serving, stopped (connections refused; the layout
//! moves its primaries), blackhole (reads, never answers), not-hosting (`ERR_OBJECT_NOT_FOUND`),
//! invalid-state (`ERR_INVALID_STATE`). The whole cluster can be stopped and started: metas and
//! nodes together, layout kept.
//!
//! # App envs and duplication
//!
//! App envs are the meta's ([`envs`]); each node applies `replica.deny_client_request` at its
//! config sync, every `config_sync_interval` (default 30 s as in Pegasus), as §15.7 says:
//! `timeout*...` drops the denied requests, `reconfig*...` answers them `ERR_INVALID_STATE`.
//!
//! A table duplicates to another cluster's table (`duplication:` in `tables.yaml`,
//! `RPC_CM_ADD_DUPLICATION`, [`SimHandle::add_duplication`]); from then on it logs its idempotent
//! writes and refuses INCR and CHECK_AND_SET (`ERR_OPERATION_DISABLED`). Each partition ships its
//! log in decree order to the follower's primaries, found through the follower's metas; a failed
//! batch is sent again after 1 s; [`SimHandle::set_dup_lag`] holds writes back. Writes made before
//! the duplication was added are not copied (no checkpoint). The confirmed decrees are reported at
//! once by query_duplication (a real meta persists them every few seconds).
//!
//! # Admin HTTP API
//!
//! JSON in and out; `{meta}` and `{replica}` are an index (from 0) or a listen address. Errors
//! come back as `{"error": "..."}` with status 400 (bad input), 404 (no such meta, replica or
//! table) or 409 (the address cannot be bound again).
//!
//! | endpoint | body | effect |
//! |---|---|---|
//! | `GET /state` | | metas (address, running, leader, not_active, delay_ms), the leader, the tables, the replica nodes (address, mode, listening, what each denies), whether the cluster is stopped |
//! | `POST /leader` | `{"meta": 1}`, `{"meta": "127.0.0.1:34602"}` or `{"meta": null}` | changes the leader (null: none known) |
//! | `POST /metas/{meta}/stop` | | closes its listener and its connections |
//! | `POST /metas/{meta}/start` | | listens again on the same address |
//! | `PUT /metas/{meta}/not-active` | `{"not_active": true}` | answers query_config with `ERR_SERVICE_NOT_ACTIVE` |
//! | `PUT /metas/{meta}/delay` | `{"delay_ms": 250}` | holds every reply back that long |
//! | `GET /tables` | | the table specs |
//! | `PUT /tables/{name}` | `{"app_id": 3, "partition_count": 8, "replicas": ["ip:port", ...], "replica_hosts": [...]?, "host_port_fields": bool?}` | adds or replaces the table |
//! | `GET /tables/{name}` | | [`TableState`]: app id, partition count, envs, layout, duplications with per-partition confirmed and committed decrees, key count, last decree per partition |
//! | `DELETE /tables/{name}` | | drops the table (404 if absent) |
//! | `POST /tables/{name}/envs` | `{"op": "set", "keys": [..], "values": [..]}`, `{"op": "del", "keys": [..]}`, `{"op": "clear", "clear_prefix": "replica"}` | as update_app_env: `{"err", "hint", "envs"}` |
//! | `POST /tables/{name}/duplications` | `{"to": ["ip:port"], "app": "name", "cluster": "name"?}` | starts a duplication: `{"dupid", "existed"}` |
//! | `PUT /duplication/lag` | `{"lag_ms": 500}` | holds writes back before shipping |
//! | `GET /replicas` | | the replica nodes |
//! | `PUT /replicas/{replica}/mode` | `{"mode": "serving"}` (`stopped`, `blackhole`, `not-hosting`, `invalid-state`) | sets one node's mode |
//! | `PUT /replicas/mode` | the same | sets every node's mode |
//! | `POST /cluster/stop`, `POST /cluster/start` | | stops (starts) the metas and the replica nodes together |
//! | `GET /data/{table}?hash_key=h&sort_key=s` | | `{"found", "value"}`, read straight from the store |
//! | `GET /counters` | | [`Counters`]: requests in total, by meta, by RPC, by table; connections; the replica nodes' requests, refusals, drops and key mismatches |
//! | `POST /counters/reset` | | sets every counter to zero |
//!
//! # Speed
//!
//! The reply body listing every partition is encoded when a table is put, so the common query
//! costs a decode, a lookup and a copy; replies to one read go out in one write, and a connection
//! keeps the counters it uses at hand. Measured on the 2-core development machine (release build,
//! `pegasus-load --connections 8 --depth 32 --duration 10s --table temp` on the same machine, an
//! 8-partition table): about 500-600k query_config requests per second, p50 0.4 ms, p99 1.6-1.9
//! ms. The simulator then spends about 1.2 us of CPU per request (about 60% of both cores, the
//! load tool the rest); a quarter of that is the codec's decoding, a third the socket calls.
//! One connection with one request in flight: about 60k requests per second, p50 14 us.

pub mod admin;
mod config;
mod ddl;
pub mod decide;
mod dup;
pub mod envs;
pub mod layout;
mod listener;
mod meta_rpc;
mod replica;
mod server;
mod state;
pub mod storage;
pub mod store;
mod table;
mod table_admin;

use std::collections::BTreeMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use pegasus_rpc::codec::key;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::{Mutex, oneshot};
use tokio::task::AbortHandle;
use tracing::info;

pub use config::{
    DupProgress, DuplicationSpec, MAX_PARTITIONS, SimConfig, TableSpec, TablesFile, load_tables,
    parse_tables, validate_tables,
};
pub use decide::ReplicaMode;
pub use envs::{Deny, EnvAnswer, EnvUpdate};
pub use layout::PartitionLayout;
pub use state::{Counters, OTHER_KEY, ReplicaCounters};
pub use store::{DupPartitionState, DuplicationState};

use listener::{Label, Responder};
use state::{DataSettings, MetaSlot, NodeSlot, Running, Shared};
use table::Table;

/// What can go wrong starting or steering the simulator.
#[derive(Debug, Error)]
pub enum SimError {
    #[error("cannot read {path}: {source}")]
    ReadConfig {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid tables YAML: {0}")]
    Yaml(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("invalid table {name:?}: {reason}")]
    InvalidTable { name: String, reason: String },
    #[error("no MetaServer {0}")]
    NoSuchMeta(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no replica node {0}")]
    NoSuchReplica(String),
    #[error("no table {0:?}")]
    NoSuchTable(String),
    #[error("bad key: {0}")]
    BadKey(String),
}

impl SimError {
    /// A fixed, small label for logs and metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            SimError::ReadConfig { .. } => "read_config",
            SimError::Yaml(_) => "yaml",
            SimError::Config(_) => "config",
            SimError::InvalidTable { .. } => "invalid_table",
            SimError::NoSuchMeta(_) => "no_such_meta",
            SimError::Bind { .. } => "bind",
            SimError::NoSuchReplica(_) => "no_such_replica",
            SimError::NoSuchTable(_) => "no_such_table",
            SimError::BadKey(_) => "bad_key",
        }
    }
}

/// Starts simulated clusters.
pub struct Simulator;

impl Simulator {
    /// Binds every MetaServer (and the admin port, if asked), then serves in the background on
    /// the current Tokio runtime until [`SimHandle::shutdown`].
    pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
        config.validate()?;
        let mut listeners = Vec::with_capacity(config.listen.len());
        for &addr in &config.listen {
            let listener =
                listener::bind(addr).map_err(|source| SimError::Bind { addr, source })?;
            let bound = listener
                .local_addr()
                .map_err(|source| SimError::Bind { addr, source })?;
            listeners.push((bound, listener));
        }
        let mut node_listeners = Vec::with_capacity(config.replica_listen.len());
        for &addr in &config.replica_listen {
            let listener =
                listener::bind(addr).map_err(|source| SimError::Bind { addr, source })?;
            let bound = match listener.local_addr() {
                Ok(SocketAddr::V4(a)) => a,
                // Validated to be IPv4 loopback.
                Ok(SocketAddr::V6(_)) => return Err(SimError::Config(format!("{addr}: not IPv4"))),
                Err(source) => return Err(SimError::Bind { addr, source }),
            };
            node_listeners.push((bound, listener));
        }
        let metas = listeners
            .iter()
            .map(|(addr, _)| MetaSlot {
                addr: *addr,
                not_active: AtomicBool::new(false),
                delay_ms: AtomicU64::new(0),
                listening: AtomicBool::new(false),
                running: Mutex::new(None),
            })
            .collect();
        let nodes: Vec<NodeSlot> = node_listeners
            .iter()
            .map(|(addr, _)| NodeSlot::new(*addr, config.replica_mode))
            .collect();
        let node_addrs: Vec<SocketAddrV4> = nodes.iter().map(|n| n.addr).collect();
        let tables: Vec<Table> = config
            .tables
            .into_iter()
            .map(|t| Table::new(t, &node_addrs, config.host_port_fields))
            .collect();
        let shared = Arc::new(Shared::new(
            metas,
            nodes,
            config.leader,
            tables,
            config.host_port_fields,
            DataSettings {
                config_sync_interval: config.config_sync_interval,
                dup_progress: config.dup_progress,
                cluster_name: config.cluster_name,
                cluster_id: config.cluster_id,
                remote_clusters: config.remote_clusters,
            },
            config.dup_lag,
        ));
        let handle = SimHandle {
            shared,
            admin: Arc::new(Mutex::new(None)),
            admin_addr: None,
            tasks: Arc::new(std::sync::Mutex::new(Vec::new())),
        };
        for (i, (_, listener)) in listeners.into_iter().enumerate() {
            let running = handle.spawn_meta(i, listener);
            *handle.shared.metas[i].running.lock().await = Some(running);
        }
        for (i, (_, listener)) in node_listeners.into_iter().enumerate() {
            if handle.shared.nodes[i].mode() != ReplicaMode::Stopped {
                let running = handle.spawn_node(i, listener);
                *handle.shared.nodes[i].running.lock().await = Some(running);
            }
            let sync = tokio::spawn(replica::sync_loop(i, handle.shared.clone()));
            handle.keep_task(sync.abort_handle());
        }
        let view = handle.shared.view();
        for table in view.tables.values() {
            if let Some(spec) = &table.spec.duplication {
                handle.start_duplication(table, spec.clone());
            }
        }
        let handle = match config.admin_listen {
            Some(addr) => handle.start_admin(addr).await?,
            None => handle,
        };
        info!(
            metas = ?handle.meta_addrs(),
            replicas = ?handle.replica_addrs(),
            leader = ?handle.leader().map(|i| handle.shared.metas[i].addr),
            tables = handle.tables().len(),
            host_port_fields = config.host_port_fields,
            admin = ?handle.admin_addr,
            "simulated Pegasus cluster started"
        );
        Ok(handle)
    }
}

/// Controls a running simulated cluster. Clones control the same cluster.
#[derive(Clone)]
pub struct SimHandle {
    shared: Arc<Shared>,
    admin: Arc<Mutex<Option<Running>>>,
    admin_addr: Option<SocketAddr>,
    /// Background tasks to stop at shutdown (config syncs).
    tasks: Arc<std::sync::Mutex<Vec<AbortHandle>>>,
}

/// One MetaServer as `GET /state` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaState {
    pub index: usize,
    pub addr: SocketAddr,
    pub running: bool,
    pub leader: bool,
    pub not_active: bool,
    pub delay_ms: u64,
}

/// One replica server node as `GET /state` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaState {
    pub index: usize,
    pub addr: SocketAddrV4,
    pub mode: ReplicaMode,
    pub listening: bool,
    /// What this node denies, by app id, as of its last config sync (only the tables it denies
    /// something of).
    pub denies: BTreeMap<i32, Deny>,
}

/// The whole cluster as `GET /state` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimState {
    pub leader: Option<SocketAddr>,
    pub host_port_fields: bool,
    pub metas: Vec<MetaState>,
    pub tables: Vec<TableSpec>,
    #[serde(default)]
    pub replicas: Vec<ReplicaState>,
    #[serde(default)]
    pub cluster_stopped: bool,
}

/// One table as `GET /tables/{name}` shows it: the meta's view and the data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableState {
    pub name: String,
    pub app_id: i32,
    pub partition_count: i32,
    pub envs: BTreeMap<String, String>,
    /// The replicas it lives on.
    pub replicas: Vec<SocketAddrV4>,
    /// Per partition: primary, secondaries, last drops, ballot.
    pub layout: Vec<PartitionLayout>,
    pub duplications: Vec<DuplicationState>,
    /// Whether its writes are logged for duplications (and INCR/CHECK_AND_SET refused).
    pub duplicating: bool,
    /// Keys stored over every partition (expired ones until overwritten).
    pub key_count: usize,
    /// The last decree of each partition (0: no write yet).
    pub last_decrees: Vec<i64>,
}

impl SimHandle {
    /// The MetaServers' listen addresses, with the actual ports, by index.
    pub fn meta_addrs(&self) -> Vec<SocketAddr> {
        self.shared.metas.iter().map(|m| m.addr).collect()
    }

    /// The index of the MetaServer listening on `addr`.
    pub fn meta_index(&self, addr: SocketAddr) -> Option<usize> {
        self.shared.metas.iter().position(|m| m.addr == addr)
    }

    /// Where the admin HTTP API listens, if it was asked for.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    pub fn leader(&self) -> Option<usize> {
        self.shared.view().leader
    }

    /// Makes MetaServer `leader` the leader (`None`: no meta knows one). Queries read after this
    /// returns see the change.
    pub fn set_leader(&self, leader: Option<usize>) -> Result<(), SimError> {
        if let Some(i) = leader {
            self.slot(i)?;
        }
        self.shared.update(|v| (leader, v.tables.clone(), ()));
        info!(leader = ?leader.map(|i| self.shared.metas[i].addr), "leader changed");
        Ok(())
    }

    /// Closes MetaServer `i`'s listener and drops its connections; new connections are refused
    /// once this returns. Stopping a stopped meta does nothing.
    pub async fn stop_meta(&self, i: usize) -> Result<(), SimError> {
        let slot = self.slot(i)?;
        let mut running = slot.running.lock().await;
        if let Some(r) = running.take() {
            // The loop also stops if the sender is gone, so a failed send needs no handling.
            let _ = r.stop.send(());
            // A panicked accept loop has dropped its listener all the same.
            let _ = r.task.await;
        }
        slot.listening.store(false, Ordering::Release);
        Ok(())
    }

    /// Listens again on MetaServer `i`'s address. Starting a running meta does nothing.
    pub async fn start_meta(&self, i: usize) -> Result<(), SimError> {
        let slot = self.slot(i)?;
        let mut running = slot.running.lock().await;
        if running.is_none() {
            let addr = slot.addr;
            let listener =
                listener::bind(addr).map_err(|source| SimError::Bind { addr, source })?;
            *running = Some(self.spawn_meta(i, listener));
        }
        Ok(())
    }

    pub fn is_running(&self, i: usize) -> Result<bool, SimError> {
        Ok(self.slot(i)?.listening.load(Ordering::Acquire))
    }

    /// Makes MetaServer `i` answer query_config with `ERR_SERVICE_NOT_ACTIVE` (or stop doing so).
    pub fn set_not_active(&self, i: usize, not_active: bool) -> Result<(), SimError> {
        self.slot(i)?
            .not_active
            .store(not_active, Ordering::Relaxed);
        info!(meta = %self.shared.metas[i].addr, not_active, "not-active switch");
        Ok(())
    }

    /// Holds every reply of MetaServer `i` back by `delay`, counted from when the request was
    /// read. Zero turns it off.
    pub fn set_delay(&self, i: usize, delay: Duration) -> Result<(), SimError> {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.slot(i)?.delay_ms.store(ms, Ordering::Relaxed);
        info!(meta = %self.shared.metas[i].addr, delay_ms = ms, "reply delay");
        Ok(())
    }

    /// Adds a table, or replaces the one of the same name. A replacement with the same app id,
    /// partition count and replicas keeps the data, the layout and the duplications; otherwise
    /// the old table's duplications stop.
    pub fn put_table(&self, spec: TableSpec) -> Result<(), SimError> {
        spec.validate()?;
        if spec.replicas.is_empty() && self.shared.nodes.is_empty() {
            return Err(SimError::InvalidTable {
                name: spec.name,
                reason: "no replicas, and the cluster serves no replica nodes".into(),
            });
        }
        let name = spec.name.clone();
        let nodes = self.shared.node_addrs();
        let (old, table) = self.shared.update(|v| {
            let mut tables = v.tables.clone();
            let clash = tables
                .values()
                .find(|t| t.spec.app_id == spec.app_id && t.spec.name != name);
            if let Some(other) = clash {
                let err = SimError::InvalidTable {
                    name: name.clone(),
                    reason: format!(
                        "app_id {} is used by table {:?}",
                        other.spec.app_id, other.spec.name
                    ),
                };
                return (v.leader, tables, Err(err));
            }
            let old = tables.get(&name).cloned();
            let table = Arc::new(match &old {
                Some(old) => old.respec(spec.clone(), &nodes),
                None => Table::new(spec.clone(), &nodes, self.shared.host_port_fields),
            });
            tables.insert(name.clone(), table.clone());
            (v.leader, tables, Ok((old, table)))
        })?;
        let new_store = old
            .as_ref()
            .is_none_or(|old| !Arc::ptr_eq(&old.store, &table.store));
        if new_store {
            if let Some(old) = &old {
                old.store.stop_shipping();
            }
            if let Some(dup) = &table.spec.duplication {
                self.start_duplication(&table, dup.clone());
            }
        }
        info!(table = %name, kept_data = !new_store, "table put");
        Ok(())
    }

    /// Makes the metas answer these RPCs rpc-level `ERR_HANDLER_NOT_FOUND`, as a MetaServer
    /// older than them would (empty: all served again).
    pub fn set_missing_rpcs(&self, rpcs: &[&str]) {
        *self
            .shared
            .missing_rpcs
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            rpcs.iter().map(|r| (*r).to_owned()).collect();
    }

    /// The names of the tables dropped by `RPC_CM_DROP_APP` and not recalled.
    pub fn dropped_tables(&self) -> Vec<String> {
        let mut names: Vec<_> = self
            .shared
            .dropped()
            .values()
            .map(|t| t.spec.name.clone())
            .collect();
        names.sort();
        names
    }

    /// Drops a table and its data; false if there was none of that name.
    pub fn drop_table(&self, name: &str) -> bool {
        let old = self.shared.update(|v| {
            let mut tables = v.tables.clone();
            let old = tables.remove(name);
            (v.leader, tables, old)
        });
        if let Some(old) = &old {
            old.store.stop_shipping();
        }
        info!(table = %name, existed = old.is_some(), "table dropped");
        old.is_some()
    }

    /// The table specs, by name.
    pub fn tables(&self) -> Vec<TableSpec> {
        let mut tables: Vec<TableSpec> = self
            .shared
            .view()
            .tables
            .values()
            .map(|t| t.spec.clone())
            .collect();
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        tables
    }

    /// The request counters. A request is counted before its reply is written.
    pub fn counters(&self) -> Counters {
        self.shared.counters.snapshot(&self.shared.metas)
    }

    pub fn reset_counters(&self) {
        self.shared.counters.reset();
    }

    pub fn state(&self) -> SimState {
        let view = self.shared.view();
        let metas = self
            .shared
            .metas
            .iter()
            .enumerate()
            .map(|(index, m)| MetaState {
                index,
                addr: m.addr,
                running: m.listening.load(Ordering::Acquire),
                leader: view.leader == Some(index),
                not_active: m.not_active.load(Ordering::Relaxed),
                delay_ms: m.delay_ms.load(Ordering::Relaxed),
            })
            .collect();
        SimState {
            leader: view.leader.map(|i| self.shared.metas[i].addr),
            host_port_fields: self.shared.host_port_fields,
            metas,
            tables: self.tables(),
            replicas: self.replica_states(),
            cluster_stopped: self.shared.cluster_stopped.load(Ordering::Acquire),
        }
    }

    /// Stops every MetaServer, replica node, duplication and the admin API.
    pub async fn shutdown(&self) {
        for i in 0..self.shared.metas.len() {
            // Every index in range exists.
            let _ = self.stop_meta(i).await;
        }
        for i in 0..self.shared.nodes.len() {
            self.stop_node(i).await;
        }
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
        for table in self.shared.view().tables.values() {
            table.store.stop_shipping();
        }
        if let Some(r) = self.admin.lock().await.take() {
            let _ = r.stop.send(());
            let _ = r.task.await;
        }
        info!("simulated Pegasus cluster shut down");
    }

    // ----- Replica servers -----------------------------------------------------------------

    /// The replica nodes' listen addresses, with the actual ports, by index.
    pub fn replica_addrs(&self) -> Vec<SocketAddr> {
        self.shared
            .nodes
            .iter()
            .map(|n| SocketAddr::V4(n.addr))
            .collect()
    }

    /// The index of the replica node at `addr`.
    pub fn replica_index(&self, addr: SocketAddr) -> Option<usize> {
        match addr {
            SocketAddr::V4(a) => self.shared.node_index(a),
            SocketAddr::V6(_) => None,
        }
    }

    pub fn replica_states(&self) -> Vec<ReplicaState> {
        self.shared
            .nodes
            .iter()
            .enumerate()
            .map(|(index, n)| ReplicaState {
                index,
                addr: n.addr,
                mode: n.mode(),
                listening: n.listening.load(Ordering::Acquire),
                denies: n
                    .synced()
                    .iter()
                    .filter(|(_, d)| **d != Deny::NONE)
                    .map(|(&app, &d)| (app, d))
                    .collect(),
            })
            .collect()
    }

    pub fn replica_mode(&self, i: usize) -> Result<ReplicaMode, SimError> {
        Ok(self.node(i)?.mode())
    }

    /// Puts replica node `i` in `mode`. Stopping it closes its listener and connections, and the
    /// MetaServers move its primaries to live secondaries (ballots go up); starting it again
    /// listens on the same address and adds it back to the partitions it left, as a secondary.
    /// The other modes take effect on the next request of every open connection.
    pub async fn set_replica_mode(&self, i: usize, mode: ReplicaMode) -> Result<(), SimError> {
        let node = self.node(i)?;
        let addr = node.addr;
        let before = node.set_mode(mode);
        let cluster_up = !self.shared.cluster_stopped.load(Ordering::Acquire);
        if before != ReplicaMode::Stopped && mode == ReplicaMode::Stopped {
            self.stop_node(i).await;
            if cluster_up {
                self.relayout(|l| layout::node_down(l, addr));
            }
        } else if before == ReplicaMode::Stopped && mode != ReplicaMode::Stopped {
            replica::sync_now(i, &self.shared);
            if cluster_up {
                self.start_node(i).await?;
                self.relayout(|l| layout::node_up(l, addr));
            }
        }
        info!(replica = %addr, from = before.as_str(), to = mode.as_str(), "replica mode");
        Ok(())
    }

    /// Puts every replica node in `mode`.
    pub async fn set_all_replica_modes(&self, mode: ReplicaMode) -> Result<(), SimError> {
        for i in 0..self.shared.nodes.len() {
            self.set_replica_mode(i, mode).await?;
        }
        Ok(())
    }

    /// Stops the whole cluster: every MetaServer and replica node stops listening and drops its
    /// connections, and duplication pauses. The layout is kept (no meta is left to change it).
    pub async fn stop_cluster(&self) {
        self.shared.cluster_stopped.store(true, Ordering::Release);
        for i in 0..self.shared.metas.len() {
            let _ = self.stop_meta(i).await;
        }
        for i in 0..self.shared.nodes.len() {
            self.stop_node(i).await;
        }
        info!("whole cluster stopped");
    }

    /// Starts the whole cluster again: every MetaServer, and every replica node not in mode
    /// `stopped`.
    pub async fn start_cluster(&self) -> Result<(), SimError> {
        for i in 0..self.shared.metas.len() {
            self.start_meta(i).await?;
        }
        for i in 0..self.shared.nodes.len() {
            if self.shared.nodes[i].mode() != ReplicaMode::Stopped {
                replica::sync_now(i, &self.shared);
                self.start_node(i).await?;
            }
        }
        self.shared.cluster_stopped.store(false, Ordering::Release);
        info!("whole cluster started");
        Ok(())
    }

    pub fn is_cluster_stopped(&self) -> bool {
        self.shared.cluster_stopped.load(Ordering::Acquire)
    }

    fn node(&self, i: usize) -> Result<&NodeSlot, SimError> {
        self.shared
            .nodes
            .get(i)
            .ok_or_else(|| SimError::NoSuchReplica(i.to_string()))
    }

    async fn stop_node(&self, i: usize) {
        let Some(node) = self.shared.nodes.get(i) else {
            return;
        };
        if let Some(r) = node.running.lock().await.take() {
            let _ = r.stop.send(());
            let _ = r.task.await;
        }
        node.listening.store(false, Ordering::Release);
    }

    async fn start_node(&self, i: usize) -> Result<(), SimError> {
        let node = self.node(i)?;
        let mut running = node.running.lock().await;
        if running.is_none() {
            let addr = SocketAddr::V4(node.addr);
            let listener =
                listener::bind(addr).map_err(|source| SimError::Bind { addr, source })?;
            *running = Some(self.spawn_node(i, listener));
        }
        Ok(())
    }

    fn spawn_node(&self, i: usize, listener: tokio::net::TcpListener) -> Running {
        let node = &self.shared.nodes[i];
        let label = Label {
            role: "replica server",
            index: i,
            addr: SocketAddr::V4(node.addr),
        };
        let shared = self.shared.clone();
        spawn_server(listener, label, &node.listening, move || {
            replica::NodeResponder::accepted(i, shared.clone())
        })
    }

    /// Applies a layout change to every partition of every table.
    fn relayout(&self, change: impl Fn(&PartitionLayout) -> PartitionLayout) {
        self.shared.update(|v| {
            let tables = v
                .tables
                .iter()
                .map(|(name, t)| {
                    let layout: Vec<PartitionLayout> = t.layout.iter().map(&change).collect();
                    let t = if layout == t.layout {
                        t.clone()
                    } else {
                        Arc::new(t.relayout(layout))
                    };
                    (name.clone(), t)
                })
                .collect();
            (v.leader, tables, ())
        });
    }

    fn keep_task(&self, task: AbortHandle) {
        self.tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(task);
    }

    // ----- Tables: envs, duplications, data ---------------------------------------------------

    /// A table's envs, duplications and data figures.
    pub fn table_state(&self, name: &str) -> Option<TableState> {
        let view = self.shared.view();
        let t = view.tables.get(name)?;
        Some(TableState {
            name: t.spec.name.clone(),
            app_id: t.spec.app_id,
            partition_count: t.spec.partition_count,
            envs: t.spec.envs.clone(),
            replicas: t.replicas.clone(),
            layout: t.layout.clone(),
            duplications: t.store.duplication_states(),
            duplicating: t.store.is_dup_master(),
            key_count: t.store.key_count(),
            last_decrees: t.store.last_decrees(),
        })
    }

    /// Changes a table's app envs as `RPC_CM_UPDATE_APP_ENV` does (§14.4); the replica nodes
    /// pick the change up at their next config sync.
    pub fn update_app_env(&self, table: &str, update: &EnvUpdate) -> EnvAnswer {
        meta_rpc::update_app_env(&self.shared, table, update)
    }

    /// Sets one app env (a SET of one key).
    pub fn set_app_env(&self, table: &str, key: &str, value: &str) -> EnvAnswer {
        self.update_app_env(
            table,
            &EnvUpdate {
                op: envs::OP_SET,
                keys: Some(vec![key.to_owned()]),
                values: Some(vec![value.to_owned()]),
                clear_prefix: None,
            },
        )
    }

    /// Makes every replica node pick up the app envs now, instead of at its next config sync.
    pub fn sync_replicas_now(&self) {
        for i in 0..self.shared.nodes.len() {
            replica::sync_now(i, &self.shared);
        }
    }

    /// The cluster's config sync interval.
    pub fn config_sync_interval(&self) -> Duration {
        self.shared.data.config_sync_interval
    }

    /// Starts duplicating `table` to `spec`, shipping the writes committed from now on. Returns
    /// the dupid, and whether a duplication to that follower table existed already.
    pub fn add_duplication(
        &self,
        table: &str,
        spec: DuplicationSpec,
    ) -> Result<(i32, bool), SimError> {
        spec.validate().map_err(|reason| SimError::InvalidTable {
            name: table.to_owned(),
            reason,
        })?;
        let view = self.shared.view();
        let t = view
            .tables
            .get(table)
            .ok_or_else(|| SimError::NoSuchTable(table.to_owned()))?;
        Ok(self.start_duplication(t, spec))
    }

    fn start_duplication(&self, table: &Table, spec: DuplicationSpec) -> (i32, bool) {
        meta_rpc::add_duplication(&self.shared, table, spec)
    }

    /// What `RPC_CM_QUERY_DUPLICATION` answers for `table` now.
    pub fn query_duplication(&self, table: &str) -> pegasus_rpc::codec::QueryDuplicationResponse {
        meta_rpc::query_duplication(&self.shared, table)
    }

    /// Holds every write back this long before shipping it to duplication followers.
    pub fn set_dup_lag(&self, lag: Duration) {
        let ms = u64::try_from(lag.as_millis()).unwrap_or(u64::MAX);
        self.shared.dup_lag_ms.store(ms, Ordering::Relaxed);
        info!(lag_ms = ms, "duplication lag");
    }

    pub fn dup_lag(&self) -> Duration {
        Duration::from_millis(self.shared.dup_lag_ms.load(Ordering::Relaxed))
    }

    /// Reads a value straight from the store, whatever the replica modes and envs: `None` when
    /// missing or expired.
    pub fn read(
        &self,
        table: &str,
        hash_key: &[u8],
        sort_key: &[u8],
    ) -> Result<Option<Bytes>, SimError> {
        let view = self.shared.view();
        let t = view
            .tables
            .get(table)
            .ok_or_else(|| SimError::NoSuchTable(table.to_owned()))?;
        let storage_key =
            key::generate_key(hash_key, sort_key).map_err(|e| SimError::BadKey(e.to_string()))?;
        let hash = key::key_hash(&storage_key).map_err(|e| SimError::BadKey(e.to_string()))?;
        let pidx = key::partition_index(hash, t.spec.partition_count)
            .and_then(|p| usize::try_from(p).ok())
            .ok_or_else(|| SimError::BadKey("no partition".into()))?;
        let now = self.shared.clock.pegasus_secs();
        Ok(t.store
            .partition(pidx)
            .and_then(|p| p.get(&storage_key, now).map(|s| s.value.clone())))
    }

    fn slot(&self, i: usize) -> Result<&MetaSlot, SimError> {
        self.shared
            .metas
            .get(i)
            .ok_or_else(|| SimError::NoSuchMeta(i.to_string()))
    }

    /// Starts MetaServer `i`'s accept loop; the caller stores the result in its slot.
    fn spawn_meta(&self, i: usize, listener: tokio::net::TcpListener) -> Running {
        let meta = &self.shared.metas[i];
        let label = Label {
            role: "MetaServer",
            index: i,
            addr: meta.addr,
        };
        let shared = self.shared.clone();
        spawn_server(listener, label, &meta.listening, move || {
            server::MetaResponder::accepted(i, shared.clone())
        })
    }

    async fn start_admin(mut self, addr: SocketAddr) -> Result<SimHandle, SimError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| SimError::Bind { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| SimError::Bind { addr, source })?;
        self.admin_addr = Some(bound);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(admin::serve(listener, self.clone(), stopped));
        *self.admin.lock().await = Some(Running { stop, task });
        Ok(self)
    }
}

/// Starts a server's accept loop and marks it listening; the caller stores the result in its
/// slot.
fn spawn_server<R: Responder>(
    listener: tokio::net::TcpListener,
    label: Label,
    listening: &AtomicBool,
    accepted: impl FnMut() -> R + Send + 'static,
) -> Running {
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(listener::accept_loop(listener, label, stopped, accepted));
    listening.store(true, Ordering::Release);
    Running { stop, task }
}
