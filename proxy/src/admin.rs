//! The admin HTTP port: `/live`, `/ready`, `/metrics` (Prometheus text format), `/routes` (the
//! route cache as JSON) and `/clusters` (each cluster's health as real traffic saw it, JSON).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use prometheus_client::encoding::prometheus_text;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::clusters::ClusterView;
use crate::metrics::Metrics;
use crate::route::{RouteInfo, Routes};
use crate::server::ServeError;
use crate::upstream::Upstreams;

/// What the admin endpoints read: the route source, the metrics, and the proxy's own state.
#[derive(Clone)]
pub struct AdminState {
    pub routes: Arc<Routes>,
    pub upstreams: Arc<Upstreams>,
    pub metrics: Metrics,
    /// Set when the proxy starts draining: it is no longer ready.
    pub draining: Arc<AtomicBool>,
    /// Set when the client listener stopped without a drain: no client can connect, so the
    /// proxy is not ready while it waits to exit.
    pub listener_failure: watch::Receiver<Option<ServeError>>,
}

impl AdminState {
    pub fn is_ready(&self) -> bool {
        !self.draining.load(Ordering::Acquire)
            && self.listener_failure.borrow().is_none()
            && self.routes.is_ready()
    }
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/live", get(|| async { "live\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/routes", get(routes))
        .route("/clusters", get(clusters))
        .with_state(state)
}

/// Serves the admin port until `shutdown` turns true.
pub async fn serve(listener: TcpListener, state: AdminState, mut shutdown: watch::Receiver<bool>) {
    let app = router(state);
    let stop = async move { crate::server::stopped(&mut shutdown).await };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!(error = %e, "admin server failed");
    }
}

async fn ready(State(state): State<AdminState>) -> Response {
    if state.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else if state.draining.load(Ordering::Acquire) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else if state.listener_failure.borrow().is_some() {
        (StatusCode::SERVICE_UNAVAILABLE, "client listener stopped\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no route source yet\n").into_response()
    }
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let m = &state.metrics;
    let routes = &state.routes;
    m.routes.set(routes.len() as i64);
    m.route_staleness_seconds
        .set(routes.staleness().as_secs_f64());
    m.ready.set(i64::from(state.is_ready()));
    let mut text = String::with_capacity(8192);
    match prometheus_text::encode(&mut text, &m.registry()) {
        Ok(()) => (
            [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
            text,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics failed: {e}\n"),
        )
            .into_response(),
    }
}

#[derive(Serialize)]
struct RoutesView {
    source: &'static str,
    ready: bool,
    zk_connected: Option<bool>,
    staleness_seconds: f64,
    routes: Vec<RouteInfo>,
}

async fn routes(State(state): State<AdminState>) -> Json<RoutesView> {
    let routes = &state.routes;
    Json(RoutesView {
        source: routes.kind(),
        ready: state.is_ready(),
        zk_connected: routes.connected(),
        staleness_seconds: routes.staleness().as_secs_f64(),
        routes: routes.snapshot(),
    })
}

#[derive(Serialize)]
struct ClustersView {
    /// How long a cluster no route uses any more stays listed after its last call.
    history_seconds: f64,
    clusters: Vec<ClusterView>,
}

async fn clusters(State(state): State<AdminState>) -> Json<ClustersView> {
    let upstreams = &state.upstreams;
    Json(ClustersView {
        history_seconds: upstreams.health().history().as_secs_f64(),
        clusters: upstreams.health().view(&upstreams.routed()),
    })
}
