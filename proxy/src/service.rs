//! What the proxy answers to each request, as a MetaServer would:
//!
//! | request | answer |
//! |---|---|
//! | query_config, route found | the cluster's reply (leader followed upstream), under the client's seqid |
//! | query_config, no record | `ERR_OBJECT_NOT_FOUND`, byte for byte what a MetaServer sends |
//! | query_config, record invalid | `ERR_INVALID_DATA` (and a log line naming the table) |
//! | query_config, cluster or ZooKeeper unreachable | `ERR_SERVICE_NOT_ACTIVE`, which every official client retries |
//! | `RPC_NEGOTIATION` | `SASL_AUTH_DISABLE` |
//! | a table-scoped admin RPC ([`crate::admin_rpc`]) | the same, with its own reply: the cluster's, or `err` alone: `ERR_OBJECT_NOT_FOUND`, `ERR_INVALID_DATA`, `ERR_SERVICE_NOT_ACTIVE`; `ERR_ACL_DENY` when `--admin-rpcs` denies it |
//! | `RPC_CM_LIST_APPS` | the routed clusters' lists merged ([`crate::list_apps`]) |
//! | a table-scoped admin RPC that every MetaServer of the cluster lacks | rpc-level `ERR_HANDLER_NOT_FOUND`, empty body, as they answered |
//! | anything else | rpc-level `ERR_HANDLER_NOT_FOUND`, empty body |
//!
//! A query_config never gets an rpc-level error (some clients hang on those) nor silence, and an
//! upstream `ERR_FORWARD_TO_OTHERS` never reaches a client: it would lead it past the proxy.
//! Every reply goes out in the header its request came in (THFT, or the C++ client's native
//! one); a native request reaches the MetaServers as THFT, whose forward replies the proxy
//! follows itself, so the native `is_forward_supported` (a MetaServer forwarding the request to
//! its leader, which then answers the client's own address) is never used.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use thrift::protocol::{TInputProtocol, TOutputProtocol, TStructIdentifier, TType};
use tokio::time::Instant;
use tracing::Instrument;

use crate::admin_rpc::{self, AdminRoute, AdminRpcs, TableRpc};
use crate::list_apps::{self, ClusterAnswer};
use crate::metrics::{Metrics, Outcome};
use crate::route::{Lookup, Route, RouteRecord, Routes};
use crate::upstream::{Answer, Joined, Upstreams};
use crate::warnings::Kind;
use pegasus_rpc::client::{GroupError, MetaGroup};
use pegasus_rpc::codec::list_apps::{ListAppsResponse, error_only_result};
use pegasus_rpc::codec::wire::{self, ThriftWire, read_list, read_struct};
use pegasus_rpc::codec::{
    self, CodecError, ErrorCode, MessageKind, NegotiationRequest, NegotiationResponse,
    QueryCfgResponse, ReplyTo, RequestFrame,
};

/// A reply to write, or the reason to close the connection.
// `Frame` (with a native request's header) is the large variant and nearly every reply: boxing it
// would add an allocation per reply to spare a few bytes on the rare `None` and `Close`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Reply {
    Frame {
        rpc_error: ErrorCode,
        name: Cow<'static, str>,
        to: ReplyTo,
        body: Bytes,
    },
    /// A one-way message: nothing to write.
    None,
    /// The request was malformed: the connection is closed.
    Close(CodecError),
}

impl Reply {
    /// Appends the reply frame to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        if let Reply::Frame {
            rpc_error,
            name,
            to,
            body,
        } = self
        {
            to.encode(out, rpc_error.as_str(), name, body);
        }
    }
}

/// A query_config whose route was cached when it was read: what the fast path needs to join its
/// call and, once the call ends, to answer it.
#[derive(Debug)]
pub struct CachedQuery {
    pub route: Arc<Route>,
    /// The request's args: with the route's group, the key of its upstream call.
    pub args: Bytes,
    pub to: ReplyTo,
}

/// Settings of the request handling.
#[derive(Clone, Debug)]
pub struct ServiceOptions {
    /// The time a query_config or an admin RPC may take upstream, leader redirects and retries
    /// included.
    pub upstream_deadline: Duration,
    /// Which admin RPCs are answered (`--admin-rpcs`).
    pub admin_rpcs: AdminRpcs,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            upstream_deadline: Duration::from_secs(3),
            admin_rpcs: AdminRpcs::default(),
        }
    }
}

/// The bodies the proxy answers on its own, built once: for query_config full responses, for
/// the admin RPCs `err` alone.
struct Answers {
    not_found: Bytes,
    not_active: Bytes,
    invalid_route: Bytes,
}

impl Answers {
    fn new(body: impl Fn(ErrorCode) -> Bytes) -> Self {
        Answers {
            not_found: body(ErrorCode::OBJECT_NOT_FOUND),
            not_active: body(ErrorCode::SERVICE_NOT_ACTIVE),
            invalid_route: body(ErrorCode::INVALID_DATA),
        }
    }
}

/// How a routed request was answered: by the cluster (with its `err`), or by the proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Answered {
    Upstream(ErrorCode),
    ClusterUnavailable,
    NoRoute,
    InvalidRoute,
    RouteUnavailable,
}

impl Answered {
    fn query_outcome(&self) -> Outcome {
        match self {
            Answered::Upstream(err) => match err.as_str() {
                "ERR_OK" => Outcome::QueryOk,
                "ERR_OBJECT_NOT_FOUND" => Outcome::QueryObjectNotFound,
                "ERR_SERVICE_NOT_ACTIVE" => Outcome::QueryServiceNotActive,
                _ => Outcome::QueryOtherError,
            },
            Answered::ClusterUnavailable => Outcome::QueryClusterUnavailable,
            Answered::NoRoute => Outcome::QueryNoRoute,
            Answered::InvalidRoute => Outcome::QueryInvalidRoute,
            Answered::RouteUnavailable => Outcome::QueryRouteUnavailable,
        }
    }

    fn admin_outcome(&self) -> Outcome {
        match self {
            Answered::Upstream(err) if err.is_ok() => Outcome::AdminOk,
            Answered::Upstream(_) => Outcome::AdminOtherError,
            Answered::ClusterUnavailable => Outcome::AdminClusterUnavailable,
            Answered::NoRoute => Outcome::AdminNoRoute,
            Answered::InvalidRoute => Outcome::AdminInvalidRoute,
            Answered::RouteUnavailable => Outcome::AdminRouteUnavailable,
        }
    }
}

fn err_only(err: ErrorCode) -> Bytes {
    let mut out = BytesMut::new();
    error_only_result(&err, &mut out);
    out.freeze()
}

/// Answers requests.
pub struct Service {
    routes: Arc<Routes>,
    upstreams: Arc<Upstreams>,
    metrics: Metrics,
    opts: ServiceOptions,
    query: Answers,
    admin: Answers,
    acl_deny: Bytes,
    auth_disabled: Bytes,
}

fn result_body(resp: &QueryCfgResponse) -> Bytes {
    let mut out = BytesMut::new();
    resp.to_result(&mut out);
    out.freeze()
}

impl Service {
    pub fn new(
        routes: Arc<Routes>,
        upstreams: Arc<Upstreams>,
        metrics: Metrics,
        opts: ServiceOptions,
    ) -> Self {
        let mut auth = BytesMut::new();
        NegotiationResponse::auth_disabled().to_result(&mut auth);
        Service {
            routes,
            upstreams,
            metrics,
            opts,
            query: Answers::new(|err| result_body(&QueryCfgResponse::error(err))),
            admin: Answers::new(err_only),
            acl_deny: err_only(ErrorCode::new("ERR_ACL_DENY")),
            auth_disabled: auth.freeze(),
        }
    }

    pub fn routes(&self) -> &Routes {
        &self.routes
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn upstreams(&self) -> &Arc<Upstreams> {
        &self.upstreams
    }

    /// Answers one request.
    pub async fn handle(&self, frame: RequestFrame) -> Reply {
        let reply = match frame.name() {
            codec::rpc::QUERY_CONFIG => self.query_config(&frame).await,
            codec::rpc::NEGOTIATION => match NegotiationRequest::from_args(&frame.args) {
                Ok(_) => {
                    self.metrics.request(Outcome::Negotiation);
                    self.frame(
                        codec::rpc::NEGOTIATION_ACK.into(),
                        &frame,
                        ErrorCode::OK,
                        self.auth_disabled.clone(),
                    )
                }
                Err(e) => Reply::Close(e),
            },
            other => match admin_rpc::route_of(other) {
                AdminRoute::Table(rpc) => self.table_admin(&frame, rpc).await,
                AdminRoute::ListApps => self.list_apps(&frame).await,
                AdminRoute::NotServed => {
                    tracing::debug!(rpc = other, "unsupported RPC");
                    self.metrics.request(Outcome::HandlerNotFound);
                    let name = Cow::Owned(codec::rpc::ack_name(other));
                    self.frame(name, &frame, ErrorCode::HANDLER_NOT_FOUND, Bytes::new())
                }
            },
        };
        if frame.message.kind == MessageKind::Oneway && !matches!(reply, Reply::Close(_)) {
            return Reply::None;
        }
        reply
    }

    /// The fast path's first half: a query_config (a call, not one-way) whose table's route is
    /// cached now, with what its answer needs; `Err` gives back every other request, for
    /// [`Service::handle`]. Pure of effects: nothing is counted until the request is answered.
    // The frame is given back by value: boxing it would cost an allocation per slow request.
    #[allow(clippy::result_large_err)]
    pub fn cached_query(&self, frame: RequestFrame) -> Result<CachedQuery, RequestFrame> {
        if frame.name() != codec::rpc::QUERY_CONFIG || frame.message.kind != MessageKind::Call {
            return Err(frame);
        }
        let route = match routing_name(&frame.args) {
            Ok(Ok(table)) => self.routes.cached(&table),
            _ => None,
        };
        match route {
            Some(route) => Ok(CachedQuery {
                route,
                to: frame.reply_to(),
                args: frame.args,
            }),
            None => Err(frame),
        }
    }

    /// Joins (or starts) the upstream call of a cached query; a new call's deadline is counted
    /// from now, as on the slow path.
    pub fn join(&self, query: &CachedQuery) -> Joined {
        let deadline = self.opts.upstream_deadline;
        self.upstreams.join(&query.route.group, &query.args, || {
            Instant::now() + deadline
        })
    }

    /// The reply to one request waiting on a call of `route` with `args` that ended with
    /// `result`, counted as the slow path counts it.
    pub fn answer_query(
        &self,
        route: &Route,
        args: &[u8],
        result: &Result<Arc<Answer>, GroupError>,
        to: ReplyTo,
    ) -> Reply {
        let (body, answered) = match result {
            Ok(answer) => (answer.body.clone(), Answered::Upstream(answer.err.clone())),
            Err(e) => {
                self.cluster_unreachable(&self.query, route, e, || match routing_name(args) {
                    Ok(Ok(table)) => table,
                    _ => Cow::Borrowed(""),
                })
            }
        };
        self.metrics.request(answered.query_outcome());
        Reply::Frame {
            rpc_error: ErrorCode::OK,
            name: codec::rpc::QUERY_CONFIG_ACK.into(),
            to,
            body,
        }
    }

    fn frame(
        &self,
        name: Cow<'static, str>,
        req: &RequestFrame,
        rpc_error: ErrorCode,
        body: Bytes,
    ) -> Reply {
        Reply::Frame {
            rpc_error,
            name,
            to: req.reply_to(),
            body,
        }
    }

    /// The proxy's answer when `route`'s cluster gave none (`e`): ERR_SERVICE_NOT_ACTIVE from
    /// `answers`, with a warning (rate-limited per cluster) naming the table, which `table`
    /// gives only when the warning is written.
    fn cluster_unreachable<'t>(
        &self,
        answers: &Answers,
        route: &Route,
        e: &GroupError,
        table: impl FnOnce() -> Cow<'t, str>,
    ) -> (Bytes, Answered) {
        let cluster = route.record.cluster.as_str();
        if let Some(suppressed) = self
            .metrics
            .warnings
            .admit(Kind::ClusterUnreachable, cluster)
        {
            let table = table();
            tracing::warn!(table = &*table, cluster, error = %e, suppressed, "cluster unreachable; answering ERR_SERVICE_NOT_ACTIVE");
        }
        (answers.not_active.clone(), Answered::ClusterUnavailable)
    }

    /// Looks `table` up and answers from its cluster with `call`, or answers on the proxy's own
    /// from `answers`: the one path of query_config and the table-scoped admin RPCs.
    async fn routed<F, Fut>(&self, table: &str, answers: &Answers, call: F) -> (Bytes, Answered)
    where
        F: FnOnce(Arc<Route>, Instant) -> Fut,
        Fut: Future<Output = Result<(Bytes, ErrorCode), GroupError>>,
    {
        match self.routes.lookup(table).await {
            Lookup::Found(route) => {
                tracing::Span::current().record("cluster", route.record.cluster.as_str());
                let deadline = Instant::now() + self.opts.upstream_deadline;
                // The route itself, not a copy of its cluster's name: this runs for every query.
                let routed = route.clone();
                match call(route, deadline).await {
                    Ok((body, err)) => (body, Answered::Upstream(err)),
                    Err(e) => self.cluster_unreachable(answers, &routed, &e, || table.into()),
                }
            }
            Lookup::Missing => (answers.not_found.clone(), Answered::NoRoute),
            Lookup::Invalid(e) => {
                if let Some(suppressed) = self.metrics.warnings.admit(Kind::RouteInvalid, table) {
                    tracing::warn!(table, error = %e, suppressed, "route record invalid; answering ERR_INVALID_DATA");
                }
                (answers.invalid_route.clone(), Answered::InvalidRoute)
            }
            Lookup::Unavailable(e) => {
                if let Some(suppressed) = self.metrics.warnings.admit(Kind::RouteUnavailable, "") {
                    tracing::warn!(table, error = %e, suppressed, "route unknown; answering ERR_SERVICE_NOT_ACTIVE");
                }
                (answers.not_active.clone(), Answered::RouteUnavailable)
            }
        }
    }

    /// A table-scoped admin RPC: its request's bytes to the leader of the table's cluster, its
    /// reply's bytes back.
    async fn table_admin(&self, frame: &RequestFrame, rpc: &'static TableRpc) -> Reply {
        let ack = Cow::Owned(codec::rpc::ack_name(rpc.name));
        if !self.opts.admin_rpcs.allows(rpc.access) {
            tracing::debug!(rpc = rpc.name, admin_rpcs = %self.opts.admin_rpcs, "admin RPC denied");
            self.metrics.request(Outcome::AdminDenied);
            return self.frame(ack, frame, ErrorCode::OK, self.acl_deny.clone());
        }
        let table = match admin_rpc::table_of(&frame.args, rpc.table_field) {
            Ok(Ok(table)) => table,
            // No route can name it: answered as for any table without one.
            Ok(Err(_)) => String::new(),
            Err(e) => {
                self.metrics.request(Outcome::AdminMalformed);
                return Reply::Close(e);
            }
        };
        let span = tracing::debug_span!(
            "admin",
            rpc = rpc.name,
            table,
            cluster = tracing::field::Empty
        );
        let policy = admin_rpc::policy_of(rpc.access);
        let (body, answered) = self
            .routed(&table, &self.admin, |route, deadline| async move {
                let reply = route
                    .group
                    .call_with(rpc.name, &frame.args, deadline, policy)
                    .await?;
                Ok((reply.reply.body, reply.err))
            })
            .instrument(span)
            .await;
        self.metrics.request(answered.admin_outcome());
        // The cluster's MetaServers lack the RPC: the client is told so as they told the proxy.
        if answered == Answered::Upstream(ErrorCode::HANDLER_NOT_FOUND) {
            return self.frame(ack, frame, ErrorCode::HANDLER_NOT_FOUND, Bytes::new());
        }
        self.frame(ack, frame, ErrorCode::OK, body)
    }

    /// list_apps: every routed cluster asked with the client's request, the answers merged.
    async fn list_apps(&self, frame: &RequestFrame) -> Reply {
        const ACK: &str = codec::rpc::LIST_APPS_ACK;
        if !self.opts.admin_rpcs.allows(admin_rpc::Access::Read) {
            self.metrics.request(Outcome::ListAppsDenied);
            return self.frame(ACK.into(), frame, ErrorCode::OK, self.acl_deny.clone());
        }
        let deadline = Instant::now() + self.opts.upstream_deadline;
        let merged = match self.routes.tables().await {
            Ok(tables) => self.list_apps_of(&tables, &frame.args, deadline).await,
            Err(e) => list_apps::merge(&BTreeMap::new(), &[], &[format!("routes: {e}")]),
        };
        self.metrics.request(if merged.err.is_ok() {
            Outcome::ListAppsOk
        } else {
            Outcome::ListAppsIncomplete
        });
        let mut body = BytesMut::new();
        merged.to_result(&mut body);
        self.frame(ACK.into(), frame, ErrorCode::OK, body.freeze())
    }

    async fn list_apps_of(
        &self,
        tables: &[String],
        args: &Bytes,
        deadline: Instant,
    ) -> ListAppsResponse {
        let lookups = futures::future::join_all(tables.iter().map(|t| self.routes.lookup(t))).await;
        let mut routed = BTreeMap::new();
        let mut groups: HashMap<RouteRecord, Arc<MetaGroup>> = HashMap::new();
        let mut unrouted = Vec::new();
        for (table, lookup) in tables.iter().zip(lookups) {
            match lookup {
                Lookup::Found(route) => {
                    routed.insert(table.clone(), cluster_key(&route.record));
                    groups
                        .entry(route.record.clone())
                        .or_insert_with(|| route.group.clone());
                }
                // Gone since it was listed, or routed nowhere usable: not a table of the proxy.
                Lookup::Missing | Lookup::Invalid(_) => {}
                Lookup::Unavailable(e) => unrouted.push(format!("table {table}: {e}")),
            }
        }
        let answers =
            futures::future::join_all(groups.into_iter().map(|(record, group)| async move {
                let answer = match group.call(codec::rpc::LIST_APPS, args, deadline).await {
                    Ok(reply) if !reply.reply.rpc_error.is_ok() => {
                        Err(format!("{} answered {}", reply.meta, reply.reply.rpc_error))
                    }
                    Ok(reply) => {
                        ListAppsResponse::from_result(&reply.reply.body).map_err(|e| e.to_string())
                    }
                    Err(e) => Err(e.to_string()),
                };
                ClusterAnswer {
                    cluster: cluster_key(&record),
                    answer,
                }
            }))
            .await;
        list_apps::merge(&routed, &answers, &unrouted)
    }

    async fn query_config(&self, frame: &RequestFrame) -> Reply {
        let table = match routing_name(&frame.args) {
            Ok(Ok(table)) => table,
            Ok(Err(raw)) => {
                // No MetaServer has a table by this name: answer as for any unroutable one.
                tracing::debug!(name = ?String::from_utf8_lossy(&raw), "table name is not UTF-8");
                self.metrics.request(Outcome::QueryNoRoute);
                return self.frame(
                    codec::rpc::QUERY_CONFIG_ACK.into(),
                    frame,
                    ErrorCode::OK,
                    self.query.not_found.clone(),
                );
            }
            Err(e) => {
                self.metrics.request(Outcome::QueryMalformed);
                return Reply::Close(e);
            }
        };
        let table: &str = &table;
        let span = tracing::debug_span!("query_config", table, cluster = tracing::field::Empty);
        let (body, answered) = self
            .routed(table, &self.query, |route, deadline| async move {
                let (answer, _coalesced) = self
                    .upstreams
                    .query_config(&route.group, &frame.args, deadline)
                    .await;
                answer.map(|a| (a.body.clone(), a.err.clone()))
            })
            .instrument(span)
            .await;
        self.metrics.request(answered.query_outcome());
        self.frame(
            codec::rpc::QUERY_CONFIG_ACK.into(),
            frame,
            ErrorCode::OK,
            body,
        )
    }
}

/// The name a cluster goes by in list_apps: its name and MetaServers (two records naming one
/// cluster with different MetaServers are two groups, asked apart).
fn cluster_key(record: &RouteRecord) -> String {
    format!("{} ({})", record.cluster, record.meta_addrs.join(","))
}

/// The table name of a query_config's args, as [`RoutingName`] reads it: borrowed from the args
/// when they are laid out as every client writes them ([`plain_name`]), read by [`RoutingName`]
/// otherwise. This runs for every query; the thrift reader costs a configuration, a protocol
/// object and two allocations per call.
fn routing_name(args: &[u8]) -> Result<Result<Cow<'_, str>, Vec<u8>>, CodecError> {
    if let Some(raw) = plain_name(args) {
        return Ok(std::str::from_utf8(raw)
            .map(Cow::Borrowed)
            .map_err(|_| raw.to_vec()));
    }
    RoutingName::from_args(args).map(|RoutingName(name)| name.map(Cow::Owned))
}

/// The name in query_config args laid out exactly as the clients write them: the args struct's
/// one struct field, holding `app_name` (field 1, a string), then optionally
/// `partition_indices` (field 2, a list of i32), then the two STOPs. `None` for anything else
/// (other fields, another order, a length that does not fit), which [`RoutingName`] then reads;
/// whatever this accepts, [`RoutingName`] reads to the same name (a test checks it).
fn plain_name(args: &[u8]) -> Option<&[u8]> {
    const STRUCT: u8 = 12;
    const STRING: u8 = 11;
    const LIST: u8 = 15;
    const I32: u8 = 8;
    fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (rest.get(..n)?, rest.get(n..)?);
        *rest = tail;
        Some(head)
    }
    fn length(rest: &mut &[u8]) -> Option<usize> {
        let n = i32::from_be_bytes(take(rest, 4)?.try_into().ok()?);
        usize::try_from(n).ok()
    }
    let mut rest = args;
    // The args struct's field: a struct, whatever its id (clients send 1).
    if take(&mut rest, 3)?[0] != STRUCT {
        return None;
    }
    if take(&mut rest, 3)? != [STRING, 0, 1] {
        return None;
    }
    let len = length(&mut rest)?;
    let name = take(&mut rest, len)?;
    if rest.first() == Some(&LIST) {
        if take(&mut rest, 4)? != [LIST, 0, 2, I32] {
            return None;
        }
        let count = length(&mut rest)?;
        take(&mut rest, count.checked_mul(4)?)?;
    }
    // The request's STOP, then the args struct's.
    (take(&mut rest, 2)? == [0, 0]).then_some(name)
}

/// The table name of a query_config's args: `Ok` when it is UTF-8, its raw bytes otherwise.
///
/// The codec's `QueryCfgRequest` reads `app_name` as a thrift string, which must be UTF-8; a name
/// that is not would fail the whole frame and close the connection, although the structure is
/// sound and a MetaServer (which compares bytes) would just not find the table. This reads the same
/// structure, as strictly (the partition list is read and checked, unknown fields skipped the
/// same way), but keeps the name as bytes so that only the name decides.
#[derive(Debug, PartialEq, Eq)]
struct RoutingName(Result<String, Vec<u8>>);

impl RoutingName {
    fn from_args(args: &[u8]) -> Result<Self, CodecError> {
        wire::decode_args(args, "query_cfg_request")
    }
}

impl ThriftWire for RoutingName {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        let mut name = Vec::new();
        read_struct(i, |i, id, ty| {
            match (id, ty) {
                (1, TType::String) => name = i.read_bytes()?,
                (2, TType::List) => {
                    read_list(i, TType::I32, |i| i.read_i32())?;
                }
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(RoutingName(
            String::from_utf8(name).map_err(|e| e.into_bytes()),
        ))
    }

    /// Only the name (the proxy forwards the client's own args bytes, never these).
    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        let name = match &self.0 {
            Ok(name) => name.as_bytes(),
            Err(raw) => raw,
        };
        o.write_struct_begin(&TStructIdentifier::new("query_cfg_request"))?;
        o.write_field_begin(&wire::field(TType::String, 1))?;
        o.write_bytes(name)?;
        o.write_field_end()?;
        o.write_field_stop()?;
        o.write_struct_end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pegasus_rpc::codec::QueryCfgRequest;

    fn args(req: &QueryCfgRequest) -> BytesMut {
        let mut out = BytesMut::new();
        req.to_args(&mut out);
        out
    }

    /// Whatever the fast path accepts, the thrift reader reads to the same name.
    fn agrees(bytes: &[u8]) -> Result<(), String> {
        match plain_name(bytes) {
            None => Ok(()),
            Some(name) => match RoutingName::from_args(bytes) {
                Ok(RoutingName(Ok(n))) if n.as_bytes() == name => Ok(()),
                Ok(RoutingName(Err(raw))) if raw == name => Ok(()),
                other => Err(format!("{bytes:?}: fast {name:?}, thrift {other:?}")),
            },
        }
    }

    #[test]
    fn the_fast_path_reads_what_the_clients_write_and_leaves_the_rest_to_thrift() {
        let with = |name: &str, parts: Option<Vec<i32>>| {
            args(&QueryCfgRequest {
                app_name: name.into(),
                partition_indices: parts,
            })
            .to_vec()
        };
        let name = |n: &'static str| Some(n.as_bytes());
        let mut field_3 = with("temp", None);
        // An unknown field before the STOPs: thrift skips it; the fast path leaves it to thrift.
        field_3.truncate(field_3.len() - 2);
        field_3.extend_from_slice(&[8, 0, 3, 0, 0, 0, 1, 0, 0]);
        // (what, args, the name the fast path reads)
        type Case<'a> = (&'a str, Vec<u8>, Option<&'a [u8]>);
        let cases: Vec<Case> = vec![
            ("Go, Python, Node.js", with("temp", None), name("temp")),
            ("Java", with("temp", Some(vec![])), name("temp")),
            ("partitions", with("temp", Some(vec![0, 3])), name("temp")),
            ("empty name", with("", None), name("")),
            ("unknown field", field_3, None),
            ("cut short", with("temp", None)[..10].to_vec(), None),
            ("empty", vec![], None),
            (
                "a string, not a struct",
                {
                    let mut a = with("temp", None);
                    a[0] = 11;
                    a
                },
                None,
            ),
        ];
        for (what, bytes, want) in cases {
            assert_eq!(plain_name(&bytes), want, "{what}");
            agrees(&bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
            let slow = RoutingName::from_args(&bytes).map(|RoutingName(n)| n.map(Cow::Owned));
            assert_eq!(routing_name(&bytes), slow, "{what}");
        }
    }

    proptest::proptest! {
        #[test]
        fn the_fast_path_agrees_with_thrift_on_any_bytes(
            name in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..12),
            parts in proptest::option::of(proptest::collection::vec(proptest::prelude::any::<i32>(), 0..4)),
            cut in 0usize..40,
            flip in proptest::option::of((0usize..40, proptest::prelude::any::<u8>())),
        ) {
            let mut bytes = BytesMut::new();
            wire::encode_args(&RoutingName(Err(name)), 1, &mut bytes);
            let mut bytes = bytes.to_vec();
            if let Some(parts) = parts {
                // partition_indices after the name, as the Java client writes it.
                let at = bytes.len() - 2;
                let mut list = vec![15, 0, 2, 8];
                list.extend_from_slice(&(parts.len() as i32).to_be_bytes());
                for p in parts {
                    list.extend_from_slice(&p.to_be_bytes());
                }
                bytes.splice(at..at, list);
            }
            if let Some((at, b)) = flip && at < bytes.len() {
                bytes[at] = b;
            }
            bytes.truncate(bytes.len().saturating_sub(cut % 3));
            proptest::prop_assert!(agrees(&bytes).is_ok(), "{:?}", agrees(&bytes));
        }
    }

    #[test]
    fn the_routing_name_reads_what_the_codec_reads_and_keeps_bad_utf8_as_bytes() {
        let node = QueryCfgRequest {
            app_name: "temp".into(),
            partition_indices: None,
        };
        let cases: Vec<(BytesMut, Result<RoutingName, &str>)> = vec![
            (
                args(&QueryCfgRequest::new("temp")),
                Ok(RoutingName(Ok("temp".into()))),
            ),
            (args(&node), Ok(RoutingName(Ok("temp".into())))),
            (
                args(&QueryCfgRequest::new("")),
                Ok(RoutingName(Ok(String::new()))),
            ),
            (
                {
                    let mut out = BytesMut::new();
                    wire::encode_args(&RoutingName(Err(vec![0xff, b'a'])), 1, &mut out);
                    out
                },
                Ok(RoutingName(Err(vec![0xff, b'a']))),
            ),
            (BytesMut::from(&b"\x00"[..]), Err("empty args")),
            (
                {
                    let mut a = args(&QueryCfgRequest::new("temp"));
                    a.truncate(a.len() - 3);
                    a
                },
                Err("cut short"),
            ),
        ];
        for (bytes, want) in cases {
            let got = RoutingName::from_args(&bytes);
            match want {
                Ok(name) => assert_eq!(got, Ok(name)),
                Err(what) => assert!(got.is_err(), "{what}: {got:?}"),
            }
            // Whatever the routing name accepts with a UTF-8 name, the codec accepts too.
            if let Ok(RoutingName(Ok(name))) = RoutingName::from_args(&bytes) {
                assert_eq!(
                    QueryCfgRequest::from_args(&bytes).map(|r| r.app_name),
                    Ok(name)
                );
            }
        }
    }
}
