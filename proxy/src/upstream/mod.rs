//! Calls to Pegasus MetaServers: [`MetaClient`] for one MetaServer connection, [`MetaGroup`] for
//! the MetaServers of one cluster (leader following, failover to the others, hedging), and
//! [`Upstreams`], the proxy's groups by cluster with request coalescing.

mod client;
mod group;
mod pool;

pub use client::{CallError, ClientOptions, MetaClient};
pub use group::{GroupError, GroupOptions, GroupReply, MetaGroup};
pub use pool::{Answer, Upstreams};
