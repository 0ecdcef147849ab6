//! Accounts: the `AccountStore` trait every backend implements, and the SCRAM
//! credentials stored in place of passwords.

#[cfg(test)]
mod contract;
pub mod cql_tls;
pub mod credentials;
pub mod embedded;
pub mod metered;
pub mod roster;
pub mod scylla;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use credentials::Credentials;
pub use roster::{RosterItem, Subscription};

use crate::invites::ReservationId;
use crate::xmpp::jid::Username;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub username: Username,
    pub credentials: Credentials,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    #[serde(default)]
    pub roles: Vec<String>,
    /// The invite reservation that created this account or last reset its
    /// password; lets the ledger tell a finished registration from a lost one.
    #[serde(default)]
    pub reservation: Option<ReservationId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    AlreadyExists,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("account storage is unavailable: {0}")]
    Unavailable(String),
    #[error("stored account record for '{username}' is unreadable: {reason}")]
    Corrupt { username: String, reason: String },
}

/// Where accounts live. Each method is one atomic operation; implementations
/// decide uniqueness (the embedded store by a write transaction, the CQL store by
/// lightweight transactions).
#[async_trait]
pub trait AccountStore: Send + Sync + 'static {
    /// Inserts the account unless the username is taken.
    async fn create(&self, account: Account) -> Result<CreateOutcome, StoreError>;

    async fn get(&self, username: &Username) -> Result<Option<Account>, StoreError>;

    /// Replaces the credentials of an existing account; false when there is none.
    /// A reset by invite records its reservation id on the account.
    async fn set_credentials(
        &self,
        username: &Username,
        credentials: Credentials,
        reservation: Option<ReservationId>,
    ) -> Result<bool, StoreError>;

    /// Removes the account and its roster; false when there was none.
    async fn delete(&self, username: &Username) -> Result<bool, StoreError>;

    /// The user's roster, including stored inbound requests.
    async fn roster(&self, username: &Username) -> Result<Vec<RosterItem>, StoreError>;

    async fn roster_item(
        &self,
        username: &Username,
        jid: &str,
    ) -> Result<Option<RosterItem>, StoreError>;

    /// Inserts or replaces the item for `item.jid`.
    async fn put_roster_item(
        &self,
        username: &Username,
        item: RosterItem,
    ) -> Result<(), StoreError>;

    /// Removes the item; false when there was none.
    async fn remove_roster_item(&self, username: &Username, jid: &str) -> Result<bool, StoreError>;

    /// Makes every completed write durable (called at shutdown).
    async fn flush(&self) -> Result<(), StoreError>;

    /// Whether the store answers now (for `/ready`).
    async fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
