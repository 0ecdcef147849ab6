//! What can go wrong with a ledger operation, typed so that the caller (and a
//! node forwarding for another) knows whether to forward, wait or give up —
//! and whether a write may have happened.

use std::time::Duration;

use openraft::error::{ForwardToLeader, RaftError};
use openraft::{BasicNode, TryAsRef};

use super::types::NodeId;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// This node does not lead the shard; `leader` is who does, if known.
    #[error("not the leader of ledger shard {shard}")]
    NotLeader {
        shard: u32,
        leader: Option<(NodeId, BasicNode)>,
    },
    /// The step did not finish in time. A write may still be applied later:
    /// its outcome is unknown.
    #[error("ledger shard {shard}: {what} did not finish within {after:?}")]
    Timeout {
        shard: u32,
        what: &'static str,
        after: Duration,
    },
    /// The node holding the shard's leader could not be reached.
    #[error("peer {addr} is unreachable: {reason}")]
    Unreachable { addr: String, reason: String },
    /// The shard's Raft group refused the request for now (a membership
    /// change in progress, no quorum confirmed leadership).
    #[error("ledger shard {shard} refused: {reason}")]
    Refused { shard: u32, reason: String },
    /// The shard was shut down (the node is stopping).
    #[error("ledger shard {shard} has stopped")]
    Stopped { shard: u32 },
    #[error("no ledger shard {0}")]
    NoSuchShard(u32),
    /// A shard's storage failed; the node cannot go on with that shard.
    #[error("ledger storage: {0}")]
    Storage(String),
    /// The ledger cannot start as configured (shard count, Raft settings).
    #[error("ledger configuration: {0}")]
    Config(String),
    /// The node was asked to forward but has no peers (a standalone node).
    #[error("this node has no peer to forward to")]
    NoPeers,
}

/// What a caller should do after an error.
pub(super) enum Next {
    /// Send it to the leader on that node.
    Forward(BasicNode),
    /// Leadership is moving or a peer is away: try again shortly.
    Retry,
    /// Retrying will not help.
    GiveUp,
}

impl LedgerError {
    pub(super) fn next(&self, me: NodeId) -> Next {
        match self {
            LedgerError::NotLeader {
                leader: Some((id, node)),
                ..
            } if *id != me => Next::Forward(node.clone()),
            LedgerError::NotLeader { .. }
            | LedgerError::Timeout { .. }
            | LedgerError::Unreachable { .. }
            | LedgerError::Refused { .. } => Next::Retry,
            LedgerError::Stopped { .. }
            | LedgerError::NoSuchShard(_)
            | LedgerError::Storage(_)
            | LedgerError::Config(_)
            | LedgerError::NoPeers => Next::GiveUp,
        }
    }

    /// Maps any openraft error of a shard: leader hints become `NotLeader`, a
    /// stopped group `Stopped`, storage failures `Storage`.
    pub fn from_raft<E>(shard: u32, e: RaftError<NodeId, E>) -> LedgerError
    where
        E: std::error::Error + TryAsRef<ForwardToLeader<NodeId, BasicNode>>,
    {
        if let Some(f) = e.forward_to_leader::<BasicNode>() {
            return LedgerError::NotLeader {
                shard,
                leader: f.leader_id.zip(f.leader_node.clone()),
            };
        }
        match e {
            RaftError::Fatal(openraft::error::Fatal::Stopped) => LedgerError::Stopped { shard },
            RaftError::Fatal(fatal) => LedgerError::Storage(format!("shard {shard}: {fatal}")),
            RaftError::APIError(api) => LedgerError::Refused {
                shard,
                reason: api.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_to_do_next() {
        let leader = LedgerError::NotLeader {
            shard: 0,
            leader: Some((2, BasicNode::new("10.0.0.2:5270"))),
        };
        assert!(matches!(leader.next(1), Next::Forward(n) if n.addr == "10.0.0.2:5270"));
        // A hint naming ourselves is stale: wait for the election instead.
        assert!(matches!(leader.next(2), Next::Retry));
        let unknown = LedgerError::NotLeader {
            shard: 0,
            leader: None,
        };
        assert!(matches!(unknown.next(1), Next::Retry));
        assert!(matches!(
            LedgerError::Stopped { shard: 0 }.next(1),
            Next::GiveUp
        ));
        assert!(matches!(
            LedgerError::Storage("disk".into()).next(1),
            Next::GiveUp
        ));
    }
}
