//! The open-file limit: a proxy started with a low soft `RLIMIT_NOFILE` (1024 is common) fails
//! `accept` with "Too many open files" long before `--max-connections`. At start the soft limit
//! is raised to the hard one, and a configuration whose connections cannot fit under it is
//! refused (exit 64) before any port is bound.
//!
//! ```text
//!  needed = max_connections + RESERVED_FDS   (upstream, ZooKeeper, admin, the process itself)
//!  soft < needed <= hard  -> soft raised (to the hard limit)
//!  hard < needed          -> refused: one line, exit 64
//! ```

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors the process needs besides client connections: standard streams, the runtime's
/// epoll and wakers, the two listeners, a log file.
pub const PROCESS_FDS: u64 = 32;
/// Connections to MetaServers: one per MetaServer of every cluster routed to.
pub const UPSTREAM_FDS: u64 = 256;
/// The ZooKeeper session, and a second one while it is rebuilt.
pub const ZOOKEEPER_FDS: u64 = 4;
/// Admin HTTP connections (probes, scrapes).
pub const ADMIN_FDS: u64 = 64;
/// Everything but client connections; one more than the cap is needed to accept and refuse.
pub const RESERVED_FDS: u64 = PROCESS_FDS + UPSTREAM_FDS + ZOOKEEPER_FDS + ADMIN_FDS + 1;

/// What to do with the limit: raise the soft limit to `raise_to`, or nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub needed: u64,
    pub raise_to: Option<u64>,
}

/// The plan for `max_connections` under a soft and a hard limit (`None`: unlimited), or why it
/// cannot work. The soft limit goes to the hard one (more descriptors cost nothing until used);
/// with no hard limit, to what is needed.
pub fn plan(soft: Option<u64>, hard: Option<u64>, max_connections: usize) -> Result<Plan, String> {
    let needed = (max_connections as u64).saturating_add(RESERVED_FDS);
    if let Some(hard) = hard
        && hard < needed
    {
        return Err(format!(
            "max-connections: {max_connections} connections need {needed} open files \
             ({RESERVED_FDS} besides the connections), but the hard limit (ulimit -Hn) is {hard}"
        ));
    }
    let target = hard.unwrap_or(needed).max(needed);
    let raise_to = match soft {
        None => None,
        Some(soft) if soft >= target => None,
        Some(_) => Some(target),
    };
    Ok(Plan { needed, raise_to })
}

/// Raises this process's soft limit as [`plan`] says: a line for the log, or why it cannot start.
pub fn raise_for(max_connections: usize) -> Result<String, String> {
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let plan = plan(current, maximum, max_connections)?;
    let show = |l: Option<u64>| l.map_or_else(|| "unlimited".to_owned(), |l| l.to_string());
    match plan.raise_to {
        None => Ok(format!(
            "open files: limit {} ({} needed)",
            show(current),
            plan.needed
        )),
        Some(to) => {
            setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(to),
                    maximum,
                },
            )
            .map_err(|e| {
                format!(
                    "max-connections: cannot raise the open-file limit from {} to {to}: {e}",
                    show(current)
                )
            })?;
            Ok(format!(
                "open files: limit raised from {} to {to} ({} needed)",
                show(current),
                plan.needed
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_goes_to_the_hard_one_or_the_start_is_refused() {
        let r = RESERVED_FDS;
        // (soft, hard, max connections) -> raise to, or refused
        type Case = (Option<u64>, Option<u64>, usize, Result<Option<u64>, ()>);
        let cases: &[Case] = &[
            (Some(1024), Some(524_288), 10_000, Ok(Some(524_288))),
            (Some(1024), Some(1024), 10, Ok(None)),
            (Some(1024), Some(1024), 1024, Err(())),
            (Some(1024), Some(10_000 + r), 10_000, Ok(Some(10_000 + r))),
            (Some(1024), Some(10_000 + r - 1), 10_000, Err(())),
            (Some(1_048_576), Some(1_048_576), 10_000, Ok(None)),
            (Some(1024), None, 10_000, Ok(Some(10_000 + r))),
            (Some(100_000), None, 10_000, Ok(None)),
            (None, None, 10_000, Ok(None)),
            (Some(1024), Some(u64::MAX), usize::MAX, Ok(Some(u64::MAX))),
        ];
        for (soft, hard, max, want) in cases {
            let got = plan(*soft, *hard, *max).map(|p| p.raise_to).map_err(|_| ());
            assert_eq!(got, *want, "soft {soft:?} hard {hard:?} max {max}");
        }
        let e = plan(Some(256), Some(512), 10_000).expect_err("refused");
        assert!(
            e.starts_with("max-connections: ") && e.contains("512") && !e.contains('\n'),
            "{e}"
        );
    }
}
