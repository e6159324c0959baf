//! The proxy assembled from its parts: route source, upstream pool, request handling, client
//! listener and admin port. `main` and the integration tests both start it through [`Proxy`].
//!
//! ```text
//!  start --> listener task (server::serve) <-- followed by --> outcome: drained | ServeError
//!        \-> admin task (reads routes, metrics, draining, the listener's failure)
//!  drain: draining=true (/ready 503) -> stop the listener -> wait -> stop admin -> stop routes
//! ```
//! A listener that stops without a drain leaves a process that looks alive but serves nobody:
//! [`Proxy::failed`] resolves then, and `/ready` answers 503 until the process exits.

use std::any::Any;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::{self, AdminState};
use crate::clusters::ClusterHealth;
use crate::config::{Config, RouteSource};
use crate::metrics::Metrics;
use crate::route::{FileRoutes, Resolver, RouteRecord, Routes, ZkOptions, ZkRoutes};
use crate::server::{self, ServeError, ServerOptions};
use crate::service::{Service, ServiceOptions};
use crate::upstream::Upstreams;
use crate::warnings::Warnings;
use pegasus_rpc::client::{ClientOptions, GroupOptions};

/// How often a static routes file is checked for changes.
const ROUTES_FILE_POLL: Duration = Duration::from_secs(1);

/// A running proxy.
pub struct Proxy {
    addr: SocketAddr,
    admin_addr: SocketAddr,
    service: Arc<Service>,
    draining: Arc<AtomicBool>,
    /// Stops the client listener; the admin port stays up until the drain is over.
    shutdown: watch::Sender<bool>,
    admin_shutdown: watch::Sender<bool>,
    /// Follows the client listener's task until it ends, and records why when no drain asked.
    server: JoinHandle<()>,
    /// Why the client listener stopped without a drain; `None` while it serves.
    listener_failure: watch::Receiver<Option<ServeError>>,
    admin: JoinHandle<()>,
    grace: Duration,
    /// Lets the unit tests stop the listener the way a bug would.
    #[cfg(test)]
    listener: tokio::task::AbortHandle,
}

impl Proxy {
    /// Binds both ports and starts serving. Routes from ZooKeeper become available once the
    /// first session is up (`/ready` says when).
    pub async fn start(config: &Config) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind(config.listen).await?;
        let admin_listener = TcpListener::bind(config.admin_listen).await?;
        let metrics = Metrics::new(Warnings::new(config.log_repeat_interval));
        let group = GroupOptions {
            client: ClientOptions {
                connect_timeout: config.upstream_attempt_timeout,
                ..ClientOptions::default()
            },
            attempt_timeout: config.upstream_attempt_timeout,
            hedge_after: config.hedge_after,
            ..GroupOptions::default()
        };
        let upstreams = Arc::new(Upstreams::new(
            group,
            config.strip_host_ports,
            metrics.clone(),
            ClusterHealth::new(config.cluster_history),
        ));
        let resolve: Resolver = {
            let upstreams = upstreams.clone();
            Arc::new(move |record: &RouteRecord| Ok(upstreams.group(record)?))
        };
        let routes = Arc::new(match &config.source {
            RouteSource::Zookeeper { servers, root, .. } => Routes::Zk(ZkRoutes::start(
                ZkOptions {
                    connect: servers.clone(),
                    root: root.clone(),
                    session_timeout: config.zk_session_timeout,
                    request_timeout: config.zk_session_timeout.min(Duration::from_secs(5)),
                    max_missing: config.max_missing_routes,
                    missing_ttl: config.missing_route_ttl,
                    auth: config.zk_auth.clone(),
                    ..ZkOptions::default()
                },
                resolve,
                metrics.clone(),
            )),
            RouteSource::File { path } => Routes::File(
                FileRoutes::start(path, resolve, ROUTES_FILE_POLL).map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
                })?,
            ),
        });
        let service = Arc::new(Service::new(
            routes.clone(),
            upstreams,
            metrics.clone(),
            ServiceOptions {
                upstream_deadline: config.upstream_timeout,
                admin_rpcs: config.admin_rpcs,
            },
        ));
        let (shutdown, stop) = watch::channel(false);
        let (admin_shutdown, admin_stop) = watch::channel(false);
        let draining = Arc::new(AtomicBool::new(false));
        let addr = listener.local_addr()?;
        let admin_addr = admin_listener.local_addr()?;
        let listener_task = tokio::spawn(server::serve(
            listener,
            service.clone(),
            ServerOptions {
                max_connections: config.max_connections,
                max_frame: config.max_frame_bytes,
                idle_timeout: config.idle_timeout,
                max_in_flight: config.max_in_flight,
                max_unsent_bytes: config.max_unsent_bytes,
                frame_timeout: config.frame_timeout,
                partial_frame_budget: config.partial_frame_budget,
            },
            stop.clone(),
            config.shutdown_grace,
        ));
        #[cfg(test)]
        let listener_abort = listener_task.abort_handle();
        let (failure, listener_failure) = watch::channel(None);
        let server = tokio::spawn(async move {
            if let Err(e) = listener_outcome(listener_task, stop).await {
                tracing::error!(error = %e, "the client listener stopped: no client can connect");
                failure.send_replace(Some(e));
            }
        });
        let admin = tokio::spawn(admin::serve(
            admin_listener,
            AdminState {
                routes,
                upstreams: service.upstreams().clone(),
                metrics,
                draining: draining.clone(),
                listener_failure: listener_failure.clone(),
            },
            admin_stop,
        ));
        Ok(Proxy {
            addr,
            admin_addr,
            service,
            draining,
            shutdown,
            admin_shutdown,
            server,
            listener_failure,
            admin,
            grace: config.shutdown_grace,
            #[cfg(test)]
            listener: listener_abort,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin HTTP port.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    pub fn routes(&self) -> &Routes {
        self.service.routes()
    }

    pub fn upstreams(&self) -> &Arc<Upstreams> {
        self.service.upstreams()
    }

    pub fn metrics(&self) -> &Metrics {
        self.service.metrics()
    }

    /// Resolves when the client listener stopped serving although no drain was asked for (its
    /// task ended or panicked): no client can connect any more, and `/ready` answers 503. Never
    /// resolves otherwise. The future owns what it needs, so it can be awaited next to the
    /// signals while the proxy is kept for [`Proxy::drain`].
    pub fn failed(&self) -> impl Future<Output = ServeError> + Send + 'static {
        let mut failure = self.listener_failure.clone();
        async move {
            if let Ok(failure) = failure.wait_for(Option::is_some).await
                && let Some(e) = failure.clone()
            {
                return e;
            }
            // The listener ended after a drain (or the proxy is gone): nothing failed.
            std::future::pending().await
        }
    }

    /// Graceful stop: not ready, stop accepting, let in-flight requests finish within the grace
    /// period, close. Returns when everything has stopped.
    pub async fn drain(self) {
        self.draining.store(true, Ordering::Release);
        tracing::info!(grace = ?self.grace, "draining: not ready, no new connections");
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        // The admin port answered "draining" all along; it closes last.
        let _ = self.admin_shutdown.send(true);
        let _ = self.admin.await;
        self.service.routes().shutdown();
        tracing::info!("drained");
    }
}

/// Waits for the client listener's task: `Ok` when it ended because a drain asked it to, the
/// reason otherwise. A panic is an error even during a drain.
async fn listener_outcome(
    task: JoinHandle<()>,
    stop: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    match task.await {
        Ok(()) if *stop.borrow() => Ok(()),
        Err(e) if e.is_panic() => Err(ServeError::Panicked(panic_message(e.into_panic()))),
        Ok(()) | Err(_) => Err(ServeError::Stopped),
    }
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => match payload.downcast_ref::<&'static str>() {
            Some(message) => (*message).to_owned(),
            None => "a panic without a message".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The status line and body of a GET on the admin port.
    async fn get(addr: SocketAddr, path: &str) -> (String, String) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read");
        let status = response.lines().next().unwrap_or_default().to_owned();
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    async fn proxy(dir: &tempfile::TempDir) -> Proxy {
        let routes = dir.path().join("routes.yaml");
        std::fs::write(
            &routes,
            "temp: {cluster: c1, meta_addrs: [\"127.0.0.1:1\"]}\n",
        )
        .expect("write");
        let config = Config::load(Settings {
            listen: Some("127.0.0.1:0".into()),
            admin_listen: Some("127.0.0.1:0".into()),
            routes: Some(routes),
            ..Settings::default()
        })
        .expect("valid configuration");
        Proxy::start(&config).await.expect("starts")
    }

    #[tokio::test]
    async fn a_listener_that_stops_without_a_drain_fails_the_proxy_and_readiness() {
        let dir = tempfile::tempdir().expect("tempdir");
        let proxy = proxy(&dir).await;
        assert_eq!(get(proxy.admin_addr(), "/ready").await.0, "HTTP/1.1 200 OK");
        let failed = proxy.failed();

        proxy.listener.abort();
        let e = tokio::time::timeout(Duration::from_secs(10), failed)
            .await
            .expect("failed() resolves");
        assert_eq!(e, ServeError::Stopped);
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(10), proxy.failed()).await,
            Ok(ServeError::Stopped),
            "a later caller sees it too"
        );
        let (status, body) = get(proxy.admin_addr(), "/ready").await;
        assert_eq!(
            (status.as_str(), body.as_str()),
            (
                "HTTP/1.1 503 Service Unavailable",
                "client listener stopped\n"
            )
        );
        assert_eq!(get(proxy.admin_addr(), "/live").await.0, "HTTP/1.1 200 OK");
        let (_, metrics) = get(proxy.admin_addr(), "/metrics").await;
        assert!(metrics.contains("\nmetaproxy_ready 0\n"), "{metrics}");
        proxy.drain().await;
    }

    #[tokio::test]
    async fn a_drain_is_not_a_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let proxy = proxy(&dir).await;
        let failed = proxy.failed();
        proxy.drain().await;
        assert!(
            tokio::time::timeout(Duration::from_millis(200), failed)
                .await
                .is_err(),
            "failed() stays pending after a drain"
        );
    }

    #[tokio::test]
    async fn the_listeners_end_is_classified() {
        let (stop, stopped) = watch::channel(false);
        let returned = tokio::spawn(async {});
        assert_eq!(
            listener_outcome(returned, stopped.clone()).await,
            Err(ServeError::Stopped)
        );
        let panicked = tokio::spawn(async { panic!("accept loop bug") });
        assert_eq!(
            listener_outcome(panicked, stopped.clone()).await,
            Err(ServeError::Panicked("accept loop bug".into()))
        );
        let formatted = tokio::spawn(async {
            let n = 7;
            panic!("bug {n}")
        });
        assert_eq!(
            listener_outcome(formatted, stopped.clone()).await,
            Err(ServeError::Panicked("bug 7".into()))
        );
        stop.send_replace(true);
        let drained = tokio::spawn(async {});
        assert_eq!(listener_outcome(drained, stopped.clone()).await, Ok(()));
        let panicked_in_drain = tokio::spawn(async { panic!("late") });
        assert_eq!(
            listener_outcome(panicked_in_drain, stopped)
                .await
                .map_err(|e| e.metric_label()),
            Err("panicked")
        );
    }
}
