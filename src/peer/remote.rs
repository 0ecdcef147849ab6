//! The ledger's `Remote`: forwarding proposals, read barriers and membership
//! changes to a shard leader on another node.

use async_trait::async_trait;
use openraft::BasicNode;

use super::proto::{self, ChangeMembersRequest, ProposeRequest, ReadIndexRequest};
use super::PeerClients;
use crate::invites::{Command, Outcome};
use crate::ledger::membership::Change;
use crate::ledger::types::LogId;
use crate::ledger::{LedgerError, Remote};

fn unavailable(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Unavailable(e.to_string())
}

/// A reply's leader hint or error, as the ledger's error.
fn failure(shard: u32, not_leader: Option<proto::Leader>, error: String) -> Option<LedgerError> {
    match not_leader {
        Some(l) => Some(not_leader_error(shard, l)),
        None if !error.is_empty() => Some(LedgerError::Unavailable(error)),
        None => None,
    }
}

fn not_leader_error(shard: u32, leader: proto::Leader) -> LedgerError {
    LedgerError::NotLeader {
        shard,
        leader: (leader.id != 0).then_some((leader.id, BasicNode { addr: leader.addr })),
    }
}

#[async_trait]
impl Remote for PeerClients {
    async fn propose(
        &self,
        leader: &BasicNode,
        shard: u32,
        command: Command,
    ) -> Result<Outcome, LedgerError> {
        let request = ProposeRequest {
            shard,
            command: serde_json::to_vec(&command).map_err(unavailable)?,
        };
        let reply = self
            .client(&leader.addr)
            .map_err(unavailable)?
            .propose(request)
            .await
            .map_err(|s| unavailable(s.message()))?
            .into_inner();
        if let Some(e) = failure(shard, reply.not_leader, reply.error) {
            return Err(e);
        }
        serde_json::from_slice(&reply.outcome).map_err(unavailable)
    }

    async fn read_index(
        &self,
        leader: &BasicNode,
        shard: u32,
    ) -> Result<Option<LogId>, LedgerError> {
        let reply = self
            .client(&leader.addr)
            .map_err(unavailable)?
            .read_index(ReadIndexRequest { shard })
            .await
            .map_err(|s| unavailable(s.message()))?
            .into_inner();
        if let Some(e) = failure(shard, reply.not_leader, reply.error) {
            return Err(e);
        }
        serde_json::from_slice(&reply.log_id).map_err(unavailable)
    }

    async fn change_members(
        &self,
        leader: &BasicNode,
        shard: u32,
        change: Change,
    ) -> Result<(), LedgerError> {
        let request = ChangeMembersRequest {
            shard,
            change: serde_json::to_vec(&change).map_err(unavailable)?,
        };
        let reply = self
            .client(&leader.addr)
            .map_err(unavailable)?
            .change_members(request)
            .await
            .map_err(|s| unavailable(s.message()))?
            .into_inner();
        match failure(shard, reply.not_leader, reply.error) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
