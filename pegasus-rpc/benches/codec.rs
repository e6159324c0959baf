//! The codec on the proxy's hot path: decoding a client's request, reading `err` from an upstream
//! reply, writing the reply back under the client's seqid; and the slower path of stripping the
//! 2.6 fields (a full decode and re-encode).

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pegasus_rpc::codec::{
    self, DEFAULT_MAX_REPLY_FRAME, DEFAULT_MAX_REQUEST_FRAME, NativeHeader, QueryCfgRequest,
    QueryCfgResponse,
};
use std::hint::black_box;

use metaproxy_tests::vectors::load as vector;

fn reply_body(name: &str) -> Bytes {
    let mut buf = BytesMut::from(&vector(name)[..]);
    codec::decode_reply(&mut buf, DEFAULT_MAX_REPLY_FRAME)
        .expect("ok")
        .expect("frame")
        .body
}

fn requests(c: &mut Criterion) {
    let mut g = c.benchmark_group("request");
    for name in [
        "python-v0-query-temp.req.hex",
        "doc-java-v1-query-temp.req.hex",
    ] {
        let bytes = vector(name);
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(
            BenchmarkId::new("decode_frame_and_args", name),
            &bytes,
            |b, bytes| {
                b.iter(|| {
                    let mut buf = BytesMut::from(&bytes[..]);
                    let frame = codec::decode_request(&mut buf, DEFAULT_MAX_REQUEST_FRAME)
                        .expect("ok")
                        .expect("frame");
                    black_box(QueryCfgRequest::from_args(&frame.args).expect("args"))
                })
            },
        );
    }
    g.finish();
}

/// The native header against THFT v0 for the same query_config: decoding the request, and
/// writing the reply under the request's header. The native frame is the one the C++ client
/// writes (args field 0); the THFT one the Go client's vector.
fn native_vs_thft(c: &mut Criterion) {
    let mut g = c.benchmark_group("header");
    g.throughput(Throughput::Elements(1));
    let thft = vector("doc-go-v0-query-temp.req.hex");
    let mut args = BytesMut::new();
    pegasus_rpc::codec::wire::encode_args(&QueryCfgRequest::new("temp"), 0, &mut args);
    let mut native = BytesMut::new();
    NativeHeader::request(codec::rpc::QUERY_CONFIG, 1, 5000).encode(args.len(), &mut native);
    native.extend_from_slice(&args);
    let body = reply_body("python-v0-query-temp.reply.hex");
    for (name, bytes) in [("thft_v0", thft), ("native", native.to_vec())] {
        g.bench_with_input(
            BenchmarkId::new("decode_request", name),
            &bytes,
            |b, bytes| {
                b.iter(|| {
                    let mut buf = BytesMut::from(&bytes[..]);
                    black_box(
                        codec::decode_request(&mut buf, DEFAULT_MAX_REQUEST_FRAME)
                            .expect("ok")
                            .expect("frame"),
                    )
                })
            },
        );
        let mut buf = BytesMut::from(&bytes[..]);
        let frame = codec::decode_request(&mut buf, DEFAULT_MAX_REQUEST_FRAME)
            .expect("ok")
            .expect("frame");
        let to = frame.reply_to();
        g.bench_with_input(BenchmarkId::new("encode_reply", name), &to, |b, to| {
            let mut out = BytesMut::with_capacity(1024);
            b.iter(|| {
                out.clear();
                to.encode(
                    &mut out,
                    "ERR_OK",
                    "RPC_CM_QUERY_PARTITION_CONFIG_BY_INDEX_ACK",
                    &body,
                );
                black_box(out.len())
            })
        });
    }
    g.finish();
}

fn replies(c: &mut Criterion) {
    let mut g = c.benchmark_group("reply");
    g.throughput(Throughput::Elements(1));
    let body = reply_body("python-v0-query-temp.reply.hex");
    g.bench_function("peek_err", |b| {
        b.iter(|| black_box(QueryCfgResponse::peek_err(&body).expect("err")))
    });
    g.bench_function("encode_reply_476B", |b| {
        let mut out = BytesMut::with_capacity(1024);
        b.iter(|| {
            out.clear();
            codec::encode_reply(
                &mut out,
                "ERR_OK",
                "RPC_CM_QUERY_PARTITION_CONFIG_BY_INDEX_ACK",
                7,
                &body,
            );
            black_box(out.len())
        })
    });
    let hp = reply_body("python-v0-query-temp-hp.reply.hex");
    g.bench_function("strip_host_ports_4_partitions", |b| {
        let mut out = BytesMut::with_capacity(1024);
        b.iter(|| {
            out.clear();
            let mut resp = QueryCfgResponse::from_result(&hp).expect("decode");
            resp.strip_host_ports();
            resp.to_result(&mut out);
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, requests, native_vs_thft, replies);
criterion_main!(benches);
