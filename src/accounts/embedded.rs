//! The single-node AccountStore: one redb file in the data dir. Every write is
//! its own serialisable transaction, committed durably before it returns; a
//! compare-and-set reads and writes in one.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{
    Account, AccountRow, AccountStore, OfflineMessage, Queued, RosterItem, Stamp, StoreError,
};
use crate::xmpp::jid::Username;

/// username → `AccountRow` (JSON, so fields can be added without migrations;
/// records of older versions decode as active rows without a stamp).
const ACCOUNTS: TableDefinition<&str, &[u8]> = TableDefinition::new("accounts");
/// "user\0contact" → roster item (JSON); the user's items share a key prefix.
const ROSTERS: TableDefinition<&str, &[u8]> = TableDefinition::new("rosters");

/// "user\0sequence" → offline message (JSON); the sequence is zero-padded so
/// that keys sort in the order the messages came.
const OFFLINE: TableDefinition<&str, &[u8]> = TableDefinition::new("offline");

fn roster_key(user: &str, jid: &str) -> String {
    format!("{user}\0{jid}")
}

fn offline_key(user: &str, seq: u64) -> String {
    format!("{user}\0{seq:020}")
}

/// The key range holding every row of `user` in a table keyed "user\0…".
fn user_range(user: &str) -> (String, String) {
    (format!("{user}\0"), format!("{user}\0\u{10FFFF}"))
}

#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn decode(username: &str, bytes: &[u8]) -> Result<AccountRow, StoreError> {
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
        txn.open_table(OFFLINE).map_err(unavailable)?;
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

    /// One write transaction: `decide` sees the current row and returns the
    /// row to write (given a fresh stamp), or `None` to leave it.
    async fn write_if<F>(&self, name: Username, decide: F) -> Result<Option<Stamp>, StoreError>
    where
        F: FnOnce(Option<AccountRow>) -> Option<AccountRow> + Send + 'static,
    {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let written = {
                let mut table = txn.open_table(ACCOUNTS).map_err(unavailable)?;
                let current = match table.get(name.as_str()).map_err(unavailable)? {
                    Some(bytes) => Some(decode(&name, bytes.value())?),
                    None => None,
                };
                match decide(current) {
                    Some(mut row) => {
                        let stamp = Stamp::fresh();
                        row.stamp = Some(stamp.clone());
                        let bytes = serde_json::to_vec(&row).map_err(unavailable)?;
                        table
                            .insert(name.as_str(), bytes.as_slice())
                            .map_err(unavailable)?;
                        Some(stamp)
                    }
                    None => None,
                }
            };
            match written {
                Some(_) => txn.commit().map_err(unavailable)?,
                None => txn.abort().map_err(unavailable)?,
            }
            Ok(written)
        })
        .await
    }
}

#[async_trait]
impl AccountStore for EmbeddedStore {
    async fn get(&self, username: &Username) -> Result<Option<Account>, StoreError> {
        Ok(self.row(username).await?.and_then(|r| r.active()))
    }

    async fn row(&self, username: &Username) -> Result<Option<AccountRow>, StoreError> {
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

    async fn insert_row(&self, row: AccountRow) -> Result<Option<Stamp>, StoreError> {
        self.write_if(row.username.clone(), move |current| {
            current.is_none().then_some(row)
        })
        .await
    }

    async fn replace_row(
        &self,
        expected: Option<&Stamp>,
        row: AccountRow,
    ) -> Result<Option<Stamp>, StoreError> {
        let expected = expected.cloned();
        self.write_if(row.username.clone(), move |current| {
            current.filter(|c| c.stamp == expected).map(|_| row)
        })
        .await
    }

    async fn delete_user_data(&self, username: &Username) -> Result<(), StoreError> {
        let name = username.as_str().to_owned();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            {
                let mut rosters = txn.open_table(ROSTERS).map_err(unavailable)?;
                let (from, to) = (roster_key(&name, ""), roster_key(&name, "\u{10FFFF}"));
                rosters
                    .retain_in(from.as_str()..to.as_str(), |_, _| false)
                    .map_err(unavailable)?;
            }
            {
                let mut offline = txn.open_table(OFFLINE).map_err(unavailable)?;
                let (from, to) = user_range(&name);
                offline
                    .retain_in(from.as_str()..to.as_str(), |_, _| false)
                    .map_err(unavailable)?;
            }
            txn.commit().map_err(unavailable)
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

    async fn push_offline(
        &self,
        username: &Username,
        message: OfflineMessage,
        max: usize,
    ) -> Result<Queued, StoreError> {
        let name = username.as_str().to_owned();
        self.blocking(move |db| {
            let bytes = serde_json::to_vec(&message).map_err(unavailable)?;
            let txn = db.begin_write().map_err(unavailable)?;
            let queued = {
                let mut table = txn.open_table(OFFLINE).map_err(unavailable)?;
                let (from, to) = user_range(&name);
                let mut held = 0usize;
                let mut last = None;
                for row in table
                    .range(from.as_str()..to.as_str())
                    .map_err(unavailable)?
                {
                    let (key, _) = row.map_err(unavailable)?;
                    held += 1;
                    last = Some(key.value().to_owned());
                }
                if held >= max {
                    Queued::Full
                } else {
                    let next = last
                        .and_then(|k| k.rsplit('\0').next().and_then(|s| s.parse::<u64>().ok()))
                        .map_or(0, |seq| seq + 1);
                    table
                        .insert(offline_key(&name, next).as_str(), bytes.as_slice())
                        .map_err(unavailable)?;
                    Queued::Stored
                }
            };
            match queued {
                Queued::Stored => txn.commit().map_err(unavailable)?,
                Queued::Full => txn.abort().map_err(unavailable)?,
            }
            Ok(queued)
        })
        .await
    }

    async fn take_offline(&self, username: &Username) -> Result<Vec<OfflineMessage>, StoreError> {
        let name = username.as_str().to_owned();
        self.blocking(move |db| {
            // One write transaction reads and removes: a second taker waits
            // for it and finds the queue empty.
            let txn = db.begin_write().map_err(unavailable)?;
            let mut messages = Vec::new();
            {
                let mut table = txn.open_table(OFFLINE).map_err(unavailable)?;
                let (from, to) = user_range(&name);
                for row in table
                    .range(from.as_str()..to.as_str())
                    .map_err(unavailable)?
                {
                    let (_, bytes) = row.map_err(unavailable)?;
                    messages.push(serde_json::from_slice(bytes.value()).map_err(|e| {
                        StoreError::Corrupt {
                            username: name.clone(),
                            reason: format!("offline message: {e}"),
                        }
                    })?);
                }
                if !messages.is_empty() {
                    table
                        .retain_in(from.as_str()..to.as_str(), |_, _| false)
                        .map_err(unavailable)?;
                }
            }
            if messages.is_empty() {
                txn.abort().map_err(unavailable)?;
            } else {
                txn.commit().map_err(unavailable)?;
            }
            Ok(messages)
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
    use crate::accounts::{Credentials, RowKind};

    fn account(name: &str) -> AccountRow {
        AccountRow::new_account(Account {
            username: Username::parse(name).unwrap(),
            credentials: Credentials::derive("password1", 4096, &crate::xmpp::sasl::HashAlg::ALL),
            created_at: 1,
            roles: vec![],
            reservation: Some("r1".into()),
            generation: Some("g1".into()),
        })
    }

    // The AccountStore contract (accounts/contract.rs) covers the operations;
    // this checks what only the embedded store has: a file that survives
    // reopening, and records of older versions.
    #[tokio::test]
    async fn rows_survive_reopening_and_old_records_read_as_active_accounts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts.redb");
        let alice = Username::parse("alice").unwrap();
        let stamp = {
            let store = EmbeddedStore::open(&path).unwrap();
            let stamp = store.insert_row(account("alice")).await.unwrap().unwrap();
            assert!(store.insert_row(account("alice")).await.unwrap().is_none());
            stamp
        };
        let store = EmbeddedStore::open(&path).unwrap();
        let got = store.row(&alice).await.unwrap().unwrap();
        assert_eq!(got.stamp.as_ref(), Some(&stamp));
        assert_eq!(got.reservation.as_deref(), Some("r1"));
        // A record as an older version wrote it: no state, no stamp.
        let legacy = serde_json::json!({
            "username": "old",
            "credentials": got.credentials,
            "created_at": 5,
            "roles": ["admin"],
            "reservation": null,
        });
        let db = store.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_write().unwrap();
            txn.open_table(ACCOUNTS)
                .unwrap()
                .insert("old", serde_json::to_vec(&legacy).unwrap().as_slice())
                .unwrap();
            txn.commit().unwrap();
        })
        .await
        .unwrap();
        let old = Username::parse("old").unwrap();
        let row = store.row(&old).await.unwrap().unwrap();
        assert_eq!((row.state, row.stamp.clone()), (RowKind::Active, None));
        assert_eq!(store.get(&old).await.unwrap().unwrap().roles, ["admin"]);
        // Its missing stamp is what a compare-and-set must name.
        let mut gone = row.clone();
        gone.state = RowKind::Deleted;
        assert!(store
            .replace_row(Some(&stamp), gone.clone())
            .await
            .unwrap()
            .is_none());
        assert!(store.replace_row(None, gone).await.unwrap().is_some());
        assert!(store.get(&old).await.unwrap().is_none());
    }
}
