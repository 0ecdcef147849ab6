//! A cluster node's ledger: the peer API, then bootstrapping the cluster,
//! joining it, or rejoining as a known member; then the cross-node fanout.
//!
//! There is no leadership balancer: shard leaders stay where elections put
//! them. openraft 0.9 cannot hand leadership over, and moving it by starting
//! an election on the preferred node made the shard leaderless for a lease
//! and an election timeout each time (under load a livelock: shard 0 went
//! from term 4 to 27 in 60 s). Any node serves any shard by forwarding.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{bind, NodeError, Tasks};
use crate::config::Config;
use crate::ledger::{LedgerHandle, LedgerOptions};
use crate::peer::cluster::PeerFanout;
use crate::peer::{PeerClients, PeerTls, PeerTlsFiles, ShardNetwork};
use crate::sessions::SessionDirectory;

pub(super) async fn start(
    config: &Config,
    options: LedgerOptions,
    directory: Arc<SessionDirectory>,
    store: Arc<dyn crate::accounts::AccountStore>,
    stop: &CancellationToken,
    tasks: &mut Tasks,
) -> Result<(LedgerHandle, Arc<PeerClients>), NodeError> {
    let c = &config.cluster;
    let secret = c.secret.clone().unwrap_or_default();
    let tls = peer_tls(c)?;
    let clients =
        PeerClients::new(&secret, tls.clone()).map_err(|e| NodeError::Cluster(e.to_string()))?;
    let network_clients = clients.clone();
    let remote: Arc<dyn crate::ledger::Remote> = clients.clone();
    let ledger = LedgerHandle::open(
        &config.data_dir,
        options,
        c.node_id,
        move |shard| ShardNetwork {
            shard,
            clients: network_clients.clone(),
        },
        Some(remote),
    )
    .await?;
    let listener = bind("cluster.peer_addr", c.peer_addr).await?;
    let service = crate::peer::service::PeerService {
        ledger: ledger.clone(),
        clients: clients.clone(),
        directory: directory.clone(),
        advertise: c.advertised(),
        replication: c.replication,
        limits: config.limits.reader(),
    };
    let serve = crate::peer::service::serve(
        listener,
        service,
        secret,
        tls,
        stop.clone().cancelled_owned(),
    );
    tasks.listen("peer API", serve);
    become_member(config, &ledger, &clients, stop).await?;
    ledger.wait_for_leaders(Duration::from_secs(60)).await?;
    directory.set_fanout(PeerFanout::start(
        ledger.clone(),
        clients.clone(),
        directory.clone(),
        store,
        stop.clone(),
    ));
    Ok((ledger, clients))
}

/// This node's peer TLS material, checked before anything listens: a file
/// that cannot be read or does not fit stops the start naming key and file.
fn peer_tls(c: &crate::config::ClusterConfig) -> Result<PeerTls, NodeError> {
    let (Some(cert), Some(key), Some(ca)) = (&c.tls_cert, &c.tls_key, &c.tls_ca) else {
        // The config check refuses a cluster node without them.
        return Err(NodeError::Cluster(
            "cluster.tls_cert, cluster.tls_key and cluster.tls_ca must be set".into(),
        ));
    };
    Ok(PeerTls::load(&PeerTlsFiles { cert, key, ca })?)
}

/// Makes this node a member: it already is, it bootstraps, or it joins.
async fn become_member(
    config: &Config,
    ledger: &LedgerHandle,
    clients: &PeerClients,
    stop: &CancellationToken,
) -> Result<(), NodeError> {
    let c = &config.cluster;
    if ledger.is_member() {
        tracing::info!(node = c.node_id, "rejoining the cluster as a known member");
    } else if c.bootstrap {
        let me = openraft::BasicNode {
            addr: c.advertised(),
        };
        ledger.initialize(BTreeMap::from([(c.node_id, me)])).await?;
        tracing::info!(node = c.node_id, "bootstrapped a new cluster");
    } else if let Some(via) = &c.join {
        let give_up = stop.clone().cancelled_owned();
        crate::peer::cluster::join(clients, via, c.node_id, &c.advertised(), give_up)
            .await
            .map_err(|e| NodeError::Cluster(format!("joining through {via}: {e}")))?;
        tracing::info!(node = c.node_id, %via, "joined the cluster");
    } else {
        return Err(NodeError::Cluster(
            "this node is in no cluster yet: set cluster.bootstrap on the first node, \
             cluster.join on the others"
                .into(),
        ));
    }
    Ok(())
}
