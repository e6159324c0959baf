//! A table's partition configurations, derived from its replica list, and the encoded reply
//! bodies the serving path hands out. The body for "all partitions" is encoded once when the
//! table is put, so that answering the common query is a copy.

use std::net::SocketAddrV4;

use bytes::{Bytes, BytesMut};
use pegasus_rpc::codec::{
    ErrorCode, Gpid, HostPort, PartitionConfiguration, QueryCfgResponse, RpcAddress,
};

use super::TableSpec;

/// A table as served: its spec, its partitions and the encoded result body for all of them.
#[derive(Debug)]
pub(crate) struct Table {
    pub spec: TableSpec,
    pub partitions: Vec<PartitionConfiguration>,
    /// The result struct (`{0: query_cfg_response}`) listing every partition.
    pub all: Bytes,
}

impl Table {
    /// Builds the table; `spec` must have passed [`TableSpec::validate`].
    pub fn build(spec: TableSpec, cluster_host_ports: bool) -> Table {
        let partitions = partitions(&spec, spec.host_port_fields.unwrap_or(cluster_host_ports));
        let all = encode(&spec, partitions.clone());
        Table {
            spec,
            partitions,
            all,
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

/// Partition i of a table on replicas R (n of them): ballot i+3, primary R[i % n], the other
/// replicas as secondaries in list order, last_committed_decree 100*(i+1). These are the values
/// of the captured vectors (`vectors/README.md`, table `temp`).
fn partitions(spec: &TableSpec, host_ports: bool) -> Vec<PartitionConfiguration> {
    let n = spec.replicas.len();
    let host_port = |k: usize| {
        let replica: &SocketAddrV4 = &spec.replicas[k];
        let host = match &spec.replica_hosts {
            Some(hosts) => hosts[k].clone(),
            None => replica.ip().to_string(),
        };
        HostPort::new(host, replica.port())
    };
    (0..spec.partition_count)
        .map(|i| {
            let p = i as usize % n;
            let others = || (0..n).filter(move |&k| k != p);
            let mut pc = PartitionConfiguration {
                pid: Gpid::new(spec.app_id, i),
                ballot: i64::from(i) + 3,
                max_replica_count: n as i32,
                primary: RpcAddress::from_socket(spec.replicas[p]),
                secondaries: others()
                    .map(|k| RpcAddress::from_socket(spec.replicas[k]))
                    .collect(),
                last_drops: Vec::new(),
                last_committed_decree: 100 * (i64::from(i) + 1),
                partition_flags: 0,
                ..Default::default()
            };
            if host_ports {
                pc.hp_primary = Some(host_port(p));
                pc.hp_secondaries = Some(others().map(host_port).collect());
                pc.hp_last_drops = Some(Vec::new());
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
        let t = Table::build(temp(), false);
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
        let t = Table::build(temp(), true);
        assert_eq!(
            t.partitions[0].hp_primary,
            Some(HostPort::new("127.0.0.1", 34801))
        );
        let t = Table::build(
            temp()
                .with_hosts(["a", "b", "c"])
                .with_host_port_fields(true),
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
        let t = Table::build(temp(), false);
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
