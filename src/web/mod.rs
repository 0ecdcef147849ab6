//! The HTTP listener (`http_addr`): Prometheus metrics, the health probes, the
//! invite landing pages and web registration. It starts before storage and the ledger, so
//! `/ready` can say what the node is still waiting for.

pub mod apps;
mod csrf;
mod invite_page;
mod messages;
mod probes;
mod register_page;
mod render;
mod server;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::accounts::AccountStore;
use crate::ledger::LedgerHandle;

/// What the node has brought up so far; filled in as start-up proceeds.
#[derive(Default)]
pub struct Readiness {
    pub store: OnceLock<Arc<dyn AccountStore>>,
    pub ledger: OnceLock<LedgerHandle>,
    /// Web registration waits for this, like the c2s listener does.
    pub registrar: OnceLock<Arc<crate::registration::Registrar>>,
    /// Set on a shutdown signal, so load balancers stop sending clients first.
    pub draining: AtomicBool,
}

#[derive(Clone)]
pub struct HttpState {
    pub readiness: Arc<Readiness>,
    pub metrics: PrometheusHandle,
    pub config: Arc<crate::config::Config>,
    pub templates: Arc<minijinja::Environment<'static>>,
    /// Signs the web forms' CSRF fields; the same on every node of a cluster.
    pub form_key: Arc<Vec<u8>>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/health", get(probes::health))
        .route("/ready", get(probes::ready))
        .route("/metrics", get(probes::metrics))
        .route("/invite/{token}", get(invite_page::invite_page))
        .route(
            "/register/{token}",
            get(register_page::form)
                .post(register_page::submit)
                // Four short fields; nothing legitimate comes near this.
                .layer(DefaultBodyLimit::max(16 * 1024)),
        )
        .with_state(state)
}

pub use render::templates;

pub use server::serve;
