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

use super::log_tail::{self, LogTail};
use super::log_writer::{Append, LogWriter};
use super::types::{LedgerRaft, LogId, NodeId, StorageError};
use crate::invites::{Ledger, Outcome};

pub(super) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const VOTE: &str = "vote";
pub(super) const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";
const SNAPSHOT: &str = "snapshot";

fn io_err(e: impl std::fmt::Display) -> AnyError {
    AnyError::error(e.to_string())
}

fn read_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::read(io_err(e)).into()
}

pub(super) fn write_err(e: impl std::fmt::Display) -> StorageError {
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
    put_meta_bytes(db, key, &bytes)
}

pub(super) fn put_meta_bytes(db: &Database, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
    let txn = db.begin_write().map_err(write_err)?;
    txn.open_table(META)
        .map_err(write_err)?
        .insert(key, bytes)
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
    /// The newest entries, readable before and after they reach the disk.
    tail: Arc<Mutex<LogTail>>,
    writer: LogWriter,
}

impl LogStore {
    /// The log of shard `shard` in `db`, with its writer thread.
    pub fn open(db: Arc<Database>, shard: u32) -> std::io::Result<Self> {
        let tail = Arc::new(Mutex::new(LogTail::new(log_tail::MAX_BYTES)));
        let writer = LogWriter::start(db.clone(), tail.clone(), shard)?;
        Ok(LogStore {
            db,
            committed: Arc::default(),
            tail,
            writer,
        })
    }

    fn tail(&self) -> Result<std::sync::MutexGuard<'_, LogTail>, StorageError> {
        self.tail
            .lock()
            .map_err(|_| read_err("log tail lock poisoned"))
    }

    /// Entries `start..stop`: what the tail holds from it, the rest from
    /// disk (only written entries leave the tail, so what lies before it is
    /// on disk).
    fn read_range(&self, start: u64, stop: u64) -> Result<Vec<Entry<LedgerRaft>>, StorageError> {
        let (disk_stop, held) = {
            let tail = self.tail()?;
            match tail.first_held() {
                Some(first) if start >= first => {
                    return Ok(tail.get(start, stop).unwrap_or_default())
                }
                Some(first) if stop > first => (first, tail.get(first, stop).unwrap_or_default()),
                _ => (stop, Vec::new()),
            }
        };
        let mut entries = self.read_disk(start, disk_stop)?;
        entries.extend(held);
        Ok(entries)
    }

    fn read_disk(&self, start: u64, stop: u64) -> Result<Vec<Entry<LedgerRaft>>, StorageError> {
        if stop <= start {
            return Ok(Vec::new());
        }
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = match txn.open_table(LOG) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(read_err(e)),
        };
        let range = table.range(start..stop).map_err(read_err)?;
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
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let stop = match range.end_bound() {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => u64::MAX,
        };
        self.read_range(start, stop)
    }
}

impl RaftLogStorage<LedgerRaft> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<LedgerRaft>, StorageError> {
        let last_purged: Option<LogId> = get_meta(&self.db, LAST_PURGED)?;
        // The newest entries may still be on their way to disk.
        if let Some(last) = self.tail()?.last() {
            return Ok(LogState {
                last_purged_log_id: last_purged,
                last_log_id: Some(last),
            });
        }
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
        let bytes = serde_json::to_vec(vote).map_err(write_err)?;
        self.writer.put_meta(VOTE, bytes).await
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
        let mut held = Vec::new();
        for entry in entries {
            let bytes = serde_json::to_vec(&entry).map_err(write_err)?;
            held.push((entry.clone(), bytes.len()));
            rows.push((entry.log_id.index, bytes));
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
        // Readable at once (openraft reads them to replicate while they are
        // written); Raft is told through `callback` when they are durable.
        let number = self.tail()?.appended(held);
        self.writer.append(Append {
            number,
            rows,
            committed,
            done: callback,
        })
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.tail()?.truncated(log_id.index);
        self.writer.remove(log_id.index, u64::MAX).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.tail()?.purged(log_id.index);
        let mark = serde_json::to_vec(&log_id).map_err(write_err)?;
        self.writer.put_meta(LAST_PURGED, mark).await?;
        self.writer.remove(0, log_id.index).await
    }
}

/// Removes log entries with `from <= index <= to`.
pub(super) fn remove_range(db: &Database, from: u64, to: u64) -> Result<(), StorageError> {
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

#[cfg(test)]
mod tests {
    use openraft::testing::{StoreBuilder, Suite};

    use super::*;

    /// Each store in its own file; the directory goes with the guard.
    struct FreshStore;

    impl StoreBuilder<LedgerRaft, LogStore, StateMachine, tempfile::TempDir> for FreshStore {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
            let dir = tempfile::tempdir().map_err(write_err)?;
            let db = open_database(&dir.path().join("shard.redb")).map_err(write_err)?;
            let log = LogStore::open(db.clone(), 0).map_err(write_err)?;
            let sm = StateMachine::open(db)?;
            Ok((dir, log, sm))
        }
    }

    /// openraft's own conformance suite for log and state machine storage:
    /// reads of entries still being written, truncation and purging through
    /// the writer queue, the log state at start.
    #[test]
    fn passes_openraft_storage_suite() -> Result<(), StorageError> {
        Suite::test_all(FreshStore)
    }
}
