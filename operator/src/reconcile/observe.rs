//! Observe: read the route's znode as it is now. The claims of the other routes are observed by
//! the route source (the Kubernetes cache or the directory scan) and passed in.

use crate::zk::{Records, ZkError, Znode};

/// The znode at `path`, if it exists.
pub async fn observe(store: &dyn Records, path: &str) -> Result<Option<Znode>, ZkError> {
    store.read(path).await
}
