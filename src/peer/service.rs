//! The peer gRPC service: what other nodes ask of this one.

use std::sync::Arc;

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::Serialize;
use tonic::{Request, Response, Status};

use super::proto::peer_server::{Peer, PeerServer};
use super::proto::{self, RaftKind};
use super::PeerClients;
use crate::invites::Command;
use crate::ledger::membership::Change;
use crate::ledger::shard::MAX_BATCH;
use crate::ledger::types::{LedgerRaft, NodeId};
use crate::ledger::{LedgerError, LedgerHandle};
use crate::sessions::{Presence, RemoteSession, SessionDirectory};
use crate::xmpp::jid::Username;
use crate::xmpp::reader::{parse_stanza, ReaderLimits};

pub struct PeerService {
    pub ledger: LedgerHandle,
    pub clients: Arc<PeerClients>,
    pub directory: Arc<SessionDirectory>,
    pub advertise: String,
    pub replication: usize,
    pub limits: ReaderLimits,
}

fn bad(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(e.to_string())
}

fn json<T: Serialize>(value: &T) -> Result<Vec<u8>, Status> {
    serde_json::to_vec(value).map_err(|e| Status::internal(e.to_string()))
}

fn failure(e: &LedgerError) -> Option<proto::LedgerFailure> {
    Some(super::failure::to_proto(e))
}

impl PeerService {
    fn check(&self) -> Result<(), Status> {
        if self.clients.is_isolated() {
            return Err(Status::unavailable("isolated from peers (fault injection)"));
        }
        Ok(())
    }

    fn raft(&self, shard: u32) -> Result<&crate::ledger::types::Raft, Status> {
        self.ledger
            .shards()
            .get(shard as usize)
            .map(|s| &s.raft)
            .ok_or_else(|| Status::invalid_argument(format!("no shard {shard}")))
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn raft(
        &self,
        request: Request<proto::RaftRequest>,
    ) -> Result<Response<proto::RaftReply>, Status> {
        self.check()?;
        let r = request.into_inner();
        let raft = self.raft(r.shard)?;
        let payload = match RaftKind::try_from(r.kind) {
            Ok(RaftKind::Append) => {
                let rpc: AppendEntriesRequest<LedgerRaft> =
                    serde_json::from_slice(&r.payload).map_err(bad)?;
                json(&raft.append_entries(rpc).await)?
            }
            Ok(RaftKind::Vote) => {
                let rpc: VoteRequest<NodeId> = serde_json::from_slice(&r.payload).map_err(bad)?;
                json(&raft.vote(rpc).await)?
            }
            Ok(RaftKind::Snapshot) => {
                let rpc: InstallSnapshotRequest<LedgerRaft> =
                    serde_json::from_slice(&r.payload).map_err(bad)?;
                json(&raft.install_snapshot(rpc).await)?
            }
            _ => return Err(bad(format!("unknown raft message kind {}", r.kind))),
        };
        Ok(Response::new(proto::RaftReply { payload }))
    }

    async fn propose(
        &self,
        request: Request<proto::ProposeRequest>,
    ) -> Result<Response<proto::ProposeReply>, Status> {
        self.check()?;
        let r = request.into_inner();
        if r.commands.len() > MAX_BATCH {
            return Err(bad(format!(
                "{} commands in one call; at most {MAX_BATCH}",
                r.commands.len()
            )));
        }
        // A command this node cannot read fails alone, not the batch it
        // came in with (other callers' commands).
        let mut readable = Vec::with_capacity(r.commands.len());
        let mut unreadable = Vec::with_capacity(r.commands.len());
        for bytes in &r.commands {
            match serde_json::from_slice::<Command>(bytes) {
                Ok(command) => {
                    readable.push(command);
                    unreadable.push(None);
                }
                Err(e) => unreadable.push(Some(LedgerError::Config(format!(
                    "unreadable command: {e}"
                )))),
            }
        }
        let mut outcomes = if r.forward {
            let calls = readable
                .into_iter()
                .map(|c| self.ledger.propose_to(r.shard, c));
            futures_util::future::join_all(calls).await
        } else {
            self.ledger.propose_local_many(r.shard, readable).await
        }
        .into_iter();
        let mut results = Vec::with_capacity(unreadable.len());
        for failed in unreadable {
            let outcome = match failed {
                None => outcomes
                    .next()
                    .unwrap_or(Err(LedgerError::Stopped { shard: r.shard })),
                Some(e) => Err(e),
            };
            results.push(match outcome {
                Ok(outcome) => proto::ProposeResult {
                    outcome: json(&outcome)?,
                    failure: None,
                },
                Err(e) => proto::ProposeResult {
                    outcome: Vec::new(),
                    failure: failure(&e),
                },
            });
        }
        Ok(Response::new(proto::ProposeReply { results }))
    }

    async fn read_index(
        &self,
        request: Request<proto::ReadIndexRequest>,
    ) -> Result<Response<proto::ReadIndexReply>, Status> {
        self.check()?;
        let shard = request.into_inner().shard;
        let reply = match self.ledger.read_index_local(shard).await {
            Ok(log_id) => proto::ReadIndexReply {
                log_id: json(&log_id)?,
                ..Default::default()
            },
            Err(e) => proto::ReadIndexReply {
                failure: failure(&e),
                ..Default::default()
            },
        };
        Ok(Response::new(reply))
    }

    async fn change_members(
        &self,
        request: Request<proto::ChangeMembersRequest>,
    ) -> Result<Response<proto::ChangeMembersReply>, Status> {
        self.check()?;
        let r = request.into_inner();
        let change: Change = serde_json::from_slice(&r.change).map_err(bad)?;
        let reply = match self.ledger.change_members_local(r.shard, change).await {
            Ok(()) => proto::ChangeMembersReply::default(),
            Err(e) => proto::ChangeMembersReply {
                failure: failure(&e),
            },
        };
        Ok(Response::new(reply))
    }

    async fn join(
        &self,
        request: Request<proto::JoinRequest>,
    ) -> Result<Response<proto::JoinReply>, Status> {
        self.check()?;
        let r = request.into_inner();
        if r.node_id == 0 || r.addr.is_empty() {
            return Err(bad("a joining node needs a non-zero id and an address"));
        }
        let error = match super::cluster::add_node(
            &self.ledger,
            r.node_id,
            &r.addr,
            self.replication,
        )
        .await
        {
            Ok(()) => String::new(),
            Err(e) => e.to_string(),
        };
        Ok(Response::new(proto::JoinReply { error }))
    }

    async fn status(
        &self,
        _request: Request<proto::StatusRequest>,
    ) -> Result<Response<proto::StatusReply>, Status> {
        // Answered even while isolated, so operators can see the state.
        Ok(Response::new(super::cluster::local_status(
            &self.ledger,
            &self.advertise,
            self.clients.is_isolated(),
        )))
    }

    async fn deliver(
        &self,
        request: Request<proto::DeliverRequest>,
    ) -> Result<Response<proto::DeliverReply>, Status> {
        self.check()?;
        let r = request.into_inner();
        let user = Username::parse(&r.user).map_err(bad)?;
        let stanza = parse_stanza(&r.stanza, self.limits).map_err(bad)?;
        self.directory.deliver_local(&user, &stanza, None);
        Ok(Response::new(proto::DeliverReply {}))
    }

    async fn sessions(
        &self,
        request: Request<proto::SessionsRequest>,
    ) -> Result<Response<proto::SessionsReply>, Status> {
        self.check()?;
        let r = request.into_inner();
        if r.node == self.ledger.node_id() {
            return Err(bad("a node's own sessions are not remote"));
        }
        let mut sessions = Vec::with_capacity(r.sessions.len());
        for e in r.sessions {
            let user = Username::parse(&e.user).map_err(bad)?;
            let presence = if e.available {
                let stanza = parse_stanza(&e.presence, self.limits).map_err(bad)?;
                let priority = i8::try_from(e.priority).map_err(bad)?;
                Some(Presence { priority, stanza })
            } else {
                None
            };
            sessions.push((
                user,
                RemoteSession {
                    resource: e.resource,
                    presence,
                },
            ));
        }
        // No late delivery of kept messages is needed from here: a session's
        // own node takes its queue only after this table reached us
        // (`until_announced`), and a sender that stored a message meanwhile
        // looks again after storing it.
        self.directory.replace_remote(r.node, sessions);
        Ok(Response::new(proto::SessionsReply {}))
    }

    async fn route(
        &self,
        request: Request<proto::RouteRequest>,
    ) -> Result<Response<proto::RouteReply>, Status> {
        self.check()?;
        let r = request.into_inner();
        let user = Username::parse(&r.user).map_err(bad)?;
        let stanza = parse_stanza(&r.stanza, self.limits).map_err(bad)?;
        if r.resources.is_empty() {
            self.directory.send_to_available_local(&user, &stanza, None);
        } else {
            self.directory.send_to_local(&user, &r.resources, &stanza);
        }
        Ok(Response::new(proto::RouteReply {}))
    }

    async fn set_isolated(
        &self,
        request: Request<proto::SetIsolatedRequest>,
    ) -> Result<Response<proto::SetIsolatedReply>, Status> {
        let on = request.into_inner().isolated;
        self.clients.set_isolated(on);
        tracing::warn!(isolated = on, "peer traffic switched by fault injection");
        Ok(Response::new(proto::SetIsolatedReply {}))
    }
}

/// Open connections the peer port takes: each peer keeps one, tools a few;
/// the rest of the port's reach (it listens on every address in the chart)
/// cannot hold more, nor make the node handshake more at once.
const CAP: crate::capped_incoming::Cap = crate::capped_incoming::Cap {
    max: 256,
    per_address: 16,
    loopback_exempt: true,
};

/// Serves the peer API on a bound listener until `shutdown` resolves: over
/// TLS, to callers with a client certificate from the cluster CA, and only
/// calls that carry the cluster secret.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: PeerService,
    secret: String,
    tls: super::PeerTls,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let check = crate::bearer::Check::new(secret, "a valid cluster secret is required");
    // Snapshots of a large ledger travel in one message.
    let server = tonic::service::interceptor::InterceptedService::new(
        PeerServer::new(service)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20),
        check,
    );
    crate::capped_incoming::server()
        .tls_config(tls.server())?
        .add_service(server)
        .serve_with_incoming_shutdown(
            crate::capped_incoming::incoming(listener, CAP, "peer"),
            shutdown,
        )
        .await
}
