//! MetaProxy for Apache Pegasus: the route record kept in ZooKeeper, and the proxy that serves
//! query_config by routing on the table name. The wire protocol and the MetaServer client live
//! in the `pegasus-rpc` crate.

pub mod admin;
mod app;
pub mod clusters;
pub mod config;
pub mod fd_limit;
pub mod metrics;
pub mod route;
pub mod server;
pub mod service;
pub mod startup;
pub mod upstream;
pub mod warnings;

pub use app::Proxy;
