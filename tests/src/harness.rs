//! What every harness shares: skipping a test whose component is absent, free loopback ports (and
//! starting a process again when its port was taken meanwhile), waiting for a condition, child
//! processes with their log, HTTP calls, and reading Prometheus metrics.
//!
//! A test that needs ZooKeeper, the API server or helm starts with `require!(ZOOKEEPER)`. Where
//! the component is missing it prints why and returns. With `METAPROXY_REQUIRE_ALL=1` (set by
//! `.ci/run`) a missing component fails the test instead: CI must skip nothing.
//!
//! Everything that waits is async and never blocks the runtime: the component under test usually
//! runs on the same (single-threaded) runtime as the test.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
pub use hyper::Method;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Something a test needs from the machine.
pub struct Component {
    pub name: &'static str,
    /// `Some(reason)` when the component cannot run here.
    pub unavailable: fn() -> Option<String>,
}

/// Whether a test needing `c` can go on; prints the reason when it cannot.
pub fn check(c: &Component) -> bool {
    match (c.unavailable)() {
        None => true,
        Some(why) if std::env::var_os("METAPROXY_REQUIRE_ALL").is_some_and(|v| v == "1") => {
            panic!(
                "{} is required (METAPROXY_REQUIRE_ALL=1) but unavailable: {why}",
                c.name
            )
        }
        Some(why) => {
            eprintln!(
                "SKIPPED: this test needs {}, which is unavailable: {why}",
                c.name
            );
            false
        }
    }
}

/// Returns from the test, with a message, unless every named component is available.
#[macro_export]
macro_rules! require {
    ($($component:expr),+ $(,)?) => {
        $( if !$crate::harness::check(&$component) { return; } )+
    };
}

// ---------------------------------------------------------------------------------------------
// Ports

/// A loopback port that was free a moment ago. Another process may take it before the one it was
/// picked for binds it: start such processes through [`start_on_free_ports`].
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// How many times [`start_on_free_ports`] tries before it gives up.
pub const PORT_ATTEMPTS: usize = 5;

/// What one attempt to start something on ports picked in advance came to.
#[derive(Debug)]
pub enum Started<T> {
    Up(T),
    /// A port was taken between picking and binding it; why we think so (a log line, say).
    PortTaken(String),
}

impl<T> Started<T> {
    /// What is up, changed by `f`; a taken port stays one.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Started<U> {
        match self {
            Started::Up(v) => Started::Up(f(v)),
            Started::PortTaken(why) => Started::PortTaken(why),
        }
    }
}

/// Runs `attempt`, which picks its ports with [`free_port`] each time it runs, until what it
/// starts is up: again (at most [`PORT_ATTEMPTS`] times in all) while a port turns out to be
/// taken. Any other error ends it at once.
pub async fn start_on_free_ports<T>(
    what: &str,
    mut attempt: impl AsyncFnMut() -> Result<Started<T>>,
) -> Result<T> {
    let mut clashes = Vec::new();
    for _ in 0..PORT_ATTEMPTS {
        match attempt().await? {
            Started::Up(v) => return Ok(v),
            Started::PortTaken(why) => clashes.push(why),
        }
    }
    bail!(
        "{what}: a port was taken on each of {PORT_ATTEMPTS} attempts:\n{}",
        clashes.join("\n")
    )
}

/// Whether a process's output says it could not bind an address in use (the wording of both the
/// JVM's `BindException` and Rust's `io::Error`).
pub fn says_port_taken(output: &str) -> bool {
    output.contains("Address already in use")
}

// ---------------------------------------------------------------------------------------------
// Waiting

/// How often [`eventually`] and [`try_eventually`] look again.
const POLL: Duration = Duration::from_millis(20);

/// Polls `f` until it returns `Some`, or fails after `timeout` saying what it waited for.
///
/// The deadline is wall-clock time, so a test on paused tokio time still gives real I/O its time.
pub async fn eventually<T>(
    timeout: Duration,
    what: &str,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> Result<T> {
    try_eventually(timeout, what, async || Ok(f().await)).await
}

/// [`eventually`] for a condition that can also fail for good (a process that exited, say): an
/// `Err` from `f` ends the wait at once with that error.
pub async fn try_eventually<T>(
    timeout: Duration,
    what: &str,
    mut f: impl AsyncFnMut() -> Result<Option<T>>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await.with_context(|| format!("waiting for {what}"))? {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Processes

/// A child process under test. Its stdout and stderr go to a log file (so a chatty child never
/// blocks on a full pipe, and a failure can show what it said); it is killed when dropped.
///
/// Nothing here blocks on the child, except [`Drop`] reaping it right after a SIGKILL.
pub struct Process {
    what: String,
    child: Child,
    log: PathBuf,
    /// Where this process's output starts in the log (earlier runs may have written to it).
    log_start: usize,
}

/// How long a process may take to exit after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);

impl Process {
    /// Starts `cmd` (stdin closed), appending its output to `log`. `what` names it in errors.
    pub fn spawn(what: &str, cmd: &mut Command, log: &Path) -> Result<Process> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let log_start = usize::try_from(file.metadata()?.len())?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        Ok(Process {
            what: what.to_owned(),
            child,
            log: log.to_owned(),
            log_start,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything this process wrote so far (not what earlier ones wrote to the same log).
    pub fn log(&self) -> String {
        let bytes = std::fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(bytes.get(self.log_start..).unwrap_or_default()).into_owned()
    }

    /// The last lines of [`Process::log`], for error messages.
    pub fn log_tail(&self) -> String {
        let text = self.log();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The exit status if the process has exited; never waits.
    pub fn exited(&mut self) -> Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Waits until `ready` holds. [`Started::PortTaken`] when the process exited first saying an
    /// address was in use; an error (with the log's tail) when it exited otherwise, or when
    /// `timeout` passed.
    pub async fn wait_ready(
        &mut self,
        timeout: Duration,
        mut ready: impl AsyncFnMut() -> bool,
    ) -> Result<Started<()>> {
        let what = format!("{} to be ready", self.what);
        try_eventually(timeout, &what, async || {
            if ready().await {
                return Ok(Some(Started::Up(())));
            }
            match self.exited()? {
                None => Ok(None),
                Some(_) if says_port_taken(&self.log()) => {
                    Ok(Some(Started::PortTaken(self.log_tail())))
                }
                Some(status) => bail!("{} exited with {status} during start-up", self.what),
            }
        })
        .await
        .with_context(|| {
            format!(
                "{} did not start; its log ends:\n{}",
                self.what,
                self.log_tail()
            )
        })
    }

    /// [`Process::wait_ready`] for a server whose admin port `admin` answers `GET /ready` with
    /// 200 once ready.
    pub async fn wait_http_ready(
        &mut self,
        admin: SocketAddr,
        timeout: Duration,
    ) -> Result<Started<()>> {
        self.wait_ready(timeout, async || {
            http_get(admin, "/ready")
                .await
                .is_ok_and(|r| r.status == 200)
        })
        .await
    }

    /// Waits for the process to exit, at most `timeout`.
    pub async fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let what = format!("{} to exit", self.what);
        try_eventually(timeout, &what, async || self.exited()).await
    }

    /// Sends SIGTERM and waits for the exit, at most `timeout`.
    pub async fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        sigterm(self.pid()).await?;
        self.wait(timeout).await
    }

    /// Sends SIGKILL (what a crash looks like to everyone else) and waits for the exit.
    pub async fn kill(&mut self) -> Result<ExitStatus> {
        self.child.kill()?;
        self.wait(KILL_WAIT).await
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends SIGTERM to `pid` (with `kill`: the workspace forbids `unsafe`, so no `libc::kill`).
pub async fn sigterm(pid: u32) -> Result<()> {
    let status = tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .context("running kill")?;
    if !status.success() {
        bail!("kill -TERM {pid}: {status}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// How long one HTTP exchange may take.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// What an HTTP server answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

impl HttpResponse {
    /// The body as JSON; `null` when it is empty.
    pub fn json(&self) -> Result<serde_json::Value> {
        if self.body.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_str(&self.body).with_context(|| format!("not JSON: {:?}", self.body))
    }
}

/// One HTTP/1.1 exchange with `addr`: `method path`, with `body` sent as JSON unless it is empty.
/// Each exchange has a connection of its own, closed afterwards, so a test never holds up a
/// server that drains its connections. An error when nothing answers within [`HTTP_TIMEOUT`].
pub async fn http(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: &str,
) -> Result<HttpResponse> {
    let target = format!("{method} http://{addr}{path}");
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http();
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if !body.is_empty() {
        request = request.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .with_context(|| target.clone())?;
    let exchange = async {
        let response = client.request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok::<_, anyhow::Error>(HttpResponse {
            status,
            body: String::from_utf8(body.to_vec())?,
        })
    };
    tokio::time::timeout(HTTP_TIMEOUT, exchange)
        .await
        .with_context(|| format!("{target}: no answer within {HTTP_TIMEOUT:?}"))?
        .with_context(|| target)
}

/// [`http`] with `GET` and no body.
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<HttpResponse> {
    http(addr, Method::GET, path, "").await
}

// ---------------------------------------------------------------------------------------------
// Metrics

/// The samples of a Prometheus (or OpenMetrics) text exposition, found by name and labels. A
/// series that is not there is an error, never a zero: a test must not pass because a metric was
/// renamed or never registered.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    samples: Vec<Sample>,
}

/// One line of the exposition: `name{label="value",...} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Metrics {
    /// Parses the text; any line that is neither a comment nor a sample is an error, and so is
    /// the same series twice.
    pub fn parse(text: &str) -> Result<Metrics> {
        let mut samples: Vec<Sample> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let sample =
                parse_sample(line).with_context(|| format!("metrics line {}: {line:?}", n + 1))?;
            if samples
                .iter()
                .any(|s| s.name == sample.name && s.labels == sample.labels)
            {
                bail!("metrics line {}: the series {line:?} appears twice", n + 1);
            }
            samples.push(sample);
        }
        Ok(Metrics { samples })
    }

    /// The value of the series `name` whose labels are exactly `labels` (in any order), if any.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == wanted)
            .map(|s| s.value)
    }

    /// [`Metrics::find`], failing the test when the series is missing; the message lists the
    /// series of that name there are.
    #[track_caller]
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.find(name, labels) {
            Some(v) => v,
            None => {
                let same_name: Vec<String> = self
                    .samples
                    .iter()
                    .filter(|s| s.name == name)
                    .map(|s| format!("{:?} = {}", s.labels, s.value))
                    .collect();
                panic!(
                    "no metric {name} with labels {labels:?}; the series named so: {same_name:?}"
                )
            }
        }
    }

    /// Every sample, in the order of the text.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }
}

/// `GET /metrics` on `addr`, parsed; an error unless it answers 200 with a valid exposition.
pub async fn scrape(addr: SocketAddr) -> Result<Metrics> {
    let response = http_get(addr, "/metrics").await?;
    if response.status != 200 {
        bail!("GET /metrics on {addr}: status {}", response.status);
    }
    Metrics::parse(&response.body)
}

fn parse_sample(line: &str) -> Result<Sample> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        bail!("no metric name");
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = parse_labels(after, &mut labels)?;
    }
    if !rest.starts_with([' ', '\t']) {
        bail!("no space before the value");
    }
    // A timestamp or an exemplar may follow the value.
    let value = rest.split_whitespace().next().context("no value")?;
    let value = value
        .parse()
        .with_context(|| format!("value {value:?} is not a number"))?;
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `key="value",...}` into `labels`; returns what follows the `}`.
fn parse_labels<'a>(mut s: &'a str, labels: &mut BTreeMap<String, String>) -> Result<&'a str> {
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Ok(after);
        }
        let eq = s.find('=').context("a label without '='")?;
        let key = s[..eq].trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("bad label name {key:?}");
        }
        s = s[eq + 1..]
            .trim_start()
            .strip_prefix('"')
            .with_context(|| format!("label {key}: the value is not quoted"))?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        loop {
            match chars.next() {
                Some((i, '"')) => {
                    s = &s[i + 1..];
                    break;
                }
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    other => bail!("label {key}: bad escape {other:?}"),
                },
                Some((_, c)) => value.push(c),
                None => bail!("label {key}: unterminated value"),
            }
        }
        if labels.insert(key.to_owned(), value).is_some() {
            bail!("label {key} twice");
        }
        s = s.trim_start();
        if let Some(after) = s.strip_prefix(',') {
            s = after;
        } else if !s.starts_with('}') {
            bail!("expected ',' or '}}' after label {key}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What prometheus-client writes, trimmed: HELP/TYPE comments, labels, a histogram, `# EOF`.
    const EXPOSITION: &str = r#"# HELP metaproxy_requests Requests by RPC and result.
# TYPE metaproxy_requests counter
metaproxy_requests_total{rpc="query_config",result="ok"} 3
metaproxy_requests_total{result="no_route",rpc="query_config"} 1
# TYPE metaproxy_connections gauge
metaproxy_connections 2
metaproxy_upstream_duration_seconds_bucket{le="0.005"} 0
metaproxy_upstream_duration_seconds_bucket{le="+Inf"} 4
metaproxy_upstream_duration_seconds_sum 0.25 1700000000
odd{path="a \"quoted\" \\ back\nslash"} NaN
# EOF
"#;

    #[test]
    fn series_are_found_by_name_and_exact_labels() {
        let m = Metrics::parse(EXPOSITION).expect("parses");
        assert_eq!(
            m.value(
                "metaproxy_requests_total",
                &[("rpc", "query_config"), ("result", "ok")]
            ),
            3.0
        );
        // Label order does not matter, in the text or in the query.
        assert_eq!(
            m.value(
                "metaproxy_requests_total",
                &[("result", "no_route"), ("rpc", "query_config")]
            ),
            1.0
        );
        assert_eq!(m.value("metaproxy_connections", &[]), 2.0);
        assert_eq!(
            m.value(
                "metaproxy_upstream_duration_seconds_bucket",
                &[("le", "+Inf")]
            ),
            4.0
        );
        assert_eq!(
            m.value("metaproxy_upstream_duration_seconds_sum", &[]),
            0.25
        );
        assert!(
            m.value("odd", &[("path", "a \"quoted\" \\ back\nslash")])
                .is_nan()
        );
        assert_eq!(m.samples().len(), 7);
    }

    #[test]
    fn a_missing_series_is_not_zero() {
        let m = Metrics::parse(EXPOSITION).expect("parses");
        assert_eq!(m.find("metaproxy_nothing_total", &[]), None);
        // A subset or a superset of the labels is another series.
        assert_eq!(
            m.find("metaproxy_requests_total", &[("rpc", "query_config")]),
            None
        );
        assert_eq!(
            m.find(
                "metaproxy_connections",
                &[("rpc", "query_config"), ("result", "ok")]
            ),
            None
        );
        let missing = std::panic::catch_unwind(|| m.value("metaproxy_requests_total", &[]));
        let message = *missing
            .expect_err("a missing series fails")
            .downcast::<String>()
            .expect("a message");
        assert!(
            message.contains("no metric metaproxy_requests_total")
                && message.contains("query_config"),
            "{message}"
        );
    }

    #[test]
    fn malformed_expositions_are_errors() {
        for bad in [
            "metaproxy_x",
            "metaproxy_x{a=\"1\"}",
            "metaproxy_x{a=1} 2",
            "metaproxy_x{a=\"1} 2",
            "metaproxy_x{a=\"1\" b=\"2\"} 2",
            "metaproxy_x{a=\"1\",a=\"2\"} 2",
            "metaproxy_x one",
            "{a=\"1\"} 2",
            "metaproxy_x 1\nmetaproxy_x 2",
        ] {
            assert!(Metrics::parse(bad).is_err(), "{bad:?} is refused");
        }
    }

    #[test]
    fn a_port_clash_is_recognised_in_java_and_rust_wording() {
        assert!(says_port_taken(
            "java.net.BindException: Address already in use"
        ));
        assert!(says_port_taken(
            "cannot listen on 127.0.0.1:1: Address already in use (os error 98)"
        ));
        assert!(!says_port_taken("Connection refused (os error 111)"));
    }

    #[tokio::test]
    async fn start_on_free_ports_retries_only_clashes() {
        let mut calls = 0;
        let port = start_on_free_ports("thing", async || {
            calls += 1;
            Ok(if calls < 3 {
                Started::PortTaken(format!("clash {calls}"))
            } else {
                Started::Up(calls)
            })
        })
        .await
        .expect("up on the third attempt");
        assert_eq!(port, 3);

        let err = start_on_free_ports("thing", async || {
            Ok(Started::<()>::PortTaken("clash".into()))
        })
        .await
        .expect_err("gives up");
        assert!(
            err.to_string()
                .contains(&format!("{PORT_ATTEMPTS} attempts")),
            "{err}"
        );

        let mut calls = 0;
        let err = start_on_free_ports("thing", async || -> Result<Started<()>> {
            calls += 1;
            bail!("broken")
        })
        .await
        .expect_err("fails at once");
        assert_eq!((calls, err.to_string()), (1, "broken".to_owned()));
    }

    #[tokio::test]
    async fn http_reports_status_and_body_and_an_absent_server_is_an_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new().route(
            "/echo",
            axum::routing::put(|body: String| async move {
                (axum::http::StatusCode::ACCEPTED, format!("got {body}"))
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });

        let put = http(addr, Method::PUT, "/echo", r#"{"a": 1}"#)
            .await
            .expect("answers");
        assert_eq!(
            put,
            HttpResponse {
                status: 202,
                body: r#"got {"a": 1}"#.into()
            }
        );
        let missing = http_get(addr, "/nothing").await.expect("answers");
        assert_eq!(
            (missing.status, missing.json().expect("empty")),
            (404, serde_json::Value::Null)
        );

        // Bound but not listening: the port stays ours and refuses connections.
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.1:0".parse().expect("addr"))
            .expect("bind");
        let closed = socket.local_addr().expect("addr");
        let err = http_get(closed, "/").await.expect_err("nothing listens");
        assert!(err.to_string().contains("GET http://127.0.0.1:"), "{err}");
    }

    #[tokio::test]
    async fn processes_tell_ready_from_a_port_clash_and_from_a_crash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("out.log");
        let sh = |script: &str| {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", script]);
            cmd
        };
        let wait = Duration::from_secs(10);

        let mut clash = Process::spawn(
            "clash",
            &mut sh("echo 'bind: Address already in use' >&2; exit 1"),
            &log,
        )
        .expect("spawns");
        let started = clash.wait_ready(wait, async || false).await.expect("exits");
        assert!(matches!(started, Started::PortTaken(ref why) if says_port_taken(why)));

        let mut crash =
            Process::spawn("crash", &mut sh("echo broken; exit 3"), &log).expect("spawns");
        let err = crash
            .wait_ready(wait, async || false)
            .await
            .expect_err("a crash is an error");
        assert!(
            format!("{err:#}").contains("crash exited with exit status: 3"),
            "{err:#}"
        );

        let mut sleeper =
            Process::spawn("sleeper", &mut sh("echo up; exec sleep 60"), &log).expect("spawns");
        let up = sleeper
            .wait_ready(wait, async || {
                std::fs::read_to_string(&log).is_ok_and(|l| l.contains("up"))
            })
            .await
            .expect("ready");
        assert!(matches!(up, Started::Up(())));
        let status = sleeper.terminate(wait).await.expect("stops");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(15),
            "ended by SIGTERM"
        );
        let pid = sleeper.pid();
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "reaped");
    }
}
