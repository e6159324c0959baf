//! The `metaproxy` binary as an operator runs it: configuration precedence and refusal (exit 64
//! before binding anything), and draining on SIGTERM.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::*;
use metaproxy_tests::free_port;
use metaproxy_tests::harness::{Process, sigterm, start_on_free_ports};
use pegasus_rpc::codec::ErrorCode;

/// The binary under test: this build's, or the one `METAPROXY_BIN` names (to measure a release
/// build, or an older one, with the same tests).
fn bin() -> std::path::PathBuf {
    std::env::var_os("METAPROXY_BIN")
        .filter(|b| !b.is_empty())
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_metaproxy").into())
}

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run metaproxy");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_invalid_configuration_exits_64_with_one_line_before_binding() {
    let port = free_port().expect("port");
    let listen = format!("127.0.0.1:{port}");
    let cases: &[&[&str]] = &[
        &[
            "--listen",
            &listen,
            "--zk",
            "not-an-address",
            "--zk-root",
            "/m",
        ],
        &["--listen", &listen, "--zk", "127.0.0.1:2181"],
        &["--listen", &listen],
        &["--listen", &listen, "--routes", "/nonexistent.yaml"],
        &[
            "--listen",
            &listen,
            "--zk",
            "127.0.0.1:2181",
            "--zk-root",
            "/m",
            "--no-such-flag",
        ],
        &[
            "--listen",
            &listen,
            "--config",
            "/nonexistent/metaproxy.yaml",
        ],
    ];
    for args in cases {
        let (code, _, stderr) = run(args, &[]);
        assert_eq!(code, 64, "{args:?}: {stderr}");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{args:?}: one line: {stderr}"
        );
        assert!(
            stderr.starts_with("metaproxy: invalid configuration: "),
            "{stderr}"
        );
        std::net::TcpListener::bind(&listen).expect("the port was never bound");
    }
}

#[test]
fn flags_override_environment_override_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("metaproxy.yaml");
    std::fs::write(&config, "listen: 127.0.0.1:1001\nadmin-listen: 127.0.0.1:2001\nzk: 127.0.0.1:2181\nzk-root: /from-file\n")
        .expect("write");
    let config = config.to_str().expect("utf8");
    let env = [
        ("METAPROXY_LISTEN", "127.0.0.1:1002"),
        ("METAPROXY_ZK_ROOT", "/from-env"),
    ];

    let (code, stdout, stderr) = run(&["--check-config", "--config", config], &env);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("configuration OK"), "{stdout}");
    assert!(
        stdout.contains("\"listen\":\"127.0.0.1:1002\""),
        "env over file: {stdout}"
    );
    assert!(
        stdout.contains("\"admin-listen\":\"127.0.0.1:2001\""),
        "file fills in: {stdout}"
    );
    assert!(stdout.contains("\"root\":\"/from-env\""), "{stdout}");

    let (code, stdout, _) = run(
        &[
            "--check-config",
            "--config",
            config,
            "--listen",
            "127.0.0.1:1003",
        ],
        &env,
    );
    assert_eq!(code, 0);
    assert!(
        stdout.contains("\"listen\":\"127.0.0.1:1003\""),
        "flag over env: {stdout}"
    );

    // The same file path through the environment, and a bad value there.
    let (code, _, stderr) = run(
        &["--check-config"],
        &[
            ("METAPROXY_CONFIG", config),
            ("METAPROXY_HEDGE_AFTER", "soon"),
        ],
    );
    assert_eq!(code, 64);
    assert!(stderr.contains("hedge-after"), "{stderr}");
}

/// A `metaproxy` process on free loopback ports, serving `routes` with `args` besides, once
/// ready; its output goes to `log`.
async fn spawn_proxy(
    routes: &RoutesFile,
    args: &[&str],
    log: &std::path::Path,
) -> (Process, SocketAddr, SocketAddr) {
    start_on_free_ports("metaproxy", async || {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut cmd = Command::new(bin());
        cmd.args(["--listen", &addr.to_string()])
            .args(["--admin-listen", &admin.to_string()])
            .arg("--routes")
            .arg(&routes.path)
            .args(args);
        let mut proxy = Process::spawn("metaproxy", &mut cmd, log)?;
        let ready = proxy
            .wait_ready(WAIT, async || {
                http_get(admin, "/ready")
                    .await
                    .is_ok_and(|r| r.status == 200)
            })
            .await?;
        Ok(ready.map(|()| (proxy, addr, admin)))
    })
    .await
    .expect("metaproxy starts")
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_exits_0() {
    let sim = sim(1, vec![capture_table()]).await;
    sim.set_delay(0, Duration::from_millis(1500))
        .expect("delay");
    let routes = RoutesFile::new(&[("temp", &record("c1", &sim))]);
    let logs = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("metaproxy.log");
    let (mut proxy, addr, admin) = spawn_proxy(
        &routes,
        &[
            "--shutdown-grace",
            "10s",
            "--upstream-timeout",
            "5s",
            "--upstream-attempt-timeout",
            "5s",
            "--hedge-after",
            "off",
        ],
        &log,
    )
    .await;

    let mut client = Client::connect(addr).await;
    client.send(&query_frame("temp", 42)).await;
    eventually("the query reached the cluster", || async {
        sim.counters().by_table.get("temp") == Some(&1)
    })
    .await;

    sigterm(proxy.pid()).await.expect("SIGTERM sent");
    eventually("not ready while draining", || async {
        http_get(admin, "/ready")
            .await
            .is_ok_and(|r| r.status == 503)
    })
    .await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no new connections while draining"
    );
    let reply = client.reply().await;
    assert_eq!(reply.seqid(), 42, "the request in flight is answered");
    let resp = pegasus_rpc::codec::QueryCfgResponse::from_result(&reply.body).expect("response");
    assert_eq!(resp.err, ErrorCode::OK);

    let status = proxy.wait(WAIT).await.expect("exits in time");
    assert_eq!(
        status.code(),
        Some(0),
        "exit 0 after draining:\n{}",
        proxy.log_tail()
    );
}

/// What a pipelining client got from a `metaproxy` process that was sent SIGTERM while the
/// client's burst was arriving.
#[derive(Debug)]
struct BurstOutcome {
    sent: usize,
    received: usize,
    /// Whether the seqids received are `0..received`, each once.
    prefix: bool,
    end: End,
    /// Requests the proxy answered and replies it dropped, from its metrics once the client has
    /// its last reply (`None` when the admin port was gone by then).
    answered: Option<f64>,
    dropped: Option<f64>,
    exit: Option<i32>,
}

/// Sends `requests` pipelined queries to a fresh proxy process whose cluster answers after
/// `delay`, then SIGTERM once the cluster has been asked, and only then reads the replies.
async fn sigterm_during_a_burst(requests: usize, delay: Duration) -> BurstOutcome {
    let sim = sim(1, vec![table("temp", 3, 32)]).await;
    sim.set_delay(0, delay).expect("delay");
    let routes = RoutesFile::new(&[("temp", &record("c1", &sim))]);
    let logs = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("metaproxy.log");
    let (mut proxy, addr, admin) = spawn_proxy(
        &routes,
        &[
            "--shutdown-grace",
            "20s",
            "--upstream-timeout",
            "10s",
            "--upstream-attempt-timeout",
            "10s",
            "--hedge-after",
            "off",
        ],
        &log,
    )
    .await;
    let (mut read, mut write) = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect")
        .into_split();
    let bytes = burst("temp", requests);
    let writer = tokio::spawn(async move {
        let _ = tokio::io::AsyncWriteExt::write_all(&mut write, &bytes).await;
        write
    });
    eventually("the burst reached the cluster", || async {
        sim.counters().by_table.contains_key("temp")
    })
    .await;
    sigterm(proxy.pid()).await.expect("SIGTERM sent");
    let (mut seqids, end) = read_replies(&mut read, WAIT).await;
    let metrics = scrape(admin).await.ok();
    drop(read);
    drop(writer.await.expect("writer"));
    let exit = proxy.wait(WAIT).await.ok().and_then(|s| s.code());
    let received = seqids.len();
    seqids.sort_unstable();
    BurstOutcome {
        sent: requests,
        received,
        prefix: seqids == (0..received as i32).collect::<Vec<_>>(),
        end,
        answered: metrics.as_ref().map(answered),
        dropped: metrics
            .as_ref()
            .and_then(|m| m.find("metaproxy_replies_dropped_total", &[])),
        exit,
    }
}

/// SIGTERM while pipelined bursts arrive: every request the proxy read is answered, the client
/// then reads an orderly close, and the process exits 0.
#[tokio::test]
async fn sigterm_answers_every_request_read_from_a_burst() {
    let mut outcomes = Vec::new();
    for (requests, delay) in [
        (2_000, Duration::from_millis(300)),
        (20_000, Duration::ZERO),
    ] {
        let outcome = sigterm_during_a_burst(requests, delay).await;
        eprintln!("{requests} pipelined, upstream delay {delay:?}: {outcome:?}");
        outcomes.push(outcome);
    }
    for o in outcomes {
        assert_eq!(o.end, End::Eof, "{o:?}");
        assert!(o.prefix, "{o:?}");
        assert_eq!(Some(o.received as f64), o.answered, "{o:?}");
        assert_eq!(o.dropped, Some(0.0), "{o:?}");
        assert!(o.received > 0 && o.received < o.sent, "{o:?}");
        assert_eq!(o.exit, Some(0), "{o:?}");
    }
}
