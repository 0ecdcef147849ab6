//! One node: its storage, ledger, listeners and background work, started in
//! order and stopped by one signal. `Node::start` brings everything up;
//! `Node::stop` cancels the one shutdown token (every listener and stream
//! sees it), drains the client streams, then stops the background tasks, the
//! ledger and the store, in that order.

mod cluster;
mod data_dir;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::accounts::embedded::EmbeddedStore;
use crate::accounts::metered::MeteredStore;
use crate::accounts::{AccountStore, StoreError};
use crate::blocking_pool::CpuPool;
use crate::c2s::tls::TlsError;
use crate::c2s::{listener, C2sShared};
use crate::config::Config;
use crate::ledger::{LedgerError, LedgerHandle, LedgerOptions};
use crate::registration::{Registrar, RegistrationLimiter};
use crate::sessions::SessionDirectory;
use crate::web::{HttpState, Readiness};

/// How long open streams get to close after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Descriptors the node keeps for itself beyond client connections: data
/// files, peers, the database, the listeners, HTTP clients.
const RESERVED_FDS: u64 = 1024;

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
    /// Peer or admin TLS files; names the config key and the file itself.
    #[error(transparent)]
    TlsFiles(#[from] crate::tls_files::TlsFileError),
    #[error(
        "limits.max_connections is {configured} but the open-file limit of {limit} leaves \
         room for {room}: raise the limit (ulimit -n, LimitNOFILE) or lower the setting"
    )]
    TooManyConnections {
        configured: usize,
        limit: u64,
        room: usize,
    },
}

/// A running node.
pub struct Node {
    stop: CancellationToken,
    readiness: Arc<Readiness>,
    shared: Arc<C2sShared>,
    ledger: LedgerHandle,
    store: Arc<dyn AccountStore>,
    arbiters: Vec<actix::Arbiter>,
    tasks: Tasks,
}

/// Every task the node started, in two kinds.
#[derive(Default)]
struct Tasks {
    /// Listeners: they end by themselves once the stop token is cancelled.
    listeners: Vec<(&'static str, JoinHandle<()>)>,
    /// Loops that run for the node's life: aborted after the drain.
    background: Vec<JoinHandle<()>>,
}

impl Tasks {
    /// A server whose error is logged, not lost.
    fn listen<E: std::fmt::Display>(
        &mut self,
        name: &'static str,
        serve: impl std::future::Future<Output = Result<(), E>> + Send + 'static,
    ) {
        let task = tokio::spawn(async move {
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "{name} ended with an error");
            }
        });
        self.listeners.push((name, task));
    }

    fn background(&mut self, task: JoinHandle<()>) {
        self.background.push(task);
    }
}

/// Runs a node until SIGTERM or SIGINT. Must be called inside the actix
/// System (its multi-thread tokio runtime).
pub async fn run(config: Config) -> Result<(), NodeError> {
    let stop = CancellationToken::new();
    let signals = stop.clone();
    let watcher = tokio::spawn(async move {
        let result = wait_for_signal().await;
        signals.cancel();
        result
    });
    let node = match Node::start(config, stop.clone()).await {
        Ok(node) => node,
        Err(e) => {
            watcher.abort();
            return Err(e);
        }
    };
    stop.cancelled().await;
    if let Ok(Err(e)) = watcher.await {
        tracing::warn!(error = %e, "signal handling failed; stopping");
    }
    node.stop().await
}

impl Node {
    /// Starts every part in order; `stop` cancelled meanwhile (a signal during
    /// start-up) makes waits for a database or a cluster give up.
    pub async fn start(config: Config, stop: CancellationToken) -> Result<Node, NodeError> {
        let config = Arc::new(config);
        let max_connections = connection_limit(&config)?;
        // Before anything listens or joins a cluster: a node whose admin
        // certificate cannot be served must not become a voter and then exit.
        let admin_tls = crate::admin::tls::server(&config.admin_tls)?;
        data_dir::prepare(&config.data_dir)?;
        let mut tasks = Tasks::default();
        // HTTP first: probes and metrics answer while storage is still coming up.
        let readiness = start_http(&config, &stop, &mut tasks).await?;
        let store = open_store(&config, &stop).await?;
        let _ = readiness.store.set(store.clone());
        let directory = Arc::new(SessionDirectory::new(config.domain.clone()));
        let (ledger, peers) = open_ledger(&config, &directory, &store, &stop, &mut tasks).await?;
        // Again: the stores and the certificate have made their files by now.
        data_dir::prepare(&config.data_dir)?;
        let _ = readiness.ledger.set(ledger.clone());
        tasks.background(crate::registration::janitor::spawn_janitor(
            ledger.clone(),
            store.clone(),
            config.ledger.janitor_interval,
            config.audit_retention,
        ));
        let shared = client_services(&config, &store, &ledger, directory, max_connections)?;
        let _ = readiness.registrar.set(shared.registrar.clone());
        // Before the client and admin listeners: whoever sees them open can read the token.
        let admin_token =
            crate::admin::token::load_or_create(config.admin_token.as_deref(), &config.data_dir)
                .map_err(NodeError::AdminToken)?;
        let arbiters = start_clients(&shared, &stop, &mut tasks).await?;
        let admin = bind("admin_addr", config.admin_addr).await?;
        let service = admin_service(&config, &ledger, &store, &shared.registrar, peers);
        let serve = crate::admin::grpc::serve(
            admin,
            service,
            admin_token,
            admin_tls,
            stop.clone().cancelled_owned(),
        );
        tasks.listen("admin API", serve);
        tracing::info!(
            domain = %config.domain,
            c2s = %config.c2s_addr,
            admin = %config.admin_addr,
            admin_tls = config.admin_tls.cert.is_some(),
            http = %config.http_addr,
            data_dir = %config.data_dir.display(),
            invite_only = config.registration_invite_only,
            max_connections,
            "usher is serving"
        );
        Ok(Node {
            stop,
            readiness,
            shared,
            ledger,
            store,
            arbiters,
            tasks,
        })
    }

    /// Stops the node: listeners and streams first (streams get
    /// `system-shutdown` and up to `DRAIN_TIMEOUT` to close), then the rest.
    pub async fn stop(self) -> Result<(), NodeError> {
        tracing::info!("shutting down: closing client streams");
        self.readiness.draining.store(true, Ordering::Relaxed);
        self.stop.cancel();
        for (name, task) in self.tasks.listeners {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "{name} task failed");
            }
        }
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while self.shared.connections.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.shared.connections.load(Ordering::SeqCst);
        if left > 0 {
            tracing::warn!(left, "streams still open at shutdown");
        }
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
        for task in self.tasks.background {
            task.abort();
        }
        self.ledger.shutdown().await;
        self.store.flush().await?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// `limits.max_connections`, checked against the open-file limit: unset, it
/// is what the limit leaves room for.
fn connection_limit(config: &Config) -> Result<usize, NodeError> {
    let limit = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(u64::MAX, |(soft, _)| soft);
    let room = usize::try_from(limit.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX);
    match config.limits.max_connections {
        None => Ok(room.max(1)),
        Some(configured) if configured <= room => Ok(configured),
        Some(configured) => Err(NodeError::TooManyConnections {
            configured,
            limit,
            room,
        }),
    }
}

/// The HTTP listener (probes, metrics, pages), the metrics upkeep, and what
/// `/ready` reports as the rest comes up.
async fn start_http(
    config: &Arc<Config>,
    stop: &CancellationToken,
    tasks: &mut Tasks,
) -> Result<Arc<Readiness>, NodeError> {
    let metrics = crate::metrics::install()?;
    tasks.background(tokio::spawn(crate::metrics::upkeep(metrics.clone())));
    let readiness = Arc::new(Readiness::default());
    let state = HttpState {
        readiness: readiness.clone(),
        metrics,
        config: config.clone(),
        templates: Arc::new(crate::web::templates()),
        form_key: Arc::new(form_key(config, &config.data_dir)?),
    };
    let listener = bind("http_addr", config.http_addr).await?;
    let serve = crate::web::serve(listener, state, stop.clone().cancelled_owned());
    tasks.listen("HTTP listener", serve);
    Ok(readiness)
}

/// What every client stream shares: hashing, registration, TLS, limits.
fn client_services(
    config: &Arc<Config>,
    store: &Arc<dyn AccountStore>,
    ledger: &LedgerHandle,
    directory: Arc<SessionDirectory>,
    max_connections: usize,
) -> Result<Arc<C2sShared>, NodeError> {
    let cpu = CpuPool::new(
        cores(),
        config.limits.registration_queue,
        config.limits.login_queue,
    );
    let registrar = Arc::new(Registrar {
        config: config.clone(),
        store: store.clone(),
        ledger: ledger.clone(),
        cpu: cpu.clone(),
        limiter: RegistrationLimiter::new(config.limits.registrations_per_ip_per_minute),
        directory: directory.clone(),
    });
    Ok(Arc::new(C2sShared {
        config: config.clone(),
        store: store.clone(),
        ledger: ledger.clone(),
        cpu,
        tls: crate::c2s::tls::acceptor(config)?,
        registrar,
        decoy_secret: data_dir::secret(&config.data_dir, "decoy.secret")?,
        guessing: crate::c2s::guessing::Guessing::new(&config.limits),
        connections: Default::default(),
        max_connections,
        pre_auth_slots: crate::c2s::pre_auth_slots::PreAuthSlots::new(
            config.limits.pre_auth_connections_per_address,
        ),
        directory,
    }))
}

/// The client listener, spreading connections over one Arbiter per core.
async fn start_clients(
    shared: &Arc<C2sShared>,
    stop: &CancellationToken,
    tasks: &mut Tasks,
) -> Result<Vec<actix::Arbiter>, NodeError> {
    let arbiters: Vec<actix::Arbiter> = (0..cores()).map(|_| actix::Arbiter::new()).collect();
    let listener = bind("c2s_addr", shared.config.c2s_addr).await?;
    let handles = arbiters.iter().map(|a| a.handle()).collect();
    let accept = listener::accept_loop(listener, shared.clone(), handles, stop.clone());
    tasks
        .listeners
        .push(("client listener", tokio::spawn(accept)));
    Ok(arbiters)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Opens the account store: embedded, or the CQL database (waiting for it,
/// until `stop`).
async fn open_store(
    config: &Config,
    stop: &CancellationToken,
) -> Result<Arc<dyn AccountStore>, NodeError> {
    let store: Arc<dyn AccountStore> = if config.scylla.nodes.is_empty() {
        Arc::new(EmbeddedStore::open(&config.data_dir.join("accounts.redb"))?)
    } else {
        tracing::info!(
            nodes = ?config.scylla.nodes,
            keyspace = %config.scylla.keyspace,
            "accounts in the CQL database"
        );
        let give_up = stop.clone().cancelled_owned();
        Arc::new(
            crate::accounts::scylla::ScyllaStore::connect_patiently(&config.scylla, give_up)
                .await?,
        )
    };
    Ok(Arc::new(MeteredStore(store)))
}

/// The ledger: standalone, or a cluster member with its peer API (whose
/// clients the admin API's cluster commands use).
async fn open_ledger(
    config: &Config,
    directory: &Arc<SessionDirectory>,
    store: &Arc<dyn AccountStore>,
    stop: &CancellationToken,
    tasks: &mut Tasks,
) -> Result<(LedgerHandle, Option<Arc<crate::peer::PeerClients>>), NodeError> {
    let options = LedgerOptions::from(&config.ledger);
    if config.cluster.enabled() {
        let (ledger, clients) = cluster::start(
            config,
            options,
            directory.clone(),
            store.clone(),
            stop,
            tasks,
        )
        .await?;
        Ok((ledger, Some(clients)))
    } else {
        let ledger = LedgerHandle::open_single(&config.data_dir, options).await?;
        Ok((ledger, None))
    }
}

fn admin_service(
    config: &Arc<Config>,
    ledger: &LedgerHandle,
    store: &Arc<dyn AccountStore>,
    registrar: &Arc<crate::registration::Registrar>,
    clients: Option<Arc<crate::peer::PeerClients>>,
) -> crate::admin::grpc::AdminService {
    crate::admin::grpc::AdminService {
        registrar: registrar.clone(),
        invites: crate::issuing::Issuer {
            ledger: ledger.clone(),
            store: store.clone(),
            config: config.clone(),
        },
        cluster: clients.map(|clients| crate::admin::cluster::ClusterAdmin {
            ledger: ledger.clone(),
            clients,
            advertise: config.cluster.advertised(),
            replication: config.cluster.replication,
        }),
    }
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
fn form_key(config: &Config, data_dir: &std::path::Path) -> Result<Vec<u8>, NodeError> {
    use sha2::Digest as _;
    match config.cluster.secret.as_deref() {
        Some(secret) if config.cluster.enabled() => {
            Ok(sha2::Sha256::digest(format!("usher web forms\0{secret}")).to_vec())
        }
        _ => data_dir::secret(data_dir, "web-forms.secret"),
    }
}
