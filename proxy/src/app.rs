//! The proxy assembled from its parts: route source, upstream pool, request handling, client
//! listener and admin port. `main` and the integration tests both start it through [`Proxy`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::{self, AdminState};
use crate::config::{Config, RouteSource};
use crate::metrics::Metrics;
use crate::route::{FileRoutes, Resolver, RouteRecord, Routes, ZkOptions, ZkRoutes};
use crate::server::{self, ServerOptions};
use crate::service::{Service, ServiceOptions};
use crate::upstream::Upstreams;
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
    server: JoinHandle<()>,
    admin: JoinHandle<()>,
    grace: Duration,
}

impl Proxy {
    /// Binds both ports and starts serving. Routes from ZooKeeper become available once the
    /// first session is up (`/ready` says when).
    pub async fn start(config: &Config) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind(config.listen).await?;
        let admin_listener = TcpListener::bind(config.admin_listen).await?;
        let metrics = Metrics::default();
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
            },
        ));
        let (shutdown, stop) = watch::channel(false);
        let (admin_shutdown, admin_stop) = watch::channel(false);
        let draining = Arc::new(AtomicBool::new(false));
        let addr = listener.local_addr()?;
        let admin_addr = admin_listener.local_addr()?;
        let server = tokio::spawn(server::serve(
            listener,
            service.clone(),
            ServerOptions {
                max_connections: config.max_connections,
                max_frame: config.max_frame_bytes,
                idle_timeout: config.idle_timeout,
                ..ServerOptions::default()
            },
            stop,
            config.shutdown_grace,
        ));
        let admin = tokio::spawn(admin::serve(
            admin_listener,
            AdminState {
                routes,
                metrics,
                draining: draining.clone(),
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
            admin,
            grace: config.shutdown_grace,
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
