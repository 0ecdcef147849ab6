//! The single-node AccountStore: one redb file in the data dir. Every write is
//! its own serialisable transaction, committed durably before it returns.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Account, AccountStore, CreateOutcome, Credentials, RosterItem, StoreError};
use crate::invites::ReservationId;
use crate::xmpp::jid::Username;

/// username → account record (JSON, so fields can be added without migrations).
const ACCOUNTS: TableDefinition<&str, &[u8]> = TableDefinition::new("accounts");
/// "user\0contact" → roster item (JSON); the user's items share a key prefix.
const ROSTERS: TableDefinition<&str, &[u8]> = TableDefinition::new("rosters");

fn roster_key(user: &str, jid: &str) -> String {
    format!("{user}\0{jid}")
}

#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn decode(username: &str, bytes: &[u8]) -> Result<Account, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        username: username.to_owned(),
        reason: e.to_string(),
    })
}

impl EmbeddedStore {
    pub fn open(path: &Path) -> Result<EmbeddedStore, StoreError> {
        let db = Database::create(path)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
        // Create the table up front so that reads never see it missing.
        let txn = db.begin_write().map_err(unavailable)?;
        txn.open_table(ACCOUNTS).map_err(unavailable)?;
        txn.open_table(ROSTERS).map_err(unavailable)?;
        txn.commit().map_err(unavailable)?;
        Ok(EmbeddedStore { db: Arc::new(db) })
    }

    /// Runs a blocking redb operation off the async threads.
    async fn blocking<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || op(&db))
            .await
            .map_err(|e| StoreError::Unavailable(format!("storage task failed: {e}")))?
    }

    /// Read-modify-write of one record inside a single write transaction.
    async fn update<F>(&self, username: &Username, change: F) -> Result<bool, StoreError>
    where
        F: FnOnce(Account) -> Account + Send + 'static,
    {
        let name = username.as_str().to_owned();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let changed = {
                let mut table = txn.open_table(ACCOUNTS).map_err(unavailable)?;
                let current = match table.get(name.as_str()).map_err(unavailable)? {
                    Some(bytes) => Some(decode(&name, bytes.value())?),
                    None => None,
                };
                match current {
                    Some(account) => {
                        let bytes = serde_json::to_vec(&change(account)).map_err(unavailable)?;
                        table
                            .insert(name.as_str(), bytes.as_slice())
                            .map_err(unavailable)?;
                        true
                    }
                    None => false,
                }
            };
            txn.commit().map_err(unavailable)?;
            Ok(changed)
        })
        .await
    }
}

#[async_trait]
impl AccountStore for EmbeddedStore {
    async fn create(&self, account: Account) -> Result<CreateOutcome, StoreError> {
        self.blocking(move |db| {
            let bytes = serde_json::to_vec(&account).map_err(unavailable)?;
            let txn = db.begin_write().map_err(unavailable)?;
            let outcome = {
                let mut table = txn.open_table(ACCOUNTS).map_err(unavailable)?;
                if table
                    .get(account.username.as_str())
                    .map_err(unavailable)?
                    .is_some()
                {
                    CreateOutcome::AlreadyExists
                } else {
                    table
                        .insert(account.username.as_str(), bytes.as_slice())
                        .map_err(unavailable)?;
                    CreateOutcome::Created
                }
            };
            match outcome {
                CreateOutcome::Created => txn.commit().map_err(unavailable)?,
                CreateOutcome::AlreadyExists => txn.abort().map_err(unavailable)?,
            }
            Ok(outcome)
        })
        .await
    }

    async fn get(&self, username: &Username) -> Result<Option<Account>, StoreError> {
        let name = username.as_str().to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(ACCOUNTS).map_err(unavailable)?;
            match table.get(name.as_str()).map_err(unavailable)? {
                Some(bytes) => decode(&name, bytes.value()).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    async fn set_credentials(
        &self,
        username: &Username,
        credentials: Credentials,
        reservation: Option<ReservationId>,
    ) -> Result<bool, StoreError> {
        self.update(username, move |mut account| {
            account.credentials = credentials;
            if reservation.is_some() {
                account.reservation = reservation;
            }
            account
        })
        .await
    }

    async fn delete(&self, username: &Username) -> Result<bool, StoreError> {
        let name = username.as_str().to_owned();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let existed = {
                let mut table = txn.open_table(ACCOUNTS).map_err(unavailable)?;
                let removed = table.remove(name.as_str()).map_err(unavailable)?;
                removed.is_some()
            };
            {
                let mut rosters = txn.open_table(ROSTERS).map_err(unavailable)?;
                let (from, to) = (roster_key(&name, ""), roster_key(&name, "\u{10FFFF}"));
                rosters
                    .retain_in(from.as_str()..to.as_str(), |_, _| false)
                    .map_err(unavailable)?;
            }
            txn.commit().map_err(unavailable)?;
            Ok(existed)
        })
        .await
    }

    async fn roster(&self, username: &Username) -> Result<Vec<RosterItem>, StoreError> {
        let name = username.as_str().to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(ROSTERS).map_err(unavailable)?;
            let (from, to) = (roster_key(&name, ""), roster_key(&name, "\u{10FFFF}"));
            let mut items = Vec::new();
            for row in table
                .range(from.as_str()..to.as_str())
                .map_err(unavailable)?
            {
                let (_, bytes) = row.map_err(unavailable)?;
                items.push(serde_json::from_slice(bytes.value()).map_err(|e| {
                    StoreError::Corrupt {
                        username: name.clone(),
                        reason: format!("roster: {e}"),
                    }
                })?);
            }
            Ok(items)
        })
        .await
    }

    async fn roster_item(
        &self,
        username: &Username,
        jid: &str,
    ) -> Result<Option<RosterItem>, StoreError> {
        let key = roster_key(username.as_str(), jid);
        let name = username.as_str().to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(ROSTERS).map_err(unavailable)?;
            match table.get(key.as_str()).map_err(unavailable)? {
                Some(bytes) => serde_json::from_slice(bytes.value())
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt {
                        username: name,
                        reason: format!("roster: {e}"),
                    }),
                None => Ok(None),
            }
        })
        .await
    }

    async fn put_roster_item(
        &self,
        username: &Username,
        item: RosterItem,
    ) -> Result<(), StoreError> {
        let key = roster_key(username.as_str(), &item.jid);
        self.blocking(move |db| {
            let bytes = serde_json::to_vec(&item).map_err(unavailable)?;
            let txn = db.begin_write().map_err(unavailable)?;
            txn.open_table(ROSTERS)
                .map_err(unavailable)?
                .insert(key.as_str(), bytes.as_slice())
                .map_err(unavailable)?;
            txn.commit().map_err(unavailable)
        })
        .await
    }

    async fn remove_roster_item(&self, username: &Username, jid: &str) -> Result<bool, StoreError> {
        let key = roster_key(username.as_str(), jid);
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let existed = txn
                .open_table(ROSTERS)
                .map_err(unavailable)?
                .remove(key.as_str())
                .map_err(unavailable)?
                .is_some();
            txn.commit().map_err(unavailable)?;
            Ok(existed)
        })
        .await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // Every commit above is durable (redb's default durability) before it
        // returns, so there is nothing buffered to write out.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(name: &str) -> Account {
        Account {
            username: Username::parse(name).unwrap(),
            credentials: Credentials::derive("password1", 4096, &crate::xmpp::sasl::HashAlg::ALL),
            created_at: 1,
            roles: vec![],
            reservation: None,
        }
    }

    // The AccountStore contract (accounts/contract.rs) covers the operations;
    // this checks what only the embedded store has: a file that survives reopening.
    #[tokio::test]
    async fn create_get_update_delete_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts.redb");
        let alice = Username::parse("alice").unwrap();
        {
            let store = EmbeddedStore::open(&path).unwrap();
            assert_eq!(
                store.create(account("alice")).await.unwrap(),
                CreateOutcome::Created
            );
            assert_eq!(
                store.create(account("alice")).await.unwrap(),
                CreateOutcome::AlreadyExists
            );
            let creds = Credentials::derive("new-password", 4096, &crate::xmpp::sasl::HashAlg::ALL);
            assert!(store
                .set_credentials(&alice, creds.clone(), Some("r1".into()))
                .await
                .unwrap());
            let bob = Username::parse("bob").unwrap();
            assert!(!store
                .set_credentials(&bob, creds.clone(), None)
                .await
                .unwrap());
            assert!(!store.delete(&bob).await.unwrap());
        }
        let store = EmbeddedStore::open(&path).unwrap();
        let got = store.get(&alice).await.unwrap().unwrap();
        assert_eq!(got.reservation.as_deref(), Some("r1"));
        assert!(got
            .credentials
            .keys(crate::xmpp::sasl::HashAlg::Sha256)
            .unwrap()
            .verify_password(crate::xmpp::sasl::HashAlg::Sha256, "new-password"));
        assert!(store.delete(&alice).await.unwrap());
        assert!(store.get(&alice).await.unwrap().is_none());
    }
}
