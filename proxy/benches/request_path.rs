//! The proxy's request path end to end, in one process: a client pipelines query_config
//! requests to an in-process proxy, which answers them from a simulated MetaServer (static
//! routes). One table (identical requests in flight share one upstream call) and 100 distinct
//! tables (every request goes upstream). The time per batch divided by its size is the cost per
//! request of client, proxy and simulator together on this machine's cores; `e2e/bench.sh`
//! separates them by process with CPU accounting.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use metaproxy::Proxy;
use metaproxy::config::{Config, Settings};
use metaproxy_tests::load::distinct_tables;
use metaproxy_tests::raw::query_frame;
use metaproxy_tests::sim::{SimConfig, SimHandle, Simulator, TableSpec};
use pegasus_rpc::codec::{self, DEFAULT_MAX_REPLY_FRAME};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BATCH: usize = 256;

struct Setup {
    _sim: SimHandle,
    _proxy: Proxy,
    _routes: tempfile::TempDir,
    addr: SocketAddr,
}

async fn setup(tables: &[String]) -> Setup {
    let replicas =
        ["127.0.0.1:34801", "127.0.0.1:34802", "127.0.0.1:34803"].map(|s| s.parse().expect("addr"));
    let specs = tables
        .iter()
        .enumerate()
        .map(|(i, t)| TableSpec::new(t, 2 + i as i32, 8, replicas))
        .collect();
    let sim = Simulator::start(SimConfig::loopback(1, specs))
        .await
        .expect("simulator");
    let meta = sim.meta_addrs()[0];
    let routes = tempfile::tempdir().expect("dir");
    let path = routes.path().join("routes.yaml");
    let yaml: String = tables
        .iter()
        .map(|t| format!("{t}: {{cluster: sim, meta_addrs: [\"{meta}\"]}}\n"))
        .collect();
    std::fs::write(&path, yaml).expect("routes");
    let config = Config::load(Settings {
        listen: Some("127.0.0.1:0".into()),
        admin_listen: Some("127.0.0.1:0".into()),
        routes: Some(path),
        ..Settings::default()
    })
    .expect("config");
    let proxy = Proxy::start(&config).await.expect("proxy");
    let addr = proxy.addr();
    Setup {
        _sim: sim,
        _proxy: proxy,
        _routes: routes,
        addr,
    }
}

/// Sends `batch` (BATCH requests) `iters` times over one connection, waiting for every reply
/// each time; the time taken.
async fn run(addr: SocketAddr, batch: &[u8], iters: u64) -> Duration {
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    conn.set_nodelay(true).expect("nodelay");
    let mut buf = BytesMut::with_capacity(64 << 10);
    let started = Instant::now();
    for _ in 0..iters {
        conn.write_all(batch).await.expect("write");
        let mut got = 0;
        while got < BATCH {
            while let Some(reply) =
                codec::decode_reply(&mut buf, DEFAULT_MAX_REPLY_FRAME).expect("a reply")
            {
                assert!(reply.rpc_error.is_ok());
                got += 1;
            }
            if got < BATCH && conn.read_buf(&mut buf).await.expect("read") == 0 {
                panic!("the proxy closed the connection");
            }
        }
    }
    started.elapsed()
}

fn request_path(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut g = c.benchmark_group("request_path");
    g.throughput(Throughput::Elements(BATCH as u64));
    for (label, tables) in [
        ("one_table", vec!["temp".to_owned()]),
        ("100_tables", distinct_tables("t", 100)),
    ] {
        let setup = rt.block_on(setup(&tables));
        let batch: Vec<u8> = (0..BATCH)
            .flat_map(|i| query_frame(&tables[i % tables.len()], i as i32))
            .collect();
        g.bench_with_input(
            BenchmarkId::new("pipelined_256", label),
            &batch,
            |b, batch| b.iter_custom(|iters| rt.block_on(run(setup.addr, batch, iters))),
        );
        rt.block_on(async { drop(setup) });
    }
    g.finish();
}

criterion_group!(benches, request_path);
criterion_main!(benches);
