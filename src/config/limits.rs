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
    /// How long a stream may take to authenticate or register, however busy
    /// it is: trickled bytes do not keep an unauthenticated stream alive.
    #[serde(with = "humantime_serde")]
    pub pre_auth_deadline: Duration,
    /// Unauthenticated connections one address (an IPv6 /64) may hold at once.
    pub pre_auth_connections_per_address: usize,
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
    /// Messages kept per user while they have no available resource
    /// (XEP-0160); 0 keeps none. Beyond it senders get `service-unavailable`.
    pub offline_messages_per_user: usize,
    /// Stanzas a bound client may send per second, in bursts of up to one
    /// second's worth; beyond it they get `wait`/`resource-constraint`.
    pub stanzas_per_second: u32,
    /// Contacts one roster may hold; a roster set adding one more gets
    /// `cancel`/`not-allowed`.
    pub roster_items_per_user: usize,
    /// Groups one roster item may be in; more get `modify`/`not-acceptable`.
    pub roster_groups_per_item: usize,
    /// Time a client gets to send a request's headers (and between requests on
    /// a kept-alive connection) on the HTTP listener.
    #[serde(with = "humantime_serde")]
    pub http_header_timeout: Duration,
    /// Time an HTTP request may take from its headers to the response,
    /// reading its body included.
    #[serde(with = "humantime_serde")]
    pub http_request_timeout: Duration,
    /// Failed SASL attempts from one address (IPv4, or IPv6 /64) within
    /// `auth_failure_window` before further attempts from it are refused at
    /// once with `temporary-auth-failure`; 0 turns the limit off.
    pub auth_failures_per_address: u32,
    /// Failed SASL attempts on one username (existing or not) within
    /// `auth_failure_window` after which each further failure is answered
    /// late (a growing delay): slows guessing without locking the owner out.
    pub auth_failures_per_account: u32,
    /// The window both SASL failure counts (and the preauth one) run over.
    #[serde(with = "humantime_serde")]
    pub auth_failure_window: Duration,
    /// PLAIN logins hashing or waiting to hash at once, node-wide; beyond it
    /// PLAIN gets `temporary-auth-failure`.
    pub login_queue: usize,
    /// Invalid invite tokens on one stream before it is closed.
    pub max_preauth_failures: u32,
    /// Invalid invite tokens from one address within `auth_failure_window`
    /// before its invite checks are refused without a lookup; 0: off.
    pub preauth_failures_per_address: u32,
    /// How long an invite validated on a stream stays good for registering
    /// there; older, the registration is refused as for an expired invite.
    #[serde(with = "humantime_serde")]
    pub validated_invite_max_age: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_stanza_size: 256 * 1024,
            max_depth: 32,
            pre_auth_idle_timeout: Duration::from_secs(60),
            pre_auth_deadline: Duration::from_secs(120),
            pre_auth_connections_per_address: 32,
            max_connections: None,
            registrations_per_ip_per_minute: 10,
            max_auth_failures: 5,
            registration_queue: 64,
            offline_messages_per_user: 100,
            stanzas_per_second: 200,
            roster_items_per_user: 1000,
            roster_groups_per_item: 32,
            http_header_timeout: Duration::from_secs(10),
            http_request_timeout: Duration::from_secs(30),
            auth_failures_per_address: 20,
            auth_failures_per_account: 10,
            auth_failure_window: Duration::from_secs(600),
            login_queue: 64,
            max_preauth_failures: 5,
            preauth_failures_per_address: 20,
            validated_invite_max_age: Duration::from_secs(300),
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

    /// One range per key, in the struct's order (long, but a plain list).
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
        duration(
            "limits.pre_auth_deadline",
            self.pre_auth_deadline,
            secs(5),
            secs(3600),
        )?;
        count(
            "limits.pre_auth_connections_per_address",
            self.pre_auth_connections_per_address,
            1,
            1_000_000,
        )?;
        duration(
            "limits.http_header_timeout",
            self.http_header_timeout,
            secs(1),
            secs(300),
        )?;
        duration(
            "limits.http_request_timeout",
            self.http_request_timeout,
            secs(1),
            secs(600),
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
        )?;
        count(
            "limits.offline_messages_per_user",
            self.offline_messages_per_user,
            0,
            10_000,
        )?;
        count(
            "limits.stanzas_per_second",
            self.stanzas_per_second,
            1,
            1_000_000,
        )?;
        count(
            "limits.roster_items_per_user",
            self.roster_items_per_user,
            1,
            100_000,
        )?;
        count(
            "limits.roster_groups_per_item",
            self.roster_groups_per_item,
            1,
            1000,
        )?;
        self.check_guessing()
    }

    fn check_guessing(&self) -> Result<(), ConfigError> {
        count(
            "limits.auth_failures_per_address",
            self.auth_failures_per_address,
            0,
            1_000_000,
        )?;
        count(
            "limits.auth_failures_per_account",
            self.auth_failures_per_account,
            0,
            1_000_000,
        )?;
        duration(
            "limits.auth_failure_window",
            self.auth_failure_window,
            secs(1),
            secs(24 * 3600),
        )?;
        count("limits.login_queue", self.login_queue, 1, 100_000)?;
        count(
            "limits.max_preauth_failures",
            self.max_preauth_failures,
            1,
            100,
        )?;
        count(
            "limits.preauth_failures_per_address",
            self.preauth_failures_per_address,
            0,
            1_000_000,
        )?;
        duration(
            "limits.validated_invite_max_age",
            self.validated_invite_max_age,
            secs(1),
            secs(24 * 3600),
        )
    }
}
