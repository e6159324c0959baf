//! metaproxy-operator: keeps `PegasusTableRoute` resources, from the Kubernetes API or from a
//! directory of YAML files, in the ZooKeeper route records that the proxies read.

pub mod crd;
pub mod error;
pub mod metrics;
pub mod reconcile;
pub mod zk;
pub mod zone;

pub use error::Error;
