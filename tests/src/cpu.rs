//! CPU time of other processes (the proxy, the simulator) from `/proc/<pid>/stat`, for the load
//! tool's CPU-per-request figures: on a shared machine, what a process spent per request is far
//! steadier than how many requests per second it managed.
//!
//! `utime` and `stime` (fields 14 and 15) count clock ticks of every thread the process has had,
//! the ones that ended included; one tick is 1 / `clock_ticks_per_second()` (10 ms on Linux), so
//! a run should be long enough for its CPU time to be many ticks (10 s of one busy core: 1,000).

use std::time::Duration;

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CpuError {
    #[error("cannot read /proc/{pid}/stat: {reason}")]
    Read { pid: u32, reason: String },
    #[error("unexpected /proc stat line: {0}")]
    Parse(String),
}

/// The user plus system clock ticks in the text of a `/proc/<pid>/stat` file.
///
/// The second field, the command name in parentheses, may itself hold spaces and parentheses, so
/// the fields are counted from the last `)`.
pub fn parse_stat_ticks(stat: &str) -> Result<u64, CpuError> {
    let bad = || CpuError::Parse(stat.chars().take(120).collect());
    let after = stat.rfind(')').ok_or_else(bad)?;
    // Field 3 (state) is the first after the name; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat[after + 1..].split_whitespace().collect();
    let field = |n: usize| -> Result<u64, CpuError> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(bad)
    };
    Ok(field(14)? + field(15)?)
}

/// The CPU time process `pid` has used so far (user plus system, all its threads).
pub fn process_cpu(pid: u32) -> Result<Duration, CpuError> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| CpuError::Read {
            pid,
            reason: e.to_string(),
        })?;
    Ok(ticks_to_duration(
        parse_stat_ticks(&stat)?,
        rustix::param::clock_ticks_per_second(),
    ))
}

/// `ticks` clock ticks at `per_second` ticks per second.
pub fn ticks_to_duration(ticks: u64, per_second: u64) -> Duration {
    let per_second = per_second.max(1);
    Duration::from_secs(ticks / per_second)
        + Duration::from_nanos((ticks % per_second) * 1_000_000_000 / per_second)
}

/// Microseconds of CPU per request: `cpu` spent over `requests` (0 when there were none).
pub fn micros_per_request(cpu: Duration, requests: u64) -> f64 {
    if requests == 0 {
        return 0.0;
    }
    cpu.as_secs_f64() * 1e6 / requests as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_give_user_plus_system_ticks() {
        let tail = "S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 3 0 100 200 300";
        let cases: Vec<(String, Result<u64, ()>)> = vec![
            (format!("123 (metaproxy) {tail}"), Ok(300)),
            (format!("123 (tokio rt) {tail}"), Ok(300)),
            (format!("123 (a) b) (c) {tail}"), Ok(300)),
            ("123 (metaproxy) S 1 2".into(), Err(())),
            ("no parenthesis at all".into(), Err(())),
            (format!("123 (x) {}", tail.replace("250", "x")), Err(())),
        ];
        for (line, want) in cases {
            assert_eq!(parse_stat_ticks(&line).map_err(|_| ()), want, "{line}");
        }
    }

    #[test]
    fn ticks_and_per_request_figures() {
        let cases = [
            (0, 100, Duration::ZERO),
            (250, 100, Duration::from_millis(2500)),
            (3, 1000, Duration::from_millis(3)),
            (7, 0, Duration::from_secs(7)),
        ];
        for (ticks, hz, want) in cases {
            assert_eq!(ticks_to_duration(ticks, hz), want, "{ticks} at {hz}");
        }
        assert_eq!(micros_per_request(Duration::from_secs(1), 1_000_000), 1.0);
        assert_eq!(micros_per_request(Duration::from_secs(1), 0), 0.0);
        let own = process_cpu(std::process::id()).expect("own CPU time");
        assert!(own < Duration::from_secs(3600), "{own:?}");
    }
}
