//! The Pegasus RPC protocol as the official clients and the MetaServers speak it.
//!
//! - [`codec`]: request and reply frames (`THFT` header v0 and v1) and the payload types of the
//!   RPCs this project understands, encoded byte for byte as the Pegasus servers do. No I/O and
//!   no runtime: bytes in, values out.
//! - [`client`] (feature `client`, on by default): [`client::MetaClient`] for one MetaServer
//!   connection and [`client::MetaGroup`] for the MetaServers of one cluster, following their
//!   leader, on tokio.
//!
//! The byte layouts are described in `docs/protocol.md` of this repository.

pub mod codec;

// The properties shared by the fuzz targets (pegasus-rpc/fuzz) and the property tests: public so
// that both can call them, hidden because they are no API (docs/robustness.md, "Fuzzing").
#[doc(hidden)]
pub mod fuzz_logic;

#[cfg(feature = "client")]
pub mod client;
