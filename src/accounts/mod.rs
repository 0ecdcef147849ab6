//! Accounts: the `AccountStore` trait every backend implements, and the SCRAM
//! credentials stored in place of passwords.

#[cfg(test)]
mod contract;
pub mod cql_tls;
pub mod credentials;
pub mod embedded;
pub mod metered;
pub mod offline;
pub mod roster;
pub mod scylla;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use credentials::Credentials;
pub use offline::{OfflineMessage, Queued};
pub use roster::{roster_version, RosterItem, Subscription};

use crate::invites::ReservationId;
use crate::xmpp::jid::Username;

/// A real account, as login, rosters and administration see it.
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
    /// This account's incarnation under its name (see `AccountRow`).
    #[serde(default)]
    pub generation: Option<String>,
}

/// What a username's row is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowKind {
    /// A real account. Rows of older versions have no kind and are this.
    #[default]
    Active,
    /// A placeholder the janitor wrote so that a reservation whose account
    /// write had not landed can never land; the next registrant takes it over.
    Fenced,
    /// A removed account's tombstone; the name is quarantined until
    /// `quarantine_until`.
    Deleted,
}

impl RowKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RowKind::Active => "active",
            RowKind::Fenced => "fenced",
            RowKind::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Option<RowKind> {
        match s {
            "active" => Some(RowKind::Active),
            "fenced" => Some(RowKind::Fenced),
            "deleted" => Some(RowKind::Deleted),
            _ => None,
        }
    }
}

/// A row's compare-and-set token: every write sets a fresh one, so a write
/// conditioned on the stamp it read applies only if nothing changed since.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Stamp(String);

impl Stamp {
    pub fn fresh() -> Stamp {
        Stamp(crate::secrets::random_id(12))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for Stamp {
    fn from(s: String) -> Stamp {
        Stamp(s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    /// The name has a row (an account, a placeholder or a tombstone).
    AlreadyExists,
}

/// Everything stored under a username. Rows are never removed: a removed
/// account leaves a tombstone, and the fence (`fenced_until`) only grows, so
/// a write that was held up anywhere cannot land on a row fenced against it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRow {
    pub username: Username,
    #[serde(default)]
    pub state: RowKind,
    /// `None` on placeholders and tombstones.
    #[serde(default)]
    pub credentials: Option<Credentials>,
    /// Seconds since the Unix epoch.
    #[serde(default)]
    pub created_at: u64,
    #[serde(default)]
    pub roles: Vec<String>,
    /// The reservation that created the account or last reset it.
    #[serde(default)]
    pub reservation: Option<ReservationId>,
    /// A fresh random id for each account created under the name, so a reset
    /// invite only ever resets the account it was issued against.
    #[serde(default)]
    pub generation: Option<String>,
    /// Reservations made (ledger time, ms) at or before this can no longer
    /// write the row: the lease janitor's fence. Never decreases.
    #[serde(default)]
    pub fenced_until: u64,
    /// Deleted: the name may be registered again from then (unix seconds).
    #[serde(default)]
    pub quarantine_until: u64,
    /// `None` on rows written by older versions.
    #[serde(default)]
    pub stamp: Option<Stamp>,
}

impl AccountRow {
    /// The row of a new account.
    pub fn new_account(account: Account) -> AccountRow {
        AccountRow {
            username: account.username,
            state: RowKind::Active,
            credentials: Some(account.credentials),
            created_at: account.created_at,
            roles: account.roles,
            reservation: account.reservation,
            generation: account.generation,
            fenced_until: 0,
            quarantine_until: 0,
            stamp: None,
        }
    }

    /// A placeholder fencing the name against reservations made up to `until`.
    pub fn placeholder(username: Username, until: u64) -> AccountRow {
        AccountRow {
            username,
            state: RowKind::Fenced,
            credentials: None,
            created_at: 0,
            roles: Vec::new(),
            reservation: None,
            generation: None,
            fenced_until: until,
            quarantine_until: 0,
            stamp: None,
        }
    }

    /// The account, if the row is one.
    pub fn active(&self) -> Option<Account> {
        match (&self.state, &self.credentials) {
            (RowKind::Active, Some(credentials)) => Some(Account {
                username: self.username.clone(),
                credentials: credentials.clone(),
                created_at: self.created_at,
                roles: self.roles.clone(),
                reservation: self.reservation.clone(),
                generation: self.generation.clone(),
            }),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("account storage is unavailable: {0}")]
    Unavailable(String),
    #[error("stored account record for '{username}' is unreadable: {reason}")]
    Corrupt { username: String, reason: String },
}

/// Where accounts live. Each method is one atomic operation; implementations
/// decide uniqueness and compare-and-set (the embedded store by a write
/// transaction, the CQL store by lightweight transactions). Which writes are
/// made when is `registration`'s: the store only inserts and compares.
#[async_trait]
pub trait AccountStore: Send + Sync + 'static {
    /// The active account under `username`; placeholders and tombstones are
    /// no account.
    async fn get(&self, username: &Username) -> Result<Option<Account>, StoreError>;

    /// The row as it stands, read linearizably (a serial read on CQL), for
    /// decisions that a compare-and-set then makes stick.
    async fn row(&self, username: &Username) -> Result<Option<AccountRow>, StoreError>;

    /// Writes `row` (with a fresh stamp) unless the username has a row;
    /// the stamp when it did.
    async fn insert_row(&self, row: AccountRow) -> Result<Option<Stamp>, StoreError>;

    /// Inserts a new account unless the name has any row: for seeding
    /// (tests, load runs). Registration decides takeovers itself.
    async fn create(&self, account: Account) -> Result<CreateOutcome, StoreError> {
        Ok(
            match self.insert_row(AccountRow::new_account(account)).await? {
                Some(_) => CreateOutcome::Created,
                None => CreateOutcome::AlreadyExists,
            },
        )
    }

    /// Replaces the row (with a fresh stamp) if its stamp is still
    /// `expected`; the new stamp when it did.
    async fn replace_row(
        &self,
        expected: Option<&Stamp>,
        row: AccountRow,
    ) -> Result<Option<Stamp>, StoreError>;

    /// Removes the roster of `username` and the messages kept for them:
    /// what a removed account leaves besides its tombstone.
    async fn delete_user_data(&self, username: &Username) -> Result<(), StoreError>;

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

    /// Appends `message` to the user's offline queue unless it holds `max`
    /// messages already.
    async fn push_offline(
        &self,
        username: &Username,
        message: OfflineMessage,
        max: usize,
    ) -> Result<Queued, StoreError>;

    /// Removes and returns the user's offline messages, oldest first. Each
    /// message goes to one caller only, however many take at once.
    async fn take_offline(&self, username: &Username) -> Result<Vec<OfflineMessage>, StoreError>;

    /// Makes every completed write durable (called at shutdown).
    async fn flush(&self) -> Result<(), StoreError>;

    /// Whether the store answers now (for `/ready`).
    async fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
