//! The Raft type configuration of a ledger shard.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::invites::{Command, Millis, Outcome};

/// One Raft entry: the commands that queued up while the previous entry was
/// being written, applied in order, with the time the leader formed it — the
/// one clock reading every replica applies them with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub at: Millis,
    pub commands: Vec<Command>,
}

impl std::fmt::Display for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "batch of {} commands", self.commands.len())
    }
}

openraft::declare_raft_types!(
    /// Types of the ledger's Raft groups.
    pub LedgerRaft:
        D = Batch,
        R = Vec<Outcome>,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<LedgerRaft>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type NodeId = u64;
pub type LogId = openraft::LogId<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type Raft = openraft::Raft<LedgerRaft>;
