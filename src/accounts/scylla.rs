//! The AccountStore on ScyllaDB (or any CQL database: the tests use Apache
//! Cassandra). Every node of a cluster shares it. Uniqueness and
//! compare-and-set come from lightweight transactions on the row's partition,
//! and the rows the saga decides on are read at serial consistency, so a
//! write still in flight is finished (or fails) before the read answers.
//! `[applied]` is read by column name, since ScyllaDB and Cassandra return
//! different columns beside it.

use ::scylla::client::session::Session;
use ::scylla::client::session_builder::SessionBuilder;
use ::scylla::response::query_result::QueryResult;
use ::scylla::statement::prepared::PreparedStatement;
use ::scylla::value::{CqlValue, Row};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::{
    Account, AccountRow, AccountStore, Credentials, OfflineMessage, Queued, RosterItem, RowKind,
    Stamp, StoreError,
};
use crate::config::{CqlSerialConsistency, ScyllaConfig};
use crate::invites::ReservationId;
use crate::xmpp::jid::Username;
use ::scylla::frame::types::Consistency;

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn corrupt(username: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        username: username.to_owned(),
        reason: e.to_string(),
    }
}

/// The columns of `accounts` besides the key, in the order every statement
/// names them.
const ROW_COLUMNS: &str = "credentials, roles, created_at, reservation, state, generation, \
                           fenced_until, quarantine_until, stamp";

/// Columns later versions added to `accounts`, for tables made before them.
const ADDED_COLUMNS: &[(&str, &str)] = &[
    ("state", "text"),
    ("generation", "text"),
    ("fenced_until", "bigint"),
    ("quarantine_until", "bigint"),
    ("stamp", "text"),
];

struct Statements {
    insert_row: PreparedStatement,
    select_row: PreparedStatement,
    select_row_serial: PreparedStatement,
    replace_row: PreparedStatement,
    delete_roster: PreparedStatement,
    select_roster: PreparedStatement,
    select_roster_item: PreparedStatement,
    upsert_roster_item: PreparedStatement,
    delete_roster_item: PreparedStatement,
    count_offline: PreparedStatement,
    insert_offline: PreparedStatement,
    select_offline: PreparedStatement,
    claim_offline: PreparedStatement,
    delete_offline: PreparedStatement,
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
    /// every statement. Long because it is the schema and the statement table
    /// in one place, each CQL string beside the name it is used by.
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
                 credentials text, roles list<text>, created_at bigint, reservation text, \
                 state text, generation text, fenced_until bigint, quarantine_until bigint, \
                 stamp text)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {ks}.rosters (username text, contact text, item text, \
                 PRIMARY KEY (username, contact))"
            ),
            // Offline messages by user, in the order they came (the id starts
            // with the time it was stored).
            format!(
                "CREATE TABLE IF NOT EXISTS {ks}.offline (username text, id bigint, \
                 stored_at bigint, stanza text, PRIMARY KEY (username, id)) \
                 WITH CLUSTERING ORDER BY (id ASC)"
            ),
        ] {
            session.query_unpaged(ddl, ()).await.map_err(unavailable)?;
        }
        add_missing_columns(&session, ks).await?;
        session
            .await_schema_agreement()
            .await
            .map_err(unavailable)?;

        /// How a statement is run: plainly, as a lightweight transaction,
        /// or as a serial read.
        #[derive(Clone, Copy, PartialEq)]
        enum Mode {
            Plain,
            Lwt,
            SerialRead,
        }
        let prepare = |cql: String, mode: Mode| {
            let session = &session;
            async move {
                let mut p = session.prepare(cql).await.map_err(unavailable)?;
                p.set_consistency(match mode {
                    Mode::SerialRead => match config.serial_consistency {
                        CqlSerialConsistency::Serial => Consistency::Serial,
                        CqlSerialConsistency::LocalSerial => Consistency::LocalSerial,
                    },
                    _ => config.consistency.into(),
                });
                if mode == Mode::Lwt {
                    p.set_serial_consistency(Some(config.serial_consistency.into()));
                }
                p.set_request_timeout(Some(config.request_timeout));
                Ok::<_, StoreError>(p)
            }
        };
        let select = format!("SELECT {ROW_COLUMNS} FROM {ks}.accounts WHERE username = ?");
        let st = Statements {
            insert_row: prepare(
                format!("INSERT INTO {ks}.accounts (username, {ROW_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"),
                Mode::Lwt,
            )
            .await?,
            select_row: prepare(select.clone(), Mode::Plain).await?,
            select_row_serial: prepare(select, Mode::SerialRead).await?,
            // `created_at != null`: a row exists (every row has it), so a
            // condition on a missing stamp never creates one.
            replace_row: prepare(
                format!("UPDATE {ks}.accounts SET credentials = ?, roles = ?, created_at = ?, \
                         reservation = ?, state = ?, generation = ?, fenced_until = ?, \
                         quarantine_until = ?, stamp = ? WHERE username = ? \
                         IF stamp = ? AND created_at != null"),
                Mode::Lwt,
            )
            .await?,
            delete_roster: prepare(format!("DELETE FROM {ks}.rosters WHERE username = ?"), Mode::Plain).await?,
            select_roster: prepare(format!("SELECT item FROM {ks}.rosters WHERE username = ?"), Mode::Plain).await?,
            select_roster_item: prepare(
                format!("SELECT item FROM {ks}.rosters WHERE username = ? AND contact = ?"),
                Mode::Plain,
            )
            .await?,
            upsert_roster_item: prepare(
                format!("INSERT INTO {ks}.rosters (username, contact, item) VALUES (?, ?, ?)"),
                Mode::Plain,
            )
            .await?,
            delete_roster_item: prepare(
                format!("DELETE FROM {ks}.rosters WHERE username = ? AND contact = ? IF EXISTS"),
                Mode::Lwt,
            )
            .await?,
            count_offline: prepare(format!("SELECT COUNT(*) FROM {ks}.offline WHERE username = ?"), Mode::Plain).await?,
            insert_offline: prepare(
                format!("INSERT INTO {ks}.offline (username, id, stored_at, stanza) VALUES (?, ?, ?, ?)"),
                Mode::Plain,
            )
            .await?,
            select_offline: prepare(
                format!("SELECT id, stored_at, stanza FROM {ks}.offline WHERE username = ?"),
                Mode::Plain,
            )
            .await?,
            // A lightweight transaction: of several takers, one sees it applied.
            claim_offline: prepare(
                format!("DELETE FROM {ks}.offline WHERE username = ? AND id = ? IF EXISTS"),
                Mode::Lwt,
            )
            .await?,
            delete_offline: prepare(format!("DELETE FROM {ks}.offline WHERE username = ?"), Mode::Plain).await?,
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

/// Adds the columns of `ADDED_COLUMNS` a table made by an older version lacks.
async fn add_missing_columns(session: &Session, ks: &str) -> Result<(), StoreError> {
    let result = session
        .query_unpaged(
            "SELECT column_name FROM system_schema.columns WHERE keyspace_name = ? AND table_name = 'accounts'",
            (ks,),
        )
        .await
        .map_err(unavailable)?;
    let present = texts(result)?;
    for (column, kind) in ADDED_COLUMNS {
        if !present.iter().any(|c| c == column) {
            tracing::info!(column, "adding a column to the accounts table");
            session
                .query_unpaged(format!("ALTER TABLE {ks}.accounts ADD {column} {kind}"), ())
                .await
                .map_err(unavailable)?;
        }
    }
    Ok(())
}

/// The bound values of a row's columns, in `ROW_COLUMNS` order.
type RowValues = (
    Option<String>,
    Vec<String>,
    i64,
    Option<String>,
    &'static str,
    Option<String>,
    i64,
    i64,
    String,
);

fn row_values(row: &AccountRow, stamp: &Stamp) -> Result<RowValues, StoreError> {
    let credentials = match &row.credentials {
        Some(c) => Some(serde_json::to_string(c).map_err(unavailable)?),
        None => None,
    };
    let big = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    Ok((
        credentials,
        row.roles.clone(),
        big(row.created_at),
        row.reservation.as_ref().map(|r| r.as_str().to_owned()),
        row.state.as_str(),
        row.generation.clone(),
        big(row.fenced_until),
        big(row.quarantine_until),
        stamp.as_str().to_owned(),
    ))
}

/// The columns of a row as read, in `ROW_COLUMNS` order.
type RowColumns = (
    Option<String>,
    Option<Vec<String>>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

fn decode_row(username: &Username, result: QueryResult) -> Result<Option<AccountRow>, StoreError> {
    let name = username.as_str();
    let rows = result.into_rows_result().map_err(unavailable)?;
    let Some((
        credentials,
        roles,
        created_at,
        reservation,
        state,
        generation,
        fenced,
        quarantine,
        stamp,
    )) = rows
        .maybe_first_row::<RowColumns>()
        .map_err(|e| corrupt(name, e))?
    else {
        return Ok(None);
    };
    let credentials: Option<Credentials> = match credentials {
        Some(c) => Some(serde_json::from_str(&c).map_err(|e| corrupt(name, e))?),
        None => None,
    };
    // Rows of older versions have no state: they are accounts.
    let state = match state.as_deref() {
        None => RowKind::Active,
        Some(s) => {
            RowKind::parse(s).ok_or_else(|| corrupt(name, format!("unknown state '{s}'")))?
        }
    };
    if state == RowKind::Active && credentials.is_none() {
        return Err(corrupt(name, "an account without credentials"));
    }
    let unsigned = |n: Option<i64>| n.and_then(|t| u64::try_from(t).ok()).unwrap_or(0);
    Ok(Some(AccountRow {
        username: username.clone(),
        state,
        credentials,
        created_at: unsigned(created_at),
        roles: roles.unwrap_or_default(),
        reservation: reservation.map(ReservationId::from),
        generation,
        fenced_until: unsigned(fenced),
        quarantine_until: unsigned(quarantine),
        stamp: stamp.map(Stamp::from),
    }))
}

#[async_trait]
impl AccountStore for ScyllaStore {
    async fn get(&self, username: &Username) -> Result<Option<Account>, StoreError> {
        let result = self.run(&self.st.select_row, (username.as_str(),)).await?;
        Ok(decode_row(username, result)?.and_then(|r| r.active()))
    }

    async fn row(&self, username: &Username) -> Result<Option<AccountRow>, StoreError> {
        let result = self
            .run(&self.st.select_row_serial, (username.as_str(),))
            .await?;
        decode_row(username, result)
    }

    async fn insert_row(&self, row: AccountRow) -> Result<Option<Stamp>, StoreError> {
        let stamp = Stamp::fresh();
        let v = row_values(&row, &stamp)?;
        let result = self
            .run(
                &self.st.insert_row,
                (
                    row.username.as_str(),
                    v.0,
                    v.1,
                    v.2,
                    v.3,
                    v.4,
                    v.5,
                    v.6,
                    v.7,
                    v.8,
                ),
            )
            .await?;
        Ok(applied(result)?.then_some(stamp))
    }

    async fn replace_row(
        &self,
        expected: Option<&Stamp>,
        row: AccountRow,
    ) -> Result<Option<Stamp>, StoreError> {
        let stamp = Stamp::fresh();
        let v = row_values(&row, &stamp)?;
        let result = self
            .run(
                &self.st.replace_row,
                (
                    v.0,
                    v.1,
                    v.2,
                    v.3,
                    v.4,
                    v.5,
                    v.6,
                    v.7,
                    v.8,
                    row.username.as_str(),
                    expected.map(Stamp::as_str),
                ),
            )
            .await?;
        Ok(applied(result)?.then_some(stamp))
    }

    async fn delete_user_data(&self, username: &Username) -> Result<(), StoreError> {
        let name = username.as_str();
        self.run(&self.st.delete_roster, (name,)).await?;
        self.run(&self.st.delete_offline, (name,)).await.map(|_| ())
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

    async fn push_offline(
        &self,
        username: &Username,
        message: OfflineMessage,
        max: usize,
    ) -> Result<Queued, StoreError> {
        let name = username.as_str();
        let result = self.run(&self.st.count_offline, (name,)).await?;
        let rows = result.into_rows_result().map_err(unavailable)?;
        let (held,): (i64,) = rows.first_row().map_err(unavailable)?;
        // Counted, then written: senders racing on one queue may each pass
        // the check, so the queue can exceed `max` by the number of racers.
        if usize::try_from(held).unwrap_or(usize::MAX) >= max {
            return Ok(Queued::Full);
        }
        let stored_at = i64::try_from(message.stored_at).unwrap_or(i64::MAX >> 20);
        let id = (stored_at << 20) | i64::from(rand::random::<u32>() & 0xF_FFFF);
        self.run(
            &self.st.insert_offline,
            (name, id, stored_at, message.stanza.as_str()),
        )
        .await?;
        Ok(Queued::Stored)
    }

    async fn take_offline(&self, username: &Username) -> Result<Vec<OfflineMessage>, StoreError> {
        let name = username.as_str();
        let result = self.run(&self.st.select_offline, (name,)).await?;
        let rows = result.into_rows_result().map_err(unavailable)?;
        let queued: Vec<(i64, i64, String)> = rows
            .rows::<(i64, i64, String)>()
            .map_err(|e| corrupt(name, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| corrupt(name, e))?;
        let claims = queued.iter().map(|(id, _, _)| async move {
            let result = self.run(&self.st.claim_offline, (name, *id)).await?;
            applied(result)
        });
        let claimed = futures_util::future::join_all(claims).await;
        let mut messages = Vec::new();
        for ((_, stored_at, stanza), claim) in queued.into_iter().zip(claimed) {
            match claim {
                Ok(true) => messages.push(OfflineMessage {
                    stored_at: u64::try_from(stored_at).unwrap_or(0),
                    stanza,
                }),
                // Another node took it first and delivers it.
                Ok(false) => {}
                // Kept for the next take unless the delete did land; the
                // ones already claimed must be delivered, so no error here.
                Err(e) => tracing::warn!(error = %e, "an offline message could not be claimed"),
            }
        }
        Ok(messages)
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // Writes are acknowledged by the database at the configured consistency.
        Ok(())
    }

    async fn check(&self) -> Result<(), StoreError> {
        // A read at the configured consistency of a name no account can have
        // (usernames never contain spaces): proves a quorum answers.
        self.run(&self.st.select_row, (" ready check",))
            .await
            .map(|_| ())
    }
}
