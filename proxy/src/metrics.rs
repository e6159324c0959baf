//! The proxy's Prometheus metrics, all prefixed `metaproxy_`, with small fixed label sets.
//! Gauges that describe state (route cache, ZooKeeper session, staleness) are set when scraped.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::warnings::Warnings;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `query_config`, `negotiation` or `other`.
    pub rpc: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// What became of a client request: the `rpc` and `result` labels of `metaproxy_requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// query_config answered from the cluster, by the response's `err`.
    QueryOk,
    QueryObjectNotFound,
    QueryServiceNotActive,
    QueryOtherError,
    /// query_config answered by the proxy itself.
    QueryClusterUnavailable,
    QueryNoRoute,
    QueryInvalidRoute,
    QueryRouteUnavailable,
    QueryMalformed,
    Negotiation,
    HandlerNotFound,
    /// A table-scoped admin RPC answered from the cluster, by the response's `err`.
    AdminOk,
    AdminOtherError,
    /// A table-scoped admin RPC answered by the proxy itself.
    AdminDenied,
    AdminClusterUnavailable,
    AdminNoRoute,
    AdminInvalidRoute,
    AdminRouteUnavailable,
    AdminMalformed,
    /// list_apps merged from every routed cluster, or not (a cluster or the routes did not answer).
    ListAppsOk,
    ListAppsIncomplete,
    ListAppsDenied,
}

impl Outcome {
    const ALL: [Outcome; 22] = [
        Outcome::QueryOk,
        Outcome::QueryObjectNotFound,
        Outcome::QueryServiceNotActive,
        Outcome::QueryOtherError,
        Outcome::QueryClusterUnavailable,
        Outcome::QueryNoRoute,
        Outcome::QueryInvalidRoute,
        Outcome::QueryRouteUnavailable,
        Outcome::QueryMalformed,
        Outcome::Negotiation,
        Outcome::HandlerNotFound,
        Outcome::AdminOk,
        Outcome::AdminOtherError,
        Outcome::AdminDenied,
        Outcome::AdminClusterUnavailable,
        Outcome::AdminNoRoute,
        Outcome::AdminInvalidRoute,
        Outcome::AdminRouteUnavailable,
        Outcome::AdminMalformed,
        Outcome::ListAppsOk,
        Outcome::ListAppsIncomplete,
        Outcome::ListAppsDenied,
    ];

    pub fn labels(self) -> RequestLabels {
        let (rpc, result) = match self {
            Outcome::QueryOk => ("query_config", "ok"),
            Outcome::QueryObjectNotFound => ("query_config", "object_not_found"),
            Outcome::QueryServiceNotActive => ("query_config", "service_not_active"),
            Outcome::QueryOtherError => ("query_config", "upstream_error"),
            Outcome::QueryClusterUnavailable => ("query_config", "cluster_unavailable"),
            Outcome::QueryNoRoute => ("query_config", "no_route"),
            Outcome::QueryInvalidRoute => ("query_config", "invalid_route"),
            Outcome::QueryRouteUnavailable => ("query_config", "route_unavailable"),
            Outcome::QueryMalformed => ("query_config", "malformed"),
            Outcome::Negotiation => ("negotiation", "auth_disabled"),
            Outcome::HandlerNotFound => ("other", "handler_not_found"),
            Outcome::AdminOk => ("admin", "ok"),
            Outcome::AdminOtherError => ("admin", "upstream_error"),
            Outcome::AdminDenied => ("admin", "denied"),
            Outcome::AdminClusterUnavailable => ("admin", "cluster_unavailable"),
            Outcome::AdminNoRoute => ("admin", "no_route"),
            Outcome::AdminInvalidRoute => ("admin", "invalid_route"),
            Outcome::AdminRouteUnavailable => ("admin", "route_unavailable"),
            Outcome::AdminMalformed => ("admin", "malformed"),
            Outcome::ListAppsOk => ("list_apps", "ok"),
            Outcome::ListAppsIncomplete => ("list_apps", "incomplete"),
            Outcome::ListAppsDenied => ("list_apps", "denied"),
        };
        RequestLabels { rpc, result }
    }
}

/// Every metric of the proxy. Cheap to clone (handles share their values).
#[derive(Clone)]
pub struct Metrics {
    pub requests: Family<RequestLabels, Counter>,
    /// The counters of `requests`, one per [`Outcome`], looked up once rather than per request.
    outcomes: [Counter; Outcome::ALL.len()],
    pub upstream_calls: Family<ResultLabel, Counter>,
    pub upstream_latency: Family<ResultLabel, Histogram>,
    pub coalesced: Counter,
    pub zk_reads: Family<ResultLabel, Counter>,
    pub zk_connected: Gauge,
    pub zk_sessions: Counter,
    pub zk_session_expirations: Counter,
    pub routes: Gauge,
    pub route_staleness_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub route_errors: Family<ReasonLabel, Counter>,
    pub connections: Gauge,
    pub connections_accepted: Counter,
    pub connections_rejected: Counter,
    pub frame_errors: Family<ReasonLabel, Counter>,
    pub connections_closed: Family<ReasonLabel, Counter>,
    pub replies_dropped: Counter,
    pub partial_frame_bytes: Gauge,
    pub requests_in_flight: Gauge,
    pub unsent_reply_bytes: Gauge,
    pub ready: Gauge,
    /// Rate-limits repeated warnings and counts those it suppresses.
    pub warnings: Warnings,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(Warnings::default())
    }
}

impl Metrics {
    /// Every metric, with `warnings` limiting repeated warnings.
    pub fn new(warnings: Warnings) -> Self {
        let requests: Family<RequestLabels, Counter> = Family::default();
        let outcomes = Outcome::ALL.map(|o| requests.get_or_create(&o.labels()).clone());
        Metrics {
            requests,
            outcomes,
            upstream_calls: Family::default(),
            upstream_latency: Family::new_with_constructor(|| {
                // 0.5 ms .. ~16 s
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
            coalesced: Counter::default(),
            zk_reads: Family::default(),
            zk_connected: Gauge::default(),
            zk_sessions: Counter::default(),
            zk_session_expirations: Counter::default(),
            routes: Gauge::default(),
            route_staleness_seconds: Gauge::default(),
            route_errors: Family::default(),
            connections: Gauge::default(),
            connections_accepted: Counter::default(),
            connections_rejected: Counter::default(),
            frame_errors: Family::default(),
            connections_closed: Family::default(),
            replies_dropped: Counter::default(),
            partial_frame_bytes: Gauge::default(),
            requests_in_flight: Gauge::default(),
            unsent_reply_bytes: Gauge::default(),
            ready: Gauge::default(),
            warnings,
        }
    }

    /// A registry holding every metric, for the `/metrics` endpoint.
    pub fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix("metaproxy");
        r.register(
            "requests",
            "Client requests by RPC and result",
            self.requests.clone(),
        );
        r.register(
            "upstream_calls",
            "Calls to MetaServer clusters by result",
            self.upstream_calls.clone(),
        );
        r.register(
            "upstream_duration_seconds",
            "Latency of calls to MetaServer clusters, leader redirects and retries included",
            self.upstream_latency.clone(),
        );
        r.register(
            "coalesced_requests",
            "query_config requests that shared an upstream call already in flight",
            self.coalesced.clone(),
        );
        r.register(
            "zk_reads",
            "ZooKeeper reads of route records by result",
            self.zk_reads.clone(),
        );
        r.register(
            "zk_connected",
            "1 while the ZooKeeper session is connected",
            self.zk_connected.clone(),
        );
        r.register(
            "zk_sessions",
            "ZooKeeper sessions established",
            self.zk_sessions.clone(),
        );
        r.register(
            "zk_session_expirations",
            "ZooKeeper sessions lost (expired or closed)",
            self.zk_session_expirations.clone(),
        );
        r.register("routes", "Tables in the route cache", self.routes.clone());
        r.register(
            "route_staleness_seconds",
            "How long cached routes have gone without ZooKeeper confirming them (0 while connected)",
            self.route_staleness_seconds.clone(),
        );
        r.register(
            "route_errors",
            "Route records that could not be used, by reason",
            self.route_errors.clone(),
        );
        r.register(
            "connections",
            "Open client connections",
            self.connections.clone(),
        );
        r.register(
            "connections_accepted",
            "Client connections accepted",
            self.connections_accepted.clone(),
        );
        r.register(
            "connections_rejected",
            "Client connections closed at once because the connection cap was reached",
            self.connections_rejected.clone(),
        );
        r.register(
            "frame_errors",
            "Client frames that could not be decoded, by reason",
            self.frame_errors.clone(),
        );
        r.register(
            "connections_closed",
            "Client connections closed, by reason (client_closed, idle, frame_timeout, \
             frame_budget, bad_frame, drain, io_error, grace_over)",
            self.connections_closed.clone(),
        );
        r.register(
            "replies_dropped",
            "Requests read from clients whose reply was never written whole, because the \
             connection failed or was cut at the end of the shutdown grace period",
            self.replies_dropped.clone(),
        );
        r.register(
            "partial_frame_bytes",
            "Bytes reserved by partly received request frames, across all connections",
            self.partial_frame_bytes.clone(),
        );
        r.register(
            "requests_in_flight",
            "Client requests read and not yet answered, across all connections",
            self.requests_in_flight.clone(),
        );
        r.register(
            "unsent_reply_bytes",
            "Reply bytes waiting for their clients to take them, across all connections",
            self.unsent_reply_bytes.clone(),
        );
        r.register(
            "log_lines_suppressed",
            "Repeated warnings not logged (one line per kind and key per --log-repeat-interval), by kind",
            self.warnings.suppressed.clone(),
        );
        r.register(
            "ready",
            "1 while the proxy reports ready",
            self.ready.clone(),
        );
        r
    }

    /// Counts a client request.
    pub fn request(&self, outcome: Outcome) {
        self.outcomes[outcome as usize].inc();
    }
}
