//! Joining, leaving and looking at a cluster; carrying session stanzas to
//! other nodes.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::proto::{self, DeliverRequest, JoinRequest, StatusReply, StatusRequest};
use super::PeerClients;
use crate::accounts::AccountStore;
use crate::ledger::membership::Change;
use crate::ledger::types::NodeId;
use crate::ledger::{LedgerError, LedgerHandle};
use crate::sessions::kept::announce_gone_here;
use crate::sessions::{Fanout, SessionDirectory};
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

/// How often a node announces its sessions to the others when nothing changed,
/// and how long a node's announcement holds: a node silent longer (dead, or
/// cut off) has its sessions dropped and announced unavailable. So contacts
/// learn of a killed node within `SESSIONS_TTL` plus one `SESSIONS_EVERY`.
pub const SESSIONS_EVERY: Duration = Duration::from_secs(1);
pub const SESSIONS_TTL: Duration = Duration::from_secs(4);

/// A stanza for sessions on one node (`Route`), or for every session of a
/// user on every other node (`Deliver`: roster pushes, subscriptions).
enum Outgoing {
    Deliver(String, String),
    Route(u64, proto::RouteRequest),
}

/// Carries stanzas for users who may be connected to other nodes, in the
/// background and in order; announces this node's sessions and expires the
/// announcements of nodes gone silent.
pub struct PeerFanout {
    queue: mpsc::UnboundedSender<Outgoing>,
}

impl PeerFanout {
    /// Starts the sender and the session announcer on the current (the
    /// node's main) runtime.
    pub fn start(
        ledger: LedgerHandle,
        clients: Arc<PeerClients>,
        directory: Arc<SessionDirectory>,
        store: Arc<dyn AccountStore>,
        stop: CancellationToken,
    ) -> Arc<PeerFanout> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Outgoing>();
        let (l, c) = (ledger.clone(), clients.clone());
        tokio::spawn(async move {
            while let Some(out) = rx.recv().await {
                match out {
                    Outgoing::Deliver(user, stanza) => {
                        deliver_everywhere(&l, &c, user, stanza).await
                    }
                    Outgoing::Route(node, request) => {
                        let Some(addr) = member_addr(&l, node) else {
                            continue;
                        };
                        let Ok(mut client) = c.client(&addr) else {
                            continue;
                        };
                        let call = client.route(request);
                        match tokio::time::timeout(Duration::from_secs(2), call).await {
                            Ok(Ok(_)) => {}
                            Ok(Err(e)) => {
                                tracing::debug!(node, error = %e.message(), "stanza not routed to a peer")
                            }
                            Err(_) => tracing::debug!(node, "stanza not routed to a peer in time"),
                        }
                    }
                }
            }
        });
        let announce = announce_sessions(ledger, clients, directory.clone());
        let expire = expire_sessions(directory, store);
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = announce => {}
                _ = expire => {}
            }
        });
        Arc::new(PeerFanout { queue: tx })
    }
}

fn member_addr(ledger: &LedgerHandle, node: u64) -> Option<String> {
    ledger
        .members(0)
        .into_iter()
        .find(|(id, _)| *id == node)
        .map(|(_, n)| n.addr)
}

async fn deliver_everywhere(
    ledger: &LedgerHandle,
    clients: &PeerClients,
    user: String,
    stanza: String,
) {
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

/// Sends this node's whole session table to every other member when it
/// changes (coalesced over a few milliseconds) and every `SESSIONS_EVERY`.
async fn announce_sessions(
    ledger: LedgerHandle,
    clients: Arc<PeerClients>,
    directory: Arc<SessionDirectory>,
) {
    loop {
        let _ = tokio::time::timeout(SESSIONS_EVERY, directory.local_changed()).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        let generation = directory.local_generation();
        let sessions: Vec<proto::SessionEntry> = directory
            .local_sessions()
            .into_iter()
            .map(|(user, s)| proto::SessionEntry {
                user: user.as_str().to_owned(),
                resource: s.resource,
                available: s.presence.is_some(),
                priority: s.presence.as_ref().map_or(0, |p| i32::from(p.priority)),
                presence: s
                    .presence
                    .map(|p| p.stanza.to_stanza_string())
                    .unwrap_or_default(),
            })
            .collect();
        let me = ledger.node_id();
        let calls = ledger
            .members(0)
            .into_iter()
            .filter(|(id, _)| *id != me)
            .filter_map(|(id, node)| clients.client(&node.addr).ok().map(|c| (id, c)))
            .map(|(id, mut client)| {
                let request = proto::SessionsRequest {
                    node: me,
                    sessions: sessions.clone(),
                };
                async move {
                    let call = client.sessions(request);
                    if let Ok(Err(e)) = tokio::time::timeout(SESSIONS_EVERY, call).await {
                        tracing::debug!(node = id, error = %e.message(), "sessions not announced to a peer");
                    }
                }
            });
        // Peers that did not answer hear of it next round; a session waiting
        // for this round goes on either way.
        futures_util::future::join_all(calls).await;
        directory.mark_announced(generation);
    }
}

/// Drops the tables of peers silent for `SESSIONS_TTL` and tells this node's
/// sessions that their contacts there are gone.
async fn expire_sessions(directory: Arc<SessionDirectory>, store: Arc<dyn AccountStore>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        for (user, resource) in directory.expire_remote(SESSIONS_TTL) {
            tracing::info!(user = %user, "a session on a silent peer is announced unavailable");
            if let Err(e) = announce_gone_here(&directory, store.as_ref(), &user, &resource).await {
                tracing::warn!(error = %e, "a gone session could not be announced");
            }
        }
    }
}

impl Fanout for PeerFanout {
    fn deliver(&self, user: &Username, stanza: &Element) {
        let _ = self.queue.send(Outgoing::Deliver(
            user.as_str().to_owned(),
            stanza.to_stanza_string(),
        ));
    }

    fn route(&self, node: u64, user: &Username, resources: &[String], stanza: &Element) {
        let request = proto::RouteRequest {
            user: user.as_str().to_owned(),
            resources: resources.to_vec(),
            stanza: stanza.to_stanza_string(),
        };
        let _ = self.queue.send(Outgoing::Route(node, request));
    }
}
