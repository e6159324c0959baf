//! The admin HTTP API: JSON requests from scripts and the demo in, [`SimHandle`] calls out. The
//! endpoints are listed in the [`crate::sim`] module docs and in `pegasus-meta-sim --help`.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::{SimError, SimHandle, TableSpec};

/// The router, for serving on a listener of one's own.
pub fn router(handle: SimHandle) -> Router {
    Router::new()
        .route("/state", get(state))
        .route("/leader", post(set_leader))
        .route("/metas/{meta}/stop", post(stop_meta))
        .route("/metas/{meta}/start", post(start_meta))
        .route("/metas/{meta}/not-active", put(set_not_active))
        .route("/metas/{meta}/delay", put(set_delay))
        .route("/tables", get(tables))
        .route("/tables/{name}", put(put_table).delete(drop_table))
        .route("/counters", get(counters))
        .route("/counters/reset", post(reset_counters))
        .with_state(handle)
}

/// Serves the API on `listener` until `stop` fires or its sender is dropped.
pub async fn serve(listener: TcpListener, handle: SimHandle, stop: oneshot::Receiver<()>) {
    let addr = listener.local_addr().ok();
    info!(addr = ?addr, "admin API listening");
    let shutdown = async {
        // Either a stop or a dropped sender means the same.
        let _ = stop.await;
    };
    if let Err(e) = axum::serve(listener, router(handle))
        .with_graceful_shutdown(shutdown)
        .await
    {
        warn!(error = %e, "admin API failed");
    }
}

/// An error as the API returns it: a status and `{"error": "..."}`.
struct ApiError(StatusCode, String);

impl From<SimError> for ApiError {
    fn from(e: SimError) -> Self {
        let status = match e {
            SimError::NoSuchMeta(_) => StatusCode::NOT_FOUND,
            SimError::Bind { .. } => StatusCode::CONFLICT,
            SimError::ReadConfig { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            SimError::Yaml(_) | SimError::Config(_) | SimError::InvalidTable { .. } => {
                StatusCode::BAD_REQUEST
            }
        };
        ApiError(status, e.to_string())
    }
}

/// Parses a JSON body whatever its content type says, so that `curl -d '{...}'` works as is.
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("bad JSON body: {e}")))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// A MetaServer named by its index or its listen address.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum MetaRef {
    Index(usize),
    Addr(String),
}

impl SimHandle {
    fn resolve(&self, meta: &MetaRef) -> Result<usize, SimError> {
        let found = match meta {
            MetaRef::Index(i) => (*i < self.meta_addrs().len()).then_some(*i),
            MetaRef::Addr(s) => match s.parse::<usize>() {
                Ok(i) => return self.resolve(&MetaRef::Index(i)),
                Err(_) => s
                    .parse::<SocketAddr>()
                    .ok()
                    .and_then(|a| self.meta_index(a)),
            },
        };
        found.ok_or_else(|| {
            SimError::NoSuchMeta(match meta {
                MetaRef::Index(i) => i.to_string(),
                MetaRef::Addr(s) => s.clone(),
            })
        })
    }
}

#[derive(Serialize)]
struct Done {
    ok: bool,
}

const DONE: Json<Done> = Json(Done { ok: true });

async fn state(State(h): State<SimHandle>) -> Json<super::SimState> {
    Json(h.state())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaderBody {
    meta: Option<MetaRef>,
}

async fn set_leader(State(h): State<SimHandle>, body: Bytes) -> ApiResult<super::SimState> {
    let body: LeaderBody = parse(&body)?;
    let leader = body.meta.map(|m| h.resolve(&m)).transpose()?;
    h.set_leader(leader)?;
    Ok(Json(h.state()))
}

async fn stop_meta(State(h): State<SimHandle>, Path(meta): Path<String>) -> ApiResult<Done> {
    let i = h.resolve(&MetaRef::Addr(meta))?;
    h.stop_meta(i).await?;
    Ok(DONE)
}

async fn start_meta(State(h): State<SimHandle>, Path(meta): Path<String>) -> ApiResult<Done> {
    let i = h.resolve(&MetaRef::Addr(meta))?;
    h.start_meta(i).await?;
    Ok(DONE)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NotActiveBody {
    not_active: bool,
}

async fn set_not_active(
    State(h): State<SimHandle>,
    Path(meta): Path<String>,
    body: Bytes,
) -> ApiResult<Done> {
    let body: NotActiveBody = parse(&body)?;
    let i = h.resolve(&MetaRef::Addr(meta))?;
    h.set_not_active(i, body.not_active)?;
    Ok(DONE)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DelayBody {
    delay_ms: u64,
}

async fn set_delay(
    State(h): State<SimHandle>,
    Path(meta): Path<String>,
    body: Bytes,
) -> ApiResult<Done> {
    let body: DelayBody = parse(&body)?;
    let i = h.resolve(&MetaRef::Addr(meta))?;
    h.set_delay(i, std::time::Duration::from_millis(body.delay_ms))?;
    Ok(DONE)
}

async fn tables(State(h): State<SimHandle>) -> Json<Vec<TableSpec>> {
    Json(h.tables())
}

/// A table spec without its name, which comes from the path.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableBody {
    app_id: i32,
    partition_count: i32,
    replicas: Vec<std::net::SocketAddrV4>,
    #[serde(default)]
    replica_hosts: Option<Vec<String>>,
    #[serde(default)]
    host_port_fields: Option<bool>,
}

async fn put_table(
    State(h): State<SimHandle>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<TableSpec> {
    let b: TableBody = parse(&body)?;
    let spec = TableSpec {
        name,
        app_id: b.app_id,
        partition_count: b.partition_count,
        replicas: b.replicas,
        replica_hosts: b.replica_hosts,
        host_port_fields: b.host_port_fields,
    };
    h.put_table(spec.clone())?;
    Ok(Json(spec))
}

async fn drop_table(State(h): State<SimHandle>, Path(name): Path<String>) -> ApiResult<Done> {
    if h.drop_table(&name) {
        Ok(DONE)
    } else {
        Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no table {name:?}"),
        ))
    }
}

async fn counters(State(h): State<SimHandle>) -> Json<super::Counters> {
    Json(h.counters())
}

async fn reset_counters(State(h): State<SimHandle>) -> Json<Done> {
    h.reset_counters();
    DONE
}
