//! Raft storage for a ledger shard on the node's disk: the log in segment
//! files of its own (`log_file`), the vote and the state machine's last
//! snapshot in redb. The state machine keeps the ledger in memory; a snapshot
//! plus the log after it rebuild it at start.

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

use super::log_file::LogFile;
use super::log_tail::{self, LogTail};
use super::log_writer::{Append, LogWriter};
use super::types::{LedgerRaft, LogId, NodeId, StorageError};
use crate::invites::{Ledger, Outcome};

/// Where the log lived before it had files of its own (moved out at start).
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const VOTE: &str = "vote";
/// The commit mark of a log kept in redb; now in the log's own files.
const COMMITTED: &str = "committed";
pub(super) const LAST_PURGED: &str = "last_purged";
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
    file: Arc<Mutex<LogFile>>,
    /// The newest commit mark openraft gave us, not yet on disk: it is
    /// written by the next append, with its entries.
    committed: Arc<Mutex<Option<Option<LogId>>>>,
    /// The newest entries, readable before and after they reach the disk.
    tail: Arc<Mutex<LogTail>>,
    writer: LogWriter,
}

impl LogStore {
    /// The log of shard `shard` in `dir`, its vote in `db`, with its writer
    /// thread. A log still kept in `db` (older versions) moves to `dir` first.
    pub fn open(db: Arc<Database>, dir: &Path, shard: u32) -> Result<Self, StorageError> {
        let last_purged: Option<LogId> = get_meta(&db, LAST_PURGED)?;
        let purged = last_purged.map(|id| id.index);
        let mut file = LogFile::open(dir, purged).map_err(read_err)?;
        if move_log_out_of(&db, dir, &mut file)? {
            file = LogFile::open(dir, purged).map_err(read_err)?;
        }
        let file = Arc::new(Mutex::new(file));
        let tail = Arc::new(Mutex::new(LogTail::new(log_tail::MAX_BYTES)));
        let writer =
            LogWriter::start(db.clone(), file.clone(), tail.clone(), shard).map_err(write_err)?;
        Ok(LogStore {
            db,
            file,
            committed: Arc::default(),
            tail,
            writer,
        })
    }

    fn file(&self) -> Result<std::sync::MutexGuard<'_, LogFile>, StorageError> {
        self.file
            .lock()
            .map_err(|_| read_err("Raft log lock poisoned"))
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
        let payloads = self.file()?.read(start, stop).map_err(read_err)?;
        payloads
            .iter()
            .map(|bytes| serde_json::from_slice(bytes).map_err(read_err))
            .collect()
    }
}

/// Moves a log that older versions kept in redb into `dir` (entries and
/// commit mark at once), then drops it from redb; `true` if it moved. A log
/// already in `dir` means an earlier move got that far: only the copy in
/// redb is left to drop.
fn move_log_out_of(db: &Database, dir: &Path, file: &mut LogFile) -> Result<bool, StorageError> {
    let rows = {
        let txn = db.begin_read().map_err(read_err)?;
        let table = match txn.open_table(LOG) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(false),
            Err(e) => return Err(read_err(e)),
        };
        let mut rows = Vec::new();
        if file.is_empty() {
            for item in table.iter().map_err(read_err)? {
                let (index, bytes) = item.map_err(read_err)?;
                rows.push((index.value(), bytes.value().to_vec()));
            }
        }
        rows
    };
    let moved = !rows.is_empty();
    if moved {
        let committed: Option<Option<LogId>> = get_meta(db, COMMITTED)?;
        let mark = match committed {
            Some(mark) => Some(serde_json::to_vec(&mark).map_err(write_err)?),
            None => None,
        };
        let entries: Vec<(u64, &[u8])> = rows.iter().map(|(i, b)| (*i, b.as_slice())).collect();
        // Empty segments (none can hold entries here) would not line up.
        file.truncate(0).map_err(write_err)?;
        LogFile::write_whole(dir, &entries, mark.as_deref()).map_err(write_err)?;
        tracing::info!(
            entries = rows.len(),
            dir = %dir.display(),
            "moved the Raft log of a shard out of its redb file"
        );
    }
    let txn = db.begin_write().map_err(write_err)?;
    txn.delete_table(LOG).map_err(write_err)?;
    {
        let mut meta = txn.open_table(META).map_err(write_err)?;
        meta.remove(COMMITTED).map_err(write_err)?;
    }
    txn.commit().map_err(write_err)?;
    Ok(moved)
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
        let last = match self.tail()?.last() {
            Some(last) => Some(last),
            None => match self.file()?.last().map_err(read_err)? {
                Some(bytes) => {
                    let entry: Entry<LedgerRaft> =
                        serde_json::from_slice(&bytes).map_err(read_err)?;
                    Some(entry.log_id)
                }
                None => None,
            },
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
        match self.file()?.committed() {
            Some(bytes) => Ok(serde_json::from_slice::<Option<LogId>>(bytes).map_err(read_err)?),
            None => Ok(None),
        }
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
        self.writer.truncate(log_id.index).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.tail()?.purged(log_id.index);
        let mark = serde_json::to_vec(&log_id).map_err(write_err)?;
        self.writer.purge(log_id.index, mark).await
    }
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
            let log = LogStore::open(db.clone(), &dir.path().join("shard.log"), 0)?;
            let sm = StateMachine::open(db)?;
            Ok((dir, log, sm))
        }
    }

    /// A data dir of a version that kept the log in redb: at start the log
    /// moves to its own files, whole, with the commit mark, and leaves redb.
    #[tokio::test]
    async fn a_log_kept_in_redb_moves_to_its_files() -> Result<(), StorageError> {
        let dir = tempfile::tempdir().map_err(write_err)?;
        let db = open_database(&dir.path().join("shard.redb")).map_err(write_err)?;
        let entry = |index| Entry::<LedgerRaft> {
            log_id: LogId::new(openraft::CommittedLeaderId::new(2, 1), index),
            payload: EntryPayload::Blank,
        };
        let mark = Some(LogId::new(openraft::CommittedLeaderId::new(2, 1), 3));
        {
            let txn = db.begin_write().map_err(write_err)?;
            {
                let mut log = txn.open_table(LOG).map_err(write_err)?;
                for index in 1..=5 {
                    let bytes = serde_json::to_vec(&entry(index)).map_err(write_err)?;
                    log.insert(index, bytes.as_slice()).map_err(write_err)?;
                }
            }
            txn.commit().map_err(write_err)?;
            put_meta(&db, COMMITTED, &mark)?;
        }
        let logs = dir.path().join("shard.log");
        for _start in 0..2 {
            let mut store = LogStore::open(db.clone(), &logs, 0)?;
            let ids: Vec<u64> = store
                .try_get_log_entries(0..)
                .await?
                .iter()
                .map(|e| e.log_id.index)
                .collect();
            assert_eq!(ids, vec![1, 2, 3, 4, 5]);
            assert_eq!(store.read_committed().await?, mark);
            assert_eq!(
                store.get_log_state().await?.last_log_id,
                Some(entry(5).log_id)
            );
        }
        let txn = db.begin_read().map_err(read_err)?;
        assert!(matches!(
            txn.open_table(LOG),
            Err(redb::TableError::TableDoesNotExist(_))
        ));
        Ok(())
    }

    /// openraft's own conformance suite for log and state machine storage:
    /// reads of entries still being written, truncation and purging through
    /// the writer queue, the log state at start.
    #[test]
    fn passes_openraft_storage_suite() -> Result<(), StorageError> {
        Suite::test_all(FreshStore)
    }
}
