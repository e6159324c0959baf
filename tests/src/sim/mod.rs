//! A simulated Pegasus cluster: one or more MetaServers that speak the MetaServer RPC protocol
//! (`docs/protocol.md`) byte for byte, for the tests, the demo and the benchmarks.
//!
//! What flows through it: `THFT` request frames arrive on each meta's listener (`server.rs`), are
//! decoded with the project's codec, answered from a shared cluster view (`state.rs`) and written
//! back as reply frames; control calls (the [`SimHandle`] methods, or the admin HTTP API in
//! [`admin`]) change that view while it serves.
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
//! | any other RPC | rpc-level `ERR_HANDLER_NOT_FOUND`, no body; the connection stays open |
//! | a frame the codec rejects | the connection is closed, after the replies owed before it |
//!
//! Replies carry the request's seqid and the name `<request name>_ACK`; one-way calls get none.
//! A real MetaServer that is not the leader would forward before checking whether it is active;
//! here "not active" wins, so a test can make any meta say it.
//!
//! # Partitions
//!
//! Partition `i` of a table with replicas `R` (n of them) has pid `gpid(app_id, i)`, ballot
//! `i + 3`, max_replica_count `n`, primary `R[i % n]`, the other replicas as secondaries in list
//! order, no last_drops, last_committed_decree `100 * (i + 1)` and flags 0. With host-port fields
//! on (for the cluster, or per table), `hp_primary`/`hp_secondaries` name the same replicas by
//! `replica_hosts` (default: the replica's IP) and `hp_last_drops` is empty. Configured like the
//! capture in `pegasus-rpc/tests/vectors/README.md`, it reproduces the captured replies byte for
//! byte.
//!
//! # Admin HTTP API
//!
//! JSON in and out; `{meta}` is a MetaServer's index (from 0) or its listen address. Errors come
//! back as `{"error": "..."}` with status 400 (bad input), 404 (no such meta or table) or 409
//! (the address cannot be bound again).
//!
//! | endpoint | body | effect |
//! |---|---|---|
//! | `GET /state` | | metas (address, running, leader, not_active, delay_ms), the leader, the tables |
//! | `POST /leader` | `{"meta": 1}`, `{"meta": "127.0.0.1:34602"}` or `{"meta": null}` | changes the leader (null: none known) |
//! | `POST /metas/{meta}/stop` | | closes its listener and its connections |
//! | `POST /metas/{meta}/start` | | listens again on the same address |
//! | `PUT /metas/{meta}/not-active` | `{"not_active": true}` | answers query_config with `ERR_SERVICE_NOT_ACTIVE` |
//! | `PUT /metas/{meta}/delay` | `{"delay_ms": 250}` | holds every reply back that long |
//! | `GET /tables` | | the table specs |
//! | `PUT /tables/{name}` | `{"app_id": 3, "partition_count": 8, "replicas": ["ip:port", ...], "replica_hosts": [...]?, "host_port_fields": bool?}` | adds or replaces the table |
//! | `DELETE /tables/{name}` | | drops the table (404 if absent) |
//! | `GET /counters` | | [`Counters`]: requests in total, by meta, by RPC, by table; connections |
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
mod server;
mod state;
mod table;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::{Mutex, oneshot};
use tracing::info;

pub use config::{
    MAX_PARTITIONS, SimConfig, TableSpec, TablesFile, load_tables, parse_tables, validate_tables,
};
pub use state::{Counters, OTHER_KEY};

use state::{MetaSlot, Running, Shared};
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
            let listener = server::bind(addr).map_err(|source| SimError::Bind { addr, source })?;
            let bound = listener
                .local_addr()
                .map_err(|source| SimError::Bind { addr, source })?;
            listeners.push((bound, listener));
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
        let shared = Arc::new(Shared::new(
            metas,
            config.leader,
            config.tables,
            config.host_port_fields,
        ));
        let handle = SimHandle {
            shared,
            admin: Arc::new(Mutex::new(None)),
            admin_addr: None,
        };
        for (i, (_, listener)) in listeners.into_iter().enumerate() {
            let running = handle.spawn_meta(i, listener);
            *handle.shared.metas[i].running.lock().await = Some(running);
        }
        let handle = match config.admin_listen {
            Some(addr) => handle.start_admin(addr).await?,
            None => handle,
        };
        info!(
            metas = ?handle.meta_addrs(),
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

/// The whole cluster as `GET /state` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimState {
    pub leader: Option<SocketAddr>,
    pub host_port_fields: bool,
    pub metas: Vec<MetaState>,
    pub tables: Vec<TableSpec>,
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
            let listener = server::bind(addr).map_err(|source| SimError::Bind { addr, source })?;
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

    /// Adds a table, or replaces the one of the same name.
    pub fn put_table(&self, spec: TableSpec) -> Result<(), SimError> {
        spec.validate()?;
        let name = spec.name.clone();
        let table = Arc::new(Table::build(spec, self.shared.host_port_fields));
        self.shared.update(|v| {
            let mut tables = v.tables.clone();
            let clash = tables
                .values()
                .find(|t| t.spec.app_id == table.spec.app_id && t.spec.name != name);
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
            tables.insert(name.clone(), table);
            (v.leader, tables, Ok(()))
        })?;
        info!(table = %name, "table put");
        Ok(())
    }

    /// Drops a table; false if there was none of that name.
    pub fn drop_table(&self, name: &str) -> bool {
        let existed = self.shared.update(|v| {
            let mut tables = v.tables.clone();
            let existed = tables.remove(name).is_some();
            (v.leader, tables, existed)
        });
        info!(table = %name, existed, "table dropped");
        existed
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
        }
    }

    /// Stops every MetaServer and the admin API.
    pub async fn shutdown(&self) {
        for i in 0..self.shared.metas.len() {
            // Every index in range exists.
            let _ = self.stop_meta(i).await;
        }
        if let Some(r) = self.admin.lock().await.take() {
            let _ = r.stop.send(());
            let _ = r.task.await;
        }
        info!("simulated Pegasus cluster shut down");
    }

    fn slot(&self, i: usize) -> Result<&MetaSlot, SimError> {
        self.shared
            .metas
            .get(i)
            .ok_or_else(|| SimError::NoSuchMeta(i.to_string()))
    }

    /// Starts MetaServer `i`'s accept loop; the caller stores the result in its slot.
    fn spawn_meta(&self, i: usize, listener: tokio::net::TcpListener) -> Running {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(server::accept_loop(
            listener,
            i,
            self.shared.clone(),
            stopped,
        ));
        self.shared.metas[i]
            .listening
            .store(true, Ordering::Release);
        Running { stop, task }
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
