//! An AccountStore that times every call of the store it wraps, so that
//! `usher_account_store_seconds` covers both backends alike.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::{
    Account, AccountRow, AccountStore, OfflineMessage, Queued, RosterItem, Stamp, StoreError,
};
use crate::metrics::STORE_SECONDS;
use crate::xmpp::jid::Username;

pub struct MeteredStore(pub Arc<dyn AccountStore>);

async fn timed<T>(
    op: &'static str,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let started = Instant::now();
    let result = call.await;
    let label = if result.is_ok() { "ok" } else { "error" };
    metrics::histogram!(STORE_SECONDS, "op" => op, "result" => label)
        .record(started.elapsed().as_secs_f64());
    result
}

#[async_trait]
impl AccountStore for MeteredStore {
    async fn get(&self, username: &Username) -> Result<Option<Account>, StoreError> {
        timed("get", self.0.get(username)).await
    }

    async fn row(&self, username: &Username) -> Result<Option<AccountRow>, StoreError> {
        timed("row", self.0.row(username)).await
    }

    async fn insert_row(&self, row: AccountRow) -> Result<Option<Stamp>, StoreError> {
        timed("insert", self.0.insert_row(row)).await
    }

    async fn replace_row(
        &self,
        expected: Option<&Stamp>,
        row: AccountRow,
    ) -> Result<Option<Stamp>, StoreError> {
        timed("replace", self.0.replace_row(expected, row)).await
    }

    async fn delete_user_data(&self, username: &Username) -> Result<(), StoreError> {
        timed("user_data_delete", self.0.delete_user_data(username)).await
    }

    async fn roster(&self, username: &Username) -> Result<Vec<RosterItem>, StoreError> {
        timed("roster_get", self.0.roster(username)).await
    }

    async fn roster_item(
        &self,
        username: &Username,
        jid: &str,
    ) -> Result<Option<RosterItem>, StoreError> {
        timed("roster_item", self.0.roster_item(username, jid)).await
    }

    async fn put_roster_item(
        &self,
        username: &Username,
        item: RosterItem,
    ) -> Result<(), StoreError> {
        timed("roster_set", self.0.put_roster_item(username, item)).await
    }

    async fn remove_roster_item(&self, username: &Username, jid: &str) -> Result<bool, StoreError> {
        timed("roster_remove", self.0.remove_roster_item(username, jid)).await
    }

    async fn push_offline(
        &self,
        username: &Username,
        message: OfflineMessage,
        max: usize,
    ) -> Result<Queued, StoreError> {
        timed("offline_push", self.0.push_offline(username, message, max)).await
    }

    async fn take_offline(&self, username: &Username) -> Result<Vec<OfflineMessage>, StoreError> {
        timed("offline_take", self.0.take_offline(username)).await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.0.flush().await
    }

    async fn check(&self) -> Result<(), StoreError> {
        timed("check", self.0.check()).await
    }
}
