//! Runs the real `metaproxy-operator` binary as a [`Process`]: on a free admin port (started
//! again on another when that port was taken meanwhile), ready once `/ready` answers 200, its log
//! kept in a file, stopped with SIGTERM (or killed when dropped). The caller names the binary:
//! the operator's own integration tests pass `env!("CARGO_BIN_EXE_metaproxy-operator")`, which
//! cargo builds before them.
//!
//! Talk to its admin port with [`crate::harness::http`] and read its metrics with
//! [`crate::harness::scrape`], both on [`Operator::admin`].

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::harness::{Process, eventually, free_port, start_on_free_ports};
use metaproxy::route::RouteRecord;
use zookeeper_client as zkc;

pub struct Operator {
    process: Process,
    pub admin: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Operator {
    /// Starts the operator `binary` with `args` (the admin address is added) and `env`, and
    /// waits until `/ready` answers 200, at most `timeout`. An error, with the log's tail, when
    /// it exits or does not get ready.
    pub async fn launch(
        binary: impl AsRef<Path>,
        args: &[String],
        env: &[(&str, String)],
        timeout: Duration,
    ) -> Result<Operator> {
        let bin = binary.as_ref();
        let dir = tempfile::Builder::new()
            .prefix("metaproxy-operator-")
            .tempdir()?;
        let log = dir.path().join("operator.log");
        let (process, admin) = start_on_free_ports("metaproxy-operator", async || {
            let admin = SocketAddr::from(([127, 0, 0, 1], free_port()?));
            let mut cmd = Command::new(bin);
            cmd.args(args)
                .arg("--admin-listen")
                .arg(admin.to_string())
                .env("METAPROXY_OPERATOR_LOG", "info,metaproxy_operator=debug");
            for (k, v) in env {
                cmd.env(k, v);
            }
            let mut process = Process::spawn("metaproxy-operator", &mut cmd, &log)?;
            let started = process.wait_http_ready(admin, timeout).await?;
            Ok(started.map(|()| (process, admin)))
        })
        .await?;
        Ok(Operator {
            process,
            admin,
            _dir: dir,
        })
    }

    /// [`Operator::launch`] in Kubernetes mode over `zone` as `identity`, with the Lease timings
    /// `lease` (`--lease-duration`, `--renew-deadline`, `--retry-period`), `extra` arguments, and
    /// the API server's `kubeconfig` in `KUBECONFIG`. Panics when it does not start: test support.
    pub async fn on_kubernetes(
        binary: impl AsRef<Path>,
        kubeconfig: &Path,
        (zone, identity): (&str, &str),
        [duration, renew, retry]: [&str; 3],
        extra: &[&str],
        timeout: Duration,
    ) -> Operator {
        let args: Vec<String> = [
            "--zone",
            zone,
            "--identity",
            identity,
            "--lease-duration",
            duration,
            "--renew-deadline",
            renew,
            "--retry-period",
            retry,
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect();
        Operator::launch(
            binary,
            &args,
            &[("KUBECONFIG", kubeconfig.display().to_string())],
            timeout,
        )
        .await
        .expect("the operator starts and gets ready")
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Sends SIGKILL (a crash, as everyone else sees it) and waits for the exit.
    pub async fn kill(&mut self) -> Result<ExitStatus> {
        self.process.kill().await
    }

    /// Sends SIGTERM and waits for the exit status, at most `timeout`; the error carries the
    /// log's tail.
    pub async fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let stopped = self.process.terminate(timeout).await;
        stopped.with_context(|| {
            format!(
                "metaproxy-operator did not stop within {timeout:?} of SIGTERM; its log ends:\n{}",
                self.process.log_tail()
            )
        })
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

/// Waits until the znode routes to `record` for route `owner`, whatever operator state it holds
/// beside the record (a switchover's phase, the fence it left); returns its version and that
/// state (`null` when there is none).
pub async fn wait_route(
    zk: &zkc::Client,
    path: &str,
    record: &RouteRecord,
    owner: &str,
    timeout: Duration,
) -> (i32, serde_json::Value) {
    eventually(
        timeout,
        &format!("{path} to route to {record} for {owner}"),
        async || {
            let (data, version) = znode(zk, path).await?;
            let routes = RouteRecord::parse(&data).ok()? == *record
                && metaproxy_operator::record::owner(&data).as_deref() == Some(owner);
            let json: serde_json::Value = serde_json::from_slice(&data).ok()?;
            routes.then(|| (version, json["state"].clone()))
        },
    )
    .await
    .expect("znode routes there")
}

/// Waits until the znode holds exactly what the operator writes for `record` owned by route
/// `owner` (`namespace/name`, or a route file's name), with no operator state beside it, and
/// whatever writer marker it carries (routes-directory mode marks its records); returns its
/// version.
pub async fn wait_record(
    zk: &zkc::Client,
    path: &str,
    record: &RouteRecord,
    owner: &str,
    timeout: Duration,
) -> i32 {
    use metaproxy_operator::record;
    let none = metaproxy_operator::reconcile::state::RouteState::default();
    eventually(
        timeout,
        &format!("{path} to hold {record} owned by {owner}"),
        async || {
            let (data, version) = znode(zk, path).await?;
            let marker = record::writer(&data);
            (data == record::with_state(record, owner, marker.as_deref(), &none)).then_some(version)
        },
    )
    .await
    .expect("znode written")
}
