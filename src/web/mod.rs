//! The HTTP listener (`http_addr`): Prometheus metrics, the health probes and
//! the invite landing pages. It starts before storage and the ledger, so
//! `/ready` can say what the node is still waiting for.

pub mod apps;
mod invite_page;
mod messages;
mod probes;

use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::accounts::AccountStore;
use crate::ledger::LedgerHandle;

/// What the node has brought up so far; filled in as start-up proceeds.
#[derive(Default)]
pub struct Readiness {
    pub store: OnceLock<Arc<dyn AccountStore>>,
    pub ledger: OnceLock<LedgerHandle>,
    /// Set on a shutdown signal, so load balancers stop sending clients first.
    pub draining: AtomicBool,
}

#[derive(Clone)]
pub struct HttpState {
    pub readiness: Arc<Readiness>,
    pub metrics: PrometheusHandle,
    pub config: Arc<crate::config::Config>,
    pub templates: Arc<minijinja::Environment<'static>>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/health", get(probes::health))
        .route("/ready", get(probes::ready))
        .route("/metrics", get(probes::metrics))
        .route("/invite/{token}", get(invite_page::invite_page))
        .with_state(state)
}

pub use invite_page::templates;

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
