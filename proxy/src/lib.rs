//! MetaProxy for Apache Pegasus: the Pegasus RPC codec, the MetaServer client, the route record
//! kept in ZooKeeper, and the proxy that serves query_config by routing on the table name.

pub mod codec;
pub mod route;
pub mod upstream;
