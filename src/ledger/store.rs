//! Raft storage for a ledger shard on the node's disk (redb): the log, the
//! vote, and the state machine with its last snapshot. The state machine keeps
//! the ledger in memory; a snapshot plus the log after it rebuild it at start.

// openraft's trait methods fix the (large) StorageError type; helpers share it.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, Entry, EntryPayload, OptionalSend, RaftLogReader, RaftSnapshotBuilder, SnapshotMeta,
    StorageIOError, StoredMembership, Vote,
};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::types::{LedgerRaft, LogId, NodeId, StorageError};
use crate::invites::{Ledger, Outcome};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";
const SNAPSHOT: &str = "snapshot";

fn io_err(e: impl std::fmt::Display) -> AnyError {
    AnyError::error(e.to_string())
}

fn read_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::read(io_err(e)).into()
}

fn write_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write(io_err(e)).into()
}

pub fn open_database(path: &Path) -> Result<Arc<Database>, redb::DatabaseError> {
    let db = Database::create(path)?;
    Ok(Arc::new(db))
}

fn get_meta<T: for<'de> Deserialize<'de>>(
    db: &Database,
    key: &str,
) -> Result<Option<T>, StorageError> {
    let txn = db.begin_read().map_err(read_err)?;
    let table = match txn.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(read_err(e)),
    };
    match table.get(key).map_err(read_err)? {
        Some(bytes) => serde_json::from_slice(bytes.value())
            .map(Some)
            .map_err(read_err),
        None => Ok(None),
    }
}

fn put_meta<T: Serialize>(db: &Database, key: &str, value: &T) -> Result<(), StorageError> {
    let bytes = serde_json::to_vec(value).map_err(write_err)?;
    let txn = db.begin_write().map_err(write_err)?;
    txn.open_table(META)
        .map_err(write_err)?
        .insert(key, bytes.as_slice())
        .map_err(write_err)?;
    txn.commit().map_err(write_err)
}

/// The Raft log and vote.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    /// The newest commit mark openraft gave us, not yet on disk: it is
    /// written by the next append, in the same transaction.
    committed: Arc<Mutex<Option<Option<LogId>>>>,
}

impl LogStore {
    pub fn new(db: Arc<Database>) -> Self {
        LogStore {
            db,
            committed: Arc::default(),
        }
    }

    fn read_range(
        &self,
        start: u64,
        end: Bound<u64>,
    ) -> Result<Vec<Entry<LedgerRaft>>, StorageError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = match txn.open_table(LOG) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(read_err(e)),
        };
        let range = table
            .range((Bound::Included(start), end))
            .map_err(read_err)?;
        let mut out = Vec::new();
        for item in range {
            let (_, bytes) = item.map_err(read_err)?;
            out.push(serde_json::from_slice(bytes.value()).map_err(read_err)?);
        }
        Ok(out)
    }
}

impl RaftLogReader<LedgerRaft> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<LedgerRaft>>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s + 1,
            Bound::Unbounded => 0,
        };
        let end = range.end_bound().cloned();
        self.read_range(start, end)
    }
}

impl RaftLogStorage<LedgerRaft> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<LedgerRaft>, StorageError> {
        let last_purged: Option<LogId> = get_meta(&self.db, LAST_PURGED)?;
        let txn = self.db.begin_read().map_err(read_err)?;
        let last = match txn.open_table(LOG) {
            Ok(table) => match table.last().map_err(read_err)? {
                Some((_, bytes)) => {
                    let entry: Entry<LedgerRaft> =
                        serde_json::from_slice(bytes.value()).map_err(read_err)?;
                    Some(entry.log_id)
                }
                None => None,
            },
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(read_err(e)),
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last.or(last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let db = self.db.clone();
        let vote = *vote;
        blocking(move || put_meta(&db, VOTE, &vote)).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        get_meta(&self.db, VOTE)
    }

    /// Kept in memory until the next log append writes it (no transaction
    /// or fsync of its own). A crash or stop loses the marks since the last
    /// append; the node then applies less at start and learns the rest from
    /// the leader (or, alone, commits it again when elected), as openraft allows.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        *self
            .committed
            .lock()
            .map_err(|_| write_err("commit mark lock poisoned"))? = Some(committed);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(get_meta::<Option<LogId>>(&self.db, COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<LedgerRaft>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<LedgerRaft>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut rows = Vec::new();
        for entry in entries {
            rows.push((
                entry.log_id.index,
                serde_json::to_vec(&entry).map_err(write_err)?,
            ));
        }
        let committed = match self
            .committed
            .lock()
            .map_err(|_| write_err("commit mark lock poisoned"))?
            .take()
        {
            Some(mark) => Some(serde_json::to_vec(&mark).map_err(write_err)?),
            None => None,
        };
        let db = self.db.clone();
        // The commit is durable (fsync) before Raft is told the entries are on disk.
        let result = blocking(move || {
            let txn = db.begin_write().map_err(write_err)?;
            {
                let mut table = txn.open_table(LOG).map_err(write_err)?;
                for (index, bytes) in &rows {
                    table.insert(index, bytes.as_slice()).map_err(write_err)?;
                }
            }
            if let Some(mark) = &committed {
                txn.open_table(META)
                    .map_err(write_err)?
                    .insert(COMMITTED, mark.as_slice())
                    .map_err(write_err)?;
            }
            txn.commit().map_err(write_err)
        })
        .await;
        match &result {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        result
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let db = self.db.clone();
        blocking(move || remove_range(&db, log_id.index, u64::MAX)).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let db = self.db.clone();
        blocking(move || {
            put_meta(&db, LAST_PURGED, &log_id)?;
            remove_range(&db, 0, log_id.index)
        })
        .await
    }
}

/// Removes log entries with `from <= index <= to`.
fn remove_range(db: &Database, from: u64, to: u64) -> Result<(), StorageError> {
    let txn = db.begin_write().map_err(write_err)?;
    {
        let mut table = txn.open_table(LOG).map_err(write_err)?;
        let keys: Vec<u64> = table
            .range(from..=to)
            .map_err(write_err)?
            .map(|item| item.map(|(k, _)| k.value()))
            .collect::<Result<_, _>>()
            .map_err(write_err)?;
        for k in keys {
            table.remove(k).map_err(write_err)?;
        }
    }
    txn.commit().map_err(write_err)
}

async fn blocking<T, F>(f: F) -> Result<T, StorageError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StorageError> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(write_err)?
}

/// What the state machine holds; also the content of a snapshot.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SmState {
    pub ledger: Ledger,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership<NodeId, openraft::BasicNode>,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    data: Vec<u8>,
}

/// The ledger state machine. Readers share `state` (see `LedgerHandle`).
#[derive(Clone)]
pub struct StateMachine {
    db: Arc<Database>,
    pub state: Arc<RwLock<SmState>>,
}

impl StateMachine {
    /// Starts from the last snapshot on disk, if any; Raft replays the log after it.
    pub fn open(db: Arc<Database>) -> Result<StateMachine, StorageError> {
        let state = match get_meta::<StoredSnapshot>(&db, SNAPSHOT)? {
            Some(s) => serde_json::from_slice(&s.data).map_err(read_err)?,
            None => SmState::default(),
        };
        Ok(StateMachine {
            db,
            state: Arc::new(RwLock::new(state)),
        })
    }

    fn snapshot_state(&self) -> Result<SmState, StorageError> {
        self.state
            .read()
            .map(|s| s.clone())
            .map_err(|_| read_err("state machine lock poisoned"))
    }
}

impl RaftSnapshotBuilder<LedgerRaft> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<LedgerRaft>, StorageError> {
        let state = self.snapshot_state()?;
        let data = serde_json::to_vec(&state).map_err(write_err)?;
        let meta = SnapshotMeta {
            last_log_id: state.last_applied,
            last_membership: state.membership.clone(),
            snapshot_id: format!(
                "{}-{}",
                state.last_applied.map_or(0, |l| l.index),
                crate::secrets::random_id(6)
            ),
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        let db = self.db.clone();
        blocking(move || put_meta(&db, SNAPSHOT, &stored)).await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<LedgerRaft> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<NodeId, openraft::BasicNode>), StorageError> {
        let s = self.snapshot_state()?;
        Ok((s.last_applied, s.membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<Outcome>>, StorageError>
    where
        I: IntoIterator<Item = Entry<LedgerRaft>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut state = self
            .state
            .write()
            .map_err(|_| write_err("state machine lock poisoned"))?;
        let mut replies = Vec::new();
        for entry in entries {
            state.last_applied = Some(entry.log_id);
            let reply = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(batch) => batch
                    .commands
                    .into_iter()
                    .map(|c| state.ledger.apply(c, batch.at))
                    .collect(),
                EntryPayload::Membership(m) => {
                    state.membership = StoredMembership::new(Some(entry.log_id), m);
                    Vec::new()
                }
            };
            replies.push(reply);
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let new_state: SmState = serde_json::from_slice(&data).map_err(read_err)?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        let db = self.db.clone();
        blocking(move || put_meta(&db, SNAPSHOT, &stored)).await?;
        let mut state = self
            .state
            .write()
            .map_err(|_| write_err("state machine lock poisoned"))?;
        *state = new_state;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<LedgerRaft>>, StorageError> {
        Ok(
            get_meta::<StoredSnapshot>(&self.db, SNAPSHOT)?.map(|s| Snapshot {
                meta: s.meta,
                snapshot: Box::new(Cursor::new(s.data)),
            }),
        )
    }
}
