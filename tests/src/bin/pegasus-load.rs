//! `pegasus-load`: query_config load against a MetaServer, the simulator or the proxy (see
//! `metaproxy_tests::load`). Options in, a report out.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use metaproxy::startup::parse_duration;
use metaproxy_tests::load::{self, Header, LoadConfig, Until};

const AFTER_HELP: &str = "\
Each connection keeps --depth requests in flight, matched to replies by seqid, and takes the
tables in turn. Errors are counted by kind: rpc:<NAME> (rpc-level error), err:<NAME> (the
response's err), timeout, disconnect (requests lost with a connection, which is reopened),
connect, bad_reply, unmatched.

Example: pegasus-load --target 127.0.0.1:34601 --connections 8 --depth 32 --duration 10s --table temp";

#[derive(Clone, Copy, Debug, ValueEnum)]
enum HeaderArg {
    /// The 48-byte header of the Go, Python and Node.js clients.
    V0,
    /// The Java client's header with a request_meta.
    V1,
}

/// Sends pipelined query_config requests and reports throughput, latency and errors.
#[derive(Debug, Parser)]
#[command(version, after_help = AFTER_HELP)]
struct Args {
    /// The MetaServer (or proxy) to load.
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
    /// How many requests to send in total.
    #[arg(long)]
    requests: Option<u64>,
    /// Tables to query, in turn; repeat the option or separate with commas.
    #[arg(long = "table", value_delimiter = ',', default_value = "temp")]
    tables: Vec<String>,
    #[arg(long, value_enum, default_value = "v0")]
    header: HeaderArg,
    /// How long a request may wait for its reply.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    timeout: Duration,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let until = match (args.duration, args.requests) {
        (_, Some(n)) => Until::Requests(n),
        (Some(d), None) => Until::Elapsed(d),
        (None, None) => Until::Elapsed(Duration::from_secs(10)),
    };
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
        timeout: args.timeout,
    };
    let report = match load::run(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pegasus-load: {e}");
            return ExitCode::from(64);
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
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
