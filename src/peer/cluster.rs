//! Joining, leaving and looking at a cluster; carrying session stanzas to
//! other nodes.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::proto::{self, DeliverRequest, JoinRequest, StatusReply, StatusRequest};
use super::PeerClients;
use crate::ledger::membership::Change;
use crate::ledger::types::NodeId;
use crate::ledger::{LedgerError, LedgerHandle};
use crate::sessions::Fanout;
use crate::xmpp::jid::Username;
use crate::xmpp::Element;

/// Adds a node to every shard: a learner first, then a voter where the
/// placement puts one.
pub async fn add_node(
    ledger: &LedgerHandle,
    id: NodeId,
    addr: &str,
    replication: usize,
) -> Result<(), LedgerError> {
    for shard in 0..ledger.shard_count() {
        let change = Change::Add {
            id,
            addr: addr.to_owned(),
            replication,
        };
        ledger.change_members(shard, change).await?;
    }
    tracing::info!(node = id, %addr, "node added to every ledger shard");
    Ok(())
}

/// Removes a node from every shard; its voter places move to other nodes.
pub async fn remove_node(
    ledger: &LedgerHandle,
    id: NodeId,
    replication: usize,
) -> Result<(), LedgerError> {
    for shard in 0..ledger.shard_count() {
        ledger
            .change_members(shard, Change::Remove { id, replication })
            .await?;
    }
    tracing::info!(node = id, "node removed from every ledger shard");
    Ok(())
}

/// Asks the member at `via` to add this node, until it succeeds or `give_up`.
pub async fn join(
    clients: &PeerClients,
    via: &str,
    id: NodeId,
    advertise: &str,
    give_up: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    tokio::pin!(give_up);
    let mut delay = Duration::from_millis(200);
    loop {
        let attempt = async {
            let reply = clients
                .client(via)
                .map_err(|e| e.to_string())?
                .join(JoinRequest {
                    node_id: id,
                    addr: advertise.to_owned(),
                })
                .await
                .map_err(|s| s.message().to_owned())?
                .into_inner();
            if reply.error.is_empty() {
                Ok(())
            } else {
                Err(reply.error)
            }
        };
        match attempt.await {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::warn!(%via, error = %e, retry_in = ?delay, "joining the cluster");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = &mut give_up => return Err(e),
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// This node's view of every shard.
pub fn local_status(ledger: &LedgerHandle, addr: &str, isolated: bool) -> StatusReply {
    let shards = ledger
        .shards()
        .iter()
        .map(|s| {
            let m = s.raft.metrics().borrow().clone();
            let membership = m.membership_config.membership();
            let last = m.last_log_index.unwrap_or(0);
            let lag = m
                .replication
                .as_ref()
                .map(|r| {
                    r.iter()
                        .filter(|(id, _)| **id != m.id)
                        .map(|(id, matched)| {
                            (*id, last.saturating_sub(matched.map_or(0, |l| l.index)))
                        })
                        .collect()
                })
                .unwrap_or_default();
            proto::ShardStatus {
                shard: s.index,
                leader: m.current_leader.unwrap_or(0),
                term: m.current_term,
                last_log_index: last,
                applied_index: m.last_applied.map_or(0, |l| l.index),
                voters: membership.voter_ids().collect(),
                learners: membership.learner_ids().collect(),
                lag,
            }
        })
        .collect();
    StatusReply {
        node_id: ledger.node_id(),
        addr: addr.to_owned(),
        shards,
        isolated,
    }
}

/// Every member's status (as far as they answer), this node's first.
pub async fn cluster_status(
    ledger: &LedgerHandle,
    clients: &PeerClients,
    addr: &str,
) -> Vec<Result<StatusReply, (NodeId, String, String)>> {
    let mut out = vec![Ok(local_status(ledger, addr, clients.is_isolated()))];
    for (id, node) in ledger.members(0) {
        if id == ledger.node_id() {
            continue;
        }
        let answer = async {
            let reply = tokio::time::timeout(
                Duration::from_secs(3),
                clients
                    .client(&node.addr)
                    .map_err(|e| e.to_string())?
                    .status(StatusRequest {}),
            )
            .await
            .map_err(|_| "no answer within 3s".to_owned())?
            .map_err(|s| s.message().to_owned())?;
            Ok::<_, String>(reply.into_inner())
        };
        out.push(answer.await.map_err(|e| (id, node.addr.clone(), e)));
    }
    out
}

/// Sends roster pushes and presence for users who may be connected to other
/// nodes; best effort, in the background, to every other member.
pub struct PeerFanout {
    queue: mpsc::UnboundedSender<(String, String)>,
}

impl PeerFanout {
    /// Starts the sender on the current (the node's main) runtime.
    pub fn start(ledger: LedgerHandle, clients: Arc<PeerClients>) -> Arc<PeerFanout> {
        let (tx, mut rx) = mpsc::unbounded_channel::<(String, String)>();
        tokio::spawn(async move {
            while let Some((user, stanza)) = rx.recv().await {
                for (id, node) in ledger.members(0) {
                    if id == ledger.node_id() {
                        continue;
                    }
                    let Ok(mut client) = clients.client(&node.addr) else {
                        continue;
                    };
                    let request = DeliverRequest {
                        user: user.clone(),
                        stanza: stanza.clone(),
                    };
                    if let Err(e) = client.deliver(request).await {
                        tracing::debug!(node = id, error = %e.message(), "stanza not delivered to a peer");
                    }
                }
            }
        });
        Arc::new(PeerFanout { queue: tx })
    }
}

impl Fanout for PeerFanout {
    fn deliver(&self, user: &Username, stanza: &Element) {
        let _ = self
            .queue
            .send((user.as_str().to_owned(), stanza.to_stanza_string()));
    }
}
