//! A partition's data in memory: values by storage key with their expiry, the partition's
//! decree (one per applied write), and the log of committed writes a duplication ships.
//!
//! Values are kept in key order, so that the sort keys of one hash key are contiguous: the storage
//! key starts with the hash key's length and bytes (`docs/protocol.md` §15.5). Expiry is in Pegasus epoch seconds
//! (seconds since 2016-01-01 UTC); a value with `0 < expire_ts <= now` is gone for every read.
//! The operations here are plain functions of the data and `now`, driven by the replica server.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use pegasus_rpc::codec::key::generate_key;
use pegasus_rpc::codec::{
    Blob, CasCheckType, CheckAndSetRequest, FilterType, KeyValue, MultiGetRequest, rocksdb,
};

/// Unix seconds of 2016-01-01 00:00:00 UTC, where Pegasus' expiry clock starts.
pub const PEGASUS_EPOCH: u64 = 1_451_606_400;

/// Wall-clock time that follows `tokio::time`: read once at start, then advanced by the tokio
/// clock, so that a test with paused time sees values expire when it advances time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    wall_at_start: Duration,
    start: tokio::time::Instant,
}

impl Clock {
    pub fn new() -> Self {
        Clock {
            wall_at_start: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
            start: tokio::time::Instant::now(),
        }
    }

    pub fn since_unix(&self) -> Duration {
        self.wall_at_start + self.start.elapsed()
    }

    /// Now in microseconds since the Unix epoch (duplication entries' timestamps).
    pub fn unix_micros(&self) -> i64 {
        i64::try_from(self.since_unix().as_micros()).unwrap_or(i64::MAX)
    }

    /// Now in Pegasus epoch seconds (expiry).
    pub fn pegasus_secs(&self) -> u32 {
        u32::try_from(self.since_unix().as_secs().saturating_sub(PEGASUS_EPOCH)).unwrap_or(u32::MAX)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// A stored value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub value: Bytes,
    /// Pegasus epoch seconds; 0 for none.
    pub expire_ts: u32,
}

impl Stored {
    fn alive(&self, now: u32) -> bool {
        self.expire_ts == 0 || self.expire_ts > now
    }
}

/// A committed write, as a duplication ships it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    pub decree: i64,
    /// When it was applied, µs since the Unix epoch.
    pub timestamp_us: i64,
    /// The rpc name.
    pub code: &'static str,
    /// The args struct as the client sent it.
    pub args: Bytes,
}

/// One partition's state.
#[derive(Debug, Default)]
pub struct PartitionData {
    data: BTreeMap<Vec<u8>, Stored>,
    last_decree: i64,
    /// Writes not yet confirmed by every duplication; empty when the table duplicates nowhere.
    log: VecDeque<LogEntry>,
}

fn ttl_value(expire_ts_seconds: i32) -> u32 {
    u32::try_from(expire_ts_seconds).unwrap_or(0)
}

impl PartitionData {
    pub fn last_decree(&self) -> i64 {
        self.last_decree
    }

    /// Keys stored, expired ones included until overwritten.
    pub fn key_count(&self) -> usize {
        self.data.len()
    }

    /// Takes the next decree for a write and, when `log` is given, records the write for the
    /// duplications.
    fn commit(&mut self, log: Option<(&'static str, &Bytes, i64)>) -> i64 {
        self.last_decree += 1;
        if let Some((code, args, timestamp_us)) = log {
            self.log.push_back(LogEntry {
                decree: self.last_decree,
                timestamp_us,
                code,
                args: args.clone(),
            });
        }
        self.last_decree
    }

    /// The logged writes after `decree`, oldest first, up to `max_bytes` of args (at least one).
    pub fn log_after(
        &self,
        decree: i64,
        max_bytes: usize,
        ready: impl Fn(&LogEntry) -> bool,
    ) -> Vec<LogEntry> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for e in self.log.iter().filter(|e| e.decree > decree) {
            if !ready(e) || (!out.is_empty() && bytes + e.args.len() > max_bytes) {
                break;
            }
            bytes += e.args.len();
            out.push(e.clone());
        }
        out
    }

    /// Drops logged writes up to `decree` (every duplication has confirmed them).
    pub fn trim_log(&mut self, decree: i64) {
        while self.log.front().is_some_and(|e| e.decree <= decree) {
            self.log.pop_front();
        }
    }

    pub fn log_len(&self) -> usize {
        self.log.len()
    }

    pub fn get(&self, key: &[u8], now: u32) -> Option<&Stored> {
        self.data.get(key).filter(|s| s.alive(now))
    }

    /// PUT: returns the decree.
    pub fn put(&mut self, key: &[u8], value: Bytes, expire_ts: i32, log: LogArgs<'_>) -> i64 {
        self.data.insert(
            key.to_vec(),
            Stored {
                value,
                expire_ts: ttl_value(expire_ts),
            },
        );
        self.commit(log.0)
    }

    /// REMOVE: returns the decree.
    pub fn remove(&mut self, key: &[u8], log: LogArgs<'_>) -> i64 {
        self.data.remove(key);
        self.commit(log.0)
    }

    /// MULTI_PUT: the decree, or the rocksdb error for an empty list or a bad hash key.
    pub fn multi_put(
        &mut self,
        hash_key: &[u8],
        kvs: &[KeyValue],
        expire_ts: i32,
        log: LogArgs<'_>,
    ) -> Result<i64, i32> {
        if kvs.is_empty() {
            return Err(rocksdb::INVALID_ARGUMENT);
        }
        let keys = kvs
            .iter()
            .map(|kv| generate_key(hash_key, kv.key.as_slice()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| rocksdb::INVALID_ARGUMENT)?;
        for (key, kv) in keys.into_iter().zip(kvs) {
            self.data.insert(
                key,
                Stored {
                    value: kv.value.0.clone(),
                    expire_ts: ttl_value(expire_ts),
                },
            );
        }
        Ok(self.commit(log.0))
    }

    /// MULTI_REMOVE: (count asked, decree), or the rocksdb error for an empty list.
    pub fn multi_remove(
        &mut self,
        hash_key: &[u8],
        sort_keys: &[Blob],
        log: LogArgs<'_>,
    ) -> Result<(i64, i64), i32> {
        if sort_keys.is_empty() {
            return Err(rocksdb::INVALID_ARGUMENT);
        }
        for sk in sort_keys {
            let key =
                generate_key(hash_key, sk.as_slice()).map_err(|_| rocksdb::INVALID_ARGUMENT)?;
            self.data.remove(&key);
        }
        Ok((sort_keys.len() as i64, self.commit(log.0)))
    }

    /// TTL: the remaining seconds (-1: none), `None` when missing or expired.
    pub fn ttl(&self, key: &[u8], now: u32) -> Option<i32> {
        self.get(key, now).map(|s| {
            if s.expire_ts == 0 {
                -1
            } else {
                i32::try_from(s.expire_ts - now).unwrap_or(i32::MAX)
            }
        })
    }

    /// The live values of one hash key, in sort-key order.
    fn hash_key_range<'a>(
        &'a self,
        hash_key: &[u8],
        now: u32,
    ) -> impl DoubleEndedIterator<Item = (&'a [u8], &'a Stored)> + 'a {
        // A hash key too long for a storage key has no values. Otherwise the prefix starts with
        // a length below 0xFFFF, so it has a successor.
        let prefix = generate_key(hash_key, b"").ok();
        let plen = prefix.as_ref().map_or(0, Vec::len);
        let range = prefix.and_then(|prefix| {
            let end = prefix_successor(&prefix)?;
            Some(
                self.data
                    .range::<[u8], _>((Bound::Included(&prefix[..]), Bound::Excluded(&end[..]))),
            )
        });
        range
            .into_iter()
            .flatten()
            .filter(move |(_, s)| s.alive(now))
            .map(move |(k, s)| (&k[plen..], s))
    }

    /// SORTKEY_COUNT.
    pub fn sortkey_count(&self, hash_key: &[u8], now: u32) -> i64 {
        self.hash_key_range(hash_key, now).count() as i64
    }

    /// MULTI_GET: (rocksdb error, key-values). Point reads when sort keys are given, a range read
    /// otherwise.
    pub fn multi_get(&self, req: &MultiGetRequest, now: u32) -> (i32, Vec<KeyValue>) {
        let mut limit = Limit::new(req.max_kv_count, req.max_kv_size);
        let mut out = Vec::new();
        let mut push = |sk: &[u8], s: &Stored, out: &mut Vec<KeyValue>| -> bool {
            let value = if req.no_value {
                Bytes::new()
            } else {
                s.value.clone()
            };
            if !limit.take(sk.len() + value.len()) {
                return false;
            }
            out.push(KeyValue::new(Bytes::copy_from_slice(sk), value));
            true
        };
        if !req.sort_keys.is_empty() {
            for sk in &req.sort_keys {
                let Ok(key) = generate_key(req.hash_key.as_slice(), sk.as_slice()) else {
                    return (rocksdb::INVALID_ARGUMENT, Vec::new());
                };
                if let Some(s) = self.get(&key, now)
                    && !push(sk.as_slice(), s, &mut out)
                {
                    return (rocksdb::INCOMPLETE, out);
                }
            }
            return (rocksdb::OK, out);
        }
        let filter = req.sort_key_filter_type;
        if !(0..=3).contains(&filter.0) {
            return (rocksdb::INVALID_ARGUMENT, Vec::new());
        }
        let pattern = req.sort_key_filter_pattern.as_slice();
        let start = req.start_sortkey.as_slice();
        let stop = req.stop_sortkey.as_slice();
        let in_range = |sk: &[u8]| {
            let after_start = if req.start_inclusive {
                sk >= start
            } else {
                sk > start
            };
            let before_stop = stop.is_empty()
                || if req.stop_inclusive {
                    sk <= stop
                } else {
                    sk < stop
                };
            after_start && before_stop && matches_filter(filter, pattern, sk)
        };
        let range = self.hash_key_range(req.hash_key.as_slice(), now);
        let items: Box<dyn Iterator<Item = (&[u8], &Stored)>> = if req.reverse {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        for (sk, s) in items.filter(|(sk, _)| in_range(sk)) {
            if !push(sk, s, &mut out) {
                return (rocksdb::INCOMPLETE, out);
            }
        }
        (rocksdb::OK, out)
    }

    /// INCR: (new value, decree), or the rocksdb error for a non-integer value or an overflow.
    pub fn incr(
        &mut self,
        key: &[u8],
        increment: i64,
        expire_ts_seconds: i32,
        now: u32,
    ) -> Result<(i64, i64), i32> {
        let old = self.get(key, now).cloned();
        let old_value = match &old {
            None => 0,
            Some(s) => std::str::from_utf8(&s.value)
                .ok()
                .and_then(|t| t.parse::<i64>().ok())
                .ok_or(rocksdb::INVALID_ARGUMENT)?,
        };
        let new_value = old_value
            .checked_add(increment)
            .ok_or(rocksdb::INVALID_ARGUMENT)?;
        let expire_ts = match expire_ts_seconds {
            0 => old.map(|s| s.expire_ts).unwrap_or(0),
            t if t > 0 => ttl_value(t),
            _ => 0,
        };
        self.data.insert(
            key.to_vec(),
            Stored {
                value: Bytes::from(new_value.to_string()),
                expire_ts,
            },
        );
        Ok((new_value, self.commit(None)))
    }

    /// CHECK_AND_SET: what the response reports, and the decree when the value was set.
    pub fn check_and_set(&mut self, req: &CheckAndSetRequest, now: u32) -> CasOutcome {
        let hash_key = req.hash_key.as_slice();
        let (Ok(check_key), Ok(set_key)) = (
            generate_key(hash_key, req.check_sort_key.as_slice()),
            generate_key(
                hash_key,
                if req.set_diff_sort_key {
                    req.set_sort_key.as_slice()
                } else {
                    req.check_sort_key.as_slice()
                },
            ),
        ) else {
            return CasOutcome::error(rocksdb::INVALID_ARGUMENT);
        };
        let current = self.get(&check_key, now).map(|s| s.value.clone());
        let passed = match check(
            req.check_type,
            current.as_deref(),
            req.check_operand.as_slice(),
        ) {
            Ok(passed) => passed,
            Err(e) => return CasOutcome::error(e),
        };
        let mut outcome = CasOutcome {
            error: if passed {
                rocksdb::OK
            } else {
                rocksdb::TRY_AGAIN
            },
            check_value: None,
            decree: None,
        };
        if req.return_check_value {
            outcome.check_value = Some(current);
        }
        if passed {
            self.data.insert(
                set_key,
                Stored {
                    value: req.set_value.0.clone(),
                    expire_ts: ttl_value(req.set_expire_ts_seconds),
                },
            );
            outcome.decree = Some(self.commit(None));
        }
        outcome
    }
}

/// Whether (and what) a write records in the duplication log: `(rpc name, args, timestamp µs)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogArgs<'a>(pub Option<(&'static str, &'a Bytes, i64)>);

/// What check_and_set did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CasOutcome {
    pub error: i32,
    /// `Some` when the request asked for it: the checked value, `None` inside when absent.
    pub check_value: Option<Option<Bytes>>,
    pub decree: Option<i64>,
}

impl CasOutcome {
    fn error(error: i32) -> Self {
        CasOutcome {
            error,
            check_value: None,
            decree: None,
        }
    }
}

/// multi_get's count and size limits (≤ 0: none).
struct Limit {
    count: Option<usize>,
    size: Option<usize>,
    taken: usize,
    bytes: usize,
}

impl Limit {
    fn new(count: i32, size: i32) -> Self {
        let positive = |v: i32| usize::try_from(v).ok().filter(|&v| v > 0);
        Limit {
            count: positive(count),
            size: positive(size),
            taken: 0,
            bytes: 0,
        }
    }

    /// Counts one more pair of `len` bytes; false when a limit was already reached.
    fn take(&mut self, len: usize) -> bool {
        if self.count.is_some_and(|c| self.taken >= c) || self.size.is_some_and(|s| self.bytes >= s)
        {
            return false;
        }
        self.taken += 1;
        self.bytes += len;
        true
    }
}

/// The smallest byte string above every string that starts with `prefix`; `None` when there is
/// none (the prefix is all 0xFF bytes).
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|&b| b != 0xFF)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1;
    Some(end)
}

fn matches_filter(filter: FilterType, pattern: &[u8], sk: &[u8]) -> bool {
    match filter {
        FilterType::MATCH_ANYWHERE => {
            pattern.is_empty() || sk.windows(pattern.len()).any(|w| w == pattern)
        }
        FilterType::MATCH_PREFIX => sk.starts_with(pattern),
        FilterType::MATCH_POSTFIX => sk.ends_with(pattern),
        _ => true,
    }
}

fn as_int(v: &[u8]) -> Option<i64> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// check_and_set's check of `value` (absent: `None`) against `operand`; `Err` for an unknown
/// check type or an operand that is not an integer where one is needed.
pub fn check(kind: CasCheckType, value: Option<&[u8]>, operand: &[u8]) -> Result<bool, i32> {
    use CasCheckType as C;
    let invalid = rocksdb::INVALID_ARGUMENT;
    Ok(match kind {
        C::NO_CHECK => true,
        C::VALUE_NOT_EXIST => value.is_none(),
        C::VALUE_NOT_EXIST_OR_EMPTY => value.is_none_or(|v| v.is_empty()),
        C::VALUE_EXIST => value.is_some(),
        C::VALUE_NOT_EMPTY => value.is_some_and(|v| !v.is_empty()),
        C::VALUE_MATCH_ANYWHERE | C::VALUE_MATCH_PREFIX | C::VALUE_MATCH_POSTFIX => {
            let filter = FilterType(kind.0 - 4);
            value.is_some_and(|v| matches_filter(filter, operand, v))
        }
        C::VALUE_BYTES_LESS
        | C::VALUE_BYTES_LESS_OR_EQUAL
        | C::VALUE_BYTES_EQUAL
        | C::VALUE_BYTES_GREATER_OR_EQUAL
        | C::VALUE_BYTES_GREATER => value.is_some_and(|v| compare(kind.0 - 8, v.cmp(operand))),
        C::VALUE_INT_LESS
        | C::VALUE_INT_LESS_OR_EQUAL
        | C::VALUE_INT_EQUAL
        | C::VALUE_INT_GREATER_OR_EQUAL
        | C::VALUE_INT_GREATER => {
            let operand = as_int(operand).ok_or(invalid)?;
            match value {
                None => false,
                Some(v) => compare(kind.0 - 13, as_int(v).ok_or(invalid)?.cmp(&operand)),
            }
        }
        _ => return Err(invalid),
    })
}

/// `rel`: 0 less, 1 less or equal, 2 equal, 3 greater or equal, 4 greater.
fn compare(rel: i32, ord: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    match rel {
        0 => ord == Less,
        1 => ord != Greater,
        2 => ord == Equal,
        3 => ord != Less,
        _ => ord == Greater,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(h: &str, s: &str) -> Vec<u8> {
        generate_key(h.as_bytes(), s.as_bytes()).expect("fits")
    }

    fn b(s: &str) -> Blob {
        Blob::from_slice(s.as_bytes())
    }

    #[test]
    fn put_get_remove_and_decrees() {
        let mut p = PartitionData::default();
        assert_eq!(p.put(&key("h", "a"), "1".into(), 0, LogArgs::default()), 1);
        assert_eq!(
            p.put(&key("h", "b"), "2".into(), 100, LogArgs::default()),
            2
        );
        assert_eq!(
            p.get(&key("h", "a"), 50).map(|s| &s.value[..]),
            Some(&b"1"[..])
        );
        assert_eq!(p.ttl(&key("h", "a"), 50), Some(-1));
        assert_eq!(p.ttl(&key("h", "b"), 50), Some(50));
        // Expired at its second.
        assert_eq!(p.get(&key("h", "b"), 100), None);
        assert_eq!(p.ttl(&key("h", "b"), 100), None);
        assert_eq!(p.sortkey_count(b"h", 50), 2);
        assert_eq!(p.sortkey_count(b"h", 100), 1);
        assert_eq!(p.remove(&key("h", "a"), LogArgs::default()), 3);
        assert_eq!(p.get(&key("h", "a"), 0), None);
        assert_eq!(p.last_decree(), 3);
        assert_eq!(p.log_len(), 0, "nothing logged without a duplication");
    }

    #[test]
    fn hash_keys_do_not_bleed_into_each_other() {
        let mut p = PartitionData::default();
        for (h, s) in [("h", "1"), ("h1", ""), ("h", "2"), ("", "h")] {
            p.put(&key(h, s), "v".into(), 0, LogArgs::default());
        }
        assert_eq!(p.sortkey_count(b"h", 0), 2);
        assert_eq!(p.sortkey_count(b"h1", 0), 1);
        assert_eq!(p.sortkey_count(b"", 0), 1);
    }

    #[test]
    fn multi_writes() {
        let mut p = PartitionData::default();
        let kvs = vec![KeyValue::new("a", "1"), KeyValue::new("b", "2")];
        assert_eq!(p.multi_put(b"h", &kvs, 0, LogArgs::default()), Ok(1));
        assert_eq!(
            p.multi_put(b"h", &[], 0, LogArgs::default()),
            Err(rocksdb::INVALID_ARGUMENT)
        );
        assert_eq!(
            p.multi_remove(b"h", &[b("a"), b("zz")], LogArgs::default()),
            Ok((2, 2))
        );
        assert_eq!(p.sortkey_count(b"h", 0), 1);
        assert_eq!(
            p.multi_remove(b"h", &[], LogArgs::default()),
            Err(rocksdb::INVALID_ARGUMENT)
        );
    }

    fn sks(kvs: &[KeyValue]) -> Vec<String> {
        kvs.iter()
            .map(|kv| String::from_utf8_lossy(kv.key.as_slice()).into_owned())
            .collect()
    }

    #[test]
    fn multi_get_points_and_ranges() {
        let mut p = PartitionData::default();
        for s in ["", "a", "ab", "b", "ba", "c"] {
            p.put(&key("h", s), format!("v{s}").into(), 0, LogArgs::default());
        }
        p.put(&key("h", "x"), "gone".into(), 5, LogArgs::default());
        let base = MultiGetRequest {
            hash_key: b("h"),
            ..Default::default()
        };
        let run = |req: MultiGetRequest| {
            let (err, kvs) = p.multi_get(&req, 10);
            (err, sks(&kvs))
        };
        // Points, in request order, missing and expired ones skipped.
        assert_eq!(
            run(MultiGetRequest {
                sort_keys: vec![b("b"), b("nope"), b("a"), b("x")],
                ..base.clone()
            }),
            (0, vec!["b".into(), "a".into()])
        );
        // Node.js' request: a range over the whole hash key, start exclusive, skips "".
        assert_eq!(run(base.clone()).1, ["a", "ab", "b", "ba", "c"]);
        assert_eq!(
            run(MultiGetRequest {
                start_inclusive: true,
                ..base.clone()
            })
            .1,
            ["", "a", "ab", "b", "ba", "c"]
        );
        assert_eq!(
            run(MultiGetRequest {
                start_sortkey: b("a"),
                stop_sortkey: b("b"),
                start_inclusive: true,
                stop_inclusive: true,
                ..base.clone()
            })
            .1,
            ["a", "ab", "b"]
        );
        assert_eq!(
            run(MultiGetRequest {
                sort_key_filter_type: FilterType::MATCH_PREFIX,
                sort_key_filter_pattern: b("b"),
                reverse: true,
                ..base.clone()
            })
            .1,
            ["ba", "b"]
        );
        assert_eq!(
            run(MultiGetRequest {
                max_kv_count: 2,
                ..base.clone()
            }),
            (rocksdb::INCOMPLETE, vec!["a".into(), "ab".into()])
        );
        assert_eq!(
            run(MultiGetRequest {
                sort_key_filter_type: FilterType(9),
                ..base.clone()
            })
            .0,
            rocksdb::INVALID_ARGUMENT
        );
        let (_, kvs) = p.multi_get(
            &MultiGetRequest {
                no_value: true,
                sort_keys: vec![b("a")],
                ..base
            },
            10,
        );
        assert!(kvs[0].value.as_slice().is_empty());
    }

    #[test]
    fn incr_and_check_and_set() {
        let mut p = PartitionData::default();
        let k = key("h", "n");
        assert_eq!(p.incr(&k, 5, 0, 0), Ok((5, 1)));
        assert_eq!(p.incr(&k, -7, 0, 0), Ok((-2, 2)));
        assert_eq!(p.incr(&k, i64::MAX, 0, 0), Ok((i64::MAX - 2, 3)));
        assert_eq!(p.incr(&k, 3, 0, 0), Err(rocksdb::INVALID_ARGUMENT));
        p.put(&key("h", "s"), "text".into(), 0, LogArgs::default());
        assert_eq!(
            p.incr(&key("h", "s"), 1, 0, 0),
            Err(rocksdb::INVALID_ARGUMENT)
        );

        let cas = |check_type, operand: &str, value: &str| CheckAndSetRequest {
            hash_key: b("h"),
            check_sort_key: b("c"),
            check_type,
            check_operand: b(operand),
            set_value: b(value),
            return_check_value: true,
            ..Default::default()
        };
        let first = p.check_and_set(&cas(CasCheckType::VALUE_NOT_EXIST, "", "1"), 0);
        assert_eq!(first.error, rocksdb::OK);
        assert_eq!(first.check_value, Some(None));
        assert!(first.decree.is_some());
        let again = p.check_and_set(&cas(CasCheckType::VALUE_NOT_EXIST, "", "2"), 0);
        assert_eq!(again.error, rocksdb::TRY_AGAIN);
        assert_eq!(again.check_value, Some(Some(Bytes::from("1"))));
        assert_eq!(again.decree, None);
        let int = p.check_and_set(&cas(CasCheckType::VALUE_INT_LESS, "5", "3"), 0);
        assert_eq!(int.error, rocksdb::OK);
        assert_eq!(
            p.get(&key("h", "c"), 0).map(|s| s.value.clone()),
            Some("3".into())
        );
        assert_eq!(
            p.check_and_set(&cas(CasCheckType::VALUE_INT_LESS, "x", "3"), 0)
                .error,
            rocksdb::INVALID_ARGUMENT
        );
        assert_eq!(
            p.check_and_set(&cas(CasCheckType(18), "", ""), 0).error,
            rocksdb::INVALID_ARGUMENT
        );
    }

    #[test]
    fn check_types() {
        use CasCheckType as C;
        for (kind, value, operand, want) in [
            (C::VALUE_NOT_EXIST_OR_EMPTY, Some(""), "", Ok(true)),
            (C::VALUE_NOT_EMPTY, Some(""), "", Ok(false)),
            (C::VALUE_MATCH_ANYWHERE, Some("abc"), "b", Ok(true)),
            (C::VALUE_MATCH_PREFIX, Some("abc"), "b", Ok(false)),
            (C::VALUE_MATCH_POSTFIX, Some("abc"), "bc", Ok(true)),
            (C::VALUE_BYTES_LESS, Some("abc"), "abd", Ok(true)),
            (C::VALUE_BYTES_EQUAL, Some("abc"), "abc", Ok(true)),
            (C::VALUE_BYTES_GREATER, None, "", Ok(false)),
            (C::VALUE_INT_GREATER_OR_EQUAL, Some("10"), "9", Ok(true)),
            (
                C::VALUE_INT_EQUAL,
                Some("ten"),
                "10",
                Err(rocksdb::INVALID_ARGUMENT),
            ),
        ] {
            assert_eq!(
                check(kind, value.map(str::as_bytes), operand.as_bytes()),
                want,
                "{kind:?} {value:?} {operand}"
            );
        }
    }

    #[test]
    fn the_log_ships_in_batches() {
        let mut p = PartitionData::default();
        let args = Bytes::from(vec![0u8; 1500]);
        for i in 0..5 {
            p.put(
                &key("h", &i.to_string()),
                "v".into(),
                0,
                LogArgs(Some(("RPC_RRDB_RRDB_PUT", &args, i))),
            );
        }
        let batch = p.log_after(0, 4096, |_| true);
        assert_eq!(batch.iter().map(|e| e.decree).collect::<Vec<_>>(), [1, 2]);
        let batch = p.log_after(2, 100, |_| true);
        assert_eq!(batch.len(), 1, "at least one, whatever its size");
        let batch = p.log_after(0, 4096, |e| e.timestamp_us < 1);
        assert_eq!(batch.len(), 1, "only entries that are ready");
        p.trim_log(3);
        assert_eq!(p.log_len(), 2);
        assert_eq!(p.log_after(0, 1 << 20, |_| true)[0].decree, 4);
    }
}
