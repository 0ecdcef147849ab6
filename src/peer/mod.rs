//! The node-to-node side of a cluster: a gRPC service (Raft traffic of every
//! shard, forwarded ledger commands and read barriers, membership, stanza
//! delivery) and its client, over mutual TLS (`tls`: certificates from the
//! cluster CA, both ways) and authenticated by the cluster secret as well.

pub mod cluster;
mod failure;
mod network;
mod outbox;
mod remote;
pub mod service;
pub mod tls;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

pub use network::ShardNetwork;
pub use outbox::Outboxes;
pub use tls::{PeerTls, PeerTlsFiles, TlsFileError};

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
    tls: PeerTls,
    channels: Mutex<HashMap<String, Channel>>,
    /// Fault injection: while set, no peer call goes out or is served.
    isolated: Arc<AtomicBool>,
    /// Forwarded proposals waiting for their call (see `outbox`).
    outboxes: Outboxes,
}

impl PeerClients {
    /// Clients that present `tls`'s certificate, accept only peers with one
    /// from its CA, and send `secret` on every call.
    pub fn new(secret: &str, tls: PeerTls) -> Result<Arc<PeerClients>, PeerError> {
        let secret = crate::bearer::Attach::new(secret).map_err(|_| PeerError::BadSecret)?;
        let isolated = Arc::new(AtomicBool::new(false));
        Ok(Arc::new(PeerClients {
            secret,
            tls,
            channels: Mutex::new(HashMap::new()),
            outboxes: Outboxes::new(isolated.clone(), false),
            isolated,
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
                    let unreachable = |e: tonic::transport::Error| PeerError::Unreachable {
                        addr: addr.into(),
                        reason: e.to_string(),
                    };
                    // The https scheme is what makes tonic use the TLS config.
                    let c = Endpoint::from_shared(format!("https://{addr}"))
                        .map_err(unreachable)?
                        .tls_config(self.tls.client())
                        .map_err(unreachable)?
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
