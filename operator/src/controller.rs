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
pub struct Ctx {
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
    pub fn new(
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
pub async fn reconcile(obj: Arc<PegasusTableRoute>, ctx: Arc<Ctx>) -> Result<Action, Error> {
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
pub fn error_policy(obj: Arc<PegasusTableRoute>, err: &Error, ctx: Arc<Ctx>) -> Action {
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
