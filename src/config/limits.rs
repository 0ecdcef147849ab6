//! `limits.*`: what one client, one address or the whole node may use.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::bounds::{count, duration, secs};
use super::ConfigError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest stanza in bytes; larger ones end the stream.
    pub max_stanza_size: usize,
    pub max_depth: usize,
    /// How long a stream may stay silent before it authenticates.
    #[serde(with = "humantime_serde")]
    pub pre_auth_idle_timeout: Duration,
    /// Client connections at once; unset: what the open-file limit leaves
    /// room for (checked at start either way).
    pub max_connections: Option<usize>,
    /// Registration attempts per IP address per minute; 0 turns the limit off.
    pub registrations_per_ip_per_minute: u32,
    /// Failed SASL attempts on one stream before it is closed.
    pub max_auth_failures: u32,
    /// Registrations hashing or waiting to hash at once, node-wide; beyond
    /// it registrations get a `wait` error so logins keep their share of the CPU.
    pub registration_queue: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_stanza_size: 256 * 1024,
            max_depth: 32,
            pre_auth_idle_timeout: Duration::from_secs(60),
            max_connections: None,
            registrations_per_ip_per_minute: 10,
            max_auth_failures: 5,
            registration_queue: 64,
        }
    }
}

impl Limits {
    /// What the XML reader of a stream (or of a stanza from a peer) enforces;
    /// the reader's other limits keep their own defaults.
    #[allow(clippy::needless_update)]
    pub fn reader(&self) -> crate::xmpp::reader::ReaderLimits {
        crate::xmpp::reader::ReaderLimits {
            max_stanza_size: self.max_stanza_size,
            max_depth: self.max_depth,
            ..Default::default()
        }
    }

    pub(super) fn check(&self) -> Result<(), ConfigError> {
        // RFC 6120 §13.12: a server must accept stanzas of at least 10000 bytes.
        count(
            "limits.max_stanza_size",
            self.max_stanza_size,
            10_000,
            16 << 20,
        )?;
        count("limits.max_depth", self.max_depth, 4, 1000)?;
        duration(
            "limits.pre_auth_idle_timeout",
            self.pre_auth_idle_timeout,
            secs(1),
            secs(3600),
        )?;
        if let Some(n) = self.max_connections {
            count("limits.max_connections", n, 1, 10_000_000)?;
        }
        count(
            "limits.registrations_per_ip_per_minute",
            self.registrations_per_ip_per_minute,
            0,
            1_000_000,
        )?;
        count("limits.max_auth_failures", self.max_auth_failures, 1, 100)?;
        count(
            "limits.registration_queue",
            self.registration_queue,
            1,
            100_000,
        )
    }
}
