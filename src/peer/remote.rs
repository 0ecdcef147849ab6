//! The ledger's `Remote`: forwarding proposals (batched, see `outbox`), read
//! barriers and membership changes to a shard leader on another node.

use async_trait::async_trait;
use openraft::BasicNode;

use super::failure::from_proto;
use super::proto::{ChangeMembersRequest, LedgerFailure, ReadIndexRequest};
use super::PeerClients;
use crate::invites::{Command, Outcome};
use crate::ledger::membership::Change;
use crate::ledger::types::LogId;
use crate::ledger::{LedgerError, Remote};

fn unreachable(addr: &str, reason: impl std::fmt::Display) -> LedgerError {
    LedgerError::Unreachable {
        addr: addr.to_owned(),
        reason: reason.to_string(),
    }
}

/// A garbled reply: the peer runs something else than this node.
fn garbled(addr: &str, e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Config(format!("unreadable reply from {addr}: {e}"))
}

fn check(shard: u32, addr: &str, failure: Option<LedgerFailure>) -> Result<(), LedgerError> {
    match failure {
        Some(f) => Err(from_proto(shard, addr, f)),
        None => Ok(()),
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
        let addr = leader.addr.as_str();
        self.outboxes
            .propose(addr, shard, command, || self.client(addr))
            .await
    }

    async fn read_index(
        &self,
        leader: &BasicNode,
        shard: u32,
    ) -> Result<Option<LogId>, LedgerError> {
        let addr = leader.addr.as_str();
        let reply = self
            .client(addr)
            .map_err(|e| unreachable(addr, e))?
            .read_index(ReadIndexRequest { shard })
            .await
            .map_err(|s| unreachable(addr, s.message()))?
            .into_inner();
        check(shard, addr, reply.failure)?;
        serde_json::from_slice(&reply.log_id).map_err(|e| garbled(addr, e))
    }

    async fn change_members(
        &self,
        leader: &BasicNode,
        shard: u32,
        change: Change,
    ) -> Result<(), LedgerError> {
        let addr = leader.addr.as_str();
        let request = ChangeMembersRequest {
            shard,
            change: serde_json::to_vec(&change).map_err(|e| garbled(addr, e))?,
        };
        let reply = self
            .client(addr)
            .map_err(|e| unreachable(addr, e))?
            .change_members(request)
            .await
            .map_err(|s| unreachable(addr, s.message()))?
            .into_inner();
        check(shard, addr, reply.failure)
    }
}
