//! The proxy's side of the upstream: one [`MetaGroup`] (with its pooled connections) per cluster,
//! shared by every table routed there, and request coalescing: identical query_config requests
//! for one cluster that arrive while a call for them is in flight share that call. After a
//! failover thousands of clients ask at once; the cluster sees one call per distinct request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant as StdInstant;

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared, WeakShared};
use tokio::time::Instant;

use crate::clusters::{ClusterHealth, Routed};
use crate::metrics::{Metrics, ResultLabel};
use crate::route::RouteRecord;
use crate::warnings::Kind;
use pegasus_rpc::client::{GroupError, GroupOptions, GroupReply, MetaGroup, NoMetaServers};
use pegasus_rpc::codec::{self, ErrorCode, QueryCfgResponse};

/// A cluster's final answer to a query_config, ready to be given to any number of clients.
#[derive(Debug)]
pub struct Answer {
    /// The reply body (the result struct), possibly with the 2.6 fields stripped.
    pub body: Bytes,
    /// The application-level error of the response.
    pub err: ErrorCode,
    /// The MetaServer that answered.
    pub meta: String,
}

pub type CallFuture = BoxFuture<'static, Result<Arc<Answer>, GroupError>>;
/// A call as its waiters hold it: each clone is one waiter (one waker) of the call.
pub type SharedCall = Shared<CallFuture>;

/// A call in the in-flight table: weak, so that the table never keeps alive a call nobody waits
/// for (it would linger unpolled, one entry per distinct request), with the number that tells it
/// from a later call for the same request.
struct InFlight {
    id: u64,
    call: WeakShared<CallFuture>,
}

/// What every upstream call needs, shared by them all (one reference count per call, not one
/// per metric).
struct Calls {
    strip_host_ports: bool,
    in_flight: Mutex<HashMap<(usize, Bytes), InFlight>>,
    next_id: AtomicU64,
    metrics: Metrics,
    health: ClusterHealth,
}

/// Upstream groups by cluster, the calls in flight, and what those calls said of each cluster.
pub struct Upstreams {
    opts: GroupOptions,
    groups: Mutex<HashMap<RouteRecord, Weak<MetaGroup>>>,
    calls: Arc<Calls>,
}

impl Upstreams {
    pub fn new(
        opts: GroupOptions,
        strip_host_ports: bool,
        metrics: Metrics,
        health: ClusterHealth,
    ) -> Self {
        Upstreams {
            opts,
            groups: Mutex::new(HashMap::new()),
            calls: Arc::new(Calls {
                strip_host_ports,
                in_flight: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(0),
                metrics,
                health,
            }),
        }
    }

    /// The health of the clusters called, from the outcome of each call.
    pub fn health(&self) -> &ClusterHealth {
        &self.calls.health
    }

    /// The clusters routes use now (one row per cluster name).
    pub fn routed(&self) -> Vec<Routed> {
        let groups: Vec<Arc<MetaGroup>> = {
            let groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
            groups.values().filter_map(Weak::upgrade).collect()
        };
        let mut routed: Vec<Routed> = Vec::with_capacity(groups.len());
        for group in groups {
            if !routed.iter().any(|r| r.cluster == group.cluster()) {
                routed.push(Routed {
                    cluster: group.cluster().to_owned(),
                    meta_addrs: group.meta_addrs(),
                    leader: group.leader(),
                });
            }
        }
        routed
    }

    /// The group for a route record's cluster and MetaServers, shared by every route naming the
    /// same ones. The routes own their groups: when the last route using one goes (the record
    /// moved the table, or changed the MetaServer list), the group and its connections go too.
    /// A record without MetaServers (which a parsed record never is) has no group.
    pub fn group(&self, record: &RouteRecord) -> Result<Arc<MetaGroup>, NoMetaServers> {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(group) = groups.get(record).and_then(Weak::upgrade) {
            return Ok(group);
        }
        groups.retain(|_, g| g.strong_count() > 0);
        let group = Arc::new(MetaGroup::new(
            &record.cluster,
            &record.meta_addrs,
            self.opts.clone(),
        )?);
        groups.insert(record.clone(), Arc::downgrade(&group));
        Ok(group)
    }

    /// How many cluster groups are in use.
    pub fn group_count(&self) -> usize {
        let groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        groups.values().filter(|g| g.strong_count() > 0).count()
    }

    /// query_config with these args on `group`, sharing a call already in flight for the same
    /// group and args. Returns the answer and whether it was shared.
    pub async fn query_config(
        &self,
        group: &Arc<MetaGroup>,
        args: &Bytes,
        deadline: Instant,
    ) -> (Result<Arc<Answer>, GroupError>, bool) {
        let joined = self.join(group, args, || deadline);
        (joined.call.await, joined.shared)
    }

    /// The synchronous half of [`Upstreams::query_config`]: joins the call in flight for the
    /// same group and args, or starts one with the deadline `deadline()` gives (asked only then:
    /// a joined call keeps its first caller's). The call makes progress only while awaited.
    pub fn join(
        &self,
        group: &Arc<MetaGroup>,
        args: &Bytes,
        deadline: impl FnOnce() -> Instant,
    ) -> Joined {
        let key = (Arc::as_ptr(group) as usize, args.clone());
        let joined = {
            let mut in_flight = self
                .calls
                .in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            match in_flight
                .get(&key)
                .and_then(|f| Some((f.id, f.call.upgrade()?)))
            {
                Some((id, call)) => Joined {
                    id,
                    call,
                    shared: true,
                },
                None => {
                    let id = self.calls.next_id.fetch_add(1, Ordering::Relaxed);
                    let leave = LeaveInFlight {
                        calls: self.calls.clone(),
                        key: key.clone(),
                        id,
                    };
                    let call = start_call(leave, group.clone(), args.clone(), deadline());
                    // Never polled yet, so there is a weak handle to take.
                    if let Some(weak) = call.downgrade() {
                        in_flight.insert(key, InFlight { id, call: weak });
                    }
                    Joined {
                        id,
                        call,
                        shared: false,
                    }
                }
            }
        };
        if joined.shared {
            self.calls.metrics.coalesced.inc();
        }
        joined
    }

    /// Counts a request that shares a call its connection already waits on (and so did not
    /// need [`Upstreams::join`] to find it), as `join` counts the ones it finds.
    pub fn count_shared(&self) {
        self.calls.metrics.coalesced.inc();
    }
}

/// An upstream call joined or started by [`Upstreams::join`].
pub struct Joined {
    /// Tells this call from every other, also from a later call for the same request.
    pub id: u64,
    pub call: SharedCall,
    /// Whether the call was already in flight.
    pub shared: bool,
}

/// The call, driven by the requests waiting for it (whichever is polled), not by a task of its
/// own: a task of its own cost a spawn and two more hand-offs between threads per call, on the
/// path of every query. When every request waiting for it goes away (their clients closed), the
/// call is dropped (the table holds it weakly) and leaves the in-flight table, and its reply, if
/// one still comes, is discarded; such a call is not counted in the upstream metrics nor the
/// cluster health.
fn start_call(
    leave: LeaveInFlight,
    group: Arc<MetaGroup>,
    args: Bytes,
    deadline: Instant,
) -> SharedCall {
    async move {
        // Leaves the table when done, and also when dropped unfinished or on a panic.
        let calls = &leave.calls;
        let started = StdInstant::now();
        let result = group
            .call(codec::rpc::QUERY_CONFIG, &args, deadline)
            .await
            .and_then(|reply| no_rpc_error(group.cluster(), reply));
        let label = match &result {
            Ok(_) => "ok",
            Err(e) => e.metric_label(),
        };
        calls
            .metrics
            .upstream_calls
            .get_or_create(&ResultLabel { result: label })
            .inc();
        calls
            .metrics
            .upstream_latency
            .get_or_create(&ResultLabel { result: label })
            .observe(started.elapsed().as_secs_f64());
        calls.health.record(
            group.cluster(),
            group.meta_count(),
            || group.meta_addrs(),
            result.as_ref().map(|_| ()).map_err(ToString::to_string),
        );
        result.map(|reply| {
            let body = if calls.strip_host_ports {
                strip_host_ports(&reply.reply.body, group.cluster(), &calls.metrics)
            } else {
                reply.reply.body
            };
            Arc::new(Answer {
                body,
                err: reply.err,
                meta: reply.meta,
            })
        })
    }
    .boxed()
    .shared()
}

/// A query_config answered with an rpc-level error (`ERR_HANDLER_NOT_FOUND` from every
/// MetaServer) has no body to give a client, which must never get an rpc-level error to a
/// query_config: the cluster counts as unavailable.
fn no_rpc_error(cluster: &str, reply: GroupReply) -> Result<GroupReply, GroupError> {
    if reply.reply.rpc_error.is_ok() {
        return Ok(reply);
    }
    Err(GroupError::Unavailable {
        cluster: cluster.to_owned(),
        attempts: 0,
        last: format!("{} answered {}", reply.meta, reply.reply.rpc_error),
    })
}

/// Removes a call from the in-flight table when dropped, so that a failed call is never shared by
/// later requests.
struct LeaveInFlight {
    calls: Arc<Calls>,
    key: (usize, Bytes),
    id: u64,
}

impl Drop for LeaveInFlight {
    fn drop(&mut self) {
        let mut in_flight = self
            .calls
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // A later call for the same request may have taken the entry (this one was being
        // dropped when it came): that one stays.
        if in_flight.get(&self.key).is_some_and(|f| f.id == self.id) {
            in_flight.remove(&self.key);
        }
    }
}

/// Re-encodes a reply body without the 2.6 `hp_*` fields; returns it unchanged when it has none
/// or cannot be decoded (a reply we cannot decode we cannot improve either).
fn strip_host_ports(body: &Bytes, cluster: &str, metrics: &Metrics) -> Bytes {
    match QueryCfgResponse::from_result(body) {
        Ok(mut resp) if resp.has_host_ports() => {
            resp.strip_host_ports();
            let mut out = BytesMut::with_capacity(body.len());
            resp.to_result(&mut out);
            out.freeze()
        }
        Ok(_) => body.clone(),
        Err(e) => {
            if let Some(suppressed) = metrics.warnings.admit(Kind::StripFailed, cluster) {
                tracing::warn!(%cluster, error = %e, suppressed, "cannot decode a reply to strip its host_port fields; passing it through");
            }
            body.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn in_flight(upstreams: &Upstreams) -> usize {
        upstreams.calls.in_flight.lock().expect("lock").len()
    }

    /// A MetaServer that accepts and never answers: the call stays in flight until its waiters
    /// leave. When they all have, nothing of the call is left in the table, so a later request
    /// starts a call of its own instead of joining one nobody drives.
    #[tokio::test]
    async fn a_call_whose_waiters_all_left_leaves_the_table() {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = silent.local_addr().expect("addr").to_string();
        let _accepting = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = silent.accept().await {
                held.push(conn);
            }
        });
        let upstreams = Upstreams::new(
            GroupOptions::default(),
            false,
            Metrics::default(),
            ClusterHealth::new(Duration::from_secs(60)),
        );
        let group = upstreams
            .group(&RouteRecord::new("c", [addr]).expect("record"))
            .expect("group");
        let args = Bytes::from_static(b"the same args");
        let deadline = Instant::now() + Duration::from_secs(60);

        let first = upstreams.query_config(&group, &args, deadline);
        let second = upstreams.query_config(&group, &args, deadline);
        let both = futures::future::join(first, second);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), both)
                .await
                .is_err(),
            "nobody answers"
        );
        assert_eq!(in_flight(&upstreams), 0, "both waiters left");

        let third = upstreams.query_config(&group, &args, deadline);
        let mut third = Box::pin(third);
        assert!(futures::poll!(&mut third).is_pending());
        assert_eq!(in_flight(&upstreams), 1, "a new call, in the table");
        drop(third);
        assert_eq!(in_flight(&upstreams), 0);
    }
}
