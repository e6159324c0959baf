//! The admin HTTP API: JSON requests from scripts and the demo in, [`SimHandle`] calls out. The
//! endpoints are listed in the [`crate::sim`] module docs and in `pegasus-meta-sim --help`.

use std::net::SocketAddr;

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
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

use super::{
    DuplicationSpec, EnvUpdate, ReplicaMode, ReplicaState, SimError, SimHandle, TableSpec,
    TableState, envs,
};

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
        .route(
            "/tables/{name}",
            get(table_state).put(put_table).delete(drop_table),
        )
        .route("/tables/{name}/envs", post(update_envs))
        .route("/tables/{name}/duplications", post(add_duplication))
        .route("/duplication/lag", put(set_dup_lag))
        .route("/replicas", get(replicas))
        .route("/replicas/mode", put(set_all_modes))
        .route("/replicas/{replica}/mode", put(set_mode))
        .route("/cluster/stop", post(stop_cluster))
        .route("/cluster/start", post(start_cluster))
        .route("/data/{table}", get(read_data))
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
            SimError::NoSuchMeta(_) | SimError::NoSuchReplica(_) | SimError::NoSuchTable(_) => {
                StatusCode::NOT_FOUND
            }
            SimError::Bind { .. } => StatusCode::CONFLICT,
            SimError::ReadConfig { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            SimError::Yaml(_)
            | SimError::Config(_)
            | SimError::InvalidTable { .. }
            | SimError::BadKey(_) => StatusCode::BAD_REQUEST,
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
    #[serde(default)]
    envs: BTreeMap<String, String>,
    #[serde(default)]
    duplication: Option<DuplicationSpec>,
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
        envs: b.envs,
        duplication: b.duplication,
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

async fn table_state(
    State(h): State<SimHandle>,
    Path(name): Path<String>,
) -> ApiResult<TableState> {
    h.table_state(&name)
        .map(Json)
        .ok_or_else(|| SimError::NoSuchTable(name).into())
}

/// An update_app_env request: `{"op": "set", "keys": [...], "values": [...]}`, `{"op": "del",
/// "keys": [...]}` or `{"op": "clear", "clear_prefix": "replica"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvsBody {
    op: String,
    #[serde(default)]
    keys: Option<Vec<String>>,
    #[serde(default)]
    values: Option<Vec<String>>,
    #[serde(default)]
    clear_prefix: Option<String>,
}

#[derive(Serialize)]
struct EnvsAnswer {
    err: String,
    hint: String,
    envs: Option<BTreeMap<String, String>>,
}

async fn update_envs(
    State(h): State<SimHandle>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<EnvsAnswer> {
    let b: EnvsBody = parse(&body)?;
    let op = match b.op.as_str() {
        "set" => envs::OP_SET,
        "del" => envs::OP_DEL,
        "clear" => envs::OP_CLEAR,
        other => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("op {other:?}: expected set, del or clear"),
            ));
        }
    };
    let answer = h.update_app_env(
        &name,
        &EnvUpdate {
            op,
            keys: b.keys,
            values: b.values,
            clear_prefix: b.clear_prefix,
        },
    );
    Ok(Json(EnvsAnswer {
        err: answer.err.to_string(),
        hint: answer.hint,
        envs: h.table_state(&name).map(|t| t.envs),
    }))
}

#[derive(Serialize)]
struct DupAdded {
    dupid: i32,
    existed: bool,
}

async fn add_duplication(
    State(h): State<SimHandle>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<DupAdded> {
    let spec: DuplicationSpec = parse(&body)?;
    let (dupid, existed) = h.add_duplication(&name, spec)?;
    Ok(Json(DupAdded { dupid, existed }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LagBody {
    lag_ms: u64,
}

async fn set_dup_lag(State(h): State<SimHandle>, body: Bytes) -> ApiResult<Done> {
    let b: LagBody = parse(&body)?;
    h.set_dup_lag(std::time::Duration::from_millis(b.lag_ms));
    Ok(DONE)
}

async fn replicas(State(h): State<SimHandle>) -> Json<Vec<ReplicaState>> {
    Json(h.replica_states())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModeBody {
    mode: ReplicaMode,
}

impl SimHandle {
    /// A replica node named by its index or its listen address.
    fn resolve_replica(&self, replica: &str) -> Result<usize, SimError> {
        let found = match replica.parse::<usize>() {
            Ok(i) => (i < self.replica_addrs().len()).then_some(i),
            Err(_) => replica
                .parse::<SocketAddr>()
                .ok()
                .and_then(|a| self.replica_index(a)),
        };
        found.ok_or_else(|| SimError::NoSuchReplica(replica.to_owned()))
    }
}

async fn set_mode(
    State(h): State<SimHandle>,
    Path(replica): Path<String>,
    body: Bytes,
) -> ApiResult<Vec<ReplicaState>> {
    let b: ModeBody = parse(&body)?;
    let i = h.resolve_replica(&replica)?;
    h.set_replica_mode(i, b.mode).await?;
    Ok(Json(h.replica_states()))
}

async fn set_all_modes(State(h): State<SimHandle>, body: Bytes) -> ApiResult<Vec<ReplicaState>> {
    let b: ModeBody = parse(&body)?;
    h.set_all_replica_modes(b.mode).await?;
    Ok(Json(h.replica_states()))
}

async fn stop_cluster(State(h): State<SimHandle>) -> Json<Done> {
    h.stop_cluster().await;
    DONE
}

async fn start_cluster(State(h): State<SimHandle>) -> ApiResult<Done> {
    h.start_cluster().await?;
    Ok(DONE)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyQuery {
    hash_key: String,
    #[serde(default)]
    sort_key: String,
}

#[derive(Serialize)]
struct DataAnswer {
    found: bool,
    /// The value as text (invalid UTF-8 replaced).
    value: Option<String>,
}

async fn read_data(
    State(h): State<SimHandle>,
    Path(table): Path<String>,
    Query(q): Query<KeyQuery>,
) -> ApiResult<DataAnswer> {
    let value = h.read(&table, q.hash_key.as_bytes(), q.sort_key.as_bytes())?;
    Ok(Json(DataAnswer {
        found: value.is_some(),
        value: value.map(|v| String::from_utf8_lossy(&v).into_owned()),
    }))
}

async fn counters(State(h): State<SimHandle>) -> Json<super::Counters> {
    Json(h.counters())
}

async fn reset_counters(State(h): State<SimHandle>) -> Json<Done> {
    h.reset_counters();
    DONE
}
