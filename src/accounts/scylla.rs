//! The AccountStore on ScyllaDB (or any CQL database: the tests use Apache
//! Cassandra). Every node of a cluster shares it. Uniqueness comes from
//! lightweight transactions; `[applied]` is read by column name, since ScyllaDB
//! and Cassandra return different columns beside it.

use ::scylla::client::session::Session;
use ::scylla::client::session_builder::SessionBuilder;
use ::scylla::response::query_result::QueryResult;
use ::scylla::statement::prepared::PreparedStatement;
use ::scylla::value::{CqlValue, Row};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::{Account, AccountStore, CreateOutcome, Credentials, RosterItem, StoreError};
use crate::config::ScyllaConfig;
use crate::invites::ReservationId;
use crate::xmpp::jid::Username;

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn corrupt(username: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        username: username.to_owned(),
        reason: e.to_string(),
    }
}

struct Statements {
    insert_account: PreparedStatement,
    select_account: PreparedStatement,
    update_credentials: PreparedStatement,
    update_credentials_reservation: PreparedStatement,
    delete_account: PreparedStatement,
    delete_roster: PreparedStatement,
    select_roster: PreparedStatement,
    select_roster_item: PreparedStatement,
    upsert_roster_item: PreparedStatement,
    delete_roster_item: PreparedStatement,
}

pub struct ScyllaStore {
    session: Session,
    st: Statements,
    /// Whether the last request got an answer, so that losing and regaining
    /// the database is logged once each, not per request.
    reachable: AtomicBool,
}

impl ScyllaStore {
    /// Connects, creates the keyspace and tables if needed, and prepares
    /// every statement.
    pub async fn connect(config: &ScyllaConfig) -> Result<ScyllaStore, StoreError> {
        let mut builder = SessionBuilder::new()
            .known_nodes(&config.nodes)
            .connection_timeout(config.request_timeout);
        if let (Some(user), Some(password)) = (&config.username, &config.password) {
            builder = builder.user(user, password);
        }
        if let Some(tls) = super::cql_tls::client_config(config)? {
            builder = builder.tls_context(Some(tls));
        }
        let session = builder.build().await.map_err(unavailable)?;
        let ks = &config.keyspace;
        let replication = match &config.local_datacenter {
            Some(dc) => format!(
                "{{'class': 'NetworkTopologyStrategy', '{dc}': {}}}",
                config.replication_factor
            ),
            None => format!(
                "{{'class': 'SimpleStrategy', 'replication_factor': {}}}",
                config.replication_factor
            ),
        };
        for ddl in [
            format!("CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {replication}"),
            format!(
                "CREATE TABLE IF NOT EXISTS {ks}.accounts (username text PRIMARY KEY, \
                 credentials text, roles list<text>, created_at bigint, reservation text)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {ks}.rosters (username text, contact text, item text, \
                 PRIMARY KEY (username, contact))"
            ),
        ] {
            session.query_unpaged(ddl, ()).await.map_err(unavailable)?;
        }
        session
            .await_schema_agreement()
            .await
            .map_err(unavailable)?;

        let prepare = |cql: String, lwt: bool| {
            let session = &session;
            async move {
                let mut p = session.prepare(cql).await.map_err(unavailable)?;
                p.set_consistency(config.consistency.into());
                if lwt {
                    p.set_serial_consistency(Some(config.serial_consistency.into()));
                }
                p.set_request_timeout(Some(config.request_timeout));
                Ok::<_, StoreError>(p)
            }
        };
        let st = Statements {
            insert_account: prepare(
                format!("INSERT INTO {ks}.accounts (username, credentials, roles, created_at, reservation) VALUES (?, ?, ?, ?, ?) IF NOT EXISTS"),
                true,
            )
            .await?,
            select_account: prepare(
                format!("SELECT credentials, roles, created_at, reservation FROM {ks}.accounts WHERE username = ?"),
                false,
            )
            .await?,
            update_credentials: prepare(
                format!("UPDATE {ks}.accounts SET credentials = ? WHERE username = ? IF EXISTS"),
                true,
            )
            .await?,
            update_credentials_reservation: prepare(
                format!("UPDATE {ks}.accounts SET credentials = ?, reservation = ? WHERE username = ? IF EXISTS"),
                true,
            )
            .await?,
            delete_account: prepare(format!("DELETE FROM {ks}.accounts WHERE username = ? IF EXISTS"), true).await?,
            delete_roster: prepare(format!("DELETE FROM {ks}.rosters WHERE username = ?"), false).await?,
            select_roster: prepare(format!("SELECT item FROM {ks}.rosters WHERE username = ?"), false).await?,
            select_roster_item: prepare(
                format!("SELECT item FROM {ks}.rosters WHERE username = ? AND contact = ?"),
                false,
            )
            .await?,
            upsert_roster_item: prepare(
                format!("INSERT INTO {ks}.rosters (username, contact, item) VALUES (?, ?, ?)"),
                false,
            )
            .await?,
            delete_roster_item: prepare(
                format!("DELETE FROM {ks}.rosters WHERE username = ? AND contact = ? IF EXISTS"),
                true,
            )
            .await?,
        };
        Ok(ScyllaStore {
            session,
            st,
            reachable: AtomicBool::new(true),
        })
    }

    /// Connects, retrying with backoff while the database cannot be reached
    /// (a node may start before its database). Gives up only on `give_up`.
    pub async fn connect_patiently(
        config: &ScyllaConfig,
        give_up: impl std::future::Future<Output = ()>,
    ) -> Result<ScyllaStore, StoreError> {
        tokio::pin!(give_up);
        // A TLS setup that cannot work is the operator's to fix, not a
        // database to wait for.
        super::cql_tls::client_config(config)?;
        let mut delay = Duration::from_millis(500);
        loop {
            match Self::connect(config).await {
                Ok(store) => return Ok(store),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?delay, "waiting for the CQL database");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = &mut give_up => return Err(e),
                    }
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Runs a prepared statement, noting when the database goes away or comes back.
    async fn run(
        &self,
        statement: &PreparedStatement,
        values: impl ::scylla::serialize::row::SerializeRow,
    ) -> Result<QueryResult, StoreError> {
        match self.session.execute_unpaged(statement, values).await {
            Ok(result) => {
                if !self.reachable.swap(true, Ordering::Relaxed) {
                    tracing::info!("the CQL database answers again");
                }
                Ok(result)
            }
            Err(e) => {
                if self.reachable.swap(false, Ordering::Relaxed) {
                    tracing::error!(error = %e, "the CQL database stopped answering; requests fail until it is back");
                }
                Err(unavailable(e))
            }
        }
    }
}

/// Whether a lightweight transaction applied: the `[applied]` column, found by name.
fn applied(result: QueryResult) -> Result<bool, StoreError> {
    let rows = result.into_rows_result().map_err(unavailable)?;
    let index = rows
        .column_specs()
        .iter()
        .position(|c| c.name() == "[applied]")
        .ok_or_else(|| unavailable("no [applied] column in a conditional write"))?;
    let row: Row = rows.first_row().map_err(unavailable)?;
    match row.columns.get(index) {
        Some(Some(CqlValue::Boolean(b))) => Ok(*b),
        other => Err(unavailable(format!("unexpected [applied] value {other:?}"))),
    }
}

/// The JSON texts of the first column of each row.
fn texts(result: QueryResult) -> Result<Vec<String>, StoreError> {
    let rows = result.into_rows_result().map_err(unavailable)?;
    rows.rows::<(String,)>()
        .map_err(unavailable)?
        .map(|r| r.map(|(t,)| t).map_err(unavailable))
        .collect()
}

#[async_trait]
impl AccountStore for ScyllaStore {
    async fn create(&self, account: Account) -> Result<CreateOutcome, StoreError> {
        let credentials = serde_json::to_string(&account.credentials).map_err(unavailable)?;
        let created_at = i64::try_from(account.created_at).unwrap_or(i64::MAX);
        let result = self
            .run(
                &self.st.insert_account,
                (
                    account.username.as_str(),
                    credentials,
                    &account.roles,
                    created_at,
                    account.reservation.as_ref().map(ReservationId::as_str),
                ),
            )
            .await?;
        Ok(if applied(result)? {
            CreateOutcome::Created
        } else {
            CreateOutcome::AlreadyExists
        })
    }

    async fn get(&self, username: &Username) -> Result<Option<Account>, StoreError> {
        let name = username.as_str();
        let result = self.run(&self.st.select_account, (name,)).await?;
        let rows = result.into_rows_result().map_err(unavailable)?;
        type Cols = (
            Option<String>,
            Option<Vec<String>>,
            Option<i64>,
            Option<String>,
        );
        let Some((credentials, roles, created_at, reservation)) = rows
            .maybe_first_row::<Cols>()
            .map_err(|e| corrupt(name, e))?
        else {
            return Ok(None);
        };
        let credentials = credentials.ok_or_else(|| corrupt(name, "no credentials"))?;
        let credentials: Credentials =
            serde_json::from_str(&credentials).map_err(|e| corrupt(name, e))?;
        Ok(Some(Account {
            username: username.clone(),
            credentials,
            created_at: created_at.and_then(|t| u64::try_from(t).ok()).unwrap_or(0),
            roles: roles.unwrap_or_default(),
            reservation: reservation.map(ReservationId::from),
        }))
    }

    async fn set_credentials(
        &self,
        username: &Username,
        credentials: Credentials,
        reservation: Option<ReservationId>,
    ) -> Result<bool, StoreError> {
        let credentials = serde_json::to_string(&credentials).map_err(unavailable)?;
        let name = username.as_str();
        let result = match reservation {
            Some(r) => {
                self.run(
                    &self.st.update_credentials_reservation,
                    (credentials, r.as_str(), name),
                )
                .await
            }
            None => {
                self.run(&self.st.update_credentials, (credentials, name))
                    .await
            }
        }?;
        applied(result)
    }

    async fn delete(&self, username: &Username) -> Result<bool, StoreError> {
        let name = username.as_str();
        let result = self.run(&self.st.delete_account, (name,)).await?;
        let existed = applied(result)?;
        self.run(&self.st.delete_roster, (name,)).await?;
        Ok(existed)
    }

    async fn roster(&self, username: &Username) -> Result<Vec<RosterItem>, StoreError> {
        let name = username.as_str();
        let result = self.run(&self.st.select_roster, (name,)).await?;
        texts(result)?
            .iter()
            .map(|t| serde_json::from_str(t).map_err(|e| corrupt(name, e)))
            .collect()
    }

    async fn roster_item(
        &self,
        username: &Username,
        jid: &str,
    ) -> Result<Option<RosterItem>, StoreError> {
        let name = username.as_str();
        let result = self.run(&self.st.select_roster_item, (name, jid)).await?;
        match texts(result)?.first() {
            Some(t) => serde_json::from_str(t)
                .map(Some)
                .map_err(|e| corrupt(name, e)),
            None => Ok(None),
        }
    }

    async fn put_roster_item(
        &self,
        username: &Username,
        item: RosterItem,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(&item).map_err(unavailable)?;
        self.run(
            &self.st.upsert_roster_item,
            (username.as_str(), &item.jid, json),
        )
        .await?;
        Ok(())
    }

    async fn remove_roster_item(&self, username: &Username, jid: &str) -> Result<bool, StoreError> {
        let result = self
            .run(&self.st.delete_roster_item, (username.as_str(), jid))
            .await?;
        applied(result)
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // Writes are acknowledged by the database at the configured consistency.
        Ok(())
    }

    async fn check(&self) -> Result<(), StoreError> {
        // A read at the configured consistency of a name no account can have
        // (usernames never contain spaces): proves a quorum answers.
        self.run(&self.st.select_account, (" ready check",))
            .await
            .map(|_| ())
    }
}
