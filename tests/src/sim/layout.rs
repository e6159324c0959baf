//! Where each partition's replicas are, and how that changes when a replica server stops or comes
//! back, as a real MetaServer would report it after its failure detector noticed. Pure functions
//! over one partition's layout; the cluster applies them to every partition of every table.
//!
//! | event | the node was | layout after |
//! |---|---|---|
//! | node down | primary | the first secondary becomes primary (none left: no primary); the node goes to `last_drops`; ballot + 1 |
//! | node down | secondary | removed from the secondaries, added to `last_drops`; ballot + 1 |
//! | node down | not a member | unchanged |
//! | node up | in `last_drops` | primary if the partition has none, else the last secondary; out of `last_drops`; ballot + 1 |
//! | node up | anything else | unchanged |
//!
//! A primary that comes back stays a secondary: real MetaServers do not move primaries back
//! unless the balancer decides to.

use std::net::SocketAddrV4;

use serde::{Deserialize, Serialize};

/// One partition's members as the MetaServer reports them in query_config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionLayout {
    pub primary: Option<SocketAddrV4>,
    pub secondaries: Vec<SocketAddrV4>,
    pub last_drops: Vec<SocketAddrV4>,
    pub ballot: i64,
}

impl PartitionLayout {
    /// Whether `node` serves this partition, as primary or secondary.
    pub fn is_member(&self, node: SocketAddrV4) -> bool {
        self.primary == Some(node) || self.secondaries.contains(&node)
    }
}

/// The layout of a new table on `replicas`: partition `i` has primary `replicas[i % n]`, the
/// others as secondaries in list order, ballot `i + 3` (the values of the captured vectors).
pub fn initial(replicas: &[SocketAddrV4], partition_count: i32) -> Vec<PartitionLayout> {
    let n = replicas.len();
    (0..partition_count.max(0))
        .map(|i| {
            let p = (i as usize).checked_rem(n);
            PartitionLayout {
                primary: p.map(|p| replicas[p]),
                secondaries: (0..n)
                    .filter(|&k| Some(k) != p)
                    .map(|k| replicas[k])
                    .collect(),
                last_drops: Vec::new(),
                ballot: i64::from(i) + 3,
            }
        })
        .collect()
}

/// The layout after `node` stopped.
pub fn node_down(layout: &PartitionLayout, node: SocketAddrV4) -> PartitionLayout {
    if !layout.is_member(node) {
        return layout.clone();
    }
    let mut next = layout.clone();
    if next.primary == Some(node) {
        next.primary = if next.secondaries.is_empty() {
            None
        } else {
            Some(next.secondaries.remove(0))
        };
    } else {
        next.secondaries.retain(|&s| s != node);
    }
    next.last_drops.retain(|&d| d != node);
    next.last_drops.push(node);
    next.ballot += 1;
    next
}

/// The layout after `node` came back.
pub fn node_up(layout: &PartitionLayout, node: SocketAddrV4) -> PartitionLayout {
    if layout.is_member(node) || !layout.last_drops.contains(&node) {
        return layout.clone();
    }
    let mut next = layout.clone();
    next.last_drops.retain(|&d| d != node);
    if next.primary.is_none() {
        next.primary = Some(node);
    } else {
        next.secondaries.push(node);
    }
    next.ballot += 1;
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new([127, 0, 0, 1].into(), port)
    }

    fn l(primary: Option<u16>, secondaries: &[u16], drops: &[u16], ballot: i64) -> PartitionLayout {
        PartitionLayout {
            primary: primary.map(a),
            secondaries: secondaries.iter().map(|&p| a(p)).collect(),
            last_drops: drops.iter().map(|&p| a(p)).collect(),
            ballot,
        }
    }

    #[test]
    fn initial_layout_rotates_the_primary() {
        let layout = initial(&[a(1), a(2), a(3)], 4);
        assert_eq!(layout[0], l(Some(1), &[2, 3], &[], 3));
        assert_eq!(layout[1], l(Some(2), &[1, 3], &[], 4));
        assert_eq!(layout[3], l(Some(1), &[2, 3], &[], 6));
        assert!(initial(&[], 2).iter().all(|p| p.primary.is_none()));
    }

    #[test]
    fn node_down_table() {
        for (before, node, after) in [
            // The primary stops: the first secondary takes over.
            (l(Some(1), &[2, 3], &[], 3), 1, l(Some(2), &[3], &[1], 4)),
            // A secondary stops.
            (l(Some(1), &[2, 3], &[], 3), 3, l(Some(1), &[2], &[3], 4)),
            // Not a member: nothing changes.
            (l(Some(1), &[2], &[3], 4), 3, l(Some(1), &[2], &[3], 4)),
            // The last replica stops: no primary is left.
            (l(Some(2), &[], &[1, 3], 6), 2, l(None, &[], &[1, 3, 2], 7)),
        ] {
            assert_eq!(node_down(&before, a(node)), after, "{before:?} - {node}");
        }
    }

    #[test]
    fn node_up_table() {
        for (before, node, after) in [
            // A dropped replica comes back as a secondary.
            (l(Some(2), &[3], &[1], 4), 1, l(Some(2), &[3, 1], &[], 5)),
            // Into a partition with no primary: it becomes the primary.
            (l(None, &[], &[1, 3, 2], 7), 2, l(Some(2), &[], &[1, 3], 8)),
            // Already a member, or never one: nothing changes.
            (l(Some(2), &[3], &[1], 4), 3, l(Some(2), &[3], &[1], 4)),
            (l(Some(2), &[3], &[], 4), 9, l(Some(2), &[3], &[], 4)),
        ] {
            assert_eq!(node_up(&before, a(node)), after, "{before:?} + {node}");
        }
    }

    #[test]
    fn down_then_up_keeps_every_replica() {
        let start = initial(&[a(1), a(2), a(3)], 1).remove(0);
        let after = node_up(&node_down(&start, a(1)), a(1));
        assert_eq!(after, l(Some(2), &[3, 1], &[], 5));
    }
}
