//! The admin HTTP port: `/live`, `/ready`, `/metrics` (Prometheus text), and `/routes` (what the
//! operator knows of each route, as JSON).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::RwLock;

use crate::metrics::Metrics;

#[derive(Clone)]
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    /// Set once the route source is running; cleared when shutting down.
    pub ready: Arc<AtomicBool>,
    /// The route source's view, served at `/routes`.
    pub routes: Arc<RwLock<serde_json::Value>>,
}

impl AdminState {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        AdminState {
            metrics,
            ready: Arc::new(AtomicBool::new(false)),
            routes: Arc::new(RwLock::new(serde_json::Value::Array(Vec::new()))),
        }
    }
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/live", get(|| async { "live\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/routes", get(routes))
        .with_state(state)
}

async fn ready(State(s): State<AdminState>) -> impl IntoResponse {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

async fn routes(State(s): State<AdminState>) -> impl IntoResponse {
    axum::Json(s.routes.read().await.clone())
}

/// Serves until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
