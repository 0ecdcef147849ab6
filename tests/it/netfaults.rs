//! Fault scenarios on a real network: three nodes, each in its own network
//! namespace on a bridge (cluster/netns), the faults made by the kernel —
//! nftables drops on the bridge, a link taken down, kill -9 — under a storm of
//! registrations, each run checked over its whole history: no invite used
//! beyond its uses, no acknowledged registration without its account, no lost
//! invite or use, no reservation left pending. Each prints one `NETFAULT` line
//! of measurements; `cluster/soak` runs them many times and tabulates them.
//!
//! Ignored without a CQL database the namespaces reach (TEST_CQL_NODE on the
//! host address, `CQL_LISTEN=$(cluster/netns/netns host-addr) cluster/cql-db/cql-db
//! start`), and they need root; scripts/test-all runs them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::fixture::cluster::Attempt;
use crate::fixture::netns::{wait_dead, Faulted, Scene};

/// One cluster at a time: each is several processes on a small machine.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long a fault stays before it is healed: longer than an election and a
/// reservation lease.
const HOLD: Duration = Duration::from_secs(8);

/// How long a probe may wait for the faulted shard to take registrations again.
const RECOVERY: Duration = Duration::from_secs(30);

/// Sleeps until `since + hold`.
async fn hold_from(since: Instant, hold: Duration) {
    tokio::time::sleep((since + hold).saturating_duration_since(Instant::now())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and a CQL database the namespaces reach (TEST_CQL_NODE); scripts/test-all runs it"]
async fn netns_leader_kill() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let scene = Scene::new(3);
    let s = scene.clone();
    let faults = async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let victim = s.leader(1);
        s.stop_sending_to(victim);
        // SIGKILL: the kernel closes the node's sockets (FIN/RST to its peers).
        s.ok(&["kill", &victim.to_string()]).await;
        let killed = Instant::now();
        let survivor = s.other_than(&[victim]);
        let failover = s.probe(survivor, killed, RECOVERY).await;
        assert!(
            failover.is_some(),
            "no registration on shard {} after the kill",
            s.shard
        );
        s.ok(&["restart", &victim.to_string()]).await;
        let back = Instant::now();
        s.send_to(victim);
        let rejoin = s.probe(victim, back, RECOVERY).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        Faulted {
            via: survivor,
            victim: Some(victim),
            failover,
            rejoin,
            ..Faulted::default()
        }
    };
    let f = scene.run("leader-kill", faults).await;
    assert!(
        f.rejoin.is_some(),
        "the restarted node never served the shard again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and a CQL database the namespaces reach (TEST_CQL_NODE); scripts/test-all runs it"]
async fn netns_kill_mid_saga() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let scene = Scene::new(3);
    let s = scene.clone();
    let faults = async move {
        let victim = 2;
        let mut crashes = Vec::new();
        for failpoint in ["after-reserve", "after-account-write"] {
            tokio::time::sleep(Duration::from_secs(1)).await;
            s.stop_sending_to(victim);
            s.ok(&["stop", "2"]).await;
            s.ok_with(&["restart", "2"], &[("USHER_FAILPOINTS", failpoint)])
                .await;
            // Up by now, so it has said whether it can crash there at all.
            let log =
                std::fs::read_to_string(s.cluster.dir().join("node2.log")).expect("node 2's log");
            assert!(
                !log.contains("this build has no failpoints"),
                "the usher under test has no failpoints (TEST_USHER_BIN a release build?)"
            );
            // The storm's next registration through node 2 aborts it mid-saga.
            s.send_to(victim);
            let died = wait_dead(&s.cluster, victim, Duration::from_secs(30)).await;
            s.stop_sending_to(victim);
            assert!(died, "node 2 did not abort at {failpoint}");
            crashes.push(failpoint);
        }
        s.ok(&["restart", "2"]).await;
        let back = Instant::now();
        s.send_to(victim);
        let rejoin = s.probe(victim, back, RECOVERY).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        Faulted {
            via: 1,
            victim: Some(victim),
            rejoin,
            notes: vec![("crashes".into(), serde_json::json!(crashes))],
            ..Faulted::default()
        }
    };
    let f = scene.run("kill-mid-saga", faults).await;
    assert!(
        f.rejoin.is_some(),
        "node 2 never served registrations again"
    );
}

/// Cuts the faulted shard's leader off with `fault` (a local-cluster command
/// taking the node), holds, heals with `heal`; clients keep coming to the
/// victim unless `reachable` is false. Returns what it measured.
async fn fault_on_leader(
    scene: Arc<Scene>,
    fault: &'static str,
    heal: &'static [&'static str],
    reachable: bool,
) -> Faulted {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let victim = scene.leader(1);
    let survivor = scene.other_than(&[victim]);
    let terms_before = scene.terms(survivor);
    if !reachable {
        scene.stop_sending_to(victim);
    }
    let v = victim.to_string();
    let mut args: Vec<&str> = fault.split(' ').collect();
    args.insert(1, &v);
    scene.ok(&args).await;
    let cut = Instant::now();
    let failover = scene.probe(survivor, cut, RECOVERY).await;
    hold_from(cut, HOLD).await;
    let mut args = heal.to_vec();
    args.insert(1, &v);
    scene.ok(&args).await;
    let healed = Instant::now();
    scene.send_to(victim);
    let rejoin = scene.probe(victim, healed, RECOVERY).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let terms_after = scene.terms(survivor);
    let shard = scene.shard as usize;
    let new_leader = scene.leader(survivor);
    Faulted {
        via: survivor,
        victim: Some(victim),
        failover,
        rejoin,
        notes: vec![
            (
                "term_delta".into(),
                serde_json::json!(terms_after[shard].saturating_sub(terms_before[shard])),
            ),
            (
                "elections".into(),
                serde_json::json!(Scene::elections(&terms_before, &terms_after)),
            ),
            ("leader_after".into(), serde_json::json!(new_leader)),
        ],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and a CQL database the namespaces reach (TEST_CQL_NODE); scripts/test-all runs it"]
async fn netns_partition_isolates_the_leader() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let scene = Scene::new(3);
    // The leader loses its peers (both ways) but not its clients, which keep
    // asking it.
    let f = scene
        .run(
            "partition-isolate",
            fault_on_leader(scene.clone(), "isolate", &["heal"], true),
        )
        .await;
    assert!(
        f.failover.is_some(),
        "the majority never took registrations"
    );
    assert!(
        f.rejoin.is_some(),
        "the healed node never served the shard again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and a CQL database the namespaces reach (TEST_CQL_NODE); scripts/test-all runs it"]
async fn netns_partition_between_leader_and_one_follower() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let scene = Scene::new(3);
    let s = scene.clone();
    let faults = async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let leader = s.leader(1);
        let cut_off = s.other_than(&[leader]);
        let bridge = s.other_than(&[leader, cut_off]);
        let terms_before = s.terms(bridge);
        // Only the leader and one follower lose each other; the third node
        // still reaches both.
        s.ok(&["partition", &leader.to_string(), &cut_off.to_string()])
            .await;
        let cut = Instant::now();
        let through_bridge = s.probe(bridge, cut, RECOVERY).await;
        let through_cut_off = s.probe(cut_off, cut, HOLD).await;
        hold_from(cut, HOLD).await;
        let mid_terms = s.terms(bridge);
        s.ok(&["heal"]).await;
        let healed = Instant::now();
        let rejoin = s.probe(cut_off, healed, RECOVERY).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let terms_after = s.terms(bridge);
        let shard = s.shard as usize;
        Faulted {
            via: bridge,
            victim: Some(cut_off),
            failover: through_bridge,
            rejoin,
            notes: vec![
                (
                    "cut_off_served_ms".into(),
                    serde_json::json!(through_cut_off.map(|d| d.as_millis() as u64)),
                ),
                (
                    "term_delta_during".into(),
                    serde_json::json!(mid_terms[shard].saturating_sub(terms_before[shard])),
                ),
                (
                    "term_delta".into(),
                    serde_json::json!(terms_after[shard].saturating_sub(terms_before[shard])),
                ),
                (
                    "elections".into(),
                    serde_json::json!(Scene::elections(&terms_before, &terms_after)),
                ),
            ],
        }
    };
    let f = scene.run("partition-pair", faults).await;
    assert!(
        f.failover.is_some(),
        "the node that reaches both sides never took registrations"
    );
    assert!(
        f.rejoin.is_some(),
        "the cut-off follower never served the shard again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and a CQL database the namespaces reach (TEST_CQL_NODE); scripts/test-all runs it"]
async fn netns_rolling_restart() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let scene = Scene::new(3);
    let s = scene.clone();
    let faults = async move {
        for i in 1..=3u32 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            s.stop_sending_to(i);
            s.ok(&["stop", &i.to_string()]).await;
            s.ok(&["restart", &i.to_string()]).await;
            s.send_to(i);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let back = Instant::now();
        let rejoin = s.probe(3, back, RECOVERY).await;
        Faulted {
            via: 1,
            rejoin,
            ..Faulted::default()
        }
    };
    let f = scene.run("rolling-restart", faults).await;
    assert!(f.rejoin.is_some(), "no registration after the restarts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and a CQL database the namespaces reach (TEST_CQL_NODE); scripts/test-all runs it"]
async fn netns_join_and_leave_under_load() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let scene = Scene::new(3);
    let s = scene.clone();
    let faults = async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        // Node 4 gets its own namespace on the run's bridge.
        let out = s.ok(&["join", "4"]).await;
        assert!(out.contains("node 4 "), "{out}");
        s.send_to(4);
        tokio::time::sleep(Duration::from_secs(2)).await;
        s.stop_sending_to(1);
        s.ok(&["leave", "1"]).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let status = s.cluster.cli_json(2, &["cluster", "status"]);
        let ids: Vec<u64> = status["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .filter_map(|n| n["node_id"].as_u64())
            .collect();
        assert!(ids.contains(&4) && !ids.contains(&1), "{status}");
        for shard in status["nodes"][0]["shards"].as_array().expect("shards") {
            let voters = shard["voters"].as_array().expect("voters");
            assert!(!voters.contains(&serde_json::json!(1)), "{shard}");
            assert_eq!(voters.len(), 3, "{shard}");
        }
        let back = Instant::now();
        let rejoin = s.probe(4, back, RECOVERY).await;
        Faulted {
            via: 2,
            victim: Some(1),
            rejoin,
            ..Faulted::default()
        }
    };
    let f = scene.run("join-leave", faults).await;
    assert!(f.rejoin.is_some(), "the joined node never served the shard");
    let token = scene.cluster.invite(4, &[]);
    assert_eq!(
        scene.cluster.register(4, &token, "late").await,
        Attempt::Created
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and a CQL database the namespaces reach (TEST_CQL_NODE); scripts/test-all runs it"]
async fn netns_one_way_loss_from_the_leader() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let scene = Scene::new(3);
    let s = scene.clone();
    let faults = async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let victim = s.leader(1);
        let survivor = s.other_than(&[victim]);
        let third = s.other_than(&[victim, survivor]);
        let terms_before = s.terms(survivor);
        // Whatever the leader sends its peers is lost; what they send it
        // arrives. Its clients keep coming.
        for peer in [survivor, third] {
            s.ok(&["oneway", &victim.to_string(), &peer.to_string()])
                .await;
        }
        let cut = Instant::now();
        let failover = s.probe(survivor, cut, RECOVERY).await;
        hold_from(cut, HOLD).await;
        s.ok(&["heal"]).await;
        let healed = Instant::now();
        let rejoin = s.probe(victim, healed, RECOVERY).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let terms_after = s.terms(survivor);
        let shard = s.shard as usize;
        Faulted {
            via: survivor,
            victim: Some(victim),
            failover,
            rejoin,
            notes: vec![
                (
                    "term_delta".into(),
                    serde_json::json!(terms_after[shard].saturating_sub(terms_before[shard])),
                ),
                (
                    "elections".into(),
                    serde_json::json!(Scene::elections(&terms_before, &terms_after)),
                ),
            ],
        }
    };
    let f = scene.run("one-way-loss", faults).await;
    assert!(
        f.failover.is_some(),
        "the followers never took registrations"
    );
    assert!(
        f.rejoin.is_some(),
        "the healed node never served the shard again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and a CQL database the namespaces reach (TEST_CQL_NODE); scripts/test-all runs it"]
async fn netns_stalled_leader_link() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let scene = Scene::new(3);
    // Every frame to and from the leader vanishes — peers, its clients, its
    // database connections — while its link stays up: connections hang
    // half-open, nothing is reset. New clients go elsewhere.
    let f = scene
        .run(
            "stalled-link",
            fault_on_leader(scene.clone(), "stall", &["heal"], false),
        )
        .await;
    assert!(f.failover.is_some(), "the others never took registrations");
    assert!(
        f.rejoin.is_some(),
        "the unstalled node never served the shard again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and a CQL database the namespaces reach (TEST_CQL_NODE); scripts/test-all runs it"]
async fn netns_leader_link_down() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let scene = Scene::new(3);
    // The leader's bridge port goes down: its eth0 loses carrier.
    let f = scene
        .run(
            "link-down",
            fault_on_leader(scene.clone(), "link down", &["link", "up"], false),
        )
        .await;
    assert!(f.failover.is_some(), "the others never took registrations");
    assert!(
        f.rejoin.is_some(),
        "the node whose link came back never served the shard again"
    );
}

/// Issue 14's first bug, reproduced on purpose (README, "Network fault
/// tests"): an account write held up in the network outlives its lease. The
/// janitor, finding no account, fences the name before it releases the use
/// to someone else, so when the held-up write reaches the database it no
/// longer applies: one invite, no more accounts than uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and a CQL database the namespaces reach"]
async fn an_account_write_delayed_past_its_lease_cannot_land_after_the_release() {
    use crate::fixture::cluster::{audit_history, Record};
    let _serial = ONE_AT_A_TIME.lock().await;
    let cluster = crate::fixture::netns::start(3);
    let token = cluster.invite(1, &["--uses", "1"]);
    let shard = crate::fixture::netns::shard_of(&token);
    // Leaders move for a while after the last node joined; the node cut off
    // must not lead the shard, or nobody could settle its hold.
    let mut leader = cluster.leader_of(1, shard) as u32;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = cluster.leader_of(1, shard) as u32;
        if now == leader {
            break;
        }
        leader = now;
    }
    let victim = (1..=3).find(|n| *n != leader).expect("a follower");
    let other = (1..=3)
        .find(|n| *n != leader && *n != victim)
        .expect("another follower");
    // The follower loses the database (and only it): the reservation goes
    // through Raft, the account write waits in its TCP send queue.
    cluster.ok(&["dbcut", &victim.to_string()]);
    let began = Instant::now();
    let first = cluster.register(victim, &token, "late").await;
    let first_took = began.elapsed();
    // The shard's leader settles the hold at lease end (3 s): no account, so
    // the use is released.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = cluster.cli_json(other, &["invite", "show", &token]);
        if v["pending"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the hold never settled: {v}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let second = cluster.register(other, &token, "second").await;
    cluster.ok(&["heal", &victim.to_string()]);
    let healed = Instant::now();
    // The held-up write goes out at the connection's next retransmission.
    let mut landed = None;
    while healed.elapsed() < Duration::from_secs(40) {
        if cluster.can_log_in(other, "late").await {
            landed = Some(healed.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let record = |user: &str, node: u32, outcome: Attempt| Record {
        invite: token.clone(),
        user: user.to_owned(),
        node,
        at: Instant::now(),
        took: Duration::ZERO,
        outcome,
    };
    let history = vec![
        record("late", victim, first.clone()),
        record("second", other, second.clone()),
    ];
    let audit = audit_history(&cluster, other, &history, 1).await;
    println!(
        "first {first:?} after {first_took:?}; second {second:?}; the late write landed {landed:?} after healing; {audit:?}"
    );
    assert!(audit.clean(), "history check: {audit:#?}");
}
