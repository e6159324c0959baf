//! `pegasus-meta-sim`: a simulated Pegasus cluster of MetaServers and, when asked, replica
//! servers (see `metaproxy_tests::sim`). Configuration in, the simulator running until SIGINT or
//! SIGTERM.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use metaproxy::startup::parse_duration;
use metaproxy_tests::sim::{DupProgress, ReplicaMode, SimConfig, Simulator, load_tables};
use tracing::{error, info};

const AFTER_HELP: &str = "\
tables.yaml:
  tables:
    - {name: temp, app_id: 2, partition_count: 8,
       replicas: [\"127.0.0.1:34801\", \"127.0.0.1:34802\", \"127.0.0.1:34803\"],
       replica_hosts: [node1, node2, node3],   # optional, for the hp_* fields
       host_port_fields: true}                 # optional, overrides --host-port-fields
    - {name: data, app_id: 3, partition_count: 8,     # no replicas: every --replica-listen node
       envs: {replica.deny_client_request: \"timeout*write\"},              # optional
       duplication: {to: [\"127.0.0.1:35601\"], app: data, cluster: backup}}  # optional

Replica servers: only the --replica-listen nodes (loopback) serve data requests: PUT, MULTI_PUT,
REMOVE, MULTI_REMOVE, GET, MULTI_GET, TTL, SORTKEY_COUNT, INCR, CHECK_AND_SET, DUPLICATE. A table's
replica addresses that are not among them are reported by query_config and never listened on.

Admin HTTP API (--admin-listen), JSON in and out; {meta} and {replica} are an index from 0 or a
listen address:
  GET    /state                    metas, leader, tables, replica nodes
  POST   /leader                   {\"meta\": \"127.0.0.1:34602\"} or {\"meta\": 1} or {\"meta\": null}
  POST   /metas/{meta}/stop        close its listener and connections
  POST   /metas/{meta}/start       listen again on the same address
  PUT    /metas/{meta}/not-active  {\"not_active\": true}
  PUT    /metas/{meta}/delay       {\"delay_ms\": 250}
  GET    /tables
  PUT    /tables/{name}            {\"app_id\": 3, \"partition_count\": 8, \"replicas\": [\"ip:port\"]}
  GET    /tables/{name}            app id, envs, layout, duplications with per-partition
                                   confirmed/committed decrees, key count, last decrees
  DELETE /tables/{name}
  POST   /tables/{name}/envs       {\"op\": \"set\", \"keys\": [..], \"values\": [..]} | del | clear
  POST   /tables/{name}/duplications  {\"to\": [\"ip:port\"], \"app\": \"name\"}
  PUT    /duplication/lag          {\"lag_ms\": 500}
  GET    /replicas
  PUT    /replicas/{replica}/mode  {\"mode\": \"serving|stopped|blackhole|not-hosting|invalid-state\"}
  PUT    /replicas/mode            the same for every replica node
  POST   /cluster/stop             metas and replica nodes stop together
  POST   /cluster/start
  GET    /data/{table}?hash_key=h&sort_key=s   a value, read straight from the store
  GET    /counters                 requests in total, by meta, by RPC, by table; replica requests
  POST   /counters/reset

Exit status: 0 after a signal, 64 on a bad configuration, 1 when a port cannot be bound.
Logs: RUST_LOG (default info).";

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ModeArg {
    Serving,
    Stopped,
    Blackhole,
    NotHosting,
    InvalidState,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ProgressArg {
    /// Per-partition confirmed and committed decrees, as 2.6 answers.
    Full,
    /// No per-partition numbers, as 2.4 and 2.5 answer.
    None,
}

/// A simulated Pegasus cluster: MetaServers that answer like the real ones, and replica servers
/// that serve the official clients' reads and writes.
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
    /// Replica server nodes that serve data requests, comma-separated loopback addresses.
    #[arg(long, value_delimiter = ',')]
    replica_listen: Vec<SocketAddr>,
    /// The mode every replica node starts in.
    #[arg(long, value_enum, default_value = "serving")]
    replica_mode: ModeArg,
    /// How often each replica node picks up app env changes (Pegasus: 30s).
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    config_sync_interval: Duration,
    /// What query_duplication reports: per-partition progress (2.6) or none (2.4/2.5).
    #[arg(long, value_enum, default_value = "full")]
    dup_progress: ProgressArg,
    /// Extra delay before a write is shipped to a duplication follower.
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    dup_lag: Duration,
    /// This cluster's name (RPC_CM_ADD_DUPLICATION refuses it as the remote).
    #[arg(long, default_value = "sim")]
    cluster_name: String,
    /// This cluster's id in [duplication-group], sent with duplicated writes.
    #[arg(long, default_value_t = 1)]
    cluster_id: i8,
    /// Another cluster for RPC_CM_ADD_DUPLICATION: NAME=host:port,host:port. Repeatable.
    #[arg(long = "remote-cluster")]
    remote_clusters: Vec<String>,
}

fn remote_clusters(specs: &[String]) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let mut out = BTreeMap::new();
    for spec in specs {
        let Some((name, metas)) = spec.split_once('=') else {
            bail!("--remote-cluster {spec:?}: expected NAME=host:port,host:port");
        };
        let metas: Vec<String> = metas
            .split(',')
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect();
        if name.is_empty() || metas.is_empty() {
            bail!("--remote-cluster {spec:?}: expected NAME=host:port,host:port");
        }
        out.insert(name.to_owned(), metas);
    }
    Ok(out)
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
        replica_listen: args.replica_listen,
        replica_mode: match args.replica_mode {
            ModeArg::Serving => ReplicaMode::Serving,
            ModeArg::Stopped => ReplicaMode::Stopped,
            ModeArg::Blackhole => ReplicaMode::Blackhole,
            ModeArg::NotHosting => ReplicaMode::NotHosting,
            ModeArg::InvalidState => ReplicaMode::InvalidState,
        },
        config_sync_interval: args.config_sync_interval,
        dup_progress: match args.dup_progress {
            ProgressArg::Full => DupProgress::Full,
            ProgressArg::None => DupProgress::None,
        },
        dup_lag: args.dup_lag,
        cluster_name: args.cluster_name,
        cluster_id: args.cluster_id,
        remote_clusters: remote_clusters(&args.remote_clusters)?,
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
