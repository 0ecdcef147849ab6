//! `scylla.*`: accounts in ScyllaDB or any CQL database.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::bounds::{count, duration, invalid, millis, secs};
use super::{list_or_csv, ConfigError};

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

impl ScyllaConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        let ks = &self.keyspace;
        if ks.is_empty()
            || ks.len() > 48
            || !ks.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(invalid(
                "scylla.keyspace",
                "use 1 to 48 letters, digits or underscores",
            ));
        }
        if !self.tls && (self.tls_ca_file.is_some() || self.tls_server_name.is_some()) {
            let key = if self.tls_ca_file.is_some() {
                "scylla.tls_ca_file"
            } else {
                "scylla.tls_server_name"
            };
            return Err(invalid(key, "has no effect without `scylla.tls = true`"));
        }
        if let Some(path) = &self.tls_ca_file {
            if !path.is_file() {
                return Err(invalid(
                    "scylla.tls_ca_file",
                    format!("{} is not a readable file", path.display()),
                ));
            }
        }
        count("scylla.replication_factor", self.replication_factor, 1, 15)?;
        duration(
            "scylla.request_timeout",
            self.request_timeout,
            millis(100),
            secs(300),
        )?;
        if self.username.is_some() != self.password.is_some() {
            return Err(invalid(
                "scylla",
                "set both `scylla.username` and `scylla.password`, or neither",
            ));
        }
        Ok(())
    }
}
