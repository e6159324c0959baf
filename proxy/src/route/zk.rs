//! Routes read from ZooKeeper, lazily: the first query for a table reads `<root>/<table>` and sets a
//! watch; later queries are served from memory until the watch fires.
//!
//! ```text
//!  lookup(t) --miss--> slot(Loading) --get_and_watch_data--> Found | Invalid  (+ data watch)
//!                                   \--NoNode--> check_and_watch_stat --> Missing (+ exists watch)
//!  watch fires --> re-read (the cached route keeps being served meanwhile)
//!  session supervisor: Disconnected -> routes served from memory, staleness grows
//!                      SyncConnected -> re-read every table (events may have been missed)
//!                      Expired/Closed -> new session, re-read every table, watches re-armed
//! ```
//! Concurrent first queries for one table wait on the same read. A record that turns bad after a
//! good one keeps the good one in force (and says so in `/routes` and the log). Every ZooKeeper
//! request is bounded by a timeout: the client queues requests while disconnected.
//!
//! A fleet of proxies must not stampede a ZooKeeper that comes back: reconnects and failed
//! re-reads wait with full jitter ([`super::backoff`]), and at most `max_concurrent_reads` reads
//! of one proxy are in flight at a time, however many tables a reconnect re-reads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use zookeeper_client as zk;

use super::backoff::{Backoff, Jitter};
use super::{Group, Lookup, Resolver, Route, RouteInfo, RouteRecord, valid_table_name};
use crate::metrics::{Metrics, ReasonLabel, ResultLabel};

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
    /// ZooKeeper reads in flight at most (re-reads after a reconnect queue behind it).
    pub max_concurrent_reads: usize,
    /// The first retry of a connect or a re-read waits up to this long; each next one twice as
    /// long, up to `backoff_cap` (full jitter).
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Seeds the jitter, for tests that replay a sequence; `None` seeds it per process.
    pub jitter_seed: Option<u64>,
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
            max_concurrent_reads: 32,
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(5),
            jitter_seed: None,
        }
    }
}

#[derive(Debug)]
enum SlotState<G> {
    Loading,
    Found(Arc<Route<G>>),
    Missing,
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
            SlotState::Missing => SlotState::Missing,
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
            SlotState::Missing => "missing",
            SlotState::Invalid(_) => "invalid",
            SlotState::Unavailable { .. } => "unavailable",
        }
    }

    fn is_known(&self) -> bool {
        matches!(
            self,
            SlotState::Found(_) | SlotState::Missing | SlotState::Invalid(_)
        )
    }
}

struct Slot<G> {
    table: String,
    state: watch::Sender<SlotState<G>>,
    /// Incremented by each read; a watch armed by an older read is ignored.
    generation: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl<G> Slot<G> {
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
}

/// The ZooKeeper route source.
pub struct ZkRoutes<G> {
    inner: Arc<Inner<G>>,
    supervisor: JoinHandle<()>,
}

impl<G: Group> ZkRoutes<G> {
    /// Starts the session supervisor; routes are served once the first session is up. `resolve`
    /// gives each record read its group.
    pub fn start(opts: ZkOptions, resolve: Resolver<G>, metrics: Metrics) -> Self {
        let inner = Arc::new(Inner::new(opts, resolve, metrics));
        let supervisor = tokio::spawn(supervise(inner.clone()));
        ZkRoutes { inner, supervisor }
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
                SlotState::Missing => return Lookup::Missing,
                SlotState::Invalid(e) => return Lookup::Invalid(e),
                SlotState::Unavailable { reason, at } => {
                    if at.elapsed() < self.inner.opts.retry_after || !self.inner.begin_retry(&slot)
                    {
                        return Lookup::Unavailable(reason);
                    }
                }
                SlotState::Loading => {
                    let mut rx = slot.state.subscribe();
                    let wait = self.inner.opts.request_timeout * 2 + Duration::from_millis(100);
                    let loaded = tokio::time::timeout(
                        wait,
                        rx.wait_for(|s| !matches!(s, SlotState::Loading)),
                    )
                    .await;
                    if !matches!(loaded, Ok(Ok(_))) {
                        return Lookup::Unavailable("ZooKeeper read still pending".into());
                    }
                }
            }
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

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<G> ZkRoutes<G> {
    /// Ends the session and the supervisor; cached routes stay readable.
    pub fn shutdown(&self) {
        self.supervisor.abort();
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

    /// The table's slot, created (and its first read started) when absent.
    fn slot(self: &Arc<Self>, table: &str) -> Arc<Slot<G>> {
        if let Some(slot) = self.read_slots().get(table) {
            return slot.clone();
        }
        let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots.get(table) {
            return slot.clone();
        }
        if slots.len() >= self.opts.max_tables {
            evict_unrouted(&mut slots);
        }
        let slot = Arc::new(Slot {
            table: table.to_owned(),
            state: watch::Sender::new(SlotState::Loading),
            generation: AtomicU64::new(0),
            last_error: Mutex::new(None),
        });
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
            tokio::spawn(refresh(self.clone(), slot.clone()));
        }
        started
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

    /// Reads the table's znode and arms a watch on it: its data and version, or `None` when it
    /// does not exist.
    async fn read_znode(
        &self,
        table: &str,
    ) -> Result<(Option<(Vec<u8>, i32)>, zk::OneshotWatcher), String> {
        // Never closed, so the permit always comes; the wait is the bound on reads in flight.
        let _permit = self
            .reads
            .acquire()
            .await
            .map_err(|_| "route source stopped".to_owned())?;
        let client = self
            .client()
            .ok_or_else(|| "no ZooKeeper session".to_owned())?;
        let path = self.path(table);
        let timeout = self.opts.request_timeout;
        for _ in 0..3 {
            match tokio::time::timeout(timeout, client.get_and_watch_data(&path)).await {
                Err(_) => return Err(format!("reading {path} timed out after {timeout:?}")),
                Ok(Ok((data, stat, watcher))) => return Ok((Some((data, stat.version)), watcher)),
                Ok(Err(zk::Error::NoNode)) => {
                    match tokio::time::timeout(timeout, client.check_and_watch_stat(&path)).await {
                        Err(_) => {
                            return Err(format!("checking {path} timed out after {timeout:?}"));
                        }
                        Ok(Err(e)) => return Err(format!("checking {path}: {e}")),
                        Ok(Ok((None, watcher))) => return Ok((None, watcher)),
                        // Created between the two requests: read it again.
                        Ok(Ok((Some(_), _))) => continue,
                    }
                }
                Ok(Err(e)) => return Err(format!("reading {path}: {e}")),
            }
        }
        Err(format!("{path} keeps changing between reads"))
    }

    /// What a znode's content makes of the slot: a route (keeping the group in force when the
    /// record did not change), an invalid record, or no route.
    fn state_of(&self, slot: &Slot<G>, znode: Option<(Vec<u8>, i32)>) -> SlotState<G> {
        let Some((data, version)) = znode else {
            self.zk_read("missing");
            return SlotState::Missing;
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
        match inner.read_znode(&slot.table).await {
            Ok((znode, watcher)) => {
                apply(&slot, inner.state_of(&slot, znode));
                tokio::spawn(watch_record(
                    inner.clone(),
                    slot.clone(),
                    generation,
                    watcher,
                ));
                return;
            }
            Err(reason) => {
                inner.zk_read("error");
                slot.set_error(Some(reason.clone()));
                let known = slot.state.borrow().is_known();
                if !known {
                    tracing::warn!(table = %slot.table, error = %reason, "cannot read the route");
                    slot.state.send_replace(SlotState::Unavailable {
                        reason,
                        at: Instant::now(),
                    });
                    return;
                }
                let wait = backoff.next_delay();
                tracing::warn!(table = %slot.table, error = %reason, retry_in = ?wait, "cannot re-read the route; serving the cached one");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Installs a read's result, keeping a good route in force over a bad record.
fn apply<G>(slot: &Slot<G>, new: SlotState<G>) {
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
            slot.state.send_replace(SlotState::Invalid(e));
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
            slot.state.send_replace(SlotState::Found(route));
        }
        (old, new) => {
            if let SlotState::Found(prev) = old {
                tracing::info!(%table, was = %prev.record, "route record deleted; table unrouted");
            }
            slot.set_error(None);
            slot.state.send_replace(new);
        }
    }
}

/// Waits for the watch armed by read `generation` and reads again when it fires.
async fn watch_record<G: Group>(
    inner: Arc<Inner<G>>,
    slot: Arc<Slot<G>>,
    generation: u64,
    watcher: zk::OneshotWatcher,
) {
    let event = watcher.changed().await;
    if event.event_type == zk::EventType::Session {
        // A terminal session state: the supervisor re-reads every table on the next session.
        return;
    }
    if slot.generation.load(Ordering::Acquire) == generation && inner.is_current(&slot) {
        tracing::debug!(table = %slot.table, event = ?event.event_type, "route record changed");
        refresh(inner, slot).await;
    }
}

/// Re-reads every cached table (after a reconnect or on a new session).
fn refresh_all<G: Group>(inner: &Arc<Inner<G>>) {
    let slots: Vec<Arc<Slot<G>>> = inner.read_slots().values().cloned().collect();
    for slot in slots {
        let retry = slot.state.send_if_modified(|s| {
            if matches!(s, SlotState::Unavailable { .. }) {
                *s = SlotState::Loading;
                true
            } else {
                false
            }
        });
        if retry || slot.state.borrow().is_known() {
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
        let connector = zk::Client::connector().with_session_timeout(inner.opts.session_timeout);
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
                zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
                    tracing::info!("ZooKeeper reconnected; re-reading cached routes");
                    set_connected(&inner, true);
                    refresh_all(&inner);
                }
                state => {
                    tracing::warn!(?state, "ZooKeeper session ended; building a new one");
                    inner.metrics.zk_session_expirations.inc();
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
        if session_start.elapsed() >= inner.opts.backoff_cap {
            backoff.reset();
        }
        tokio::time::sleep(backoff.next_delay()).await;
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
        let mut states = slot.state.subscribe();
        let state = states
            .wait_for(|s| !matches!(s, SlotState::Loading))
            .await
            .expect("the slot lives")
            .clone();
        state.name()
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
