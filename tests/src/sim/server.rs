//! What a MetaServer answers: the [`Responder`] of its connections (the listener and the
//! connection loop are `listener.rs`'s), with the MetaServer's reply delay.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use pegasus_rpc::codec::{
    CodecError, DEFAULT_MAX_REQUEST_FRAME, ErrorCode, MessageKind, NegotiationRequest,
    QueryCfgRequest, RequestDecoder, RequestFrame, rpc,
};
use tracing::trace;

use super::ddl;
use super::listener::Responder;
use super::meta_rpc::{self, Gate};
use super::state::{RecentCounters, Shared, View};

/// Answers the requests of one connection to MetaServer `meta`.
pub(crate) struct MetaResponder {
    meta: usize,
    shared: Arc<Shared>,
    view: Arc<View>,
    counters: RecentCounters,
    /// Holds the connection to the header (THFT or native) of its first frame.
    decoder: RequestDecoder,
}

impl MetaResponder {
    /// The responder of a connection just accepted, counted.
    pub(crate) fn accepted(meta: usize, shared: Arc<Shared>) -> Self {
        shared.counters.connection(meta);
        MetaResponder {
            meta,
            view: shared.view(),
            shared,
            counters: RecentCounters::default(),
            decoder: RequestDecoder::default(),
        }
    }
}

impl Responder for MetaResponder {
    fn reply_delay(&self) -> Duration {
        Duration::from_millis(
            self.shared.metas[self.meta]
                .delay_ms
                .load(Ordering::Relaxed),
        )
    }

    fn answer(&mut self, rbuf: &mut BytesMut, out: &mut BytesMut) -> Result<(), CodecError> {
        if self.shared.version() != self.view.version {
            self.view = self.shared.view();
        }
        let not_active = self.shared.metas[self.meta]
            .not_active
            .load(Ordering::Relaxed);
        let mut result = Ok(());
        let mut requests = 0;
        loop {
            match self.decoder.decode(rbuf, DEFAULT_MAX_REQUEST_FRAME) {
                Ok(Some(frame)) => {
                    requests += 1;
                    let (shared, view) = (&self.shared, &self.view);
                    let counters = &mut self.counters;
                    if let Err(e) =
                        answer(shared, view, counters, self.meta, not_active, &frame, out)
                    {
                        result = Err(e);
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        // Counted before any of the replies is written, so a client that has its reply can
        // rely on the counters.
        self.shared.counters.requests(self.meta, requests);
        if result.is_err() {
            self.shared.counters.malformed();
        }
        result
    }
}

/// Appends the reply to one request to `out`; an error means the request is malformed.
fn answer(
    shared: &Arc<Shared>,
    view: &View,
    counters: &mut RecentCounters,
    meta: usize,
    not_active: bool,
    frame: &RequestFrame,
    out: &mut BytesMut,
) -> Result<(), CodecError> {
    let name = frame.name();
    counters.rpc(&shared.counters, name);
    trace!(meta, rpc = name, seqid = frame.seqid(), "request");
    let gate = || Gate::of(not_active, view.leader == Some(meta));
    if shared.is_missing(name) {
        return reply(
            frame,
            out,
            ErrorCode::HANDLER_NOT_FOUND,
            &rpc::ack_name(name),
            &[],
        );
    }
    if let Some(body) = ddl::body(shared, gate(), name, &frame.args) {
        return reply(frame, out, ErrorCode::OK, &rpc::ack_name(name), &body?);
    }
    let answer = match name {
        rpc::QUERY_CONFIG => {
            let req = QueryCfgRequest::from_args(&frame.args)?;
            counters.table(&shared.counters, &req.app_name);
            let body = if not_active {
                shared.bodies.not_active.clone()
            } else if view.leader != Some(meta) {
                view.forward.clone()
            } else {
                match view.tables.get(&req.app_name) {
                    Some(table) => table.body_for(req.partition_indices.as_deref()),
                    None => shared.bodies.not_found.clone(),
                }
            };
            Some((rpc::QUERY_CONFIG_ACK, body))
        }
        rpc::NEGOTIATION => {
            // Decoded only to hold the client to the protocol; any step gets "auth disabled".
            NegotiationRequest::from_args(&frame.args)?;
            Some((rpc::NEGOTIATION_ACK, shared.bodies.negotiation.clone()))
        }
        rpc::UPDATE_APP_ENV => {
            let body = meta_rpc::update_app_env_body(shared, gate(), &frame.args)?;
            Some((rpc::UPDATE_APP_ENV_ACK, body))
        }
        rpc::QUERY_DUPLICATION => {
            let body = meta_rpc::query_duplication_body(shared, gate(), &frame.args)?;
            Some((rpc::QUERY_DUPLICATION_ACK, body))
        }
        rpc::ADD_DUPLICATION => {
            let body = meta_rpc::add_duplication_body(shared, gate(), &frame.args)?;
            Some((rpc::ADD_DUPLICATION_ACK, body))
        }
        rpc::LIST_APPS => Some((
            rpc::LIST_APPS_ACK,
            meta_rpc::list_apps_body(shared, view, gate(), &frame.args)?,
        )),
        other => match meta_rpc::GENERIC_TABLE_RPCS.iter().find(|n| **n == other) {
            Some(_) => {
                let body = meta_rpc::generic_table_body(view, gate(), other, &frame.args)?;
                let ack = rpc::ack_name(other);
                return reply(frame, out, ErrorCode::OK, &ack, &body);
            }
            None => None,
        },
    };
    match answer {
        Some((ack, body)) => reply(frame, out, ErrorCode::OK, ack, &body),
        None => reply(
            frame,
            out,
            ErrorCode::HANDLER_NOT_FOUND,
            &rpc::ack_name(name),
            &[],
        ),
    }
}

/// Appends the reply in the request's header (THFT or native); none for a one-way call.
fn reply(
    frame: &RequestFrame,
    out: &mut BytesMut,
    err: ErrorCode,
    ack: &str,
    body: &[u8],
) -> Result<(), CodecError> {
    if frame.message.kind != MessageKind::Oneway {
        frame.reply_to().encode(out, err.as_str(), ack, body);
    }
    Ok(())
}
