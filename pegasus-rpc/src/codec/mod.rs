//! The Pegasus RPC wire protocol, as spoken between the official clients and a MetaServer.
//!
//! Everything that crosses the wire goes through this module: the `THFT` request frames (header
//! v0 and v1), the reply frames, and the payload types of the RPCs the project understands. The
//! byte layouts are described in `docs/protocol.md`; the section numbers below refer to it.
//!
//! ```text
//!  request:  "THFT" | header v0 (48 bytes) or v1 (16 bytes + request_meta) | body
//!            or "RDSN" | native header (192 bytes, little-endian) | args (no message begin)
//!  reply:    i32 total_length (counts itself) | string rpc_error | body (only when ERR_OK)
//!  body:     thrift message begin (name, type, seqid) | struct { field: payload } STOP
//! ```
//!
//! Thrift's binary protocol encodes the structs, but the Pegasus base types (`error_code`, `gpid`,
//! `rpc_address`, `host_port`, `blob`) are tagged as structs while being encoded as strings and
//! integers (§6). They are read and written by hand here, and the generic thrift skip is never
//! used on a field that could hold one: see [`wire::skip_plain`].

mod admin;
mod base;
mod crc;
mod error;
mod frame;
pub mod key;
pub mod list_apps;
mod meta;
pub mod native;
mod negotiation;
mod replica;
pub mod wire;

pub use admin::{
    AddDuplicationRequest, AddDuplicationResponse, AppEnvOperation, DuplicationEntry,
    DuplicationFailMode, DuplicationMode, DuplicationPartitionState, DuplicationStatus,
    QueryDuplicationRequest, QueryDuplicationResponse, UpdateAppEnvRequest, UpdateAppEnvResponse,
};
pub use base::{Blob, ErrorCode, Gpid, HostPort, RpcAddress};
pub use error::CodecError;
pub use frame::{
    DEFAULT_MAX_REPLY_FRAME, DEFAULT_MAX_REQUEST_FRAME, HeaderFamily, HeaderV0, MessageBegin,
    MessageKind, ReplyFrame, ReplyTo, RequestDecoder, RequestFrame, RequestHeader, RequestMetaV1,
    THFT_MAGIC, V0_HEADER_LEN, announced_len, decode_reply, decode_request, encode_call,
    encode_reply, encode_reply_header,
};
pub use meta::{PartitionConfiguration, QueryCfgRequest, QueryCfgResponse};
pub use native::{NativeHeader, RDSN_MAGIC};
pub use negotiation::{NegotiationRequest, NegotiationResponse, NegotiationStatus};
pub use replica::{
    CasCheckType, CheckAndSetRequest, CheckAndSetResponse, CountResponse, DuplicateEntry,
    DuplicateRequest, DuplicateResponse, FilterType, IncrRequest, IncrResponse, KeyValue,
    MultiGetRequest, MultiGetResponse, MultiPutRequest, MultiRemoveRequest, MultiRemoveResponse,
    Payload, ReadResponse, TtlResponse, UpdateRequest, UpdateResponse, rocksdb,
};

/// The RPC names (task codes) this project sends or answers.
pub mod rpc {
    /// `query_config`: where the partitions of a table live.
    pub const QUERY_CONFIG: &str = "RPC_CM_QUERY_PARTITION_CONFIG_BY_INDEX";
    /// SASL negotiation, the first RPC of a session when the client has authentication on.
    pub const NEGOTIATION: &str = "RPC_NEGOTIATION";
    /// Set, delete or clear a table's app envs (docs/protocol.md §14.1).
    pub const UPDATE_APP_ENV: &str = "RPC_CM_UPDATE_APP_ENV";
    /// A table's duplications and their progress (docs/protocol.md §14.2).
    pub const QUERY_DUPLICATION: &str = "RPC_CM_QUERY_DUPLICATION";
    /// Start duplicating a table to another cluster (§14.3).
    pub const ADD_DUPLICATION: &str = "RPC_CM_ADD_DUPLICATION";
    /// The tables of a cluster (§14.5); the proxy merges them from every routed cluster.
    pub const LIST_APPS: &str = "RPC_CM_LIST_APPS";

    // Replica-server RPCs (§15.1). Writes:
    pub const RRDB_PUT: &str = "RPC_RRDB_RRDB_PUT";
    pub const RRDB_MULTI_PUT: &str = "RPC_RRDB_RRDB_MULTI_PUT";
    pub const RRDB_REMOVE: &str = "RPC_RRDB_RRDB_REMOVE";
    pub const RRDB_MULTI_REMOVE: &str = "RPC_RRDB_RRDB_MULTI_REMOVE";
    pub const RRDB_INCR: &str = "RPC_RRDB_RRDB_INCR";
    pub const RRDB_CHECK_AND_SET: &str = "RPC_RRDB_RRDB_CHECK_AND_SET";
    pub const RRDB_CHECK_AND_MUTATE: &str = "RPC_RRDB_RRDB_CHECK_AND_MUTATE";
    /// What a duplication source ships to its follower (§15.8); a write on the follower.
    pub const RRDB_DUPLICATE: &str = "RPC_RRDB_RRDB_DUPLICATE";
    // Reads:
    pub const RRDB_GET: &str = "RPC_RRDB_RRDB_GET";
    pub const RRDB_MULTI_GET: &str = "RPC_RRDB_RRDB_MULTI_GET";
    pub const RRDB_BATCH_GET: &str = "RPC_RRDB_RRDB_BATCH_GET";
    pub const RRDB_TTL: &str = "RPC_RRDB_RRDB_TTL";
    pub const RRDB_SORTKEY_COUNT: &str = "RPC_RRDB_RRDB_SORTKEY_COUNT";
    pub const RRDB_GET_SCANNER: &str = "RPC_RRDB_RRDB_GET_SCANNER";
    pub const RRDB_SCAN: &str = "RPC_RRDB_RRDB_SCAN";
    pub const RRDB_CLEAR_SCANNER: &str = "RPC_RRDB_RRDB_CLEAR_SCANNER";

    // The reply names of the RPCs above that are answered or read on every call, spelled out
    // once so that no reply allocates its name ([`ack_name`] builds any other; a test checks
    // these agree with it).
    pub const QUERY_CONFIG_ACK: &str = "RPC_CM_QUERY_PARTITION_CONFIG_BY_INDEX_ACK";
    pub const NEGOTIATION_ACK: &str = "RPC_NEGOTIATION_ACK";
    pub const UPDATE_APP_ENV_ACK: &str = "RPC_CM_UPDATE_APP_ENV_ACK";
    pub const QUERY_DUPLICATION_ACK: &str = "RPC_CM_QUERY_DUPLICATION_ACK";
    pub const ADD_DUPLICATION_ACK: &str = "RPC_CM_ADD_DUPLICATION_ACK";
    pub const LIST_APPS_ACK: &str = "RPC_CM_LIST_APPS_ACK";

    /// The reply name of a request: the request name with `_ACK` appended (§4).
    pub fn ack_name(request: &str) -> String {
        let mut name = String::with_capacity(request.len() + 4);
        name.push_str(request);
        name.push_str("_ACK");
        name
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_spelled_out_reply_names_are_the_ack_names() {
            let cases = [
                (QUERY_CONFIG_ACK, QUERY_CONFIG),
                (NEGOTIATION_ACK, NEGOTIATION),
                (UPDATE_APP_ENV_ACK, UPDATE_APP_ENV),
                (QUERY_DUPLICATION_ACK, QUERY_DUPLICATION),
                (ADD_DUPLICATION_ACK, ADD_DUPLICATION),
                (LIST_APPS_ACK, LIST_APPS),
            ];
            for (ack, request) in cases {
                assert_eq!(ack, ack_name(request));
            }
        }
    }
}
