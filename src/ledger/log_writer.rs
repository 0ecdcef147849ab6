//! The one thread that writes a shard's Raft log to disk, in the order the
//! writes were asked for. openraft hands an append over and goes on (it is
//! told through the append's callback when the entries are durable), so its
//! core is not stalled for an fsync; appends that queue up meanwhile go to
//! disk together, in one transaction and one fsync.
//!
//! Truncation, purging and the vote go through the same queue, so none of them
//! can overtake an append asked for before it.
//!
//! The thread holds the shard's files only while it has writes to do: they
//! close as soon as the shard's log and state machine are dropped, and can be
//! opened again at once.

// openraft fixes the (large) StorageError type.
#![allow(clippy::result_large_err)]

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use openraft::storage::LogFlushed;
use redb::Database;
use tokio::sync::oneshot;

use super::log_file::LogFile;
use super::log_tail::LogTail;
use super::store::{put_meta_bytes, write_err, LAST_PURGED};
use super::types::{LedgerRaft, StorageError};

/// Appends written with one fsync at most (bounds the work behind it; the
/// queue rarely holds more than a few).
const MAX_GROUP: usize = 64;

pub struct Append {
    /// Its number from `LogTail::appended`.
    pub number: u64,
    pub rows: Vec<(u64, Vec<u8>)>,
    /// The newest commit mark, if it changed since the last append.
    pub committed: Option<Vec<u8>>,
    pub done: LogFlushed<LedgerRaft>,
}

type Done = oneshot::Sender<Result<(), StorageError>>;

enum Op {
    Append(Append),
    /// Removes entries from `from` on.
    Truncate {
        from: u64,
        done: Done,
    },
    /// Records the purge of entries up to `upto` (`mark`), then drops them.
    Purge {
        upto: u64,
        mark: Vec<u8>,
        done: Done,
    },
    /// Writes a meta key durably.
    Meta {
        key: &'static str,
        value: Vec<u8>,
        done: Done,
    },
}

/// The shard's files, lent to the thread with each write.
#[derive(Clone)]
struct Files {
    db: Arc<Database>,
    log: Arc<Mutex<LogFile>>,
}

#[derive(Clone)]
pub struct LogWriter {
    files: Files,
    queue: mpsc::Sender<(Files, Op)>,
}

impl LogWriter {
    /// Starts the writer of `db`, which tells `tail` what is on disk; it
    /// stops when every handle is dropped, after the writes already asked for.
    pub fn start(
        db: Arc<Database>,
        log: Arc<Mutex<LogFile>>,
        tail: Arc<Mutex<LogTail>>,
        shard: u32,
    ) -> std::io::Result<LogWriter> {
        let (queue, ops) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("ledger-log-{shard}"))
            .spawn(move || run(&tail, &ops))?;
        Ok(LogWriter {
            files: Files { db, log },
            queue,
        })
    }

    fn send(&self, op: Op) -> Result<(), StorageError> {
        self.queue
            .send((self.files.clone(), op))
            .map_err(|_| write_err("the log writer has stopped"))
    }

    /// Queues entries; `append.done` is called once they are durable.
    pub fn append(&self, append: Append) -> Result<(), StorageError> {
        self.send(Op::Append(append))
    }

    /// Removes entries from `from` on, after every write queued before.
    pub async fn truncate(&self, from: u64) -> Result<(), StorageError> {
        self.call(|done| Op::Truncate { from, done }).await
    }

    /// Records durably that entries up to `upto` are purged (`mark`: the
    /// purged log id), then drops them, after every write queued before.
    pub async fn purge(&self, upto: u64, mark: Vec<u8>) -> Result<(), StorageError> {
        self.call(|done| Op::Purge { upto, mark, done }).await
    }

    /// Writes `key` durably after every write queued before.
    pub async fn put_meta(&self, key: &'static str, value: Vec<u8>) -> Result<(), StorageError> {
        self.call(|done| Op::Meta { key, value, done }).await
    }

    async fn call(&self, op: impl FnOnce(Done) -> Op) -> Result<(), StorageError> {
        let (done, answer) = oneshot::channel();
        self.send(op(done))?;
        answer
            .await
            .map_err(|_| write_err("the log writer stopped before answering"))?
    }
}

fn run(tail: &Mutex<LogTail>, ops: &mpsc::Receiver<(Files, Op)>) {
    let mut failed: Option<String> = None;
    let mut next = None;
    loop {
        let (files, op) = match next.take() {
            Some(op) => op,
            None => match ops.recv() {
                Ok(op) => op,
                Err(_) => return,
            },
        };
        match op {
            Op::Append(first) => {
                let mut group = vec![first];
                while group.len() < MAX_GROUP {
                    match ops.try_recv() {
                        Ok((_, Op::Append(more))) => group.push(more),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let result = guarded(&mut failed, || write_appends(&files.log, &group));
                if let (Ok(()), Some(last), Ok(mut tail)) = (&result, group.last(), tail.lock()) {
                    tail.written(last.number);
                }
                for append in group {
                    let outcome = match &result {
                        Ok(()) => Ok(()),
                        Err(e) => Err(std::io::Error::other(e.to_string())),
                    };
                    append.done.log_io_completed(outcome);
                }
            }
            Op::Truncate { from, done } => {
                let result = guarded(&mut failed, || {
                    with_log(&files.log, |log| log.truncate(from))
                });
                let _ = done.send(result);
            }
            Op::Purge { upto, mark, done } => {
                // Recorded first: segments a crash leaves behind are then
                // dropped at start (`LogFile::open`).
                let result = guarded(&mut failed, || {
                    put_meta_bytes(&files.db, LAST_PURGED, &mark)?;
                    with_log(&files.log, |log| log.purge(upto))
                });
                let _ = done.send(result);
            }
            Op::Meta { key, value, done } => {
                let result = guarded(&mut failed, || put_meta_bytes(&files.db, key, &value));
                let _ = done.send(result);
            }
        }
    }
}

/// Runs `write` unless an earlier write failed, and remembers its failure:
/// after one, nothing more is written (later entries without the failed ones
/// would leave a hole; a truncation that deleted some segments but not the
/// rest leaves a state nothing may build on).
fn guarded(
    failed: &mut Option<String>,
    write: impl FnOnce() -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    if let Some(why) = failed {
        return Err(write_err(why));
    }
    let result = write();
    if let Err(e) = &result {
        *failed = Some(e.to_string());
    }
    result
}

fn with_log<T>(
    log: &Mutex<LogFile>,
    f: impl FnOnce(&mut LogFile) -> std::io::Result<T>,
) -> Result<T, StorageError> {
    let mut log = log
        .lock()
        .map_err(|_| write_err("Raft log lock poisoned"))?;
    f(&mut log).map_err(write_err)
}

/// One write, one fsync, for all appends of the group. The fsync runs with
/// the log unlocked: readers of older entries do not wait for the disk.
fn write_appends(log: &Mutex<LogFile>, group: &[Append]) -> Result<(), StorageError> {
    let entries: Vec<(u64, &[u8])> = group
        .iter()
        .flat_map(|a| {
            a.rows
                .iter()
                .map(|(index, bytes)| (*index, bytes.as_slice()))
        })
        .collect();
    let commit = group.iter().rev().find_map(|a| a.committed.as_deref());
    with_log(log, |log| log.append(&entries, commit))?
        .run()
        .map_err(write_err)
}
