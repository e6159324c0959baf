//! A real ZooKeeper for tests: Debian's `zookeeper` package run with the plain `java` command
//! (toolchain.md §1), on free loopback ports with temporary data directories, stopped by PID.
//!
//! [`ZkServer`] is a standalone server; [`ZkEnsemble`] a 3-node quorum whose members can be
//! stopped and restarted. Both stop their processes when dropped. Readiness is judged with the
//! `srvr` four-letter word, not `ruok`: a member that lost quorum still answers `imok`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::harness::{Component, free_port};

const ZK_JAR: &str = "/usr/share/java/zookeeper.jar";
const SLF4J_JAR: &str = "/usr/share/java/slf4j-simple.jar";

/// Why ZooKeeper cannot run here, if it cannot.
pub fn unavailable() -> Option<String> {
    if !Path::new(ZK_JAR).exists() {
        return Some(format!("{ZK_JAR} is missing (apt-get install zookeeper)"));
    }
    match Command::new("java").arg("-version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(s) if s.success() => None,
        _ => Some("no working `java` on PATH".into()),
    }
}

/// The component, for [`crate::require!`].
pub const ZOOKEEPER: Component = Component { name: "ZooKeeper", unavailable };

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

struct Node {
    dir: PathBuf,
    client_port: u16,
    child: Option<Child>,
}

impl Node {
    fn cfg_path(&self) -> PathBuf {
        self.dir.join("zoo.cfg")
    }

    fn spawn(&mut self, main_class: &str) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("zk.log"))
            .context("zk.log")?;
        let child = Command::new("java")
            .args(["-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp"])
            .arg(format!("{ZK_JAR}:{SLF4J_JAR}"))
            .arg(main_class)
            .arg(self.cfg_path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting java for ZooKeeper")?;
        self.child = Some(child);
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("zk.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// Sends a four-letter word and returns the answer ("" when the port does not answer).
pub fn four_letter_word(port: u16, word: &str) -> String {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(word.as_bytes()).is_err() {
        return String::new();
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// `standalone`, `leader` or `follower` while serving; `None` otherwise.
pub fn mode(port: u16) -> Option<String> {
    four_letter_word(port, "srvr")
        .lines()
        .find_map(|l| l.strip_prefix("Mode: ").map(|m| m.trim().to_owned()))
}

fn wait_serving(node: &mut Node, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if mode(node.client_port).is_some() {
            return Ok(());
        }
        if let Some(child) = node.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            bail!("ZooKeeper exited with {status} during start-up:\n{}", node.log_tail());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("ZooKeeper on port {} not serving after {timeout:?}:\n{}", node.client_port, node.log_tail())
}

fn base_cfg(dir: &Path, client_port: u16, opts: &ZkOptions) -> String {
    format!(
        "tickTime={}\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={client_port}\n\
         clientPortAddress=127.0.0.1\nmaxClientCnxns=0\nadmin.enableServer=false\n\
         4lw.commands.whitelist=*\n",
        opts.tick_ms,
        dir.join("data").display()
    )
}

/// A standalone ZooKeeper server.
pub struct ZkServer {
    _tmp: tempfile::TempDir,
    node: Node,
}

impl ZkServer {
    pub fn start() -> Result<Self> {
        Self::start_with(ZkOptions::default())
    }

    pub fn start_with(opts: ZkOptions) -> Result<Self> {
        if let Some(why) = unavailable() {
            bail!("ZooKeeper unavailable: {why}");
        }
        let tmp = tempfile::Builder::new().prefix("metaproxy-zk-").tempdir()?;
        let dir = tmp.path().to_path_buf();
        std::fs::create_dir_all(dir.join("data"))?;
        let client_port = free_port()?;
        std::fs::write(dir.join("zoo.cfg"), base_cfg(&dir, client_port, &opts))?;
        let mut server = ZkServer { _tmp: tmp, node: Node { dir, client_port, child: None } };
        server.start_again()?;
        Ok(server)
    }

    /// Restarts a stopped server on the same port with the same data.
    pub fn start_again(&mut self) -> Result<()> {
        if self.node.child.is_some() {
            return Ok(());
        }
        self.node.spawn("org.apache.zookeeper.server.ZooKeeperServerMain")?;
        wait_serving(&mut self.node, Duration::from_secs(30))
    }

    /// Stops the server (SIGKILL: what a crash looks like to clients).
    pub fn stop(&mut self) {
        self.node.kill();
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

impl Drop for ZkServer {
    fn drop(&mut self) {
        self.node.kill();
    }
}

/// A ZooKeeper ensemble of three (or more) members on loopback.
pub struct ZkEnsemble {
    _tmp: tempfile::TempDir,
    nodes: Vec<Node>,
}

impl ZkEnsemble {
    pub fn start(size: usize) -> Result<Self> {
        Self::start_with(size, ZkOptions::default())
    }

    pub fn start_with(size: usize, opts: ZkOptions) -> Result<Self> {
        if let Some(why) = unavailable() {
            bail!("ZooKeeper unavailable: {why}");
        }
        let tmp = tempfile::Builder::new().prefix("metaproxy-zk-ensemble-").tempdir()?;
        let ports: Vec<(u16, u16, u16)> =
            (0..size).map(|_| Ok((free_port()?, free_port()?, free_port()?))).collect::<Result<_>>()?;
        let servers: String = ports
            .iter()
            .enumerate()
            .map(|(i, (_, quorum, election))| format!("server.{}=127.0.0.1:{quorum}:{election}\n", i + 1))
            .collect();
        let mut nodes = Vec::with_capacity(size);
        for (i, (client, _, _)) in ports.iter().enumerate() {
            let dir = tmp.path().join(format!("{}", i + 1));
            std::fs::create_dir_all(dir.join("data"))?;
            std::fs::write(dir.join("data/myid"), format!("{}\n", i + 1))?;
            std::fs::write(dir.join("zoo.cfg"), base_cfg(&dir, *client, &opts) + &servers)?;
            nodes.push(Node { dir, client_port: *client, child: None });
        }
        let mut ensemble = ZkEnsemble { _tmp: tmp, nodes };
        for node in &mut ensemble.nodes {
            node.spawn("org.apache.zookeeper.server.quorum.QuorumPeerMain")?;
        }
        for node in &mut ensemble.nodes {
            wait_serving(node, Duration::from_secs(60))?;
        }
        Ok(ensemble)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Every member, `127.0.0.1:a,127.0.0.1:b,...`.
    pub fn connect_string(&self) -> String {
        self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.client_port)).collect::<Vec<_>>().join(",")
    }

    pub fn port(&self, member: usize) -> u16 {
        self.nodes[member].client_port
    }

    /// `leader`, `follower`, or `None` when the member is not serving.
    pub fn mode(&self, member: usize) -> Option<String> {
        mode(self.nodes[member].client_port)
    }

    /// The member that is the leader now, if any.
    pub fn leader(&self) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| self.mode(i).as_deref() == Some("leader"))
    }

    /// Kills one member.
    pub fn stop(&mut self, member: usize) {
        self.nodes[member].kill();
    }

    /// Restarts a stopped member with its data. Does not wait for quorum: with a majority down
    /// the member cannot serve. Use [`ZkEnsemble::wait_serving`] when it should.
    pub fn start_again(&mut self, member: usize) -> Result<()> {
        let node = &mut self.nodes[member];
        if node.child.is_none() {
            node.spawn("org.apache.zookeeper.server.quorum.QuorumPeerMain")?;
        }
        Ok(())
    }

    /// Waits until `member` serves clients.
    pub fn wait_serving(&mut self, member: usize, timeout: Duration) -> Result<()> {
        wait_serving(&mut self.nodes[member], timeout)
    }
}

impl Drop for ZkEnsemble {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }
}
