//! Test infrastructure shared by the integration tests, the demo and the benchmarks: harnesses
//! for the real components (ZooKeeper, the Kubernetes API server for custom resources, the
//! operator binary) and the Pegasus MetaServer simulator.

pub mod bystander;
pub mod chart;
pub mod client;
pub mod compare;
pub mod cpu;
pub mod fuzz_seeds;
pub mod harness;
pub mod idl;
pub mod k8s;
pub mod kv;
pub mod load;
pub mod operator;
pub mod proxy;
pub mod raw;
pub mod relay;
pub mod sim;
pub mod vectors;
pub mod wakes;
pub mod workload;
pub mod zk;

pub use harness::free_port;
