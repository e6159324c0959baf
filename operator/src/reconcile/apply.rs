//! Apply: carry out a [`Plan`] on ZooKeeper. Every write names the version the plan was made
//! from; a lost race comes back as [`ZkError::LostRace`] and the caller observes again.

use crate::metrics::Metrics;
use crate::reconcile::decide::Plan;
use crate::zk::{Records, ZkError};

/// What was done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The znode is at `version` with the record (written now or before).
    Holds { version: i32 },
    /// The znode is gone.
    Removed,
    /// Nothing was touched: another route owns the table.
    Untouched,
}

pub async fn apply(
    store: &dyn Records,
    path: &str,
    plan: &Plan,
    metrics: &Metrics,
) -> Result<Applied, ZkError> {
    match plan {
        Plan::InSync { version } => Ok(Applied::Holds { version: *version }),
        Plan::Create { data } => {
            let version = store.create(path, data.as_bytes()).await?;
            metrics.znode_written("create");
            Ok(Applied::Holds { version })
        }
        Plan::Replace { data, version, .. } => {
            let version = store.set(path, data.as_bytes(), *version).await?;
            metrics.znode_written("set");
            Ok(Applied::Holds { version })
        }
        Plan::Delete { version } => {
            store.delete(path, *version).await?;
            metrics.znode_written("delete");
            Ok(Applied::Removed)
        }
        Plan::AlreadyGone => Ok(Applied::Removed),
        Plan::Yield { .. } | Plan::LeaveForeign { .. } => Ok(Applied::Untouched),
    }
}
