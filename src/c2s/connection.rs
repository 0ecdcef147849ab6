//! The connection actor: the address other parts of the node use to reach a
//! client stream, and the shell that runs its `Session` one event at a time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::io::{Outbox, Pump};
use super::session::Session;
use super::C2sShared;
use crate::sessions::Deliver;

pub struct C2sConnection {
    /// Taken out while an async step runs; `AtomicResponse` (or `ctx.wait`)
    /// keeps every other message waiting until it is back.
    session: Option<Session>,
}

impl Actor for C2sConnection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(s) = self.session.as_mut() {
            s.set_address(ctx.address().recipient());
            ctx.notify_later(PreAuthDeadline, s.shared.config.limits.pre_auth_deadline);
        }
    }
}

impl Handler<Deliver> for C2sConnection {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        if !crate::sessions::is_take_kept(&msg.0) {
            // The hot path: no future, no allocation beyond the stanza's own.
            session.deliver(msg.0);
            return;
        }
        let Some(mut session) = self.session.take() else {
            return;
        };
        // Reading the store: like a stanza, the next message waits for it.
        ctx.wait(
            async move {
                session.take_kept().await;
                session
            }
            .into_actor(self)
            .map(|session, act, _ctx| act.session = Some(session)),
        );
    }
}

/// Bytes read from the socket.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Incoming(pub Vec<u8>);

/// The stream was silent longer than its idle limit.
#[derive(Message)]
#[rtype(result = "()")]
pub struct IdleTimeout;

/// The time to authenticate is up (the session knows whether it did).
#[derive(Message)]
#[rtype(result = "()")]
struct PreAuthDeadline;

/// The node is shutting down.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// The socket is gone.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnected;

impl Handler<Incoming> for C2sConnection {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: Incoming, _ctx: &mut Context<Self>) -> Self::Result {
        let Some(mut session) = self.session.take() else {
            return AtomicResponse::new(Box::pin(actix::fut::ready(())));
        };
        AtomicResponse::new(Box::pin(
            async move {
                session.on_data(&msg.0).await;
                session
            }
            .into_actor(self)
            .map(|session, act, _ctx| act.session = Some(session)),
        ))
    }
}

impl Handler<IdleTimeout> for C2sConnection {
    type Result = ();

    fn handle(&mut self, _: IdleTimeout, _ctx: &mut Context<Self>) {
        if let Some(s) = self.session.as_mut() {
            s.on_idle_timeout();
        }
    }
}

impl Handler<PreAuthDeadline> for C2sConnection {
    type Result = ();

    fn handle(&mut self, _: PreAuthDeadline, _ctx: &mut Context<Self>) {
        if let Some(s) = self.session.as_mut() {
            s.on_pre_auth_deadline();
        }
    }
}

impl Handler<Shutdown> for C2sConnection {
    type Result = ();

    fn handle(&mut self, _: Shutdown, _ctx: &mut Context<Self>) {
        if let Some(s) = self.session.as_mut() {
            s.on_shutdown();
        }
    }
}

impl Handler<Disconnected> for C2sConnection {
    type Result = ();

    fn handle(&mut self, _: Disconnected, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// Counts a connection for as long as it lives.
pub struct ConnectionGuard(Arc<AtomicUsize>);

impl ConnectionGuard {
    pub fn new(counter: Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        metrics::counter!(crate::metrics::CONNECTIONS_TOTAL).increment(1);
        metrics::gauge!(crate::metrics::CONNECTIONS_OPEN).increment(1.0);
        ConnectionGuard(counter)
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
        metrics::gauge!(crate::metrics::CONNECTIONS_OPEN).decrement(1.0);
    }
}

/// Runs one client connection to its end. Called on the Arbiter that will host
/// the actor.
pub async fn serve_connection(
    stream: std::net::TcpStream,
    peer: SocketAddr,
    shared: Arc<C2sShared>,
    shutdown: CancellationToken,
    guard: ConnectionGuard,
) {
    let stream = match tokio::net::TcpStream::from_std(stream) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "could not register the connection");
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let (tx, rx) = mpsc::unbounded_channel();
    let idle = Some(shared.config.limits.pre_auth_idle_timeout);
    let tls = shared.tls.clone();
    let mut session = Session::new(shared, Outbox::new(tx), peer);
    session.take_pre_auth_slot();
    let actor = C2sConnection {
        session: Some(session),
    }
    .start();
    Pump {
        stream,
        commands: rx,
        actor,
        tls,
        shutdown,
        idle,
    }
    .run()
    .await;
    drop(guard);
}
