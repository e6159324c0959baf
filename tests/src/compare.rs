//! `pegasus-load --compare`: the same query_config load against several targets (the simulator
//! directly, the proxy, another proxy), alternating in rounds within one run, so that a noisy,
//! shared machine treats them alike; then the median of each figure per target and its ratio to
//! the first target.
//!
//! Beside throughput and latency, each run reads the CPU time of the processes it is told about
//! (`--pid proxy=1234 --pid sim=5678`) and of the load tool itself before and after, and reports
//! CPU microseconds per request for each: the figure that stays put when the machine is busy.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cpu::{self, CpuError};
use crate::load::{self, LoadConfig, LoadError, LoadReport};

/// A target to load, with the label it is reported under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Target {
    pub label: String,
    pub addr: SocketAddr,
}

/// `label=host:port`, or `host:port` (labelled by itself).
pub fn parse_target(spec: &str) -> Result<Target, String> {
    let (label, addr) = match spec.split_once('=') {
        Some((label, addr)) => (label.trim(), addr.trim()),
        None => (spec.trim(), spec.trim()),
    };
    let addr = addr
        .parse()
        .map_err(|e| format!("{spec:?}: not label=host:port ({e})"))?;
    if label.is_empty() {
        return Err(format!("{spec:?}: empty label"));
    }
    Ok(Target {
        label: label.to_owned(),
        addr,
    })
}

/// A process whose CPU time is read around each run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Watched {
    pub label: String,
    pub pid: u32,
}

/// The label under which the load tool's own CPU time is reported.
pub const SELF_LABEL: &str = "load";

/// `label=PID`.
pub fn parse_watched(spec: &str) -> Result<Watched, String> {
    let (label, pid) = spec
        .split_once('=')
        .ok_or_else(|| format!("{spec:?}: not label=PID"))?;
    let pid = pid
        .trim()
        .parse()
        .map_err(|e| format!("{spec:?}: bad PID ({e})"))?;
    let label = label.trim();
    if label.is_empty() || label == SELF_LABEL {
        return Err(format!(
            "{spec:?}: the label must be set and not {SELF_LABEL:?}"
        ));
    }
    Ok(Watched {
        label: label.to_owned(),
        pid,
    })
}

#[derive(Clone, Debug)]
pub struct CompareConfig {
    /// The load of every run (its `target` is replaced by each target's).
    pub load: LoadConfig,
    pub targets: Vec<Target>,
    pub rounds: usize,
    pub watched: Vec<Watched>,
    /// Quiet time before each run, so that one run's tail does not fall into the next.
    pub pause: Duration,
}

/// What one process spent during a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct CpuFigure {
    /// CPU microseconds per reply received.
    pub us_per_request: f64,
    /// CPU seconds per second of the run: how many cores it kept busy.
    pub cores: f64,
}

/// One run against one target.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    pub target: String,
    pub round: usize,
    pub report: LoadReport,
    pub cpu: BTreeMap<String, CpuFigure>,
}

/// The medians of one target's runs, and their ratios to the first target's.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub target: String,
    pub runs: usize,
    pub requests_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// Errors over all its runs.
    pub errors: u64,
    pub cpu: BTreeMap<String, CpuFigure>,
    /// Throughput over the first target's.
    pub throughput_ratio: f64,
    /// Median latency over the first target's.
    pub p50_ratio: f64,
    /// p99 minus the first target's, in microseconds.
    pub added_p99_us: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct CompareReport {
    pub rounds: usize,
    pub watched: Vec<Watched>,
    pub runs: Vec<Run>,
    pub summary: Vec<Summary>,
}

/// The median of `values` (the mean of the middle two when their number is even); 0 when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// `a / b`, or 0 when `b` is 0.
fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { 0.0 } else { a / b }
}

/// Medians per target (in the targets' order) and ratios to the first target.
pub fn summarize(targets: &[Target], runs: &[Run]) -> Vec<Summary> {
    let mut rows: Vec<Summary> = targets
        .iter()
        .map(|t| {
            let mine: Vec<&Run> = runs.iter().filter(|r| r.target == t.label).collect();
            let med =
                |f: &dyn Fn(&Run) -> f64| median(&mine.iter().map(|r| f(r)).collect::<Vec<_>>());
            let labels: Vec<&String> = mine
                .iter()
                .flat_map(|r| r.cpu.keys())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            let cpu = labels
                .into_iter()
                .map(|label| {
                    let get = |r: &Run| r.cpu.get(label).copied().unwrap_or_default();
                    let figure = CpuFigure {
                        us_per_request: med(&|r| get(r).us_per_request),
                        cores: med(&|r| get(r).cores),
                    };
                    (label.clone(), figure)
                })
                .collect();
            Summary {
                target: t.label.clone(),
                runs: mine.len(),
                requests_per_sec: med(&|r| r.report.requests_per_sec),
                p50_us: med(&|r| r.report.latency_us.p50 as f64),
                p99_us: med(&|r| r.report.latency_us.p99 as f64),
                p999_us: med(&|r| r.report.latency_us.p999 as f64),
                errors: mine
                    .iter()
                    .map(|r| r.report.errors.values().sum::<u64>())
                    .sum(),
                cpu,
                throughput_ratio: 0.0,
                p50_ratio: 0.0,
                added_p99_us: 0.0,
            }
        })
        .collect();
    if let Some(first) = rows.first().cloned() {
        for row in &mut rows {
            row.throughput_ratio = ratio(row.requests_per_sec, first.requests_per_sec);
            row.p50_ratio = ratio(row.p50_us, first.p50_us);
            row.added_p99_us = row.p99_us - first.p99_us;
        }
    }
    rows
}

/// CPU time of each watched process and of this one, now.
fn sample(watched: &[Watched]) -> Result<BTreeMap<String, Duration>, CpuError> {
    let mut out = BTreeMap::new();
    for w in watched {
        out.insert(w.label.clone(), cpu::process_cpu(w.pid)?);
    }
    out.insert(SELF_LABEL.to_owned(), cpu::process_cpu(std::process::id())?);
    Ok(out)
}

/// CPU figures from the samples before and after a run of `elapsed` with `requests` replies.
pub fn cpu_figures(
    before: &BTreeMap<String, Duration>,
    after: &BTreeMap<String, Duration>,
    elapsed: Duration,
    requests: u64,
) -> BTreeMap<String, CpuFigure> {
    after
        .iter()
        .filter_map(|(label, a)| {
            let spent = a.saturating_sub(*before.get(label)?);
            Some((
                label.clone(),
                CpuFigure {
                    us_per_request: cpu::micros_per_request(spent, requests),
                    cores: ratio(spent.as_secs_f64(), elapsed.as_secs_f64()),
                },
            ))
        })
        .collect()
}

/// Runs `rounds` rounds, each loading every target in turn.
pub async fn run(config: CompareConfig) -> Result<CompareReport, LoadError> {
    if config.targets.is_empty() || config.rounds == 0 {
        return Err(LoadError::Config(
            "compare needs at least one target and one round".into(),
        ));
    }
    let cpu_err = |e: CpuError| LoadError::Config(e.to_string());
    sample(&config.watched).map_err(cpu_err)?;
    let mut runs = Vec::new();
    for round in 1..=config.rounds {
        for target in &config.targets {
            tokio::time::sleep(config.pause).await;
            let before = sample(&config.watched).map_err(cpu_err)?;
            let started = Instant::now();
            let report = load::run(LoadConfig {
                target: target.addr,
                ..config.load.clone()
            })
            .await?;
            let elapsed = started.elapsed();
            let after = sample(&config.watched).map_err(cpu_err)?;
            runs.push(Run {
                target: target.label.clone(),
                round,
                cpu: cpu_figures(&before, &after, elapsed, report.replies),
                report,
            });
        }
    }
    Ok(CompareReport {
        rounds: config.rounds,
        watched: config.watched,
        summary: summarize(&config.targets, &runs),
        runs,
    })
}

impl fmt::Display for CompareReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let labels: Vec<&String> = self
            .summary
            .first()
            .map(|s| s.cpu.keys().collect())
            .unwrap_or_default();
        write!(f, "{:<8} {:>5} {:>10}", "target", "round", "req/s")?;
        write!(f, " {:>8} {:>8} {:>8}", "p50 us", "p99 us", "p999 us")?;
        for l in &labels {
            write!(f, " {:>14}", format!("{l} us/req"))?;
        }
        writeln!(f, " {:>7}", "errors")?;
        let row = |f: &mut fmt::Formatter<'_>,
                   target: &str,
                   round: &str,
                   rps: f64,
                   lat: [f64; 3],
                   cpu: &BTreeMap<String, CpuFigure>,
                   errors: u64|
         -> fmt::Result {
            write!(f, "{target:<8} {round:>5} {rps:>10.0}")?;
            write!(f, " {:>8.0} {:>8.0} {:>8.0}", lat[0], lat[1], lat[2])?;
            for l in &labels {
                let c = cpu.get(*l).copied().unwrap_or_default();
                write!(
                    f,
                    " {:>14}",
                    format!("{:.2} ({:.2}c)", c.us_per_request, c.cores)
                )?;
            }
            writeln!(f, " {errors:>7}")
        };
        for r in &self.runs {
            let l = &r.report.latency_us;
            let errors = r.report.errors.values().sum();
            row(
                f,
                &r.target,
                &r.round.to_string(),
                r.report.requests_per_sec,
                [l.p50 as f64, l.p99 as f64, l.p999 as f64],
                &r.cpu,
                errors,
            )?;
        }
        for s in &self.summary {
            let lat = [s.p50_us, s.p99_us, s.p999_us];
            row(
                f,
                &s.target,
                "med",
                s.requests_per_sec,
                lat,
                &s.cpu,
                s.errors,
            )?;
        }
        for s in self.summary.iter().skip(1) {
            let first = &self.summary[0].target;
            writeln!(
                f,
                "{} / {first}: throughput {:.2}, p50 {:.2}, p99 {:+.0} us",
                s.target, s.throughput_ratio, s.p50_ratio, s.added_p99_us
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{Header, Latency, Pace};

    #[test]
    fn targets_and_watched_processes_parse() {
        let t = |label: &str, addr: &str| {
            Ok(Target {
                label: label.into(),
                addr: addr.parse().expect("addr"),
            })
        };
        let cases = [
            ("direct=127.0.0.1:34601", t("direct", "127.0.0.1:34601")),
            ("127.0.0.1:1", t("127.0.0.1:1", "127.0.0.1:1")),
            (" proxy = 127.0.0.1:2 ", t("proxy", "127.0.0.1:2")),
        ];
        for (spec, want) in cases {
            assert_eq!(parse_target(spec), want, "{spec}");
        }
        for bad in ["proxy=nowhere", "=127.0.0.1:1", "proxy"] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_watched("proxy=42"),
            Ok(Watched {
                label: "proxy".into(),
                pid: 42
            })
        );
        for bad in ["proxy", "proxy=x", "=42", "load=42"] {
            assert!(parse_watched(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn medians() {
        let cases: [(&[f64], f64); 5] = [
            (&[], 0.0),
            (&[3.0], 3.0),
            (&[3.0, 1.0, 2.0], 2.0),
            (&[4.0, 1.0, 2.0, 3.0], 2.5),
            (&[f64::NAN, 5.0, 1.0], 3.0),
        ];
        for (values, want) in cases {
            assert_eq!(median(values), want, "{values:?}");
        }
    }

    fn run_of(
        target: &str,
        round: usize,
        rps: f64,
        p50: u64,
        p99: u64,
        cpu: &[(&str, f64)],
    ) -> Run {
        Run {
            target: target.into(),
            round,
            report: LoadReport {
                target: "127.0.0.1:1".parse().expect("addr"),
                connections: 1,
                depth: 1,
                pace: Pace::Closed,
                header: Header::V0,
                tables: vec!["t".into()],
                elapsed_secs: 1.0,
                sent: 1,
                replies: 1,
                ok: 1,
                requests_per_sec: rps,
                latency_us: Latency {
                    p50,
                    p99,
                    ..Latency::default()
                },
                send_lag_us: None,
                errors: BTreeMap::from([("timeout".into(), 1)]),
            },
            cpu: cpu
                .iter()
                .map(|(l, us)| {
                    (
                        (*l).to_owned(),
                        CpuFigure {
                            us_per_request: *us,
                            cores: 1.0,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn summaries_are_medians_per_target_with_ratios_to_the_first() {
        let targets = [
            parse_target("direct=127.0.0.1:1").expect("t"),
            parse_target("proxy=127.0.0.1:2").expect("t"),
        ];
        // Alternating rounds; one noisy round each, which the median leaves out.
        let runs = [
            run_of("direct", 1, 100.0, 30, 100, &[("sim", 1.0)]),
            run_of("proxy", 1, 80.0, 60, 300, &[("sim", 0.1), ("proxy", 1.5)]),
            run_of("direct", 2, 10.0, 90, 900, &[("sim", 9.0)]),
            run_of("proxy", 2, 60.0, 66, 400, &[("sim", 0.3), ("proxy", 1.6)]),
            run_of("direct", 3, 120.0, 32, 120, &[("sim", 1.2)]),
            run_of("proxy", 3, 5.0, 900, 9000, &[("sim", 0.2), ("proxy", 9.0)]),
        ];
        let s = summarize(&targets, &runs);
        assert_eq!(s.len(), 2);
        let (d, p) = (&s[0], &s[1]);
        assert_eq!(
            (d.runs, d.requests_per_sec, d.p50_us, d.p99_us),
            (3, 100.0, 32.0, 120.0)
        );
        assert_eq!(
            (p.requests_per_sec, p.p50_us, p.p99_us),
            (60.0, 66.0, 400.0)
        );
        assert_eq!(
            (d.throughput_ratio, d.p50_ratio, d.added_p99_us),
            (1.0, 1.0, 0.0)
        );
        assert_eq!(
            (p.throughput_ratio, p.p50_ratio, p.added_p99_us),
            (0.6, 66.0 / 32.0, 280.0)
        );
        assert_eq!(d.cpu["sim"].us_per_request, 1.2);
        assert_eq!(p.cpu["proxy"].us_per_request, 1.6);
        assert_eq!(p.cpu["sim"].us_per_request, 0.2);
        assert_eq!((d.errors, p.errors), (3, 3));
        assert!(summarize(&targets[..0], &runs).is_empty());
    }

    #[test]
    fn cpu_figures_are_deltas_per_request_and_per_second() {
        let ms = Duration::from_millis;
        let before = BTreeMap::from([("proxy".to_owned(), ms(1000)), ("load".to_owned(), ms(0))]);
        let after = BTreeMap::from([
            ("proxy".to_owned(), ms(3000)),
            ("load".to_owned(), ms(500)),
            ("new".to_owned(), ms(9)),
        ]);
        let got = cpu_figures(&before, &after, Duration::from_secs(4), 1_000_000);
        assert_eq!(
            got,
            BTreeMap::from([
                (
                    "load".to_owned(),
                    CpuFigure {
                        us_per_request: 0.5,
                        cores: 0.125
                    }
                ),
                (
                    "proxy".to_owned(),
                    CpuFigure {
                        us_per_request: 2.0,
                        cores: 0.5
                    }
                ),
            ])
        );
    }
}
