//! `pegasus-meta-sim`: a simulated Pegasus cluster of MetaServers (see `metaproxy_tests::sim`).
//! Configuration in, the simulator running until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use metaproxy_tests::sim::{SimConfig, Simulator, load_tables};
use tracing::{error, info};

const AFTER_HELP: &str = "\
tables.yaml:
  tables:
    - {name: temp, app_id: 2, partition_count: 8,
       replicas: [\"127.0.0.1:34801\", \"127.0.0.1:34802\", \"127.0.0.1:34803\"],
       replica_hosts: [node1, node2, node3],   # optional, for the hp_* fields
       host_port_fields: true}                 # optional, overrides --host-port-fields

Admin HTTP API (--admin-listen), JSON in and out; {meta} is an index from 0 or a listen address:
  GET    /state                    metas, leader, tables
  POST   /leader                   {\"meta\": \"127.0.0.1:34602\"} or {\"meta\": 1} or {\"meta\": null}
  POST   /metas/{meta}/stop        close its listener and connections
  POST   /metas/{meta}/start       listen again on the same address
  PUT    /metas/{meta}/not-active  {\"not_active\": true}
  PUT    /metas/{meta}/delay       {\"delay_ms\": 250}
  GET    /tables
  PUT    /tables/{name}            {\"app_id\": 3, \"partition_count\": 8, \"replicas\": [\"ip:port\"]}
  DELETE /tables/{name}
  GET    /counters                 requests in total, by meta, by RPC, by table
  POST   /counters/reset

Exit status: 0 after a signal, 64 on a bad configuration, 1 when a port cannot be bound.
Logs: RUST_LOG (default info).";

/// A simulated Pegasus cluster: MetaServers that answer query_config like the real ones.
#[derive(Debug, Parser)]
#[command(version, after_help = AFTER_HELP)]
struct Args {
    /// The tables, as YAML (layout below).
    #[arg(long)]
    tables: PathBuf,
    /// One MetaServer per address, comma-separated. Port 0 picks a free port.
    #[arg(long, value_delimiter = ',', required = true)]
    listen: Vec<SocketAddr>,
    /// The leader, one of the --listen addresses (or its index). Default: the first.
    #[arg(long)]
    leader: Option<String>,
    /// Where to serve the admin HTTP API.
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// Write the 2.6 hp_* fields in replies (tables may override it).
    #[arg(long)]
    host_port_fields: bool,
}

fn config(args: Args) -> anyhow::Result<SimConfig> {
    let leader = match &args.leader {
        None => 0,
        Some(l) => match l.parse::<usize>() {
            Ok(i) => i,
            Err(_) => {
                let addr: SocketAddr = l
                    .parse()
                    .with_context(|| format!("--leader {l:?} is not an address"))?;
                args.listen
                    .iter()
                    .position(|a| *a == addr)
                    .with_context(|| format!("--leader {addr} is not one of --listen"))?
            }
        },
    };
    let config = SimConfig {
        tables: load_tables(&args.tables)?,
        leader: Some(leader),
        listen: args.listen,
        host_port_fields: args.host_port_fields,
        admin_listen: args.admin_listen,
    };
    config.validate()?;
    Ok(config)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = match config(Args::parse()) {
        Ok(c) => c,
        Err(e) => {
            error!("bad configuration: {e:#}");
            return ExitCode::from(64);
        }
    };
    info!(version = env!("CARGO_PKG_VERSION"), ?config, "starting");
    let sim = match Simulator::start(config).await {
        Ok(sim) => sim,
        Err(e) => {
            error!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match shutdown_signal().await {
        Ok(signal) => info!(signal, "shutting down"),
        Err(e) => error!("cannot wait for signals, shutting down: {e}"),
    }
    sim.shutdown().await;
    ExitCode::SUCCESS
}

async fn shutdown_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.map(|()| "SIGINT"),
        _ = term.recv() => Ok("SIGTERM"),
    }
}
