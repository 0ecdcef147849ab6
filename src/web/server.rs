//! The HTTP listener's connection loop. hyper serves each connection with
//! the node's time limits (`limits.http_header_timeout` for a request's
//! headers and for the wait between kept-alive requests,
//! `limits.http_request_timeout` for the rest of a request, its body
//! included), so a client that sends slowly holds a socket for a bounded time.

use std::future::Future;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::ServiceExt;

use super::{router, HttpState};

/// How long requests in flight get to finish once the node stops.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves until `shutdown` resolves, then lets requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = &state.config.limits;
    let request_timeout = limits.http_request_timeout;
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(limits.http_header_timeout);
    let app = router(state);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            // The peer address feeds the per-address registration limit.
            request.extensions_mut().insert(ConnectInfo(peer));
            let response = app.clone().oneshot(request);
            async move {
                match tokio::time::timeout(request_timeout, response).await {
                    Ok(response) => response,
                    Err(_) => Ok(timed_out()),
                }
            }
        });
        let connection = graceful.watch(http1.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "HTTP connection ended");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("HTTP requests still open after the drain time");
    }
    Ok(())
}

fn timed_out() -> Response {
    crate::metrics::rate_limit_hit("http_request_timeout");
    (StatusCode::REQUEST_TIMEOUT, "The request took too long\n").into_response()
}
