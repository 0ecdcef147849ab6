//! A three-node cluster on this machine (cluster/local-cluster), sharing the
//! suite's CQL database: registrations through every node on every shard,
//! and fault scenarios each checked over their whole history. Built only with
//! `--features cql-tests`, like tests/cql.rs.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{check_history, storm, Attempt, LocalCluster};

const SHARDS: u32 = 8;

/// Fast leases so that checks of crashed registrations settle quickly.
const FAST: &[(&str, &str)] = &[
    ("USHER_LEDGER__RESERVATION_LEASE", "3s"),
    ("USHER_LEDGER__JANITOR_INTERVAL", "1s"),
    ("USHER_REGISTRATION_INVITE_ONLY", "true"),
    ("USHER_LIMITS__REGISTRATIONS_PER_IP_PER_MINUTE", "0"),
];

/// `count` invites per shard, created through nodes in turn.
fn invites_on_every_shard(cluster: &LocalCluster, count: usize, uses: u32) -> Vec<String> {
    let mut per_shard = vec![Vec::new(); SHARDS as usize];
    let mut n = 0;
    let uses = uses.to_string();
    while per_shard.iter().any(|v| v.len() < count) {
        let via = (n % cluster.nodes.len()) as u32 + 1;
        n += 1;
        let token = cluster.invite(via, &["--uses", &uses]);
        let parsed = usher::invites::Token::parse(&token).expect("a token");
        let shard = usher::ledger::shard_of(&parsed, SHARDS) as usize;
        if per_shard[shard].len() < count {
            per_shard[shard].push(token);
        }
        assert!(n < 2000, "tokens do not spread over shards");
    }
    per_shard.into_iter().flatten().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_register_through_every_node_on_every_shard() {
    let cluster = LocalCluster::start(3, FAST);
    let status = cluster.cli_json(2, &["cluster", "status"]);
    let nodes = status["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3, "{status}");
    for shard in status["nodes"][0]["shards"].as_array().expect("shards") {
        assert_ne!(shard["leader"], 0, "a shard without a leader: {status}");
        assert_eq!(shard["voters"].as_array().map(Vec::len), Some(3));
    }
    // Each invite is created through one node and redeemed at once through
    // another, three accounts per shard.
    let invites = invites_on_every_shard(&cluster, 1, 3);
    let mut made = Vec::new();
    for (k, token) in invites.iter().enumerate() {
        for j in 0..3u32 {
            let via = ((k as u32 + j + 2) % 3) + 1;
            let user = format!("s{k}u{j}");
            let got = cluster.register(via, token, &user).await;
            assert_eq!(got, Attempt::Created, "{user} through node {via}");
            made.push((user, via));
        }
        // The fourth use is refused wherever it is tried.
        let got = cluster.register(1, token, &format!("s{k}extra")).await;
        assert_eq!(
            got,
            Attempt::Refused("cancel".into(), "item-not-found".into())
        );
    }
    // Accounts are shared: each logs in through the node after the one it
    // registered through.
    for (user, via) in &made {
        let other = via % 3 + 1;
        assert!(
            cluster.can_log_in(other, user).await,
            "{user} on node {other}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_shard_leader_mid_storm_loses_no_use() {
    let cluster = Arc::new(LocalCluster::start(3, FAST));
    let invites = Arc::new(invites_on_every_shard(&cluster, 2, 4));
    let alive = Arc::new(Mutex::new(vec![1, 2, 3]));
    let stop = Arc::new(AtomicBool::new(false));
    let run = tokio::spawn(storm(
        cluster.clone(),
        invites.clone(),
        alive.clone(),
        8,
        stop.clone(),
        Duration::from_secs(60),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Kill the leader of the shard of the first invite.
    let first = usher::invites::Token::parse(&invites[0]).expect("token");
    let shard = usher::ledger::shard_of(&first, SHARDS);
    let victim = cluster.leader_of(1, shard) as u32;
    assert_ne!(victim, 0);
    alive.lock().expect("alive").retain(|n| *n != victim);
    cluster.ok(&["kill", &victim.to_string()]);
    let killed_at = Instant::now();
    let survivor = alive.lock().expect("alive")[0];
    // The shard gets a new leader and takes registrations again within seconds.
    let mut recovered = None;
    for k in 0..100 {
        let user = format!("probe{k}");
        // A fresh invite on the shard whose leader died.
        let fresh = loop {
            match cluster.try_invite(survivor, &["--uses", "1"]) {
                Ok(t)
                    if usher::invites::Token::parse(&t)
                        .is_some_and(|p| usher::ledger::shard_of(&p, SHARDS) == shard) =>
                {
                    break t
                }
                _ => {}
            }
        };
        if cluster.register(survivor, &fresh, &user).await == Attempt::Created {
            recovered = Some(killed_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let recovered = recovered.expect("no registration succeeded after the kill");
    println!("first registration {recovered:?} after killing node {victim}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let history = run.await.expect("storm");
    let created = history
        .iter()
        .filter(|r| r.outcome == Attempt::Created)
        .count();
    assert!(created > 0, "the storm created nothing");
    check_history(&cluster, survivor, &history, 4).await;
    println!(
        "storm: {} attempts, {created} acknowledged, recovery {recovered:?}",
        history.len()
    );
    assert!(
        recovered < Duration::from_secs(10),
        "recovery took {recovered:?}"
    );
}
