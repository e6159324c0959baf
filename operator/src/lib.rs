//! metaproxy-operator: keeps `PegasusTableRoute` resources, from the Kubernetes API or from a
//! directory of YAML files, in the ZooKeeper route records that the proxies read.

pub mod admin;
mod app;
pub mod clock;
pub mod clusters;
pub mod config;
pub mod controller;
pub mod crd;
pub mod drift;
pub mod error;
pub mod events;
pub mod leader;
pub mod metrics;
pub mod observers;
pub mod orphans;
pub mod probe;
pub mod reconcile;
pub mod record;
pub mod route_file;
pub mod routes_dir;
pub mod zk;
pub mod zone;

pub use app::{App, AppError};
pub use error::Error;
