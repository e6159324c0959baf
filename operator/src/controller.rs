//! The Kubernetes route source: a kube-runtime controller over `PegasusTableRoute` objects that
//! runs the shared [`Reconciler`], keeps the finalizer (`kube::runtime::finalizer`: the znode is
//! removed before the object may go), patches the status subresource and publishes events.
//!
//! The controller's own cache supplies the other routes' claims (for conflicts); the controller
//! holds reconciles until that cache has its first full list, so no claim is missing. When each
//! route is reconciled again is [`schedule`]'s policy, shared with the routes directory:
//! requeues after success, backoff after errors, and wake-ups from the znode watch
//! ([`crate::drift`]) and from a route that gave a table up.
//!
//! Stopping (shutdown, or the lease lost) interrupts reconciles in flight, ZooKeeper waits
//! included, so that the controller's graceful shutdown does not wait for them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{self, Event as Finalize, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::admin::RoutesView;
use crate::crd::{FINALIZER, PegasusTableRoute};
use crate::drift::{self, Touched};
use crate::error::Error;
use crate::events::Events;
use crate::reconcile::decide::Claim;
use crate::reconcile::schedule::{self, Settled, Timing};
use crate::reconcile::{Reconciler, Report, RouteView, claim_of, now_rfc3339};

#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Only routes in this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
    pub timing: Timing,
    /// The reporting instance named in events.
    pub instance: String,
}

/// What every reconcile shares.
struct Ctx {
    client: Client,
    reconciler: Arc<Reconciler>,
    store: Store<PegasusTableRoute>,
    events: Events,
    failures: Mutex<HashMap<String, u32>>,
    cfg: ControllerConfig,
    wake: mpsc::UnboundedSender<Touched>,
    stop: watch::Receiver<bool>,
}

impl Ctx {
    fn new(
        client: Client,
        reconciler: Arc<Reconciler>,
        store: Store<PegasusTableRoute>,
        cfg: ControllerConfig,
        wake: mpsc::UnboundedSender<Touched>,
        stop: watch::Receiver<bool>,
    ) -> Ctx {
        Ctx {
            events: Events::new(client.clone(), &cfg.instance),
            client,
            reconciler,
            store,
            failures: Mutex::new(HashMap::new()),
            cfg,
            wake,
            stop,
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn id_of(obj: &PegasusTableRoute) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

/// Creation time for seniority. The API server keeps whole seconds: routes created in the same
/// second are ordered by `namespace/name` (see [`crate::reconcile::decide`]).
fn created_ms(obj: &PegasusTableRoute) -> i64 {
    obj.meta()
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_millisecond())
        .unwrap_or(i64::MAX)
}

fn claim(obj: &PegasusTableRoute, reconciler: &Reconciler) -> Option<Claim> {
    claim_of(&id_of(obj), created_ms(obj), &obj.spec, reconciler.zones())
}

fn claims(store: &Store<PegasusTableRoute>, reconciler: &Reconciler) -> Vec<Claim> {
    store
        .state()
        .iter()
        .filter_map(|o| claim(o, reconciler))
        .collect()
}

/// Runs the controller until `stop` turns true. While it runs, `routes` renders the controller's
/// cache.
pub async fn run(
    client: Client,
    reconciler: Arc<Reconciler>,
    cfg: ControllerConfig,
    routes: RoutesView,
    stop: watch::Receiver<bool>,
) {
    let api: Api<PegasusTableRoute> = match &cfg.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let controller = Controller::new(api, watcher::Config::default().any_semantic());
    let store = controller.store();
    {
        let store = store.clone();
        routes.publish_live(move || view(&store));
    }
    let (wake_tx, mut wake_rx) = mpsc::unbounded_channel::<Touched>();
    drift::spawn(reconciler.clone(), wake_tx.clone(), stop.clone());

    // Touched tables become reconciles of the routes that claim them.
    let (trigger_tx, trigger_rx) = mpsc::unbounded_channel::<ObjectRef<PegasusTableRoute>>();
    {
        let store = store.clone();
        let reconciler = reconciler.clone();
        tokio::spawn(async move {
            while let Some(t) = wake_rx.recv().await {
                for obj in store.state() {
                    if claim(&obj, &reconciler).is_some_and(|c| schedule::wakes(&t, &c)) {
                        let _ = trigger_tx.send(ObjectRef::from_obj(&obj));
                    }
                }
            }
        });
    }
    let triggers = futures::stream::unfold(trigger_rx, |mut rx| async move {
        rx.recv().await.map(|r| (r, rx))
    });

    let ctx = Arc::new(Ctx::new(
        client,
        reconciler,
        store,
        cfg,
        wake_tx,
        stop.clone(),
    ));
    let mut stop_signal = stop;
    controller
        .reconcile_on(triggers)
        .graceful_shutdown_on(async move {
            let _ = stop_signal.wait_for(|s| *s).await;
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => debug!(route = %obj, "reconciled"),
                Err(e) => debug!(error = %e, "reconcile failed"),
            }
        })
        .await;
    routes.clear();
    info!("controller stopped");
}

/// One reconcile of one route: the finalizer first (added before anything is written; on
/// deletion, removed once the znode is gone), then the reconciler.
async fn reconcile(obj: Arc<PegasusTableRoute>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = obj.namespace().ok_or(Error::MissingField("namespace"))?;
    let api: Api<PegasusTableRoute> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            Finalize::Apply(obj) => apply(&obj, &api, &ctx).await,
            Finalize::Cleanup(obj) => cleanup(&obj, &ctx).await,
        }
    })
    .await;
    match result {
        Ok(action) => Ok(action),
        // Gone between the cleanup and the finalizer's removal: nothing left to do.
        Err(finalizer::Error::RemoveFinalizer(kube::Error::Api(s))) if s.code == 404 => {
            Ok(Action::await_change())
        }
        Err(finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e)) => Err(e),
        Err(e) => Err(Error::Finalizer(Box::new(e))),
    }
}

/// The reconciler's report for `obj`, unless the controller is stopping first.
async fn run_reconciler(
    obj: &PegasusTableRoute,
    deleting: bool,
    ctx: &Ctx,
) -> Result<Report, Error> {
    let id = id_of(obj);
    let claims = claims(&ctx.store, &ctx.reconciler);
    let view = RouteView {
        id: &id,
        created_ms: created_ms(obj),
        generation: obj.meta().generation,
        spec: &obj.spec,
        status: obj.status.as_ref(),
        deleting,
    };
    let mut stop = ctx.stop.clone();
    let now = now_rfc3339();
    let report = tokio::select! {
        _ = stop.wait_for(|s| *s) => return Err(Error::Stopped),
        report = ctx.reconciler.reconcile(&view, &claims, &now) => report,
    };
    let reference = obj.object_ref(&());
    for notice in &report.notices {
        ctx.events.publish(&reference, notice).await;
    }
    if let Some((zone, table)) = &report.released {
        let _ = ctx.wake.send(Touched {
            zone: zone.clone(),
            table: Some(table.clone()),
        });
    }
    Ok(report)
}

async fn apply(
    obj: &PegasusTableRoute,
    api: &Api<PegasusTableRoute>,
    ctx: &Ctx,
) -> Result<Action, Error> {
    let mut report = run_reconciler(obj, false, ctx).await?;
    if let Some(next) = &report.status
        && obj.status.as_ref() != Some(next)
    {
        let patch = json!({"status": next});
        api.patch_status(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    }
    let settled = report.settled();
    std::mem::replace(&mut report.result, Ok(()))?;
    ctx.failures().remove(&id_of(obj));
    let (wait, _) = schedule::next(settled, 0, &ctx.cfg.timing);
    Ok(Action::requeue(wait))
}

async fn cleanup(obj: &PegasusTableRoute, ctx: &Ctx) -> Result<Action, Error> {
    let report = run_reconciler(obj, true, ctx).await?;
    ctx.failures().remove(&id_of(obj));
    report.result?;
    info!(route = %id_of(obj), "znode released; removing the finalizer");
    Ok(Action::await_change())
}

/// After a failed reconcile: [`schedule::next`]'s backoff for this route's failures in a row.
fn error_policy(obj: Arc<PegasusTableRoute>, err: &Error, ctx: Arc<Ctx>) -> Action {
    if matches!(err, Error::Stopped) {
        return Action::await_change();
    }
    let id = id_of(&obj);
    let wait = {
        let mut failures = ctx.failures();
        let n = failures.entry(id.clone()).or_insert(0);
        let (wait, after) = schedule::next(Settled::Failed, *n, &ctx.cfg.timing);
        *n = after;
        wait
    };
    warn!(route = %id, error = %err, reason = err.metric_label(), retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

/// The `/routes` view: every route in the cache with its status, by namespace/name. Rendered when
/// `/routes` is requested, not on each reconcile (that was quadratic in the number of routes);
/// the cache also has the status the reconciler just patched, once its watch event is in.
fn view(store: &Store<PegasusTableRoute>) -> serde_json::Value {
    let mut routes = store.state();
    routes.sort_by_cached_key(|o| id_of(o));
    routes
        .iter()
        .map(|o| json!({"route": id_of(o), "spec": o.spec, "status": o.status}))
        .collect()
}

/// The controller against a mocked API server (`tower-test`) and an in-memory ZooKeeper: named
/// scenarios of what goes over the wire for one reconcile. The real API server is exercised by
/// `tests/k8s.rs`.
#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use http::{Method, Request, Response};
    use kube::client::Body;
    use kube::runtime::reflector;
    use serde_json::Value;

    use super::*;
    use crate::metrics::Metrics;
    use crate::record;
    use crate::zk::Records;
    use crate::zk::memory::MemoryRecords;
    use crate::zone::{Zone, Zones};

    const TIMING: Timing = Timing {
        resync: Duration::from_secs(60),
        conflict_recheck: Duration::from_secs(10),
    };
    const PATH: &str = "/r/temp";
    const ROUTES: &str =
        "/apis/metaproxy.pegasus.io/v1alpha1/namespaces/default/pegasustableroutes";

    /// One request the operator made: method, path, JSON body.
    #[derive(Debug)]
    struct Call {
        method: Method,
        path: String,
        body: Value,
    }

    struct Fixture {
        ctx: Arc<Ctx>,
        zk: Arc<MemoryRecords>,
        api: tokio::task::JoinHandle<Vec<Call>>,
        /// Kept open: a closed stop channel means stop.
        stop: watch::Sender<bool>,
    }

    /// A context whose client talks to a mock API server answering with `answer` (status and
    /// body for each call), and whose zone `az1` is an in-memory store.
    fn fixture(answer: impl Fn(&Call) -> (u16, Value) + Send + 'static) -> Fixture {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let api = tokio::spawn(async move {
            let mut calls = Vec::new();
            while let Some((request, reply)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let call = Call {
                    method: parts.method,
                    path: parts.uri.path().to_owned(),
                    body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                };
                let (code, body) = answer(&call);
                let response = Response::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(&body).unwrap_or_default()))
                    .expect("response");
                reply.send_response(response);
                calls.push(call);
            }
            calls
        });
        let client = Client::new(service, "default");
        let zk = Arc::new(MemoryRecords::default());
        let zones =
            Zones::new(vec![Zone::parse("az1=127.0.0.1:1/r").expect("zone")], None).expect("zones");
        let stores: BTreeMap<String, Arc<dyn Records>> =
            BTreeMap::from([("az1".to_owned(), zk.clone() as Arc<dyn Records>)]);
        let reconciler = Arc::new(Reconciler::with_stores(
            zones,
            stores,
            Arc::new(Metrics::new()),
        ));
        let (store, _writer) = reflector::store::<PegasusTableRoute>();
        let (wake, _) = mpsc::unbounded_channel();
        let (stop_tx, stop) = watch::channel(false);
        let cfg = ControllerConfig {
            namespace: None,
            timing: TIMING,
            instance: "test".into(),
        };
        Fixture {
            ctx: Arc::new(Ctx::new(client, reconciler, store, cfg, wake, stop)),
            zk,
            api,
            stop: stop_tx,
        }
    }

    impl Fixture {
        /// Every call the operator made, once it holds no client any more.
        async fn calls(self) -> Vec<Call> {
            drop(self.ctx);
            self.api.await.expect("mock API server")
        }
    }

    fn route(extra: Value) -> PegasusTableRoute {
        let mut obj = serde_json::json!({
            "apiVersion": "metaproxy.pegasus.io/v1alpha1",
            "kind": "PegasusTableRoute",
            "metadata": {
                "name": "temp",
                "namespace": "default",
                "uid": "u-1",
                "resourceVersion": "7",
                "generation": 1,
                "creationTimestamp": "2026-01-01T00:00:00Z",
            },
            "spec": {
                "table": "temp",
                "primary": {"cluster": "c1", "metaServers": ["10.0.0.1:34601"]},
                "backup": {"cluster": "c2", "metaServers": ["10.1.0.1:34601"]},
            },
        });
        merge(&mut obj, extra);
        serde_json::from_value(obj).expect("route")
    }

    fn merge(base: &mut Value, over: Value) {
        match (base, over) {
            (_, Value::Null) => {}
            (Value::Object(b), Value::Object(o)) => {
                for (k, v) in o {
                    merge(b.entry(k).or_insert(Value::Null), v);
                }
            }
            (b, o) => *b = o,
        }
    }

    fn with_finalizer() -> Value {
        serde_json::json!({"metadata": {"finalizers": [FINALIZER]}})
    }

    /// The API server's answers: the object for patches, 404 for events (so that they are
    /// skipped after the first).
    fn answers(obj: &PegasusTableRoute) -> impl Fn(&Call) -> (u16, Value) + Send + 'static {
        let body = serde_json::to_value(obj).expect("json");
        move |call| {
            if call.path.contains("/events") {
                (
                    404,
                    serde_json::json!({"kind": "Status", "code": 404, "reason": "NotFound"}),
                )
            } else {
                (200, body.clone())
            }
        }
    }

    fn condition<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
        status["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == type_)
    }

    #[tokio::test]
    async fn a_new_route_gets_the_finalizer_before_anything_is_written() {
        let obj = route(Value::Null);
        let f = fixture(answers(&obj));
        let action = reconcile(Arc::new(obj), f.ctx.clone())
            .await
            .expect("reconciled");
        assert_eq!(
            action,
            Action::await_change(),
            "the patch event reconciles again"
        );
        assert_eq!(f.zk.get(PATH), None, "nothing written yet");
        let calls = f.calls().await;
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(calls[0].method, Method::PATCH);
        assert_eq!(calls[0].path, format!("{ROUTES}/temp"));
        let ops = calls[0].body.as_array().expect("a JSON patch");
        assert_eq!(ops[0]["op"], "test", "a compare-and-set on the finalizers");
        assert_eq!(ops[1]["op"], "add");
        assert_eq!(ops[1]["value"], serde_json::json!([FINALIZER]));
    }

    #[tokio::test]
    async fn a_route_with_its_finalizer_is_written_and_its_status_patched() {
        let obj = route(with_finalizer());
        let f = fixture(answers(&obj));
        let action = reconcile(Arc::new(obj), f.ctx.clone())
            .await
            .expect("reconciled");
        assert_eq!(action, Action::requeue(TIMING.resync));
        let record = metaproxy::route::RouteRecord::new("c1", ["10.0.0.1:34601"]).expect("record");
        let znode = f.zk.get(PATH).expect("znode written");
        assert_eq!(znode.data, record::to_json(&record, "default/temp"));
        let calls = f.calls().await;
        let status = calls
            .iter()
            .find(|c| c.method == Method::PATCH && c.path == format!("{ROUTES}/temp/status"))
            .map(|c| &c.body["status"])
            .expect("status patched");
        assert_eq!(status["znode"], PATH);
        assert_eq!(status["znodeVersion"], 0);
        assert_eq!(status["activeCluster"], "c1");
        assert_eq!(status["observedGeneration"], 1);
        assert_eq!(condition(status, "Ready").expect("Ready")["status"], "True");
        assert!(condition(status, "AutomaticFailover").is_none(), "{status}");
        assert!(
            calls
                .iter()
                .any(|c| c.method == Method::POST && c.path.contains("/events")),
            "the Created event was tried: {calls:?}"
        );
    }

    #[tokio::test]
    async fn automatic_failover_is_reported_as_not_active() {
        let obj = route(serde_json::json!({
            "metadata": {"finalizers": [FINALIZER]},
            "spec": {"failover": {"mode": "Automatic"}, "active": "backup"},
        }));
        let f = fixture(answers(&obj));
        reconcile(Arc::new(obj), f.ctx.clone())
            .await
            .expect("reconciled");
        let backup = metaproxy::route::RouteRecord::new("c2", ["10.1.0.1:34601"]).expect("record");
        assert_eq!(
            f.zk.get(PATH).map(|z| z.data),
            Some(record::to_json(&backup, "default/temp")),
            "the spec's active cluster is written"
        );
        let calls = f.calls().await;
        let status = calls
            .iter()
            .find(|c| c.path == format!("{ROUTES}/temp/status"))
            .map(|c| &c.body["status"])
            .expect("status patched");
        let c = condition(status, "AutomaticFailover").expect("condition");
        assert_eq!(
            (c["status"].as_str(), c["reason"].as_str()),
            (Some("False"), Some("NotImplemented"))
        );
        assert_eq!(condition(status, "Ready").expect("Ready")["status"], "True");
        let events: Vec<&Value> = calls
            .iter()
            .filter(|c| c.path.contains("/events"))
            .map(|c| &c.body)
            .collect();
        assert_eq!(
            events.first().map(|e| e["reason"].clone()),
            Some(Value::from("AutomaticFailoverNotActive")),
            "a Warning event first: {events:?}"
        );
    }

    #[tokio::test]
    async fn a_deleted_route_removes_its_znode_then_its_finalizer() {
        let record = metaproxy::route::RouteRecord::new("c1", ["10.0.0.1:34601"]).expect("record");
        let obj = route(serde_json::json!({
            "metadata": {
                "finalizers": ["other.io/keep", FINALIZER],
                "deletionTimestamp": "2026-01-02T00:00:00Z",
            },
            "status": {"zone": "az1", "znode": PATH, "znodeVersion": 0},
        }));
        let f = fixture(answers(&obj));
        f.zk.create(PATH, &record::to_json(&record, "default/temp"))
            .await
            .expect("znode");
        let action = reconcile(Arc::new(obj), f.ctx.clone())
            .await
            .expect("cleaned up");
        assert_eq!(action, Action::await_change());
        assert_eq!(f.zk.get(PATH), None, "znode deleted");
        let calls = f.calls().await;
        let last = calls.last().expect("calls");
        assert_eq!(
            (&last.method, last.path.as_str()),
            (&Method::PATCH, format!("{ROUTES}/temp").as_str())
        );
        assert_eq!(
            last.body,
            serde_json::json!([
                {"op": "test", "path": "/metadata/finalizers/1", "value": FINALIZER},
                {"op": "remove", "path": "/metadata/finalizers/1"},
            ]),
            "only our finalizer goes, and only if it is still where it was"
        );
    }

    #[tokio::test]
    async fn a_route_gone_before_its_finalizer_is_removed_is_done() {
        let obj = route(serde_json::json!({
            "metadata": {"finalizers": [FINALIZER], "deletionTimestamp": "2026-01-02T00:00:00Z"},
        }));
        let f = fixture(|call| {
            if call.method == Method::PATCH {
                (
                    404,
                    serde_json::json!({"kind": "Status", "code": 404, "reason": "NotFound"}),
                )
            } else {
                (404, serde_json::json!({"kind": "Status", "code": 404}))
            }
        });
        let action = reconcile(Arc::new(obj), f.ctx.clone())
            .await
            .expect("nothing left to do");
        assert_eq!(action, Action::await_change());
        let calls = f.calls().await;
        assert_eq!(calls.len(), 1, "only the finalizer removal: {calls:?}");
    }

    #[tokio::test]
    async fn zookeeper_down_is_in_the_status_and_retried_with_backoff() {
        let obj = Arc::new(route(with_finalizer()));
        let f = fixture(answers(&obj));
        f.zk.set_down(true);
        let err = reconcile(obj.clone(), f.ctx.clone())
            .await
            .expect_err("ZooKeeper is down");
        assert_eq!(err.metric_label(), "zookeeper_unavailable");
        let waits: Vec<Action> = (0..3)
            .map(|_| error_policy(obj.clone(), &err, f.ctx.clone()))
            .collect();
        assert_eq!(
            waits,
            [1, 2, 4].map(|s| Action::requeue(Duration::from_secs(s))),
            "the schedule's backoff"
        );
        f.zk.set_down(false);
        let action = reconcile(obj.clone(), f.ctx.clone()).await.expect("back");
        assert_eq!(action, Action::requeue(TIMING.resync));
        assert_eq!(
            error_policy(obj.clone(), &err, f.ctx.clone()),
            Action::requeue(Duration::from_secs(1)),
            "a success resets the backoff"
        );
        let calls = f.calls().await;
        let status = calls
            .iter()
            .find(|c| c.path == format!("{ROUTES}/temp/status"))
            .map(|c| &c.body["status"])
            .expect("status patched");
        let ready = condition(status, "Ready").expect("Ready");
        assert_eq!(
            (ready["status"].as_str(), ready["reason"].as_str()),
            (Some("False"), Some("ZooKeeperUnavailable"))
        );
    }

    #[tokio::test]
    async fn stopping_interrupts_a_reconcile_waiting_on_zookeeper() {
        let obj = Arc::new(route(with_finalizer()));
        let f = fixture(answers(&obj));
        f.zk.set_hanging(true);
        let task = tokio::spawn(reconcile(obj.clone(), f.ctx.clone()));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!task.is_finished(), "waiting on ZooKeeper");
        let _ = f.stop.send(true);
        let err = tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("stops at once")
            .expect("no panic")
            .expect_err("interrupted");
        assert!(matches!(err, Error::Stopped), "{err}");
        assert_eq!(
            error_policy(obj, &err, f.ctx.clone()),
            Action::await_change(),
            "no retry is scheduled for a stop"
        );
    }
}
