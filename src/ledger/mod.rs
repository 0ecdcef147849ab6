//! The token ledger: invites and their uses, replicated through Raft
//! (openraft). Invites are split over shards by a hash of their token; each
//! shard is its own Raft group with its own log. A standalone node holds every
//! shard as their only voter; in a cluster a node forwards what it cannot
//! decide to the shard's leader (see `Remote`).

mod error;
mod forward;
mod log_file;
mod log_tail;
mod log_writer;
pub mod membership;
mod network;
mod routing;
pub mod shard;
mod store;
#[cfg(test)]
pub(crate) mod testing;
mod timing;
pub mod types;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix::{Actor, Addr};
use async_trait::async_trait;
use openraft::network::RaftNetworkFactory;
use openraft::BasicNode;
use tokio::sync::oneshot;

use crate::invites::{Command, Ledger, Outcome, Token};
use shard::{LedgerShard, Propose};
use store::{LogStore, SmState, StateMachine};
use types::{LedgerRaft, LogId, NodeId, Raft};

pub use network::NoPeers;
pub use routing::{shard_of, shard_of_name};

pub use error::LedgerError;

/// Options of a node's ledger.
#[derive(Debug, Clone)]
pub struct LedgerOptions {
    /// Group commands that arrive together into one Raft entry.
    pub batching: bool,
    /// Shards of the ledger; fixed when the data dir (or cluster) is created.
    pub shards: u32,
    /// Raft entries between snapshots (`ledger.snapshot_every`).
    pub snapshot_every: u64,
    /// `ledger.election_timeout`.
    pub election_timeout: Duration,
}

impl From<&crate::config::LedgerConfig> for LedgerOptions {
    fn from(config: &crate::config::LedgerConfig) -> Self {
        LedgerOptions {
            batching: config.batching,
            shards: config.shards,
            snapshot_every: config.snapshot_every,
            election_timeout: config.election_timeout,
        }
    }
}

impl Default for LedgerOptions {
    fn default() -> Self {
        Self::from(&crate::config::LedgerConfig::default())
    }
}

/// How a node reaches the leader of a shard on another node: proposals and
/// read barriers go there. The peer gRPC client implements it.
#[async_trait]
pub trait Remote: Send + Sync {
    async fn propose(
        &self,
        leader: &BasicNode,
        shard: u32,
        command: Command,
    ) -> Result<Outcome, LedgerError>;

    /// Asks the leader for the log position a linearizable read must wait for.
    async fn read_index(
        &self,
        leader: &BasicNode,
        shard: u32,
    ) -> Result<Option<LogId>, LedgerError>;

    async fn change_members(
        &self,
        leader: &BasicNode,
        shard: u32,
        change: membership::Change,
    ) -> Result<(), LedgerError>;
}

/// One shard as this node holds it.
pub struct Shard {
    pub index: u32,
    actor: Addr<LedgerShard>,
    pub raft: Raft,
    state: Arc<RwLock<SmState>>,
}

struct Inner {
    shards: Vec<Shard>,
    node_id: NodeId,
    remote: Option<Arc<dyn Remote>>,
}

/// How the rest of the node talks to the ledger.
#[derive(Clone)]
pub struct LedgerHandle {
    inner: Arc<Inner>,
}

/// Raft entries per AppendEntries (see where it is set).
const MAX_APPEND_ENTRIES: u64 = 16;

/// How long a proposal keeps looking for a shard leader (an election, a
/// leader that just died) before it reports the ledger unavailable.
const LEADER_WAIT: Duration = Duration::from_secs(10);

/// One attempt on this node's copy of a shard. A leader cut off from its
/// peers would otherwise wait for a quorum forever; whatever it appended
/// without one is never applied, and a use it may hold is settled by the
/// lease janitor.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a membership change keeps looking for the shard's leader.
const MEMBERSHIP_WAIT: Duration = Duration::from_secs(30);

fn storage(what: &str, e: &dyn std::fmt::Display) -> LedgerError {
    LedgerError::Storage(format!("{what}: {e}"))
}

impl LedgerHandle {
    /// Opens (or creates) a standalone node's ledger in `dir`: every shard
    /// with this node as its only voter. Call from the actix System's runtime.
    pub async fn open_single(
        dir: &Path,
        options: LedgerOptions,
    ) -> Result<LedgerHandle, LedgerError> {
        let ledger = Self::open(dir, options, 1, |_| NoPeers, None).await?;
        ledger
            .initialize(BTreeMap::from([(1, BasicNode::default())]))
            .await?;
        ledger.wait_for_leaders(Duration::from_secs(30)).await?;
        Ok(ledger)
    }

    /// Opens every shard's log and state machine in `dir` and starts its Raft
    /// group with `network(shard)` to reach peers. Groups start uninitialized on a new
    /// data dir: see `initialize`, or let a cluster's leader add this node.
    pub async fn open<N>(
        dir: &Path,
        options: LedgerOptions,
        node_id: NodeId,
        network: impl Fn(u32) -> N,
        remote: Option<Arc<dyn Remote>>,
    ) -> Result<LedgerHandle, LedgerError>
    where
        N: RaftNetworkFactory<LedgerRaft>,
    {
        let shard_dir = dir.join("ledger");
        std::fs::create_dir_all(&shard_dir).map_err(|e| storage("creating the ledger dir", &e))?;
        check_shard_count(&shard_dir, options.shards)?;
        let mut shards = Vec::new();
        for index in 0..options.shards {
            let db = store::open_database(&shard_dir.join(format!("shard-{index}.redb")))
                .map_err(|e| storage(&format!("opening shard {index}"), &e))?;
            let log = LogStore::open(
                db.clone(),
                &shard_dir.join(format!("shard-{index}.log")),
                index,
            )
            .map_err(|e| storage(&format!("opening the Raft log of shard {index}"), &e))?;
            let sm = StateMachine::open(db).map_err(|e| storage("loading the snapshot", &e))?;
            let state = sm.state.clone();
            let timers = timing::RaftTimers::for_election_timeout(options.election_timeout);
            let config = openraft::Config {
                cluster_name: format!("usher-ledger-{index}"),
                heartbeat_interval: timers.heartbeat_ms,
                election_timeout_min: timers.election_min_ms,
                election_timeout_max: timers.election_max_ms,
                // openraft gives an AppendEntries one heartbeat interval to
                // answer, however big it is; an entry is a batch of up to 512
                // commands, so its default of 300 entries per append (up to
                // ~40 MB of JSON) cannot travel in 250 ms, and a follower that
                // fell behind would time out on every catch-up append.
                max_payload_entries: MAX_APPEND_ENTRIES,
                snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(options.snapshot_every),
                ..Default::default()
            }
            .validate()
            .map_err(|e| LedgerError::Config(format!("raft settings: {e}")))?;
            let raft = Raft::new(node_id, Arc::new(config), network(index), log, sm)
                .await
                .map_err(|e| storage("starting raft", &e))?;
            let actor = LedgerShard::new(raft.clone(), index, options.batching).start();
            shards.push(Shard {
                index,
                actor,
                raft,
                state,
            });
        }
        Ok(LedgerHandle {
            inner: Arc::new(Inner {
                shards,
                node_id,
                remote,
            }),
        })
    }

    /// Makes `members` the voters of every shard not initialized yet (the
    /// first node of a cluster, or a standalone node).
    pub async fn initialize(
        &self,
        members: BTreeMap<NodeId, BasicNode>,
    ) -> Result<(), LedgerError> {
        for shard in &self.inner.shards {
            let initialized = shard
                .raft
                .is_initialized()
                .await
                .map_err(|e| storage("raft state", &e))?;
            if !initialized {
                shard
                    .raft
                    .initialize(members.clone())
                    .await
                    .map_err(|e| LedgerError::Refused {
                        shard: shard.index,
                        reason: format!("initializing: {e}"),
                    })?;
            }
        }
        Ok(())
    }

    /// Waits until every shard knows a leader.
    pub async fn wait_for_leaders(&self, limit: Duration) -> Result<(), LedgerError> {
        for shard in &self.inner.shards {
            shard
                .raft
                .wait(Some(limit))
                .metrics(|m| m.current_leader.is_some(), "a shard leader")
                .await
                .map_err(|_| LedgerError::Timeout {
                    shard: shard.index,
                    what: "electing a leader",
                    after: limit,
                })?;
        }
        Ok(())
    }

    pub fn node_id(&self) -> NodeId {
        self.inner.node_id
    }

    pub fn shards(&self) -> &[Shard] {
        &self.inner.shards
    }

    pub fn shard_count(&self) -> u32 {
        self.inner.shards.len() as u32
    }

    /// The shard holding `token`.
    pub fn shard_for(&self, token: &Token) -> u32 {
        shard_of(token, self.shard_count())
    }

    /// A fresh token that falls in `shard` (for invites that must live
    /// beside others, see `Ledger::mint`).
    pub fn token_in_shard(&self, shard: u32) -> Token {
        loop {
            let token = Token::generate();
            if self.shard_for(&token) == shard {
                return token;
            }
        }
    }

    /// Puts one command through Raft on its shard (a sweep on every shard);
    /// returns its outcome once applied.
    pub async fn propose(&self, command: Command) -> Result<Outcome, LedgerError> {
        let started = std::time::Instant::now();
        let outcome = match command.token() {
            Some(token) => {
                let shard = self.shard_for(token);
                self.propose_to(shard, command).await
            }
            None => {
                let mut total = 0u32;
                for shard in 0..self.shard_count() {
                    match self.propose_to(shard, command.clone()).await? {
                        Outcome::Swept(n) | Outcome::RevokedAll(n) => {
                            total = total.saturating_add(n)
                        }
                        _ => {}
                    }
                }
                Ok(match command {
                    Command::RevokeUser { .. } => Outcome::RevokedAll(total),
                    _ => Outcome::Swept(total),
                })
            }
        };
        metrics::histogram!(crate::metrics::LEDGER_PROPOSAL_SECONDS)
            .record(started.elapsed().as_secs_f64());
        outcome
    }

    /// Proposes on `shard`: locally when this node leads it, else on its
    /// leader, waiting out elections for a while.
    pub async fn propose_to(&self, shard: u32, command: Command) -> Result<Outcome, LedgerError> {
        self.on_leader(shard, LEADER_WAIT, forward::Propose(&command))
            .await
    }

    /// Proposes on this node's copy of `shard`; `NotLeader` if it does not lead it.
    pub async fn propose_local(
        &self,
        shard: u32,
        command: Command,
    ) -> Result<Outcome, LedgerError> {
        let mut outcomes = self.propose_local_many(shard, vec![command]).await;
        outcomes
            .pop()
            .unwrap_or(Err(LedgerError::Stopped { shard }))
    }

    /// Like `propose_local` for several commands at once: they enter the
    /// shard together (one entry when it is busy). One result per command, in
    /// order; the attempt's timeout counts for all of them.
    pub async fn propose_local_many(
        &self,
        shard: u32,
        commands: Vec<Command>,
    ) -> Vec<Result<Outcome, LedgerError>> {
        let index = shard;
        let n = commands.len();
        let all = |e: LedgerError| (0..n).map(|_| Err(e.clone())).collect::<Vec<_>>();
        let shard = match self.shard(index) {
            Ok(s) => s,
            Err(e) => return all(e),
        };
        let (entries, replies): (Vec<_>, Vec<_>) = commands
            .into_iter()
            .map(|command| {
                let (tx, rx) = oneshot::channel();
                ((command, tx), rx)
            })
            .unzip();
        let stopped = LedgerError::Stopped { shard: index };
        if shard
            .actor
            .send(Propose { commands: entries })
            .await
            .is_err()
        {
            return all(stopped);
        }
        let deadline = tokio::time::Instant::now() + ATTEMPT_TIMEOUT;
        let mut outcomes = Vec::with_capacity(n);
        for reply in replies {
            outcomes.push(match tokio::time::timeout_at(deadline, reply).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) => Err(stopped.clone()),
                Err(_) => Err(LedgerError::Timeout {
                    shard: index,
                    what: "a proposal",
                    after: ATTEMPT_TIMEOUT,
                }),
            });
        }
        outcomes
    }

    fn remote(&self) -> Option<&Arc<dyn Remote>> {
        self.inner.remote.as_ref()
    }

    fn shard(&self, index: u32) -> Result<&Shard, LedgerError> {
        self.inner
            .shards
            .get(index as usize)
            .ok_or(LedgerError::NoSuchShard(index))
    }

    /// Reads the shard of `token` linearizably: everything committed before
    /// the call is visible.
    pub async fn read<T>(
        &self,
        token: &Token,
        f: impl FnOnce(&Ledger) -> T,
    ) -> Result<T, LedgerError> {
        let shard = self.shard_for(token);
        self.barrier(shard).await?;
        self.read_now(shard, f)
    }

    /// Reads every shard linearizably; one answer per shard.
    pub async fn read_all<T>(&self, f: impl Fn(&Ledger) -> T) -> Result<Vec<T>, LedgerError> {
        self.read_each(|_, l| f(l)).await
    }

    /// Like `read_all`, telling `f` which shard it reads.
    pub async fn read_each<T>(&self, f: impl Fn(u32, &Ledger) -> T) -> Result<Vec<T>, LedgerError> {
        let mut out = Vec::with_capacity(self.inner.shards.len());
        for shard in 0..self.shard_count() {
            self.barrier(shard).await?;
            out.push(self.read_now(shard, |l| f(shard, l))?);
        }
        Ok(out)
    }

    /// This node's copy of a shard as applied so far, without a barrier.
    pub fn read_now<T>(&self, shard: u32, f: impl FnOnce(&Ledger) -> T) -> Result<T, LedgerError> {
        let state = self
            .shard(shard)?
            .state
            .read()
            .map_err(|_| LedgerError::Storage(format!("shard {shard}: state lock poisoned")))?;
        Ok(f(&state.ledger))
    }

    /// Waits until this node's copy of `shard` has applied everything the
    /// leader had committed when the barrier started (a read index).
    async fn barrier(&self, index: u32) -> Result<(), LedgerError> {
        let shard = self.shard(index)?;
        let read_index = self
            .on_leader(index, LEADER_WAIT, forward::ReadIndex)
            .await?;
        let Some(log_id) = read_index else {
            return Ok(());
        };
        shard
            .raft
            .wait(Some(LEADER_WAIT))
            .applied_index_at_least(Some(log_id.index), "read index")
            .await
            .map(|_| ())
            .map_err(|_| LedgerError::Timeout {
                shard: index,
                what: "catching up for a read",
                after: LEADER_WAIT,
            })
    }

    /// On the leader of `shard`: confirms leadership with a quorum and returns
    /// the log position a linearizable read must wait for.
    pub async fn read_index_local(&self, index: u32) -> Result<Option<LogId>, LedgerError> {
        let shard = self.shard(index)?;
        let answer = tokio::time::timeout(ATTEMPT_TIMEOUT, shard.raft.get_read_log_id())
            .await
            .map_err(|_| LedgerError::Timeout {
                shard: index,
                what: "confirming leadership",
                after: ATTEMPT_TIMEOUT,
            })?;
        answer
            .map(|(read_log_id, _applied)| read_log_id)
            .map_err(|e| LedgerError::from_raft(index, e))
    }

    /// Whether every shard has a leader this node knows of.
    pub fn all_shards_led(&self) -> bool {
        self.inner
            .shards
            .iter()
            .all(|s| s.raft.metrics().borrow().current_leader.is_some())
    }

    /// The shards this node leads now.
    pub fn led_here(&self) -> Vec<u32> {
        self.inner
            .shards
            .iter()
            .filter(|s| s.raft.metrics().borrow().current_leader == Some(self.inner.node_id))
            .map(|s| s.index)
            .collect()
    }

    pub async fn shutdown(&self) {
        for shard in &self.inner.shards {
            let _ = shard.raft.shutdown().await;
        }
    }
}

/// The shard count is part of the data: a token's shard must never change.
fn check_shard_count(dir: &Path, shards: u32) -> Result<(), LedgerError> {
    if shards == 0 {
        return Err(LedgerError::Config(
            "ledger.shards must be at least 1".into(),
        ));
    }
    let path = dir.join("shards");
    match std::fs::read_to_string(&path) {
        Ok(stored) => match stored.trim().parse::<u32>() {
            Ok(n) if n == shards => Ok(()),
            Ok(n) => Err(LedgerError::Config(format!(
                "ledger.shards is {shards} but {} was created with {n} shards; the count cannot change",
                dir.display()
            ))),
            Err(_) => Err(LedgerError::Config(format!(
                "{} is not a shard count",
                path.display()
            ))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::write(&path, format!("{shards}\n"))
            .map_err(|e| storage("recording the shard count", &e)),
        Err(e) => Err(storage("reading the shard count", &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{reserve, spec};
    use super::*;

    #[actix_rt::test]
    async fn races_persistence_and_batching() {
        let dir = tempfile::tempdir().unwrap();
        let options = LedgerOptions {
            batching: true,
            shards: 4,
            ..LedgerOptions::default()
        };
        let ledger = LedgerHandle::open_single(dir.path(), options.clone())
            .await
            .unwrap();
        let s = spec(5);
        let token = s.token.clone();
        assert_eq!(
            ledger.propose(Command::Create(s)).await.unwrap(),
            Outcome::Created
        );

        // 40 concurrent reservations of a 5-use invite: exactly 5 get one.
        let tasks: Vec<_> = (0..40)
            .map(|n| {
                let ledger = ledger.clone();
                let token = token.clone();
                actix_rt::spawn(async move { ledger.propose(reserve(&token, n)).await })
            })
            .collect();
        let mut reserved = Vec::new();
        for (n, t) in tasks.into_iter().enumerate() {
            if matches!(t.await.unwrap().unwrap(), Outcome::Reserved(_)) {
                reserved.push(n);
            }
        }
        assert_eq!(reserved.len(), 5);
        for n in &reserved {
            let id = format!("res-{n}");
            assert_eq!(
                ledger
                    .propose(Command::Commit {
                        token: token.clone(),
                        reservation: id.into(),
                    })
                    .await
                    .unwrap(),
                Outcome::Committed
            );
        }
        let uses = ledger
            .read(&token, |l| l.get(&token).map(|i| i.uses))
            .await
            .unwrap();
        assert_eq!(uses, Some(5));
        ledger.shutdown().await;
        drop(ledger);

        // Reopened from disk: the uses are still there.
        let ledger = LedgerHandle::open_single(dir.path(), options)
            .await
            .unwrap();
        let uses = ledger
            .read(&token, |l| l.get(&token).map(|i| i.uses))
            .await
            .unwrap();
        assert_eq!(uses, Some(5));
        assert_eq!(
            ledger.propose(reserve(&token, 99)).await.unwrap(),
            Outcome::Rejected(crate::invites::Rejection::UsedUp)
        );
        ledger.shutdown().await;
    }
}
