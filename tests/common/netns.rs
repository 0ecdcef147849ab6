//! Fault tests on a real network: a `LocalCluster` whose nodes each run in
//! their own network namespace (cluster/local-cluster with CLUSTER_NET=netns,
//! which drives cluster/netns/netns), faults made by the kernel, a registration
//! storm throughout, and what a run measured — printed as one
//! `NETFAULT {json}` line, which cluster/soak tabulates, before the history
//! check decides the test.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::cluster::{audit_history, storm, Attempt, LocalCluster, Record};
use super::unique;

/// Shards of the test clusters (the default).
pub const SHARDS: u32 = 8;

/// Fast leases so that reservations of cut-off or crashed registrations
/// settle within seconds; no per-address limit, since every client comes from
/// the one bridge address.
pub const FAST: &[(&str, &str)] = &[
    ("USHER_LEDGER__RESERVATION_LEASE", "3s"),
    ("USHER_LEDGER__JANITOR_INTERVAL", "1s"),
    ("USHER_REGISTRATION_INVITE_ONLY", "true"),
    ("USHER_LIMITS__REGISTRATIONS_PER_IP_PER_MINUTE", "0"),
];

/// Uses of the storm's invites, in turn: the workers pick invites evenly, so
/// the small ones run out within seconds and the middle ones tens of seconds
/// in — races for an invite's last uses all through a storm — while the
/// large ones keep sagas running to the end.
const STORM_USES: [u32; 3] = [3, 8, 40];
const STORM_INVITES: usize = 24;

/// A client waits this long for an answer (see `cluster::attempt`); an
/// attempt that took about as long got none.
const CLIENT_PATIENCE: Duration = Duration::from_secs(14);

/// The shard `token` lives on.
pub fn shard_of(token: &str) -> u32 {
    let parsed = usher::invites::Token::parse(token).expect("a token");
    usher::ledger::shard_of(&parsed, SHARDS)
}

/// A cluster of `n` nodes, each in its own network namespace.
pub fn start(n: usize) -> LocalCluster {
    let mut env = FAST.to_vec();
    env.push(("CLUSTER_NET", "netns"));
    LocalCluster::start(n, &env)
}

/// What a scenario's fault script reports back.
#[derive(Debug, Default)]
pub struct Faulted {
    /// The node the history is checked through.
    pub via: u32,
    /// The node the fault hit, if one.
    pub victim: Option<u32>,
    /// From the fault until a registration on the faulted shard succeeded
    /// through a node on the healthy side.
    pub failover: Option<Duration>,
    /// From healing until a registration on the shard succeeded through the
    /// node the fault hit.
    pub rejoin: Option<Duration>,
    /// Anything else worth a column: name, value.
    pub notes: Vec<(String, serde_json::Value)>,
}

/// One scenario run: a cluster, invites for the storm on every shard, and a
/// probe invite on the shard the fault aims at.
pub struct Scene {
    pub cluster: Arc<LocalCluster>,
    pub invites: Vec<String>,
    /// The shard of the first storm invite: faults aim at its leader.
    pub shard: u32,
    /// An invite on `shard` with uses to spare, for failover probes; their
    /// attempts join the history.
    pub probe: String,
    /// Nodes the storm sends clients to.
    pub alive: Arc<Mutex<Vec<u32>>>,
    probes: Mutex<Vec<Record>>,
    probing: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Until the cluster and its invites were ready.
    setup: Duration,
}

impl Scene {
    pub fn new(n: usize) -> Arc<Scene> {
        let began = Instant::now();
        let cluster = Arc::new(start(n));
        let invites: Vec<String> = (0..STORM_INVITES)
            .map(|k| {
                let uses = STORM_USES[k % STORM_USES.len()].to_string();
                cluster.invite(k as u32 % n as u32 + 1, &["--uses", &uses])
            })
            .collect();
        let shard = shard_of(&invites[0]);
        let probe = invite_on_shard(&cluster, shard, 1000);
        Arc::new(Scene {
            cluster,
            invites,
            shard,
            probe,
            alive: Arc::new(Mutex::new((1..=n as u32).collect())),
            probes: Mutex::new(Vec::new()),
            probing: Mutex::new(Vec::new()),
            setup: began.elapsed(),
        })
    }

    /// The leader of the faulted shard, as node `via` sees it.
    pub fn leader(&self, via: u32) -> u32 {
        self.cluster.leader_of(via, self.shard) as u32
    }

    /// A node that is neither of `not`.
    pub fn other_than(&self, not: &[u32]) -> u32 {
        let alive = self.alive.lock().expect("alive");
        *alive
            .iter()
            .find(|n| !not.contains(n))
            .expect("another node")
    }

    pub fn stop_sending_to(&self, node: u32) {
        self.alive.lock().expect("alive").retain(|n| *n != node);
    }

    pub fn send_to(&self, node: u32) {
        let mut alive = self.alive.lock().expect("alive");
        if !alive.contains(&node) {
            alive.push(node);
        }
    }

    /// `local-cluster ARGS`, off the async threads (it may take seconds).
    pub async fn ok(self: &Arc<Self>, args: &[&str]) -> String {
        let me = self.clone();
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            me.cluster.ok(&args)
        })
        .await
        .expect("local-cluster")
    }

    /// Like `ok`, with extra settings for the node it starts.
    pub async fn ok_with(self: &Arc<Self>, args: &[&str], extra: &[(&str, &str)]) {
        let me = self.clone();
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let extra: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let extra: Vec<(&str, &str)> = extra
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let out = me.cluster.run_with(&args, &extra);
            assert!(out.status.success(), "local-cluster {args:?}: {out:?}");
        })
        .await
        .expect("local-cluster");
    }

    /// Registers with the probe invite through `via`, a new client every
    /// half second (so one left hanging does not hide a recovery behind it),
    /// until one registration succeeds, for at most `within`: how long after
    /// `since` the first success came back. Attempts still out go on and join
    /// the history.
    pub async fn probe(
        self: &Arc<Self>,
        via: u32,
        since: Instant,
        within: Duration,
    ) -> Option<Duration> {
        let deadline = Instant::now() + within;
        let (done, mut created) = tokio::sync::mpsc::unbounded_channel();
        loop {
            let me = self.clone();
            let done = done.clone();
            let task = tokio::spawn(async move {
                let user = format!("probe{}", unique(""));
                let began = Instant::now();
                let outcome = me.cluster.register(via, &me.probe, &user).await;
                if outcome == Attempt::Created {
                    let _ = done.send(Instant::now());
                }
                me.probes.lock().expect("probes").push(Record {
                    invite: me.probe.clone(),
                    user,
                    node: via,
                    at: Instant::now(),
                    took: began.elapsed(),
                    outcome,
                });
            });
            self.probing.lock().expect("probing").push(task);
            let pause = tokio::time::sleep(Duration::from_millis(500));
            tokio::select! {
                Some(at) = created.recv() => return Some(at - since),
                _ = pause => {}
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        // The last attempts may still succeed within a client's patience.
        drop(done);
        match tokio::time::timeout(CLIENT_PATIENCE + Duration::from_secs(2), created.recv()).await {
            Ok(Some(at)) => Some(at - since),
            _ => None,
        }
    }

    /// Terms all shards moved on between two `terms` readings: elections.
    pub fn elections(before: &[u64], after: &[u64]) -> u64 {
        before
            .iter()
            .zip(after)
            .map(|(b, a)| a.saturating_sub(*b))
            .sum()
    }

    /// Each shard's term as node `via` reports it.
    pub fn terms(&self, via: u32) -> Vec<u64> {
        let status = self.cluster.cli_json(via, &["cluster", "status"]);
        status["nodes"][0]["shards"]
            .as_array()
            .map(|shards| {
                shards
                    .iter()
                    .map(|s| s["term"].as_u64().unwrap_or(0))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Runs a storm of registrations while `faults` does its work, then audits
    /// the whole history (storm and probes), prints the `NETFAULT` line and
    /// fails on any violation.
    pub async fn run(
        self: &Arc<Self>,
        scenario: &str,
        faults: impl std::future::Future<Output = Faulted>,
    ) -> Faulted {
        let stop = Arc::new(AtomicBool::new(false));
        let began = Instant::now();
        let storm_run = tokio::spawn(storm(
            self.cluster.clone(),
            Arc::new(self.invites.clone()),
            self.alive.clone(),
            6,
            stop.clone(),
            Duration::from_secs(120),
        ));
        let faulted = faults.await;
        stop.store(true, Ordering::Relaxed);
        let history = storm_run.await.expect("storm");
        let storm_secs = began.elapsed().as_secs_f64();
        let probing: Vec<_> = self.probing.lock().expect("probing").drain(..).collect();
        for p in probing {
            p.await.expect("probe");
        }
        let probes = self.probes.lock().expect("probes").clone();
        let audit_began = Instant::now();
        let mut audit = audit_history(&self.cluster, faulted.via, &history, u64::MAX).await;
        audit.merge(audit_history(&self.cluster, faulted.via, &probes, u64::MAX).await);
        let audit_secs = audit_began.elapsed().as_secs_f64();

        let mut refusals: BTreeMap<String, usize> = BTreeMap::new();
        for r in history.iter().chain(&probes) {
            if let Attempt::Refused(kind, condition) = &r.outcome {
                *refusals.entry(format!("{kind}/{condition}")).or_default() += 1;
            }
        }
        let unanswered = |r: &&Record| matches!(r.outcome, Attempt::NoAnswer(_));
        // Attempts left without any answer for a client's whole patience at a
        // node the fault did not cut off: a node that hangs instead of saying no.
        let hung_elsewhere = history
            .iter()
            .chain(&probes)
            .filter(unanswered)
            .filter(|r| Some(r.node) != faulted.victim && r.took >= CLIENT_PATIENCE)
            .count();
        let hung_at_victim = history
            .iter()
            .chain(&probes)
            .filter(unanswered)
            .filter(|r| Some(r.node) == faulted.victim && r.took >= CLIENT_PATIENCE)
            .count();
        let slowest = history
            .iter()
            .chain(&probes)
            .map(|r| r.took)
            .max()
            .unwrap_or_default();
        let mut created: Vec<Instant> = history
            .iter()
            .filter(|r| r.outcome == Attempt::Created)
            .map(|r| r.at)
            .collect();
        created.sort();
        let max_gap = created
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default();
        let ms = |d: Option<Duration>| d.map(|d| d.as_millis() as u64);
        let mut line = serde_json::json!({
            "scenario": scenario,
            "setup_secs": (self.setup.as_secs_f64() * 10.0).round() / 10.0,
            "storm_secs": (storm_secs * 10.0).round() / 10.0,
            "audit_secs": (audit_secs * 10.0).round() / 10.0,
            "attempts": history.len() + probes.len(),
            "acknowledged": audit.acknowledged,
            "no_answer": history.iter().chain(&probes).filter(unanswered).count(),
            "refused": refusals,
            "hung_elsewhere": hung_elsewhere,
            "hung_at_victim": hung_at_victim,
            "slowest_ms": slowest.as_millis() as u64,
            "max_gap_ms": max_gap.as_millis() as u64,
            "failover_ms": ms(faulted.failover),
            "rejoin_ms": ms(faulted.rejoin),
            "victim": faulted.victim,
            "invites": audit.invites,
            "over_redemptions": audit.over_redemptions,
            "acknowledged_without_account": audit.acknowledged_without_account,
            "lost_invites": audit.lost_invites,
            "stuck_reservations": audit.stuck_reservations,
        });
        for (k, v) in &faulted.notes {
            line[k] = v.clone();
        }
        println!("NETFAULT {line}");
        self.keep_logs(&line);
        assert!(audit.clean(), "{scenario}: history check: {audit:#?}");
        let odd: Vec<_> = refusals
            .keys()
            .filter(|k| !k.starts_with("cancel/") && !k.starts_with("wait/"))
            .collect();
        assert!(
            odd.is_empty(),
            "{scenario}: unexpected refusals: {refusals:?}"
        );
        assert!(
            audit.acknowledged > 0,
            "{scenario}: the storm created nothing"
        );
        faulted
    }
}

impl Scene {
    /// With NETFAULT_LOGS set, the nodes' logs and the run's line are copied
    /// there (cluster/soak keeps them for runs that failed).
    fn keep_logs(&self, line: &serde_json::Value) {
        let Some(to) = std::env::var_os("NETFAULT_LOGS") else {
            return;
        };
        let to = std::path::PathBuf::from(to);
        if std::fs::create_dir_all(&to).is_err() {
            return;
        }
        let _ = std::fs::write(to.join("netfault.json"), line.to_string());
        if let Ok(entries) = std::fs::read_dir(self.cluster.dir()) {
            for e in entries.flatten() {
                let name = e.file_name();
                if name.to_string_lossy().ends_with(".log") {
                    let _ = std::fs::copy(e.path(), to.join(name));
                }
            }
        }
    }
}

/// One invite on `shard` with `uses` uses.
pub fn invite_on_shard(cluster: &LocalCluster, shard: u32, uses: u32) -> String {
    let uses = uses.to_string();
    for _ in 0..2000 {
        let token = cluster.invite(1, &["--uses", &uses]);
        if shard_of(&token) == shard {
            return token;
        }
    }
    panic!("no token on shard {shard}");
}

/// Waits until node `id`'s process is gone (as `local-cluster` sees it: its
/// pid no longer exists), for at most `within`.
pub async fn wait_dead(cluster: &LocalCluster, id: u32, within: Duration) -> bool {
    let pid_file = cluster.dir().join(format!("node{id}.pid"));
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
        let pid = pid.trim();
        if pid.is_empty() || !std::path::Path::new("/proc").join(pid).exists() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
