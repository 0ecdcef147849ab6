//! `/health` (the process answers), `/ready` (storage answers and the ledger
//! has a leader: send traffic here) and `/metrics`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;

use super::HttpState;

/// A readiness probe must answer even when the database hangs.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn health() -> &'static str {
    "ok\n"
}

pub async fn ready(State(state): State<HttpState>) -> (StatusCode, String) {
    let mut problems = Vec::new();
    if state.readiness.draining.load(Ordering::Relaxed) {
        problems.push("shutting down".to_owned());
    }
    match state.readiness.store.get() {
        None => problems.push("storage: not connected yet".to_owned()),
        Some(store) => match tokio::time::timeout(CHECK_TIMEOUT, store.check()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => problems.push(format!("storage: {e}")),
            Err(_) => problems.push(format!("storage: no answer within {CHECK_TIMEOUT:?}")),
        },
    }
    match state.readiness.ledger.get() {
        None => problems.push("ledger: not started yet".to_owned()),
        Some(ledger) if !ledger.all_shards_led() => {
            problems.push("ledger: a shard has no leader".to_owned())
        }
        Some(_) => {}
    }
    if problems.is_empty() {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        let mut body = problems.join("\n");
        body.push('\n');
        (StatusCode::SERVICE_UNAVAILABLE, body)
    }
}

pub async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
