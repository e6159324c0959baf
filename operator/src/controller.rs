//! The Kubernetes route source: a kube-runtime controller over `PegasusTableRoute` objects that
//! runs the shared [`Reconciler`], keeps the finalizer, patches the status subresource and
//! publishes events.
//!
//! The controller's own cache supplies the other routes' claims (for conflicts). Reconciles are
//! also triggered by the znode watch ([`crate::drift`]) and, when a route gives up a table, for
//! the routes that wait for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
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
use crate::reconcile::{Reconciler, RouteView, backoff, claim_of, now_rfc3339, status};

#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Only routes in this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
    pub resync: Duration,
    pub conflict_recheck: Duration,
    /// The reporting instance named in events.
    pub instance: String,
}

struct Ctx {
    client: Client,
    reconciler: Arc<Reconciler>,
    store: Store<PegasusTableRoute>,
    events: Events,
    failures: Mutex<HashMap<String, u32>>,
    cfg: ControllerConfig,
    wake: mpsc::UnboundedSender<Touched>,
}

fn id_of(obj: &PegasusTableRoute) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

fn created_ms(obj: &PegasusTableRoute) -> i64 {
    obj.meta()
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_millisecond())
        .unwrap_or(i64::MAX)
}

fn claims(store: &Store<PegasusTableRoute>, reconciler: &Reconciler) -> Vec<Claim> {
    store
        .state()
        .iter()
        .filter_map(|o| claim_of(&id_of(o), created_ms(o), &o.spec, reconciler.zones()))
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
                    let Some(c) = claim_of(
                        &id_of(&obj),
                        created_ms(&obj),
                        &obj.spec,
                        reconciler.zones(),
                    ) else {
                        continue;
                    };
                    if c.zone == t.zone && t.table.as_ref().is_none_or(|table| *table == c.table) {
                        let _ = trigger_tx.send(ObjectRef::from_obj(&obj));
                    }
                }
            }
        });
    }
    let triggers = futures::stream::unfold(trigger_rx, |mut rx| async move {
        rx.recv().await.map(|r| (r, rx))
    });

    let ctx = Arc::new(Ctx {
        events: Events::new(client.clone(), &cfg.instance),
        client,
        reconciler,
        store,
        failures: Mutex::new(HashMap::new()),
        cfg,
        wake: wake_tx,
    });
    let mut stop_signal = stop.clone();
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

async fn reconcile(obj: Arc<PegasusTableRoute>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = obj.namespace().ok_or(Error::MissingField("namespace"))?;
    let name = obj.name_any();
    let id = id_of(&obj);
    let api: Api<PegasusTableRoute> = Api::namespaced(ctx.client.clone(), &ns);
    let deleting = obj.meta().deletion_timestamp.is_some();
    let has_finalizer = obj.finalizers().iter().any(|f| f == FINALIZER);
    if deleting && !has_finalizer {
        return Ok(Action::await_change());
    }
    if !deleting && !has_finalizer {
        // The resourceVersion makes this a compare-and-set on the object.
        let mut finalizers = obj.finalizers().to_vec();
        finalizers.push(FINALIZER.to_owned());
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": obj.resource_version()}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }

    let claims = claims(&ctx.store, &ctx.reconciler);
    let view = RouteView {
        id: &id,
        created_ms: created_ms(&obj),
        generation: obj.meta().generation,
        spec: &obj.spec,
        status: obj.status.as_ref(),
        deleting,
    };
    let report = ctx
        .reconciler
        .reconcile(&view, &claims, &now_rfc3339())
        .await;
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

    if deleting {
        if report.cleaned_up {
            let finalizers: Vec<&String> = obj
                .finalizers()
                .iter()
                .filter(|f| *f != FINALIZER)
                .collect();
            let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": obj.resource_version()}});
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => info!(route = %id, "finalizer removed"),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        forget(&ctx, &id);
        report.result?;
        return Ok(Action::await_change());
    }

    if let Some(next) = &report.status
        && obj.status.as_ref() != Some(next)
    {
        let patch = json!({"status": next});
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    report.result?;
    if let Ok(mut f) = ctx.failures.lock() {
        f.remove(&id);
    }
    let yielded = report
        .status
        .as_ref()
        .and_then(|s| s.condition(status::CONFLICT))
        .is_some_and(|c| c.status == "True");
    Ok(Action::requeue(if yielded {
        ctx.cfg.conflict_recheck
    } else {
        ctx.cfg.resync
    }))
}

fn forget(ctx: &Ctx, id: &str) {
    if let Ok(mut f) = ctx.failures.lock() {
        f.remove(id);
    }
}

fn error_policy(obj: Arc<PegasusTableRoute>, err: &Error, ctx: Arc<Ctx>) -> Action {
    let id = id_of(&obj);
    let failures = match ctx.failures.lock() {
        Ok(mut f) => {
            let n = f.entry(id.clone()).or_insert(0);
            *n += 1;
            *n
        }
        Err(_) => 1,
    };
    let wait = backoff(failures - 1);
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
