//! The shard actor: the one place commands enter a shard's Raft group. While
//! one entry is being replicated and made durable, new commands queue; they go
//! out together as the next entry, so a burst costs one fsync, not one each.

use actix::prelude::*;
use tokio::sync::oneshot;

use super::types::{Batch, Raft};
use super::LedgerError;
use crate::invites::{Command, Outcome};

/// Commands per Raft entry at most.
const MAX_BATCH: usize = 512;

pub struct LedgerShard {
    raft: Raft,
    index: u32,
    queue: Vec<(Command, oneshot::Sender<Result<Outcome, LedgerError>>)>,
    in_flight: bool,
    /// Batching can be switched off to measure what it buys.
    batching: bool,
}

impl LedgerShard {
    pub fn new(raft: Raft, index: u32, batching: bool) -> Self {
        LedgerShard {
            raft,
            index,
            queue: Vec::new(),
            in_flight: false,
            batching,
        }
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight || self.queue.is_empty() {
            return;
        }
        let take = if self.batching { MAX_BATCH } else { 1 };
        let n = take.min(self.queue.len());
        let (commands, waiters): (Vec<_>, Vec<_>) = self.queue.drain(..n).unzip();
        self.in_flight = true;
        let raft = self.raft.clone();
        metrics::histogram!(crate::metrics::LEDGER_BATCH_SIZE).record(n as f64);
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
            act.in_flight = false;
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

/// A command to put through Raft; answered with its outcome once applied.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Propose {
    pub command: Command,
    pub reply: oneshot::Sender<Result<Outcome, LedgerError>>,
}

impl Handler<Propose> for LedgerShard {
    type Result = ();

    fn handle(&mut self, msg: Propose, ctx: &mut Context<Self>) {
        self.queue.push((msg.command, msg.reply));
        self.flush(ctx);
    }
}
