//! What every harness shares: free loopback ports, and skipping a test whose component is absent.
//!
//! A test that needs ZooKeeper, the API server or helm starts with `require!(ZOOKEEPER)`. Where
//! the component is missing it prints why and returns. With `METAPROXY_REQUIRE_ALL=1` (set by
//! `.ci/run`) a missing component fails the test instead: CI must skip nothing.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

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

/// A loopback port that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// Polls `f` until it returns `Some`, or fails after `timeout` saying what it waited for.
pub async fn eventually<T>(
    timeout: Duration,
    what: &str,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The status code and body of a raw HTTP/1.x response; status 0 when there is no status line.
pub fn parse_http_response(text: &str) -> (u16, String) {
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}
