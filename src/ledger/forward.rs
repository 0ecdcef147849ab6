//! The one loop behind every call that must run on a shard's leader
//! (proposals, read barriers, membership changes): try this node's copy; if
//! another node leads, ask it; while leadership moves or a peer is away,
//! wait a little and try again, up to the call's patience.

use std::future::Future;
use std::time::Duration;

use openraft::BasicNode;

use super::error::Next;
use super::membership::Change;
use super::types::LogId;
use super::{LedgerError, LedgerHandle, Remote};
use crate::invites::{Command, Outcome};

/// Between attempts while a shard elects a leader or a peer comes back.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// One kind of call that only a shard's leader answers.
pub(super) trait LeaderCall: Sync {
    type Output: Send;

    fn local(
        &self,
        ledger: &LedgerHandle,
        shard: u32,
    ) -> impl Future<Output = Result<Self::Output, LedgerError>> + Send;

    fn remote(
        &self,
        peers: &dyn Remote,
        leader: &BasicNode,
        shard: u32,
    ) -> impl Future<Output = Result<Self::Output, LedgerError>> + Send;
}

pub(super) struct Propose<'a>(pub &'a Command);
pub(super) struct ReadIndex;
pub(super) struct ChangeMembers<'a>(pub &'a Change);

impl LeaderCall for Propose<'_> {
    type Output = Outcome;

    async fn local(&self, ledger: &LedgerHandle, shard: u32) -> Result<Outcome, LedgerError> {
        ledger.propose_local(shard, self.0.clone()).await
    }

    async fn remote(
        &self,
        peers: &dyn Remote,
        leader: &BasicNode,
        shard: u32,
    ) -> Result<Outcome, LedgerError> {
        peers.propose(leader, shard, self.0.clone()).await
    }
}

impl LeaderCall for ReadIndex {
    type Output = Option<LogId>;

    async fn local(&self, ledger: &LedgerHandle, shard: u32) -> Result<Option<LogId>, LedgerError> {
        ledger.read_index_local(shard).await
    }

    async fn remote(
        &self,
        peers: &dyn Remote,
        leader: &BasicNode,
        shard: u32,
    ) -> Result<Option<LogId>, LedgerError> {
        peers.read_index(leader, shard).await
    }
}

impl LeaderCall for ChangeMembers<'_> {
    type Output = ();

    async fn local(&self, ledger: &LedgerHandle, shard: u32) -> Result<(), LedgerError> {
        ledger.change_members_local(shard, self.0.clone()).await
    }

    async fn remote(
        &self,
        peers: &dyn Remote,
        leader: &BasicNode,
        shard: u32,
    ) -> Result<(), LedgerError> {
        peers.change_members(leader, shard, self.0.clone()).await
    }
}

impl LedgerHandle {
    /// The shard's leader as this node's copy of the group knows it, when it
    /// is another node.
    fn leader_elsewhere(&self, shard: u32) -> Option<BasicNode> {
        let s = self.shards().get(shard as usize)?;
        let watch = s.raft.metrics();
        let metrics = watch.borrow();
        let leader = metrics.current_leader.filter(|l| *l != self.node_id())?;
        metrics
            .membership_config
            .membership()
            .get_node(&leader)
            .cloned()
    }

    pub(super) async fn on_leader<C: LeaderCall>(
        &self,
        shard: u32,
        patience: Duration,
        call: C,
    ) -> Result<C::Output, LedgerError> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            // A follower that knows the leader asks it at once, rather than
            // first failing through its own copy of the group.
            let known = self
                .remote()
                .and_then(|peers| Some((peers, self.leader_elsewhere(shard)?)));
            let first = match known {
                Some((peers, leader)) => call.remote(peers.as_ref(), &leader, shard).await,
                None => call.local(self, shard).await,
            };
            let attempt = match first {
                Err(e) => match (e.next(self.node_id()), self.remote()) {
                    (Next::Forward(node), Some(peers)) => {
                        call.remote(peers.as_ref(), &node, shard).await
                    }
                    (Next::Forward(_), None) => Err(LedgerError::NoPeers),
                    _ => Err(e),
                },
                ok => ok,
            };
            match attempt {
                // A standalone node has nobody to wait for: its answer is final.
                Err(e)
                    if self.remote().is_some()
                        && !matches!(e.next(self.node_id()), Next::GiveUp)
                        && tokio::time::Instant::now() < deadline =>
                {
                    tracing::debug!(shard, error = %e, "ledger: trying again");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                other => return other,
            }
        }
    }
}
