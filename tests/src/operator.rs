//! Runs the real `metaproxy-operator` binary, started with a free admin port, its log kept in a
//! file, stopped with SIGTERM (or killed when dropped). The caller names the binary: the
//! operator's own integration tests pass `env!("CARGO_BIN_EXE_metaproxy-operator")`, which cargo
//! builds before them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub use crate::harness::eventually;
use crate::harness::{free_port, parse_http_response};
use metaproxy::route::RouteRecord;
use zookeeper_client as zkc;

pub struct Operator {
    child: Option<Child>,
    pub admin: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Operator {
    /// Starts the operator `binary` with `args` (the admin address is added) and `env`.
    pub fn start(
        binary: impl AsRef<Path>,
        args: &[String],
        env: &[(&str, String)],
    ) -> Result<Operator> {
        let bin = binary.as_ref();
        let dir = tempfile::Builder::new()
            .prefix("metaproxy-operator-")
            .tempdir()?;
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let log = dir.path().join("operator.log");
        let file = std::fs::File::create(&log)?;
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .arg("--admin-listen")
            .arg(admin.to_string())
            .env("METAPROXY_OPERATOR_LOG", "info,metaproxy_operator=debug")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().context("starting metaproxy-operator")?;
        Ok(Operator {
            child: Some(child),
            admin,
            log,
            _dir: dir,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET `path` on the admin port: (status code, body).
    pub fn get(&self, path: &str) -> Result<(u16, String)> {
        http_get(self.admin, path)
    }

    /// Waits until `/ready` answers 200.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok((200, _)) = self.get("/ready") {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("operator exited with {status}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("operator not ready after {timeout:?}:\n{}", self.log())
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let mut child = self.child.take().context("already stopped")?;
        let ok = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?
            .success();
        if !ok {
            bail!("kill -TERM failed");
        }
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if start.elapsed() > timeout {
                let _ = child.kill();
                bail!(
                    "operator did not stop within {timeout:?} after SIGTERM:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The value of a metric line `name` (exact series text, e.g. `x_total{op="create"}`).
    pub fn metric(&self, series: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics").ok()?;
        body.lines().find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A plain HTTP/1.0 GET on loopback.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    match parse_http_response(&text) {
        (0, _) => bail!("no status line from {addr}"),
        answer => Ok(answer),
    }
}

/// A znode's data and version; `None` when it is absent (or unreadable this time: callers poll).
pub async fn znode(zk: &zkc::Client, path: &str) -> Option<(Vec<u8>, i32)> {
    match zk.get_data(path).await {
        Ok((data, stat)) => Some((data, stat.version)),
        Err(zkc::Error::NoNode) => None,
        // A test client's reconnect is not the operator's problem.
        Err(e) => {
            eprintln!("reading {path}: {e}");
            None
        }
    }
}

/// Waits until the znode holds exactly what the operator writes for `record` owned by route
/// `owner` (`namespace/name`, or a route file's name); returns its version.
pub async fn wait_record(
    zk: &zkc::Client,
    path: &str,
    record: &RouteRecord,
    owner: &str,
    timeout: Duration,
) -> i32 {
    let want = metaproxy_operator::record::to_json(record, owner);
    eventually(
        timeout,
        &format!("{path} to hold {record} owned by {owner}"),
        async || {
            let (data, version) = znode(zk, path).await?;
            (data == want).then_some(version)
        },
    )
    .await
    .expect("znode written")
}
