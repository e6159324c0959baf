//! Calls to the routes' Pegasus clusters: the health probe and the switchover's admin RPCs,
//! through one [`MetaGroup`] per cluster (leader following, failover to the other MetaServers,
//! a deadline per call), shared by every route that names the cluster.
//!
//! ```text
//!  probe          query_config(table)        ERR_OK or ERR_OBJECT_NOT_FOUND: a leader answered
//!  deny / lift    update_app_env SET / DEL   replica.deny_client_request
//!  progress       query_duplication(table)   every partition confirmed up to its last commit?
//! ```
//!
//! A probe counts as healthy when the cluster's leader answered query_config in time, with
//! `ERR_OK` or with `ERR_OBJECT_NOT_FOUND`: a missing table is a live cluster (the probe names one
//! of the tables routed to the cluster; a table dropped there is a matter for its route, not the
//! cluster's health). `ERR_SERVICE_NOT_ACTIVE` (no MetaServer leads), other errors, and no
//! answer by the deadline are failures.
//!
//! The reconciler and the prober use the clusters through [`ClusterCalls`], so that tests can put
//! a scripted fake in their place.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures::FutureExt;
use futures::future::BoxFuture;
use metaproxy::route::RouteRecord;
use pegasus_rpc::client::{GroupOptions, MetaGroup};
use pegasus_rpc::codec::{ErrorCode, UpdateAppEnvRequest};
use tokio::time::Instant;

use crate::reconcile::switchover::{DENY_KEY, Drain, deny_value_is_valid};

/// The calls the operator makes to a cluster.
pub trait ClusterCalls: Send + Sync {
    /// A query_config for `table`: `Ok` when a leader answered in time.
    fn probe<'a>(
        &'a self,
        cluster: &'a RouteRecord,
        table: &'a str,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<(), String>>;
    /// Sets [`DENY_KEY`] to `value` on the cluster's table.
    fn deny<'a>(
        &'a self,
        cluster: &'a RouteRecord,
        table: &'a str,
        value: &'a str,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<(), String>>;
    /// Deletes [`DENY_KEY`] from the cluster's table.
    fn lift<'a>(
        &'a self,
        cluster: &'a RouteRecord,
        table: &'a str,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<(), String>>;
    /// How far the table's duplication to `to_cluster` has got.
    fn progress<'a>(
        &'a self,
        cluster: &'a RouteRecord,
        table: &'a str,
        to_cluster: &'a str,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<Drain, String>>;
}

/// [`ClusterCalls`] over the Pegasus RPC protocol.
#[derive(Default)]
pub struct MetaClusters {
    groups: Mutex<HashMap<RouteRecord, Arc<MetaGroup>>>,
}

impl MetaClusters {
    /// The group for `cluster`, made on first use.
    fn group(&self, cluster: &RouteRecord) -> Result<Arc<MetaGroup>, String> {
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(g) = groups.get(cluster) {
            return Ok(g.clone());
        }
        let group = MetaGroup::new(
            cluster.cluster.clone(),
            &cluster.meta_addrs,
            GroupOptions::default(),
        )
        .map_err(|e| e.to_string())?;
        let group = Arc::new(group);
        groups.insert(cluster.clone(), group.clone());
        Ok(group)
    }

    async fn update(
        &self,
        cluster: &RouteRecord,
        request: UpdateAppEnvRequest,
        deadline: Instant,
    ) -> Result<(), String> {
        let group = self.group(cluster)?;
        let resp = group
            .update_app_env(&request, deadline)
            .await
            .map_err(|e| e.to_string())?;
        if resp.err.is_ok() {
            Ok(())
        } else if resp.hint_message.is_empty() {
            Err(resp.err.to_string())
        } else {
            Err(format!("{}: {}", resp.err, resp.hint_message))
        }
    }
}

impl ClusterCalls for MetaClusters {
    fn probe<'a>(
        &'a self,
        cluster: &'a RouteRecord,
        table: &'a str,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<(), String>> {
        async move {
            let group = self.group(cluster)?;
            let resp = group
                .query_config(table, deadline)
                .await
                .map_err(|e| e.to_string())?;
            if resp.err.is_ok() || resp.err == ErrorCode::OBJECT_NOT_FOUND {
                Ok(())
            } else {
                Err(format!("{} answered {}", group.leader(), resp.err))
            }
        }
        .boxed()
    }

    fn deny<'a>(
        &'a self,
        cluster: &'a RouteRecord,
        table: &'a str,
        value: &'a str,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<(), String>> {
        async move {
            // A replica server asserts on a value it cannot split: never send one.
            if !deny_value_is_valid(value) {
                return Err(format!("refusing to write {DENY_KEY}={value:?}"));
            }
            self.update(
                cluster,
                UpdateAppEnvRequest::set(table, [(DENY_KEY, value)]),
                deadline,
            )
            .await
        }
        .boxed()
    }

    fn lift<'a>(
        &'a self,
        cluster: &'a RouteRecord,
        table: &'a str,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<(), String>> {
        self.update(
            cluster,
            UpdateAppEnvRequest::del(table, [DENY_KEY]),
            deadline,
        )
        .boxed()
    }

    fn progress<'a>(
        &'a self,
        cluster: &'a RouteRecord,
        table: &'a str,
        to_cluster: &'a str,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<Drain, String>> {
        async move {
            let group = self.group(cluster)?;
            let resp = group
                .query_duplication(table, deadline)
                .await
                .map_err(|e| e.to_string())?;
            if !resp.err.is_ok() {
                return Err(resp.err.to_string());
            }
            Ok(drain_of(&resp.entry_list, to_cluster))
        }
        .boxed()
    }
}

/// How far duplication to `to_cluster` has got: the entries that name it, else every entry (the
/// name a source gives its follower, from its own `[pegasus.clusters]`, need not be the route's).
pub fn drain_of(entries: &[pegasus_rpc::codec::DuplicationEntry], to_cluster: &str) -> Drain {
    let named: Vec<_> = entries.iter().filter(|e| e.remote == to_cluster).collect();
    let chosen: Vec<_> = if named.is_empty() {
        entries.iter().collect()
    } else {
        named
    };
    if chosen.is_empty() {
        return Drain::NoDuplication;
    }
    let mut behind = 0i64;
    let mut partitions = 0u32;
    for e in chosen {
        let Some(states) = &e.partition_states else {
            return Drain::NoProgress;
        };
        for s in states.values() {
            let gap = s.last_committed_decree - s.confirmed_decree;
            if gap > 0 {
                behind += gap;
                partitions += 1;
            }
        }
    }
    if partitions == 0 {
        Drain::Drained
    } else {
        Drain::Lagging { behind, partitions }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use pegasus_rpc::codec::{DuplicationEntry, DuplicationPartitionState};

    use super::*;

    fn entry(remote: &str, states: Option<&[(i64, i64)]>) -> DuplicationEntry {
        DuplicationEntry {
            remote: remote.into(),
            partition_states: states.map(|s| {
                s.iter()
                    .enumerate()
                    .map(|(i, &(confirmed, committed))| {
                        (
                            i32::try_from(i).expect("small"),
                            DuplicationPartitionState {
                                confirmed_decree: confirmed,
                                last_committed_decree: committed,
                            },
                        )
                    })
                    .collect::<BTreeMap<_, _>>()
            }),
            ..DuplicationEntry::default()
        }
    }

    #[test]
    fn drained_when_every_partition_is_confirmed() {
        assert_eq!(drain_of(&[], "c2"), Drain::NoDuplication);
        assert_eq!(
            drain_of(&[entry("c2", Some(&[(5, 5), (7, 7)]))], "c2"),
            Drain::Drained
        );
        assert_eq!(
            drain_of(&[entry("c2", Some(&[(5, 9), (7, 7), (1, 3)]))], "c2"),
            Drain::Lagging {
                behind: 6,
                partitions: 2
            }
        );
        assert_eq!(
            drain_of(&[entry("c2", None)], "c2"),
            Drain::NoProgress,
            "2.4 and 2.5 report nothing"
        );
        // The follower under another name: every entry counts.
        assert_eq!(
            drain_of(&[entry("bk", Some(&[(1, 2)]))], "c2"),
            Drain::Lagging {
                behind: 1,
                partitions: 1
            }
        );
        // The named one only, when there is one.
        assert_eq!(
            drain_of(
                &[
                    entry("other", Some(&[(1, 9)])),
                    entry("c2", Some(&[(3, 3)]))
                ],
                "c2"
            ),
            Drain::Drained
        );
    }
}
