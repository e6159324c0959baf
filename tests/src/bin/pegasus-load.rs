//! `pegasus-load`: load against a MetaServer, the simulator or the proxy. The default workload
//! sends query_config (`metaproxy_tests::load`); `--workload kv` reads and writes a table as the
//! official clients do (`metaproxy_tests::kv`). Options in, a report out.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use metaproxy::startup::parse_duration;
use metaproxy_tests::client::{ClientOptions, HeaderKind};
use metaproxy_tests::kv::{self, KvConfig};
use metaproxy_tests::load::{self, Header, LoadConfig, Until};

const AFTER_HELP: &str = "\
query-config (the default): each connection keeps --depth requests in flight, matched to replies
by seqid, and takes the tables in turn. Errors are counted by kind: rpc:<NAME> (rpc-level error),
err:<NAME> (the response's err), timeout, disconnect (requests lost with a connection, which is
reopened), connect, bad_reply, unmatched.

kv: --connections x --depth clients, each with one operation in flight, write unique keys and read
back their own through --target (a MetaServer or the proxy): query_config, the key's hash to a
partition, the primaries' replica servers, re-queries on ERR_OBJECT_NOT_FOUND, ERR_INVALID_STATE,
ERR_PARENT_PARTITION_MISUSED and refused or lost connections (at most one per 333 ms), retries
within --timeout (default 1s for kv). Every acknowledged write is remembered; --verify reads them
all back at the end (through --verify-meta if given, e.g. the backup cluster's metas) and reports
the lost ones (exit status 1 when any is). The report has a per-second timeline of successes,
failures by kind, retried attempts and query_config requests. Replica addresses that are not
loopback are refused unless --allow-non-loopback.

Examples:
  pegasus-load --target 127.0.0.1:34601 --connections 8 --depth 32 --duration 10s --table temp
  pegasus-load --workload kv --target 127.0.0.1:34601 --duration 30s --table temp --verify \\
    --verify-meta 127.0.0.1:35601";

#[derive(Clone, Copy, Debug, ValueEnum)]
enum HeaderArg {
    /// The 48-byte header of the Go, Python and Node.js clients.
    V0,
    /// The Java client's header with a request_meta.
    V1,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// Pipelined query_config requests.
    QueryConfig,
    /// Reads and writes of a table, as a Pegasus client.
    Kv,
}

/// Sends load to a MetaServer (or the proxy) and reports throughput, latency and errors.
#[derive(Debug, Parser)]
#[command(version, after_help = AFTER_HELP)]
struct Args {
    #[arg(long, value_enum, default_value = "query-config")]
    workload: Workload,
    /// The MetaServer (or proxy) to load, or to read the routing from (kv).
    #[arg(long)]
    target: SocketAddr,
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 32)]
    depth: usize,
    /// How long to send for (e.g. 10s, 500ms, 2m). Default 10s unless --requests is given.
    #[arg(long, value_parser = parse_duration, conflicts_with = "requests")]
    duration: Option<Duration>,
    /// How many requests (kv: operations) to send in total.
    #[arg(long)]
    requests: Option<u64>,
    /// Tables to query, in turn; repeat the option or separate with commas. kv uses the first.
    #[arg(long = "table", value_delimiter = ',', default_value = "temp")]
    tables: Vec<String>,
    #[arg(long, value_enum, default_value = "v0")]
    header: HeaderArg,
    /// How long a request may wait for its reply (kv: an operation's budget, retries
    /// included). Default 5s, kv 1s.
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// kv: the share of operations that are writes.
    #[arg(long, default_value_t = 0.5)]
    write_ratio: f64,
    /// kv: bytes per value.
    #[arg(long, default_value_t = 32)]
    value_size: usize,
    /// kv: read every acknowledged write back at the end and report the lost ones.
    #[arg(long)]
    verify: bool,
    /// kv: verify through these MetaServers (comma-separated) instead of --target.
    #[arg(long, value_delimiter = ',', requires = "verify")]
    verify_meta: Vec<String>,
    /// kv: dial replica addresses that are not loopback.
    #[arg(long)]
    allow_non_loopback: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn print<T: serde::Serialize + std::fmt::Display>(report: &T, json: bool) -> ExitCode {
    if json {
        match serde_json::to_string_pretty(report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("pegasus-load: cannot encode the report: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        println!("{report}");
    }
    ExitCode::SUCCESS
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let until = match (args.duration, args.requests) {
        (_, Some(n)) => Until::Requests(n),
        (Some(d), None) => Until::Elapsed(d),
        (None, None) => Until::Elapsed(Duration::from_secs(10)),
    };
    if args.workload == Workload::Kv {
        let metas = vec![args.target.to_string()];
        let defaults = ClientOptions::default();
        let op_timeout = args.timeout.unwrap_or(defaults.op_timeout);
        let config = KvConfig {
            workers: args.connections.saturating_mul(args.depth),
            until,
            write_ratio: args.write_ratio,
            value_size: args.value_size,
            client: ClientOptions {
                op_timeout,
                requery_interval: (op_timeout / 3).max(Duration::from_millis(1)),
                header: match args.header {
                    HeaderArg::V0 => HeaderKind::V0,
                    HeaderArg::V1 => HeaderKind::V1,
                },
                allow_non_loopback: args.allow_non_loopback,
                ..defaults
            },
            verify: args.verify.then(|| {
                if args.verify_meta.is_empty() {
                    metas.clone()
                } else {
                    args.verify_meta.clone()
                }
            }),
            verify_table: None,
            ..KvConfig::new(metas, args.tables[0].clone())
        };
        let report = match kv::run(config).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("pegasus-load: {e}");
                return ExitCode::from(64);
            }
        };
        let status = print(&report, args.json);
        if report
            .verify
            .as_ref()
            .is_some_and(|v| v.lost_or_wrong() > 0)
        {
            return ExitCode::FAILURE;
        }
        return status;
    }
    let config = LoadConfig {
        target: args.target,
        connections: args.connections,
        depth: args.depth,
        until,
        tables: args.tables,
        header: match args.header {
            HeaderArg::V0 => Header::V0,
            HeaderArg::V1 => Header::V1,
        },
        timeout: args.timeout.unwrap_or(Duration::from_secs(5)),
    };
    let report = match load::run(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pegasus-load: {e}");
            return ExitCode::from(64);
        }
    };
    print(&report, args.json)
}
