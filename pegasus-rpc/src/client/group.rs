//! The MetaServers of one Pegasus cluster, called as one: the call goes to the MetaServer believed
//! to be the leader; an `ERR_FORWARD_TO_OTHERS` answer is followed to the leader it names,
//! and never returned; a timeout, a lost connection or an rpc-level error moves on to the next
//! MetaServer; after `hedge_after` without an answer a second MetaServer is asked in parallel and
//! the first final answer wins. The leader that gave the final answer is remembered.
//!
//! How far a call may be repeated is its [`CallPolicy`]: a read ([`CallPolicy::READ`]) is hedged
//! and retried anywhere; a write ([`CallPolicy::WRITE`]) is never hedged, and a MetaServer it may
//! have reached (the attempt timed out, the connection was lost, the answer was unreadable) is
//! not asked again within the call, so that the leader cannot apply it twice. A forward reply and
//! a refused connection say the request was not applied: those are followed and retried as for a
//! read ([`may_ask_again`]). Another MetaServer may still be asked after such a failure: a
//! follower only forwards; should leadership move to it meanwhile, a write could be applied twice
//! after all (it then usually answers that the work exists, e.g. `ERR_APP_EXIST`).
//!
//! An rpc-level `ERR_HANDLER_NOT_FOUND` (a MetaServer older than the RPC) is not retried on the
//! MetaServer that said it; when it is all the MetaServers said (forward replies aside, and no
//! final answer came), it is the group's answer, so the caller learns the real reason instead
//! of "unavailable".
//!
//! A leader address learned from a forward reply that matches none of the configured addresses
//! (they may be DNS names) is added to the group, as the Java client does (docs/protocol.md §10).
//! Only query_config replies name the leader; a forward reply to an admin RPC names none
//! (docs/protocol.md §14), and the next MetaServer is asked instead.
//!
//! Besides the raw [`MetaGroup::call`], the group decodes the answers of the RPCs this project
//! makes: [`MetaGroup::query_config`], and for fencing and switchover
//! [`MetaGroup::update_app_env`] and [`MetaGroup::query_duplication`].

use std::net::{SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use thiserror::Error;
use tokio::time::Instant;

use super::conn::{CallError, ClientOptions};
use super::meta::MetaClient;
use crate::codec::{
    self, CodecError, ErrorCode, QueryCfgRequest, QueryCfgResponse, QueryDuplicationRequest,
    QueryDuplicationResponse, ReplyFrame, UpdateAppEnvRequest, UpdateAppEnvResponse,
};

/// Settings of a [`MetaGroup`].
#[derive(Clone, Debug)]
pub struct GroupOptions {
    pub client: ClientOptions,
    /// How long one MetaServer gets to answer before the next one is tried (default 1 s).
    pub attempt_timeout: Duration,
    /// When set, a second MetaServer is asked if the first has not answered after this long
    /// (default 500 ms).
    pub hedge_after: Option<Duration>,
    /// How many leader addresses learned from forward replies may be added to the group.
    pub max_learned: usize,
}

impl Default for GroupOptions {
    fn default() -> Self {
        GroupOptions {
            client: ClientOptions::default(),
            attempt_timeout: Duration::from_secs(1),
            hedge_after: Some(Duration::from_millis(500)),
            max_learned: 8,
        }
    }
}

/// How far one call may be repeated (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallPolicy {
    /// Whether a second MetaServer may be asked after `hedge_after` while the first has not
    /// answered (also needs [`GroupOptions::hedge_after`]).
    pub hedge: bool,
    /// Whether a MetaServer may be asked again after an attempt that may have reached it.
    pub retry_after_send: bool,
}

impl CallPolicy {
    /// For a call whose repetition does no harm: query_config, the reads, list_apps.
    pub const READ: CallPolicy = CallPolicy {
        hedge: true,
        retry_after_send: true,
    };
    /// For a call that changes something: at most once per MetaServer that may have got it.
    pub const WRITE: CallPolicy = CallPolicy {
        hedge: false,
        retry_after_send: false,
    };
}

/// Whether a failed attempt may have been applied by the MetaServer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Not applied: the connection was refused, or the MetaServer answered an rpc-level error
    /// (its handler never ran).
    NotApplied,
    /// Maybe applied: it may have arrived and run (a timeout, a lost connection, an unreadable
    /// answer).
    MaybeApplied,
}

impl Delivery {
    /// What a transport failure says of the request.
    pub fn of(error: &CallError) -> Delivery {
        match error {
            CallError::Connect { .. } | CallError::Rpc { .. } => Delivery::NotApplied,
            // A timeout may have struck while connecting; it cannot be told apart, so it counts
            // as sent.
            CallError::Timeout { .. }
            | CallError::ConnectionLost { .. }
            | CallError::BadReply { .. } => Delivery::MaybeApplied,
        }
    }
}

/// Whether the MetaServer of a failed attempt may be asked again within the same call.
pub fn may_ask_again(policy: CallPolicy, delivery: Delivery) -> bool {
    policy.retry_after_send || delivery == Delivery::NotApplied
}

/// Why no usable answer came from a cluster.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum GroupError {
    #[error("cluster {cluster}: no MetaServer gave an answer in {attempts} attempts; last: {last}")]
    Unavailable {
        cluster: String,
        attempts: usize,
        last: String,
    },
    /// The final answer is not the response the RPC has.
    #[error("cluster {cluster}: bad reply from {meta}: {source}")]
    BadReply {
        cluster: String,
        meta: String,
        source: CodecError,
    },
}

impl GroupError {
    /// A fixed, small label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            GroupError::Unavailable { .. } => "unavailable",
            GroupError::BadReply { .. } => "bad_reply",
        }
    }
}

/// Why a [`MetaGroup`] cannot be built: it needs at least one MetaServer to call.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("cluster {cluster}: no MetaServer address given")]
pub struct NoMetaServers {
    pub cluster: String,
}

impl NoMetaServers {
    /// A fixed, small label for metrics.
    pub fn metric_label(&self) -> &'static str {
        "no_meta_servers"
    }
}

/// A final answer from a cluster.
#[derive(Clone, Debug)]
pub struct GroupReply {
    /// The MetaServer's reply, as received (its seqid is the group's own).
    pub reply: ReplyFrame,
    /// The application-level `err` of the response.
    pub err: ErrorCode,
    /// Which MetaServer answered.
    pub meta: String,
    /// How many forward replies were followed to get here.
    pub redirects: u32,
}

enum Outcome {
    Final(ReplyFrame, ErrorCode),
    /// Not the leader; the leader's address when the reply named a valid one.
    Redirect(Option<SocketAddrV4>),
    /// A real answer that is not final (`ERR_SERVICE_NOT_ACTIVE`): kept in case no better one comes.
    Fallback(ReplyFrame, ErrorCode),
    /// The MetaServer has no handler for the RPC: kept, and answered if no one else has one.
    NoHandler(ReplyFrame),
    Failed(String, Delivery),
}

fn classify(result: Result<ReplyFrame, CallError>) -> Outcome {
    let reply = match result {
        Ok(reply) => reply,
        Err(e) => {
            let delivery = Delivery::of(&e);
            return Outcome::Failed(e.to_string(), delivery);
        }
    };
    if reply.rpc_error == ErrorCode::HANDLER_NOT_FOUND {
        return Outcome::NoHandler(reply);
    }
    if !reply.rpc_error.is_ok() {
        return Outcome::Failed(
            format!("rpc-level error {}", reply.rpc_error),
            Delivery::NotApplied,
        );
    }
    let err = match QueryCfgResponse::peek_err(&reply.body) {
        Ok(err) => err,
        Err(e) => return Outcome::Failed(format!("bad reply body: {e}"), Delivery::MaybeApplied),
    };
    if err == ErrorCode::FORWARD_TO_OTHERS {
        // Only a query_config forward names the leader (in partition 0's primary); any other
        // RPC's forward does not decode as one, or has no partition, and names none.
        let leader = QueryCfgResponse::from_result(&reply.body)
            .ok()
            .and_then(|r| r.partitions.first().and_then(|p| p.primary.to_socket()));
        Outcome::Redirect(leader)
    } else if err == ErrorCode::SERVICE_NOT_ACTIVE {
        Outcome::Fallback(reply, err)
    } else {
        Outcome::Final(reply, err)
    }
}

/// The MetaServers of one cluster.
pub struct MetaGroup {
    cluster: String,
    /// Never empty: built from a non-empty list, and only ever grows.
    metas: RwLock<Vec<Arc<MetaClient>>>,
    configured: usize,
    leader: AtomicUsize,
    opts: GroupOptions,
}

impl std::fmt::Debug for MetaGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaGroup")
            .field("cluster", &self.cluster)
            .field("metas", &self.meta_addrs())
            .field("leader", &self.leader())
            .finish()
    }
}

impl MetaGroup {
    /// A group over `meta_addrs` (`host:port`, resolved when connecting); an empty list is
    /// refused. No connection is made until the first call.
    pub fn new(
        cluster: impl Into<String>,
        meta_addrs: &[String],
        opts: GroupOptions,
    ) -> Result<Self, NoMetaServers> {
        let cluster = cluster.into();
        if meta_addrs.is_empty() {
            return Err(NoMetaServers { cluster });
        }
        let metas: Vec<_> = meta_addrs
            .iter()
            .map(|a| Arc::new(MetaClient::new(a.clone(), opts.client.clone())))
            .collect();
        Ok(MetaGroup {
            cluster,
            configured: metas.len(),
            metas: RwLock::new(metas),
            leader: AtomicUsize::new(0),
            opts,
        })
    }

    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The configured addresses, then those learned from forward replies.
    pub fn meta_addrs(&self) -> Vec<String> {
        self.snapshot()
            .iter()
            .map(|m| m.addr().to_owned())
            .collect()
    }

    /// How many MetaServers the group has (configured, then learned; it only grows).
    pub fn meta_count(&self) -> usize {
        self.metas.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The MetaServer that gave the last final answer (initially the first configured one).
    pub fn leader(&self) -> String {
        let metas = self.snapshot();
        // `metas` is never empty (see the field), so the modulo is well defined.
        metas[self.leader.load(Ordering::Relaxed) % metas.len()]
            .addr()
            .to_owned()
    }

    fn snapshot(&self) -> Vec<Arc<MetaClient>> {
        self.metas.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The index of the MetaServer at `addr`, adding it when it is not known yet and there is room.
    fn index_for(&self, addr: SocketAddrV4) -> Option<usize> {
        let wanted = SocketAddr::V4(addr);
        let known = |m: &MetaClient| {
            m.addr().parse::<SocketAddr>().ok() == Some(wanted) || m.peer() == Some(wanted)
        };
        let mut metas = self.metas.write().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = metas.iter().position(|m| known(m)) {
            return Some(i);
        }
        if metas.len() >= self.configured + self.opts.max_learned {
            return None;
        }
        tracing::info!(cluster = %self.cluster, leader = %addr, "learned a MetaServer from a forward reply");
        metas.push(Arc::new(MetaClient::new(
            addr.to_string(),
            self.opts.client.clone(),
        )));
        Some(metas.len() - 1)
    }

    /// Calls `name(args)` on the cluster, following the leader, until `deadline`, as a read
    /// ([`CallPolicy::READ`]).
    pub async fn call(
        &self,
        name: &str,
        args: &Bytes,
        deadline: Instant,
    ) -> Result<GroupReply, GroupError> {
        self.call_with(name, args, deadline, CallPolicy::READ).await
    }

    /// Calls `name(args)` on the cluster, following the leader, until `deadline`, repeating it
    /// only as far as `policy` allows. The reply of an `ERR_HANDLER_NOT_FOUND` answer has that
    /// rpc-level error, no body, and `err` `ERR_HANDLER_NOT_FOUND`.
    pub async fn call_with(
        &self,
        name: &str,
        args: &Bytes,
        deadline: Instant,
        policy: CallPolicy,
    ) -> Result<GroupReply, GroupError> {
        // Never empty (see the field): the modulo below and `next_free` are well defined.
        let mut metas = self.snapshot();
        let max_attempts = 2 * metas.len() + 2;
        let mut attempts = 0usize;
        let mut redirects = 0u32;
        let mut rotation = self.leader.load(Ordering::Relaxed) % metas.len();
        let mut in_flight: Vec<usize> = Vec::new();
        // MetaServers not to be asked again in this call: those a write may have reached, and
        // those without a handler for the RPC.
        let mut spent: Vec<usize> = Vec::new();
        let mut fallback: Option<GroupReply> = None;
        let mut no_handler: Option<GroupReply> = None;
        let mut last = String::from("no attempt made");
        // The attempts in flight (one, two when hedged), polled together by `first_done`.
        let mut calls = Vec::new();
        let hedge_after = self.opts.hedge_after.filter(|_| policy.hedge);

        let launch = |idx: usize, metas: &[Arc<MetaClient>], calls: &mut Vec<Pin<Box<_>>>| {
            let client = metas[idx].clone();
            let attempt_deadline = deadline.min(Instant::now() + self.opts.attempt_timeout);
            calls.push(Box::pin(async move {
                let result = client.call(name, args, attempt_deadline).await;
                (idx, result)
            }));
        };

        launch(rotation, &metas, &mut calls);
        in_flight.push(rotation);
        attempts += 1;
        let mut hedge_at = hedge_after.map(|d| Instant::now() + d);

        // No timer for the overall deadline: every attempt's own deadline is at or before it, so
        // the attempts in flight at the deadline end then, and none is launched after it.
        loop {
            let next = tokio::select! {
                done = std::future::poll_fn(|cx| first_done(&mut calls, cx)), if !calls.is_empty() => Some(done),
                () = sleep_until_opt(hedge_at), if hedge_at.is_some() && in_flight.len() == 1 => {
                    hedge_at = None;
                    if attempts < max_attempts
                        && let Some(target) = next_free(rotation, metas.len(), &in_flight, &spent)
                    {
                        rotation = target;
                        tracing::debug!(cluster = %self.cluster, meta = metas[target].addr(), "hedging the call");
                        launch(target, &metas, &mut calls);
                        in_flight.push(target);
                        attempts += 1;
                    }
                    continue;
                }
                else => break,
            };
            let Some((idx, result)) = next else { break };
            in_flight.retain(|&i| i != idx);
            let meta = metas[idx].addr().to_owned();
            let mut retarget = None;
            match classify(result) {
                Outcome::Final(reply, err) => {
                    self.leader.store(idx, Ordering::Relaxed);
                    return Ok(GroupReply {
                        reply,
                        err,
                        meta,
                        redirects,
                    });
                }
                Outcome::Redirect(leader) => {
                    redirects += 1;
                    last = format!("{meta} is not the leader");
                    let target = leader.and_then(|a| self.index_for(a));
                    if target.is_some() {
                        metas = self.snapshot();
                    }
                    retarget = match target {
                        Some(t) if t != idx && !spent.contains(&t) => Some(t),
                        _ => next_free(idx, metas.len(), &in_flight, &spent),
                    };
                }
                Outcome::Fallback(reply, err) => {
                    last = format!("{meta} answered {err}");
                    fallback = Some(GroupReply {
                        reply,
                        err,
                        meta,
                        redirects,
                    });
                }
                Outcome::NoHandler(reply) => {
                    last = format!("{meta} has no handler for {name}");
                    spent.push(idx);
                    no_handler = Some(GroupReply {
                        reply,
                        err: ErrorCode::HANDLER_NOT_FOUND,
                        meta,
                        redirects,
                    });
                }
                Outcome::Failed(why, delivery) => {
                    tracing::debug!(cluster = %self.cluster, %meta, error = %why, "MetaServer call failed");
                    if !may_ask_again(policy, delivery) {
                        tracing::debug!(cluster = %self.cluster, %meta, rpc = name, "the request may have been applied; not sending it there again");
                        spent.push(idx);
                        last = format!("{why} (may have been applied: not sent there again)");
                    } else {
                        last = why;
                    }
                }
            }
            let fresh = retarget
                .or_else(|| next_free(idx, metas.len(), &in_flight, &spent))
                .filter(|_| attempts < max_attempts);
            if in_flight.is_empty() && Instant::now() < deadline {
                let Some(target) = fresh else { break };
                rotation = target;
                launch(target, &metas, &mut calls);
                in_flight.push(target);
                attempts += 1;
                hedge_at = hedge_after.map(|d| Instant::now() + d);
            } else if let Some(target) = retarget.filter(|t| !in_flight.contains(t))
                && attempts < max_attempts
            {
                launch(target, &metas, &mut calls);
                in_flight.push(target);
                attempts += 1;
            }
            if calls.is_empty() {
                break;
            }
        }
        // Not active is a real answer from a MetaServer that has the handler: it wins over
        // "no handler" from others.
        if let Some(reply) = fallback.or(no_handler) {
            return Ok(reply);
        }
        if Instant::now() >= deadline {
            last = format!("deadline passed; {last}");
        }
        Err(GroupError::Unavailable {
            cluster: self.cluster.clone(),
            attempts,
            last,
        })
    }

    /// query_config for `table`, decoded.
    pub async fn query_config(
        &self,
        table: &str,
        deadline: Instant,
    ) -> Result<QueryCfgResponse, GroupError> {
        let mut args = BytesMut::new();
        QueryCfgRequest::new(table).to_args(&mut args);
        self.call_decoded(
            codec::rpc::QUERY_CONFIG,
            args,
            deadline,
            QueryCfgResponse::from_result,
        )
        .await
    }

    /// Sets, deletes or clears app envs of a table (docs/protocol.md §14.1) on the leader, decoded. `err` is
    /// `ERR_OK` once the change is persisted on the MetaServer; replicas apply it on their next
    /// config sync. The three operations are idempotent, so the group's retries and
    /// hedging cannot apply one twice to a different effect.
    pub async fn update_app_env(
        &self,
        request: &UpdateAppEnvRequest,
        deadline: Instant,
    ) -> Result<UpdateAppEnvResponse, GroupError> {
        let mut args = BytesMut::new();
        request.to_args(&mut args);
        self.call_decoded(
            codec::rpc::UPDATE_APP_ENV,
            args,
            deadline,
            UpdateAppEnvResponse::from_result,
        )
        .await
    }

    /// The duplications of `table` and, from a 2.6 server, their progress per partition (docs/protocol.md §14.2),
    /// decoded.
    pub async fn query_duplication(
        &self,
        table: &str,
        deadline: Instant,
    ) -> Result<QueryDuplicationResponse, GroupError> {
        let mut args = BytesMut::new();
        QueryDuplicationRequest::new(table).to_args(&mut args);
        self.call_decoded(
            codec::rpc::QUERY_DUPLICATION,
            args,
            deadline,
            QueryDuplicationResponse::from_result,
        )
        .await
    }

    async fn call_decoded<T>(
        &self,
        name: &str,
        args: BytesMut,
        deadline: Instant,
        decode: fn(&[u8]) -> Result<T, CodecError>,
    ) -> Result<T, GroupError> {
        let answer = self.call(name, &args.freeze(), deadline).await?;
        decode(&answer.reply.body).map_err(|source| GroupError::BadReply {
            cluster: self.cluster.clone(),
            meta: answer.meta,
            source,
        })
    }
}

/// The next index after `from` (`from` itself last) that is neither in flight nor spent.
fn next_free(from: usize, len: usize, in_flight: &[usize], spent: &[usize]) -> Option<usize> {
    (1..=len)
        .map(|k| (from + k) % len)
        .find(|i| !in_flight.contains(i) && !spent.contains(i))
}

/// The output of the first of `calls` that is done, removed from them. Polls every one on each
/// wake: there are one or two. Not a `FuturesUnordered`: that wakes its task again whenever it
/// has polled all its futures and none was ready, and on a multi-threaded runtime a task woken
/// while it runs is queued behind the others and another worker is woken to take it, a wake-up
/// of a parked thread for nothing on every upstream call.
fn first_done<F: Future + ?Sized>(
    calls: &mut Vec<Pin<Box<F>>>,
    cx: &mut Context<'_>,
) -> Poll<F::Output> {
    for i in 0..calls.len() {
        if let Poll::Ready(output) = calls[i].as_mut().poll(cx) {
            // The order of the rest does not matter: each is polled on every wake.
            drop(calls.swap_remove(i));
            return Poll::Ready(output);
        }
    }
    Poll::Pending
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_without_metas_is_refused() {
        let err = MetaGroup::new("c1", &[], GroupOptions::default()).expect_err("empty");
        assert_eq!(
            err,
            NoMetaServers {
                cluster: "c1".into()
            }
        );
        let group = MetaGroup::new("c1", &["127.0.0.1:1".into()], GroupOptions::default())
            .expect("one meta is enough");
        assert_eq!(group.leader(), "127.0.0.1:1");
    }

    #[test]
    fn next_free_skips_the_metas_in_flight_and_spent() {
        type Case<'a> = (usize, usize, &'a [usize], &'a [usize], Option<usize>);
        let cases: [Case<'_>; 8] = [
            (0, 3, &[], &[], Some(1)),
            (0, 3, &[1], &[], Some(2)),
            (2, 3, &[0], &[], Some(1)),
            (0, 1, &[], &[], Some(0)),
            (0, 1, &[0], &[], None),
            (0, 3, &[], &[1], Some(2)),
            (0, 3, &[2], &[1], Some(0)),
            (0, 3, &[], &[0, 1, 2], None),
        ];
        for (from, len, in_flight, spent, want) in cases {
            assert_eq!(
                next_free(from, len, in_flight, spent),
                want,
                "from {from} of {len}, in flight {in_flight:?}, spent {spent:?}"
            );
        }
    }

    #[test]
    fn a_write_is_not_sent_again_where_it_may_have_been_applied() {
        let addr = || "m1:1".to_owned();
        let errors = [
            (
                CallError::Connect {
                    addr: addr(),
                    reason: "refused".into(),
                },
                Delivery::NotApplied,
            ),
            (
                CallError::Rpc {
                    addr: addr(),
                    error: ErrorCode::BUSY,
                },
                Delivery::NotApplied,
            ),
            (CallError::Timeout { addr: addr() }, Delivery::MaybeApplied),
            (
                CallError::ConnectionLost {
                    addr: addr(),
                    reason: "reset".into(),
                },
                Delivery::MaybeApplied,
            ),
            (
                CallError::BadReply {
                    addr: addr(),
                    source: CodecError::Malformed {
                        what: "reply",
                        detail: "cut short".into(),
                    },
                },
                Delivery::MaybeApplied,
            ),
        ];
        for (error, want) in &errors {
            assert_eq!(Delivery::of(error), *want, "{error}");
        }
        let cases = [
            (CallPolicy::READ, Delivery::NotApplied, true),
            (CallPolicy::READ, Delivery::MaybeApplied, true),
            (CallPolicy::WRITE, Delivery::NotApplied, true),
            (CallPolicy::WRITE, Delivery::MaybeApplied, false),
        ];
        for (policy, delivery, want) in cases {
            assert_eq!(
                may_ask_again(policy, delivery),
                want,
                "{policy:?} {delivery:?}"
            );
        }
        const { assert!(CallPolicy::READ.hedge && !CallPolicy::WRITE.hedge) };
    }
}
