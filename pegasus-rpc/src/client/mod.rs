//! Calls to Pegasus MetaServers: [`MetaClient`] for one MetaServer connection, [`MetaGroup`] for
//! the MetaServers of one cluster (leader following, failover to the others, hedging).

mod group;
mod meta;

pub use group::{GroupError, GroupOptions, GroupReply, MetaGroup, NoMetaServers};
pub use meta::{CallError, ClientOptions, MetaClient};
