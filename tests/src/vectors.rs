//! The wire vectors in `pegasus-rpc/tests/vectors` (listed in `docs/protocol.md` §12): frames
//! written from the protocol notes and frames captured from the official Python and Node.js
//! clients. One frame per file, lowercase hex.

use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use pegasus_rpc::codec::{
    self, CodecError, DEFAULT_MAX_REPLY_FRAME, DEFAULT_MAX_REQUEST_FRAME, ReplyFrame, RequestFrame,
};

/// The directory holding the `*.hex` files.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../pegasus-rpc/tests/vectors")
}

/// The bytes of one vector, e.g. `load("python-v0-query-temp.req.hex")`. Panics when it is
/// missing or not hex: the vectors are part of the repository.
pub fn load(name: &str) -> Vec<u8> {
    let path = dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    decode_hex(&text).unwrap_or_else(|| panic!("{}: not hex", path.display()))
}

/// A request vector and its frame. Panics unless the file is one whole frame that re-encodes to
/// the same bytes.
pub fn request(name: &str) -> (Vec<u8>, RequestFrame) {
    whole_frame(
        name,
        codec::decode_request,
        DEFAULT_MAX_REQUEST_FRAME,
        |f| f.to_bytes(),
    )
}

/// A reply vector and its frame. Panics unless the file is one whole frame that re-encodes to the
/// same bytes, both as a [`ReplyFrame`] and from its parts with [`codec::encode_reply`].
pub fn reply(name: &str) -> (Vec<u8>, ReplyFrame) {
    let (bytes, frame) = whole_frame(name, codec::decode_reply, DEFAULT_MAX_REPLY_FRAME, |f| {
        f.to_bytes()
    });
    let mut parts = BytesMut::new();
    codec::encode_reply(
        &mut parts,
        frame.rpc_error.as_str(),
        &frame.message.name,
        frame.seqid(),
        &frame.body,
    );
    assert_eq!(
        &parts[..],
        &bytes[..],
        "{name}: encode_reply gives the same bytes"
    );
    (bytes, frame)
}

/// Decodes vector `name` as one whole frame and checks that it re-encodes to the same bytes.
fn whole_frame<F>(
    name: &str,
    decode: fn(&mut BytesMut, usize) -> Result<Option<F>, CodecError>,
    max_frame: usize,
    encode: fn(&F) -> Bytes,
) -> (Vec<u8>, F) {
    let bytes = load(name);
    let mut buf = BytesMut::from(&bytes[..]);
    let frame = decode(&mut buf, max_frame)
        .expect("decodes")
        .expect("whole frame");
    assert!(buf.is_empty(), "{name}: the frame is the whole file");
    assert_eq!(
        encode(&frame),
        bytes,
        "{name}: re-encodes to the same bytes"
    );
    (bytes, frame)
}

/// Every vector, sorted by file name.
pub fn all() -> Vec<(String, Vec<u8>)> {
    let mut names: Vec<String> = std::fs::read_dir(dir())
        .expect("the vectors directory")
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".hex"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let bytes = load(&n);
            (n, bytes)
        })
        .collect()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let hex: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

/// `bytes` in the files' format: lowercase hex, 32 bytes a line, a newline after every line.
pub fn hex_lines(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2 + bytes.len() / 32 + 1);
    for line in bytes.chunks(32) {
        for b in line {
            out.push_str(&format!("{b:02x}"));
        }
        out.push('\n');
    }
    out
}
