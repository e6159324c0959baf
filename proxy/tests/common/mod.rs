//! Shared pieces of the proxy's integration tests: captured vectors, a raw Pegasus client, a
//! simulated cluster shaped like the captures, and proxies started on free loopback ports. HTTP
//! and metrics come from the test support crate (`metaproxy_tests::harness`).

#![allow(dead_code, unused_imports)]

use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use metaproxy::Proxy;
use metaproxy::config::{Config, Settings};
use metaproxy::route::RouteRecord;
pub use metaproxy_tests::harness::{Metrics, http_get, scrape};
use metaproxy_tests::sim::{SimConfig, SimHandle, Simulator, TableSpec};
use pegasus_rpc::codec::{
    self, DEFAULT_MAX_REPLY_FRAME, ErrorCode, QueryCfgRequest, QueryCfgResponse, ReplyFrame,
    RequestFrame,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const WAIT: Duration = Duration::from_secs(15);

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

/// A raw Pegasus client connection: bytes in, frames out.
pub struct Client {
    stream: TcpStream,
    buf: BytesMut,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr)
            .await
            .expect("connect to the proxy");
        Client {
            stream,
            buf: BytesMut::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// The next reply frame; panics if none comes within [`WAIT`].
    pub async fn reply(&mut self) -> ReplyFrame {
        self.try_reply()
            .await
            .expect("a reply before the connection closed")
    }

    /// The next reply, or `None` when the proxy closed the connection.
    pub async fn try_reply(&mut self) -> Option<ReplyFrame> {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(frame) = codec::decode_reply(&mut self.buf, DEFAULT_MAX_REPLY_FRAME)
                    .expect("a valid reply")
                {
                    return Some(frame);
                }
                if self.stream.read_buf(&mut self.buf).await.unwrap_or(0) == 0 {
                    return None;
                }
            }
        })
        .await
        .expect("no reply in time")
    }

    /// The next reply, as the exact bytes on the wire.
    pub async fn reply_bytes(&mut self) -> Vec<u8> {
        self.reply().await.to_bytes().to_vec()
    }

    /// Sends a v0 query_config for `table` with `seqid` and decodes the answer.
    pub async fn query(&mut self, table: &str, seqid: i32) -> QueryCfgResponse {
        self.send(&query_frame(table, seqid)).await;
        let reply = self.reply().await;
        assert_eq!(
            reply.rpc_error,
            ErrorCode::OK,
            "query_config never gets an rpc-level error"
        );
        assert_eq!(reply.seqid(), seqid);
        assert_eq!(
            reply.message.name,
            "RPC_CM_QUERY_PARTITION_CONFIG_BY_INDEX_ACK"
        );
        QueryCfgResponse::from_result(&reply.body).expect("a query_cfg_response")
    }

    /// Whether the proxy closed the connection (reads end) within [`WAIT`].
    pub async fn is_closed(&mut self) -> bool {
        let mut scratch = [0u8; 256];
        tokio::time::timeout(WAIT, async {
            loop {
                match self.stream.read(&mut scratch).await {
                    Ok(0) | Err(_) => return true,
                    Ok(_) => continue,
                }
            }
        })
        .await
        .unwrap_or(false)
    }
}

/// A v0 query_config frame as the Go client writes it.
pub fn query_frame(table: &str, seqid: i32) -> Bytes {
    let mut args = BytesMut::new();
    QueryCfgRequest::new(table).to_args(&mut args);
    RequestFrame::call_v0(codec::rpc::QUERY_CONFIG, seqid, 0, args.freeze()).to_bytes()
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
