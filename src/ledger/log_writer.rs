//! The one thread that writes a shard's Raft log to disk, in the order the
//! writes were asked for. openraft hands an append over and goes on (it is
//! told through the append's callback when the entries are durable), so its
//! core is not stalled for an fsync; appends that queue up meanwhile go to
//! disk together, in one transaction and one fsync.
//!
//! Truncation, purging and the vote go through the same queue, so none of them
//! can overtake an append asked for before it.
//!
//! The thread holds the database only while it has writes to do: the shard's
//! file closes as soon as its log and state machine are dropped, and can be
//! opened again at once.

// openraft fixes the (large) StorageError type.
#![allow(clippy::result_large_err)]

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use openraft::storage::LogFlushed;
use redb::Database;
use tokio::sync::oneshot;

use super::log_tail::LogTail;
use super::store::{put_meta_bytes, remove_range, write_err, COMMITTED, LOG, META};
use super::types::{LedgerRaft, StorageError};

/// Appends written in one transaction at most (bounds the work behind one
/// fsync; the queue rarely holds more than a few).
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
    /// Removes entries with `from <= index <= to`.
    Remove {
        from: u64,
        to: u64,
        done: Done,
    },
    /// Writes a meta key durably.
    Meta {
        key: &'static str,
        value: Vec<u8>,
        done: Done,
    },
}

#[derive(Clone)]
pub struct LogWriter {
    db: Arc<Database>,
    queue: mpsc::Sender<(Arc<Database>, Op)>,
}

impl LogWriter {
    /// Starts the writer of `db`, which tells `tail` what is on disk; it
    /// stops when every handle is dropped, after the writes already asked for.
    pub fn start(
        db: Arc<Database>,
        tail: Arc<Mutex<LogTail>>,
        shard: u32,
    ) -> std::io::Result<LogWriter> {
        let (queue, ops) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("ledger-log-{shard}"))
            .spawn(move || run(&tail, &ops))?;
        Ok(LogWriter { db, queue })
    }

    fn send(&self, op: Op) -> Result<(), StorageError> {
        self.queue
            .send((self.db.clone(), op))
            .map_err(|_| write_err("the log writer has stopped"))
    }

    /// Queues entries; `append.done` is called once they are durable.
    pub fn append(&self, append: Append) -> Result<(), StorageError> {
        self.send(Op::Append(append))
    }

    /// Removes entries `from..=to` after every write queued before.
    pub async fn remove(&self, from: u64, to: u64) -> Result<(), StorageError> {
        self.call(|done| Op::Remove { from, to, done }).await
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

fn run(tail: &Mutex<LogTail>, ops: &mpsc::Receiver<(Arc<Database>, Op)>) {
    // After a failed write nothing more is written: later entries on disk
    // without the failed ones would leave a hole in the log.
    let mut failed: Option<String> = None;
    let mut next = None;
    loop {
        let (db, op) = match next.take() {
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
                let result = match &failed {
                    Some(why) => Err(write_err(why)),
                    None => write_appends(&db, &group),
                };
                match &result {
                    Ok(()) => {
                        if let (Some(last), Ok(mut tail)) = (group.last(), tail.lock()) {
                            tail.written(last.number);
                        }
                    }
                    Err(e) => {
                        failed.get_or_insert_with(|| e.to_string());
                    }
                }
                for append in group {
                    let outcome = match &result {
                        Ok(()) => Ok(()),
                        Err(e) => Err(std::io::Error::other(e.to_string())),
                    };
                    append.done.log_io_completed(outcome);
                }
            }
            Op::Remove { from, to, done } => {
                let result = match &failed {
                    Some(why) => Err(write_err(why)),
                    None => remove_range(&db, from, to),
                };
                let _ = done.send(result);
            }
            Op::Meta { key, value, done } => {
                let result = match &failed {
                    Some(why) => Err(write_err(why)),
                    None => put_meta_bytes(&db, key, &value),
                };
                let _ = done.send(result);
            }
        }
    }
}

/// One transaction, one fsync, for all appends of the group.
fn write_appends(db: &Database, group: &[Append]) -> Result<(), StorageError> {
    let txn = db.begin_write().map_err(write_err)?;
    {
        let mut table = txn.open_table(LOG).map_err(write_err)?;
        for append in group {
            for (index, bytes) in &append.rows {
                table.insert(index, bytes.as_slice()).map_err(write_err)?;
            }
        }
    }
    if let Some(mark) = group.iter().rev().find_map(|a| a.committed.as_ref()) {
        txn.open_table(META)
            .map_err(write_err)?
            .insert(COMMITTED, mark.as_slice())
            .map_err(write_err)?;
    }
    txn.commit().map_err(write_err)
}
