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
use crate::c2s::rate_limit::RegistrationLimiter;
use crate::c2s::tls::TlsError;
use crate::c2s::{listener, C2sShared};
use crate::config::Config;
use crate::ledger::{LedgerError, LedgerHandle, LedgerOptions};
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
    let ledger = LedgerHandle::open_single(
        &data_dir,
        LedgerOptions {
            batching: config.ledger.batching,
            shards: config.ledger.shards,
        },
    )
    .await?;
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

    let shared = Arc::new(C2sShared {
        config: config.clone(),
        store: store.clone(),
        ledger: ledger.clone(),
        cpu: CpuPool::new(cores, config.limits.registration_queue),
        tls,
        registrations: RegistrationLimiter::new(config.limits.registrations_per_ip_per_minute),
        decoy_secret,
        connections: Arc::new(AtomicUsize::new(0)),
        directory: Default::default(),
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
    let _ = http_stop_tx.send(());
    if let Ok(Err(e)) = http.await {
        tracing::warn!(error = %e, "HTTP listener ended with an error");
    }
    ledger.shutdown().await;
    store.flush().await?;
    tracing::info!("stopped");
    Ok(())
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
