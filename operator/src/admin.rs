//! The admin HTTP port: `/live`, `/ready`, `/metrics` (Prometheus text), and `/routes` (what the
//! operator knows of each route, as JSON).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

#[derive(Clone)]
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    /// Set once the route source is running; cleared when shutting down.
    pub ready: Arc<AtomicBool>,
    /// The route source's view, served at `/routes`.
    pub routes: RoutesView,
}

impl AdminState {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        AdminState {
            metrics,
            ready: Arc::new(AtomicBool::new(false)),
            routes: RoutesView::default(),
        }
    }
}

/// What `/routes` shows, as the route source publishes it: a snapshot replaced as a whole (the
/// routes directory, after each pass), or a function rendered only when `/routes` is requested
/// (the Kubernetes controller over its cache, so that reconciles pay nothing for the view).
#[derive(Clone, Default)]
pub struct RoutesView(Arc<RwLock<View>>);

#[derive(Clone, Default)]
enum View {
    #[default]
    Empty,
    Snapshot(Arc<serde_json::Value>),
    Live(Arc<dyn Fn() -> serde_json::Value + Send + Sync>),
}

impl RoutesView {
    pub fn publish(&self, snapshot: serde_json::Value) {
        self.set(View::Snapshot(Arc::new(snapshot)));
    }

    pub fn publish_live(&self, render: impl Fn() -> serde_json::Value + Send + Sync + 'static) {
        self.set(View::Live(Arc::new(render)));
    }

    /// Back to `[]`, for a source that stopped: what it saw is no longer kept up to date.
    pub fn clear(&self) {
        self.set(View::Empty);
    }

    pub fn render(&self) -> serde_json::Value {
        // Cloned out (an Arc) so that rendering happens outside the lock.
        let view = self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match view {
            View::Empty => serde_json::Value::Array(Vec::new()),
            View::Snapshot(snapshot) => (*snapshot).clone(),
            View::Live(render) => render(),
        }
    }

    fn set(&self, view: View) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = view;
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
    axum::Json(s.routes.render())
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn routes_view_follows_what_the_source_publishes() {
        let view = RoutesView::default();
        assert_eq!(view.render(), json!([]));
        view.publish(json!([{"file": "a.yaml"}]));
        assert_eq!(view.render(), json!([{"file": "a.yaml"}]));

        let renders = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = renders.clone();
        view.publish_live(move || {
            let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
            json!([{"route": "ns/r", "render": n}])
        });
        assert_eq!(
            renders.load(Ordering::Relaxed),
            0,
            "nothing rendered until asked"
        );
        assert_eq!(view.render(), json!([{"route": "ns/r", "render": 1}]));
        assert_eq!(view.render(), json!([{"route": "ns/r", "render": 2}]));

        view.clear();
        assert_eq!(view.render(), json!([]));
    }
}
