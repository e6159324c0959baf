//! What the proxy answers to each request, as a MetaServer would:
//!
//! | request | answer |
//! |---|---|
//! | query_config, route found | the cluster's reply (leader followed upstream), under the client's seqid |
//! | query_config, no record | `ERR_OBJECT_NOT_FOUND`, byte for byte what a MetaServer sends |
//! | query_config, record invalid | `ERR_INVALID_DATA` (and a log line naming the table) |
//! | query_config, cluster or ZooKeeper unreachable | `ERR_SERVICE_NOT_ACTIVE`, which every official client retries |
//! | `RPC_NEGOTIATION` | `SASL_AUTH_DISABLE` |
//! | anything else | rpc-level `ERR_HANDLER_NOT_FOUND`, empty body |
//!
//! A query_config never gets an rpc-level error (some clients hang on those) nor silence, and an
//! upstream `ERR_FORWARD_TO_OTHERS` never reaches a client: it would lead it past the proxy.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use thrift::protocol::{TInputProtocol, TOutputProtocol, TStructIdentifier, TType};
use tokio::time::Instant;
use tracing::Instrument;

use crate::metrics::{Metrics, Outcome};
use crate::route::{Lookup, Routes};
use crate::upstream::Upstreams;
use crate::warnings::Kind;
use pegasus_rpc::codec::wire::{self, ThriftWire, read_list, read_struct};
use pegasus_rpc::codec::{
    self, CodecError, ErrorCode, MessageKind, NegotiationRequest, NegotiationResponse,
    QueryCfgResponse, RequestFrame,
};

const QUERY_CONFIG_ACK: &str = "RPC_CM_QUERY_PARTITION_CONFIG_BY_INDEX_ACK";
const NEGOTIATION_ACK: &str = "RPC_NEGOTIATION_ACK";

/// A reply to write, or the reason to close the connection.
#[derive(Debug)]
pub enum Reply {
    Frame {
        rpc_error: ErrorCode,
        name: Cow<'static, str>,
        seqid: i32,
        body: Bytes,
    },
    /// A one-way message: nothing to write.
    None,
    /// The request was malformed: the connection is closed.
    Close(CodecError),
}

impl Reply {
    /// Appends the reply frame to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        if let Reply::Frame {
            rpc_error,
            name,
            seqid,
            body,
        } = self
        {
            codec::encode_reply(out, rpc_error.as_str(), name, *seqid, body);
        }
    }
}

/// Settings of the request handling.
#[derive(Clone, Debug)]
pub struct ServiceOptions {
    /// The time a query_config may take upstream, leader redirects and retries included.
    pub upstream_deadline: Duration,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            upstream_deadline: Duration::from_secs(3),
        }
    }
}

/// Answers requests.
pub struct Service {
    routes: Arc<Routes>,
    upstreams: Arc<Upstreams>,
    metrics: Metrics,
    opts: ServiceOptions,
    not_found: Bytes,
    not_active: Bytes,
    invalid_route: Bytes,
    auth_disabled: Bytes,
}

fn result_body(resp: &QueryCfgResponse) -> Bytes {
    let mut out = BytesMut::new();
    resp.to_result(&mut out);
    out.freeze()
}

impl Service {
    pub fn new(
        routes: Arc<Routes>,
        upstreams: Arc<Upstreams>,
        metrics: Metrics,
        opts: ServiceOptions,
    ) -> Self {
        let mut auth = BytesMut::new();
        NegotiationResponse::auth_disabled().to_result(&mut auth);
        Service {
            routes,
            upstreams,
            metrics,
            opts,
            not_found: result_body(&QueryCfgResponse::error(ErrorCode::OBJECT_NOT_FOUND)),
            not_active: result_body(&QueryCfgResponse::error(ErrorCode::SERVICE_NOT_ACTIVE)),
            invalid_route: result_body(&QueryCfgResponse::error(ErrorCode::INVALID_DATA)),
            auth_disabled: auth.freeze(),
        }
    }

    pub fn routes(&self) -> &Routes {
        &self.routes
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn upstreams(&self) -> &Arc<Upstreams> {
        &self.upstreams
    }

    /// Answers one request.
    pub async fn handle(&self, frame: RequestFrame) -> Reply {
        let reply = match frame.name() {
            codec::rpc::QUERY_CONFIG => self.query_config(&frame).await,
            codec::rpc::NEGOTIATION => match NegotiationRequest::from_args(&frame.args) {
                Ok(_) => {
                    self.metrics.request(Outcome::Negotiation);
                    self.frame(
                        NEGOTIATION_ACK.into(),
                        &frame,
                        ErrorCode::OK,
                        self.auth_disabled.clone(),
                    )
                }
                Err(e) => Reply::Close(e),
            },
            other => {
                tracing::debug!(rpc = other, "unsupported RPC");
                self.metrics.request(Outcome::HandlerNotFound);
                let name = Cow::Owned(codec::rpc::ack_name(other));
                self.frame(name, &frame, ErrorCode::HANDLER_NOT_FOUND, Bytes::new())
            }
        };
        if frame.message.kind == MessageKind::Oneway && !matches!(reply, Reply::Close(_)) {
            return Reply::None;
        }
        reply
    }

    fn frame(
        &self,
        name: Cow<'static, str>,
        req: &RequestFrame,
        rpc_error: ErrorCode,
        body: Bytes,
    ) -> Reply {
        Reply::Frame {
            rpc_error,
            name,
            seqid: req.seqid(),
            body,
        }
    }

    async fn query_config(&self, frame: &RequestFrame) -> Reply {
        let table = match RoutingName::from_args(&frame.args) {
            Ok(RoutingName(Ok(table))) => table,
            Ok(RoutingName(Err(raw))) => {
                // No MetaServer has a table by this name: answer as for any unroutable one.
                tracing::debug!(name = ?String::from_utf8_lossy(&raw), "table name is not UTF-8");
                self.metrics.request(Outcome::QueryNoRoute);
                return self.frame(
                    QUERY_CONFIG_ACK.into(),
                    frame,
                    ErrorCode::OK,
                    self.not_found.clone(),
                );
            }
            Err(e) => {
                self.metrics.request(Outcome::QueryMalformed);
                return Reply::Close(e);
            }
        };
        let table = table.as_str();
        let span = tracing::debug_span!("query_config", table, cluster = tracing::field::Empty);
        let body = async {
            match self.routes.lookup(table).await {
                Lookup::Found(route) => {
                    tracing::Span::current().record("cluster", route.record.cluster.as_str());
                    let deadline = Instant::now() + self.opts.upstream_deadline;
                    let (answer, _coalesced) = self.upstreams.query_config(&route.group, &frame.args, deadline).await;
                    match answer {
                        Ok(answer) => {
                            self.metrics.request(match answer.err.as_str() {
                                "ERR_OK" => Outcome::QueryOk,
                                "ERR_OBJECT_NOT_FOUND" => Outcome::QueryObjectNotFound,
                                "ERR_SERVICE_NOT_ACTIVE" => Outcome::QueryServiceNotActive,
                                _ => Outcome::QueryOtherError,
                            });
                            answer.body.clone()
                        }
                        Err(e) => {
                            let cluster = route.record.cluster.as_str();
                            if let Some(suppressed) = self.metrics.warnings.admit(Kind::ClusterUnreachable, cluster) {
                                tracing::warn!(table, cluster, error = %e, suppressed, "cluster unreachable; answering ERR_SERVICE_NOT_ACTIVE");
                            }
                            self.metrics.request(Outcome::QueryClusterUnavailable);
                            self.not_active.clone()
                        }
                    }
                }
                Lookup::Missing => {
                    self.metrics.request(Outcome::QueryNoRoute);
                    self.not_found.clone()
                }
                Lookup::Invalid(e) => {
                    if let Some(suppressed) = self.metrics.warnings.admit(Kind::RouteInvalid, table) {
                        tracing::warn!(table, error = %e, suppressed, "route record invalid; answering ERR_INVALID_DATA");
                    }
                    self.metrics.request(Outcome::QueryInvalidRoute);
                    self.invalid_route.clone()
                }
                Lookup::Unavailable(e) => {
                    if let Some(suppressed) = self.metrics.warnings.admit(Kind::RouteUnavailable, "") {
                        tracing::warn!(table, error = %e, suppressed, "route unknown; answering ERR_SERVICE_NOT_ACTIVE");
                    }
                    self.metrics.request(Outcome::QueryRouteUnavailable);
                    self.not_active.clone()
                }
            }
        }
        .instrument(span)
        .await;
        self.frame(QUERY_CONFIG_ACK.into(), frame, ErrorCode::OK, body)
    }
}

/// The table name of a query_config's args: `Ok` when it is UTF-8, its raw bytes otherwise.
///
/// The codec's `QueryCfgRequest` reads `app_name` as a thrift string, which must be UTF-8; a name
/// that is not would fail the whole frame and close the connection, although the structure is
/// sound and a MetaServer (which compares bytes) would just not find the table. This reads the same
/// structure, as strictly (the partition list is read and checked, unknown fields skipped the
/// same way), but keeps the name as bytes so that only the name decides.
#[derive(Debug, PartialEq, Eq)]
struct RoutingName(Result<String, Vec<u8>>);

impl RoutingName {
    fn from_args(args: &[u8]) -> Result<Self, CodecError> {
        wire::decode_args(args, "query_cfg_request")
    }
}

impl ThriftWire for RoutingName {
    fn read(i: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        let mut name = Vec::new();
        read_struct(i, |i, id, ty| {
            match (id, ty) {
                (1, TType::String) => name = i.read_bytes()?,
                (2, TType::List) => {
                    read_list(i, TType::I32, |i| i.read_i32())?;
                }
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(RoutingName(
            String::from_utf8(name).map_err(|e| e.into_bytes()),
        ))
    }

    /// Only the name (the proxy forwards the client's own args bytes, never these).
    fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        let name = match &self.0 {
            Ok(name) => name.as_bytes(),
            Err(raw) => raw,
        };
        o.write_struct_begin(&TStructIdentifier::new("query_cfg_request"))?;
        o.write_field_begin(&wire::field(TType::String, 1))?;
        o.write_bytes(name)?;
        o.write_field_end()?;
        o.write_field_stop()?;
        o.write_struct_end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pegasus_rpc::codec::QueryCfgRequest;

    fn args(req: &QueryCfgRequest) -> BytesMut {
        let mut out = BytesMut::new();
        req.to_args(&mut out);
        out
    }

    #[test]
    fn the_routing_name_reads_what_the_codec_reads_and_keeps_bad_utf8_as_bytes() {
        let node = QueryCfgRequest {
            app_name: "temp".into(),
            partition_indices: None,
        };
        let cases: Vec<(BytesMut, Result<RoutingName, &str>)> = vec![
            (
                args(&QueryCfgRequest::new("temp")),
                Ok(RoutingName(Ok("temp".into()))),
            ),
            (args(&node), Ok(RoutingName(Ok("temp".into())))),
            (
                args(&QueryCfgRequest::new("")),
                Ok(RoutingName(Ok(String::new()))),
            ),
            (
                {
                    let mut out = BytesMut::new();
                    wire::encode_args(&RoutingName(Err(vec![0xff, b'a'])), 1, &mut out);
                    out
                },
                Ok(RoutingName(Err(vec![0xff, b'a']))),
            ),
            (BytesMut::from(&b"\x00"[..]), Err("empty args")),
            (
                {
                    let mut a = args(&QueryCfgRequest::new("temp"));
                    a.truncate(a.len() - 3);
                    a
                },
                Err("cut short"),
            ),
        ];
        for (bytes, want) in cases {
            let got = RoutingName::from_args(&bytes);
            match want {
                Ok(name) => assert_eq!(got, Ok(name)),
                Err(what) => assert!(got.is_err(), "{what}: {got:?}"),
            }
            // Whatever the routing name accepts with a UTF-8 name, the codec accepts too.
            if let Ok(RoutingName(Ok(name))) = RoutingName::from_args(&bytes) {
                assert_eq!(
                    QueryCfgRequest::from_args(&bytes).map(|r| r.app_name),
                    Ok(name)
                );
            }
        }
    }
}
