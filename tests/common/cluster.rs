//! A local cluster for tests, run by `cluster/local-cluster` (the operators'
//! tool) with this build's binary and the suite's CQL database; and the
//! registration storm and history checker the fault tests share.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use usher::xmpp::ns;
use usher_load::client::{error_condition, Auth, Mech};
use usher_load::{Client, Trust};

use super::{unique, DOMAIN, PASSWORD};

pub struct ClusterNode {
    pub id: u32,
    pub c2s: SocketAddr,
    pub admin: SocketAddr,
    pub http: SocketAddr,
    pub data_dir: PathBuf,
}

impl ClusterNode {
    pub fn trust(&self) -> Trust {
        Trust::Pinned(usher::c2s::tls::generated_paths(&self.data_dir, DOMAIN).0)
    }
}

pub struct LocalCluster {
    pub nodes: Vec<ClusterNode>,
    dir: tempfile::TempDir,
    base_port: u16,
    keyspace: String,
    env: Vec<(String, String)>,
}

fn script() -> PathBuf {
    // tests/common/ is two levels below the repository root.
    PathBuf::from(file!())
        .parent()
        .and_then(|p| p.parent())
        .and_then(|p| p.parent())
        .map(|root| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(root))
        .unwrap_or_default()
        .join("cluster/local-cluster/local-cluster")
}

fn addr(field: &str) -> SocketAddr {
    field
        .split_once('=')
        .and_then(|(_, a)| a.parse().ok())
        .unwrap_or_else(|| panic!("an address in {field}"))
}

impl LocalCluster {
    /// Starts `n` nodes; `env` adds settings for every node.
    pub fn start(n: usize, env: &[(&str, &str)]) -> LocalCluster {
        let cql = std::env::var("TEST_CQL_NODE")
            .expect("TEST_CQL_NODE (host:port of a CQL database) must be set");
        // Ports of different clusters must not meet, and stay below the
        // ephemeral range (32768 and up) that outgoing connections use.
        static STARTED: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
        let nth = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 4;
        let base_port = 10_000 + (std::process::id() % 50) as u16 * 400 + nth * 100;
        let mut cluster = LocalCluster {
            nodes: Vec::new(),
            dir: tempfile::tempdir().expect("temp dir"),
            base_port,
            keyspace: format!("usher_c_{}", unique("")),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        cluster.env.push(("CQL_NODE".into(), cql));
        let out = cluster.run(&["start", &n.to_string()]);
        assert!(
            out.status.success(),
            "local-cluster start: {}",
            cluster.describe(&out)
        );
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        for line in stdout.lines().filter(|l| l.starts_with("node ")) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let id: u32 = fields[1].parse().expect("node id");
            cluster.nodes.push(ClusterNode {
                id,
                c2s: addr(fields[2]),
                admin: addr(fields[3]),
                http: addr(fields[4]),
                data_dir: cluster.dir.path().join(format!("node{id}")),
            });
        }
        assert_eq!(cluster.nodes.len(), n, "{stdout}");
        cluster
    }

    /// The cluster's state dir: data dirs, logs, pids.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    fn describe(&self, out: &Output) -> String {
        let mut logs = String::new();
        for i in 1..=9 {
            if let Ok(l) = std::fs::read_to_string(self.dir.path().join(format!("node{i}.log"))) {
                let tail: Vec<&str> = l.lines().rev().take(15).collect();
                logs.push_str(&format!("\n--- node{i}.log (last lines)\n"));
                for line in tail.iter().rev() {
                    logs.push_str(line);
                    logs.push('\n');
                }
            }
        }
        format!(
            "{}{}{logs}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Runs the script with this cluster's settings.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &[])
    }

    /// Like `run`, with extra settings for the nodes this call starts.
    pub fn run_with(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        Command::new(script())
            .args(args)
            .env("CLUSTER_DIR", self.dir.path())
            .env("USHER_BIN", super::usher_bin())
            .env("BASE_PORT", self.base_port.to_string())
            .env("USHER_SCYLLA__KEYSPACE", &self.keyspace)
            .env("USHER_SCRAM_ITERATIONS", "4096")
            .env("USHER_LOG", "usher=info,openraft=warn")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra.iter().copied())
            .output()
            .expect("run cluster/local-cluster")
    }

    /// Runs the script and insists it succeeds.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "local-cluster {args:?}: {}",
            self.describe(&out)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Node `id`, including nodes added later with `join` (same address plan:
    /// node 1's address with `id` as its last byte, on loopback or in
    /// network namespaces alike).
    pub fn node(&self, id: u32) -> ClusterNode {
        let net = match self.nodes.first().map(|n| n.c2s.ip()) {
            Some(std::net::IpAddr::V4(ip)) => ip.octets(),
            _ => [127, 0, 0, 1],
        };
        let at = |offset: u16| -> SocketAddr {
            format!(
                "{}.{}.{}.{id}:{}",
                net[0],
                net[1],
                net[2],
                self.base_port + offset
            )
            .parse()
            .expect("an address")
        };
        ClusterNode {
            id,
            c2s: at(22),
            admin: at(90),
            http: at(80),
            data_dir: self.dir.path().join(format!("node{id}")),
        }
    }

    /// `usher ARGS… --server` node `id`.
    pub fn cli(&self, id: u32, args: &[&str]) -> Output {
        let node = self.node(id);
        Command::new(super::usher_bin())
            .args(args)
            .arg("--server")
            .arg(format!("http://{}", node.admin))
            .arg("--token-file")
            .arg(usher::admin::token::token_path(&node.data_dir))
            .output()
            .expect("run the usher CLI")
    }

    pub fn cli_json(&self, id: u32, args: &[&str]) -> serde_json::Value {
        let mut full = args.to_vec();
        full.push("--json");
        let out = self.cli(id, &full);
        assert!(
            out.status.success(),
            "{args:?} on node {id}: {}",
            self.describe(&out)
        );
        serde_json::from_slice(&out.stdout).expect("JSON")
    }

    /// Creates an invite through node `id`; returns its token.
    pub fn invite(&self, id: u32, args: &[&str]) -> String {
        self.try_invite(id, args)
            .unwrap_or_else(|e| panic!("invite create on node {id}: {e}"))
    }

    /// Like `invite`, but a failure (say, a shard without a leader) is returned.
    pub fn try_invite(&self, id: u32, args: &[&str]) -> Result<String, String> {
        let mut full = vec!["invite", "create", "--json"];
        full.extend_from_slice(args);
        let out = self.cli(id, &full);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        v["token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no token in {v}"))
    }

    /// The leader of `shard` as node `via` reports it, waiting out an
    /// election in progress.
    pub fn leader_of(&self, via: u32, shard: u32) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let status = self.cli_json(via, &["cluster", "status"]);
            let leader = status["nodes"][0]["shards"][shard as usize]["leader"]
                .as_u64()
                .unwrap_or(0);
            if leader != 0 {
                return leader;
            }
            assert!(
                Instant::now() < deadline,
                "shard {shard} has no leader: {status}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Registers `user` with `token` through node `id`.
    pub async fn register(&self, id: u32, token: &str, user: &str) -> Attempt {
        attempt(&self.node(id), token, user).await
    }

    /// Whether `user` can log in through node `id`.
    pub async fn can_log_in(&self, id: u32, user: &str) -> bool {
        let node = self.node(id);
        let trust = node.trust();
        let connect = Client::connect_tls(node.c2s, DOMAIN, &trust);
        let Ok(Ok(mut c)) = tokio::time::timeout(Duration::from_secs(15), connect).await else {
            return false;
        };
        matches!(
            c.authenticate(Mech::ScramSha1, user, PASSWORD).await,
            Ok(Auth::Success)
        )
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let _ = self.run(&["stop"]);
    }
}

/// What one registration attempt got back.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    Created,
    /// An error answer: its type and condition.
    Refused(String, String),
    /// No answer (connection refused or cut, timeout).
    NoAnswer(String),
}

pub async fn attempt(node: &ClusterNode, token: &str, user: &str) -> Attempt {
    // A connection into a blackholed link would wait out the kernel's SYN
    // retries (minutes); clients give up sooner.
    let trust = node.trust();
    let connect = Client::connect_tls(node.c2s, DOMAIN, &trust);
    let mut c = match tokio::time::timeout(Duration::from_secs(15), connect).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Attempt::NoAnswer(e.to_string()),
        Err(_) => return Attempt::NoAnswer("no connection within 15 s".into()),
    };
    c.timeout = Duration::from_secs(15);
    let reply = match c.preauth(token).await {
        Ok(r) if r.attr("type") == Some("result") => match c.register(user, PASSWORD).await {
            Ok(r) => r,
            Err(e) => return Attempt::NoAnswer(e.to_string()),
        },
        Ok(r) => r,
        Err(e) => return Attempt::NoAnswer(e.to_string()),
    };
    if reply.attr("type") == Some("result") {
        return Attempt::Created;
    }
    let kind = reply
        .get_child("error", ns::CLIENT)
        .and_then(|e| e.attr("type"))
        .unwrap_or_default()
        .to_owned();
    Attempt::Refused(kind, error_condition(&reply).unwrap_or_default())
}

/// One entry of a storm's history.
#[derive(Debug, Clone)]
pub struct Record {
    pub invite: String,
    pub user: String,
    pub node: u32,
    pub at: Instant,
    /// How long the attempt took, until its answer or its failure.
    pub took: Duration,
    pub outcome: Attempt,
}

/// Registrations by `workers` clients, each picking invites and live nodes in
/// turn, until `stop` is set or `limit` passes. Every attempt is recorded.
pub async fn storm(
    cluster: Arc<LocalCluster>,
    invites: Arc<Vec<String>>,
    alive: Arc<Mutex<Vec<u32>>>,
    workers: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
    limit: Duration,
) -> Vec<Record> {
    let history = Arc::new(Mutex::new(Vec::new()));
    let deadline = Instant::now() + limit;
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (cluster, invites, alive, stop, history) = (
                cluster.clone(),
                invites.clone(),
                alive.clone(),
                stop.clone(),
                history.clone(),
            );
            tokio::spawn(async move {
                for i in 0usize.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) || Instant::now() > deadline
                    {
                        break;
                    }
                    let invite = invites[(w * 7 + i) % invites.len()].clone();
                    let node = {
                        let alive = alive.lock().expect("alive");
                        alive[(w + i) % alive.len()]
                    };
                    let user = format!("w{w}x{i}{}", unique(""));
                    let began = Instant::now();
                    let outcome = cluster.register(node, &invite, &user).await;
                    let pause = !matches!(outcome, Attempt::Created);
                    history.lock().expect("history").push(Record {
                        invite,
                        user,
                        node,
                        at: Instant::now(),
                        took: began.elapsed(),
                        outcome,
                    });
                    if pause {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("storm worker");
    }
    let h = history.lock().expect("history").clone();
    h
}

/// What the history check found, by kind of violation.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Audit {
    pub invites: usize,
    pub acknowledged: usize,
    /// Uses counted beyond an invite's maximum, and accounts beyond its counted uses.
    pub over_redemptions: u64,
    /// Registrations acknowledged to their client whose account does not exist.
    pub acknowledged_without_account: u64,
    /// Invites the ledger no longer knows, and counted uses without an account.
    pub lost_invites: u64,
    /// Invites whose reservations were still pending when the check gave up.
    pub stuck_reservations: u64,
    /// One line per violation, for the failure message.
    pub details: Vec<String>,
}

impl Audit {
    pub fn clean(&self) -> bool {
        self.over_redemptions == 0
            && self.acknowledged_without_account == 0
            && self.lost_invites == 0
            && self.stuck_reservations == 0
    }

    pub fn merge(&mut self, other: Audit) {
        self.invites += other.invites;
        self.acknowledged += other.acknowledged;
        self.over_redemptions += other.over_redemptions;
        self.acknowledged_without_account += other.acknowledged_without_account;
        self.lost_invites += other.lost_invites;
        self.stuck_reservations += other.stuck_reservations;
        self.details.extend(other.details);
    }
}

/// `invite show` through node `via`, retried over a few seconds (an election
/// may be under way); `None` if it never answered (the ledger does not know
/// the invite, or cannot say).
async fn show_invite(cluster: &LocalCluster, via: u32, token: &str) -> Option<serde_json::Value> {
    for _ in 0..10 {
        let out = cluster.cli(via, &["invite", "show", token, "--json"]);
        if out.status.success() {
            if let Ok(v) = serde_json::from_slice(&out.stdout) {
                return Some(v);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    None
}

/// Audits a storm's whole history against the cluster once it settled:
/// reservations all settle, no invite is used beyond its uses (its own
/// maximum, and `max_uses` at most), every acknowledged registration has its
/// account, and each invite counts exactly the accounts that exist (no
/// acknowledged use lost, none counted twice). Violations are counted, not
/// raised: `check_history` raises them.
pub async fn audit_history(
    cluster: &LocalCluster,
    via: u32,
    history: &[Record],
    max_uses: u64,
) -> Audit {
    let mut audit = Audit {
        acknowledged: history
            .iter()
            .filter(|r| r.outcome == Attempt::Created)
            .count(),
        ..Audit::default()
    };
    // Reservations of crashed or unanswered attempts settle at lease end
    // (3 s in these tests) plus a janitor round, give or take an election.
    let deadline = Instant::now() + Duration::from_secs(20);
    let invites: std::collections::BTreeSet<&str> =
        history.iter().map(|r| r.invite.as_str()).collect();
    audit.invites = invites.len();
    for token in invites {
        let shown = loop {
            let Some(v) = show_invite(cluster, via, token).await else {
                break None;
            };
            if v["pending"] == 0 || Instant::now() >= deadline {
                break Some(v);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let Some(v) = shown else {
            audit.lost_invites += 1;
            audit
                .details
                .push(format!("{token}: `invite show` through node {via} failed"));
            continue;
        };
        if v["pending"] != 0 {
            audit.stuck_reservations += 1;
            audit
                .details
                .push(format!("{token}: reservations still pending: {v}"));
        }
        let uses = v["uses"].as_u64().unwrap_or(0);
        let allowed = v["max_uses"].as_u64().unwrap_or(max_uses).min(max_uses);
        if uses > allowed {
            audit.over_redemptions += uses - allowed;
            audit
                .details
                .push(format!("{token} used {uses} times, allowed {allowed}"));
        }
        let mine: Vec<&Record> = history.iter().filter(|r| r.invite == token).collect();
        let mut exists = Vec::with_capacity(mine.len());
        for r in &mine {
            exists.push(cluster.can_log_in(via, &r.user).await);
        }
        let count = |exists: &[bool]| exists.iter().filter(|e| **e).count() as u64;
        let suspect = |exists: &[bool]| {
            count(exists) != uses
                || mine
                    .iter()
                    .zip(exists)
                    .any(|(r, e)| r.outcome == Attempt::Created && !e)
        };
        // One failed login on a busy machine is not yet a missing account:
        // where the counts disagree, the missing ones are asked again.
        if suspect(&exists) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            for (r, e) in mine.iter().zip(exists.iter_mut()) {
                if !*e {
                    *e = cluster.can_log_in(via, &r.user).await;
                }
            }
        }
        for (r, e) in mine.iter().zip(&exists) {
            if r.outcome == Attempt::Created && !e {
                audit.acknowledged_without_account += 1;
                audit.details.push(format!(
                    "{} was acknowledged (node {}) but has no account",
                    r.user, r.node
                ));
            }
        }
        let existing = count(&exists);
        if existing > uses {
            audit.over_redemptions += existing - uses;
            audit.details.push(format!(
                "{token}: {existing} accounts but {uses} counted uses"
            ));
        } else if existing < uses {
            audit.lost_invites += uses - existing;
            audit.details.push(format!(
                "{token}: {uses} counted uses but {existing} accounts"
            ));
        }
    }
    audit
}

/// Checks a storm's whole history (see `audit_history`): any violation fails.
pub async fn check_history(cluster: &LocalCluster, via: u32, history: &[Record], max_uses: u64) {
    let audit = audit_history(cluster, via, history, max_uses).await;
    assert!(audit.clean(), "history check: {audit:#?}");
}
