//! `cluster.*`: membership of a cluster of nodes sharing the ledger.

use std::net::SocketAddr;
use std::path::PathBuf;

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
    /// PEM certificate chain this node presents to its peers, both as a
    /// server and as a client (`usher cluster certs` makes one).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// PEM certificate of the cluster CA: peers are admitted iff their
    /// certificate chains to it.
    pub tls_ca: Option<PathBuf>,
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
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
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
        let missing: Vec<&'static str> = [
            ("cluster.tls_cert", &self.tls_cert),
            ("cluster.tls_key", &self.tls_key),
            ("cluster.tls_ca", &self.tls_ca),
        ]
        .into_iter()
        .filter(|(_, path)| path.is_none())
        .map(|(key, _)| key)
        .collect();
        if let Some(first) = missing.first() {
            return Err(invalid(
                first,
                format!(
                    "a cluster node talks to its peers over mutual TLS and needs \
                     cluster.tls_cert, cluster.tls_key and cluster.tls_ca (unset: {}); \
                     make them with `usher cluster certs --out DIR --node {}` and set \
                     DIR/node-{}.pem, DIR/node-{}.key and DIR/ca.pem",
                    missing.join(", "),
                    self.node_id,
                    self.node_id,
                    self.node_id
                ),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> ClusterConfig {
        ClusterConfig {
            node_id: 2,
            secret: Some("0123456789abcdef".into()),
            tls_cert: Some("n.pem".into()),
            tls_key: Some("n.key".into()),
            tls_ca: Some("ca.pem".into()),
            ..ClusterConfig::default()
        }
    }

    #[test]
    fn a_cluster_node_needs_its_peer_tls_files() {
        assert!(node().check().is_ok());
        let without = ClusterConfig {
            tls_key: None,
            tls_ca: None,
            ..node()
        };
        let message = without.check().unwrap_err().to_string();
        assert!(message.contains("cluster.tls_key"), "{message}");
        assert!(
            message.contains("unset: cluster.tls_key, cluster.tls_ca"),
            "{message}"
        );
        assert!(
            message.contains("usher cluster certs --out DIR --node 2"),
            "{message}"
        );
        // A standalone node has no peers.
        assert!(ClusterConfig::default().check().is_ok());
    }
}
