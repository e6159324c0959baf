//! Calls to Pegasus MetaServers: [`MetaClient`] for one MetaServer connection, [`MetaGroup`] for
//! the MetaServers of one cluster (leader following, failover to the others, hedging).

mod client;
mod group;

pub use client::{CallError, ClientOptions, MetaClient};
pub use group::{GroupError, GroupOptions, GroupReply, MetaGroup};
