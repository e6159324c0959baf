//! Leader election on a `coordination.k8s.io/v1` Lease, so that one operator replica acts at a
//! time. kube 5 has no elector of its own; this one follows the usual Lease protocol:
//!
//! - every write is a replace with the `resourceVersion` that was read, so two candidates cannot
//!   both take the lease (the loser gets 409 Conflict);
//! - a lease held by another is taken over only after it went unchanged for its whole duration,
//!   measured on this replica's monotonic clock from when the change was seen (clock skew
//!   between replicas does not matter; it is tokio's clock, so tests can pause it);
//! - the holder renews every `retry` and steps down when it could not renew for `renew_deadline`
//!   (shorter than the duration, so it stops before anyone else may take over);
//! - on shutdown the holder releases the lease so a standby takes over at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::time::Instant;
use tracing::{debug, info, warn};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    pub duration: Duration,
    pub renew_deadline: Duration,
    pub retry: Duration,
}

pub struct LeaderElector {
    api: Api<Lease>,
    cfg: LeaseConfig,
    /// The holder and resourceVersion last seen, and when (monotonic).
    observed: Option<(Option<String>, String, Instant)>,
    last_renewed: Option<Instant>,
}

impl LeaderElector {
    pub fn new(client: Client, cfg: LeaseConfig) -> Self {
        LeaderElector {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
            observed: None,
            last_renewed: None,
        }
    }

    pub fn config(&self) -> &LeaseConfig {
        &self.cfg
    }

    fn spec(&self, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        LeaseSpec {
            holder_identity: Some(self.cfg.identity.clone()),
            lease_duration_seconds: Some(self.cfg.duration.as_secs().max(1) as i32),
            acquire_time: Some(acquired.unwrap_or_else(|| now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// One round: create, renew or take over the lease when allowed. `Ok(true)` while this
    /// replica holds it.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let current = match self.api.get_opt(&self.cfg.name).await? {
            Some(l) => l,
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.cfg.name.clone()),
                        namespace: Some(self.cfg.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(0, None)),
                };
                return match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => {
                        info!(lease = %self.cfg.name, identity = %self.cfg.identity, "created the lease: leading");
                        self.last_renewed = Some(Instant::now());
                        Ok(true)
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) => Err(e),
                };
            }
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let rv = current
            .metadata
            .resource_version
            .clone()
            .unwrap_or_default();
        let now = Instant::now();
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|(h, v, _)| *h != holder || *v != rv);
        if changed {
            self.observed = Some((holder.clone(), rv.clone(), now));
        }
        let mine = holder.as_deref() == Some(self.cfg.identity.as_str());
        let duration = spec
            .lease_duration_seconds
            .map(|s| Duration::from_secs(s.max(1) as u64))
            .unwrap_or(self.cfg.duration);
        let seen_since = self.observed.as_ref().map(|(_, _, at)| *at).unwrap_or(now);
        let expired = holder.is_none() || now.duration_since(seen_since) >= duration;
        if !mine && !expired {
            debug!(holder = ?holder, "lease held by another replica");
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + if mine { 0 } else { 1 };
        let acquired = if mine {
            spec.acquire_time.clone()
        } else {
            None
        };
        let mut next = current.clone();
        next.spec = Some(self.spec(transitions, acquired));
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &next)
            .await
        {
            Ok(written) => {
                if !mine {
                    info!(lease = %self.cfg.name, identity = %self.cfg.identity, previous = ?holder, "took the lease: leading");
                }
                let rv = written.metadata.resource_version.unwrap_or_default();
                self.observed = Some((Some(self.cfg.identity.clone()), rv, Instant::now()));
                self.last_renewed = Some(Instant::now());
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                debug!("lost the race for the lease");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Whether the leader must step down: it could not renew within the renew deadline.
    pub fn must_step_down(&self) -> bool {
        self.last_renewed
            .is_none_or(|t| t.elapsed() >= self.cfg.renew_deadline)
    }

    /// Gives the lease up (holder cleared) if this replica still holds it.
    pub async fn release(&mut self) {
        self.last_renewed = None;
        let Ok(Some(mut lease)) = self.api.get_opt(&self.cfg.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => info!(lease = %self.cfg.name, "released the lease"),
            Err(e) => {
                warn!(lease = %self.cfg.name, error = %e, "could not release the lease; it expires on its own")
            }
        }
    }
}

/// Runs `work` while this replica leads, until `shutdown` turns true. `work` gets a stop signal
/// that turns true when leadership is lost or on shutdown; it must return soon after. On
/// shutdown the lease is released. `leading` mirrors leadership (for the metric).
pub async fn lead<F, Fut>(
    mut elector: LeaderElector,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    leading: impl Fn(bool),
    mut work: F,
) where
    F: FnMut(tokio::sync::watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let retry = elector.config().retry;
    loop {
        // Candidate: try until the lease is ours.
        loop {
            if *shutdown.borrow() {
                return;
            }
            match elector.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => warn!(error = %e, "leader election: cannot read or write the lease"),
            }
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(retry) => {}
            }
        }
        leading(true);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut task = tokio::spawn(work(stop_rx));
        let mut finished = false;
        // Leader: renew until shutdown, loss of the lease, or the work ending on its own.
        let shutting_down = loop {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => break true,
                _ = &mut task => { finished = true; break false; }
                _ = tokio::time::sleep(retry) => {}
            }
            match elector.try_acquire_or_renew().await {
                Ok(true) => continue,
                Ok(false) => {
                    warn!("lost the lease to another replica; stopping work");
                    break false;
                }
                Err(e) if elector.must_step_down() => {
                    warn!(error = %e, "could not renew the lease in time; stopping work");
                    break false;
                }
                Err(e) => warn!(error = %e, "could not renew the lease; retrying"),
            }
        };
        let _ = stop_tx.send(true);
        if !finished {
            let _ = task.await;
        }
        leading(false);
        let shutting_down = shutting_down || *shutdown.borrow();
        if shutting_down {
            elector.release().await;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex, PoisonError};

    use http::{Method, Request, Response};
    use kube::client::Body;
    use serde_json::{Value, json};

    use super::*;

    fn config() -> LeaseConfig {
        LeaseConfig {
            name: "metaproxy-operator".into(),
            namespace: "default".into(),
            identity: "me".into(),
            duration: Duration::from_secs(4),
            renew_deadline: Duration::from_secs(3),
            retry: Duration::from_secs(1),
        }
    }

    fn lease(holder: &str, rv: &str) -> Value {
        json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "metaproxy-operator", "namespace": "default", "resourceVersion": rv},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 4, "leaseTransitions": 0},
        })
    }

    /// An API server holding one Lease: GET answers it, PUT replaces it with a new
    /// resourceVersion. `puts` counts the replacements.
    fn api_server(held: Arc<Mutex<Value>>) -> (Client, Arc<Mutex<u32>>) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let puts = Arc::new(Mutex::new(0));
        let counter = puts.clone();
        tokio::spawn(async move {
            while let Some((request, reply)) = handle.next_request().await {
                let method = request.method().clone();
                let body = request
                    .into_body()
                    .collect_bytes()
                    .await
                    .unwrap_or_default();
                let mut lease = held.lock().unwrap_or_else(PoisonError::into_inner);
                if method == Method::PUT {
                    let mut next: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let rv: u64 = lease["metadata"]["resourceVersion"]
                        .as_str()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    next["metadata"]["resourceVersion"] = Value::from((rv + 1).to_string());
                    *lease = next;
                    *counter.lock().unwrap_or_else(PoisonError::into_inner) += 1;
                }
                let response = Response::builder()
                    .status(200)
                    .body(Body::from(serde_json::to_vec(&*lease).unwrap_or_default()))
                    .expect("response");
                reply.send_response(response);
            }
        });
        (Client::new(service, "default"), puts)
    }

    /// On paused time: a lease held by another is taken over once it went unchanged for its
    /// whole duration as this replica saw it, and a renewal by the holder restarts the count.
    #[tokio::test(start_paused = true)]
    async fn takeover_waits_for_a_whole_unchanged_lease_duration() {
        let held = Arc::new(Mutex::new(lease("other", "1")));
        let (client, puts) = api_server(held.clone());
        let mut elector = LeaderElector::new(client, config());
        let step = Duration::from_secs(1);
        // (seconds since start, what the holder does first, leading after the round)
        let rounds = [
            (0, None, false),
            (3, None, false),
            // The holder renews just before 4 s: the count starts again.
            (4, Some("2"), false),
            (7, None, false),
            (8, None, true),
        ];
        let start = Instant::now();
        for (at, renew, leading) in rounds {
            tokio::time::sleep_until(start + step * at).await;
            if let Some(rv) = renew {
                *held.lock().unwrap_or_else(PoisonError::into_inner) = lease("other", rv);
            }
            assert_eq!(
                elector.try_acquire_or_renew().await.expect("API answers"),
                leading,
                "at {at}s"
            );
        }
        assert_eq!(
            *puts.lock().unwrap_or_else(PoisonError::into_inner),
            1,
            "one takeover write"
        );
        let now_held = held.lock().unwrap_or_else(PoisonError::into_inner).clone();
        assert_eq!(now_held["spec"]["holderIdentity"], "me");
        assert_eq!(now_held["spec"]["leaseTransitions"], 1);
        // The leader must step down once it could not renew for the renew deadline.
        assert!(!elector.must_step_down());
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(elector.must_step_down());
    }
}
