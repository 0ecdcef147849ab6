//! The token ledger: invites and their uses, replicated through Raft
//! (openraft). A node runs one shard per Raft group; on a single node that is
//! one group with one voter, on the same code path a cluster uses.

mod janitor;
mod network;
pub mod shard;
mod store;
pub mod types;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix::{Actor, Addr};
use tokio::sync::oneshot;

use crate::invites::{Command, Ledger, Outcome};
use shard::{LedgerShard, Propose};
use store::{LogStore, SmState, StateMachine};
use types::Raft;

pub use janitor::spawn_janitor;

#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    #[error("the invite ledger is unavailable: {0}")]
    Unavailable(String),
}

/// How the rest of the node talks to the ledger.
#[derive(Clone)]
pub struct LedgerHandle {
    shard: Addr<LedgerShard>,
    raft: Raft,
    state: Arc<RwLock<SmState>>,
}

/// Options of a ledger shard.
#[derive(Debug, Clone)]
pub struct LedgerOptions {
    /// Group commands that arrive together into one Raft entry.
    pub batching: bool,
}

impl LedgerHandle {
    /// Opens (or creates) the single-node ledger in `dir` and waits until it
    /// leads its group. Call from the actix System's runtime.
    pub async fn open_single(
        dir: &Path,
        options: LedgerOptions,
    ) -> Result<LedgerHandle, LedgerError> {
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            LedgerError::Unavailable(format!("{what}: {e}"))
        };
        let db = store::open_database(&dir.join("ledger.redb"))
            .map_err(|e| fail("opening ledger.redb", &e))?;
        let log = LogStore::new(db.clone());
        let sm = StateMachine::open(db).map_err(|e| fail("loading the snapshot", &e))?;
        let state = sm.state.clone();
        let config = openraft::Config {
            cluster_name: "usher-ledger".into(),
            heartbeat_interval: 250,
            election_timeout_min: 500,
            election_timeout_max: 1000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| fail("raft config", &e))?;
        let raft = Raft::new(1, Arc::new(config), network::NoPeers, log, sm)
            .await
            .map_err(|e| fail("starting raft", &e))?;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| fail("raft state", &e))?;
        if !initialized {
            let members = BTreeMap::from([(1u64, openraft::BasicNode::default())]);
            raft.initialize(members)
                .await
                .map_err(|e| fail("initializing the ledger", &e))?;
        }
        raft.wait(Some(Duration::from_secs(30)))
            .current_leader(1, "single-node ledger elects itself")
            .await
            .map_err(|e| fail("electing a leader", &e))?;
        let shard = LedgerShard::new(raft.clone(), options.batching).start();
        Ok(LedgerHandle { shard, raft, state })
    }

    /// Puts one command through Raft; returns its outcome once applied.
    pub async fn propose(&self, command: Command) -> Result<Outcome, LedgerError> {
        let started = std::time::Instant::now();
        let (tx, rx) = oneshot::channel();
        self.shard
            .send(Propose { command, reply: tx })
            .await
            .map_err(|e| LedgerError::Unavailable(e.to_string()))?;
        let outcome = rx
            .await
            .map_err(|_| LedgerError::Unavailable("the ledger shard stopped".into()))?;
        metrics::histogram!(crate::metrics::LEDGER_PROPOSAL_SECONDS)
            .record(started.elapsed().as_secs_f64());
        outcome
    }

    /// The node that leads the ledger's group now, if any.
    pub fn leader(&self) -> Option<u64> {
        self.raft.metrics().borrow().current_leader
    }

    /// Reads the ledger linearizably: everything committed before the call is visible.
    pub async fn read<T>(&self, f: impl FnOnce(&Ledger) -> T) -> Result<T, LedgerError> {
        self.raft
            .ensure_linearizable()
            .await
            .map_err(|e| LedgerError::Unavailable(e.to_string()))?;
        let state = self
            .state
            .read()
            .map_err(|_| LedgerError::Unavailable("ledger state lock poisoned".into()))?;
        Ok(f(&state.ledger))
    }

    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }
}

/// Milliseconds since the Unix epoch, for stamping commands.
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invites::{InviteKind, InviteSpec, Purpose, Token};

    fn spec(max_uses: u32) -> InviteSpec {
        InviteSpec {
            token: Token::generate(),
            kind: InviteKind::Group,
            username: None,
            inviter: None,
            allow_registration: false,
            max_uses: Some(max_uses),
            roles: vec![],
            groups: vec!["g".into()],
            created_at: now_millis(),
            expires_at: now_millis() + 60_000,
            created_by: None,
        }
    }

    fn reserve(token: &Token, n: usize) -> Command {
        Command::Reserve {
            token: token.clone(),
            reservation: format!("res-{n}"),
            username: format!("user{n}"),
            purpose: Purpose::Register,
            validated_at: now_millis(),
            lease_until: now_millis() + 60_000,
            node: "test".into(),
            path: crate::invites::RedeemPath::Ibr,
        }
    }

    #[actix_rt::test]
    async fn races_persistence_and_batching() {
        let dir = tempfile::tempdir().unwrap();
        let options = LedgerOptions { batching: true };
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
                    .propose(Command::Commit { reservation: id })
                    .await
                    .unwrap(),
                Outcome::Committed
            );
        }
        let uses = ledger
            .read(|l| l.get(&token).map(|i| i.uses))
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
            .read(|l| l.get(&token).map(|i| i.uses))
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
