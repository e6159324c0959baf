//! The operator's two clocks in one: tokio's monotonic clock (probe windows, waits; paused in
//! tests) and the wall clock as milliseconds since the epoch, for the times kept in znodes and
//! statuses, which must mean the same after a restart. The wall time is the system clock read
//! once, when the clock is made, plus tokio's time since: it follows paused time in tests, and a
//! system clock stepped while the operator runs does not make a phase end early or late.

use tokio::time::Instant;

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base_ms: i64,
    base: Instant,
}

impl Clock {
    /// A clock that reads the system time now.
    pub fn system() -> Self {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Clock::starting_at(ms)
    }

    /// A clock whose wall time is `ms` now (tests).
    pub fn starting_at(ms: i64) -> Self {
        Clock {
            base_ms: ms,
            base: Instant::now(),
        }
    }

    pub fn now(&self) -> Instant {
        Instant::now()
    }

    /// The wall time of `at`, in milliseconds since the epoch.
    pub fn ms_at(&self, at: Instant) -> i64 {
        let since = at.saturating_duration_since(self.base);
        self.base_ms
            .saturating_add(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
    }

    /// The wall time now, in milliseconds since the epoch.
    pub fn now_ms(&self) -> i64 {
        self.ms_at(Instant::now())
    }
}

/// `ms` since the epoch as Kubernetes writes times (RFC 3339, whole seconds, UTC).
pub fn rfc3339(ms: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(ms.div_euclid(1000))
        .map(|t| t.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn wall_time_follows_tokio_time() {
        let clock = Clock::starting_at(1_767_225_600_000);
        assert_eq!(clock.now_ms(), 1_767_225_600_000);
        tokio::time::sleep(Duration::from_secs(90)).await;
        assert_eq!(clock.now_ms(), 1_767_225_690_000);
        assert_eq!(rfc3339(clock.now_ms()), "2026-01-01T00:01:30Z");
    }
}
