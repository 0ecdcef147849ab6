//! Cluster administration behind the admin API: status of every member and
//! shard, adding and removing nodes, and the isolation switch for drills.

use std::sync::Arc;

use tonic::Status;

use super::proto;
use crate::ledger::types::NodeId;
use crate::ledger::LedgerHandle;
use crate::peer::cluster::{add_node, cluster_status, remove_node};
use crate::peer::PeerClients;

#[derive(Clone)]
pub struct ClusterAdmin {
    pub ledger: LedgerHandle,
    pub clients: Arc<PeerClients>,
    pub advertise: String,
    pub replication: usize,
}

fn shard_view(s: crate::peer::proto::ShardStatus) -> proto::ShardView {
    proto::ShardView {
        shard: s.shard,
        leader: s.leader,
        term: s.term,
        last_log_index: s.last_log_index,
        applied_index: s.applied_index,
        voters: s.voters,
        learners: s.learners,
        lag: s.lag,
    }
}

impl ClusterAdmin {
    pub async fn status(&self) -> proto::ClusterStatusResponse {
        let nodes = cluster_status(&self.ledger, &self.clients, &self.advertise)
            .await
            .into_iter()
            .map(|answer| match answer {
                Ok(s) => proto::NodeStatus {
                    node_id: s.node_id,
                    addr: s.addr,
                    reachable: true,
                    error: String::new(),
                    isolated: s.isolated,
                    shards: s.shards.into_iter().map(shard_view).collect(),
                },
                Err((node_id, addr, error)) => proto::NodeStatus {
                    node_id,
                    addr,
                    reachable: false,
                    error,
                    ..Default::default()
                },
            })
            .collect();
        proto::ClusterStatusResponse { nodes }
    }

    pub async fn add(&self, id: NodeId, addr: &str) -> Result<(), Status> {
        if id == 0 || addr.is_empty() {
            return Err(Status::invalid_argument(
                "a node needs a non-zero id and a peer address",
            ));
        }
        add_node(&self.ledger, id, addr, self.replication)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))
    }

    pub async fn remove(&self, id: NodeId) -> Result<(), Status> {
        if !self.ledger.members(0).contains_key(&id) {
            return Err(Status::failed_precondition(format!(
                "node {id} is not a member"
            )));
        }
        remove_node(&self.ledger, id, self.replication)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))
    }

    pub fn set_isolated(&self, on: bool) {
        self.clients.set_isolated(on);
        tracing::warn!(isolated = on, "peer traffic switched through the admin API");
    }
}
