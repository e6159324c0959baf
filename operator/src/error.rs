//! The operator's errors. Each maps to a fixed metric label.

use thiserror::Error;

use crate::zk::ZkError;

#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    ZooKeeper(#[from] ZkError),
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    #[error("{0}")]
    UnknownZone(String),
    #[error("{owner} owns this table in zone {zone}")]
    Conflict { owner: String, zone: String },
    #[error(
        "znode {path} kept changing under concurrent writers: gave up after {attempts} attempts"
    )]
    Contended { path: String, attempts: u32 },
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("route file {path}: {reason}")]
    RouteFile { path: String, reason: String },
    #[error("the resource has no {0}")]
    MissingField(&'static str),
    #[error("finalizer: {0}")]
    Finalizer(Box<kube::runtime::finalizer::Error<Error>>),
    #[error("stopped before the reconcile finished")]
    Stopped,
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::ZooKeeper(e) => e.metric_label(),
            Error::InvalidSpec(_) => "invalid_spec",
            Error::UnknownZone(_) => "unknown_zone",
            Error::Conflict { .. } => "conflict",
            Error::Contended { .. } => "contended",
            Error::Kube(_) => "kube_api",
            Error::RouteFile { .. } => "route_file",
            Error::MissingField(_) => "missing_field",
            Error::Finalizer(e) => match e.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.metric_label(),
                kube::runtime::finalizer::Error::AddFinalizer(_)
                | kube::runtime::finalizer::Error::RemoveFinalizer(_) => "kube_api",
                _ => "finalizer",
            },
            Error::Stopped => "stopped",
        }
    }
}
