//! MetaProxy for Apache Pegasus: the route record kept in ZooKeeper, and the proxy that serves
//! query_config by routing on the table name. The wire protocol and the MetaServer client live
//! in the `pegasus-rpc` crate.

pub mod admin;
pub mod admin_rpc;
mod app;
pub mod clusters;
pub mod config;
// The properties shared by the route fuzz targets (proxy/fuzz) and the property tests: public so
// that both can call them, hidden because they are no API (docs/robustness.md, "Fuzzing").
pub mod fd_limit;
#[doc(hidden)]
pub mod fuzz_logic;
pub mod list_apps;
pub mod metrics;
mod outbox;
mod owed;
mod quiet;
pub mod route;
pub mod server;
pub mod service;
pub mod startup;
pub mod upstream;
pub mod warnings;
pub mod zk_auth;

pub use app::Proxy;
