//! openraft's network for one shard over the peer gRPC service: each Raft
//! RPC travels as JSON tagged with the shard it belongs to.

use std::sync::Arc;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::proto::{RaftKind, RaftRequest};
use super::PeerClients;
use crate::ledger::types::{LedgerRaft, NodeId};

/// The network factory of one shard.
#[derive(Clone)]
pub struct ShardNetwork {
    pub shard: u32,
    pub clients: Arc<PeerClients>,
}

pub struct ShardConnection {
    shard: u32,
    addr: String,
    clients: Arc<PeerClients>,
}

impl RaftNetworkFactory<LedgerRaft> for ShardNetwork {
    type Network = ShardConnection;

    async fn new_client(&mut self, _target: NodeId, node: &BasicNode) -> ShardConnection {
        ShardConnection {
            shard: self.shard,
            addr: node.addr.clone(),
            clients: self.clients.clone(),
        }
    }
}

impl ShardConnection {
    /// Sends one RPC; the reply is the JSON of the remote `Result`.
    async fn call<Req, Resp, E>(
        &self,
        kind: RaftKind,
        request: &Req,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let payload =
            serde_json::to_vec(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut client = self
            .clients
            .client(&self.addr)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let reply = client
            .raft(RaftRequest {
                shard: self.shard,
                kind: kind as i32,
                payload,
            })
            .await
            .map_err(|status| {
                let e = std::io::Error::other(status.message().to_owned());
                if status.code() == tonic::Code::Unavailable {
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    RPCError::Network(NetworkError::new(&e))
                }
            })?
            .into_inner();
        let result: Result<Resp, RaftError<NodeId, E>> = serde_json::from_slice(&reply.payload)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(0, e)))
    }
}

impl RaftNetwork<LedgerRaft> for ShardConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<LedgerRaft>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(RaftKind::Append, &rpc).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<LedgerRaft>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(RaftKind::Snapshot, &rpc).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(RaftKind::Vote, &rpc).await
    }
}
