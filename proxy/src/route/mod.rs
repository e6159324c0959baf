//! Where each table is served: the route record kept in ZooKeeper (or a static file), and the
//! sources and cache that turn a table name into a cluster and its MetaServers.

pub mod record;

pub use record::{RecordError, RouteRecord, validate_meta_addr};
