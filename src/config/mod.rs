//! One typed configuration: defaults < TOML file < `USHER_*` environment
//! (nested keys joined by `__`, e.g. `USHER_LIMITS__MAX_STANZA_SIZE`).
//! Everything is validated at start; a bad value names its key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::xmpp::jid::normalize_domain;
use crate::xmpp::sasl::HashAlg;

pub mod web_apps;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The XMPP domain this node serves.
    pub domain: String,
    /// Where client connections are accepted.
    pub c2s_addr: SocketAddr,
    /// Where the gRPC admin API listens (keep it private).
    pub admin_addr: SocketAddr,
    /// This node's name in logs and the audit trail; unset: the host name.
    pub node_name: Option<String>,
    /// The HTTP listener: `/metrics`, `/health`, `/ready`, invite pages, web
    /// registration.
    pub http_addr: SocketAddr,
    /// Behind a reverse proxy: count web registrations per the address in the
    /// last `X-Forwarded-For` entry (the proxy's own), not the proxy's address.
    pub http_trust_forwarded_for: bool,
    /// Bearer token of the admin API; unset: one is generated at first start
    /// in `DATA_DIR/admin.token`, readable by the owner only.
    pub admin_token: Option<String>,
    /// Accounts, the TLS certificate (when generated) and node secrets live here.
    pub data_dir: PathBuf,
    /// In-band registration (XEP-0077) at all.
    pub allow_registration: bool,
    /// Registration only with a valid invite.
    pub registration_invite_only: bool,
    /// Log filter (`info`, `usher=debug`, …).
    pub log: String,
    /// PBKDF2 iteration count for newly stored SCRAM keys.
    pub scram_iterations: u32,
    /// SCRAM hashes whose keys are stored for new passwords, and offered as
    /// mechanisms: `sha-1`, `sha-256` (each costs one PBKDF2 run per password).
    #[serde(deserialize_with = "list_or_csv")]
    pub scram_hashes: Vec<String>,
    pub min_password_length: usize,
    /// Usernames nobody may register.
    pub reserved_usernames: Vec<String>,
    /// How long a new invite stays valid unless the creator says otherwise.
    #[serde(with = "humantime_serde")]
    pub invite_expiry: Duration,
    /// The same for password-reset invites.
    #[serde(with = "humantime_serde")]
    pub reset_invite_expiry: Duration,
    /// Base of the invite landing pages (`BASE/invite/TOKEN`); unset: no landing URL.
    pub web_base_url: Option<String>,
    /// Clients recommended on invite pages: `[[web_apps]] name, platforms
    /// (android, ios, macos, windows, linux), url`; unset: a built-in list.
    pub web_apps: Vec<web_apps::App>,
    /// Bare JIDs of administrators (besides accounts holding the `admin` role).
    pub admins: Vec<String>,
    /// Whether any local user may create contact invites that also allow registration.
    pub allow_user_invites: bool,
    /// Live invites a non-admin user may hold at once (0: none at all).
    pub max_invites_per_user: u32,
    /// Higher quotas by role, e.g. `{ trusted = 50 }`; the largest applies.
    pub role_invite_quotas: std::collections::BTreeMap<String, u32>,
    pub invite_tree: InviteTreeConfig,
    /// How long the audit trail keeps invite events.
    #[serde(with = "humantime_serde")]
    pub audit_retention: Duration,
    pub tls: TlsConfig,
    pub limits: Limits,
    pub ledger: LedgerConfig,
    pub cluster: ClusterConfig,
    /// Accounts in ScyllaDB (or another CQL database) when `scylla.nodes` is set.
    pub scylla: ScyllaConfig,
}

/// CQL consistency levels usher uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CqlConsistency {
    One,
    Quorum,
    LocalQuorum,
    EachQuorum,
    All,
}

impl From<CqlConsistency> for scylla::frame::types::Consistency {
    fn from(c: CqlConsistency) -> Self {
        use scylla::frame::types::Consistency as C;
        match c {
            CqlConsistency::One => C::One,
            CqlConsistency::Quorum => C::Quorum,
            CqlConsistency::LocalQuorum => C::LocalQuorum,
            CqlConsistency::EachQuorum => C::EachQuorum,
            CqlConsistency::All => C::All,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CqlSerialConsistency {
    Serial,
    LocalSerial,
}

impl From<CqlSerialConsistency> for scylla::frame::types::SerialConsistency {
    fn from(c: CqlSerialConsistency) -> Self {
        use scylla::frame::types::SerialConsistency as S;
        match c {
            CqlSerialConsistency::Serial => S::Serial,
            CqlSerialConsistency::LocalSerial => S::LocalSerial,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScyllaConfig {
    /// Contact points (`host:port`); in the environment a comma-separated list.
    #[serde(deserialize_with = "list_or_csv")]
    pub nodes: Vec<String>,
    pub keyspace: String,
    /// With it, the keyspace uses NetworkTopologyStrategy in this datacenter.
    pub local_datacenter: Option<String>,
    /// Replicas per row when usher creates the keyspace (use 3 in production).
    pub replication_factor: u32,
    pub username: Option<String>,
    pub password: Option<String>,
    pub consistency: CqlConsistency,
    pub serial_consistency: CqlSerialConsistency,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// TLS to the database, with certificate verification always on.
    pub tls: bool,
    /// PEM CA bundle the database's certificate must chain to; unset: the
    /// public web PKI roots.
    pub tls_ca_file: Option<PathBuf>,
    /// Name the certificate must carry; unset: the IP address of each node
    /// (as the driver connects by address).
    pub tls_server_name: Option<String>,
}

impl Default for ScyllaConfig {
    fn default() -> Self {
        ScyllaConfig {
            nodes: Vec::new(),
            keyspace: "usher".into(),
            local_datacenter: None,
            replication_factor: 1,
            username: None,
            password: None,
            consistency: CqlConsistency::LocalQuorum,
            serial_consistency: CqlSerialConsistency::LocalSerial,
            request_timeout: Duration::from_secs(5),
            tls: false,
            tls_ca_file: None,
            tls_server_name: None,
        }
    }
}

/// Accepts `["a:9042", "b:9042"]` (TOML) or `"a:9042,b:9042"` (environment).
fn list_or_csv<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<String>),
        Csv(String),
    }
    Ok(match Either::deserialize(d)? {
        Either::List(v) => v,
        Either::Csv(s) => s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

/// Membership of a cluster of nodes sharing the ledger (and a CQL database).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's id, unique and stable in the cluster; 0: a standalone node.
    pub node_id: u64,
    /// Where the node-to-node gRPC API listens.
    pub peer_addr: SocketAddr,
    /// `host:port` other nodes use to reach `peer_addr`; unset: `peer_addr`.
    pub advertise: Option<String>,
    /// Shared secret every peer call carries (at least 16 characters).
    pub secret: Option<String>,
    /// Create the cluster with this node as its first member.
    pub bootstrap: bool,
    /// `host:port` of a member's peer API to join through, on first start.
    pub join: Option<String>,
    /// Voters per ledger shard (the rest of the members follow as learners).
    pub replication: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node_id: 0,
            peer_addr: SocketAddr::from(([127, 0, 0, 1], 5270)),
            advertise: None,
            secret: None,
            bootstrap: false,
            join: None,
            replication: 3,
        }
    }
}

impl ClusterConfig {
    pub fn enabled(&self) -> bool {
        self.node_id != 0
    }

    /// The address peers reach this node at.
    pub fn advertised(&self) -> String {
        self.advertise
            .clone()
            .unwrap_or_else(|| self.peer_addr.to_string())
    }
}

/// Limits on chains of users inviting users.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InviteTreeConfig {
    /// Invites one tree (everything descending from one operator invite) may hold.
    pub max_invites: u32,
    /// Users this many invite levels below an operator…
    pub fast_chain_depth: u32,
    /// …may not mint invites until their chain is this old (0s: no block).
    #[serde(with = "humantime_serde")]
    pub fast_chain_window: Duration,
}

impl Default for InviteTreeConfig {
    fn default() -> Self {
        InviteTreeConfig {
            max_invites: 1000,
            fast_chain_depth: 2,
            fast_chain_window: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerConfig {
    /// Group commands that arrive together into one Raft entry.
    pub batching: bool,
    /// Shards (Raft groups) the ledger is split into; fixed at creation.
    pub shards: u32,
    /// How long a registration may hold an invite use before the janitor
    /// decides it by looking for the account.
    #[serde(with = "humantime_serde")]
    pub reservation_lease: Duration,
    /// How often the janitor looks for expired leases.
    #[serde(with = "humantime_serde")]
    pub janitor_interval: Duration,
    /// Raft entries between snapshots of a shard. A snapshot copies the shard's
    /// whole state, so with many pending invites a larger value trades a
    /// longer log (disk, restart replay) for less CPU. openraft's default of
    /// 5000 doubled the CPU per registration with a million invites pending.
    pub snapshot_every: u64,
    /// Silence from a shard's leader after which a follower starts an
    /// election (a random time between this and twice this; heartbeats go
    /// every quarter of it). Shorter fails over faster; peers far apart (a
    /// round trip of a good fraction of it) need it longer. Every member
    /// should use the same value.
    #[serde(with = "humantime_serde")]
    pub election_timeout: Duration,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            batching: true,
            shards: 8,
            reservation_lease: Duration::from_secs(30),
            janitor_interval: Duration::from_secs(2),
            snapshot_every: 50_000,
            election_timeout: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain; with `key`. When neither is set, a self-signed
    /// certificate for the domain is generated in the data dir.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest stanza in bytes; larger ones end the stream.
    pub max_stanza_size: usize,
    pub max_depth: usize,
    /// How long a stream may stay silent before it authenticates.
    #[serde(with = "humantime_serde")]
    pub pre_auth_idle_timeout: Duration,
    pub max_connections: usize,
    /// Registration attempts per IP address per minute; 0 turns the limit off.
    pub registrations_per_ip_per_minute: u32,
    /// Failed SASL attempts on one stream before it is closed.
    pub max_auth_failures: u32,
    /// Registrations hashing or waiting to hash at once, node-wide; beyond
    /// it registrations get a `wait` error so logins keep their share of the CPU.
    pub registration_queue: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            domain: "localhost".into(),
            c2s_addr: SocketAddr::from(([0, 0, 0, 0], 5222)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 5290)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 5280)),
            node_name: None,
            admin_token: None,
            data_dir: PathBuf::from("usher-data"),
            allow_registration: true,
            registration_invite_only: true,
            log: "info".into(),
            scram_iterations: 10_000,
            scram_hashes: vec!["sha-1".into(), "sha-256".into()],
            min_password_length: 8,
            reserved_usernames: [
                "abuse",
                "admin",
                "administrator",
                "hostmaster",
                "postmaster",
                "root",
                "security",
                "webmaster",
            ]
            .map(String::from)
            .to_vec(),
            invite_expiry: Duration::from_secs(7 * 24 * 3600),
            reset_invite_expiry: Duration::from_secs(24 * 3600),
            web_base_url: None,
            http_trust_forwarded_for: false,
            web_apps: web_apps::defaults(),
            admins: Vec::new(),
            allow_user_invites: false,
            max_invites_per_user: 10,
            role_invite_quotas: Default::default(),
            invite_tree: InviteTreeConfig::default(),
            audit_retention: Duration::from_secs(90 * 24 * 3600),
            tls: TlsConfig::default(),
            limits: Limits::default(),
            ledger: LedgerConfig::default(),
            cluster: ClusterConfig::default(),
            scylla: ScyllaConfig::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_stanza_size: 256 * 1024,
            max_depth: 32,
            pre_auth_idle_timeout: Duration::from_secs(60),
            max_connections: 50_000,
            registrations_per_ip_per_minute: 10,
            max_auth_failures: 5,
            registration_queue: 64,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Load(String),
    #[error("config key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

impl Config {
    /// `node_name` (the host name when unset, filled in by `load`).
    pub fn node_name(&self) -> String {
        self.node_name.clone().unwrap_or_else(|| "usher".into())
    }

    /// The configured SCRAM hashes (validated at start; unknown names skipped).
    pub fn scram_algs(&self) -> Vec<HashAlg> {
        self.scram_hashes
            .iter()
            .filter_map(|h| HashAlg::from_name(h))
            .collect()
    }

    /// Loads defaults, then `file` (if given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::Load(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        // USHER_FAILPOINTS is a test hook, not a setting (see failpoint.rs).
        figment = figment.merge(Env::prefixed("USHER_").ignore(&["failpoints"]).split("__"));
        let mut config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Load(describe_figment_error(e)))?;
        config.validate()?;
        config.domain = normalize_domain(&config.domain);
        if config.node_name.is_none() {
            config.node_name = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty());
        }
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let domain = normalize_domain(&self.domain);
        if domain.is_empty()
            || domain.len() > 253
            || domain
                .chars()
                .any(|c| c.is_whitespace() || matches!(c, '@' | '/' | ':' | '<' | '>' | '\'' | '"'))
        {
            return Err(invalid(
                "domain",
                format!("'{}' is not a valid domain", self.domain),
            ));
        }
        if self.scram_iterations < 4096 {
            return Err(invalid(
                "scram_iterations",
                "must be at least 4096 (RFC 7677)",
            ));
        }
        if self.scram_hashes.is_empty() {
            return Err(invalid(
                "scram_hashes",
                "name at least one of sha-1, sha-256",
            ));
        }
        if let Some(bad) = self
            .scram_hashes
            .iter()
            .find(|h| HashAlg::from_name(h).is_none())
        {
            return Err(invalid(
                "scram_hashes",
                format!("unknown hash '{bad}' (known: sha-1, sha-256)"),
            ));
        }
        if self.min_password_length > 1024 {
            return Err(invalid("min_password_length", "must be at most 1024"));
        }
        if self.admin_token.as_deref().is_some_and(|t| t.len() < 16) {
            return Err(invalid("admin_token", "must be at least 16 characters"));
        }
        if self.invite_expiry.is_zero() {
            return Err(invalid("invite_expiry", "must be more than zero"));
        }
        if self.reset_invite_expiry.is_zero() {
            return Err(invalid("reset_invite_expiry", "must be more than zero"));
        }
        if let Some(base) = &self.web_base_url {
            if !(base.starts_with("https://") || base.starts_with("http://")) {
                return Err(invalid(
                    "web_base_url",
                    "must start with https:// or http://",
                ));
            }
        }
        if self.ledger.election_timeout < Duration::from_millis(200)
            || self.ledger.election_timeout > Duration::from_secs(60)
        {
            return Err(invalid(
                "ledger.election_timeout",
                "must be between 200ms and 60s",
            ));
        }
        if self.ledger.snapshot_every < 100 {
            return Err(invalid("ledger.snapshot_every", "must be at least 100"));
        }
        if self.ledger.reservation_lease < Duration::from_millis(200) {
            return Err(invalid(
                "ledger.reservation_lease",
                "must be at least 200ms",
            ));
        }
        let c = &self.cluster;
        if c.enabled() {
            if c.secret.as_deref().is_none_or(|s| s.len() < 16) {
                return Err(invalid(
                    "cluster.secret",
                    "a cluster node needs a secret of at least 16 characters",
                ));
            }
            if c.bootstrap && c.join.is_some() {
                return Err(invalid(
                    "cluster.join",
                    "a node either bootstraps the cluster or joins it, not both",
                ));
            }
            if c.replication == 0 {
                return Err(invalid("cluster.replication", "must be at least 1"));
            }
            if self.scylla.nodes.is_empty() {
                return Err(invalid(
                    "scylla.nodes",
                    "the nodes of a cluster share their accounts: set the CQL database",
                ));
            }
        } else if c.bootstrap || c.join.is_some() {
            return Err(invalid(
                "cluster.node_id",
                "set a non-zero node id to bootstrap or join a cluster",
            ));
        }
        if !(1..=1024).contains(&self.ledger.shards) {
            return Err(invalid("ledger.shards", "must be between 1 and 1024"));
        }
        if self.ledger.janitor_interval.is_zero() {
            return Err(invalid("ledger.janitor_interval", "must be more than zero"));
        }
        let ks = &self.scylla.keyspace;
        if ks.is_empty()
            || ks.len() > 48
            || !ks.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(invalid(
                "scylla.keyspace",
                "use 1 to 48 letters, digits or underscores",
            ));
        }
        if !self.scylla.tls
            && (self.scylla.tls_ca_file.is_some() || self.scylla.tls_server_name.is_some())
        {
            let key = if self.scylla.tls_ca_file.is_some() {
                "scylla.tls_ca_file"
            } else {
                "scylla.tls_server_name"
            };
            return Err(invalid(key, "has no effect without `scylla.tls = true`"));
        }
        if let Some(path) = &self.scylla.tls_ca_file {
            if !path.is_file() {
                return Err(invalid(
                    "scylla.tls_ca_file",
                    format!("{} is not a readable file", path.display()),
                ));
            }
        }
        if self.scylla.replication_factor == 0 {
            return Err(invalid("scylla.replication_factor", "must be at least 1"));
        }
        if self.scylla.username.is_some() != self.scylla.password.is_some() {
            return Err(invalid(
                "scylla",
                "set both `scylla.username` and `scylla.password`, or neither",
            ));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(invalid(
                "tls",
                "set both `tls.cert` and `tls.key`, or neither",
            ));
        }
        let l = &self.limits;
        if l.max_stanza_size < 10_000 {
            return Err(invalid(
                "limits.max_stanza_size",
                "must be at least 10000 bytes (RFC 6120 §13.12)",
            ));
        }
        if !(4..=1000).contains(&l.max_depth) {
            return Err(invalid("limits.max_depth", "must be between 4 and 1000"));
        }
        if l.pre_auth_idle_timeout.is_zero() {
            return Err(invalid(
                "limits.pre_auth_idle_timeout",
                "must be more than zero",
            ));
        }
        if l.max_connections == 0 {
            return Err(invalid("limits.max_connections", "must be at least 1"));
        }
        if l.max_auth_failures == 0 {
            return Err(invalid("limits.max_auth_failures", "must be at least 1"));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log)
            .map_err(|e| invalid("log", format!("not a valid filter: {e}")))?;
        Ok(())
    }
}

/// One line per problem, naming the key in its config-file spelling and where the
/// value came from (file or environment).
fn describe_figment_error(e: figment::Error) -> String {
    e.into_iter()
        .map(|e| {
            let key = e.path.join(".").to_lowercase();
            let source = e
                .metadata
                .as_ref()
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            if key.is_empty() {
                format!("{}{source}", e.kind)
            } else {
                format!("config key `{key}`: {}{source}", e.kind)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
// figment's Jail closures return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.domain, "localhost");
        assert!(c.registration_invite_only);
    }

    #[test]
    fn file_then_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "usher.toml",
                "domain = 'Example.org'\n[limits]\nmax_depth = 8\npre_auth_idle_timeout = '5s'\n",
            )?;
            jail.set_env("USHER_LIMITS__MAX_DEPTH", "9");
            jail.set_env("USHER_ALLOW_REGISTRATION", "false");
            let c = Config::load(Some(Path::new("usher.toml"))).unwrap();
            assert_eq!(c.domain, "example.org");
            assert_eq!(c.limits.max_depth, 9);
            assert_eq!(c.limits.pre_auth_idle_timeout, Duration::from_secs(5));
            assert!(!c.allow_registration);
            Ok(())
        });
    }

    #[test]
    fn errors_name_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("USHER_LIMITS__MAX_DEPTH", "deep");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("limits.max_depth"), "{e}");
            jail.clear_env();
            jail.set_env("USHER_SCRAM_ITERATIONS", "10");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("scram_iterations"), "{e}");
            jail.clear_env();
            jail.set_env("USHER_SCYLLA__TLS_CA_FILE", "/etc/hostname");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(
                e.contains("scylla.tls_ca_file") && e.contains("scylla.tls = true"),
                "{e}"
            );
            jail.set_env("USHER_SCYLLA__TLS", "true");
            jail.set_env("USHER_SCYLLA__TLS_CA_FILE", "/no/such/ca.pem");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(
                e.contains("scylla.tls_ca_file") && e.contains("/no/such/ca.pem"),
                "{e}"
            );
            jail.clear_env();
            jail.set_env("USHER_SCRAM_HASHES", "sha-1,md5");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("scram_hashes") && e.contains("md5"), "{e}");
            jail.set_env("USHER_SCRAM_HASHES", "SHA-256, sha-1");
            let c = Config::load(None).unwrap();
            assert_eq!(c.scram_algs(), [HashAlg::Sha256, HashAlg::Sha1]);
            jail.clear_env();
            jail.set_env("USHER_LEDGER__SNAPSHOT_EVERY", "10");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("ledger.snapshot_every"), "{e}");
            jail.clear_env();
            jail.set_env("USHER_LEDGER__ELECTION_TIMEOUT", "50ms");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("ledger.election_timeout"), "{e}");
            jail.set_env("USHER_LEDGER__ELECTION_TIMEOUT", "3s");
            let c = Config::load(None).unwrap();
            assert_eq!(c.ledger.election_timeout, Duration::from_secs(3));
            jail.clear_env();
            jail.create_file("bad.toml", "domian = 'x'")?;
            let e = Config::load(Some(Path::new("bad.toml")))
                .unwrap_err()
                .to_string();
            assert!(e.contains("domian"), "{e}");
            Ok(())
        });
    }
}
