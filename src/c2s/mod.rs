//! Client-to-server streams: one actix actor per TCP connection, driving a
//! `Session` (the stream state machine) fed by an I/O pump that owns the socket.

mod adhoc;
mod auth;
mod availability;
pub mod connection;
pub mod guessing;
mod invite;
pub mod io;
mod iq;
pub mod listener;
mod message;
pub mod pre_auth_slots;
mod presence;
mod rate;
mod register;
mod roster;
pub mod session;
mod stream_io;
pub mod tls;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use crate::accounts::AccountStore;
use crate::blocking_pool::CpuPool;
use crate::config::Config;
use crate::ledger::LedgerHandle;
use crate::xmpp::reader::ReaderLimits;

/// What every connection on a node shares.
pub struct C2sShared {
    pub config: Arc<Config>,
    pub store: Arc<dyn AccountStore>,
    pub ledger: LedgerHandle,
    pub cpu: CpuPool,
    pub tls: tokio_rustls::TlsAcceptor,
    /// Registration checks and the invite saga, shared with the web form.
    pub registrar: Arc<crate::registration::Registrar>,
    /// Seeds the decoy SCRAM salts of unknown users; stable across restarts.
    pub decoy_secret: Vec<u8>,
    /// Failed passwords and invite tokens, counted across this node's streams.
    pub guessing: guessing::Guessing,
    /// Open connections, and how many may be (`limits.max_connections`, or
    /// what the open-file limit leaves room for).
    pub connections: Arc<AtomicUsize>,
    pub max_connections: usize,
    /// Unauthenticated connections per address.
    pub pre_auth_slots: Arc<pre_auth_slots::PreAuthSlots>,
    /// Bound sessions on this node.
    pub directory: Arc<crate::sessions::SessionDirectory>,
}

impl C2sShared {
    pub fn reader_limits(&self) -> ReaderLimits {
        self.config.limits.reader()
    }
}

#[cfg(test)]
mod tests;
