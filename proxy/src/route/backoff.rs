//! Retry waits with "full jitter": retry `n` (from 0) waits a uniformly random time in
//! `[0, min(cap, base * 2^n))`. Proxies that lost ZooKeeper at the same moment thus come back
//! spread over the whole window instead of in lockstep. The randomness comes from a seeded
//! xorshift generator, so a test can replay a sequence; the waits themselves go through
//! `tokio::time`.

use std::hash::BuildHasher;
use std::time::Duration;

/// The longest wait of retry `attempt`: `base * 2^attempt`, at most `cap`.
pub(crate) fn ceiling(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let factor = 1u32.checked_shl(attempt).unwrap_or(u32::MAX);
    base.checked_mul(factor).map_or(cap, |d| d.min(cap))
}

/// The wait of retry `attempt` for the random draw `draw`: the fraction `draw / 2^64` of the
/// ceiling, so 0 waits nothing and `u64::MAX` almost the whole ceiling.
pub(crate) fn full_jitter(base: Duration, cap: Duration, attempt: u32, draw: u64) -> Duration {
    let ceiling = ceiling(base, cap, attempt).as_nanos();
    let nanos = ceiling.saturating_mul(u128::from(draw)) >> 64;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// A xorshift64* generator: cheap, good enough to spread retries, reproducible from its seed.
#[derive(Clone, Debug)]
pub(crate) struct Jitter(u64);

impl Jitter {
    pub(crate) fn seeded(seed: u64) -> Self {
        // splitmix64 of the seed: close seeds give unrelated sequences, and the state is never 0
        // (a xorshift stuck at 0 stays there).
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Jitter((z ^ (z >> 31)) | 1)
    }

    /// Seeded differently in every process (from the standard library's hash randomness).
    pub(crate) fn from_entropy() -> Self {
        let seed = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
        Jitter::seeded(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The retries of one operation: each [`Backoff::next_delay`] is the wait before the next try.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
    jitter: Jitter,
}

impl Backoff {
    pub(crate) fn new(base: Duration, cap: Duration, jitter: Jitter) -> Self {
        Backoff {
            base,
            cap,
            attempt: 0,
            jitter,
        }
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = full_jitter(self.base, self.cap, self.attempt, self.jitter.next_u64());
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// After a success: the next failure waits as little as the first one.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(100);
    const CAP: Duration = Duration::from_secs(5);
    const HALF: u64 = 1 << 63;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn full_jitter_from_a_table() {
        let cases: &[(u32, u64, Duration)] = &[
            // (attempt, draw, wait)
            (0, 0, Duration::ZERO),
            (0, HALF, ms(50)),
            (0, u64::MAX, Duration::from_nanos(99_999_999)),
            (1, HALF, ms(100)),
            (3, HALF, ms(400)),
            (3, HALF / 2, ms(200)),
            (5, HALF, ms(1600)),
            // 100 ms * 2^6 = 6.4 s: capped at 5 s
            (6, HALF, ms(2500)),
            (6, u64::MAX, Duration::from_nanos(4_999_999_999)),
            (31, HALF, ms(2500)),
            (32, HALF, ms(2500)),
            (u32::MAX, 0, Duration::ZERO),
            (u32::MAX, HALF, ms(2500)),
        ];
        for &(attempt, draw, want) in cases {
            assert_eq!(
                full_jitter(BASE, CAP, attempt, draw),
                want,
                "attempt {attempt}, draw {draw:#x}"
            );
        }
    }

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let ceilings: Vec<Duration> = (0..8).map(|n| ceiling(BASE, CAP, n)).collect();
        assert_eq!(
            ceilings,
            [100, 200, 400, 800, 1600, 3200, 5000, 5000].map(ms)
        );
        assert_eq!(ceiling(Duration::MAX, CAP, 3), CAP, "no overflow");
    }

    #[test]
    fn a_seed_replays_its_sequence_and_reset_starts_over() {
        let waits = |seed| {
            let mut b = Backoff::new(BASE, CAP, Jitter::seeded(seed));
            (0..10).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(waits(7), waits(7));
        assert_ne!(waits(7), waits(8));
        for (n, wait) in waits(7).into_iter().enumerate() {
            assert!(wait < ceiling(BASE, CAP, n as u32), "retry {n}: {wait:?}");
        }
        let mut b = Backoff::new(BASE, CAP, Jitter::seeded(1));
        for _ in 0..20 {
            b.next_delay();
        }
        b.reset();
        assert!(b.next_delay() < BASE, "the first retry again");
    }

    #[test]
    fn draws_spread_over_the_window() {
        // Not a statistics test: only that the generator is not stuck and covers the range.
        let mut j = Jitter::seeded(0);
        let draws: Vec<Duration> = (0..1000)
            .map(|_| full_jitter(BASE, CAP, 0, j.next_u64()))
            .collect();
        let low = draws.iter().filter(|d| **d < ms(10)).count();
        let high = draws.iter().filter(|d| **d >= ms(90)).count();
        assert!(low > 30 && high > 30, "low {low}, high {high}");
        let mut a = Jitter::from_entropy();
        assert_ne!(a.next_u64(), a.next_u64());
    }
}
