//! A table's partition configurations, derived from its replica layout, and the encoded reply
//! bodies the serving path hands out. The body for "all partitions" is encoded once when the
//! table is put (or its layout changes), so that answering the common query is a copy.

use std::net::SocketAddrV4;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use pegasus_rpc::codec::{
    ErrorCode, Gpid, HostPort, PartitionConfiguration, QueryCfgResponse, RpcAddress,
};

use super::TableSpec;
use super::layout::{self, PartitionLayout};
use super::store::TableStore;

/// A table as served: its spec, where its partitions are, its data, and the encoded result body
/// listing every partition.
#[derive(Debug)]
pub(crate) struct Table {
    pub spec: TableSpec,
    /// The replicas it lives on: the spec's, or every served replica node when it names none.
    pub replicas: Vec<SocketAddrV4>,
    pub layout: Vec<PartitionLayout>,
    pub partitions: Vec<PartitionConfiguration>,
    /// The result struct (`{0: query_cfg_response}`) listing every partition.
    pub all: Bytes,
    pub store: Arc<TableStore>,
    cluster_host_ports: bool,
}

impl Table {
    /// A new table with no data; `spec` must have passed [`TableSpec::validate`]. `nodes` are the
    /// served replica nodes, for a spec that names no replicas.
    pub fn new(spec: TableSpec, nodes: &[SocketAddrV4], cluster_host_ports: bool) -> Table {
        let replicas = if spec.replicas.is_empty() {
            nodes.to_vec()
        } else {
            spec.replicas.clone()
        };
        let layout = layout::initial(&replicas, spec.partition_count);
        let store = Arc::new(TableStore::new(spec.app_id, spec.partition_count));
        Table::assemble(spec, replicas, layout, store, cluster_host_ports)
    }

    /// This table with a new spec, keeping its data and layout when the spec keeps the app id,
    /// partition count and replicas; otherwise a new table (the caller stops the old one's
    /// duplications).
    pub fn respec(&self, spec: TableSpec, nodes: &[SocketAddrV4]) -> Table {
        let same = spec.app_id == self.spec.app_id
            && spec.partition_count == self.spec.partition_count
            && spec.replicas == self.spec.replicas;
        if !same {
            return Table::new(spec, nodes, self.cluster_host_ports);
        }
        Table::assemble(
            spec,
            self.replicas.clone(),
            self.layout.clone(),
            self.store.clone(),
            self.cluster_host_ports,
        )
    }

    /// This table with another layout.
    pub fn relayout(&self, layout: Vec<PartitionLayout>) -> Table {
        Table::assemble(
            self.spec.clone(),
            self.replicas.clone(),
            layout,
            self.store.clone(),
            self.cluster_host_ports,
        )
    }

    fn assemble(
        spec: TableSpec,
        replicas: Vec<SocketAddrV4>,
        layout: Vec<PartitionLayout>,
        store: Arc<TableStore>,
        cluster_host_ports: bool,
    ) -> Table {
        let host_ports = spec.host_port_fields.unwrap_or(cluster_host_ports);
        let partitions = partitions(&spec, &replicas, &layout, host_ports);
        let all = encode(&spec, partitions.clone());
        Table {
            spec,
            replicas,
            layout,
            partitions,
            all,
            store,
            cluster_host_ports,
        }
    }

    /// The result body for a request naming `indices`. Like the MetaServer, it keeps the valid
    /// indices in the order given (duplicates too) and falls back to every partition when none
    /// is valid or none was named.
    pub fn body_for(&self, indices: Option<&[i32]>) -> Bytes {
        let Some(indices) = indices.filter(|i| !i.is_empty()) else {
            return self.all.clone();
        };
        let chosen: Vec<PartitionConfiguration> = indices
            .iter()
            .filter_map(|&i| usize::try_from(i).ok())
            .filter_map(|i| self.partitions.get(i).cloned())
            .collect();
        if chosen.is_empty() {
            self.all.clone()
        } else {
            encode(&self.spec, chosen)
        }
    }
}

fn encode(spec: &TableSpec, partitions: Vec<PartitionConfiguration>) -> Bytes {
    let resp = QueryCfgResponse {
        err: ErrorCode::OK,
        app_id: spec.app_id,
        partition_count: spec.partition_count,
        is_stateful: true,
        partitions,
    };
    let mut out = BytesMut::new();
    resp.to_result(&mut out);
    out.freeze()
}

/// The partition configurations of a layout: max_replica_count is the number of replicas,
/// last_committed_decree `100 * (i + 1)` (the values of the captured vectors, `vectors/README.md`,
/// table `temp`; a real meta's value lags the replicas' anyway).
fn partitions(
    spec: &TableSpec,
    replicas: &[SocketAddrV4],
    layout: &[PartitionLayout],
    host_ports: bool,
) -> Vec<PartitionConfiguration> {
    let host_port = |replica: &SocketAddrV4| {
        let host = spec
            .replica_hosts
            .as_ref()
            .zip(replicas.iter().position(|r| r == replica))
            .map(|(hosts, k)| hosts[k].clone())
            .unwrap_or_else(|| replica.ip().to_string());
        HostPort::new(host, replica.port())
    };
    let addrs = |list: &[SocketAddrV4]| list.iter().map(|&a| RpcAddress::from_socket(a)).collect();
    layout
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let i = i as i32;
            let mut pc = PartitionConfiguration {
                pid: Gpid::new(spec.app_id, i),
                ballot: l.ballot,
                max_replica_count: replicas.len() as i32,
                primary: l
                    .primary
                    .map_or(RpcAddress::INVALID, RpcAddress::from_socket),
                secondaries: addrs(&l.secondaries),
                last_drops: addrs(&l.last_drops),
                last_committed_decree: 100 * (i64::from(i) + 1),
                partition_flags: 0,
                ..Default::default()
            };
            if host_ports {
                pc.hp_primary = Some(l.primary.as_ref().map_or_else(HostPort::default, host_port));
                pc.hp_secondaries = Some(l.secondaries.iter().map(host_port).collect());
                pc.hp_last_drops = Some(l.last_drops.iter().map(host_port).collect());
            }
            pc
        })
        .collect()
}

/// The body of a non-leader's answer: `ERR_FORWARD_TO_OTHERS` with the leader, if known, as the
/// primary of a single otherwise default partition (docs/protocol.md §10).
pub(crate) fn forward_body(leader: Option<SocketAddrV4>, host_ports: bool) -> Bytes {
    let partitions = leader
        .map(|leader| {
            let mut pc = PartitionConfiguration {
                primary: RpcAddress::from_socket(leader),
                ..Default::default()
            };
            if host_ports {
                pc.hp_primary = Some(HostPort::new(leader.ip().to_string(), leader.port()));
                pc.hp_secondaries = Some(Vec::new());
                pc.hp_last_drops = Some(Vec::new());
            }
            pc
        })
        .into_iter()
        .collect();
    error_body(ErrorCode::FORWARD_TO_OTHERS, partitions)
}

/// A body carrying only `err`, every other field at its default.
pub(crate) fn error_body(err: ErrorCode, partitions: Vec<PartitionConfiguration>) -> Bytes {
    let resp = QueryCfgResponse {
        err,
        partitions,
        ..Default::default()
    };
    let mut out = BytesMut::new();
    resp.to_result(&mut out);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp() -> TableSpec {
        TableSpec::new(
            "temp",
            2,
            4,
            ["127.0.0.1:34801", "127.0.0.1:34802", "127.0.0.1:34803"]
                .map(|s| s.parse().expect("addr")),
        )
    }

    #[test]
    fn partitions_rotate_the_primary() {
        let t = Table::new(temp(), &[], false);
        let p1 = &t.partitions[1];
        assert_eq!(p1.pid, Gpid::new(2, 1));
        assert_eq!(p1.ballot, 4);
        assert_eq!(p1.primary.to_string(), "127.0.0.1:34802");
        let secs: Vec<String> = p1.secondaries.iter().map(|a| a.to_string()).collect();
        assert_eq!(secs, ["127.0.0.1:34801", "127.0.0.1:34803"]);
        assert_eq!(p1.last_committed_decree, 200);
        assert!(!p1.has_host_ports());
    }

    #[test]
    fn host_ports_default_to_the_replica_ip() {
        let t = Table::new(temp(), &[], true);
        assert_eq!(
            t.partitions[0].hp_primary,
            Some(HostPort::new("127.0.0.1", 34801))
        );
        let t = Table::new(
            temp()
                .with_hosts(["a", "b", "c"])
                .with_host_port_fields(true),
            &[],
            false,
        );
        assert_eq!(t.partitions[2].hp_primary, Some(HostPort::new("c", 34803)));
        assert_eq!(
            t.partitions[2].hp_secondaries,
            Some(vec![HostPort::new("a", 34801), HostPort::new("b", 34802)])
        );
    }

    #[test]
    fn requested_indices_select_partitions() {
        let t = Table::new(temp(), &[], false);
        let pick = |idx: &[i32]| {
            QueryCfgResponse::from_result(&t.body_for(Some(idx)))
                .expect("decodes")
                .partitions
                .iter()
                .map(|p| p.pid.partition_index)
                .collect::<Vec<_>>()
        };
        assert_eq!(pick(&[3, 1, 3, 9, -1]), [3, 1, 3]);
        assert_eq!(pick(&[4, -2]), [0, 1, 2, 3]);
        assert_eq!(pick(&[]), [0, 1, 2, 3]);
        assert_eq!(t.body_for(None), t.all);
    }

    #[test]
    fn forward_without_a_leader_lists_no_partition() {
        let resp = QueryCfgResponse::from_result(&forward_body(None, true)).expect("decodes");
        assert_eq!(resp, QueryCfgResponse::error(ErrorCode::FORWARD_TO_OTHERS));
    }
}
