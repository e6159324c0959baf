//! What the load tool's workloads (`load`: query_config, `kv`: reads and writes) share: the
//! budget that ends a run, the latency histogram and its percentiles, and error counts as a
//! report line.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

/// When a run ends: after a time, or after sending a number of requests. Requests in flight
/// at that point are still waited for (up to the timeout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Until {
    Elapsed(Duration),
    Requests(u64),
}

/// Who may start one more request or operation: none once the run's [`Until`] is reached or it
/// was stopped.
pub(crate) struct Budget {
    issued: AtomicU64,
    limit: Option<u64>,
    deadline: Option<Instant>,
    stopped: AtomicBool,
}

impl Budget {
    /// The budget of a run that started at `started`.
    pub(crate) fn new(until: Until, started: Instant) -> Self {
        Budget {
            issued: AtomicU64::new(0),
            limit: match until {
                Until::Requests(n) => Some(n),
                Until::Elapsed(_) => None,
            },
            deadline: match until {
                Until::Elapsed(d) => Some(started + d),
                Until::Requests(_) => None,
            },
            stopped: AtomicBool::new(false),
        }
    }

    /// Whether nothing more may start (without taking anything).
    pub(crate) fn over(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
            || self.deadline.is_some_and(|d| Instant::now() >= d)
            || self
                .limit
                .is_some_and(|n| self.issued.load(Ordering::Relaxed) >= n)
    }

    /// Takes one request from the budget; false when nothing more may start.
    pub(crate) fn take(&self) -> bool {
        if self.stopped.load(Ordering::Acquire)
            || self.deadline.is_some_and(|d| Instant::now() >= d)
        {
            return false;
        }
        match self.limit {
            Some(n) => self.issued.fetch_add(1, Ordering::Relaxed) < n,
            None => true,
        }
    }

    /// Ends the run early: nothing more is taken.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
    }
}

/// Error counts by kind as a report line: `kind n  kind n`, or `none`.
pub fn kinds(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join("  ")
}

/// Latency percentiles in microseconds (within 1% of the exact values).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

/// A duration in whole microseconds (saturating).
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A log-linear histogram: exact below 128, then 128 buckets per power of two (under 1% error).
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; ((64 - SUB_BITS as usize) + 1) << SUB_BITS],
            total: 0,
            max: 0,
        }
    }
}

impl Histogram {
    fn index(v: u64) -> usize {
        if v < SUB {
            return v as usize;
        }
        let shift = 63 - v.leading_zeros() - SUB_BITS;
        (((shift + 1) as u64) << SUB_BITS | ((v >> shift) - SUB)) as usize
    }

    /// The middle of the values that fall in bucket `i`.
    fn value(i: usize) -> u64 {
        let i = i as u64;
        if i < SUB {
            return i;
        }
        let shift = (i >> SUB_BITS) - 1;
        let low = (SUB + (i & (SUB - 1))) << shift;
        low + ((1u64 << shift) >> 1)
    }

    pub fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value below which a fraction `q` of the recorded values fall.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::value(i).min(self.max);
            }
        }
        self.max
    }

    pub fn summary(&self) -> Latency {
        Latency {
            p50: self.quantile(0.50),
            p90: self.quantile(0.90),
            p99: self.quantile(0.99),
            p999: self.quantile(0.999),
            max: self.max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_contiguous_and_close() {
        let mut last = 0;
        for v in [
            0,
            1,
            127,
            128,
            129,
            255,
            256,
            1000,
            123_456,
            9_999_999,
            u64::MAX / 3,
        ] {
            let i = Histogram::index(v);
            assert!(i >= last, "index of {v} went back");
            last = i;
            let mid = Histogram::value(i);
            let err = (mid as f64 - v as f64).abs() / (v.max(1) as f64);
            assert!(err < 0.01, "{v} -> bucket {i} value {mid}");
        }
        assert!(Histogram::index(u64::MAX) < Histogram::default().counts.len());
    }

    #[test]
    fn histogram_quantiles() {
        let mut h = Histogram::default();
        for v in 1..=1000 {
            h.record(v);
        }
        let s = h.summary();
        assert!((495..=505).contains(&s.p50), "{s:?}");
        assert!((985..=1000).contains(&s.p99), "{s:?}");
        assert_eq!(s.max, 1000);
        let mut other = Histogram::default();
        other.record(5000);
        h.merge(&other);
        assert_eq!((h.count(), h.summary().max), (1001, 5000));
        assert_eq!(Histogram::default().summary(), Latency::default());
    }

    #[test]
    fn budgets_end_by_count_and_by_stop() {
        let budget = Budget::new(Until::Requests(2), Instant::now());
        assert!(!budget.over());
        assert!(budget.take() && budget.take());
        assert!(budget.over() && !budget.take());
        let budget = Budget::new(Until::Elapsed(Duration::from_secs(60)), Instant::now());
        assert!(budget.take());
        budget.stop();
        assert!(budget.over() && !budget.take());
        assert_eq!(kinds(&BTreeMap::new()), "none");
        assert_eq!(
            kinds(&BTreeMap::from([("a".into(), 1), ("b".into(), 2)])),
            "a 1  b 2"
        );
    }
}
