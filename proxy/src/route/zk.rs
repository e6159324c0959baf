//! Routes read from ZooKeeper, lazily: the first query for a table reads `<root>/<table>`; later
//! queries are served from memory. One persistent recursive watch on `<root>` (ZooKeeper 3.6+)
//! tells the proxy of every change below it, so no table needs a watch of its own: what ZooKeeper
//! keeps for the proxy is one watch, however many tables are cached or were asked for.
//!
//! ```text
//!  session: connect --> watch <root> (persistent, recursive) --> serve --> re-read cached tables
//!  lookup(t) --miss--> slot(Loading) --get_data--> Found | Invalid | Missing (no node)
//!  event on <root>/t, t cached --> re-read t (the cached route keeps being served meanwhile)
//!  session supervisor: Disconnected -> routes served from memory, staleness grows
//!                      SyncConnected, Expired, Closed -> new session and root watch (the client
//!                                       crate does not set persistent watches again on a
//!                                       reconnect), then re-read every route, forget tables
//!                                       without one (events may have been missed)
//! ```
//! Concurrent first queries for one table wait on the same read. A record that turns bad after a
//! good one keeps the good one in force (and says so in `/routes` and the log). Every ZooKeeper
//! request is bounded by a timeout: the client queues requests while disconnected.
//!
//! What is remembered of tables without a route (no node, or the read failed) is bounded: at most
//! `max_missing` of them, each for at most `missing_ttl` (while the session is connected), the
//! oldest forgotten first. A forgotten table holds nothing: no watch, no task, no memory.
//!
//! A fleet of proxies must not stampede a ZooKeeper that comes back: reconnects and failed
//! re-reads wait with full jitter ([`super::backoff`]), and at most `max_concurrent_reads` reads
//! of one proxy are in flight at a time, however many tables a reconnect re-reads.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use zookeeper_client as zk;

use super::backoff::{Backoff, Jitter};
use super::{Group, Lookup, Resolver, Route, RouteInfo, RouteRecord, valid_table_name};
use crate::metrics::{Metrics, ReasonLabel, ResultLabel};
use crate::warnings::Kind;

/// Settings of the ZooKeeper route source.
#[derive(Clone, Debug)]
pub struct ZkOptions {
    /// `host:port[,host:port...]`.
    pub connect: String,
    /// The root under which `<table>` nodes live, e.g. `/metaproxy/c3srv-pegasus`.
    pub root: String,
    pub session_timeout: Duration,
    /// Bound on every ZooKeeper request.
    pub request_timeout: Duration,
    /// How long a failed first read is remembered before a query tries again.
    pub retry_after: Duration,
    /// Tables cached at most; past it, tables without a record are forgotten first.
    pub max_tables: usize,
    /// Tables without a route (no record, or the read failed) remembered at most; past it the
    /// oldest are forgotten.
    pub max_missing: usize,
    /// How long a table without a route is remembered while the session is connected.
    pub missing_ttl: Duration,
    /// ZooKeeper reads in flight at most (re-reads after a reconnect queue behind it).
    pub max_concurrent_reads: usize,
    /// The first retry of a connect or a re-read waits up to this long; each next one twice as
    /// long, up to `backoff_cap` (full jitter).
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Seeds the jitter, for tests that replay a sequence; `None` seeds it per process.
    pub jitter_seed: Option<u64>,
    /// Digest credentials sent on every session; `None`: anonymous.
    pub auth: Option<crate::zk_auth::ZkAuth>,
}

impl Default for ZkOptions {
    fn default() -> Self {
        ZkOptions {
            connect: String::new(),
            root: "/metaproxy".into(),
            session_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(5),
            retry_after: Duration::from_secs(1),
            max_tables: 100_000,
            max_missing: 10_000,
            missing_ttl: Duration::from_secs(30),
            max_concurrent_reads: 32,
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(5),
            jitter_seed: None,
            auth: None,
        }
    }
}

#[derive(Debug)]
enum SlotState<G> {
    Loading,
    Found(Arc<Route<G>>),
    /// No record, as read at `at`.
    Missing {
        at: Instant,
    },
    Invalid(String),
    /// The first read failed; nothing is known.
    Unavailable {
        reason: String,
        at: Instant,
    },
}

// By hand: a derived Clone would ask for `G: Clone`, and only the `Arc` is cloned.
impl<G> Clone for SlotState<G> {
    fn clone(&self) -> Self {
        match self {
            SlotState::Loading => SlotState::Loading,
            SlotState::Found(route) => SlotState::Found(route.clone()),
            SlotState::Missing { at } => SlotState::Missing { at: *at },
            SlotState::Invalid(e) => SlotState::Invalid(e.clone()),
            SlotState::Unavailable { reason, at } => SlotState::Unavailable {
                reason: reason.clone(),
                at: *at,
            },
        }
    }
}

impl<G> SlotState<G> {
    fn name(&self) -> &'static str {
        match self {
            SlotState::Loading => "loading",
            SlotState::Found(_) => "found",
            SlotState::Missing { .. } => "missing",
            SlotState::Invalid(_) => "invalid",
            SlotState::Unavailable { .. } => "unavailable",
        }
    }

    fn is_known(&self) -> bool {
        matches!(
            self,
            SlotState::Found(_) | SlotState::Missing { .. } | SlotState::Invalid(_)
        )
    }

    /// No route: no record, or nothing known because the read failed.
    fn is_negative(&self) -> bool {
        matches!(
            self,
            SlotState::Missing { .. } | SlotState::Unavailable { .. }
        )
    }
}

/// A slot's state, and the queries waiting for it to change. A `watch` channel did the same but
/// cost about 400 bytes of heap per table (its shared block has nine `Notify`s): 4 MiB of the
/// RSS for 10,000 cached routes.
struct StateCell<G> {
    value: RwLock<SlotState<G>>,
    changed: tokio::sync::Notify,
}

impl<G> StateCell<G> {
    fn new(state: SlotState<G>) -> Self {
        StateCell {
            value: RwLock::new(state),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// The current state. Not to be held across a change of the same slot (it is a read lock).
    fn borrow(&self) -> std::sync::RwLockReadGuard<'_, SlotState<G>> {
        self.value.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `change`; the waiters are woken when it says it changed the state.
    fn send_if_modified(&self, change: impl FnOnce(&mut SlotState<G>) -> bool) -> bool {
        let changed = change(&mut self.value.write().unwrap_or_else(|p| p.into_inner()));
        if changed {
            self.changed.notify_waiters();
        }
        changed
    }

    fn send_replace(&self, state: SlotState<G>) -> SlotState<G> {
        let old = std::mem::replace(
            &mut *self.value.write().unwrap_or_else(|p| p.into_inner()),
            state,
        );
        self.changed.notify_waiters();
        old
    }

    /// Resolves once the state satisfies `done` (at once when it already does).
    async fn wait_for(&self, done: impl Fn(&SlotState<G>) -> bool) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the state is looked at, so a change in between is not missed.
            changed.as_mut().enable();
            if done(&self.borrow()) {
                return;
            }
            changed.await;
        }
    }
}

struct Slot<G> {
    table: String,
    state: StateCell<G>,
    /// Incremented by each read; the result of an older read is dropped.
    generation: AtomicU64,
    /// Its entry in the queue of tables without a route; 0 while it has a route.
    negative: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl<G> Slot<G> {
    /// The slot of a table not read yet.
    fn loading(table: &str) -> Self {
        Slot {
            table: table.to_owned(),
            state: StateCell::new(SlotState::Loading),
            generation: AtomicU64::new(0),
            negative: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    fn set_error(&self, e: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }
}

struct Inner<G> {
    opts: ZkOptions,
    resolve: Resolver<G>,
    metrics: Metrics,
    client: RwLock<Option<zk::Client>>,
    ready: AtomicBool,
    connected: AtomicBool,
    /// Since when the session has not been connected (None while connected).
    unconfirmed_since: Mutex<Option<Instant>>,
    slots: RwLock<HashMap<String, Arc<Slot<G>>>>,
    /// One permit per ZooKeeper read in flight.
    reads: Semaphore,
    /// Seeds the jitter of each backoff.
    jitter: Mutex<Jitter>,
    /// Tables without a route, oldest first.
    negatives: Mutex<Negatives>,
}

/// The tables without a route, in the order they became so. An entry whose slot has since found
/// a route (or been replaced) is stale: its stamp no longer matches, and it is skipped.
#[derive(Default)]
struct Negatives {
    queue: VecDeque<Negative>,
    last_stamp: u64,
}

struct Negative {
    at: Instant,
    table: String,
    stamp: u64,
}

/// How many of the oldest entries of the negative queue to forget: those past `max`, and, while
/// the session is `connected` (an outage keeps what is known), those at least `ttl` old.
/// `ages` are the entries' ages, oldest first.
fn negatives_to_forget(
    ages: impl IntoIterator<Item = Duration>,
    len: usize,
    ttl: Duration,
    max: usize,
    connected: bool,
) -> usize {
    let over = len.saturating_sub(max);
    let expired = if connected {
        ages.into_iter().take_while(|age| *age >= ttl).count()
    } else {
        0
    };
    over.max(expired)
}

/// The ZooKeeper route source.
pub struct ZkRoutes<G> {
    inner: Arc<Inner<G>>,
    supervisor: JoinHandle<()>,
    sweeper: JoinHandle<()>,
}

impl<G: Group> ZkRoutes<G> {
    /// Starts the session supervisor; routes are served once the first session is up. `resolve`
    /// gives each record read its group.
    pub fn start(opts: ZkOptions, resolve: Resolver<G>, metrics: Metrics) -> Self {
        let inner = Arc::new(Inner::new(opts, resolve, metrics));
        let supervisor = tokio::spawn(supervise(inner.clone()));
        let sweeper = tokio::spawn(sweep_negatives(Arc::downgrade(&inner)));
        ZkRoutes {
            inner,
            supervisor,
            sweeper,
        }
    }

    pub async fn lookup(&self, table: &str) -> Lookup<G> {
        if !valid_table_name(table) {
            // Not a name a MetaServer would have; nothing to read (and no path to escape the root).
            return Lookup::Missing;
        }
        let slot = self.inner.slot(table);
        loop {
            let state = slot.state.borrow().clone();
            match state {
                SlotState::Found(route) => return Lookup::Found(route),
                SlotState::Missing { .. } => return Lookup::Missing,
                SlotState::Invalid(e) => return Lookup::Invalid(e),
                SlotState::Unavailable { reason, at } => {
                    if at.elapsed() < self.inner.opts.retry_after || !self.inner.begin_retry(&slot)
                    {
                        return Lookup::Unavailable(reason);
                    }
                }
                SlotState::Loading => {
                    let wait = self.inner.opts.request_timeout * 2 + Duration::from_millis(100);
                    let loaded = tokio::time::timeout(
                        wait,
                        slot.state.wait_for(|s| !matches!(s, SlotState::Loading)),
                    )
                    .await;
                    if loaded.is_err() {
                        return Lookup::Unavailable("ZooKeeper read still pending".into());
                    }
                }
            }
        }
    }

    /// The table's route when its slot holds one now: what [`ZkRoutes::lookup`] returns at once
    /// for a `Found` slot, without creating a slot or starting a read (`None` for everything
    /// else, which `lookup` then handles).
    pub fn cached(&self, table: &str) -> Option<Arc<Route<G>>> {
        let slots = self.inner.read_slots();
        match &*slots.get(table)?.state.borrow() {
            SlotState::Found(route) => Some(route.clone()),
            _ => None,
        }
    }

    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::Acquire)
    }

    pub fn staleness(&self) -> Duration {
        self.inner.staleness()
    }

    /// The current session, for tests that expire it from another client.
    pub fn session(&self) -> Option<zk::SessionInfo> {
        self.inner.client().map(|c| c.session().clone())
    }

    pub fn snapshot(&self) -> Vec<RouteInfo> {
        let slots: Vec<Arc<Slot<G>>> = self.inner.read_slots().values().cloned().collect();
        slots
            .iter()
            .map(|slot| {
                let state = slot.state.borrow().clone();
                let last_error = slot
                    .last_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                let route = match &state {
                    SlotState::Found(r) => Some(r.clone()),
                    _ => None,
                };
                RouteInfo::of(&slot.table, state.name(), route.as_deref(), last_error)
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.inner.read_slots().len()
    }

    /// Every table with a node under the root, read from ZooKeeper now (bounded by the request
    /// timeout): what list_apps asks the clusters about.
    pub async fn tables(&self) -> Result<Vec<String>, String> {
        let inner = &self.inner;
        let client = inner
            .client()
            .ok_or_else(|| "no ZooKeeper session".to_owned())?;
        let root = &inner.opts.root;
        let timeout = inner.opts.request_timeout;
        match tokio::time::timeout(timeout, client.list_children(root)).await {
            Err(_) => Err(format!("listing {root} timed out after {timeout:?}")),
            Ok(Ok(children)) => Ok(children
                .into_iter()
                .filter(|t| valid_table_name(t))
                .collect()),
            Ok(Err(zk::Error::NoNode)) => Ok(Vec::new()),
            Ok(Err(e)) => Err(format!("listing {root}: {e}")),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<G> ZkRoutes<G> {
    /// Ends the session and the supervisor; cached routes stay readable.
    pub fn shutdown(&self) {
        self.supervisor.abort();
        self.sweeper.abort();
        self.inner
            .client
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }
}

impl<G> Drop for ZkRoutes<G> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl<G: Group> Inner<G> {
    fn new(mut opts: ZkOptions, resolve: Resolver<G>, metrics: Metrics) -> Self {
        opts.root = opts.root.trim_end_matches('/').to_owned();
        let jitter = opts
            .jitter_seed
            .map_or_else(Jitter::from_entropy, Jitter::seeded);
        Inner {
            reads: Semaphore::new(opts.max_concurrent_reads.max(1)),
            jitter: Mutex::new(jitter),
            opts,
            resolve,
            metrics,
            client: RwLock::new(None),
            ready: AtomicBool::new(false),
            connected: AtomicBool::new(false),
            unconfirmed_since: Mutex::new(Some(Instant::now())),
            slots: RwLock::new(HashMap::new()),
            negatives: Mutex::new(Negatives::default()),
        }
    }

    /// A new retry sequence, with its own jitter.
    fn backoff(&self) -> Backoff {
        let seed = self
            .jitter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .next_u64();
        Backoff::new(
            self.opts.backoff_base,
            self.opts.backoff_cap,
            Jitter::seeded(seed),
        )
    }

    fn client(&self) -> Option<zk::Client> {
        self.client
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn read_slots(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Slot<G>>>> {
        self.slots.read().unwrap_or_else(|p| p.into_inner())
    }

    fn path(&self, table: &str) -> String {
        format!("{}/{}", self.opts.root, table)
    }

    fn staleness(&self) -> Duration {
        match *self
            .unconfirmed_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
        {
            Some(since) => since.elapsed(),
            None => Duration::ZERO,
        }
    }

    /// The table's slot, created (and its first read started) when absent, or when it says the
    /// table has no record and that answer has outlived `missing_ttl`.
    fn slot(self: &Arc<Self>, table: &str) -> Arc<Slot<G>> {
        if let Some(slot) = self.read_slots().get(table)
            && !self.is_expired(slot)
        {
            return slot.clone();
        }
        let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots.get(table)
            && !self.is_expired(slot)
        {
            return slot.clone();
        }
        if slots.len() >= self.opts.max_tables {
            evict_unrouted(&mut slots);
        }
        let slot = Arc::new(Slot::loading(table));
        slots.insert(table.to_owned(), slot.clone());
        tokio::spawn(refresh(self.clone(), slot.clone()));
        slot
    }

    /// Moves an `Unavailable` slot back to `Loading` and starts a read; false when another query
    /// already did.
    fn begin_retry(self: &Arc<Self>, slot: &Arc<Slot<G>>) -> bool {
        let started = slot.state.send_if_modified(|s| {
            if matches!(s, SlotState::Unavailable { .. }) {
                *s = SlotState::Loading;
                true
            } else {
                false
            }
        });
        if started {
            slot.negative.store(0, Ordering::Release);
            tokio::spawn(refresh(self.clone(), slot.clone()));
        }
        started
    }

    /// A "no record" answer read longer than `missing_ttl` ago, while connected: read again.
    fn is_expired(&self, slot: &Slot<G>) -> bool {
        matches!(*slot.state.borrow(), SlotState::Missing { at } if at.elapsed() >= self.opts.missing_ttl)
            && self.connected.load(Ordering::Acquire)
    }

    /// Sets a slot's state, keeping the queue of tables without a route in step.
    fn set_state(&self, slot: &Slot<G>, state: SlotState<G>) {
        let negative = state.is_negative();
        slot.state.send_replace(state);
        if !negative {
            slot.negative.store(0, Ordering::Release);
            return;
        }
        {
            let mut negatives = self.negatives.lock().unwrap_or_else(|p| p.into_inner());
            negatives.last_stamp += 1;
            let stamp = negatives.last_stamp;
            slot.negative.store(stamp, Ordering::Release);
            negatives.queue.push_back(Negative {
                at: Instant::now(),
                table: slot.table.clone(),
                stamp,
            });
        }
        if self.negatives_len() > self.opts.max_missing {
            self.sweep();
        }
    }

    fn negatives_len(&self) -> usize {
        self.negatives
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .queue
            .len()
    }

    /// Forgets the tables without a route that are too many or too old (see
    /// [`negatives_to_forget`]). Forgetting one drops its slot: nothing else refers to it.
    fn sweep(&self) {
        let forgotten: Vec<Negative> = {
            let mut negatives = self.negatives.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let n = negatives_to_forget(
                negatives.queue.iter().map(|e| now.duration_since(e.at)),
                negatives.queue.len(),
                self.opts.missing_ttl,
                self.opts.max_missing,
                self.connected.load(Ordering::Acquire),
            );
            let forgotten = negatives.queue.drain(..n).collect();
            if negatives.queue.capacity() > 64
                && negatives.queue.len() < negatives.queue.capacity() / 4
            {
                negatives.queue.shrink_to_fit();
            }
            forgotten
        };
        if forgotten.is_empty() {
            return;
        }
        let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
        for entry in forgotten {
            let still_negative = slots.get(&entry.table).is_some_and(|slot| {
                slot.negative.load(Ordering::Acquire) == entry.stamp
                    && slot.state.borrow().is_negative()
            });
            if still_negative {
                slots.remove(&entry.table);
            }
        }
        if slots.capacity() > 64 && slots.len() < slots.capacity() / 4 {
            slots.shrink_to_fit();
        }
    }

    /// Forgets every table without a route (after a reconnect, when changes may have been
    /// missed): the next query reads it again.
    fn forget_negatives(&self) {
        let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
        slots.retain(|_, slot| !slot.state.borrow().is_negative());
        self.negatives
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .queue
            .clear();
    }

    fn is_current(&self, slot: &Arc<Slot<G>>) -> bool {
        self.read_slots()
            .get(&slot.table)
            .is_some_and(|s| Arc::ptr_eq(s, slot))
    }

    fn zk_read(&self, result: &'static str) {
        self.metrics
            .zk_reads
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// Reads the table's znode: its data and version, or `None` when it does not exist. No watch:
    /// the root's persistent recursive watch covers every table.
    async fn read_znode(&self, table: &str) -> Result<Option<(Vec<u8>, i32)>, String> {
        // Never closed, so the permit always comes; the wait is the bound on reads in flight.
        let _permit = self
            .reads
            .acquire()
            .await
            .map_err(|_| "route source stopped".to_owned())?;
        let client = self
            .client()
            .ok_or_else(|| "no ZooKeeper session".to_owned())?;
        // A request made while disconnected waits for the connection, up to the request
        // timeout: longer than a client waits for its answer. Fail now instead; the query gets
        // ERR_SERVICE_NOT_ACTIVE at once (clients retry it) and a known route stays in force.
        if !self.connected.load(Ordering::Acquire) {
            return Err("ZooKeeper is disconnected".to_owned());
        }
        let path = self.path(table);
        let timeout = self.opts.request_timeout;
        match tokio::time::timeout(timeout, client.get_data(&path)).await {
            Err(_) => Err(format!("reading {path} timed out after {timeout:?}")),
            Ok(Ok((data, stat))) => Ok(Some((data, stat.version))),
            Ok(Err(zk::Error::NoNode)) => Ok(None),
            Ok(Err(e)) => Err(format!("reading {path}: {e}")),
        }
    }

    /// What a znode's content makes of the slot: a route (keeping the group in force when the
    /// record did not change), an invalid record, or no route.
    fn state_of(&self, slot: &Slot<G>, znode: Option<(Vec<u8>, i32)>) -> SlotState<G> {
        let Some((data, version)) = znode else {
            self.zk_read("missing");
            return SlotState::Missing { at: Instant::now() };
        };
        let path = self.path(&slot.table);
        let resolved = RouteRecord::parse(&data)
            .map_err(|e| (format!("{path}: {e}"), e.metric_label()))
            .and_then(|record| {
                let current = match &*slot.state.borrow() {
                    SlotState::Found(route) if route.record == record => Some(route.group.clone()),
                    _ => None,
                };
                match current {
                    Some(group) => Ok((record, group)),
                    None => match (self.resolve)(&record) {
                        Ok(group) => Ok((record, group)),
                        Err(e) => Err((format!("{path}: {e}"), e.metric_label())),
                    },
                }
            });
        match resolved {
            Ok((record, group)) => {
                self.zk_read("found");
                SlotState::Found(Arc::new(Route {
                    table: slot.table.clone(),
                    record,
                    version,
                    read_at: SystemTime::now(),
                    group,
                }))
            }
            Err((reason, label)) => {
                self.zk_read("invalid");
                self.metrics
                    .route_errors
                    .get_or_create(&ReasonLabel { reason: label })
                    .inc();
                SlotState::Invalid(reason)
            }
        }
    }
}

/// Forgets the tables that have no usable route, to make room.
fn evict_unrouted<G>(slots: &mut HashMap<String, Arc<Slot<G>>>) {
    let before = slots.len();
    slots.retain(|_, slot| {
        matches!(
            *slot.state.borrow(),
            SlotState::Found(_) | SlotState::Loading
        )
    });
    tracing::warn!(
        evicted = before - slots.len(),
        "route cache full; forgot tables without a route"
    );
}

/// Reads a table's record until it succeeds, or until a newer read or an eviction makes this one
/// pointless. A first read that fails leaves the slot `Unavailable` instead of retrying: queries
/// retry it. A known route keeps being served while this retries.
///
/// Boxed: it spawns the watch task, which calls it again.
fn refresh<G: Group>(inner: Arc<Inner<G>>, slot: Arc<Slot<G>>) -> BoxFuture<'static, ()> {
    Box::pin(refresh_inner(inner, slot))
}

async fn refresh_inner<G: Group>(inner: Arc<Inner<G>>, slot: Arc<Slot<G>>) {
    let generation = slot.generation.fetch_add(1, Ordering::AcqRel) + 1;
    let mut backoff = inner.backoff();
    loop {
        if slot.generation.load(Ordering::Acquire) != generation || !inner.is_current(&slot) {
            return;
        }
        let read = inner.read_znode(&slot.table).await;
        if slot.generation.load(Ordering::Acquire) != generation {
            // A newer read started meanwhile (an event came): its result is the one to keep.
            return;
        }
        match read {
            Ok(znode) => {
                let state = inner.state_of(&slot, znode);
                apply(&inner, &slot, state);
                return;
            }
            Err(reason) => {
                inner.zk_read("error");
                slot.set_error(Some(reason.clone()));
                let known = slot.state.borrow().is_known();
                if !known {
                    if let Some(suppressed) = inner.metrics.warnings.admit(Kind::ZkReadFailed, "") {
                        tracing::warn!(table = %slot.table, error = %reason, suppressed, "cannot read the route");
                    }
                    inner.set_state(
                        &slot,
                        SlotState::Unavailable {
                            reason,
                            at: Instant::now(),
                        },
                    );
                    return;
                }
                let wait = backoff.next_delay();
                if let Some(suppressed) = inner.metrics.warnings.admit(Kind::ZkReadFailed, "") {
                    tracing::warn!(table = %slot.table, error = %reason, retry_in = ?wait, suppressed, "cannot re-read the route; serving the cached one");
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Installs a read's result, keeping a good route in force over a bad record.
fn apply<G: Group>(inner: &Inner<G>, slot: &Slot<G>, new: SlotState<G>) {
    let table = &slot.table;
    let old = slot.state.borrow().clone();
    match (&old, new) {
        (SlotState::Found(route), SlotState::Invalid(e)) => {
            tracing::error!(%table, error = %e, cluster = %route.record.cluster, "route record is invalid; keeping the previous route");
            slot.set_error(Some(e));
        }
        (_, SlotState::Invalid(e)) => {
            tracing::error!(%table, error = %e, "route record is invalid");
            slot.set_error(Some(e.clone()));
            inner.set_state(slot, SlotState::Invalid(e));
        }
        (old, SlotState::Found(route)) => {
            match old {
                SlotState::Found(prev) if prev.record == route.record => {}
                SlotState::Found(prev) => tracing::info!(
                    %table, from = %prev.record, to = %route.record, version = route.version, "route changed"
                ),
                _ => {
                    tracing::info!(%table, route = %route.record, version = route.version, "route loaded")
                }
            }
            slot.set_error(None);
            inner.set_state(slot, SlotState::Found(route));
        }
        (old, new) => {
            if let SlotState::Found(prev) = old {
                tracing::info!(%table, was = %prev.record, "route record deleted; table unrouted");
            }
            slot.set_error(None);
            inner.set_state(slot, new);
        }
    }
}

/// Follows the root's persistent recursive watch for one session: a created, changed or deleted
/// `<root>/<table>` whose table is cached is read again. Other events (tables nobody asked for,
/// deeper nodes, the root itself) are ignored. Ends when the session does: the watcher must not
/// be polled after a terminal event.
async fn watch_root<G: Group>(inner: Arc<Inner<G>>, mut watcher: zk::PersistentWatcher) {
    loop {
        let event = watcher.changed().await;
        match event.event_type {
            zk::EventType::Session if event.session_state.is_terminated() => return,
            // Disconnected and reconnected: the supervisor re-reads.
            zk::EventType::Session | zk::EventType::NodeChildrenChanged => {}
            zk::EventType::NodeCreated
            | zk::EventType::NodeDeleted
            | zk::EventType::NodeDataChanged => {
                let Some(table) = table_of(&inner.opts.root, &event.path) else {
                    continue;
                };
                let slot = inner.read_slots().get(table).cloned();
                if let Some(slot) = slot {
                    tracing::debug!(%table, event = ?event.event_type, "route record changed");
                    tokio::spawn(refresh(inner.clone(), slot));
                }
            }
        }
    }
}

/// The table a path under `root` is the record of: `<root>/<table>`, nothing deeper.
fn table_of<'a>(root: &str, path: &'a str) -> Option<&'a str> {
    let table = path.strip_prefix(root)?.strip_prefix('/')?;
    (!table.is_empty() && !table.contains('/')).then_some(table)
}

/// Forgets old tables without a route from time to time, so that memory goes back down once the
/// clients that asked for them are gone. Ends with the route source.
async fn sweep_negatives<G: Group>(inner: std::sync::Weak<Inner<G>>) {
    let every = match inner.upgrade() {
        Some(inner) => {
            (inner.opts.missing_ttl / 2).clamp(Duration::from_millis(100), Duration::from_secs(10))
        }
        None => return,
    };
    loop {
        tokio::time::sleep(every).await;
        match inner.upgrade() {
            Some(inner) => inner.sweep(),
            None => return,
        }
    }
}

/// After a reconnect or on a new session, when changes may have been missed: re-reads every
/// cached route and forgets the tables without one (the next query reads them again).
fn refresh_all<G: Group>(inner: &Arc<Inner<G>>) {
    inner.forget_negatives();
    let slots: Vec<Arc<Slot<G>>> = inner.read_slots().values().cloned().collect();
    for slot in slots {
        if slot.state.borrow().is_known() {
            tokio::spawn(refresh(inner.clone(), slot));
        }
    }
}

fn set_connected<G>(inner: &Inner<G>, connected: bool) {
    inner.connected.store(connected, Ordering::Release);
    inner.metrics.zk_connected.set(i64::from(connected));
    let mut since = inner
        .unconfirmed_since
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if connected {
        *since = None;
    } else if since.is_none() {
        *since = Some(Instant::now());
    }
}

/// Keeps a ZooKeeper session: connects, follows its state, and builds a new one when it ends.
/// Every new connect, after a failure or after a session ended, waits its jittered backoff; the
/// backoff starts over only after a session that lasted, so a flapping one does not make the
/// whole fleet reconnect in step.
async fn supervise<G: Group>(inner: Arc<Inner<G>>) {
    let mut backoff = inner.backoff();
    let mut failures = 0u32;
    loop {
        let mut connector =
            zk::Client::connector().with_session_timeout(inner.opts.session_timeout);
        if let Some(auth) = &inner.opts.auth {
            connector = connector.with_auth(crate::zk_auth::SCHEME, &auth.auth_bytes());
        }
        let connect_timeout = inner.opts.session_timeout.max(Duration::from_secs(2));
        let client = match tokio::time::timeout(
            connect_timeout,
            connector.connect(&inner.opts.connect),
        )
        .await
        {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                failures += 1;
                if failures == 1 || failures.is_power_of_two() {
                    tracing::warn!(zk = %inner.opts.connect, error = %e, failures, "cannot connect to ZooKeeper; retrying");
                }
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
            Err(_) => {
                failures += 1;
                if failures == 1 || failures.is_power_of_two() {
                    tracing::warn!(zk = %inner.opts.connect, failures, "ZooKeeper connect timed out; retrying");
                }
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        // The root watch comes before any read on this session, so that no change after a
        // read can go unnoticed.
        let root = inner.opts.root.clone();
        let watcher = match tokio::time::timeout(
            inner.opts.request_timeout,
            client.watch(&root, zk::AddWatchMode::PersistentRecursive),
        )
        .await
        {
            Ok(Ok(watcher)) => watcher,
            outcome => {
                failures += 1;
                let error = match outcome {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".to_owned(),
                };
                tracing::warn!(zk = %inner.opts.connect, %root, %error, failures, "cannot watch the route root (ZooKeeper 3.6 or later is needed); retrying with a new session");
                drop(client);
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        failures = 0;
        let session_start = Instant::now();
        tracing::info!(
            zk = %inner.opts.connect,
            session = %client.session_id(),
            timeout = ?client.session_timeout(),
            "ZooKeeper session established"
        );
        inner.metrics.zk_sessions.inc();
        let mut states = client.state_watcher();
        let events = AbortOnDrop(tokio::spawn(watch_root(inner.clone(), watcher)));
        *inner.client.write().unwrap_or_else(|p| p.into_inner()) = Some(client);
        set_connected(&inner, true);
        inner.ready.store(true, Ordering::Release);
        refresh_all(&inner);

        loop {
            match states.changed().await {
                zk::SessionState::Disconnected => {
                    tracing::warn!("ZooKeeper disconnected; serving cached routes");
                    set_connected(&inner, false);
                }
                // zookeeper-client 0.11.2 does not register persistent watches again when it
                // reconnects a session (its SetWatches leaves them out), and a ZooKeeper server
                // keeps watches per connection: after a reconnect the root watch is gone. A new
                // session sets it again and re-reads every cached route, as after an expiry.
                state => {
                    if matches!(
                        state,
                        zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly
                    ) {
                        tracing::info!(
                            "ZooKeeper reconnected; a new session sets the root watch again"
                        );
                    } else {
                        tracing::warn!(?state, "ZooKeeper session ended; building a new one");
                        inner.metrics.zk_session_expirations.inc();
                    }
                    set_connected(&inner, false);
                    inner
                        .client
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .take();
                    break;
                }
            }
        }
        drop(events);
        if session_start.elapsed() >= inner.opts.backoff_cap {
            backoff.reset();
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// Aborts a task when dropped: the root watch's follower ends with its session, also when the
/// supervisor itself is aborted.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::ResolveError;

    #[derive(Debug)]
    struct NoGroup;

    impl Group for NoGroup {
        fn leader(&self) -> String {
            String::new()
        }
    }

    const SEED: u64 = 42;

    /// A route source that never gets a session (no supervisor runs): every read fails at once.
    fn sessionless(max_concurrent_reads: usize) -> Arc<Inner<NoGroup>> {
        let resolve: Resolver<NoGroup> =
            Arc::new(|_: &RouteRecord| Ok::<_, ResolveError>(Arc::new(NoGroup)));
        let opts = ZkOptions {
            max_concurrent_reads,
            jitter_seed: Some(SEED),
            ..ZkOptions::default()
        };
        Arc::new(Inner::new(opts, resolve, Metrics::default()))
    }

    fn errors(inner: &Inner<NoGroup>) -> u64 {
        inner
            .metrics
            .zk_reads
            .get_or_create(&ResultLabel { result: "error" })
            .get()
    }

    async fn settled(slot: &Slot<NoGroup>) -> &'static str {
        slot.state
            .wait_for(|s| !matches!(s, SlotState::Loading))
            .await;
        slot.state.borrow().name()
    }

    #[tokio::test]
    async fn reads_wait_for_a_permit() {
        let inner = sessionless(1);
        let held = inner.reads.try_acquire().expect("the only permit");
        let slot = inner.slot("temp");
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert_eq!(slot.state.borrow().name(), "loading", "queued for a permit");
        assert_eq!(errors(&inner), 0, "no read made");
        drop(held);
        assert_eq!(settled(&slot).await, "unavailable", "read, and failed");
        assert_eq!(errors(&inner), 1);
    }

    /// A known route whose re-reads keep failing is retried at the times the seeded jitter
    /// gives: full jitter of 100 ms, 200 ms, 400 ms ... (paused time, so exact).
    #[tokio::test(start_paused = true)]
    async fn failed_re_reads_retry_on_the_jittered_schedule() {
        let inner = sessionless(32);
        let slot = inner.slot("temp");
        assert_eq!(
            settled(&slot).await,
            "unavailable",
            "a first read is not retried"
        );
        slot.state.send_replace(SlotState::Found(Arc::new(Route {
            table: "temp".into(),
            record: RouteRecord::new("c1", ["h:1"]).expect("record"),
            version: 0,
            read_at: SystemTime::now(),
            group: Arc::new(NoGroup),
        })));

        // The same draws as the source: its seed, one backoff already taken by the first read.
        let mut seeds = Jitter::seeded(SEED);
        seeds.next_u64();
        let opts = ZkOptions::default();
        let mut expected = Backoff::new(
            opts.backoff_base,
            opts.backoff_cap,
            Jitter::seeded(seeds.next_u64()),
        );
        let before = errors(&inner);
        let start = Instant::now();
        tokio::spawn(refresh(inner.clone(), slot.clone()));
        let mut read_at = start;
        for retry in 0..6u64 {
            let wait = expected.next_delay();
            assert!(
                wait < opts.backoff_base * 2u32.pow(retry as u32),
                "retry {retry}: {wait:?}"
            );
            // Halfway through the wait: the reads so far have failed, the next is not made yet.
            tokio::time::sleep_until(read_at + wait / 2).await;
            if !wait.is_zero() {
                assert_eq!(errors(&inner) - before, retry + 1, "retry {retry}");
            }
            read_at += wait;
        }
        assert_eq!(slot.state.borrow().name(), "found", "served all along");
    }
}

#[cfg(test)]
mod negative_tests {
    use super::*;
    use crate::route::ResolveError;

    #[derive(Debug)]
    struct NoGroup;

    impl Group for NoGroup {
        fn leader(&self) -> String {
            String::new()
        }
    }

    #[test]
    fn which_negative_entries_are_forgotten() {
        let s = Duration::from_secs;
        // (ages oldest first, ttl, max, connected) -> forgotten from the front
        let cases: &[(&[u64], u64, usize, bool, usize)] = &[
            (&[], 30, 10, true, 0),
            (&[40, 31, 30, 29, 1], 30, 10, true, 3),
            (&[40, 31, 30, 29, 1], 30, 10, false, 0),
            (&[5, 4, 3, 2, 1], 30, 3, true, 2),
            (&[5, 4, 3, 2, 1], 30, 3, false, 2),
            (&[40, 4, 3, 2, 1], 30, 3, true, 2),
            (&[40, 39, 38, 2, 1], 30, 4, true, 3),
            (&[1, 1], 30, 0, true, 2),
        ];
        for (ages, ttl, max, connected, want) in cases {
            let got = negatives_to_forget(
                ages.iter().map(|a| s(*a)),
                ages.len(),
                s(*ttl),
                *max,
                *connected,
            );
            assert_eq!(
                got, *want,
                "{ages:?} ttl {ttl} max {max} connected {connected}"
            );
        }
    }

    #[test]
    fn only_a_direct_child_of_the_root_is_a_table() {
        let cases = [
            ("/m/c3/temp", Some("temp")),
            ("/m/c3/temp/deeper", None),
            ("/m/c3", None),
            ("/m/c3/", None),
            ("/m/c3x/temp", None),
            ("/other/temp", None),
        ];
        for (path, want) in cases {
            assert_eq!(table_of("/m/c3", path), want, "{path}");
        }
    }

    fn source(max_missing: usize, ttl: Duration) -> Arc<Inner<NoGroup>> {
        let resolve: Resolver<NoGroup> =
            Arc::new(|_: &RouteRecord| Ok::<_, ResolveError>(Arc::new(NoGroup)));
        let opts = ZkOptions {
            max_missing,
            missing_ttl: ttl,
            ..ZkOptions::default()
        };
        let inner = Arc::new(Inner::new(opts, resolve, Metrics::default()));
        set_connected(&inner, true);
        inner
    }

    /// A slot as a read that found no node leaves it.
    fn missing(inner: &Arc<Inner<NoGroup>>, table: &str) -> Arc<Slot<NoGroup>> {
        let slot = Arc::new(Slot::loading(table));
        inner
            .slots
            .write()
            .expect("lock")
            .insert(table.to_owned(), slot.clone());
        inner.set_state(&slot, SlotState::Missing { at: Instant::now() });
        slot
    }

    #[tokio::test(start_paused = true)]
    async fn tables_without_a_route_are_bounded_in_number_and_age() {
        let inner = source(3, Duration::from_secs(30));
        for i in 0..5 {
            missing(&inner, &format!("t{i}"));
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        let mut kept: Vec<String> = inner.read_slots().keys().cloned().collect();
        kept.sort();
        assert_eq!(kept, ["t2", "t3", "t4"], "the oldest forgotten first");

        // One of them gets a route: it is no longer a negative entry and is never aged out.
        let t3 = inner.read_slots().get("t3").cloned().expect("t3");
        inner.set_state(&t3, SlotState::Invalid("bad".into()));
        tokio::time::advance(Duration::from_secs(40)).await;
        inner.sweep();
        let kept: Vec<String> = inner.read_slots().keys().cloned().collect();
        assert_eq!(kept, ["t3"], "the rest aged out");
        assert_eq!(inner.negatives_len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_keeps_them_past_their_age_but_not_past_the_count() {
        let inner = source(2, Duration::from_secs(30));
        missing(&inner, "a");
        missing(&inner, "b");
        set_connected(&inner, false);
        tokio::time::advance(Duration::from_secs(60)).await;
        inner.sweep();
        assert_eq!(inner.read_slots().len(), 2, "kept while disconnected");
        assert!(!inner.is_expired(&inner.read_slots()["a"]));
        missing(&inner, "c");
        assert_eq!(inner.read_slots().len(), 2, "the count bound holds");
        set_connected(&inner, true);
        assert!(
            inner.is_expired(&inner.read_slots()["b"]),
            "read again once connected"
        );
        inner.sweep();
        assert_eq!(inner.read_slots().len(), 1, "only c is young enough");
    }

    #[tokio::test(start_paused = true)]
    async fn a_reconnect_forgets_them_all() {
        let inner = source(10, Duration::from_secs(30));
        missing(&inner, "a");
        missing(&inner, "b");
        inner.forget_negatives();
        assert!(inner.read_slots().is_empty());
        assert_eq!(inner.negatives_len(), 0);
    }
}
