//! Boots one node: storage, TLS, the client listener on per-core Arbiters, and
//! a graceful shutdown on SIGTERM/SIGINT.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::accounts::embedded::EmbeddedStore;
use crate::accounts::metered::MeteredStore;
use crate::accounts::{AccountStore, StoreError};
use crate::blocking_pool::CpuPool;
use crate::c2s::directory::SessionDirectory;
use crate::c2s::rate_limit::RegistrationLimiter;
use crate::c2s::tls::TlsError;
use crate::c2s::{listener, C2sShared};
use crate::config::Config;
use crate::ledger::{LedgerError, LedgerHandle, LedgerOptions};
use crate::peer::cluster::PeerFanout;
use crate::peer::{PeerClients, ShardNetwork};
use crate::registration::Registrar;
use crate::web::{HttpState, Readiness};

/// How long open streams get to close after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("data dir {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind {
        key: &'static str,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("admin token: {0}")]
    AdminToken(std::io::Error),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("waiting for signals: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error("cluster: {0}")]
    Cluster(String),
}

/// Runs the node until a shutdown signal. Must be called inside the actix
/// System (its multi-thread tokio runtime).
pub async fn run(config: Config) -> Result<(), NodeError> {
    let config = Arc::new(config);
    let data_dir = config.data_dir.clone();
    let dir_error = |source| NodeError::DataDir {
        path: data_dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&data_dir).map_err(dir_error)?;
    let decoy_secret =
        crate::secrets::load_or_create(&data_dir.join("decoy.secret"), 32).map_err(dir_error)?;
    let tls = crate::c2s::tls::acceptor(&config)?;

    // HTTP first: probes and metrics answer while storage is still coming up.
    let metrics = crate::metrics::install()?;
    let readiness = Arc::new(Readiness::default());
    let http_listener = bind("http_addr", config.http_addr).await?;
    let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(crate::web::serve(
        http_listener,
        HttpState {
            readiness: readiness.clone(),
            metrics,
            config: config.clone(),
            templates: Arc::new(crate::web::templates()),
            form_key: Arc::new(form_key(&config, &data_dir).map_err(dir_error)?),
        },
        async move {
            let _ = http_stop_rx.await;
        },
    ));

    let store: Arc<dyn AccountStore> = if config.scylla.nodes.is_empty() {
        Arc::new(EmbeddedStore::open(&data_dir.join("accounts.redb"))?)
    } else {
        tracing::info!(
            nodes = ?config.scylla.nodes,
            keyspace = %config.scylla.keyspace,
            "accounts in the CQL database"
        );
        let signal = async {
            let _ = wait_for_signal().await;
        };
        Arc::new(
            crate::accounts::scylla::ScyllaStore::connect_patiently(&config.scylla, signal).await?,
        )
    };
    let store: Arc<dyn AccountStore> = Arc::new(MeteredStore(store));
    let _ = readiness.store.set(store.clone());
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let options = LedgerOptions::from(&config.ledger);
    let directory = Arc::new(SessionDirectory::default());
    let (peer_stop_tx, peer_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ledger, peers) = if config.cluster.enabled() {
        let (ledger, clients, server) =
            start_cluster(&config, &data_dir, options, directory.clone(), peer_stop_rx).await?;
        (ledger, Some((clients, server)))
    } else {
        (LedgerHandle::open_single(&data_dir, options).await?, None)
    };
    let _ = readiness.ledger.set(ledger.clone());
    let janitor = crate::ledger::spawn_janitor(
        ledger.clone(),
        store.clone(),
        config.ledger.janitor_interval,
        config.audit_retention,
    );

    // Before any listener is bound: whoever sees the port open can read the token.
    let admin_token = crate::admin::token::load_or_create(config.admin_token.as_deref(), &data_dir)
        .map_err(NodeError::AdminToken)?;
    let listener = bind("c2s_addr", config.c2s_addr).await?;
    let admin_listener = bind("admin_addr", config.admin_addr).await?;

    let cpu = CpuPool::new(cores, config.limits.registration_queue);
    let registrar = Arc::new(Registrar {
        config: config.clone(),
        store: store.clone(),
        ledger: ledger.clone(),
        cpu: cpu.clone(),
        limiter: RegistrationLimiter::new(config.limits.registrations_per_ip_per_minute),
        directory: directory.clone(),
    });
    let _ = readiness.registrar.set(registrar.clone());
    let shared = Arc::new(C2sShared {
        config: config.clone(),
        store: store.clone(),
        ledger: ledger.clone(),
        cpu,
        tls,
        registrar,
        decoy_secret,
        connections: Arc::new(AtomicUsize::new(0)),
        directory: directory.clone(),
    });
    let arbiters: Vec<actix::Arbiter> = (0..cores).map(|_| actix::Arbiter::new()).collect();
    let handles = arbiters.iter().map(|a| a.handle()).collect();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let shutdown_rx_for_admin = shutdown_rx.clone();
    let accept = tokio::spawn(listener::accept_loop(
        listener,
        shared.clone(),
        handles,
        shutdown_rx,
    ));
    let cluster_admin = peers
        .as_ref()
        .map(|(clients, _)| crate::admin::cluster::ClusterAdmin {
            ledger: ledger.clone(),
            clients: clients.clone(),
            advertise: config.cluster.advertised(),
            replication: config.cluster.replication,
        });
    let invite_admin = crate::admin::invites::InviteAdmin {
        ledger: ledger.clone(),
        store: store.clone(),
        config: config.clone(),
    };
    let mut admin_shutdown = shutdown_rx_for_admin;
    let admin = tokio::spawn(crate::admin::grpc::serve(
        admin_listener,
        crate::admin::grpc::AdminService {
            invites: invite_admin,
            cluster: cluster_admin,
        },
        admin_token,
        async move {
            let _ = admin_shutdown.changed().await;
        },
    ));
    tracing::info!(
        domain = %config.domain,
        c2s = %config.c2s_addr,
        admin = %config.admin_addr,
        http = %config.http_addr,
        data_dir = %config.data_dir.display(),
        invite_only = config.registration_invite_only,
        "usher is serving"
    );

    wait_for_signal().await?;
    tracing::info!("shutting down: closing client streams");
    readiness
        .draining
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = shutdown_tx.send(true);
    let _ = accept.await;
    match admin.await {
        Ok(Err(e)) => tracing::warn!(error = %e, "admin API ended with an error"),
        Err(e) => tracing::warn!(error = %e, "admin API task failed"),
        Ok(Ok(())) => {}
    }
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while shared.connections.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = shared.connections.load(Ordering::SeqCst);
    if left > 0 {
        tracing::warn!(left, "streams still open at shutdown");
    }
    for arbiter in &arbiters {
        arbiter.stop();
    }
    janitor.abort();
    let _ = peer_stop_tx.send(());
    if let Some((_, server)) = peers {
        if let Ok(Err(e)) = server.await {
            tracing::warn!(error = %e, "peer API ended with an error");
        }
    }
    let _ = http_stop_tx.send(());
    if let Ok(Err(e)) = http.await {
        tracing::warn!(error = %e, "HTTP listener ended with an error");
    }
    ledger.shutdown().await;
    store.flush().await?;
    tracing::info!("stopped");
    Ok(())
}

type PeerServer = tokio::task::JoinHandle<Result<(), tonic::transport::Error>>;

/// Opens a cluster node's ledger and peer API, then bootstraps the cluster or
/// joins it the first time this node starts.
async fn start_cluster(
    config: &Config,
    data_dir: &std::path::Path,
    options: LedgerOptions,
    directory: Arc<SessionDirectory>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<(LedgerHandle, Arc<PeerClients>, PeerServer), NodeError> {
    let c = &config.cluster;
    let secret = c.secret.clone().unwrap_or_default();
    let clients = PeerClients::new(&secret).map_err(|e| NodeError::Cluster(e.to_string()))?;
    let network_clients = clients.clone();
    let remote: Arc<dyn crate::ledger::Remote> = clients.clone();
    let ledger = LedgerHandle::open(
        data_dir,
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
        domain: config.domain.clone(),
        advertise: c.advertised(),
        replication: c.replication,
        limits: crate::xmpp::reader::ReaderLimits {
            max_stanza_size: config.limits.max_stanza_size,
            max_depth: config.limits.max_depth,
            ..crate::xmpp::reader::ReaderLimits::default()
        },
    };
    let server = tokio::spawn(crate::peer::service::serve(
        listener,
        service,
        secret,
        async move {
            let _ = stop.await;
        },
    ));
    if ledger.is_member() {
        tracing::info!(node = c.node_id, "rejoining the cluster as a known member");
    } else if c.bootstrap {
        let me = openraft::BasicNode {
            addr: c.advertised(),
        };
        ledger
            .initialize(std::collections::BTreeMap::from([(c.node_id, me)]))
            .await?;
        tracing::info!(node = c.node_id, "bootstrapped a new cluster");
    } else if let Some(via) = &c.join {
        let give_up = async {
            let _ = wait_for_signal().await;
        };
        crate::peer::cluster::join(&clients, via, c.node_id, &c.advertised(), give_up)
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
    ledger.wait_for_leaders(Duration::from_secs(60)).await?;
    directory.set_fanout(PeerFanout::start(ledger.clone(), clients.clone()));
    let balancer = ledger.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            balancer.claim_preferred_leaderships().await;
        }
    });
    Ok((ledger, clients, server))
}

async fn bind(key: &'static str, addr: std::net::SocketAddr) -> Result<TcpListener, NodeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| NodeError::Bind { key, addr, source })
}

async fn wait_for_signal() -> Result<(), NodeError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).map_err(NodeError::Signals)?;
        let mut int = signal(SignalKind::interrupt()).map_err(NodeError::Signals)?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.map_err(NodeError::Signals)
    }
}

/// The key of the web forms' CSRF fields: derived from the cluster secret, so
/// a form served by one node is accepted by any; a single node keeps its own.
fn form_key(config: &Config, data_dir: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use sha2::Digest as _;
    match config.cluster.secret.as_deref() {
        Some(secret) if config.cluster.enabled() => {
            Ok(sha2::Sha256::digest(format!("usher web forms\0{secret}")).to_vec())
        }
        _ => crate::secrets::load_or_create(&data_dir.join("web-forms.secret"), 32),
    }
}
