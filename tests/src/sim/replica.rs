//! The replica server nodes: data requests in, reads and writes of the table stores out.
//!
//! Each node has its own listener, like a MetaServer's (`listener.rs`). A connection reads whatever
//! the socket has, answers every whole frame in it (in order; a dropped request simply gets no
//! reply) and writes the replies with one call. What a request gets is decided first, by the pure
//! checks of [`super::decide`]; only a request that is to be served touches the store.
//!
//! Each node also runs its config sync: every `config_sync_interval` (and when it starts) it reads
//! the tables' `replica.deny_client_request` from the cluster view, so an env change reaches the
//! nodes one by one within an interval, as on a real cluster (`docs/protocol.md` §14.1, §15.7).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use pegasus_rpc::codec::key::{hash_key_hash, key_hash};
use pegasus_rpc::codec::{
    self, Blob, CheckAndSetRequest, CheckAndSetResponse, CodecError, CountResponse,
    DEFAULT_MAX_REQUEST_FRAME, DuplicateRequest, DuplicateResponse, ErrorCode, IncrRequest,
    IncrResponse, MessageKind, MultiGetRequest, MultiGetResponse, MultiPutRequest,
    MultiRemoveRequest, MultiRemoveResponse, Payload, ReadResponse, RequestFrame, RequestHeader,
    TtlResponse, UpdateRequest, UpdateResponse, rocksdb, rpc,
};
use tracing::{info, warn};

use super::decide::{self, Op, ReplicaMode, Request, Role, Routing, Verdict};
use super::envs::{DENY_CLIENT_REQUEST, Deny};
use super::listener::Responder;
use super::state::{Shared, View};
use super::storage::{LogArgs, PartitionData};
use super::table::Table;

/// Answers the requests of one connection to replica node `node`.
pub(crate) struct NodeResponder {
    node: usize,
    /// This node's address as the replies' `server` field.
    server: String,
    shared: Arc<Shared>,
}

impl NodeResponder {
    /// The responder of a connection just accepted, counted.
    pub(crate) fn accepted(node: usize, shared: Arc<Shared>) -> Self {
        shared
            .counters
            .replica_connections
            .fetch_add(1, Ordering::Relaxed);
        NodeResponder {
            node,
            server: shared.nodes[node].addr.to_string(),
            shared,
        }
    }
}

impl Responder for NodeResponder {
    fn answer(&mut self, rbuf: &mut BytesMut, out: &mut BytesMut) -> Result<(), CodecError> {
        let view = self.shared.view();
        loop {
            match codec::decode_request(rbuf, DEFAULT_MAX_REQUEST_FRAME)? {
                Some(frame) => {
                    if let Some((err, body)) = self.answer_one(&view, &frame) {
                        frame.reply_to().encode(
                            out,
                            err.as_str(),
                            &rpc::ack_name(frame.name()),
                            &body,
                        );
                    }
                }
                None => return Ok(()),
            }
        }
    }
}

impl NodeResponder {
    /// The reply to one request (rpc-level error, result body), if it gets one.
    fn answer_one(&self, view: &View, frame: &RequestFrame) -> Option<(ErrorCode, Bytes)> {
        let shared = &self.shared;
        let node = &shared.nodes[self.node];
        let name = frame.name();
        shared
            .counters
            .replica_requests
            .fetch_add(1, Ordering::Relaxed);
        shared.counters.replica_by_rpc.add(name);
        if name == rpc::NEGOTIATION {
            return Some((ErrorCode::OK, shared.bodies.negotiation.clone()));
        }
        // The server never answers CLEAR_SCANNER (§15.1).
        if name == rpc::RRDB_CLEAR_SCANNER || frame.message.kind == MessageKind::Oneway {
            return None;
        }
        let gpid = frame.gpid();
        let table = view.by_app.get(&gpid.app_id);
        let pidx = usize::try_from(gpid.partition_index).ok();
        let role = match (table, pidx) {
            (Some(t), Some(p)) => match t.layout.get(p) {
                Some(l) if l.primary == Some(node.addr) => Role::Primary,
                Some(l) if l.secondaries.contains(&node.addr) => Role::Secondary,
                _ => Role::NotHosted,
            },
            _ => Role::NotHosted,
        };
        let backup_request = matches!(
            frame.header,
            RequestHeader::V1(m) if m.is_backup_request == Some(true)
        );
        let request = Request {
            op: Op::from_name(name),
            app_id: gpid.app_id,
            mode: node.mode(),
            role,
            deny: node.deny(gpid.app_id),
            dup_master: table.is_some_and(|t| t.store.is_dup_master()),
            backup_request,
            body_len: frame.args.len(),
        };
        match decide::decide(&request) {
            Verdict::Drop => {
                shared
                    .counters
                    .replica_dropped
                    .fetch_add(1, Ordering::Relaxed);
                None
            }
            Verdict::Refuse(err) => {
                shared.counters.replica_refused.add(err.as_str());
                Some((err, Bytes::new()))
            }
            Verdict::Serve => {
                // Serve implies a known op on a hosted partition.
                let (Some(op), Some(table), Some(pidx)) = (request.op, table, pidx) else {
                    return None;
                };
                match self.serve(op, table, pidx, frame) {
                    Ok(body) => Some((ErrorCode::OK, body)),
                    Err(e) => {
                        warn!(rpc = name, error = %e, "undecodable request args");
                        shared
                            .counters
                            .replica_refused
                            .add(ErrorCode::INVALID_DATA.as_str());
                        Some((ErrorCode::INVALID_DATA, Bytes::new()))
                    }
                }
            }
        }
    }

    /// Logs (and counts) a request whose key does not belong where it was sent.
    fn check_key(&self, table: &Table, frame: &RequestFrame, key_hash: Option<u64>) {
        let gpid = frame.gpid();
        let (header_hash, thread_hash) = match &frame.header {
            RequestHeader::V0(h) => (h.partition_hash, Some(h.thread_hash)),
            RequestHeader::V1(m) => (m.partition_hash.unwrap_or(0) as u64, None),
            RequestHeader::Native(h) => (h.partition_hash, Some(h.thread_hash)),
        };
        let mismatches = decide::key_mismatches(&Routing {
            app_id: gpid.app_id,
            partition_index: gpid.partition_index,
            partition_count: table.spec.partition_count,
            header_hash,
            thread_hash,
            key_hash,
        });
        if !mismatches.is_empty() {
            self.shared
                .counters
                .key_mismatches
                .fetch_add(1, Ordering::Relaxed);
            warn!(
                table = %table.spec.name,
                rpc = frame.name(),
                ?gpid,
                problems = %mismatches.join("; "),
                "request key does not match its routing (a real server would abort)"
            );
        }
    }

    /// Runs a served request on the store; returns the result body.
    fn serve(
        &self,
        op: Op,
        table: &Table,
        pidx: usize,
        frame: &RequestFrame,
    ) -> Result<Bytes, CodecError> {
        let store = &table.store;
        let args = &frame.args;
        let app_id = table.spec.app_id;
        let partition_index = pidx as i32;
        let server = self.server.clone();
        let clock = &self.shared.clock;
        let now = clock.pegasus_secs();
        let now_us = clock.unix_micros();
        let code = op.name();
        // Every served op names a partition that exists: the role check looked it up.
        let missing = || CodecError::Malformed {
            what: "partition",
            detail: "gone".into(),
        };
        let update = |error: i32, decree: i64| UpdateResponse {
            error,
            app_id,
            partition_index,
            decree,
            server: server.clone(),
        };
        Ok(match op {
            Op::Put => {
                let req = UpdateRequest::from_args(args)?;
                self.check_key(table, frame, key_hash(req.key.as_slice()).ok());
                let decree = store
                    .write(pidx, code, args, now_us, |p, log| {
                        p.put(
                            req.key.as_slice(),
                            req.value.0.clone(),
                            req.expire_ts_seconds,
                            log,
                        )
                    })
                    .ok_or_else(missing)?;
                update(rocksdb::OK, decree).result_bytes()
            }
            Op::Remove => {
                let key = Blob::from_args(args)?;
                self.check_key(table, frame, key_hash(key.as_slice()).ok());
                let decree = store
                    .write(pidx, code, args, now_us, |p, log| {
                        p.remove(key.as_slice(), log)
                    })
                    .ok_or_else(missing)?;
                update(rocksdb::OK, decree).result_bytes()
            }
            Op::MultiPut => {
                let req = MultiPutRequest::from_args(args)?;
                self.check_key(table, frame, Some(hash_key_hash(req.hash_key.as_slice())));
                let result = store
                    .write(pidx, code, args, now_us, |p, log| {
                        p.multi_put(
                            req.hash_key.as_slice(),
                            &req.kvs,
                            req.expire_ts_seconds,
                            log,
                        )
                    })
                    .ok_or_else(missing)?;
                match result {
                    Ok(decree) => update(rocksdb::OK, decree),
                    Err(e) => update(e, 0),
                }
                .result_bytes()
            }
            Op::MultiRemove => {
                let req = MultiRemoveRequest::from_args(args)?;
                self.check_key(table, frame, Some(hash_key_hash(req.hash_key.as_slice())));
                let result = store
                    .write(pidx, code, args, now_us, |p, log| {
                        p.multi_remove(req.hash_key.as_slice(), &req.sort_keys, log)
                    })
                    .ok_or_else(missing)?;
                let (error, count, decree) = match result {
                    Ok((count, decree)) => (rocksdb::OK, count, decree),
                    Err(e) => (e, 0, 0),
                };
                MultiRemoveResponse {
                    error,
                    count,
                    app_id,
                    partition_index,
                    decree,
                    server,
                }
                .result_bytes()
            }
            Op::Incr => {
                let req = IncrRequest::from_args(args)?;
                self.check_key(table, frame, key_hash(req.key.as_slice()).ok());
                let result = store
                    .write(pidx, code, args, now_us, |p, _| {
                        p.incr(
                            req.key.as_slice(),
                            req.increment,
                            req.expire_ts_seconds,
                            now,
                        )
                    })
                    .ok_or_else(missing)?;
                let (error, new_value, decree) = match result {
                    Ok((v, d)) => (rocksdb::OK, v, d),
                    Err(e) => (e, 0, 0),
                };
                IncrResponse {
                    error,
                    new_value,
                    app_id,
                    partition_index,
                    decree,
                    server,
                }
                .result_bytes()
            }
            Op::CheckAndSet => {
                let req = CheckAndSetRequest::from_args(args)?;
                self.check_key(table, frame, Some(hash_key_hash(req.hash_key.as_slice())));
                let outcome = store
                    .write(pidx, code, args, now_us, |p, _| p.check_and_set(&req, now))
                    .ok_or_else(missing)?;
                let (returned, exist, value) = match outcome.check_value {
                    None => (false, false, Bytes::new()),
                    Some(None) => (true, false, Bytes::new()),
                    Some(Some(v)) => (true, true, v),
                };
                CheckAndSetResponse {
                    error: outcome.error,
                    check_value_returned: returned,
                    check_value_exist: exist,
                    check_value: Blob(value),
                    app_id,
                    partition_index,
                    decree: outcome.decree.unwrap_or(0),
                    server,
                }
                .result_bytes()
            }
            Op::Duplicate => {
                let req = DuplicateRequest::from_args(args)?;
                let mut p = store.partition(pidx).ok_or_else(missing)?;
                apply_duplicate(&mut p, &req).result_bytes()
            }
            Op::Get => {
                let key = Blob::from_args(args)?;
                self.check_key(table, frame, key_hash(key.as_slice()).ok());
                let p = store.partition(pidx).ok_or_else(missing)?;
                let (error, value) = match p.get(key.as_slice(), now) {
                    Some(s) => (rocksdb::OK, s.value.clone()),
                    None => (rocksdb::NOT_FOUND, Bytes::new()),
                };
                ReadResponse {
                    error,
                    value: Blob(value),
                    app_id,
                    partition_index,
                    server,
                }
                .result_bytes()
            }
            Op::Ttl => {
                let key = Blob::from_args(args)?;
                self.check_key(table, frame, key_hash(key.as_slice()).ok());
                let p = store.partition(pidx).ok_or_else(missing)?;
                let (error, ttl_seconds) = match p.ttl(key.as_slice(), now) {
                    Some(ttl) => (rocksdb::OK, ttl),
                    None => (rocksdb::NOT_FOUND, 0),
                };
                TtlResponse {
                    error,
                    ttl_seconds,
                    app_id,
                    partition_index,
                    server,
                }
                .result_bytes()
            }
            Op::SortkeyCount => {
                let hash_key = Blob::from_args(args)?;
                self.check_key(table, frame, Some(hash_key_hash(hash_key.as_slice())));
                let p = store.partition(pidx).ok_or_else(missing)?;
                CountResponse {
                    error: rocksdb::OK,
                    count: p.sortkey_count(hash_key.as_slice(), now),
                    app_id,
                    partition_index,
                    server,
                }
                .result_bytes()
            }
            Op::MultiGet => {
                let req = MultiGetRequest::from_args(args)?;
                self.check_key(table, frame, Some(hash_key_hash(req.hash_key.as_slice())));
                let p = store.partition(pidx).ok_or_else(missing)?;
                let (error, kvs) = p.multi_get(&req, now);
                MultiGetResponse {
                    error,
                    kvs,
                    app_id,
                    partition_index,
                    server,
                }
                .result_bytes()
            }
        })
    }
}

/// Applies a duplicated batch on the follower, each entry with the follower's own decree and
/// never logged again (duplicated writes are not re-shipped). Plain last-arrival-wins.
fn apply_duplicate(p: &mut PartitionData, req: &DuplicateRequest) -> DuplicateResponse {
    let fail = |hint: String| DuplicateResponse {
        error: Some(rocksdb::INVALID_ARGUMENT),
        error_hint: Some(hint),
    };
    for entry in &req.entries {
        let (Some(code), Some(raw)) = (&entry.task_code, &entry.raw_message) else {
            return fail("duplicate entry without task code or message".into());
        };
        let raw = raw.as_slice();
        let applied = match code.as_str() {
            rpc::RRDB_PUT => UpdateRequest::from_args(raw).map(|r| {
                p.put(
                    r.key.as_slice(),
                    r.value.0.clone(),
                    r.expire_ts_seconds,
                    LogArgs(None),
                );
            }),
            rpc::RRDB_REMOVE => Blob::from_args(raw).map(|k| {
                p.remove(k.as_slice(), LogArgs(None));
            }),
            rpc::RRDB_MULTI_PUT => MultiPutRequest::from_args(raw).map(|r| {
                let _ = p.multi_put(
                    r.hash_key.as_slice(),
                    &r.kvs,
                    r.expire_ts_seconds,
                    LogArgs(None),
                );
            }),
            rpc::RRDB_MULTI_REMOVE => MultiRemoveRequest::from_args(raw).map(|r| {
                let _ = p.multi_remove(r.hash_key.as_slice(), &r.sort_keys, LogArgs(None));
            }),
            other => return fail(format!("unrecognized task code {other}")),
        };
        if let Err(e) = applied {
            return fail(format!("bad {code} message: {e}"));
        }
    }
    DuplicateResponse {
        error: Some(rocksdb::OK),
        error_hint: None,
    }
}

/// What `replica.deny_client_request` says for each table of the view, by app id.
pub(crate) fn deny_envs(view: &View) -> HashMap<i32, Deny> {
    view.by_app
        .iter()
        .map(|(&app_id, t)| {
            let value = t.spec.envs.get(DENY_CLIENT_REQUEST).map(String::as_str);
            let deny = Deny::from_env(value).unwrap_or_else(|| {
                // The meta validates the value, so this is not reached; a real replica asserts.
                warn!(table = %t.spec.name, ?value, "unparseable deny env ignored");
                Deny::NONE
            });
            (app_id, deny)
        })
        .collect()
}

/// Node `node`'s config sync: now, then every interval, for the simulator's lifetime.
pub(crate) async fn sync_loop(node: usize, shared: Arc<Shared>) {
    let interval = shared.data.config_sync_interval;
    loop {
        sync_now(node, &shared);
        tokio::time::sleep(interval).await;
    }
}

/// Picks up the app envs of the current view on node `node`.
pub(crate) fn sync_now(node: usize, shared: &Shared) {
    let slot = &shared.nodes[node];
    let envs = deny_envs(&shared.view());
    if *slot.synced() != envs {
        info!(node = %slot.addr, denies = ?envs.iter().filter(|(_, d)| **d != Deny::NONE).collect::<Vec<_>>(), "replica synced app envs");
    }
    slot.set_synced(envs);
}

/// Whether node `node` answers at all in `mode` (for the duplication shippers).
pub(crate) fn node_serves(mode: ReplicaMode) -> bool {
    mode == ReplicaMode::Serving
}
