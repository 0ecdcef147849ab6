//! Accepts client connections and spreads them over the connection Arbiters.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::ArbiterHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::connection::{serve_connection, ConnectionGuard};
use super::C2sShared;

pub async fn accept_loop(
    listener: TcpListener,
    shared: Arc<C2sShared>,
    arbiters: Vec<ArbiterHandle>,
    shutdown: CancellationToken,
) {
    let mut next = 0usize;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Typically out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let open = shared.connections.load(Ordering::SeqCst);
        if open >= shared.max_connections {
            tracing::warn!(%peer, open, "connection refused: limits.max_connections reached");
            crate::metrics::rate_limit_hit("max_connections");
            continue;
        }
        let guard = ConnectionGuard::new(shared.connections.clone());
        // Re-registered with the reactor of the Arbiter that will own it.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "could not hand over the connection");
                continue;
            }
        };
        let arbiter = &arbiters[next % arbiters.len()];
        next = next.wrapping_add(1);
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        arbiter.spawn(async move {
            serve_connection(stream, peer, shared, shutdown, guard).await;
        });
    }
}
