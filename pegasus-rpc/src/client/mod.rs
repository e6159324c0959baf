//! Calls to Pegasus servers: [`Connection`] for one pipelined connection to any server,
//! [`MetaClient`] for one MetaServer connection, [`MetaGroup`] for the MetaServers of one cluster
//! (leader following, failover to the others, hedging).

mod conn;
mod group;
mod meta;

pub use conn::{CallError, ClientOptions, Connection};
pub use group::{
    CallPolicy, Delivery, GroupError, GroupOptions, GroupReply, MetaGroup, NoMetaServers,
    may_ask_again,
};
pub use meta::MetaClient;
