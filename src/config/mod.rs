//! One typed configuration: defaults < TOML file < `USHER_*` environment
//! (nested keys joined by `__`, e.g. `USHER_LIMITS__MAX_STANZA_SIZE`; see
//! `env` for which variables count). Everything is validated at start, every
//! duration and count within stated bounds; a bad value names its key.

mod bounds;
mod cluster;
mod env;
mod ledger;
mod limits;
mod scylla;
pub mod web_apps;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::xmpp::jid::{Domain, Username};
use crate::xmpp::sasl::HashAlg;
use bounds::{count, duration, invalid, secs, DAY};

pub use cluster::ClusterConfig;
pub use ledger::LedgerConfig;
pub use limits::Limits;
pub use scylla::{CqlConsistency, CqlSerialConsistency, ScyllaConfig};

/// The longest an invite may live; invite creation refuses longer lifetimes,
/// so the default lifetimes must fit in it too.
pub const MAX_INVITE_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The XMPP domain this node serves.
    pub domain: Domain,
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
    /// TLS of the admin API; required when `admin_addr` is not loopback.
    pub admin_tls: AdminTlsConfig,
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
    #[serde(with = "hash_names")]
    pub scram_hashes: Vec<HashAlg>,
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
    /// How long a removed account's name cannot be registered again (an
    /// admin can lift it earlier: `usher account unquarantine`).
    #[serde(with = "humantime_serde")]
    pub account_quarantine: Duration,
    pub tls: TlsConfig,
    pub limits: Limits,
    pub ledger: LedgerConfig,
    pub cluster: ClusterConfig,
    /// Accounts in ScyllaDB (or another CQL database) when `scylla.nodes` is set.
    pub scylla: ScyllaConfig,
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

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain; with `key`. When neither is set, a self-signed
    /// certificate for the domain is generated in the data dir.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminTlsConfig {
    /// PEM certificate chain the admin API presents; with `key`. Unset: the
    /// admin API is plain gRPC, allowed on a loopback `admin_addr` only.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The CA the CLI checks that certificate with when it reads this config
    /// (the node itself does not use it).
    pub ca: Option<PathBuf>,
}

/// Accepts `["a:9042", "b:9042"]` (TOML) or `"a:9042,b:9042"` (environment).
pub(crate) fn list_or_csv<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
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

impl Default for Config {
    fn default() -> Self {
        Config {
            domain: Domain::localhost(),
            c2s_addr: SocketAddr::from(([0, 0, 0, 0], 5222)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 5290)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 5280)),
            node_name: None,
            admin_token: None,
            admin_tls: AdminTlsConfig::default(),
            data_dir: PathBuf::from("usher-data"),
            allow_registration: true,
            registration_invite_only: true,
            log: "info".into(),
            scram_iterations: 10_000,
            scram_hashes: HashAlg::ALL.to_vec(),
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
            account_quarantine: Duration::from_secs(30 * 24 * 3600),
            tls: TlsConfig::default(),
            limits: Limits::default(),
            ledger: LedgerConfig::default(),
            cluster: ClusterConfig::default(),
            scylla: ScyllaConfig::default(),
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

fn keys(defaults: &Config) -> Result<env::Keys, ConfigError> {
    serde_json::to_value(defaults)
        .map(|v| env::Keys::of(&v))
        .map_err(|e| ConfigError::Load(format!("listing the config keys: {e}")))
}

/// `scram_hashes`: a list (`["sha-1"]`) or a comma-separated string
/// (`sha-1,sha-256`), written back as names.
mod hash_names {
    use serde::{Deserializer, Serializer};

    use crate::xmpp::sasl::HashAlg;

    pub fn serialize<S: Serializer>(hashes: &[HashAlg], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(hashes.iter().map(|h| h.name()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<HashAlg>, D::Error> {
        super::list_or_csv(d)?
            .iter()
            .map(|name| {
                HashAlg::from_name(name).ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "unknown hash '{name}' (known: sha-1, sha-256)"
                    ))
                })
            })
            .collect()
    }
}

impl Config {
    /// Whether `admins` lists `user` on this server's domain. Such a name
    /// can only be registered with an operator's invite bound to it (the
    /// ledger checks), so nobody takes an administrator's rights by
    /// registering the name first or after it was removed.
    pub fn is_admin_name(&self, user: &Username) -> bool {
        let bare = format!("{user}@{}", self.domain);
        self.admins.iter().any(|a| a.eq_ignore_ascii_case(&bare))
    }

    /// `node_name` (the host name when unset, filled in by `load`).
    pub fn node_name(&self) -> String {
        self.node_name.clone().unwrap_or_else(|| "usher".into())
    }

    /// Loads defaults, then `file` (if given), then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_from(file, std::env::vars())
    }

    /// Like `load`, with the environment given: tests never read the ambient one.
    pub fn load_from(
        file: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let defaults = Config::default();
        let env = env::ConfigEnv::read(vars, &keys(&defaults)?).map_err(ConfigError::Load)?;
        let mut figment = Figment::from(Serialized::defaults(defaults));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::Load(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let mut config: Config = figment
            .merge(env)
            .extract()
            .map_err(|e| ConfigError::Load(describe_figment_error(e)))?;
        config.validate()?;
        if config.node_name.is_none() {
            config.node_name = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty());
        }
        Ok(config)
    }

    /// `USHER_*` variables of the process that are no setting (a script's own,
    /// say): `serve` names them in its log once logging is up.
    pub fn ignored_variables() -> Vec<String> {
        keys(&Config::default())
            .ok()
            .and_then(|keys| env::ConfigEnv::read(std::env::vars(), &keys).ok())
            .map(|env| env.ignored)
            .unwrap_or_default()
    }

    /// Checks every setting, and the ones that only make sense together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_identity()?;
        self.check_passwords()?;
        self.check_invites()?;
        self.ledger.check()?;
        self.cluster.check()?;
        if self.cluster.enabled() && self.scylla.nodes.is_empty() {
            return Err(invalid(
                "scylla.nodes",
                "the nodes of a cluster share their accounts: set the CQL database",
            ));
        }
        self.scylla.check()?;
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(invalid(
                "tls",
                "set both `tls.cert` and `tls.key`, or neither",
            ));
        }
        self.limits.check()?;
        tracing_subscriber::EnvFilter::try_new(&self.log)
            .map_err(|e| invalid("log", format!("not a valid filter: {e}")))?;
        Ok(())
    }

    fn check_identity(&self) -> Result<(), ConfigError> {
        let domain = self.domain.as_str();
        if domain.len() > 253 || domain.contains(':') {
            return Err(invalid(
                "domain",
                format!("'{domain}' is not a valid domain"),
            ));
        }
        if self.admin_token.as_deref().is_some_and(|t| t.len() < 16) {
            return Err(invalid("admin_token", "must be at least 16 characters"));
        }
        self.check_admin_tls()?;
        if let Some(base) = &self.web_base_url {
            if !(base.starts_with("https://") || base.starts_with("http://")) {
                return Err(invalid(
                    "web_base_url",
                    "must start with https:// or http://",
                ));
            }
        }
        Ok(())
    }

    /// Every admin call carries the token: beyond loopback only inside TLS.
    fn check_admin_tls(&self) -> Result<(), ConfigError> {
        let tls = &self.admin_tls;
        if tls.cert.is_some() != tls.key.is_some() {
            return Err(invalid(
                "admin_tls",
                "set both `admin_tls.cert` and `admin_tls.key`, or neither",
            ));
        }
        if tls.cert.is_none() && !self.admin_addr.ip().is_loopback() {
            return Err(invalid(
                "admin_addr",
                format!(
                    "{} is reachable beyond this host, where the admin token would cross \
                     in clear: set admin_tls.cert and admin_tls.key (`usher cluster certs \
                     --admin` makes a pair), or listen on a loopback address",
                    self.admin_addr
                ),
            ));
        }
        Ok(())
    }

    fn check_passwords(&self) -> Result<(), ConfigError> {
        // RFC 7677 asks for at least 4096; past a million a login costs seconds.
        count("scram_iterations", self.scram_iterations, 4096, 1_000_000)?;
        if self.scram_hashes.is_empty() {
            return Err(invalid(
                "scram_hashes",
                "name at least one of sha-1, sha-256",
            ));
        }
        count("min_password_length", self.min_password_length, 1, 1024)
    }

    fn check_invites(&self) -> Result<(), ConfigError> {
        duration(
            "invite_expiry",
            self.invite_expiry,
            secs(60),
            MAX_INVITE_LIFETIME,
        )?;
        duration(
            "reset_invite_expiry",
            self.reset_invite_expiry,
            secs(60),
            MAX_INVITE_LIFETIME,
        )?;
        duration("audit_retention", self.audit_retention, DAY, 3650 * DAY)?;
        duration(
            "account_quarantine",
            self.account_quarantine,
            Duration::ZERO,
            3650 * DAY,
        )?;
        count(
            "invite_tree.max_invites",
            self.invite_tree.max_invites,
            1,
            100_000_000,
        )?;
        count(
            "invite_tree.fast_chain_depth",
            self.invite_tree.fast_chain_depth,
            0,
            1000,
        )?;
        duration(
            "invite_tree.fast_chain_window",
            self.invite_tree.fast_chain_window,
            Duration::ZERO,
            MAX_INVITE_LIFETIME,
        )
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

    /// Loads with exactly these variables (never the ambient environment).
    fn load(file: Option<&str>, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        Config::load_from(file.map(Path::new), vars)
    }

    fn error(vars: &[(&str, &str)]) -> String {
        load(None, vars).unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.domain.as_str(), "localhost");
        assert!(c.registration_invite_only);
    }

    #[test]
    fn file_then_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "usher.toml",
                "domain = 'Example.org'\n[limits]\nmax_depth = 8\npre_auth_idle_timeout = '5s'\n",
            )?;
            let c = load(
                Some("usher.toml"),
                &[
                    ("USHER_LIMITS__MAX_DEPTH", "9"),
                    ("USHER_ALLOW_REGISTRATION", "false"),
                ],
            )
            .unwrap();
            assert_eq!(c.domain.as_str(), "example.org");
            assert_eq!(c.limits.max_depth, 9);
            assert_eq!(c.limits.pre_auth_idle_timeout, Duration::from_secs(5));
            assert!(!c.allow_registration);
            jail.create_file("bad.toml", "domian = 'x'")?;
            let e = load(Some("bad.toml"), &[]).unwrap_err().to_string();
            assert!(e.contains("domian"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn errors_name_the_key() {
        let e = error(&[("USHER_LIMITS__MAX_DEPTH", "deep")]);
        assert!(e.contains("limits.max_depth"), "{e}");
        let e = error(&[("USHER_SCRAM_ITERATIONS", "10")]);
        assert!(e.contains("scram_iterations"), "{e}");
        let e = error(&[("USHER_SCYLLA__TLS_CA_FILE", "/etc/hostname")]);
        assert!(
            e.contains("scylla.tls_ca_file") && e.contains("scylla.tls = true"),
            "{e}"
        );
        let e = error(&[
            ("USHER_SCYLLA__TLS", "true"),
            ("USHER_SCYLLA__TLS_CA_FILE", "/no/such/ca.pem"),
        ]);
        assert!(
            e.contains("scylla.tls_ca_file") && e.contains("/no/such/ca.pem"),
            "{e}"
        );
        let e = error(&[("USHER_SCRAM_HASHES", "sha-1,md5")]);
        assert!(e.contains("scram_hashes") && e.contains("md5"), "{e}");
        let c = load(None, &[("USHER_SCRAM_HASHES", "SHA-256, sha-1")]).unwrap();
        assert_eq!(c.scram_hashes, [HashAlg::Sha256, HashAlg::Sha1]);
        let e = error(&[("USHER_LEDGER__SNAPSHOT_EVERY", "10")]);
        assert!(e.contains("ledger.snapshot_every"), "{e}");
        let e = error(&[("USHER_LEDGER__ELECTION_TIMEOUT", "50ms")]);
        assert!(e.contains("ledger.election_timeout"), "{e}");
        let c = load(None, &[("USHER_LEDGER__ELECTION_TIMEOUT", "3s")]).unwrap();
        assert_eq!(c.ledger.election_timeout, Duration::from_secs(3));
        let e = error(&[("USHER_DOMAIN", "a b")]);
        assert!(e.contains("domain"), "{e}");
    }

    #[test]
    fn an_admin_api_beyond_loopback_needs_tls() {
        for addr in ["0.0.0.0:5290", "[::]:5290", "10.1.2.3:5290"] {
            let e = error(&[("USHER_ADMIN_ADDR", addr)]);
            assert!(
                e.contains("admin_addr") && e.contains("admin_tls.cert"),
                "{e}"
            );
        }
        for addr in ["127.0.0.1:5290", "127.0.0.3:5290", "[::1]:5290"] {
            load(None, &[("USHER_ADMIN_ADDR", addr)]).unwrap();
        }
        let tls = [
            ("USHER_ADMIN_ADDR", "0.0.0.0:5290"),
            ("USHER_ADMIN_TLS__CERT", "/etc/usher/admin.pem"),
            ("USHER_ADMIN_TLS__KEY", "/etc/usher/admin.key"),
        ];
        let c = load(None, &tls).unwrap();
        assert_eq!(c.admin_tls.key, Some(PathBuf::from("/etc/usher/admin.key")));
        let e = error(&tls[..2]);
        assert!(e.contains("admin_tls.key"), "{e}");
    }

    #[test]
    fn every_duration_and_count_is_bounded() {
        for (var, value, key) in [
            // Would wrap to about a millisecond if cast unchecked.
            (
                "USHER_LEDGER__RESERVATION_LEASE",
                "18446744073709551s 617ms",
                "ledger.reservation_lease",
            ),
            ("USHER_INVITE_EXPIRY", "400days", "invite_expiry"),
            ("USHER_RESET_INVITE_EXPIRY", "0s", "reset_invite_expiry"),
            ("USHER_SCRAM_ITERATIONS", "4000000000", "scram_iterations"),
            (
                "USHER_LIMITS__REGISTRATION_QUEUE",
                "0",
                "limits.registration_queue",
            ),
            (
                "USHER_LIMITS__MAX_CONNECTIONS",
                "0",
                "limits.max_connections",
            ),
            (
                "USHER_LIMITS__PRE_AUTH_IDLE_TIMEOUT",
                "30days",
                "limits.pre_auth_idle_timeout",
            ),
            (
                "USHER_LIMITS__PRE_AUTH_DEADLINE",
                "1s",
                "limits.pre_auth_deadline",
            ),
            (
                "USHER_LIMITS__PRE_AUTH_CONNECTIONS_PER_ADDRESS",
                "0",
                "limits.pre_auth_connections_per_address",
            ),
            (
                "USHER_LIMITS__HTTP_HEADER_TIMEOUT",
                "1h",
                "limits.http_header_timeout",
            ),
            (
                "USHER_LEDGER__JANITOR_INTERVAL",
                "0s",
                "ledger.janitor_interval",
            ),
            ("USHER_AUDIT_RETENTION", "100years", "audit_retention"),
            ("USHER_ACCOUNT_QUARANTINE", "100years", "account_quarantine"),
            (
                "USHER_SCYLLA__REQUEST_TIMEOUT",
                "1ms",
                "scylla.request_timeout",
            ),
        ] {
            let e = error(&[(var, value)]);
            assert!(e.contains(key), "{var}={value}: {e}");
        }
        assert!(load(None, &[("USHER_INVITE_EXPIRY", "365days")]).is_ok());
    }

    #[test]
    fn the_guessing_limits_are_bounded() {
        for (var, value) in [
            ("USHER_LIMITS__AUTH_FAILURES_PER_ADDRESS", "2000000"),
            ("USHER_LIMITS__AUTH_FAILURES_PER_ACCOUNT", "2000000"),
            ("USHER_LIMITS__AUTH_FAILURE_WINDOW", "0s"),
            ("USHER_LIMITS__AUTH_FAILURE_WINDOW", "2days"),
            ("USHER_LIMITS__LOGIN_QUEUE", "0"),
            ("USHER_LIMITS__MAX_PREAUTH_FAILURES", "0"),
            ("USHER_LIMITS__MAX_PREAUTH_FAILURES", "101"),
            ("USHER_LIMITS__PREAUTH_FAILURES_PER_ADDRESS", "2000000"),
            ("USHER_LIMITS__VALIDATED_INVITE_MAX_AGE", "0s"),
            ("USHER_LIMITS__VALIDATED_INVITE_MAX_AGE", "2days"),
        ] {
            let e = error(&[(var, value)]);
            let key = var
                .trim_start_matches("USHER_LIMITS__")
                .to_ascii_lowercase();
            assert!(e.contains(&format!("limits.{key}")), "{var}={value}: {e}");
        }
        let c = load(
            None,
            &[
                ("USHER_LIMITS__AUTH_FAILURES_PER_ADDRESS", "0"),
                ("USHER_LIMITS__VALIDATED_INVITE_MAX_AGE", "30s"),
            ],
        )
        .unwrap();
        assert_eq!(c.limits.auth_failures_per_address, 0);
        assert_eq!(c.limits.validated_invite_max_age, Duration::from_secs(30));
    }

    #[test]
    fn other_usher_variables_do_not_stop_the_node_but_typos_do() {
        let c = load(
            None,
            &[
                ("USHER_CACHE", "/tmp/x"),
                ("USHER_BIN", "/tmp/usher"),
                ("USHER_ARTIFACTS", "/tmp/a"),
                ("USHER_SOMETHING_ELSE", "1"),
                ("USHER_FAILPOINTS", "after-reserve"),
            ],
        )
        .unwrap();
        let defaults = Config {
            node_name: c.node_name.clone(),
            ..Config::default()
        };
        assert_eq!(c, defaults);
        let e = error(&[("USHER_LIMITS__MAX_STANZA_SIZ", "65536")]);
        assert!(e.contains("limits.max_stanza_size"), "{e}");
        let c = load(None, &[("USHER_ROLE_INVITE_QUOTAS__TRUSTED", "50")]).unwrap();
        assert_eq!(c.role_invite_quotas.get("trusted"), Some(&50));
    }
}
