//! Observers: the proxy sets (one per zone) that report what their real traffic saw of each
//! cluster, at `GET /clusters` on their admin port. The operator asks them before an automatic
//! failover, so that losing its own path to a healthy primary does not move the table
//! ([`crate::reconcile::failover`]).
//!
//! ```text
//!  --observer az1=http://metaproxy-az1-admin:34602
//!     GET http://metaproxy-az1-admin:34602/clusters   (deadline 2 s)
//!     {"clusters": [{"cluster": "c1", "consecutive_failures": 3,
//!                    "last_success_seconds_ago": 41.2, "last_error_seconds_ago": 0.4, ...}]}
//!     ──► per cluster: Seen { failures in a row, ages } | NotListed | Unreachable
//! ```
//!
//! Ages are the proxy's own (monotonic) and are aged further by the time since the answer, so
//! clocks need not agree. Only plain HTTP is spoken (the admin ports are inside the cluster).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use tokio::time::Instant;

use crate::reconcile::failover::Observed;

/// How long an observer has to answer.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest `/clusters` answer read.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// A proxy set asked for its view: `ZONE=URL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observer {
    pub zone: String,
    /// `http://host:port`, with a path prefix if any, without a trailing `/`.
    pub url: String,
}

impl Observer {
    /// Parses `ZONE=http://host:port[/prefix]`.
    pub fn parse(text: &str) -> Result<Observer, String> {
        let (zone, url) = text
            .split_once('=')
            .ok_or_else(|| format!("{text:?}: expected ZONE=http://HOST:PORT"))?;
        let zone = zone.trim();
        if zone.is_empty() || zone.len() > 63 || zone.chars().any(char::is_whitespace) {
            return Err(format!("{text:?}: the zone is not a name"));
        }
        let url = url.trim().trim_end_matches('/');
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("{text:?}: {url:?} is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(format!(
                    "{text:?}: https is not supported; observers are asked over plain HTTP"
                ));
            }
            _ => return Err(format!("{text:?}: expected an http:// URL")),
        }
        if uri.authority().is_none_or(|a| a.port_u16().is_none()) {
            return Err(format!("{text:?}: the URL needs a host and a port"));
        }
        if uri.query().is_some() {
            return Err(format!("{text:?}: the URL must not have a query"));
        }
        Ok(Observer {
            zone: zone.to_owned(),
            url: url.to_owned(),
        })
    }
}

impl std::fmt::Display for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.zone, self.url)
    }
}

/// One row of `GET /clusters`, the fields votes need.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ClusterRow {
    pub cluster: String,
    #[serde(default)]
    pub consecutive_failures: u64,
    #[serde(default)]
    pub last_success_seconds_ago: Option<f64>,
    #[serde(default)]
    pub last_error_seconds_ago: Option<f64>,
}

#[derive(Deserialize)]
struct ClustersBody {
    clusters: Vec<ClusterRow>,
}

/// One observer's last answer.
#[derive(Clone, Debug)]
pub struct View {
    pub fetched_at: Instant,
    pub rows: Result<Vec<ClusterRow>, String>,
}

impl View {
    /// What this answer says of `cluster`, aged to `now`.
    pub fn observed(&self, cluster: &str, now: Instant) -> Observed {
        let rows = match &self.rows {
            Ok(rows) => rows,
            Err(e) => return Observed::Unreachable(e.clone()),
        };
        let Some(row) = rows.iter().find(|r| r.cluster == cluster) else {
            return Observed::NotListed;
        };
        let age = now.saturating_duration_since(self.fetched_at);
        let ago = |s: Option<f64>| {
            s.filter(|s| s.is_finite() && *s >= 0.0)
                .map(|s| Duration::from_secs_f64(s.min(1e9)) + age)
        };
        Observed::Seen {
            consecutive_failures: row.consecutive_failures,
            last_success_ago: ago(row.last_success_seconds_ago),
            last_error_ago: ago(row.last_error_seconds_ago),
        }
    }
}

/// Asks observers for their view.
#[derive(Clone)]
pub struct ObserverClient {
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Default for ObserverClient {
    fn default() -> Self {
        ObserverClient {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }
}

impl ObserverClient {
    /// `GET /clusters` of `observer`, within [`FETCH_TIMEOUT`].
    pub async fn fetch(&self, observer: &Observer) -> View {
        let fetched_at = Instant::now();
        let rows = match tokio::time::timeout(FETCH_TIMEOUT, self.get(observer)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {FETCH_TIMEOUT:?}")),
        };
        View { fetched_at, rows }
    }

    async fn get(&self, observer: &Observer) -> Result<Vec<ClusterRow>, String> {
        let uri: http::Uri = format!("{}/clusters", observer.url)
            .parse()
            .map_err(|e| format!("{e}"))?;
        let response = self.client.get(uri).await.map_err(|e| {
            // The legacy client's error names its kind only; the cause says what happened.
            match std::error::Error::source(&e) {
                Some(cause) => format!("{e}: {cause}"),
                None => e.to_string(),
            }
        })?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("answered {status}"));
        }
        let parsed: ClustersBody = serde_json::from_slice(&body)
            .map_err(|e| format!("the answer is not a /clusters view: {e}"))?;
        Ok(parsed.clusters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observers_are_zone_and_http_url() {
        let o = Observer::parse("az1=http://metaproxy-az1-admin.pegasus.svc:34602/").expect("ok");
        assert_eq!(o.zone, "az1");
        assert_eq!(o.url, "http://metaproxy-az1-admin.pegasus.svc:34602");
        assert_eq!(
            Observer::parse("az2=http://127.0.0.1:9/admin")
                .expect("ok")
                .url,
            "http://127.0.0.1:9/admin"
        );
        for (bad, why) in [
            ("az1", "expected ZONE="),
            ("=http://h:1", "not a name"),
            ("az1=https://h:1", "https is not supported"),
            ("az1=h:1", "expected an http:// URL"),
            ("az1=http://h", "needs a host and a port"),
            ("az1=http://h:1/?x=1", "must not have a query"),
            ("az1=http://h:1:2", "not a URL"),
        ] {
            let err = Observer::parse(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_view_is_aged_to_now() {
        let view = View {
            fetched_at: Instant::now(),
            rows: Ok(vec![ClusterRow {
                cluster: "c1".into(),
                consecutive_failures: 4,
                last_success_seconds_ago: Some(40.0),
                last_error_seconds_ago: Some(0.5),
            }]),
        };
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            view.observed("c1", Instant::now()),
            Observed::Seen {
                consecutive_failures: 4,
                last_success_ago: Some(Duration::from_secs(42)),
                last_error_ago: Some(Duration::from_millis(2500)),
            }
        );
        assert_eq!(view.observed("c9", Instant::now()), Observed::NotListed);
        let down = View {
            fetched_at: Instant::now(),
            rows: Err("refused".into()),
        };
        assert_eq!(
            down.observed("c1", Instant::now()),
            Observed::Unreachable("refused".into())
        );
    }
}
