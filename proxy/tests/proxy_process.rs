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

const BIN: &str = env!("CARGO_BIN_EXE_metaproxy");

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
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

#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_exits_0() {
    let sim = sim(1, vec![capture_table()]).await;
    sim.set_delay(0, Duration::from_millis(1500))
        .expect("delay");
    let routes = RoutesFile::new(&[("temp", &record("c1", &sim))]);
    let logs = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("metaproxy.log");
    let (mut proxy, addr, admin) = start_on_free_ports("metaproxy", async || {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut cmd = Command::new(BIN);
        cmd.args(["--listen", &addr.to_string()])
            .args(["--admin-listen", &admin.to_string()])
            .arg("--routes")
            .arg(&routes.path)
            .args([
                "--shutdown-grace",
                "10s",
                "--upstream-timeout",
                "5s",
                "--upstream-attempt-timeout",
                "5s",
                "--hedge-after",
                "off",
            ]);
        let mut proxy = Process::spawn("metaproxy", &mut cmd, &log)?;
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
    .expect("metaproxy starts");

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
