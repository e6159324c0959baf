//! `pegasus-load`: the project's benchmark instrument, load against a MetaServer, the simulator or
//! the proxy. The default workload sends query_config (`metaproxy_tests::load`), closed or open
//! loop, against one target or, with `--compare`, against several in alternating rounds
//! (`metaproxy_tests::compare`); `--workload kv` reads and writes a table as the official clients
//! do (`metaproxy_tests::kv`). Options in, a report out.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use metaproxy::startup::parse_duration;
use metaproxy_tests::client::{ClientOptions, HeaderKind};
use metaproxy_tests::compare::{self, CompareConfig, Target, Watched};
use metaproxy_tests::kv::{self, KvConfig};
use metaproxy_tests::load::{self, Header, LoadConfig, Pace, Until};

const AFTER_HELP: &str = "\
query-config (the default): each connection keeps --depth requests in flight (closed loop) or,
with --rate, sends requests at their intended times whatever the replies do (open loop; latency
then runs from the intended time, so queueing is not hidden). Replies are matched by seqid and
checked: errors are counted by kind: bad_name (not the _ACK of query_config), rpc:<NAME>
(rpc-level error), err:<NAME> (the response's err), timeout, disconnect (requests lost with a
connection, which is reopened), connect, bad_reply, unmatched. Connections take the tables in turn;
--distinct N queries <table>0 .. <table>N-1 instead (which defeats the proxy's coalescing).

--compare A,B[,C] runs the same load against each target in turn, --rounds times, and reports the
median of each figure per target and its ratio to the first. Each --pid LABEL=PID is a process
(the proxy, the simulator) whose CPU time is read from /proc around each run, reported as CPU
microseconds per request (and cores kept busy), beside the load tool's own (label load).

Targets that are not loopback addresses are refused unless --allow-non-loopback.

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
  pegasus-load --compare direct=127.0.0.1:34601,proxy=127.0.0.1:34701 --rounds 3 \\
    --pid sim=$SIM_PID --pid proxy=$PROXY_PID --table t --distinct 100
  pegasus-load --target 127.0.0.1:34701 --rate 20000 --duration 10s
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
    #[arg(long, required_unless_present = "compare")]
    target: Option<SocketAddr>,
    /// Load each of these targets in turn (LABEL=host:port or host:port, comma-separated),
    /// --rounds times, and compare them.
    #[arg(long, value_delimiter = ',', value_parser = compare::parse_target, conflicts_with = "target")]
    compare: Vec<Target>,
    /// Rounds of --compare.
    #[arg(long, default_value_t = 3, requires = "compare")]
    rounds: usize,
    /// A process to account CPU time for in --compare, as LABEL=PID (repeatable).
    #[arg(long = "pid", value_parser = compare::parse_watched, requires = "compare")]
    pids: Vec<Watched>,
    /// Quiet time before each --compare run.
    #[arg(long, value_parser = parse_duration, default_value = "1s", requires = "compare")]
    pause: Duration,
    /// Open loop: this many requests per second in all, at fixed intended times.
    #[arg(long, conflicts_with = "depth")]
    rate: Option<f64>,
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
    /// Query N distinct tables, <table>0 .. <table>N-1 (the first --table is the prefix).
    #[arg(long)]
    distinct: Option<usize>,
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
    /// Load targets (kv: replica addresses) that are not loopback addresses.
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
        let Some(target) = args.target else {
            eprintln!("pegasus-load: the kv workload needs --target");
            return ExitCode::from(64);
        };
        let metas = vec![target.to_string()];
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
    let tables = match args.distinct {
        Some(n) => load::distinct_tables(&args.tables[0], n),
        None => args.tables,
    };
    let config = LoadConfig {
        // Replaced by each target's under --compare.
        target: args
            .target
            .or(args.compare.first().map(|t| t.addr))
            .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        connections: args.connections,
        depth: args.depth,
        pace: match args.rate {
            Some(rate) => Pace::Open { rate },
            None => Pace::Closed,
        },
        allow_non_loopback: args.allow_non_loopback,
        until,
        tables,
        header: match args.header {
            HeaderArg::V0 => Header::V0,
            HeaderArg::V1 => Header::V1,
        },
        timeout: args.timeout.unwrap_or(Duration::from_secs(5)),
    };
    if !args.compare.is_empty() {
        let config = CompareConfig {
            load: config,
            targets: args.compare,
            rounds: args.rounds,
            watched: args.pids,
            pause: args.pause,
        };
        return match compare::run(config).await {
            Ok(report) => print(&report, args.json),
            Err(e) => {
                eprintln!("pegasus-load: {e}");
                ExitCode::from(64)
            }
        };
    }
    let report = match load::run(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pegasus-load: {e}");
            return ExitCode::from(64);
        }
    };
    print(&report, args.json)
}
