//! `cluster.*`: membership of a cluster of nodes sharing the ledger.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::bounds::{count, invalid};
use super::ConfigError;

/// Membership of a cluster of nodes sharing the ledger (and a CQL database).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's id, unique and stable in the cluster; 0: a standalone node.
    pub node_id: u64,
    /// Where the node-to-node gRPC API listens.
    pub peer_addr: SocketAddr,
    /// `host:port` other nodes use to reach `peer_addr`; unset: `peer_addr`.
    pub advertise: Option<String>,
    /// Shared secret every peer call carries (at least 16 characters).
    pub secret: Option<String>,
    /// Create the cluster with this node as its first member.
    pub bootstrap: bool,
    /// `host:port` of a member's peer API to join through, on first start.
    pub join: Option<String>,
    /// Voters per ledger shard (the rest of the members follow as learners).
    pub replication: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node_id: 0,
            peer_addr: SocketAddr::from(([127, 0, 0, 1], 5270)),
            advertise: None,
            secret: None,
            bootstrap: false,
            join: None,
            replication: 3,
        }
    }
}

impl ClusterConfig {
    pub fn enabled(&self) -> bool {
        self.node_id != 0
    }

    /// The address peers reach this node at.
    pub fn advertised(&self) -> String {
        self.advertise
            .clone()
            .unwrap_or_else(|| self.peer_addr.to_string())
    }
}

impl ClusterConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if !self.enabled() {
            if self.bootstrap || self.join.is_some() {
                return Err(invalid(
                    "cluster.node_id",
                    "set a non-zero node id to bootstrap or join a cluster",
                ));
            }
            return Ok(());
        }
        if self.secret.as_deref().is_none_or(|s| s.len() < 16) {
            return Err(invalid(
                "cluster.secret",
                "a cluster node needs a secret of at least 16 characters",
            ));
        }
        if self.bootstrap && self.join.is_some() {
            return Err(invalid(
                "cluster.join",
                "a node either bootstraps the cluster or joins it, not both",
            ));
        }
        count("cluster.replication", self.replication, 1, 9)
    }
}
