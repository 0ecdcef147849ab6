//! Client-to-server streams: one actix actor per TCP connection, driving a
//! `Session` (the stream state machine) fed by an I/O pump that owns the socket.

mod adhoc;
mod auth;
pub mod connection;
pub mod directory;
mod invite;
pub mod io;
mod iq;
pub mod listener;
mod presence;
pub mod rate_limit;
mod register;
pub(crate) mod roster;
pub mod session;
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
    /// Open connections, for `limits.max_connections`.
    pub connections: Arc<AtomicUsize>,
    /// Bound sessions on this node.
    pub directory: Arc<directory::SessionDirectory>,
}

impl C2sShared {
    pub fn reader_limits(&self) -> ReaderLimits {
        ReaderLimits {
            max_stanza_size: self.config.limits.max_stanza_size,
            max_depth: self.config.limits.max_depth,
            ..ReaderLimits::default()
        }
    }
}
