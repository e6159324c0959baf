//! The operator assembled from its parts: the admin port, the metrics, the reconciler and the
//! route source (the Kubernetes API with leader election, or a routes directory). `main` and the
//! tests start it through [`App`], like the proxy's `metaproxy::Proxy`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::admin::{self, AdminState};
use crate::config::{Config, Source};
use crate::controller::{self, ControllerConfig};
use crate::leader::{self, LeaderElector};
use crate::metrics::Metrics;
use crate::orphans;
use crate::reconcile::Reconciler;
use crate::routes_dir;

/// How long [`App::shutdown`] waits for the route source to stop before it abandons it. The
/// source stops at once on its own (retries and ZooKeeper waits are interrupted); this only
/// bounds a bug.
const STOP_LIMIT: Duration = Duration::from_secs(10);

/// Why the operator could not start, or stopped on its own.
#[derive(Debug, Error)]
pub enum AppError {
    #[error("binding the admin port {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("connecting to the Kubernetes API: {0}")]
    Kubernetes(#[from] kube::Error),
    #[error("admin HTTP: {0}")]
    Admin(std::io::Error),
    #[error("{0} stopped unexpectedly")]
    Stopped(&'static str),
}

/// A running operator.
pub struct App {
    admin_addr: SocketAddr,
    state: AdminState,
    shutdown: watch::Sender<bool>,
    /// `None` once [`App::failed`] saw it end.
    source: Option<JoinHandle<()>>,
    admin: Option<JoinHandle<std::io::Result<()>>>,
}

impl App {
    /// Binds the admin port and starts the route source. In Kubernetes mode the client comes
    /// from the environment (in-cluster, or `KUBECONFIG`).
    pub async fn start(config: &Config) -> Result<App, AppError> {
        App::start_with(config, None).await
    }

    /// [`App::start`] with the Kubernetes client given (`None`: from the environment; unused
    /// with a routes directory).
    pub async fn start_with(
        config: &Config,
        client: Option<kube::Client>,
    ) -> Result<App, AppError> {
        let listener = TcpListener::bind(config.admin_listen)
            .await
            .map_err(|source| AppError::Bind {
                addr: config.admin_listen,
                source,
            })?;
        let admin_addr = listener.local_addr().map_err(|source| AppError::Bind {
            addr: config.admin_listen,
            source,
        })?;
        let metrics = Arc::new(Metrics::new());
        let state = AdminState::new(metrics.clone());
        let (shutdown, stop) = watch::channel(false);
        let reconciler = Arc::new(
            Reconciler::new(
                config.zones.clone(),
                config.zk,
                &config.zk_access,
                config.observers.clone(),
                metrics.clone(),
            )
            .writing_as(match &config.source {
                Source::Dir { id, .. } => Some(orphans::writer(id)),
                Source::Kubernetes { .. } => None,
            }),
        );
        let source = match (&config.source, client) {
            (Source::Dir { path: dir, .. }, _) => {
                metrics.leader.set(1);
                let ready = state.ready.clone();
                tokio::spawn(routes_dir::run(
                    dir.clone(),
                    reconciler,
                    config.poll,
                    config.timing,
                    state.routes.clone(),
                    move || ready.store(true, Ordering::Relaxed),
                    stop.clone(),
                ))
            }
            (Source::Kubernetes { namespace, lease }, client) => {
                let client = match client {
                    Some(c) => c,
                    None => kube::Client::try_default().await?,
                };
                let cfg = ControllerConfig {
                    namespace: namespace.clone(),
                    timing: config.timing,
                    instance: lease.identity.clone(),
                };
                let elector = LeaderElector::new(client.clone(), lease.clone());
                // A standby replica is ready: it is healthy and takes over when the leader goes.
                state.ready.store(true, Ordering::Relaxed);
                let routes = state.routes.clone();
                let leader_metric = metrics.clone();
                tokio::spawn(leader::lead(
                    elector,
                    stop.clone(),
                    move |leading| {
                        leader_metric.leader.set(i64::from(leading));
                    },
                    move |stop| {
                        controller::run(
                            client.clone(),
                            reconciler.clone(),
                            cfg.clone(),
                            routes.clone(),
                            stop,
                        )
                    },
                ))
            }
        };
        let mut admin_stop = stop;
        let admin = tokio::spawn(admin::serve(listener, state.clone(), async move {
            let _ = admin_stop.wait_for(|s| *s).await;
        }));
        info!(addr = %admin_addr, "admin HTTP listening");
        Ok(App {
            admin_addr,
            state,
            shutdown,
            source: Some(source),
            admin: Some(admin),
        })
    }

    /// The admin HTTP port.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.state.metrics
    }

    /// Resolves only if a part of the operator stops on its own before [`App::shutdown`]: the
    /// route source or the admin port. Pending forever once it has said so.
    pub async fn failed(&mut self) -> AppError {
        let (Some(source), Some(admin)) = (self.source.as_mut(), self.admin.as_mut()) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = source => {
                self.source = None;
                AppError::Stopped("the route source")
            }
            r = admin => {
                self.admin = None;
                match r {
                    Ok(Err(e)) => AppError::Admin(e),
                    _ => AppError::Stopped("the admin port"),
                }
            }
        }
    }

    /// Not ready, the route source stopped (its retries and ZooKeeper waits interrupted; in
    /// Kubernetes mode the lease released), then the admin port closed.
    pub async fn shutdown(self) -> Result<(), AppError> {
        let App {
            state,
            shutdown,
            source,
            admin,
            ..
        } = self;
        state.ready.store(false, Ordering::Relaxed);
        let _ = shutdown.send(true);
        if let Some(mut source) = source
            && tokio::time::timeout(STOP_LIMIT, &mut source).await.is_err()
        {
            warn!(limit = ?STOP_LIMIT, "the route source did not stop in time; abandoning it");
            source.abort();
        }
        let result = match admin {
            None => Ok(()),
            Some(admin) => match admin.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(AppError::Admin(e)),
                Err(_) => Err(AppError::Stopped("the admin port")),
            },
        };
        info!("stopped");
        result
    }
}
