//! A real ZooKeeper for tests: ZooKeeper's jars run with a plain `java` command, on free loopback
//! ports with temporary data directories, stopped by PID.
//!
//! Where things are found (`scripts/lib.sh` finds them the same way for the scripts):
//! - `java`: `$JAVA_HOME/bin/java` when `JAVA_HOME` is set, else `java` on `PATH`;
//! - the jars: the class path in `$ZOOKEEPER_CLASSPATH` when set, else Debian's
//!   `/usr/share/java/zookeeper.jar` (whose manifest names its dependencies) with
//!   `slf4j-simple.jar` beside it, so that the server writes a log.
//!
//! [`ZkServer`] is a standalone server; [`ZkEnsemble`] a quorum whose members can be stopped and
//! restarted. Both are async and never block the runtime (the proxy under test shares it), and
//! both stop their processes when dropped. A port taken by someone else between picking and
//! binding it is noticed (ZooKeeper exits saying so) and the server is started again on new ports.
//! Readiness is judged with the `srvr` four-letter word, not `ruok`: a member that lost quorum
//! still answers `imok`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Component, Process, Started, free_port, start_on_free_ports};

/// Debian's jars, used when `$ZOOKEEPER_CLASSPATH` is not set.
const DEBIAN_JARS: &str = "/usr/share/java";

const STANDALONE: &str = "org.apache.zookeeper.server.ZooKeeperServerMain";
const QUORUM_PEER: &str = "org.apache.zookeeper.server.quorum.QuorumPeerMain";

/// How long a standalone server and an ensemble may take to serve.
const STANDALONE_START: Duration = Duration::from_secs(30);
const ENSEMBLE_START: Duration = Duration::from_secs(60);

/// The `java` to run: `$JAVA_HOME/bin/java`, else `java` from `PATH`.
pub fn java() -> PathBuf {
    match std::env::var_os("JAVA_HOME") {
        Some(home) if !home.is_empty() => Path::new(&home).join("bin/java"),
        _ => PathBuf::from("java"),
    }
}

/// ZooKeeper's class path: `$ZOOKEEPER_CLASSPATH`, else Debian's jars.
pub fn classpath() -> Result<String, String> {
    if let Some(cp) = std::env::var_os("ZOOKEEPER_CLASSPATH").filter(|cp| !cp.is_empty()) {
        return cp
            .into_string()
            .map_err(|_| "ZOOKEEPER_CLASSPATH is not UTF-8".to_owned());
    }
    let jars = Path::new(DEBIAN_JARS);
    let zookeeper = jars.join("zookeeper.jar");
    if !zookeeper.is_file() {
        return Err(format!(
            "{} is missing (apt-get install zookeeper, or set ZOOKEEPER_CLASSPATH)",
            zookeeper.display()
        ));
    }
    let mut cp = zookeeper.display().to_string();
    let slf4j = jars.join("slf4j-simple.jar");
    if slf4j.is_file() {
        cp = format!("{cp}:{}", slf4j.display());
    }
    Ok(cp)
}

/// Why ZooKeeper cannot run here, if it cannot. Found out once per test process.
pub fn unavailable() -> Option<String> {
    static WHY: OnceLock<Option<String>> = OnceLock::new();
    WHY.get_or_init(|| {
        if let Err(why) = classpath() {
            return Some(why);
        }
        let java = java();
        match Command::new(&java).arg("-version").output() {
            Ok(out) if out.status.success() => None,
            _ => Some(format!(
                "no working {} (install a JRE, or set JAVA_HOME)",
                java.display()
            )),
        }
    })
    .clone()
}

/// The component, for [`crate::require!`].
pub const ZOOKEEPER: Component = Component {
    name: "ZooKeeper",
    unavailable,
};

/// Settings shared by the standalone server and the ensemble members.
#[derive(Clone, Debug)]
pub struct ZkOptions {
    /// ZooKeeper's tick. Session timeouts are clamped by the server to [2, 20] ticks.
    pub tick_ms: u32,
}

impl Default for ZkOptions {
    fn default() -> Self {
        // Session timeouts between 1 s and 10 s: short enough for expiry tests.
        ZkOptions { tick_ms: 500 }
    }
}

/// One ZooKeeper server process and its directory (configuration, data, log).
struct Node {
    dir: PathBuf,
    client_port: u16,
    main_class: &'static str,
    process: Option<Process>,
}

impl Node {
    /// Writes the configuration; `servers` lists the ensemble's members (empty when standalone).
    fn new(
        dir: PathBuf,
        client_port: u16,
        opts: &ZkOptions,
        servers: &str,
        main_class: &'static str,
    ) -> Result<Node> {
        std::fs::create_dir_all(dir.join("data"))?;
        let cfg = format!(
            "tickTime={}\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={client_port}\n\
             clientPortAddress=127.0.0.1\nmaxClientCnxns=0\nadmin.enableServer=false\n\
             4lw.commands.whitelist=*\n{servers}",
            opts.tick_ms,
            dir.join("data").display()
        );
        std::fs::write(dir.join("zoo.cfg"), cfg)?;
        Ok(Node {
            dir,
            client_port,
            main_class,
            process: None,
        })
    }

    /// Starts the process unless it runs; does not wait for it to serve.
    fn spawn(&mut self) -> Result<()> {
        if self.process.is_some() {
            return Ok(());
        }
        let classpath = classpath().map_err(anyhow::Error::msg)?;
        let mut cmd = Command::new(java());
        cmd.args([
            "-Xmx128m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-cp",
            &classpath,
            self.main_class,
        ])
        .arg(self.dir.join("zoo.cfg"));
        let what = format!("ZooKeeper on port {}", self.client_port);
        self.process = Some(Process::spawn(&what, &mut cmd, &self.dir.join("zk.log"))?);
        Ok(())
    }

    /// Waits until the node serves clients: [`Started::PortTaken`] when it exited because one of
    /// its ports was in use (the process is then gone).
    async fn wait_serving(&mut self, timeout: Duration) -> Result<Started<()>> {
        let port = self.client_port;
        let process = self.process.as_mut().context("not started")?;
        let started = process
            .wait_ready(timeout, async || mode(port).await.is_some())
            .await?;
        if matches!(started, Started::PortTaken(_)) {
            self.process = None;
        }
        Ok(started)
    }

    async fn kill(&mut self) -> Result<()> {
        if let Some(mut process) = self.process.take() {
            process.kill().await?;
        }
        Ok(())
    }

    fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Process::pid)
    }
}

/// Sends a four-letter word and returns the answer ("" when the port does not answer in time).
pub async fn four_letter_word(port: u16, word: &str) -> String {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // Short: a word sent while the server starts can go unanswered.
    let exchange = async {
        let mut s = tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr))
            .await
            .ok()?
            .ok()?;
        s.write_all(word.as_bytes()).await.ok()?;
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        Some(out)
    };
    tokio::time::timeout(Duration::from_millis(800), exchange)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// The digest identity of `user:password`, `user:BASE64(SHA1(user:password))`, as ZooKeeper's
/// own `DigestAuthenticationProvider` prints it (what an administrator runs to write an ACL).
pub async fn digest_id(credentials: &str) -> Result<String> {
    let classpath = classpath().map_err(anyhow::Error::msg)?;
    let out = tokio::process::Command::new(java())
        .args([
            "-cp",
            &classpath,
            "org.apache.zookeeper.server.auth.DigestAuthenticationProvider",
            credentials,
        ])
        .output()
        .await
        .context("running DigestAuthenticationProvider")?;
    // It prints `user:password->user:HASH`.
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.split_once("->").map(|(_, id)| id.trim().to_owned()))
        .with_context(|| format!("no digest in {text:?}"))
}

/// `standalone`, `leader` or `follower` while serving; `None` otherwise.
pub async fn mode(port: u16) -> Option<String> {
    four_letter_word(port, "srvr")
        .await
        .lines()
        .find_map(|l| l.strip_prefix("Mode: ").map(|m| m.trim().to_owned()))
}

/// A standalone ZooKeeper server.
pub struct ZkServer {
    node: Node,
    _tmp: tempfile::TempDir,
}

impl ZkServer {
    /// Starts a server with the default options and waits until it serves.
    pub async fn launch() -> Result<Self> {
        Self::launch_with(ZkOptions::default()).await
    }

    pub async fn launch_with(opts: ZkOptions) -> Result<Self> {
        if let Some(why) = unavailable() {
            bail!("ZooKeeper unavailable: {why}");
        }
        let tmp = tempfile::Builder::new().prefix("metaproxy-zk-").tempdir()?;
        let dir = tmp.path().to_path_buf();
        let node = start_on_free_ports("ZooKeeper", async || {
            let mut node = Node::new(dir.clone(), free_port()?, &opts, "", STANDALONE)?;
            node.spawn()?;
            Ok(node.wait_serving(STANDALONE_START).await?.map(|()| node))
        })
        .await?;
        Ok(ZkServer { node, _tmp: tmp })
    }

    /// Starts a stopped server again, on the same port with the same data, and waits until it
    /// serves. Does nothing while it runs.
    pub async fn restart(&mut self) -> Result<()> {
        if self.node.process.is_some() {
            return Ok(());
        }
        self.node.spawn()?;
        match self.node.wait_serving(STANDALONE_START).await? {
            Started::Up(()) => Ok(()),
            // Its clients know this port: another one would not do.
            Started::PortTaken(why) => bail!(
                "port {} was taken while ZooKeeper was down:\n{why}",
                self.port()
            ),
        }
    }

    /// Stops the server with SIGKILL (what a crash looks like to clients) and reaps it.
    pub async fn kill(&mut self) -> Result<()> {
        self.node.kill().await
    }

    pub fn port(&self) -> u16 {
        self.node.client_port
    }

    pub fn pid(&self) -> Option<u32> {
        self.node.pid()
    }

    /// `127.0.0.1:<port>`.
    pub fn connect_string(&self) -> String {
        format!("127.0.0.1:{}", self.node.client_port)
    }
}

/// A ZooKeeper ensemble of three (or more) members on loopback.
pub struct ZkEnsemble {
    nodes: Vec<Node>,
    _tmp: tempfile::TempDir,
}

impl ZkEnsemble {
    /// Starts `size` members and waits until each serves.
    pub async fn launch(size: usize) -> Result<Self> {
        Self::launch_with(size, ZkOptions::default()).await
    }

    pub async fn launch_with(size: usize, opts: ZkOptions) -> Result<Self> {
        if let Some(why) = unavailable() {
            bail!("ZooKeeper unavailable: {why}");
        }
        start_on_free_ports("a ZooKeeper ensemble", async || {
            // Fresh directories each attempt: a member that ran may have written data.
            let tmp = tempfile::Builder::new()
                .prefix("metaproxy-zk-ensemble-")
                .tempdir()?;
            let ports: Vec<(u16, u16, u16)> = (0..size)
                .map(|_| Ok((free_port()?, free_port()?, free_port()?)))
                .collect::<Result<_>>()?;
            let servers: String = ports
                .iter()
                .enumerate()
                .map(|(i, (_, quorum, election))| {
                    format!("server.{}=127.0.0.1:{quorum}:{election}\n", i + 1)
                })
                .collect();
            let mut nodes = Vec::with_capacity(size);
            for (i, (client, _, _)) in ports.iter().enumerate() {
                let dir = tmp.path().join(format!("{}", i + 1));
                std::fs::create_dir_all(dir.join("data"))?;
                std::fs::write(dir.join("data/myid"), format!("{}\n", i + 1))?;
                nodes.push(Node::new(dir, *client, &opts, &servers, QUORUM_PEER)?);
            }
            for node in &mut nodes {
                node.spawn()?;
            }
            for node in &mut nodes {
                if let Started::PortTaken(why) = node.wait_serving(ENSEMBLE_START).await? {
                    // The other members are killed when `nodes` is dropped.
                    return Ok(Started::PortTaken(why));
                }
            }
            Ok(Started::Up(ZkEnsemble { nodes, _tmp: tmp }))
        })
        .await
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Every member, `127.0.0.1:a,127.0.0.1:b,...`.
    pub fn connect_string(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn port(&self, member: usize) -> u16 {
        self.nodes[member].client_port
    }

    /// `leader`, `follower`, or `None` when the member is not serving.
    pub async fn mode(&self, member: usize) -> Option<String> {
        mode(self.nodes[member].client_port).await
    }

    /// The member that is the leader now, if any.
    pub async fn leader(&self) -> Option<usize> {
        for i in 0..self.nodes.len() {
            if self.mode(i).await.as_deref() == Some("leader") {
                return Some(i);
            }
        }
        None
    }

    /// Kills one member (SIGKILL) and reaps it.
    pub async fn kill(&mut self, member: usize) -> Result<()> {
        self.nodes[member].kill().await
    }

    /// Starts a stopped member again with its data. Does not wait for it to serve: with a
    /// majority down it cannot. Use [`ZkEnsemble::wait_serving`] when it should.
    pub fn restart(&mut self, member: usize) -> Result<()> {
        self.nodes[member].spawn()
    }

    /// Waits until `member` serves clients.
    pub async fn wait_serving(&mut self, member: usize, timeout: Duration) -> Result<()> {
        match self.nodes[member].wait_serving(timeout).await? {
            Started::Up(()) => Ok(()),
            Started::PortTaken(why) => bail!("member {member} lost its port:\n{why}"),
        }
    }
}
