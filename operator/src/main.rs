//! `metaproxy-operator`: configuration (exit 64 when it is invalid, before binding anything;
//! `--check-config` prints it and exits), telemetry, the admin port, then the route source
//! (Kubernetes with leader election, or `--routes-dir`) until SIGTERM or SIGINT.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;
use metaproxy::startup;
use metaproxy_operator::admin::{self, AdminState};
use metaproxy_operator::config::{Args, Config, Source};
use metaproxy_operator::controller::{self, ControllerConfig};
use metaproxy_operator::leader::{self, LeaderElector};
use metaproxy_operator::metrics::Metrics;
use metaproxy_operator::reconcile::Reconciler;
use metaproxy_operator::routes_dir;
use tokio::sync::watch;
use tracing::info;

const PROGRAM: &str = "metaproxy-operator";

fn main() -> ExitCode {
    let args: Args = match startup::parse_args(PROGRAM) {
        Ok(args) => args,
        Err(code) => return code,
    };
    let check_only = args.check_config;
    let config = match Config::load(args) {
        Ok(c) => c,
        Err(e) => return startup::refuse(PROGRAM, e),
    };
    if check_only {
        println!("configuration OK: {}", config.summary());
        return ExitCode::SUCCESS;
    }
    startup::init_logging(&config.log, config.log_format);
    let runtime = match startup::runtime(PROGRAM) {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %config.summary(),
        "metaproxy-operator starting"
    );
    let metrics = Arc::new(Metrics::new());
    let admin_state = AdminState::new(metrics.clone());
    let listener = tokio::net::TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| format!("binding the admin port {}", config.admin_listen))?;
    info!(addr = %listener.local_addr()?, "admin HTTP listening");

    let (shutdown_tx, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutting down");
        let _ = shutdown_tx.send(true);
    });
    let mut admin_stop = shutdown.clone();
    let admin = tokio::spawn(admin::serve(listener, admin_state.clone(), async move {
        let _ = admin_stop.wait_for(|s| *s).await;
    }));

    let reconciler = Arc::new(Reconciler::new(
        config.zones.clone(),
        config.zk,
        metrics.clone(),
    ));
    match config.source {
        Source::Dir(dir) => {
            metrics.leader.set(1);
            let ready = admin_state.ready.clone();
            routes_dir::run(
                dir,
                reconciler,
                config.timing,
                admin_state.routes.clone(),
                move || ready.store(true, Ordering::Relaxed),
                shutdown.clone(),
            )
            .await;
        }
        Source::Kubernetes { namespace, lease } => {
            let client = kube::Client::try_default()
                .await
                .context("connecting to the Kubernetes API")?;
            let cfg = ControllerConfig {
                namespace,
                resync: config.timing.resync,
                conflict_recheck: config.timing.conflict_recheck,
                instance: lease.identity.clone(),
            };
            let elector = LeaderElector::new(client.clone(), lease);
            // A standby replica is ready: it is healthy and takes over when the leader goes.
            admin_state.ready.store(true, Ordering::Relaxed);
            let routes = admin_state.routes.clone();
            let leader_metric = metrics.clone();
            leader::lead(
                elector,
                shutdown.clone(),
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
            )
            .await;
        }
    }
    admin_state.ready.store(false, Ordering::Relaxed);
    let mut shutdown = shutdown;
    let _ = shutdown.wait_for(|s| *s).await;
    admin.await.context("admin task")?.context("admin HTTP")?;
    info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
