//! Test infrastructure shared by the integration tests, the demo and the benchmarks: harnesses
//! for the real components (ZooKeeper, the Kubernetes API server for custom resources) and the
//! Pegasus MetaServer simulator.

pub mod harness;
pub mod load;
pub mod relay;
pub mod sim;
pub mod zk;

pub use harness::free_port;
