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

    /// Node `id`, including nodes added later with `join` (same address plan).
    pub fn node(&self, id: u32) -> ClusterNode {
        let at = |offset: u16| -> SocketAddr {
            format!("127.0.0.{id}:{}", self.base_port + offset)
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
        let Ok(mut c) = Client::connect_tls(node.c2s, DOMAIN, &node.trust()).await else {
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
    let mut c = match Client::connect_tls(node.c2s, DOMAIN, &node.trust()).await {
        Ok(c) => c,
        Err(e) => return Attempt::NoAnswer(e.to_string()),
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
                    let outcome = cluster.register(node, &invite, &user).await;
                    let pause = !matches!(outcome, Attempt::Created);
                    history.lock().expect("history").push(Record {
                        invite,
                        user,
                        node,
                        at: Instant::now(),
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

/// Checks a storm's whole history against the cluster once it settled:
/// no invite used beyond its uses, every acknowledged registration has its
/// account, the invite counts exactly the accounts that exist (no
/// acknowledged use lost, none counted twice), and nothing is left pending.
pub async fn check_history(cluster: &LocalCluster, via: u32, history: &[Record], max_uses: u64) {
    // Reservations of crashed or unanswered attempts settle at lease end
    // (3 s in these tests) plus a janitor round, give or take an election.
    let deadline = Instant::now() + Duration::from_secs(20);
    let invites: std::collections::BTreeSet<&str> =
        history.iter().map(|r| r.invite.as_str()).collect();
    for token in &invites {
        loop {
            let v = cluster.cli_json(via, &["invite", "show", token]);
            if v["pending"] == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{token}: reservations still pending: {v}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    for token in invites {
        let v = cluster.cli_json(via, &["invite", "show", token]);
        let uses = v["uses"].as_u64().expect("uses");
        assert!(
            uses <= max_uses,
            "{token} used {uses} times, allowed {max_uses}"
        );
        let mut existing = 0;
        for r in history.iter().filter(|r| r.invite == token) {
            let exists = cluster.can_log_in(via, &r.user).await;
            if r.outcome == Attempt::Created {
                assert!(
                    exists,
                    "{} was acknowledged (node {}) but has no account",
                    r.user, r.node
                );
            }
            if exists {
                existing += 1;
            }
        }
        assert_eq!(existing, uses, "{token}: accounts vs counted uses");
    }
}
