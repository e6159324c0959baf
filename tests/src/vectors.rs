//! The wire vectors in `pegasus-rpc/tests/vectors` (listed in `docs/protocol.md` §12): frames
//! written from the protocol notes and frames captured from the official Python and Node.js
//! clients. One frame per file, lowercase hex.

use std::path::PathBuf;

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
