//! Which nodes hold each shard. Every member of a cluster holds every shard
//! (as a voter or a learner, so any node can read locally after a read
//! barrier); each shard has up to `replication` voters, picked by rendezvous
//! hashing so that shards spread evenly and a change moves few of them.

use std::collections::{BTreeMap, BTreeSet};

use openraft::{BasicNode, ChangeMembers};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::types::NodeId;
use super::{LedgerError, LedgerHandle};

/// A change of a shard's members, run on the shard's leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    Add {
        id: NodeId,
        addr: String,
        replication: usize,
    },
    Remove {
        id: NodeId,
        replication: usize,
    },
}

/// The voters of `shard` among `nodes`: the `replication` highest scores of
/// a hash of (shard, node).
pub fn place(shard: u32, nodes: &BTreeSet<NodeId>, replication: usize) -> BTreeSet<NodeId> {
    let mut scored: Vec<([u8; 32], NodeId)> = nodes
        .iter()
        .map(|id| {
            let mut h = Sha256::new();
            h.update(shard.to_be_bytes());
            h.update(id.to_be_bytes());
            (h.finalize().into(), *id)
        })
        .collect();
    scored.sort_by_key(|s| std::cmp::Reverse(s.0));
    scored
        .into_iter()
        .take(replication.max(1))
        .map(|(_, id)| id)
        .collect()
}

impl LedgerHandle {
    /// The nodes (voters and learners) of a shard as this node knows them.
    pub fn members(&self, shard: u32) -> BTreeMap<NodeId, BasicNode> {
        self.shards()
            .get(shard as usize)
            .map(|s| {
                let metrics = s.raft.metrics().borrow().clone();
                metrics
                    .membership_config
                    .membership()
                    .nodes()
                    .map(|(id, n)| (*id, n.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether this node is already a member of the cluster (of shard 0).
    pub fn is_member(&self) -> bool {
        self.members(0).contains_key(&self.node_id())
    }

    /// Applies `change` to `shard` if this node leads it; `NotLeader` otherwise.
    pub async fn change_members_local(
        &self,
        shard: u32,
        change: Change,
    ) -> Result<(), LedgerError> {
        let s = self
            .shards()
            .get(shard as usize)
            .ok_or(LedgerError::NoSuchShard(shard))?;
        let map = |e| LedgerError::from_raft(shard, e);
        match change {
            Change::Add {
                id,
                addr,
                replication,
            } => {
                if !self.members(shard).contains_key(&id) {
                    s.raft
                        .add_learner(id, BasicNode { addr }, true)
                        .await
                        .map_err(map)?;
                }
                let nodes: BTreeSet<NodeId> = self.members(shard).into_keys().collect();
                let voters = place(shard, &nodes, replication);
                s.raft
                    .change_membership(ChangeMembers::ReplaceAllVoters(voters), true)
                    .await
                    .map_err(map)?;
            }
            Change::Remove { id, replication } => {
                let mut nodes: BTreeSet<NodeId> = self.members(shard).into_keys().collect();
                nodes.remove(&id);
                let voters = place(shard, &nodes, replication);
                s.raft
                    .change_membership(ChangeMembers::ReplaceAllVoters(voters), true)
                    .await
                    .map_err(map)?;
                if self.members(shard).contains_key(&id) {
                    s.raft
                        .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                        .await
                        .map_err(map)?;
                }
            }
        }
        Ok(())
    }

    /// Applies `change` to `shard` on its leader, wherever that is.
    pub async fn change_members(&self, shard: u32, change: Change) -> Result<(), LedgerError> {
        let call = super::forward::ChangeMembers(&change);
        self.on_leader(shard, super::MEMBERSHIP_WAIT, call).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_is_stable_spread_and_moves_little() {
        let three: BTreeSet<NodeId> = [1, 2, 3].into();
        for shard in 0..8 {
            assert_eq!(place(shard, &three, 3), three);
            assert_eq!(place(shard, &three, 5), three);
        }
        let five: BTreeSet<NodeId> = [1, 2, 3, 4, 5].into();
        let mut load = BTreeMap::new();
        for shard in 0..64 {
            let voters = place(shard, &five, 3);
            assert_eq!(voters.len(), 3);
            assert_eq!(voters, place(shard, &five, 3));
            for v in voters {
                *load.entry(v).or_insert(0) += 1;
            }
            // Removing a non-voter changes nothing.
            let mut fewer = five.clone();
            let outsider = *five.difference(&place(shard, &five, 3)).next().unwrap();
            fewer.remove(&outsider);
            assert_eq!(place(shard, &fewer, 3), place(shard, &five, 3));
        }
        assert!(load.values().all(|&n| (25..=52).contains(&n)), "{load:?}");
    }
}
