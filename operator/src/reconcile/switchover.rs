//! The phases of a switchover: planned (a person changed `spec.active`) or the steps of an
//! automatic failover. Pure: from the switchover as the znode keeps it, the results of the calls
//! made since the znode was last written, and the time, [`step`] says what to do next: one call
//! to a cluster's MetaServers, one write of the znode, or a wait. Every rule is a row of
//! `fixtures/switchover.yaml`.
//!
//! ```text
//!  Fencing ──► Settling ──► Draining ──► (flip) Reconfiguring ──► done: the old cluster left fenced
//!     │           fence        │  every partition       │
//!     │           settle       │  confirmed = committed │  reconfig*all on the old cluster
//!     │                        │  (or drainDelay)       │
//!     └── no fence ack ────────┴── drain timeout ───────┴──► Aborting ──► done: fence lifted
//! ```
//!
//! - Fencing: `replica.deny_client_request = timeout*write` on the old cluster (with
//!   `switchover.fence`), and the fence this operator left on the new cluster lifted (it is
//!   `reconfig*all` from the switchover that made it the old side; it would hold duplication
//!   back and turn clients away). `ERR_OK` only means the MetaServer stored it.
//! - Settling: the replica servers apply app envs at their config sync: the fence counts after
//!   `fenceSettle`.
//! - Draining: query_duplication on the old cluster until every partition's confirmed decree
//!   has reached its last committed decree; servers without per-partition progress (2.4, 2.5)
//!   get `drainDelay` instead.
//! - The flip: the record and the next phase in one compare-and-set write.
//! - Reconfiguring: `reconfig*all` on the old cluster: its replicas answer `ERR_INVALID_STATE`,
//!   so clients ask the proxy again at once. It stays so (the old cluster is now the follower);
//!   the status says how to lift it.
//!
//! Each phase has a time limit, counted from when it began (kept in the znode, so a restart does
//! not reset it). Before the flip, running out aborts: the fence is lifted, the record stays, and
//! the switchover is not tried again until `spec.active` changes. An automatic failover does not
//! abort for the old cluster's sake: a fence or a drain check the old cluster does not answer is
//! skipped (`FencingSkipped`), a drain that does not finish in time is given up, and
//! `reconfig*all` is sent again until the old cluster answers, since clients still attached to it
//! would otherwise write there when it comes back.
//!
//! Every call is idempotent, so one made again after a restart (the znode did not record its
//! result yet) does no harm.

use std::time::Duration;

use crate::crd::ActiveCluster;
use crate::reconcile::state::{Fenced, Phase, Switchover};

/// What clients get from a fenced cluster's replicas: writes dropped without an answer
/// (`timeout`), so that none is acknowledged; reads still served.
pub const DENY_WRITES: &str = "timeout*write";
/// What a cluster clients should leave answers: `ERR_INVALID_STATE` to everything, so that they
/// ask the proxy again at once.
pub const SEND_AWAY: &str = "reconfig*all";
/// The app env that fences.
pub const DENY_KEY: &str = "replica.deny_client_request";

/// Whether a replica server accepts `value` for [`DENY_KEY`]. It splits the value on `*` and
/// asserts that there are two parts; only these actions and kinds mean anything.
pub fn deny_value_is_valid(value: &str) -> bool {
    let mut parts = value.split('*');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (
            Some("timeout" | "reconfig"),
            Some("read" | "write" | "all"),
            None
        )
    )
}

/// The route's switchover settings, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub fence: bool,
    pub fence_settle: Duration,
    pub fence_timeout: Duration,
    pub drain_timeout: Duration,
    pub drain_delay: Duration,
    /// Between two attempts of a call that failed, or two drain checks.
    pub retry: Duration,
    /// Between two attempts to send clients away from an old primary that does not answer,
    /// after an automatic failover (the probe interval).
    pub pending_retry: Duration,
}

/// A call to one of the route's clusters, for the table.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(
    tag = "call",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Effect {
    /// SET [`DENY_KEY`] to `value` on `side`'s cluster.
    Deny { side: ActiveCluster, value: String },
    /// DEL [`DENY_KEY`] on `side`'s cluster.
    Lift { side: ActiveCluster },
    /// query_duplication on `side`'s cluster, for the duplication to `to_cluster`.
    Progress {
        side: ActiveCluster,
        to_cluster: String,
    },
}

/// How far duplication has got, as query_duplication tells it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Drain {
    /// Every partition's confirmed decree has reached its last committed decree.
    Drained,
    /// `behind` decrees over `partitions` partitions are not confirmed yet.
    Lagging { behind: i64, partitions: u32 },
    /// The server does not report per-partition progress (2.4, 2.5).
    NoProgress,
    /// The table has no duplication on that cluster.
    NoDuplication,
}

/// The result of a call.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Observation {
    Done { effect: Effect },
    Failed { effect: Effect, error: String },
    Progress { drain: Drain },
}

/// What to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Call(Effect),
    /// Write the switchover, in its next phase, with the record unchanged.
    Next(Switchover),
    /// Write the record of `to`, with the switchover in `Reconfiguring`.
    Flip(Switchover),
    /// The switchover is over.
    Finish(Finished),
    /// Nothing to do until then.
    Wait(Duration),
}

/// How a switchover ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finished {
    /// The record routes to the new cluster; `fenced` is what the old one was left with.
    Completed {
        fenced: Option<Fenced>,
        note: String,
    },
    /// The record still routes to the old cluster.
    Aborted { reason: String, note: String },
}

/// Everything [`step`] looks at besides the switchover.
#[derive(Clone, Debug)]
pub struct Context<'a> {
    pub settings: &'a Settings,
    /// The route's clusters' names now, primary and backup.
    pub primary_cluster: &'a str,
    pub backup_cluster: Option<&'a str>,
    /// What `spec.active` asks for now.
    pub wanted: ActiveCluster,
    /// The cluster this operator left fenced, if any.
    pub fenced: Option<&'a Fenced>,
    /// The results of the calls made since the znode was last read.
    pub done: &'a [Observation],
    pub now_ms: i64,
}

impl Context<'_> {
    fn cluster(&self, side: ActiveCluster) -> Option<&str> {
        match side {
            ActiveCluster::Primary => Some(self.primary_cluster),
            ActiveCluster::Backup => self.backup_cluster,
        }
    }

    fn succeeded(&self, effect: &Effect) -> bool {
        self.done
            .iter()
            .any(|o| matches!(o, Observation::Done { effect: e } if e == effect))
    }

    fn failure(&self, effect: &Effect) -> Option<&str> {
        self.done.iter().rev().find_map(|o| match o {
            Observation::Failed { effect: e, error } if e == effect => Some(error.as_str()),
            _ => None,
        })
    }

    fn progress(&self) -> Option<&Drain> {
        self.done.iter().rev().find_map(|o| match o {
            Observation::Progress { drain } => Some(drain),
            _ => None,
        })
    }

    fn elapsed(&self, sw: &Switchover) -> Duration {
        Duration::from_millis(u64::try_from(self.now_ms - sw.since).unwrap_or(0))
    }
}

/// Whether starting a switchover to `to` has anything to do before the flip: a fence to set, or
/// one of this operator's to lift on the new cluster.
pub fn needs_fencing(settings: &Settings, to_cluster: &str, fenced: Option<&Fenced>) -> bool {
    settings.fence || fenced.is_some_and(|f| f.cluster == to_cluster)
}

fn in_phase(sw: &Switchover, phase: Phase, now_ms: i64) -> Switchover {
    Switchover {
        phase,
        since: now_ms,
        ..sw.clone()
    }
}

fn abort(sw: &Switchover, reason: String, now_ms: i64) -> Step {
    Step::Next(Switchover {
        note: reason,
        ..in_phase(sw, Phase::Aborting, now_ms)
    })
}

fn with_note(sw: &Switchover, note: String) -> Switchover {
    let note = if sw.note.is_empty() {
        note
    } else {
        format!("{}; {note}", sw.note)
    };
    Switchover { note, ..sw.clone() }
}

fn remaining(limit: Duration, elapsed: Duration, retry: Duration) -> Duration {
    limit
        .saturating_sub(elapsed)
        .min(retry)
        .max(Duration::from_millis(1))
}

/// The next step of `sw`.
pub fn step(sw: &Switchover, cx: &Context<'_>) -> Step {
    let s = cx.settings;
    let now = cx.now_ms;
    let elapsed = cx.elapsed(sw);
    // The route's clusters changed under the switchover: nothing it would do makes sense now.
    if cx.cluster(sw.from) != Some(sw.from_cluster.as_str())
        || cx.cluster(sw.to) != Some(sw.to_cluster.as_str())
    {
        let why = format!(
            "the route's clusters changed during the switchover from {} to {}",
            sw.from_cluster, sw.to_cluster
        );
        return Step::Finish(if sw.phase.before_flip() || sw.phase == Phase::Aborting {
            Finished::Aborted {
                reason: why,
                note: format!(
                    "a fence on {} may be left: lift it by hand if so",
                    sw.from_cluster
                ),
            }
        } else {
            Finished::Completed {
                fenced: None,
                note: why,
            }
        });
    }
    // A person took the request back before the flip.
    if sw.phase.before_flip() && !sw.automatic && cx.wanted != sw.to {
        return abort(
            sw,
            format!(
                "spec.active went back to {} before the flip",
                side_name(sw.from)
            ),
            now,
        );
    }
    let fence_from = Effect::Deny {
        side: sw.from,
        value: DENY_WRITES.into(),
    };
    let lift_to = Effect::Lift { side: sw.to };
    let send_away = Effect::Deny {
        side: sw.from,
        value: SEND_AWAY.into(),
    };
    match sw.phase {
        Phase::Fencing => {
            let unfence_to = cx.fenced.is_some_and(|f| f.cluster == sw.to_cluster);
            if unfence_to && !cx.succeeded(&lift_to) {
                return match cx.failure(&lift_to) {
                    Some(e) if elapsed >= s.fence_timeout => abort(
                        sw,
                        format!(
                            "the fence on {} could not be lifted within {}: {e}",
                            sw.to_cluster,
                            fmt(s.fence_timeout)
                        ),
                        now,
                    ),
                    Some(_) => Step::Wait(remaining(s.fence_timeout, elapsed, s.retry)),
                    None => Step::Call(lift_to),
                };
            }
            if sw.fence && !cx.succeeded(&fence_from) {
                return match cx.failure(&fence_from) {
                    // The old primary does not answer: it is failing, which is why this runs.
                    Some(e) if sw.automatic => {
                        let skipped = Switchover {
                            fence: false,
                            fencing_skipped: true,
                            ..with_note(sw, format!("fencing skipped: {e}"))
                        };
                        if unfence_to {
                            Step::Next(in_phase(&skipped, Phase::Settling, now))
                        } else {
                            Step::Flip(in_phase(&skipped, Phase::Reconfiguring, now))
                        }
                    }
                    Some(e) if elapsed >= s.fence_timeout => abort(
                        sw,
                        format!(
                            "{} did not take the write fence within {}: {e}; to switch without \
                             fencing (a cluster that is down), set spec.switchover.fence: false",
                            sw.from_cluster,
                            fmt(s.fence_timeout)
                        ),
                        now,
                    ),
                    Some(_) => Step::Wait(remaining(s.fence_timeout, elapsed, s.retry)),
                    None => Step::Call(fence_from),
                };
            }
            Step::Next(in_phase(sw, Phase::Settling, now))
        }
        Phase::Settling => {
            if elapsed < s.fence_settle {
                Step::Wait(s.fence_settle - elapsed)
            } else if sw.fence {
                Step::Next(in_phase(sw, Phase::Draining, now))
            } else {
                Step::Flip(in_phase(sw, Phase::Reconfiguring, now))
            }
        }
        Phase::Draining => {
            let flip = |note: Option<String>| {
                let next = match note {
                    Some(n) => with_note(sw, n),
                    None => sw.clone(),
                };
                Step::Flip(in_phase(&next, Phase::Reconfiguring, now))
            };
            let query = Effect::Progress {
                side: sw.from,
                to_cluster: sw.to_cluster.clone(),
            };
            match cx.progress() {
                Some(Drain::Drained) => flip(None),
                Some(Drain::NoProgress) if elapsed >= s.drain_delay => flip(Some(format!(
                    "{} reports no per-partition progress: waited drainDelay {}",
                    sw.from_cluster,
                    fmt(s.drain_delay)
                ))),
                Some(Drain::NoProgress) => Step::Wait(s.drain_delay - elapsed),
                Some(Drain::Lagging { behind, .. }) if elapsed >= s.drain_timeout => {
                    let why = format!(
                        "duplication did not drain within {}: {behind} decrees not confirmed",
                        fmt(s.drain_timeout)
                    );
                    if sw.automatic {
                        flip(Some(why))
                    } else {
                        abort(sw, why, now)
                    }
                }
                Some(Drain::Lagging { .. }) => {
                    Step::Wait(remaining(s.drain_timeout, elapsed, s.retry))
                }
                Some(Drain::NoDuplication) => {
                    let why = format!(
                        "table has no duplication on {} to carry its writes to {}",
                        sw.from_cluster, sw.to_cluster
                    );
                    if sw.automatic {
                        flip(Some(why))
                    } else {
                        abort(
                            sw,
                            format!(
                                "{why}; set spec.switchover.fence: false to switch without one"
                            ),
                            now,
                        )
                    }
                }
                None => match cx.failure(&query) {
                    Some(e) if sw.automatic => flip(Some(format!("drain check skipped: {e}"))),
                    Some(e) if elapsed >= s.drain_timeout => abort(
                        sw,
                        format!(
                            "duplication progress could not be read within {}: {e}",
                            fmt(s.drain_timeout)
                        ),
                        now,
                    ),
                    Some(_) => Step::Wait(remaining(s.drain_timeout, elapsed, s.retry)),
                    None => Step::Call(query),
                },
            }
        }
        Phase::Reconfiguring => {
            if cx.succeeded(&send_away) {
                return Step::Finish(Finished::Completed {
                    fenced: Some(Fenced {
                        cluster: sw.from_cluster.clone(),
                        value: SEND_AWAY.into(),
                    }),
                    note: sw.note.clone(),
                });
            }
            match cx.failure(&send_away) {
                // The old primary is down: clients attached to it would write there when it comes
                // back, so this goes on until it answers.
                Some(_) if sw.automatic => Step::Wait(s.pending_retry),
                Some(e) if elapsed >= s.fence_timeout => Step::Finish(Finished::Completed {
                    fenced: None,
                    note: format!(
                        "{}; clients were not sent away from {} ({e}): they move when it answers them with an error",
                        if sw.note.is_empty() {
                            "flipped"
                        } else {
                            &sw.note
                        },
                        sw.from_cluster
                    ),
                }),
                Some(_) => Step::Wait(remaining(s.fence_timeout, elapsed, s.retry)),
                None => Step::Call(send_away),
            }
        }
        Phase::Aborting => {
            let lift_from = Effect::Lift { side: sw.from };
            if !sw.fence || cx.succeeded(&lift_from) {
                return Step::Finish(Finished::Aborted {
                    reason: sw.note.clone(),
                    note: String::new(),
                });
            }
            match cx.failure(&lift_from) {
                Some(e) if elapsed >= s.fence_timeout => Step::Finish(Finished::Aborted {
                    reason: sw.note.clone(),
                    note: format!(
                        "the write fence on {} could not be lifted ({e}): lift it by hand (update_app_env DEL {DENY_KEY})",
                        sw.from_cluster
                    ),
                }),
                Some(_) => Step::Wait(remaining(s.fence_timeout, elapsed, s.retry)),
                None => Step::Call(lift_from),
            }
        }
    }
}

fn fmt(d: Duration) -> String {
    metaproxy::startup::format_duration(d)
}

/// `primary` or `backup`.
pub fn side_name(side: ActiveCluster) -> &'static str {
    match side {
        ActiveCluster::Primary => "primary",
        ActiveCluster::Backup => "backup",
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    /// One row of `fixtures/switchover.yaml`.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Case {
        name: String,
        switchover: Switchover,
        #[serde(default)]
        fenced: Option<Fenced>,
        #[serde(default)]
        done: Vec<Observation>,
        #[serde(default = "backup")]
        wanted: ActiveCluster,
        #[serde(default)]
        fence: Option<bool>,
        now: i64,
        expect: Expect,
    }

    fn backup() -> ActiveCluster {
        ActiveCluster::Backup
    }

    /// The expected step; a switchover written is compared on its phase, its `since`, and the
    /// words its note must contain.
    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase", rename_all_fields = "camelCase")]
    enum Expect {
        Call(Effect),
        Next {
            phase: Phase,
            since: i64,
            #[serde(default)]
            note: String,
            #[serde(default)]
            fence: Option<bool>,
        },
        Flip {
            #[serde(default)]
            note: String,
            #[serde(default)]
            fencing_skipped: bool,
        },
        Completed {
            #[serde(default)]
            fenced: Option<Fenced>,
            #[serde(default)]
            note: String,
        },
        Aborted {
            reason: String,
            #[serde(default)]
            note: String,
        },
        WaitMs(u64),
    }

    #[test]
    fn switchover_fixtures() {
        let cases: Vec<Case> = serde_saphyr::from_str(include_str!("fixtures/switchover.yaml"))
            .expect("fixtures parse");
        assert!(cases.len() >= 25, "the fixture file lost its cases");
        for case in cases {
            let settings = Settings {
                fence: case.fence.unwrap_or(true),
                fence_settle: Duration::from_secs(35),
                fence_timeout: Duration::from_secs(60),
                drain_timeout: Duration::from_secs(300),
                drain_delay: Duration::from_secs(60),
                retry: Duration::from_secs(1),
                pending_retry: Duration::from_secs(5),
            };
            let cx = Context {
                settings: &settings,
                primary_cluster: "c1",
                backup_cluster: Some("c2"),
                wanted: case.wanted,
                fenced: case.fenced.as_ref(),
                done: &case.done,
                now_ms: case.now,
            };
            let got = step(&case.switchover, &cx);
            let name = &case.name;
            match (&got, &case.expect) {
                (Step::Call(e), Expect::Call(want)) => assert_eq!(e, want, "{name}"),
                (
                    Step::Next(sw),
                    Expect::Next {
                        phase,
                        since,
                        note,
                        fence,
                    },
                ) => {
                    assert_eq!((sw.phase, sw.since), (*phase, *since), "{name}");
                    assert!(sw.note.contains(note.as_str()), "{name}: {:?}", sw.note);
                    if let Some(f) = fence {
                        assert_eq!(sw.fence, *f, "{name}");
                    }
                }
                (
                    Step::Flip(sw),
                    Expect::Flip {
                        note,
                        fencing_skipped,
                    },
                ) => {
                    assert_eq!(sw.phase, Phase::Reconfiguring, "{name}");
                    assert_eq!(sw.since, case.now, "{name}");
                    assert!(sw.note.contains(note.as_str()), "{name}: {:?}", sw.note);
                    assert_eq!(sw.fencing_skipped, *fencing_skipped, "{name}");
                }
                (
                    Step::Finish(Finished::Completed { fenced, note }),
                    Expect::Completed {
                        fenced: want,
                        note: want_note,
                    },
                ) => {
                    assert_eq!(fenced, want, "{name}");
                    assert!(note.contains(want_note.as_str()), "{name}: {note:?}");
                }
                (
                    Step::Finish(Finished::Aborted { reason, note }),
                    Expect::Aborted {
                        reason: want,
                        note: want_note,
                    },
                ) => {
                    assert!(reason.contains(want.as_str()), "{name}: {reason:?}");
                    assert!(note.contains(want_note.as_str()), "{name}: {note:?}");
                }
                (Step::Wait(d), Expect::WaitMs(ms)) => {
                    assert_eq!(*d, Duration::from_millis(*ms), "{name}")
                }
                _ => panic!("{name}: got {got:?}, expected {:?}", case.expect),
            }
        }
    }

    #[test]
    fn only_values_a_replica_parses_are_written() {
        assert!(deny_value_is_valid(DENY_WRITES));
        assert!(deny_value_is_valid(SEND_AWAY));
        for bad in [
            "",
            "timeout",
            "timeout*",
            "*write",
            "reconfig*all*x",
            "drop*write",
        ] {
            assert!(!deny_value_is_valid(bad), "{bad:?}");
        }
    }
}
