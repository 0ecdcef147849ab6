//! Forwarded proposals in batches. What this node sends to one shard's leader
//! on one peer waits in an outbox; a few calls may be on their way at once,
//! and whatever arrives meanwhile goes together in the next call. A busy
//! follower so pays one RPC (and the leader one actor message and one entry)
//! per batch, not one per command.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;

use super::failure::from_proto;
use super::proto::ProposeRequest;
use super::{PeerClient, PeerError};
use crate::invites::{Command, Outcome};
use crate::ledger::shard::MAX_BATCH;
use crate::ledger::LedgerError;

/// Calls per outbox on their way at once.
const IN_FLIGHT: usize = 4;

/// A command that waited this long for a free call is answered unreachable
/// without being sent (so its caller may retry: it was never proposed).
const MAX_WAIT: Duration = Duration::from_secs(5);

/// An outbox that carried nothing for this long closes (its task ends and
/// its entry goes), so leaders that moved away or nodes that left cost
/// nothing; the next command to them opens a new one.
const IDLE: Duration = Duration::from_secs(60);

type Answer = Result<Outcome, LedgerError>;

struct Letter {
    command: Command,
    queued: Instant,
    reply: oneshot::Sender<Answer>,
}

type Key = (String, u32);

/// An open outbox: where its letters go in, and which one it is (a closing
/// task removes its own entry, never a newer one under the same key).
struct Open {
    letters: mpsc::UnboundedSender<Letter>,
    generation: u64,
}

type Table = Mutex<HashMap<Key, Open>>;

/// One outbox per (peer address, shard), each drained by a task of its own.
pub struct Outboxes {
    boxes: Arc<Table>,
    opened: AtomicU64,
    idle: Duration,
    /// The sender's fault-injection switch: while set, nothing goes out.
    isolated: Arc<AtomicBool>,
    /// Ask the peer to forward to wherever the shard is led (load tools);
    /// a node sends only to the leader it knows.
    forward: bool,
    /// Calls sent so far, all outboxes together.
    calls: Arc<AtomicU64>,
}

fn unreachable(addr: &str, reason: impl std::fmt::Display) -> LedgerError {
    LedgerError::Unreachable {
        addr: addr.to_owned(),
        reason: reason.to_string(),
    }
}

impl Outboxes {
    pub fn new(isolated: Arc<AtomicBool>, forward: bool) -> Outboxes {
        Outboxes {
            boxes: Arc::default(),
            opened: AtomicU64::new(0),
            idle: IDLE,
            isolated,
            forward,
            calls: Arc::default(),
        }
    }

    /// Calls sent so far (each with one batch).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Outboxes open now.
    pub fn open(&self) -> usize {
        self.boxes.lock().map(|b| b.len()).unwrap_or(0)
    }

    /// Sends `command` for `shard` to the node at `addr` with the next call;
    /// `client` is used only when the outbox is new.
    pub async fn propose(
        &self,
        addr: &str,
        shard: u32,
        command: Command,
        client: impl FnOnce() -> Result<PeerClient, PeerError>,
    ) -> Answer {
        let (tx, rx) = oneshot::channel();
        let letter = Letter {
            command,
            queued: Instant::now(),
            reply: tx,
        };
        {
            let mut boxes = self
                .boxes
                .lock()
                .map_err(|_| unreachable(addr, "outbox table poisoned"))?;
            let key = (addr.to_owned(), shard);
            let letter = match boxes.get(&key) {
                Some(outbox) => match outbox.letters.send(letter) {
                    Ok(()) => None,
                    // Its task ended (a runtime that stopped): open a new one.
                    Err(mpsc::error::SendError(letter)) => Some(letter),
                },
                None => Some(letter),
            };
            if let Some(letter) = letter {
                let peer = client().map_err(|e| unreachable(addr, e))?;
                let (outbox, inbox) = mpsc::unbounded_channel();
                let to = Destination {
                    peer,
                    isolated: self.isolated.clone(),
                    forward: self.forward,
                    calls: self.calls.clone(),
                    addr: addr.to_owned(),
                    shard,
                };
                let generation = self.opened.fetch_add(1, Ordering::Relaxed);
                let closing = Closing {
                    table: Arc::downgrade(&self.boxes),
                    key: key.clone(),
                    generation,
                    idle: self.idle,
                };
                tokio::spawn(drain(to, inbox, closing));
                // A receiver was just made, so this send cannot fail.
                let _ = outbox.send(letter);
                boxes.insert(
                    key,
                    Open {
                        letters: outbox,
                        generation,
                    },
                );
            }
        }
        rx.await
            .unwrap_or_else(|_| Err(unreachable(addr, "the outbox stopped")))
    }
}

/// Where one outbox's calls go.
#[derive(Clone)]
struct Destination {
    peer: PeerClient,
    isolated: Arc<AtomicBool>,
    forward: bool,
    calls: Arc<AtomicU64>,
    addr: String,
    shard: u32,
}

/// How an idle outbox takes itself out of the table.
struct Closing {
    table: Weak<Table>,
    key: Key,
    generation: u64,
    idle: Duration,
}

impl Closing {
    /// Removes this outbox's entry unless a letter came in meanwhile (then
    /// that letter). Under the table's lock, so no letter is sent to an
    /// outbox that is closing: senders only send while holding it.
    fn close(&self, inbox: &mut mpsc::UnboundedReceiver<Letter>) -> Option<Letter> {
        let table = self.table.upgrade()?;
        let mut boxes = table.lock().ok()?;
        if let Ok(letter) = inbox.try_recv() {
            return Some(letter);
        }
        if boxes.get(&self.key).map(|o| o.generation) == Some(self.generation) {
            boxes.remove(&self.key);
        }
        None
    }
}

/// Takes letters as calls become free: each call carries everything that
/// queued while the others were on their way. Ends when the outbox has been
/// idle for `closing.idle` (calls still on their way finish on their own).
async fn drain(to: Destination, mut inbox: mpsc::UnboundedReceiver<Letter>, closing: Closing) {
    let calls = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        let first = match tokio::time::timeout(closing.idle, inbox.recv()).await {
            Ok(Some(letter)) => letter,
            Ok(None) => return,
            Err(_) => match closing.close(&mut inbox) {
                Some(letter) => letter,
                None => return,
            },
        };
        // Calls stuck on a peer that went silent hold their permits for the
        // channel's 10 s timeout; a letter is not kept waiting that long.
        let wait = MAX_WAIT.saturating_sub(first.queued.elapsed());
        let permit = match tokio::time::timeout(wait, calls.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return,
            Err(_) => {
                let _ = first
                    .reply
                    .send(Err(unreachable(&to.addr, "no call free in time")));
                continue;
            }
        };
        let mut batch = Vec::with_capacity(8);
        let mut next = Some(first);
        while let Some(letter) = next.take() {
            if letter.reply.is_closed() {
                // Its caller gave up: nobody waits for the outcome.
            } else if letter.queued.elapsed() > MAX_WAIT {
                let _ = letter
                    .reply
                    .send(Err(unreachable(&to.addr, "no call free in time")));
            } else {
                batch.push(letter);
            }
            if batch.len() < MAX_BATCH {
                next = inbox.try_recv().ok();
            }
        }
        if batch.is_empty() {
            continue;
        }
        metrics::histogram!(crate::metrics::LEDGER_FORWARD_BATCH_SIZE).record(batch.len() as f64);
        let call = send(to.clone(), batch);
        tokio::spawn(async move {
            call.await;
            drop(permit);
        });
    }
}

/// One call with a batch; every letter gets its own answer.
async fn send(to: Destination, batch: Vec<Letter>) {
    let Destination {
        mut peer,
        isolated,
        forward,
        calls,
        addr,
        shard,
    } = to;
    let mut commands = Vec::with_capacity(batch.len());
    let mut letters = Vec::with_capacity(batch.len());
    for letter in batch {
        match serde_json::to_vec(&letter.command) {
            Ok(bytes) => {
                commands.push(bytes);
                letters.push(letter);
            }
            Err(e) => {
                let _ = letter.reply.send(Err(LedgerError::Config(format!(
                    "a command that cannot be encoded: {e}"
                ))));
            }
        }
    }
    if isolated.load(Ordering::Relaxed) {
        for letter in letters {
            let _ = letter.reply.send(Err(unreachable(
                &addr,
                "this node is isolated from its peers (fault injection)",
            )));
        }
        return;
    }
    let request = ProposeRequest {
        shard,
        commands,
        forward,
    };
    calls.fetch_add(1, Ordering::Relaxed);
    let results = match peer.propose(request).await {
        Ok(reply) => reply.into_inner().results,
        Err(status) => {
            let error = unreachable(&addr, status.message());
            for letter in letters {
                let _ = letter.reply.send(Err(error.clone()));
            }
            return;
        }
    };
    if results.len() != letters.len() {
        // A peer that runs something else: nothing can be matched up.
        let error = LedgerError::Config(format!(
            "{addr} answered {} results to {} commands",
            results.len(),
            letters.len()
        ));
        for letter in letters {
            let _ = letter.reply.send(Err(error.clone()));
        }
        return;
    }
    for (letter, result) in letters.into_iter().zip(results) {
        let answer = match result.failure {
            Some(f) => Err(from_proto(shard, &addr, f)),
            None => serde_json::from_slice(&result.outcome)
                .map_err(|e| LedgerError::Config(format!("unreadable outcome from {addr}: {e}"))),
        };
        let _ = letter.reply.send(answer);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::invites::{Rejection, Token};
    use crate::ledger::testing::{reserve, spec};
    use crate::ledger::{LedgerHandle, LedgerOptions};
    use crate::peer::service::{serve, PeerService};
    use crate::peer::{PeerClients, PeerTls, PeerTlsFiles};
    use crate::sessions::SessionDirectory;
    use crate::xmpp::jid::Domain;

    const SECRET: &str = "outbox-test-secret";

    fn tls(dir: &std::path::Path) -> PeerTls {
        crate::peer::tls::generate(dir, &[1], false).unwrap();
        PeerTls::load(&PeerTlsFiles {
            cert: &dir.join("node-1.pem"),
            key: &dir.join("node-1.key"),
            ca: &dir.join("ca.pem"),
        })
        .unwrap()
    }

    /// A node's peer API over a standalone ledger; returns its address.
    async fn leader(dir: &std::path::Path, tls: PeerTls) -> (String, LedgerHandle) {
        let options = LedgerOptions {
            shards: 1,
            ..LedgerOptions::default()
        };
        let ledger = LedgerHandle::open_single(&dir.join("data"), options)
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let service = PeerService {
            ledger: ledger.clone(),
            clients: PeerClients::new(SECRET, tls.clone()).unwrap(),
            directory: Arc::new(SessionDirectory::new(Domain::parse("example.org").unwrap())),
            advertise: addr.clone(),
            replication: 1,
            limits: Default::default(),
        };
        tokio::spawn(serve(
            listener,
            service,
            SECRET.into(),
            tls,
            std::future::pending(),
        ));
        (addr, ledger)
    }

    #[actix_rt::test]
    async fn concurrent_forwards_share_calls_and_each_gets_its_own_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let tls = tls(dir.path());
        let (addr, ledger) = leader(dir.path(), tls.clone()).await;
        let clients = PeerClients::new(SECRET, tls).unwrap();
        let spec = spec(5);
        let token = spec.token.clone();
        let outboxes = Outboxes::new(Arc::default(), false);
        let created = outboxes
            .propose(&addr, 0, Command::Create(spec), || clients.client(&addr))
            .await;
        assert_eq!(created, Ok(Outcome::Created));

        // 200 reservations of a 5-use invite at once, all through one outbox.
        let outboxes = Arc::new(outboxes);
        let tasks: Vec<_> = (0..200)
            .map(|n| {
                let (outboxes, clients, addr) = (outboxes.clone(), clients.clone(), addr.clone());
                let command = reserve(&token, n);
                tokio::spawn(async move {
                    outboxes
                        .propose(&addr, 0, command, || clients.client(&addr))
                        .await
                })
            })
            .collect();
        let mut reserved = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(Outcome::Reserved(_)) => reserved += 1,
                Ok(Outcome::Rejected(Rejection::UsedUp)) => {}
                other => panic!("unexpected answer {other:?}"),
            }
        }
        assert_eq!(reserved, 5);
        let calls = outboxes.calls();
        assert!(calls < 100, "{calls} calls for 201 commands: not batched");
        let held = ledger
            .read(&token, |l| l.get(&token).map(|i| i.reservations.len()))
            .await
            .unwrap();
        assert_eq!(held, Some(5));
        ledger.shutdown().await;
    }

    #[actix_rt::test]
    async fn an_idle_outbox_closes_and_the_next_command_opens_another() {
        let dir = tempfile::tempdir().unwrap();
        let tls = tls(dir.path());
        let (addr, ledger) = leader(dir.path(), tls.clone()).await;
        let clients = PeerClients::new(SECRET, tls).unwrap();
        let mut outboxes = Outboxes::new(Arc::default(), false);
        outboxes.idle = Duration::from_secs(1);
        let spec = spec(2);
        let token = spec.token.clone();
        let propose = |command| outboxes.propose(&addr, 0, command, || clients.client(&addr));
        assert_eq!(propose(Command::Create(spec)).await, Ok(Outcome::Created));
        assert_eq!(outboxes.open(), 1);
        // Busy: it stays while letters keep coming within the idle time.
        for n in 0..3 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = propose(reserve(&token, n)).await;
            assert_eq!(outboxes.open(), 1, "closed while in use");
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(outboxes.open(), 0, "an idle outbox stayed open");
        // A departed leader's outbox is gone; the next command opens one.
        let answer = propose(reserve(&token, 9)).await;
        assert!(matches!(answer, Ok(Outcome::Rejected(_))), "{answer:?}");
        assert_eq!(outboxes.open(), 1);
        ledger.shutdown().await;
    }

    #[actix_rt::test]
    async fn an_outbox_closing_as_letters_arrive_loses_none() {
        let dir = tempfile::tempdir().unwrap();
        let tls = tls(dir.path());
        let (addr, ledger) = leader(dir.path(), tls.clone()).await;
        let clients = PeerClients::new(SECRET, tls).unwrap();
        // Closing whenever it finds the inbox empty: every letter races a close.
        let mut outboxes = Outboxes::new(Arc::default(), false);
        outboxes.idle = Duration::ZERO;
        let outboxes = Arc::new(outboxes);
        let tasks: Vec<_> = (0..200)
            .map(|n| {
                let (outboxes, clients, addr) = (outboxes.clone(), clients.clone(), addr.clone());
                tokio::spawn(async move {
                    if n % 7 == 0 {
                        tokio::task::yield_now().await;
                    }
                    let command = reserve(&Token::generate(), n);
                    outboxes
                        .propose(&addr, 0, command, || clients.client(&addr))
                        .await
                })
            })
            .collect();
        for task in tasks {
            let answer = task.await.unwrap();
            // Unknown invites: each read, applied and answered by the leader.
            assert!(matches!(answer, Ok(Outcome::Rejected(_))), "{answer:?}");
        }
        ledger.shutdown().await;
    }

    #[actix_rt::test]
    async fn a_command_the_leader_cannot_read_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let tls = tls(dir.path());
        let (addr, ledger) = leader(dir.path(), tls.clone()).await;
        let clients = PeerClients::new(SECRET, tls).unwrap();
        let good = || serde_json::to_vec(&reserve(&Token::generate(), 1)).unwrap();
        let request = ProposeRequest {
            shard: 0,
            commands: vec![good(), b"{\"NoSuchCommand\":1}".to_vec(), good()],
            forward: false,
        };
        let results = clients
            .client(&addr)
            .unwrap()
            .propose(request)
            .await
            .unwrap()
            .into_inner()
            .results;
        assert_eq!(results.len(), 3);
        // Unknown invites: read and applied, each answered on its own.
        for r in [&results[0], &results[2]] {
            assert!(r.failure.is_none(), "{:?}", r.failure);
            let outcome: Outcome = serde_json::from_slice(&r.outcome).unwrap();
            assert!(matches!(outcome, Outcome::Rejected(_)), "{outcome:?}");
        }
        let failure = results[1].failure.as_ref().expect("a failure");
        assert_eq!(
            failure.kind,
            crate::peer::proto::ledger_failure::Kind::Config as i32
        );
        assert!(
            failure.message.contains("unreadable command"),
            "{}",
            failure.message
        );
        ledger.shutdown().await;
    }

    #[actix_rt::test]
    async fn an_unreachable_peer_fails_every_command_and_an_isolated_node_sends_none() {
        let dir = tempfile::tempdir().unwrap();
        let clients = PeerClients::new(SECRET, tls(dir.path())).unwrap();
        // Nothing listens on port 1.
        let outboxes = Outboxes::new(Arc::default(), false);
        let answer = outboxes
            .propose("127.0.0.1:1", 0, reserve(&Token::generate(), 1), || {
                clients.client("127.0.0.1:1")
            })
            .await;
        assert!(
            matches!(answer, Err(LedgerError::Unreachable { .. })),
            "{answer:?}"
        );

        let isolated = Arc::new(AtomicBool::new(true));
        let outboxes = Outboxes::new(isolated, false);
        let answer = outboxes
            .propose("127.0.0.1:1", 0, reserve(&Token::generate(), 2), || {
                clients.client("127.0.0.1:1")
            })
            .await;
        assert!(
            matches!(&answer, Err(LedgerError::Unreachable { reason, .. }) if reason.contains("isolated")),
            "{answer:?}"
        );
        assert_eq!(outboxes.calls(), 0);
    }
}
