//! What a simulated replica server does with a request before touching storage: answer it, drop
//! it, or refuse it with an rpc-level error. The checks run in the real server's order
//! (`docs/protocol.md` §15.4), first match wins:
//!
//! | # | check | answer |
//! |---|---|---|
//! | 1 | the RPC name is not one this simulator serves | `ERR_HANDLER_NOT_FOUND` |
//! | 2 | `app_id <= 0` (the request never reaches the replica layer) | `ERR_HANDLER_NOT_FOUND` |
//! | 3 | the node is black-holed (the node-wide deny of `replica.deny-client`) | dropped |
//! | 4 | the node is in mode not-hosting, or does not host the gpid | `ERR_OBJECT_NOT_FOUND` |
//! | 5 | the node is in mode invalid-state (every replica inactive) | `ERR_INVALID_STATE` |
//! | 6 | `replica.deny_client_request` denies the kind (as last synced by this node) | `reconfig`: `ERR_INVALID_STATE`; `timeout`: dropped |
//! | 7w | write: body over 1 MiB (`max_allowed_write_size`) | `ERR_INVALID_DATA` |
//! | 8w | write: the table is a duplication master and the write is not idempotent | `ERR_OPERATION_DISABLED` |
//! | 9w | write: this node is not the primary | `ERR_INVALID_STATE` |
//! | 7r | read: not the primary, and not a backup request (v1 `is_backup_request`) | `ERR_INVALID_STATE` |
//! | – | otherwise | served |
//!
//! After that, at apply time, the key's hash is checked against the header and the partition
//! ([`key_mismatches`]); a mismatch is logged and counted, never a crash (the real server aborts).

use pegasus_rpc::codec::{ErrorCode, rpc};
use serde::{Deserialize, Serialize};

use super::envs::Deny;

/// Largest write body a replica accepts (`[replication] max_allowed_write_size`).
pub const MAX_WRITE_BODY: usize = 1 << 20;

/// The data RPCs this simulator serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Put,
    MultiPut,
    Remove,
    MultiRemove,
    Incr,
    CheckAndSet,
    Duplicate,
    Get,
    MultiGet,
    Ttl,
    SortkeyCount,
}

impl Op {
    pub const ALL: [Op; 11] = [
        Op::Put,
        Op::MultiPut,
        Op::Remove,
        Op::MultiRemove,
        Op::Incr,
        Op::CheckAndSet,
        Op::Duplicate,
        Op::Get,
        Op::MultiGet,
        Op::Ttl,
        Op::SortkeyCount,
    ];

    pub fn from_name(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Op::Put => rpc::RRDB_PUT,
            Op::MultiPut => rpc::RRDB_MULTI_PUT,
            Op::Remove => rpc::RRDB_REMOVE,
            Op::MultiRemove => rpc::RRDB_MULTI_REMOVE,
            Op::Incr => rpc::RRDB_INCR,
            Op::CheckAndSet => rpc::RRDB_CHECK_AND_SET,
            Op::Duplicate => rpc::RRDB_DUPLICATE,
            Op::Get => rpc::RRDB_GET,
            Op::MultiGet => rpc::RRDB_MULTI_GET,
            Op::Ttl => rpc::RRDB_TTL,
            Op::SortkeyCount => rpc::RRDB_SORTKEY_COUNT,
        }
    }

    pub fn is_write(self) -> bool {
        matches!(
            self,
            Op::Put
                | Op::MultiPut
                | Op::Remove
                | Op::MultiRemove
                | Op::Incr
                | Op::CheckAndSet
                | Op::Duplicate
        )
    }

    /// Writes that give the same result when applied twice; a duplication master refuses the
    /// others.
    pub fn is_idempotent(self) -> bool {
        !matches!(self, Op::Incr | Op::CheckAndSet)
    }

    /// Writes a duplication source ships to its follower (§15.8).
    pub fn is_shipped(self) -> bool {
        matches!(self, Op::Put | Op::MultiPut | Op::Remove | Op::MultiRemove)
    }
}

/// A replica server node's failure mode, set from the admin API or the command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReplicaMode {
    /// Answers as a healthy replica server.
    #[default]
    Serving,
    /// Not listening: connections are refused, open ones closed. The MetaServers move its
    /// primaries to live secondaries.
    Stopped,
    /// Reads requests and never answers.
    Blackhole,
    /// Answers every data request with `ERR_OBJECT_NOT_FOUND`.
    NotHosting,
    /// Answers every data request with `ERR_INVALID_STATE`.
    InvalidState,
}

impl ReplicaMode {
    pub const ALL: [ReplicaMode; 5] = [
        ReplicaMode::Serving,
        ReplicaMode::Stopped,
        ReplicaMode::Blackhole,
        ReplicaMode::NotHosting,
        ReplicaMode::InvalidState,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReplicaMode::Serving => "serving",
            ReplicaMode::Stopped => "stopped",
            ReplicaMode::Blackhole => "blackhole",
            ReplicaMode::NotHosting => "not-hosting",
            ReplicaMode::InvalidState => "invalid-state",
        }
    }

    pub fn parse(s: &str) -> Option<ReplicaMode> {
        ReplicaMode::ALL.into_iter().find(|m| m.as_str() == s)
    }

    pub(crate) fn to_u8(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_u8(v: u8) -> ReplicaMode {
        ReplicaMode::ALL
            .into_iter()
            .find(|m| *m as u8 == v)
            .unwrap_or_default()
    }
}

/// What the node knows of a partition it was asked about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    NotHosted,
    Primary,
    Secondary,
}

/// Everything [`decide`] looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// `None` for an RPC name this simulator does not serve.
    pub op: Option<Op>,
    pub app_id: i32,
    pub mode: ReplicaMode,
    pub role: Role,
    pub deny: Deny,
    pub dup_master: bool,
    pub backup_request: bool,
    pub body_len: usize,
}

/// What to do with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Serve,
    /// No reply at all; the connection stays open.
    Drop,
    /// An rpc-level error with no body.
    Refuse(ErrorCode),
}

/// The checks of the module table, in order.
pub fn decide(r: &Request) -> Verdict {
    use Verdict::{Drop, Refuse, Serve};
    let Some(op) = r.op else {
        return Refuse(ErrorCode::HANDLER_NOT_FOUND);
    };
    if r.app_id <= 0 {
        return Refuse(ErrorCode::HANDLER_NOT_FOUND);
    }
    match r.mode {
        ReplicaMode::Blackhole | ReplicaMode::Stopped => return Drop,
        ReplicaMode::NotHosting => return Refuse(ErrorCode::OBJECT_NOT_FOUND),
        ReplicaMode::InvalidState | ReplicaMode::Serving => {}
    }
    if r.role == Role::NotHosted {
        return Refuse(ErrorCode::OBJECT_NOT_FOUND);
    }
    if r.mode == ReplicaMode::InvalidState {
        return Refuse(ErrorCode::INVALID_STATE);
    }
    let write = op.is_write();
    if r.deny.denies(write) {
        return if r.deny.reconfig {
            Refuse(ErrorCode::INVALID_STATE)
        } else {
            Drop
        };
    }
    if write {
        if r.body_len > MAX_WRITE_BODY {
            return Refuse(ErrorCode::INVALID_DATA);
        }
        if r.dup_master && !op.is_idempotent() {
            return Refuse(ErrorCode::OPERATION_DISABLED);
        }
        if r.role != Role::Primary {
            return Refuse(ErrorCode::INVALID_STATE);
        }
    } else if r.role != Role::Primary && !r.backup_request {
        return Refuse(ErrorCode::INVALID_STATE);
    }
    Serve
}

/// The routing facts a request carries, for [`key_mismatches`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Routing {
    pub app_id: i32,
    pub partition_index: i32,
    pub partition_count: i32,
    /// The header's `partition_hash`; 0 means "not given" and skips the hash checks.
    pub header_hash: u64,
    /// The v0 header's `thread_hash` (v1 headers have none).
    pub thread_hash: Option<i32>,
    /// The hash of the request's key (§15.5), when the request has one.
    pub key_hash: Option<u64>,
}

/// The ways a request's key disagrees with where it was sent. Empty when all is consistent.
pub fn key_mismatches(r: &Routing) -> Vec<String> {
    use pegasus_rpc::codec::key::{partition_index, thread_hash};
    let mut out = Vec::new();
    if let Some(t) = r.thread_hash {
        let want = thread_hash(r.app_id, r.partition_index);
        if t != want {
            out.push(format!("thread_hash {t}, expected {want}"));
        }
    }
    if r.header_hash == 0 {
        return out;
    }
    if let Some(k) = r.key_hash
        && k != r.header_hash
    {
        out.push(format!(
            "partition_hash {:#018x} but the key hashes to {k:#018x}",
            r.header_hash
        ));
    }
    if let Some(p) = partition_index(r.header_hash, r.partition_count)
        && p != r.partition_index
    {
        out.push(format!(
            "partition_hash {:#018x} belongs to partition {p} of {}, not {}",
            r.header_hash, r.partition_count, r.partition_index
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorCode as E;
    use ReplicaMode as M;
    use Role::*;
    use Verdict::*;

    fn deny(v: &str) -> Deny {
        Deny::from_env(Some(v)).expect("valid")
    }

    fn req(op: Op, mode: M, role: Role, deny: Deny) -> Request {
        Request {
            op: Some(op),
            app_id: 2,
            mode,
            role,
            deny,
            dup_master: false,
            backup_request: false,
            body_len: 100,
        }
    }

    #[test]
    fn first_matching_check_answers() {
        let none = Deny::NONE;
        let cases: Vec<(Request, Verdict)> = vec![
            // 1, 2: unknown RPC, app_id <= 0, whatever else holds.
            (
                Request {
                    op: None,
                    ..req(Op::Get, M::Blackhole, NotHosted, none)
                },
                Refuse(E::HANDLER_NOT_FOUND),
            ),
            (
                Request {
                    app_id: 0,
                    ..req(Op::Get, M::Blackhole, Primary, none)
                },
                Refuse(E::HANDLER_NOT_FOUND),
            ),
            // 3-5: the node's mode.
            (req(Op::Put, M::Blackhole, Primary, none), Drop),
            (
                req(Op::Put, M::NotHosting, Primary, none),
                Refuse(E::OBJECT_NOT_FOUND),
            ),
            (
                req(Op::Put, M::Serving, NotHosted, deny("reconfig*all")),
                Refuse(E::OBJECT_NOT_FOUND),
            ),
            (
                req(Op::Get, M::InvalidState, Primary, none),
                Refuse(E::INVALID_STATE),
            ),
            // 6: deny, before the primary check (secondaries deny too).
            (
                req(Op::Put, M::Serving, Primary, deny("timeout*write")),
                Drop,
            ),
            (
                req(Op::Get, M::Serving, Primary, deny("timeout*write")),
                Serve,
            ),
            (
                req(Op::Put, M::Serving, Secondary, deny("reconfig*write")),
                Refuse(E::INVALID_STATE),
            ),
            (
                req(Op::Get, M::Serving, Primary, deny("reconfig*read")),
                Refuse(E::INVALID_STATE),
            ),
            (
                req(Op::Get, M::Serving, Secondary, deny("timeout*all")),
                Drop,
            ),
            (
                req(Op::Duplicate, M::Serving, Primary, deny("timeout*write")),
                Drop,
            ),
            // 7w-9w.
            (
                Request {
                    body_len: MAX_WRITE_BODY + 1,
                    ..req(Op::Put, M::Serving, Secondary, none)
                },
                Refuse(E::INVALID_DATA),
            ),
            (
                Request {
                    dup_master: true,
                    ..req(Op::Incr, M::Serving, Secondary, none)
                },
                Refuse(E::OPERATION_DISABLED),
            ),
            (
                Request {
                    dup_master: true,
                    ..req(Op::CheckAndSet, M::Serving, Primary, none)
                },
                Refuse(E::OPERATION_DISABLED),
            ),
            (
                Request {
                    dup_master: true,
                    ..req(Op::MultiPut, M::Serving, Primary, none)
                },
                Serve,
            ),
            (
                req(Op::Remove, M::Serving, Secondary, none),
                Refuse(E::INVALID_STATE),
            ),
            // 7r: reads on a secondary only as backup requests.
            (
                req(Op::MultiGet, M::Serving, Secondary, none),
                Refuse(E::INVALID_STATE),
            ),
            (
                Request {
                    backup_request: true,
                    ..req(Op::Get, M::Serving, Secondary, none)
                },
                Serve,
            ),
            (
                Request {
                    backup_request: true,
                    ..req(Op::Put, M::Serving, Secondary, none)
                },
                Refuse(E::INVALID_STATE),
            ),
            (req(Op::Ttl, M::Serving, Primary, none), Serve),
            (req(Op::Incr, M::Serving, Primary, none), Serve),
        ];
        for (r, want) in cases {
            assert_eq!(decide(&r), want, "{r:?}");
        }
    }

    #[test]
    fn ops_and_modes_by_name() {
        for op in Op::ALL {
            assert_eq!(Op::from_name(op.name()), Some(op));
        }
        assert_eq!(Op::from_name(rpc::RRDB_CHECK_AND_MUTATE), None);
        assert!(Op::Duplicate.is_write() && !Op::Duplicate.is_shipped());
        assert!(!Op::Incr.is_idempotent() && Op::Remove.is_idempotent());
        for m in ReplicaMode::ALL {
            assert_eq!(ReplicaMode::parse(m.as_str()), Some(m));
            assert_eq!(ReplicaMode::from_u8(m.to_u8()), m);
            assert_eq!(
                serde_json::to_string(&m).expect("json"),
                format!("\"{}\"", m.as_str())
            );
        }
    }

    #[test]
    fn key_checks() {
        let good = Routing {
            app_id: 2,
            partition_index: 2,
            partition_count: 8,
            header_hash: 0xAAE1_FD17_E635_E4DA,
            thread_hash: Some(15840),
            key_hash: Some(0xAAE1_FD17_E635_E4DA),
        };
        assert!(key_mismatches(&good).is_empty());
        assert!(
            key_mismatches(&Routing {
                header_hash: 0,
                key_hash: Some(1),
                thread_hash: None,
                ..good
            })
            .is_empty()
        );
        assert_eq!(
            key_mismatches(&Routing {
                partition_index: 3,
                thread_hash: Some(15841),
                ..good
            })
            .len(),
            1,
            "the thread hash matches the gpid asked; the hash belongs to partition 2"
        );
        assert_eq!(
            key_mismatches(&Routing {
                key_hash: Some(7),
                thread_hash: Some(0),
                ..good
            })
            .len(),
            2
        );
    }
}
