//! The node-to-node side of a cluster: a gRPC service (Raft traffic of every
//! shard, forwarded ledger commands and read barriers, membership, stanza
//! delivery) and its client, authenticated by the cluster secret.

pub mod cluster;
mod failure;
mod network;
mod remote;
pub mod service;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

pub use network::ShardNetwork;

/// Code generated from proto/peer.proto.
pub mod proto {
    tonic::include_proto!("usher.peer.v1");
}

pub type PeerClient = proto::peer_client::PeerClient<
    tonic::service::interceptor::InterceptedService<Channel, crate::bearer::Attach>,
>;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("peer {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("this node is isolated from its peers (fault injection)")]
    Isolated,
    #[error("the cluster secret cannot be sent as a header")]
    BadSecret,
}

/// Connections to other nodes, one lazily connected channel per address.
pub struct PeerClients {
    secret: crate::bearer::Attach,
    channels: Mutex<HashMap<String, Channel>>,
    /// Fault injection: while set, no peer call goes out or is served.
    isolated: AtomicBool,
}

impl PeerClients {
    pub fn new(secret: &str) -> Result<Arc<PeerClients>, PeerError> {
        let secret = crate::bearer::Attach::new(secret).map_err(|_| PeerError::BadSecret)?;
        Ok(Arc::new(PeerClients {
            secret,
            channels: Mutex::new(HashMap::new()),
            isolated: AtomicBool::new(false),
        }))
    }

    pub fn is_isolated(&self) -> bool {
        self.isolated.load(Ordering::Relaxed)
    }

    pub fn set_isolated(&self, on: bool) {
        self.isolated.store(on, Ordering::Relaxed);
    }

    /// A client for the node at `addr` (`host:port`).
    pub fn client(&self, addr: &str) -> Result<PeerClient, PeerError> {
        if self.is_isolated() {
            return Err(PeerError::Isolated);
        }
        let channel = {
            let mut channels = self.channels.lock().map_err(|_| PeerError::Unreachable {
                addr: addr.into(),
                reason: "channel cache poisoned".into(),
            })?;
            match channels.get(addr) {
                Some(c) => c.clone(),
                None => {
                    let c = Endpoint::from_shared(format!("http://{addr}"))
                        .map_err(|e| PeerError::Unreachable {
                            addr: addr.into(),
                            reason: e.to_string(),
                        })?
                        .connect_timeout(Duration::from_secs(2))
                        .timeout(Duration::from_secs(10))
                        .tcp_nodelay(true)
                        .connect_lazy();
                    channels.insert(addr.to_owned(), c.clone());
                    c
                }
            }
        };
        Ok(
            proto::peer_client::PeerClient::with_interceptor(channel, self.secret.clone())
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20),
        )
    }
}
