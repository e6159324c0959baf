//! The seed corpora of the codec's fuzz targets (`pegasus-rpc/fuzz/seeds/<target>/`), built from
//! the wire vectors: each request and reply whole, each request's body inside every header kind
//! (a v0 body under v1 with the Java client's request_meta), the args and result bodies of the
//! query_config and admin RPCs (add_duplication, without a vector, from its encodings), and two
//! streams of two frames. Every seed of a frame decodes, so
//! that the fuzzer starts past the header checks.
//! Regenerate with `METAPROXY_WRITE_FUZZ_SEEDS=1 cargo test -p pegasus-rpc --test fuzz_seeds`.

use bytes::BytesMut;
use metaproxy_tests::fuzz_seeds::{self, Seeds};
use metaproxy_tests::vectors;
use pegasus_rpc::codec::{
    self, AddDuplicationRequest, AddDuplicationResponse, ErrorCode, V0_HEADER_LEN, rpc,
};
use pegasus_rpc::fuzz_logic::{self, HeaderKind, MAX_FRAME};

/// The byte before a raw stream in a `request_frame` input: no header kind's selector.
const RAW: u8 = 0;

fn seeds() -> Seeds {
    let mut seeds = Seeds::default();
    for (name, bytes) in vectors::all() {
        let stem = name.trim_end_matches(".hex");
        if bytes.starts_with(b"THFT") {
            request_seeds(&mut seeds, stem, &bytes);
        } else {
            reply_seeds(&mut seeds, stem, &bytes);
        }
    }
    let stream = |names: [&str; 2]| names.map(vectors::load).concat();
    let requests = stream([
        "python-v0-query-temp.req.hex",
        "doc-java-v1-query-temp.req.hex",
    ]);
    seeds.add(
        "request_frame",
        "raw-stream-v0-v1",
        [&[RAW], &requests[..]].concat(),
    );
    let replies = stream([
        "python-v0-query-temp.reply.hex",
        "doc-reply-handler-not-found.hex",
    ]);
    seeds.add("reply_frame", "stream-ok-then-rpc-error", replies);

    // add_duplication has no vector yet: its encodings, every optional field set.
    let mut args = BytesMut::new();
    AddDuplicationRequest {
        is_duplicating_checkpoint: Some(false),
        remote_app_name: Some("temp".into()),
        remote_replica_count: Some(3),
        ..AddDuplicationRequest::new("temp", "target_cluster")
    }
    .to_args(&mut args);
    seeds.add("admin", "add-duplication.args", args.to_vec());
    let mut result = BytesMut::new();
    AddDuplicationResponse {
        err: ErrorCode::OK,
        appid: 2,
        dupid: 1_700_000_000,
        hint: Some(String::new()),
        remote_app_name: Some("temp".into()),
        remote_replica_count: Some(3),
    }
    .to_result(&mut result);
    seeds.add("admin", "add-duplication.result", result.to_vec());
    seeds
}

fn request_seeds(seeds: &mut Seeds, stem: &str, bytes: &[u8]) {
    let frame = codec::decode_request(&mut BytesMut::from(bytes), MAX_FRAME)
        .expect("a vector decodes")
        .expect("a vector is whole");
    seeds.add(
        "request_frame",
        format!("raw-{stem}"),
        [&[RAW], bytes].concat(),
    );
    // A v0 body goes under v1 with the request_meta the Java client writes.
    let (meta, body) = match split_v1(bytes) {
        Some((meta, body)) => (meta.to_vec(), body),
        None => (java_meta(), &bytes[V0_HEADER_LEN..]),
    };
    let meta_len = u8::try_from(meta.len()).expect("a request_meta this short");
    for kind in HeaderKind::ALL {
        let inner = match kind {
            HeaderKind::V0 => body.to_vec(),
            HeaderKind::V1 => [&[meta_len], &meta[..], body].concat(),
            // The args under the header the C++ client writes.
            HeaderKind::Native => frame.args.to_vec(),
        };
        let framed = codec::decode_request(&mut BytesMut::from(&kind.frame(&inner)[..]), MAX_FRAME);
        assert!(
            matches!(framed, Ok(Some(_))),
            "{stem} under {kind:?}: {framed:?}"
        );
        let input = kind.input(&inner);
        seeds.add(
            "request_frame",
            format!("{kind:?}-{stem}").to_lowercase(),
            input,
        );
    }
    if let Some(target) = payload_target(frame.name()) {
        seeds.add(target, format!("{stem}.args"), frame.args.to_vec());
    }
}

/// The request_meta and the body of a v1 request; `None` for v0.
fn split_v1(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    if bytes[4..8] != [0, 0, 0, 1] {
        return None;
    }
    let meta_len = u32::from_be_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
    Some(bytes[16..].split_at(meta_len))
}

fn java_meta() -> Vec<u8> {
    let java = vectors::load("doc-java-v1-query-temp.req.hex");
    split_v1(&java).expect("a v1 vector").0.to_vec()
}

fn reply_seeds(seeds: &mut Seeds, stem: &str, bytes: &[u8]) {
    let frame = codec::decode_reply(&mut BytesMut::from(bytes), MAX_FRAME)
        .expect("a vector decodes")
        .expect("a vector is whole");
    seeds.add("reply_frame", stem, bytes.to_vec());
    let request = frame.message.name.strip_suffix("_ACK").unwrap_or_default();
    if let Some(target) = payload_target(request).filter(|_| frame.rpc_error.is_ok()) {
        seeds.add(target, format!("{stem}.result"), frame.body.to_vec());
    }
}

/// The payload target for the args and results of an RPC.
fn payload_target(rpc_name: &str) -> Option<&'static str> {
    match rpc_name {
        rpc::QUERY_CONFIG => Some("query_config"),
        rpc::UPDATE_APP_ENV | rpc::QUERY_DUPLICATION | rpc::ADD_DUPLICATION => Some("admin"),
        _ => None,
    }
}

#[test]
fn committed_seeds_are_built_from_the_vectors() {
    seeds().check_or_write(&fuzz_seeds::dir("pegasus-rpc"));
}

/// The seeds as built, which the test above holds equal to the committed ones.
#[test]
fn every_seed_holds_its_targets_properties() {
    seeds().hold(&[
        ("admin", fuzz_logic::admin_payloads),
        ("query_config", fuzz_logic::query_config_payloads),
        ("reply_frame", fuzz_logic::reply_stream),
        ("request_frame", fuzz_logic::request_input),
    ]);
}
