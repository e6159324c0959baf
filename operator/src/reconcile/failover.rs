//! Automatic failover: whether a route's primary has failed. Pure; every rule is a row of
//! `fixtures/failover.yaml`.
//!
//! ```text
//!  primary's probes ──► failed `failureThreshold` times in a row, over (threshold - 1) intervals?
//!  last flip        ──► outside the cooldown?
//!  backup's probes  ──► its last probe succeeded?
//!  observers        ──► at least `quorum` of them see the primary down?   (none configured: skip)
//!                       ──► FailOver, with the evidence
//! ```
//!
//! An operator can lose its own path to a healthy primary; it must not move every table then.
//! Observers are the proxy sets (one per zone), which report what their real traffic saw of each
//! cluster (`GET /clusters`). Over the window (`failureThreshold x probeInterval`) an observer
//! votes `Down` when its last call to the cluster failed, a failure is in the window and no
//! success is; `Up` when a success is in the window; and abstains when it cannot be reached or
//! saw no call in the window (clients only ask a proxy again when something goes wrong, so a
//! quiet zone has nothing to say). The quorum (default: a majority of the configured observers)
//! counts `Down` votes, as Redis Sentinel does: abstentions never make a quorum.
//!
//! The probe history is the operator's memory, not the znode's: an operator that starts (or
//! starts leading) watches a whole window before it fails anything over.

use std::time::Duration;

use tokio::time::Instant;

use crate::reconcile::state::VoteCount;

/// The route's failover settings, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub probe_interval: Duration,
    pub failure_threshold: u32,
    pub cooldown: Duration,
    /// Down votes needed; `None`: a majority of the configured observers.
    pub quorum: Option<u32>,
}

impl Policy {
    /// The span observers look back over: `failureThreshold x probeInterval`.
    pub fn window(&self) -> Duration {
        self.probe_interval
            .saturating_mul(self.failure_threshold.max(1))
    }
}

/// A cluster's probes, as [`crate::probe`] keeps them: enough to judge a window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Probes {
    pub probes: u64,
    pub consecutive_failures: u32,
    /// When the first failed probe of the current streak started.
    pub failing_since: Option<Instant>,
    /// When the last probe started.
    pub last_probe: Option<Instant>,
    pub last_success: Option<Instant>,
    pub last_error: Option<String>,
    /// When the probes last went from succeeding to failing or back (ms since the epoch).
    pub changed_at_ms: Option<i64>,
}

impl Probes {
    /// Adds a probe that started at `started` (`started_ms` on the wall clock).
    pub fn record(&mut self, started: Instant, started_ms: i64, outcome: Result<(), String>) {
        let was = self.healthy();
        self.probes += 1;
        self.last_probe = Some(started);
        match outcome {
            Ok(()) => {
                self.consecutive_failures = 0;
                self.failing_since = None;
                self.last_success = Some(started);
            }
            Err(e) => {
                if self.consecutive_failures == 0 {
                    self.failing_since = Some(started);
                }
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.last_error = Some(e);
            }
        }
        if was != self.healthy() {
            self.changed_at_ms = Some(started_ms);
        }
    }

    /// Whether the last probe succeeded; `None` before the first.
    pub fn healthy(&self) -> Option<bool> {
        (self.probes > 0).then_some(self.consecutive_failures == 0)
    }
}

/// What an observer's `GET /clusters` says of one cluster, aged to now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    /// No answer (or an answer that does not parse).
    Unreachable(String),
    /// The cluster is not listed: no traffic to it lately.
    NotListed,
    Seen {
        consecutive_failures: u64,
        last_success_ago: Option<Duration>,
        last_error_ago: Option<Duration>,
    },
}

/// An observer's vote on a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Vote {
    Down(String),
    Up(String),
    Abstain(String),
}

impl Vote {
    pub fn name(&self) -> &'static str {
        match self {
            Vote::Down(_) => "Down",
            Vote::Up(_) => "Up",
            Vote::Abstain(_) => "Abstain",
        }
    }

    pub fn detail(&self) -> &str {
        match self {
            Vote::Down(d) | Vote::Up(d) | Vote::Abstain(d) => d,
        }
    }
}

fn secs(d: Duration) -> String {
    metaproxy::startup::format_duration(Duration::from_secs(d.as_secs()))
}

/// An observer's vote, from what it saw, over `window`.
pub fn vote(observed: &Observed, window: Duration) -> Vote {
    match observed {
        Observed::Unreachable(e) => Vote::Abstain(format!("unreachable: {e}")),
        Observed::NotListed => Vote::Abstain("no traffic to the cluster".into()),
        Observed::Seen {
            consecutive_failures,
            last_success_ago,
            last_error_ago,
        } => {
            if let Some(ago) = last_success_ago.filter(|a| *a <= window) {
                Vote::Up(format!("a call succeeded {} ago", secs(ago)))
            } else if let Some(ago) = last_error_ago.filter(|a| *a <= window)
                && *consecutive_failures > 0
            {
                Vote::Down(format!(
                    "{consecutive_failures} calls failed in a row, the last {} ago; no success within {}",
                    secs(ago),
                    secs(window)
                ))
            } else {
                Vote::Abstain(format!("no call within {}", secs(window)))
            }
        }
    }
}

/// The observers' votes on a cluster, counted against the quorum.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Votes {
    /// By zone, in the observers' order.
    pub votes: Vec<(String, Vote)>,
    pub quorum: u32,
}

impl Votes {
    /// `observers` are each observer's zone and view of the cluster.
    pub fn count(observers: &[(String, Observed)], quorum: Option<u32>, window: Duration) -> Self {
        let configured = u32::try_from(observers.len()).unwrap_or(u32::MAX);
        Votes {
            votes: observers
                .iter()
                .map(|(zone, seen)| (zone.clone(), vote(seen, window)))
                .collect(),
            quorum: quorum.unwrap_or(configured / 2 + 1),
        }
    }

    pub fn summary(&self) -> VoteCount {
        let n = |name: &str| {
            let k = self.votes.iter().filter(|(_, v)| v.name() == name).count();
            u32::try_from(k).unwrap_or(u32::MAX)
        };
        VoteCount {
            configured: u32::try_from(self.votes.len()).unwrap_or(u32::MAX),
            quorum: self.quorum,
            down: n("Down"),
            up: n("Up"),
            abstained: n("Abstain"),
        }
    }

    pub fn reached(&self) -> bool {
        self.summary().down >= self.quorum
    }

    /// One line: `2 of 3 observers see it down (quorum 2); az3 abstains: unreachable`.
    pub fn describe(&self) -> String {
        let c = self.summary();
        let mut out = format!(
            "{} down, {} up, {} abstaining of {} observers (quorum {})",
            c.down, c.up, c.abstained, c.configured, c.quorum
        );
        for (zone, v) in &self.votes {
            out.push_str(&format!("; {zone} {}: {}", v.name(), v.detail()));
        }
        out
    }
}

/// Everything the verdict looks at.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    pub policy: &'a Policy,
    /// `None`: not probed since this operator started leading.
    pub primary: Option<&'a Probes>,
    pub backup: Option<&'a Probes>,
    /// Each configured observer's zone and what it saw of the primary.
    pub observers: &'a [(String, Observed)],
    /// When the record last moved (ms), for the cooldown.
    pub last_flip_ms: Option<i64>,
    pub now: Instant,
    pub now_ms: i64,
}

/// What automatic failover makes of a route whose record routes to its primary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The primary's last probe succeeded.
    PrimaryHealthy,
    /// The primary has not been probed yet (since this operator started leading).
    NotProbed,
    /// The primary's probes fail, for less than the whole window so far.
    PrimaryFailing { failures: u32 },
    /// The primary has failed for the window, and the last flip is too recent.
    CoolingDown { remaining: Duration },
    /// The primary has failed for the window; the backup is not known healthy.
    BackupUnhealthy { reason: String },
    /// The primary has failed for the window, but too few observers agree.
    NoQuorum { votes: Votes },
    /// Fail over.
    FailOver {
        failures: u32,
        /// `None` without observers.
        votes: Option<Votes>,
    },
}

impl Verdict {
    /// A CamelCase reason for the status.
    pub fn reason(&self) -> &'static str {
        match self {
            Verdict::PrimaryHealthy => "PrimaryHealthy",
            Verdict::NotProbed => "NotProbedYet",
            Verdict::PrimaryFailing { .. } => "PrimaryFailing",
            Verdict::CoolingDown { .. } => "CoolingDown",
            Verdict::BackupUnhealthy { .. } => "BackupUnhealthy",
            Verdict::NoQuorum { .. } => "NoQuorum",
            Verdict::FailOver { .. } => "FailingOver",
        }
    }

    /// The votes this verdict counted, if it got that far.
    pub fn votes(&self) -> Option<&Votes> {
        match self {
            Verdict::NoQuorum { votes } => Some(votes),
            Verdict::FailOver { votes, .. } => votes.as_ref(),
            _ => None,
        }
    }
}

/// Whether to fail the primary over now.
pub fn verdict(i: &Inputs<'_>) -> Verdict {
    let policy = i.policy;
    let Some(primary) = i.primary.filter(|p| p.probes > 0) else {
        return Verdict::NotProbed;
    };
    let failures = primary.consecutive_failures;
    if failures == 0 {
        return Verdict::PrimaryHealthy;
    }
    // The streak must span the route's own window, not only count its probes: a cluster that
    // another route probes more often reaches the count sooner. A twentieth of an interval of
    // slack absorbs scheduling jitter.
    let needed_span = policy
        .probe_interval
        .saturating_mul(policy.failure_threshold.saturating_sub(1));
    let span = match (primary.failing_since, primary.last_probe) {
        (Some(first), Some(last)) => last.saturating_duration_since(first),
        _ => Duration::ZERO,
    };
    if failures < policy.failure_threshold || span + policy.probe_interval / 20 < needed_span {
        return Verdict::PrimaryFailing { failures };
    }
    if let Some(flip) = i.last_flip_ms {
        let since = Duration::from_millis(u64::try_from(i.now_ms - flip).unwrap_or(0));
        if since < policy.cooldown {
            return Verdict::CoolingDown {
                remaining: policy.cooldown - since,
            };
        }
    }
    match i.backup.and_then(Probes::healthy) {
        Some(true) => {}
        Some(false) => {
            let b = i.backup.cloned().unwrap_or_default();
            return Verdict::BackupUnhealthy {
                reason: format!(
                    "{} failed probes in a row: {}",
                    b.consecutive_failures,
                    b.last_error.unwrap_or_default()
                ),
            };
        }
        None => {
            return Verdict::BackupUnhealthy {
                reason: "not probed yet".into(),
            };
        }
    }
    if i.observers.is_empty() {
        return Verdict::FailOver {
            failures,
            votes: None,
        };
    }
    let votes = Votes::count(i.observers, policy.quorum, policy.window());
    if votes.reached() {
        Verdict::FailOver {
            failures,
            votes: Some(votes),
        }
    } else {
        Verdict::NoQuorum { votes }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    /// One row of `fixtures/failover.yaml`.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Case {
        name: String,
        #[serde(default)]
        policy: PolicyFixture,
        /// The primary's probes: `[start second, ok | "error text"]`, oldest first. Absent: never
        /// probed.
        #[serde(default)]
        primary: Option<Vec<(u64, ProbeResult)>>,
        #[serde(default)]
        backup: Option<Vec<(u64, ProbeResult)>>,
        #[serde(default)]
        observers: Vec<ObserverFixture>,
        /// The last flip, in seconds on the same clock (may be negative: before the start).
        #[serde(default)]
        last_flip: Option<i64>,
        /// Now, in seconds.
        now: u64,
        expect: String,
        #[serde(default)]
        expect_votes: Option<(u32, u32, u32, u32)>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct PolicyFixture {
        #[serde(default = "five")]
        probe_interval_secs: u64,
        #[serde(default = "six")]
        failure_threshold: u32,
        #[serde(default = "ten_minutes")]
        cooldown_secs: u64,
        #[serde(default)]
        quorum: Option<u32>,
    }

    fn five() -> u64 {
        5
    }
    fn six() -> u32 {
        6
    }
    fn ten_minutes() -> u64 {
        600
    }

    impl Default for PolicyFixture {
        fn default() -> Self {
            PolicyFixture {
                probe_interval_secs: 5,
                failure_threshold: 6,
                cooldown_secs: 600,
                quorum: None,
            }
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ProbeResult {
        Ok(bool),
        Err(String),
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct ObserverFixture {
        zone: String,
        #[serde(default)]
        unreachable: Option<String>,
        #[serde(default)]
        not_listed: bool,
        #[serde(default)]
        consecutive_failures: u64,
        #[serde(default)]
        success_ago: Option<u64>,
        #[serde(default)]
        error_ago: Option<u64>,
    }

    impl ObserverFixture {
        fn observed(&self) -> Observed {
            if let Some(e) = &self.unreachable {
                Observed::Unreachable(e.clone())
            } else if self.not_listed {
                Observed::NotListed
            } else {
                Observed::Seen {
                    consecutive_failures: self.consecutive_failures,
                    last_success_ago: self.success_ago.map(Duration::from_secs),
                    last_error_ago: self.error_ago.map(Duration::from_secs),
                }
            }
        }
    }

    fn history(base: Instant, probes: &[(u64, ProbeResult)]) -> Probes {
        let mut p = Probes::default();
        for (t, result) in probes {
            let outcome = match result {
                ProbeResult::Ok(true) => Ok(()),
                ProbeResult::Ok(false) => Err("failed".to_owned()),
                ProbeResult::Err(e) => Err(e.clone()),
            };
            p.record(
                base + Duration::from_secs(*t),
                i64::try_from(*t).unwrap_or(0) * 1000,
                outcome,
            );
        }
        p
    }

    #[test]
    fn failover_fixtures() {
        let cases: Vec<Case> =
            serde_saphyr::from_str(include_str!("fixtures/failover.yaml")).expect("fixtures parse");
        assert!(cases.len() >= 20, "the fixture file lost its cases");
        let base = Instant::now();
        for case in cases {
            let policy = Policy {
                probe_interval: Duration::from_secs(case.policy.probe_interval_secs),
                failure_threshold: case.policy.failure_threshold,
                cooldown: Duration::from_secs(case.policy.cooldown_secs),
                quorum: case.policy.quorum,
            };
            let primary = case.primary.as_ref().map(|h| history(base, h));
            let backup = case.backup.as_ref().map(|h| history(base, h));
            let observers: Vec<(String, Observed)> = case
                .observers
                .iter()
                .map(|o| (o.zone.clone(), o.observed()))
                .collect();
            let got = verdict(&Inputs {
                policy: &policy,
                primary: primary.as_ref(),
                backup: backup.as_ref(),
                observers: &observers,
                last_flip_ms: case.last_flip.map(|s| s * 1000),
                now: base + Duration::from_secs(case.now),
                now_ms: i64::try_from(case.now).unwrap_or(0) * 1000,
            });
            assert_eq!(got.reason(), case.expect, "{}: {got:?}", case.name);
            if let Some((down, up, abstained, quorum)) = case.expect_votes {
                let c = got.votes().expect("votes counted").summary();
                assert_eq!(
                    (c.down, c.up, c.abstained, c.quorum),
                    (down, up, abstained, quorum),
                    "{}: {got:?}",
                    case.name
                );
            }
        }
    }

    #[test]
    fn probes_remember_the_streak_and_its_turns() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut p = Probes::default();
        assert_eq!(p.healthy(), None);
        p.record(t0, 0, Ok(()));
        assert_eq!((p.healthy(), p.changed_at_ms), (Some(true), Some(0)));
        p.record(t0 + s(5), 5000, Err("refused".into()));
        p.record(t0 + s(10), 10_000, Err("timeout".into()));
        assert_eq!(p.consecutive_failures, 2);
        assert_eq!(p.failing_since, Some(t0 + s(5)));
        assert_eq!(p.changed_at_ms, Some(5000));
        assert_eq!(p.last_error.as_deref(), Some("timeout"));
        p.record(t0 + s(15), 15_000, Ok(()));
        assert_eq!((p.consecutive_failures, p.failing_since), (0, None));
        assert_eq!(p.last_success, Some(t0 + s(15)));
        assert_eq!(p.changed_at_ms, Some(15_000));
    }

    #[test]
    fn votes_read_the_window() {
        let w = Duration::from_secs(30);
        let seen = |f, ok: Option<u64>, err: Option<u64>| Observed::Seen {
            consecutive_failures: f,
            last_success_ago: ok.map(Duration::from_secs),
            last_error_ago: err.map(Duration::from_secs),
        };
        assert_eq!(vote(&seen(3, Some(40), Some(1)), w).name(), "Down");
        assert_eq!(vote(&seen(3, None, Some(30)), w).name(), "Down");
        assert_eq!(vote(&seen(3, Some(29), Some(1)), w).name(), "Up");
        assert_eq!(vote(&seen(0, Some(5), Some(1)), w).name(), "Up");
        assert_eq!(vote(&seen(3, Some(90), Some(31)), w).name(), "Abstain");
        assert_eq!(vote(&seen(0, Some(90), Some(2)), w).name(), "Abstain");
        assert_eq!(vote(&Observed::NotListed, w).name(), "Abstain");
        assert_eq!(
            vote(&Observed::Unreachable("refused".into()), w),
            Vote::Abstain("unreachable: refused".into())
        );
    }
}
