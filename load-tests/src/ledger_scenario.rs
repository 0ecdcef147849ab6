//! The `ledger` scenario: reserve+commit pairs straight into the ledger, no
//! XMPP. In-process (a standalone node's ledger in a temp dir) or against a
//! running cluster through its peer API: to each shard's leader, or to any
//! node in turn, which forwards to the leader as it would its own commands.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use tokio::sync::RwLock;

use usher::clock::now_millis;
use usher::invites::{Command, InviteKind, InviteSpec, Outcome, Purpose, RedeemPath, Token};
use usher::ledger::{shard_of, LedgerError, LedgerHandle, LedgerOptions};
use usher::peer::proto::StatusRequest;
use usher::peer::{Outboxes, PeerClients, PeerTls, PeerTlsFiles};

pub struct Options {
    pub count: usize,
    pub concurrency: usize,
    pub batching: bool,
    pub shards: u32,
    pub dir: Option<PathBuf>,
    /// Cluster nodes' peer addresses; empty: in-process.
    pub peers: Vec<String>,
    /// With `peers`: whom commands go to.
    pub through: Through,
    pub secret_file: Option<PathBuf>,
    /// With `peers`: a directory with the cluster CA (`ca.pem`) and a
    /// certificate from it to call with (`client.pem`, `client.key`), as
    /// `usher cluster certs --client` makes them.
    pub peer_tls_dir: Option<PathBuf>,
    pub deadline: Instant,
    pub json: bool,
}

/// Whom a cluster run sends its commands to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Through {
    /// Each shard's leader (learnt from not-leader answers).
    Leaders,
    /// The given nodes in turn, whoever leads the shard: a follower forwards
    /// the command as it would one of its own registrations.
    Any,
}

/// Where commands go.
enum Target {
    Local(LedgerHandle),
    Remote(Box<Remote>),
}

/// Commands go out as a node sends them: queued per node and shard, several
/// per call (`usher::peer::Outboxes`).
struct Remote {
    clients: Arc<PeerClients>,
    entries: Vec<String>,
    through: Through,
    outboxes: Outboxes,
    next: AtomicUsize,
    /// Leader address per shard, learnt from not-leader answers.
    leaders: RwLock<HashMap<u32, String>>,
}

impl Remote {
    async fn send(&self, addr: &str, shard: u32, command: Command) -> Result<Outcome, LedgerError> {
        self.outboxes
            .propose(addr, shard, command, || self.clients.client(addr))
            .await
    }

    async fn propose(&self, shard: u32, command: Command) -> anyhow::Result<Outcome> {
        if self.through == Through::Any {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            let addr = &self.entries[n % self.entries.len()];
            return self
                .send(addr, shard, command)
                .await
                .map_err(|e| anyhow!("shard {shard} via {addr}: {e}"));
        }
        for _ in 0..20 {
            let addr = self
                .leaders
                .read()
                .await
                .get(&shard)
                .cloned()
                .unwrap_or_else(|| self.entries[0].clone());
            match self.send(&addr, shard, command.clone()).await {
                Ok(outcome) => return Ok(outcome),
                Err(LedgerError::NotLeader {
                    leader: Some((_, leader)),
                    ..
                }) if !leader.addr.is_empty() => {
                    self.leaders.write().await.insert(shard, leader.addr);
                }
                Err(LedgerError::NotLeader { .. }) => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => bail!("shard {shard} via {addr}: {e}"),
            }
        }
        bail!("shard {shard}: no leader found")
    }
}

impl Target {
    async fn propose(&self, shards: u32, command: Command) -> anyhow::Result<Outcome> {
        match self {
            Target::Local(ledger) => Ok(ledger.propose(command).await?),
            Target::Remote(remote) => {
                let token = command.token().context("a command with a token")?;
                remote.propose(shard_of(token, shards), command).await
            }
        }
    }
}

/// A token that falls in `shard`.
fn token_in(shard: u32, shards: u32) -> Token {
    loop {
        let t = Token::generate();
        if shard_of(&t, shards) == shard {
            return t;
        }
    }
}

pub async fn run(o: Options) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (target, shards, label) = match o.peers.first() {
        None => {
            let dir = o.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
            let options = LedgerOptions {
                batching: o.batching,
                shards: o.shards,
                ..LedgerOptions::default()
            };
            let ledger = LedgerHandle::open_single(&dir, options).await?;
            let label = format!(
                "ledger reserve+commit, in-process, {} shards, batching {}",
                o.shards,
                if o.batching { "on" } else { "off" }
            );
            (Target::Local(ledger), o.shards, label)
        }
        Some(peer) => {
            let path = o
                .secret_file
                .as_ref()
                .context("--peer needs --secret-file (the cluster secret)")?;
            let secret = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let dir = o
                .peer_tls_dir
                .as_ref()
                .context("--peer needs --peer-tls-dir (ca.pem, client.pem, client.key)")?;
            let (cert, key, ca) = (
                dir.join("client.pem"),
                dir.join("client.key"),
                dir.join("ca.pem"),
            );
            let tls = PeerTls::load(&PeerTlsFiles {
                cert: &cert,
                key: &key,
                ca: &ca,
            })
            .map_err(|e| anyhow!("--peer-tls-dir: {e}"))?;
            let clients = PeerClients::new(secret.trim(), tls).map_err(|e| anyhow!("{e}"))?;
            let status = clients
                .client(peer)
                .map_err(|e| anyhow!("{e}"))?
                .status(StatusRequest {})
                .await
                .map_err(|s| anyhow!("{peer}: {}", s.message()))?
                .into_inner();
            let shards = status.shards.len() as u32;
            if shards == 0 {
                bail!("{peer} reports no shards");
            }
            let voters = status.shards[0].voters.len();
            let via = match o.through {
                Through::Leaders => "the shard leaders".to_owned(),
                Through::Any => format!("any node ({})", o.peers.join(", ")),
            };
            let label = format!(
                "ledger reserve+commit, cluster through {via}, {shards} shards, {voters} voters"
            );
            let remote = Remote {
                clients,
                entries: o.peers.clone(),
                through: o.through,
                outboxes: Outboxes::new(Arc::default(), o.through == Through::Any),
                next: AtomicUsize::new(0),
                leaders: RwLock::new(HashMap::new()),
            };
            (Target::Remote(Box::new(remote)), shards, label)
        }
    };
    // One unlimited invite per shard, so the load spreads over all of them.
    let mut tokens = Vec::new();
    for shard in 0..shards {
        let token = token_in(shard, shards);
        let spec = InviteSpec {
            token: token.clone(),
            kind: InviteKind::Group,
            username: None,
            inviter: None,
            allow_registration: false,
            max_uses: None,
            roles: vec![],
            groups: vec![],
            created_at: now_millis(),
            expires_at: now_millis() + 3_600_000,
            created_by: Some("usher-load".into()),
            generation: None,
        };
        match target.propose(shards, Command::Create(spec)).await? {
            Outcome::Created => tokens.push(token),
            other => bail!("creating the invite of shard {shard}: {other:?}"),
        }
    }
    let target = Arc::new(target);
    let tokens = Arc::new(tokens);
    let run_id = usher::secrets::random_id(6);
    let t2 = target.clone();
    crate::run_closed_loop_as(
        label,
        o.json,
        o.count,
        o.concurrency,
        o.deadline,
        move |i| {
            let (target, tokens, run_id) = (t2.clone(), tokens.clone(), run_id.clone());
            async move {
                let token = tokens[i % tokens.len()].clone();
                let reservation = format!("{run_id}-{i}");
                let reserve = Command::Reserve {
                    token: token.clone(),
                    reservation: reservation.clone().into(),
                    username: user(i),
                    purpose: Purpose::Register,
                    validated_at: now_millis(),
                    lease: 60_000,
                    lease_until: None,
                    operator_bound: false,
                    node: "usher-load".into(),
                    path: RedeemPath::Ibr,
                };
                match target.propose(shards, reserve).await? {
                    Outcome::Reserved(_) => {}
                    other => bail!("reserve: {other:?}"),
                }
                let commit = Command::Commit {
                    token,
                    reservation: reservation.into(),
                };
                match target.propose(shards, commit).await? {
                    Outcome::Committed => Ok(()),
                    other => bail!("commit: {other:?}"),
                }
            }
        },
    )
    .await?;
    if let Target::Local(ledger) = target.as_ref() {
        ledger.shutdown().await;
    }
    Ok(())
}

/// The made-up account of client `i` (always a valid name).
fn user(i: usize) -> usher::xmpp::jid::Username {
    usher::xmpp::jid::Username::parse(&format!("u{i}")).expect("u<number> is a valid username")
}
