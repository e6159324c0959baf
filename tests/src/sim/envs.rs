//! App envs: what the MetaServer accepts in `RPC_CM_UPDATE_APP_ENV` (`docs/protocol.md` §14.4) and
//! what a replica makes of `replica.deny_client_request` (§15.7). Pure functions, tested from
//! tables.
//!
//! The meta validates every SET pair against the keys it knows; an unknown key or a value its
//! validator refuses fails the whole request and nothing is applied. The hints for refused values
//! are this simulator's own wording (the server's validators word them differently per key).

use std::collections::BTreeMap;

use pegasus_rpc::codec::ErrorCode;
use serde::{Deserialize, Serialize};

/// The app env that fences a table.
pub const DENY_CLIENT_REQUEST: &str = "replica.deny_client_request";

/// What a replica denies, from `replica.deny_client_request` (`replica::update_deny_client`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deny {
    /// Answer denied requests with rpc-level `ERR_INVALID_STATE`; otherwise drop them unanswered.
    pub reconfig: bool,
    pub read: bool,
    pub write: bool,
}

impl Deny {
    /// Nothing denied: the env is absent.
    pub const NONE: Deny = Deny {
        reconfig: false,
        read: false,
        write: false,
    };

    /// The replica's reading of the env value: split on `*`; `reconfig` when the first part is
    /// `reconfig` (anything else means drop); reads when the second is `read` or `all`, writes
    /// when it is `write` or `all`. `None` for a value that does not split in two: the real
    /// replica asserts on it, which is why the meta refuses such values.
    pub fn from_env(value: Option<&str>) -> Option<Deny> {
        let Some(value) = value else {
            return Some(Deny::NONE);
        };
        let mut parts = value.split('*');
        let (first, second) = (parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        Some(Deny {
            reconfig: first == "reconfig",
            read: matches!(second, "read" | "all"),
            write: matches!(second, "write" | "all"),
        })
    }

    /// Whether a request of this kind is denied.
    pub fn denies(self, write: bool) -> bool {
        if write { self.write } else { self.read }
    }
}

/// How the meta validates one key's values.
#[derive(Clone, Copy, Debug)]
enum Rule {
    Deny,
    /// Comma-separated `<size[K|M]>*<delay|reject>*<ms>`.
    Throttling,
    Int {
        min: i64,
        max: i64,
    },
    /// -1, or at least 1 (compaction target levels).
    Level,
    Bool,
    OneOf(&'static [&'static str]),
    Any,
}

/// The keys of §14.4 and their validators.
fn rule(key: &str) -> Option<Rule> {
    const MIB: i64 = 1 << 20;
    Some(match key {
        DENY_CLIENT_REQUEST => Rule::Deny,
        "replica.write_throttling"
        | "replica.write_throttling_by_size"
        | "replica.read_throttling"
        | "replica.backup_request_throttling" => Rule::Throttling,
        // A token-bucket setting whose syntax this simulator does not check.
        "replica.read_throttling_by_size" => Rule::Any,
        "replica.slow_query_threshold" => Rule::Int {
            min: 20,
            max: i64::MAX,
        },
        "replica.rocksdb_iteration_threshold_time_ms" | "manual_compact.once.trigger_time" => {
            Rule::Int {
                min: 0,
                max: i64::MAX,
            }
        }
        "rocksdb.write_buffer_size" => Rule::Int {
            min: 16 * MIB,
            max: 512 * MIB,
        },
        "rocksdb.num_levels" => Rule::Int { min: 1, max: 10 },
        "manual_compact.once.target_level" | "manual_compact.periodic.target_level" => Rule::Level,
        "default_ttl"
        | "rocksdb.checkpoint.reserve_time_seconds"
        | "manual_compact.max_concurrent_running_count" => Rule::Int {
            min: 0,
            max: i32::MAX as i64,
        },
        "rocksdb.checkpoint.reserve_min_count" => Rule::Int {
            min: 1,
            max: i32::MAX as i64,
        },
        "replica.rocksdb_block_cache_enabled"
        | "replica.split.validate_partition_hash"
        | "rocksdb.allow_ingest_behind"
        | "manual_compact.disabled" => Rule::Bool,
        "rocksdb.usage_scenario" => Rule::OneOf(&["normal", "prefer_write", "bulk_load"]),
        "manual_compact.once.bottommost_level_compaction"
        | "manual_compact.periodic.bottommost_level_compaction" => Rule::OneOf(&["force", "skip"]),
        "manual_compact.periodic.trigger_time"
        | "user_specified_compaction"
        | "business.info"
        | "replica_access_controller.allowed_users"
        | "replica_access_controller.ranger_policies"
        | "duplication.master_cluster"
        | "duplication.master_metas"
        | "duplication.master_app_name"
        | "duplication.follower_app_status" => Rule::Any,
        _ => return None,
    })
}

/// Checks one pair as the meta does before a SET; `Err` holds the hint.
pub fn validate(key: &str, value: &str) -> Result<(), String> {
    let Some(rule) = rule(key) else {
        return Err(format!("app_env '{key}' is not supported"));
    };
    let ok = match rule {
        Rule::Deny => matches!(
            value.split_once('*'),
            Some(("timeout" | "reconfig", "all" | "write" | "read"))
        ),
        Rule::Throttling => value.split(',').all(throttling_token),
        Rule::Int { min, max } => value.parse::<i64>().is_ok_and(|v| (min..=max).contains(&v)),
        Rule::Level => value.parse::<i64>().is_ok_and(|v| v == -1 || v >= 1),
        Rule::Bool => matches!(value, "true" | "false"),
        Rule::OneOf(choices) => choices.contains(&value),
        Rule::Any => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid value '{value}' for app_env '{key}': {}",
            expected(rule)
        ))
    }
}

fn expected(rule: Rule) -> String {
    match rule {
        Rule::Deny => "expected timeout or reconfig, '*', then all, write or read".into(),
        Rule::Throttling => "expected <size[K|M]>*<delay|reject>*<ms>, comma-separated".into(),
        Rule::Int { min, max } if max == i64::MAX || max == i32::MAX as i64 => {
            format!("expected an integer >= {min}")
        }
        Rule::Int { min, max } => format!("expected an integer in [{min}, {max}]"),
        Rule::Level => "expected -1 or an integer >= 1".into(),
        Rule::Bool => "expected true or false".into(),
        Rule::OneOf(choices) => format!("expected one of {}", choices.join(", ")),
        Rule::Any => String::new(),
    }
}

fn throttling_token(token: &str) -> bool {
    let mut parts = token.split('*');
    let (Some(size), Some(action), Some(ms), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let digits = size.strip_suffix(['K', 'M']).unwrap_or(size);
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && matches!(action, "delay" | "reject")
        && !ms.is_empty()
        && ms.bytes().all(|b| b.is_ascii_digit())
}

/// `app_env_operation`.
pub const OP_SET: i32 = 1;
pub const OP_DEL: i32 = 2;
pub const OP_CLEAR: i32 = 3;

/// An update_app_env request, as far as the envs are concerned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvUpdate {
    pub op: i32,
    pub keys: Option<Vec<String>>,
    pub values: Option<Vec<String>>,
    pub clear_prefix: Option<String>,
}

/// What the meta answers, and the envs to store when they changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvAnswer {
    pub err: ErrorCode,
    pub hint: String,
    /// `Some` when the table's envs are to be replaced with these.
    pub envs: Option<BTreeMap<String, String>>,
}

impl EnvAnswer {
    fn refuse(err: ErrorCode, hint: impl Into<String>) -> Self {
        EnvAnswer {
            err,
            hint: hint.into(),
            envs: None,
        }
    }

    fn ok(hint: impl Into<String>, envs: Option<BTreeMap<String, String>>) -> Self {
        EnvAnswer {
            err: ErrorCode::OK,
            hint: hint.into(),
            envs,
        }
    }
}

const NOTHING_TO_DELETE: &str = "no key needs to be deleted";

fn deleted_hint<'a>(keys: impl IntoIterator<Item = &'a String>) -> String {
    let mut hint = String::from("deleted keys:");
    for k in keys {
        hint.push_str("\n    ");
        hint.push_str(k);
    }
    hint
}

/// Applies an update to a table's envs as `server_state::{set,del,clear}_app_envs` do, in their
/// order of checks. `current` is `None` when the table does not exist.
pub fn update(current: Option<&BTreeMap<String, String>>, req: &EnvUpdate) -> EnvAnswer {
    let missing = || EnvAnswer::refuse(ErrorCode::APP_NOT_EXIST, "app cannot be found");
    match req.op {
        OP_SET => {
            let (Some(keys), Some(values)) = (&req.keys, &req.values) else {
                return EnvAnswer::refuse(ErrorCode::INVALID_PARAMETERS, "");
            };
            if keys.is_empty() || keys.len() != values.len() {
                return EnvAnswer::refuse(ErrorCode::INVALID_PARAMETERS, "");
            }
            for (k, v) in keys.iter().zip(values) {
                if let Err(hint) = validate(k, v) {
                    return EnvAnswer::refuse(ErrorCode::INVALID_PARAMETERS, hint);
                }
            }
            let Some(current) = current else {
                return missing();
            };
            let mut envs = current.clone();
            for (k, v) in keys.iter().zip(values) {
                envs.insert(k.clone(), v.clone());
            }
            EnvAnswer::ok("", Some(envs))
        }
        OP_DEL => {
            let Some(keys) = req.keys.as_ref().filter(|k| !k.is_empty()) else {
                return EnvAnswer::refuse(ErrorCode::INVALID_PARAMETERS, "");
            };
            let Some(current) = current else {
                return missing();
            };
            let present: Vec<&String> = keys.iter().filter(|k| current.contains_key(*k)).collect();
            if present.is_empty() {
                return EnvAnswer::ok(NOTHING_TO_DELETE, None);
            }
            let mut envs = current.clone();
            for k in &present {
                envs.remove(*k);
            }
            EnvAnswer::ok(deleted_hint(present), Some(envs))
        }
        OP_CLEAR => {
            let Some(prefix) = &req.clear_prefix else {
                return EnvAnswer::refuse(ErrorCode::INVALID_PARAMETERS, "");
            };
            let Some(current) = current else {
                return missing();
            };
            let dotted = format!("{prefix}.");
            let doomed: Vec<&String> = current
                .keys()
                .filter(|k| prefix.is_empty() || (k.starts_with(&dotted) && k.len() > dotted.len()))
                .collect();
            if doomed.is_empty() {
                return EnvAnswer::ok(NOTHING_TO_DELETE, None);
            }
            let hint = deleted_hint(doomed.iter().copied());
            let envs = current
                .iter()
                .filter(|(k, _)| !doomed.contains(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            EnvAnswer::ok(hint, Some(envs))
        }
        op => EnvAnswer::refuse(
            ErrorCode::INVALID_PARAMETERS,
            format!(
                "recv a invalid update_app_env request with op = {}",
                match op {
                    0 => "APP_ENV_OP_INVALID".to_owned(),
                    other => other.to_string(),
                }
            ),
        ),
    }
}

/// Validates envs given in `tables.yaml` or through the admin API, as a SET would.
pub fn validate_all(envs: &BTreeMap<String, String>) -> Result<(), String> {
    envs.iter().try_for_each(|(k, v)| validate(k, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_as_a_replica_reads_it() {
        let d = |reconfig, read, write| {
            Some(Deny {
                reconfig,
                read,
                write,
            })
        };
        for (value, want) in [
            (None, d(false, false, false)),
            (Some("timeout*write"), d(false, false, true)),
            (Some("timeout*read"), d(false, true, false)),
            (Some("timeout*all"), d(false, true, true)),
            (Some("reconfig*write"), d(true, false, true)),
            (Some("reconfig*read"), d(true, true, false)),
            (Some("reconfig*all"), d(true, true, true)),
            // Any first part other than reconfig drops; an unknown second part denies nothing.
            (Some("whatever*all"), d(false, true, true)),
            (Some("reconfig*none"), d(true, false, false)),
            // Not two parts: a real replica would assert.
            (Some("reconfig"), None),
            (Some("a*b*c"), None),
            (Some(""), None),
        ] {
            assert_eq!(Deny::from_env(value), want, "{value:?}");
        }
        let w = Deny::from_env(Some("timeout*write")).expect("parses");
        assert!(w.denies(true) && !w.denies(false));
    }

    #[test]
    fn meta_validates_values() {
        for (key, value, ok) in [
            (DENY_CLIENT_REQUEST, "timeout*write", true),
            (DENY_CLIENT_REQUEST, "reconfig*all", true),
            (DENY_CLIENT_REQUEST, "reconfig*read", true),
            (DENY_CLIENT_REQUEST, "reconfig", false),
            (DENY_CLIENT_REQUEST, "timeout*none", false),
            (DENY_CLIENT_REQUEST, "later*write", false),
            (DENY_CLIENT_REQUEST, "timeout*write*x", false),
            (
                "replica.write_throttling",
                "1000*delay*100,2000*reject*200",
                true,
            ),
            ("replica.write_throttling", "10K*delay*100", true),
            ("replica.write_throttling", "1000*wait*100", false),
            ("replica.slow_query_threshold", "20", true),
            ("replica.slow_query_threshold", "19", false),
            ("rocksdb.num_levels", "11", false),
            ("manual_compact.once.target_level", "-1", true),
            ("manual_compact.once.target_level", "0", false),
            ("rocksdb.allow_ingest_behind", "true", true),
            ("rocksdb.allow_ingest_behind", "yes", false),
            ("rocksdb.usage_scenario", "bulk_load", true),
            ("business.info", "anything at all", true),
            ("default_ttl", "-1", false),
        ] {
            assert_eq!(validate(key, value).is_ok(), ok, "{key}={value}");
        }
        assert_eq!(
            validate("max_replica_count.update", "3"),
            Err("app_env 'max_replica_count.update' is not supported".into())
        );
    }

    fn envs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn strings(v: &[&str]) -> Option<Vec<String>> {
        Some(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn update_answers() {
        let fenced = envs(&[(DENY_CLIENT_REQUEST, "timeout*write")]);
        let set = |keys: &[&str], values: &[&str]| EnvUpdate {
            op: OP_SET,
            keys: strings(keys),
            values: strings(values),
            clear_prefix: None,
        };
        let del = |keys: &[&str]| EnvUpdate {
            op: OP_DEL,
            keys: strings(keys),
            ..Default::default()
        };
        let clear = |prefix: &str| EnvUpdate {
            op: OP_CLEAR,
            clear_prefix: Some(prefix.into()),
            ..Default::default()
        };
        let empty = BTreeMap::new();
        let two = envs(&[
            ("replica.slow_query_threshold", "30"),
            ("replica.deny_client_request", "reconfig*all"),
            ("business.info", "x"),
        ]);
        type Case<'a> = (Option<&'a BTreeMap<String, String>>, EnvUpdate, EnvAnswer);
        let cases: Vec<Case<'_>> = vec![
            (
                Some(&empty),
                set(&[DENY_CLIENT_REQUEST], &["timeout*write"]),
                EnvAnswer::ok("", Some(fenced.clone())),
            ),
            (
                Some(&empty),
                set(&[DENY_CLIENT_REQUEST, "nope"], &["timeout*write", "1"]),
                EnvAnswer::refuse(
                    ErrorCode::INVALID_PARAMETERS,
                    "app_env 'nope' is not supported",
                ),
            ),
            (
                Some(&empty),
                set(&[DENY_CLIENT_REQUEST], &[]),
                EnvAnswer::refuse(ErrorCode::INVALID_PARAMETERS, ""),
            ),
            (
                None,
                set(&[DENY_CLIENT_REQUEST], &["timeout*write"]),
                EnvAnswer::refuse(ErrorCode::APP_NOT_EXIST, "app cannot be found"),
            ),
            (
                Some(&fenced),
                del(&[DENY_CLIENT_REQUEST, "other"]),
                EnvAnswer::ok(
                    "deleted keys:\n    replica.deny_client_request",
                    Some(empty.clone()),
                ),
            ),
            (
                Some(&empty),
                del(&[DENY_CLIENT_REQUEST]),
                EnvAnswer::ok("no key needs to be deleted", None),
            ),
            (
                Some(&two),
                clear("replica"),
                EnvAnswer::ok(
                    "deleted keys:\n    replica.deny_client_request\n    replica.slow_query_threshold",
                    Some(envs(&[("business.info", "x")])),
                ),
            ),
            (
                Some(&two),
                clear("rocksdb"),
                EnvAnswer::ok("no key needs to be deleted", None),
            ),
            (
                Some(&two),
                clear(""),
                EnvAnswer::ok(
                    "deleted keys:\n    business.info\n    replica.deny_client_request\n    replica.slow_query_threshold",
                    Some(empty.clone()),
                ),
            ),
            (
                Some(&two),
                EnvUpdate::default(),
                EnvAnswer::refuse(
                    ErrorCode::INVALID_PARAMETERS,
                    "recv a invalid update_app_env request with op = APP_ENV_OP_INVALID",
                ),
            ),
        ];
        for (current, req, want) in cases {
            assert_eq!(update(current, &req), want, "{req:?}");
        }
    }
}
