//! Shared pieces of the proxy's integration tests: captured vectors, a raw Pegasus client, a
//! simulated cluster shaped like the captures, and proxies started on free loopback ports. HTTP
//! and metrics come from the test support crate (`metaproxy_tests::harness`).

#![allow(dead_code, unused_imports)]

use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use bytes::BytesMut;
use metaproxy::Proxy;
use metaproxy::config::{Config, Settings};
use metaproxy::route::RouteRecord;
pub use metaproxy_tests::bystander::rss;
use metaproxy_tests::free_port;
use metaproxy_tests::harness::Process;
pub use metaproxy_tests::harness::{Metrics, http_get, scrape, start_on_free_ports};
use metaproxy_tests::sim::{SimConfig, SimHandle, Simulator, TableSpec};
use pegasus_rpc::codec::{self, DEFAULT_MAX_REPLY_FRAME};
use tokio::io::AsyncReadExt;

pub const WAIT: Duration = Duration::from_secs(15);

pub use metaproxy_tests::raw::{RawConn, query_frame};
pub use metaproxy_tests::vectors::load as vector;

fn replica(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new([127, 0, 0, 1].into(), port)
}

/// Table `temp` exactly as in the captures: app 2, 4 partitions on 127.0.0.1:34801..34803.
pub fn capture_table() -> TableSpec {
    TableSpec::new(
        "temp",
        2,
        4,
        [replica(34801), replica(34802), replica(34803)],
    )
    .with_hosts(["node1", "node2", "node3"])
}

/// Another table, for tests that need two.
pub fn table(name: &str, app_id: i32, partitions: i32) -> TableSpec {
    TableSpec::new(
        name,
        app_id,
        partitions,
        [replica(34901), replica(34902), replica(34903)],
    )
}

/// A simulated cluster of `metas` MetaServers on free ports, the first one the leader.
pub async fn sim(metas: usize, tables: Vec<TableSpec>) -> SimHandle {
    Simulator::start(SimConfig::loopback(metas, tables))
        .await
        .expect("simulator starts")
}

pub async fn sim_with(config: SimConfig) -> SimHandle {
    Simulator::start(config).await.expect("simulator starts")
}

/// The route record naming a simulated cluster.
pub fn record(cluster: &str, sim: &SimHandle) -> RouteRecord {
    RouteRecord::new(cluster, sim.meta_addrs().iter().map(|a| a.to_string())).expect("valid record")
}

/// A routes file in a temporary directory.
pub struct RoutesFile {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl RoutesFile {
    pub fn new(routes: &[(&str, &RouteRecord)]) -> RoutesFile {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("routes.yaml");
        let file = RoutesFile { _dir: dir, path };
        file.write(routes);
        file
    }

    pub fn write(&self, routes: &[(&str, &RouteRecord)]) {
        let yaml: String = routes
            .iter()
            .map(|(table, r)| {
                let addrs: Vec<String> = r.meta_addrs.iter().map(|a| format!("\"{a}\"")).collect();
                format!(
                    "{table}: {{cluster: {}, meta_addrs: [{}]}}\n",
                    r.cluster,
                    addrs.join(", ")
                )
            })
            .collect();
        // Write then rename, as a ConfigMap update does, so the poller never sees half a file.
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, yaml).expect("write routes");
        std::fs::rename(&tmp, &self.path).expect("rename routes");
    }
}

/// Flags for a proxy on free loopback ports; `tune` sets the rest.
pub fn cli(tune: impl FnOnce(&mut Settings)) -> Settings {
    let mut cli = Settings {
        listen: Some("127.0.0.1:0".into()),
        admin_listen: Some("127.0.0.1:0".into()),
        ..Settings::default()
    };
    tune(&mut cli);
    cli
}

pub async fn start(cli: Settings) -> Proxy {
    let config = Config::load(cli).expect("valid configuration");
    Proxy::start(&config).await.expect("proxy starts")
}

/// A proxy serving the routes in `file`.
pub async fn start_with_routes(file: &RoutesFile, tune: impl FnOnce(&mut Settings)) -> Proxy {
    start(cli(|c| {
        c.routes = Some(file.path.clone());
        tune(c);
    }))
    .await
}

/// A proxy reading routes under `root` in ZooKeeper at `zk`, once ready.
pub async fn start_with_zk(zk: &str, root: &str, tune: impl FnOnce(&mut Settings)) -> Proxy {
    let proxy = start(cli(|c| {
        c.zk = Some(zk.into());
        c.zk_root = Some(root.into());
        tune(c);
    }))
    .await;
    eventually("the proxy has a ZooKeeper session", || async {
        proxy.routes().is_ready()
    })
    .await;
    proxy
}

/// Polls `check` until it holds; panics after [`WAIT`].
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    metaproxy_tests::harness::eventually(WAIT, what, async || check().await.then_some(()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// The proxy's metrics, from its admin port; a missing series fails the test (see [`Metrics`]).
pub async fn metrics(proxy: &Proxy) -> Metrics {
    scrape(proxy.admin_addr())
        .await
        .expect("the admin port serves /metrics")
}

/// The metrics of an in-process proxy, read without its admin port (which is gone once it has
/// drained): a clone of `proxy.metrics()` taken before, encoded and parsed as a scrape would be.
pub fn local_metrics(m: &metaproxy::metrics::Metrics) -> Metrics {
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &m.registry())
        .expect("metrics encode");
    Metrics::parse(&text).expect("a valid exposition")
}

/// Requests the proxy has answered, of every RPC and result.
pub fn answered(m: &Metrics) -> f64 {
    m.samples()
        .iter()
        .filter(|s| s.name == "metaproxy_requests_total")
        .map(|s| s.value)
        .sum()
}

/// How a pipelining client's stream of replies ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// An orderly close (FIN) after the last reply.
    Eof,
    /// A read error, e.g. a reset, with its message.
    Error(String),
    /// Nothing more within the time allowed.
    Silent,
}

/// The reply side of a pipelining client: reads frames, keeping partial ones between calls.
pub struct Replies<R> {
    read: R,
    buf: BytesMut,
}

impl<R: tokio::io::AsyncRead + Unpin> Replies<R> {
    pub fn new(read: R) -> Self {
        Replies {
            read,
            buf: BytesMut::new(),
        }
    }

    /// Reads replies until `n` have come ([`End::Silent`] then), the stream ends, or nothing
    /// comes for `wait`: the seqids in arrival order, and how it ended.
    pub async fn take(&mut self, n: usize, wait: Duration) -> (Vec<i32>, End) {
        let mut seqids = Vec::new();
        loop {
            while seqids.len() < n
                && let Some(frame) = codec::decode_reply(&mut self.buf, DEFAULT_MAX_REPLY_FRAME)
                    .expect("a valid reply")
            {
                seqids.push(frame.seqid());
            }
            if seqids.len() >= n {
                return (seqids, End::Silent);
            }
            match tokio::time::timeout(wait, self.read.read_buf(&mut self.buf)).await {
                Err(_) => return (seqids, End::Silent),
                Ok(Ok(0)) => return (seqids, End::Eof),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return (seqids, End::Error(e.to_string())),
            }
        }
    }

    pub fn into_inner(self) -> R {
        self.read
    }
}

/// Reads replies until the stream ends or nothing comes for `wait`.
pub async fn read_replies(
    read: &mut (impl tokio::io::AsyncRead + Unpin),
    wait: Duration,
) -> (Vec<i32>, End) {
    Replies::new(read).take(usize::MAX, wait).await
}

/// `n` pipelined query_config frames for `table`, seqids `0..n`.
pub fn burst(table: &str, n: usize) -> Vec<u8> {
    let one = query_frame(table, 0);
    let mut out = Vec::with_capacity(one.len() * n);
    for seqid in 0..n {
        out.extend_from_slice(&query_frame(table, seqid as i32));
    }
    out
}

/// The binary under test: this build's, or the one `METAPROXY_BIN` names (to measure a release
/// build, or an older one, with the same tests).
pub fn bin() -> std::path::PathBuf {
    std::env::var_os("METAPROXY_BIN")
        .filter(|b| !b.is_empty())
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_metaproxy").into())
}

/// A `metaproxy` process on free loopback ports, serving `routes` with `args` besides, once
/// ready; its output goes to `log`.
pub async fn spawn_proxy(
    routes: &RoutesFile,
    args: &[&str],
    log: &std::path::Path,
) -> (Process, SocketAddr, SocketAddr) {
    let source = ["--routes".to_owned(), routes.path.display().to_string()];
    spawn_proxy_with(&source, args, log).await
}

/// A `metaproxy` process on free loopback ports with `source` (the route source flags) and
/// `args`, once ready; its output goes to `log`.
pub async fn spawn_proxy_with(
    source: &[String],
    args: &[&str],
    log: &std::path::Path,
) -> (Process, SocketAddr, SocketAddr) {
    start_on_free_ports("metaproxy", async || {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut cmd = Command::new(bin());
        cmd.args(["--listen", &addr.to_string()])
            .args(["--admin-listen", &admin.to_string()])
            .args(source)
            .args(args);
        let mut proxy = Process::spawn("metaproxy", &mut cmd, log)?;
        let ready = proxy.wait_http_ready(admin, WAIT).await?;
        Ok(ready.map(|()| (proxy, addr, admin)))
    })
    .await
    .expect("metaproxy starts")
}

/// Writes `data` at `path` in ZooKeeper, creating the znode when it is not there (its parent
/// must be).
pub async fn put_znode(client: &zookeeper_client::Client, path: &str, data: &[u8]) {
    match client.set_data(path, data, None).await {
        Ok(_) => {}
        Err(zookeeper_client::Error::NoNode) => {
            let opts = zookeeper_client::CreateMode::Persistent
                .with_acls(zookeeper_client::Acls::anyone_all());
            client.create(path, data, &opts).await.expect("create");
        }
        Err(e) => panic!("set {path}: {e}"),
    }
}
