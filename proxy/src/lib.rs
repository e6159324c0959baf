//! MetaProxy for Apache Pegasus: the Pegasus RPC codec, the MetaServer client, the route record
//! kept in ZooKeeper, and the proxy that serves query_config by routing on the table name.

pub mod admin;
mod app;
pub mod codec;
pub mod config;
pub mod metrics;
pub mod route;
pub mod server;
pub mod service;
pub mod startup;
pub mod upstream;

pub use app::Proxy;
