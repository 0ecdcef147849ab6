//! The shard actor: the one place commands enter a shard's Raft group.
//! Commands that arrive while entries are being replicated and made durable
//! queue; they go out together as the next entry, so a burst costs one fsync,
//! not one each. A replicated shard keeps two entries in flight (pipelining),
//! so its throughput is not one entry per replication round trip.

use actix::prelude::*;
use tokio::sync::oneshot;

use super::types::{Batch, Raft};
use super::LedgerError;
use crate::invites::{Command, Outcome};

/// Commands per Raft entry at most.
pub const MAX_BATCH: usize = 512;

/// Raft entries of a replicated shard written at once. openraft replicates
/// what is in the log, so while one entry waits for the followers the next
/// is appended and goes in the same AppendEntries. More than 2 measured no
/// faster on 3 nodes, and every extra entry costs a commit on each node.
const REPLICATED_IN_FLIGHT: usize = 2;

pub type Reply = oneshot::Sender<Result<Outcome, LedgerError>>;

pub struct LedgerShard {
    raft: Raft,
    index: u32,
    queue: Vec<(Command, Reply)>,
    in_flight: usize,
    /// Batching can be switched off to measure what it buys (then also one
    /// entry at a time, as before pipelining).
    batching: bool,
}

impl LedgerShard {
    pub fn new(raft: Raft, index: u32, batching: bool) -> Self {
        LedgerShard {
            raft,
            index,
            queue: Vec::new(),
            in_flight: 0,
            batching,
        }
    }

    /// Entries in flight at most: pipelining hides replication round trips; a
    /// shard with no other voter has none to hide, and there more entries in
    /// flight only make smaller batches, each with a commit of its own (a
    /// single node measured 19,000–26,000 pairs/s with one, 11,000 with four).
    fn pipeline_depth(&self) -> usize {
        let metrics = self.raft.metrics();
        let voters = metrics
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .count();
        if voters > 1 {
            REPLICATED_IN_FLIGHT
        } else {
            1
        }
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        let (take, in_flight) = if self.batching {
            (MAX_BATCH, self.pipeline_depth())
        } else {
            (1, 1)
        };
        while self.in_flight < in_flight && !self.queue.is_empty() {
            let n = take.min(self.queue.len());
            // A caller that gave up (its attempt timed out; a forwarding node
            // retries it anyway) is not proposed for: under overload such
            // commands would otherwise pile up as duplicates. Checked as a
            // batch is taken, not over the whole queue on every message.
            let batch: Vec<_> = self
                .queue
                .drain(..n)
                .filter(|(_, reply)| !reply.is_closed())
                .collect();
            if !batch.is_empty() {
                self.write(batch, ctx);
            }
        }
    }

    fn write(&mut self, batch: Vec<(Command, Reply)>, ctx: &mut Context<Self>) {
        let (commands, waiters): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        self.in_flight += 1;
        let raft = self.raft.clone();
        metrics::histogram!(crate::metrics::LEDGER_BATCH_SIZE).record(commands.len() as f64);
        let write = async move {
            let started = std::time::Instant::now();
            let batch = Batch {
                at: crate::clock::now_millis(),
                commands,
            };
            let result = raft.client_write(batch).await;
            metrics::histogram!(crate::metrics::RAFT_COMMIT_SECONDS)
                .record(started.elapsed().as_secs_f64());
            result
        };
        let shard = self.index;
        ctx.spawn(write.into_actor(self).map(move |result, act, ctx| {
            act.in_flight -= 1;
            match result {
                Ok(response) => {
                    for (waiter, outcome) in waiters.into_iter().zip(response.data) {
                        let _ = waiter.send(Ok(outcome));
                    }
                }
                Err(e) => {
                    let error = LedgerError::from_raft(shard, e);
                    for waiter in waiters {
                        let _ = waiter.send(Err(error.clone()));
                    }
                }
            }
            act.flush(ctx);
        }));
    }
}

impl Actor for LedgerShard {
    type Context = Context<Self>;
}

/// Commands to put through Raft, each answered with its outcome once applied.
/// Sent together, they queue together (one entry when the shard is busy).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Propose {
    pub commands: Vec<(Command, Reply)>,
}

impl Handler<Propose> for LedgerShard {
    type Result = ();

    fn handle(&mut self, msg: Propose, ctx: &mut Context<Self>) {
        self.queue.extend(msg.commands);
        self.flush(ctx);
    }
}
