//! Nodes sharing a CQL database: a registration race across two nodes, a
//! database outage in the middle of registrations, a node started before its
//! database. Each test is `#[ignore]`d: scripts/test-all runs them with
//! `--include-ignored` and TEST_CQL_NODE once Cassandra is up.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::fixture::*;
use usher_load::client::{Auth, Mech};

/// The shared CQL database's contact point; these tests are pointless without it.
fn cql() -> String {
    std::env::var("TEST_CQL_NODE").expect("TEST_CQL_NODE (host:port of a CQL database) must be set")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a CQL database (TEST_CQL_NODE); scripts/test-all runs it"]
async fn two_nodes_race_for_one_username_with_different_invites() {
    let cql = cql();
    let keyspace = format!("usher_race_{}", unique("").replace('-', "_"));
    let node = || {
        TestNode::builder()
            .no_address_limits()
            .fast_hashing()
            .set("USHER_SCYLLA__NODES", &cql)
            .set("USHER_SCYLLA__KEYSPACE", &keyspace)
            .start()
    };
    let nodes = [node(), node()];
    // Ten clients per node, each with its own invite of that node.
    let mut entrants = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        for _ in 0..10 {
            let token = node.invite(&[]);
            entrants.push((n, token.clone(), node.with_invite(&token).await));
        }
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(entrants.len()));
    let tasks: Vec<_> = entrants
        .into_iter()
        .map(|(n, token, mut c)| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                (n, token, c.register("contested", PASSWORD).await.unwrap())
            })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        let (n, token, reply) = t.await.unwrap();
        let show = nodes[n].show(&token);
        if reply.attr("type") == Some("result") {
            winners += 1;
            assert!(show.contains("uses:     1/1 (0 pending, 0 left)"), "{show}");
        } else {
            assert_iq_error(
                &reply,
                "cancel",
                "conflict",
                Some("The requested username already exists."),
            );
            // The loser's reservation was released: the invite is whole again.
            assert!(show.contains("uses:     0/1 (0 pending, 1 left)"), "{show}");
        }
    }
    assert_eq!(winners, 1);
    for node in &nodes {
        assert_eq!(
            node.auth(Mech::ScramSha256, "contested", PASSWORD).await,
            Auth::Success
        );
    }
}

/// A Cassandra of this test's own (another port), stopped when dropped.
struct OwnCql {
    port: u16,
    tls: bool,
}

impl OwnCql {
    /// Runs `cql-db ACTION` for this port: its whole standard output.
    fn cql_db_output(&self, action: &str, keep_data: bool) -> String {
        let out = Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/cluster/cql-db/cql-db"
        ))
        .arg(action)
        .env("CQL_PORT", self.port.to_string())
        .env("CQL_HEAP", "512M")
        .env("CQL_KEEP_DATA", if keep_data { "1" } else { "0" })
        .env("CQL_TLS", if self.tls { "1" } else { "0" })
        .output()
        .expect("run cluster/cql-db");
        assert!(
            out.status.success(),
            "cql-db {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Runs `cql-db ACTION`; its last line (the contact point for `start`).
    fn cql_db(&self, action: &str, keep_data: bool) -> String {
        self.cql_db_output(action, keep_data)
            .lines()
            .last()
            .unwrap_or_default()
            .to_owned()
    }
}

impl Drop for OwnCql {
    fn drop(&mut self) {
        let _ = Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/cluster/cql-db/cql-db"
        ))
        .arg("stop")
        .env("CQL_PORT", self.port.to_string())
        .output();
    }
}

/// What one registration attempt of the outage run got back.
#[derive(Debug, Clone, PartialEq)]
enum Attempt {
    Created,
    /// A temporary (`wait`) error: retry later.
    Wait(String),
    Other(String),
}

/// Registers `name` with `token` on a fresh stream.
async fn attempt(node: &TestNode, token: &str, name: &str) -> Attempt {
    let mut c = match usher_load::Client::connect_tls(node.addr, DOMAIN, &node.trust()).await {
        Ok(c) => c,
        Err(e) => return Attempt::Other(format!("connect: {e}")),
    };
    let reply = match c.preauth(token).await {
        Ok(r) if r.attr("type") == Some("result") => match c.register(name, PASSWORD).await {
            Ok(r) => r,
            Err(e) => return Attempt::Other(format!("register: {e}")),
        },
        Ok(r) => r,
        Err(e) => return Attempt::Other(format!("preauth: {e}")),
    };
    if reply.attr("type") == Some("result") {
        return Attempt::Created;
    }
    let kind = reply
        .get_child("error", usher::xmpp::ns::CLIENT)
        .and_then(|e| e.attr("type"))
        .unwrap_or_default();
    let condition = usher_load::client::error_condition(&reply).unwrap_or_default();
    if kind == "wait" {
        Attempt::Wait(condition)
    } else {
        Attempt::Other(format!("{kind}/{condition}"))
    }
}

fn invite_counters(node: &TestNode, token: &str) -> (u64, u64) {
    let out = node.cli(&["show", token, "--json"]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    (
        v["uses"].as_u64().expect("uses"),
        v["pending"].as_u64().expect("pending"),
    )
}

/// Six clients register continuously with one many-use invite while the
/// database is stopped and started again. Checked over the whole history:
/// every answer was a success or a temporary error, the node never exited,
/// registrations resume by themselves, every acknowledged account is whole,
/// and the invite counts exactly the accounts that exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a CQL database (TEST_CQL_NODE); scripts/test-all runs it"]
async fn registrations_survive_a_database_outage() {
    cql();
    let db = OwnCql {
        port: 9142,
        tls: false,
    };
    let contact = db.cql_db("start", false);
    let node = Arc::new(
        TestNode::builder()
            .no_address_limits()
            .fast_hashing()
            .set_all(&[
                ("USHER_SCYLLA__NODES", contact.as_str()),
                ("USHER_SCYLLA__KEYSPACE", "usher_outage"),
                ("USHER_SCYLLA__REQUEST_TIMEOUT", "2s"),
                ("USHER_LEDGER__RESERVATION_LEASE", "3s"),
                ("USHER_LEDGER__JANITOR_INTERVAL", "1s"),
            ])
            .start(),
    );
    let token = node.invite(&["--uses", "100000"]);
    let began = Instant::now();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let history = Arc::new(std::sync::Mutex::new(
        Vec::<(String, Instant, Attempt)>::new(),
    ));
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let (node, token, stop, history) =
                (node.clone(), token.clone(), stop.clone(), history.clone());
            tokio::spawn(async move {
                for i in 0..2_000 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let name = format!("w{w}n{i}");
                    let got = attempt(&node, &token, &name).await;
                    if matches!(got, Attempt::Wait(_)) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    history
                        .lock()
                        .expect("history")
                        .push((name, Instant::now(), got));
                }
            })
        })
        .collect();
    let created = |h: &[(String, Instant, Attempt)], since: Instant| {
        h.iter()
            .filter(|(_, t, a)| *t > since && *a == Attempt::Created)
            .count()
    };

    tokio::time::sleep(Duration::from_secs(2)).await;
    db.cql_db("stop", false);
    let down = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (status, body) = node.http_get("/ready");
    assert_eq!(status, 503, "ready during the outage: {body}");
    assert!(body.contains("storage"), "{body}");

    db.cql_db("start", true);
    let up = Instant::now();
    // No operator action: registrations succeed again once the driver reconnects.
    let deadline = up + Duration::from_secs(90);
    while created(&history.lock().expect("history"), up) < 10 {
        assert!(Instant::now() < deadline, "no recovery:\n{}", node.log());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.await.expect("worker");
    }
    let history = history.lock().expect("history").clone();
    let mut node = Arc::try_unwrap(node).unwrap_or_else(|_| panic!("workers hold the node"));
    assert!(node.is_running(), "the node exited:\n{}", node.log());
    assert_eq!(node.http_get("/ready").0, 200);
    assert!(
        node.log().contains("the CQL database answers again"),
        "{}",
        node.log()
    );

    let others: Vec<_> = history
        .iter()
        .filter(|(_, _, a)| matches!(a, Attempt::Other(_)))
        .collect();
    assert!(
        others.is_empty(),
        "answers other than success or wait: {others:?}"
    );
    let waits = history
        .iter()
        .filter(|(_, t, a)| *t > down && matches!(a, Attempt::Wait(_)))
        .count();
    assert!(waits > 0, "the outage produced no temporary errors");
    assert!(created(&history, began) > 10);

    // Reservations of uncertain writes are settled by the janitor.
    let deadline = Instant::now() + Duration::from_secs(20);
    while invite_counters(&node, &token).1 > 0 {
        assert!(Instant::now() < deadline, "reservations left pending");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Every acknowledged account logs in; an unacknowledged one either does
    // not exist or is whole too; the invite counts exactly the ones that exist.
    let mut existing = 0;
    for (name, _, got) in &history {
        match node.auth(Mech::Plain, name, PASSWORD).await {
            Auth::Success => existing += 1,
            other => assert_ne!(*got, Attempt::Created, "{name} acknowledged but {other:?}"),
        }
    }
    assert_eq!(invite_counters(&node, &token), (existing, 0));
    println!(
        "outage run: {} attempts, {} acknowledged, {waits} temporary errors, {existing} accounts",
        history.len(),
        created(&history, began)
    );
    assert!(node.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a CQL database (TEST_CQL_NODE); scripts/test-all runs it"]
async fn a_node_started_before_its_database_waits_for_it() {
    cql();
    let db = OwnCql {
        port: 9242,
        tls: false,
    };
    let contact = "127.0.0.1:9242";
    let mut node = TestNode::builder()
        .open_registration()
        .no_address_limits()
        .fast_hashing()
        .set("USHER_SCYLLA__NODES", contact)
        .set("USHER_SCYLLA__KEYSPACE", "usher_late")
        .launch();
    // No database yet: the node waits rather than exiting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(node.is_running(), "the node gave up:\n{}", node.log());
    assert!(
        node.log().contains("waiting for the CQL database"),
        "{}",
        node.log()
    );
    // Probes answer meanwhile: alive, not ready, and why.
    assert_eq!(node.http_get("/health").0, 200);
    assert_eq!(
        node.http_get("/ready"),
        (
            503,
            "storage: not connected yet\nledger: not started yet\n".to_owned()
        )
    );
    db.cql_db("start", false);
    node.wait_ready();
    assert_eq!(node.http_get("/ready").0, 200);
    node.register("patient", PASSWORD).await;
    assert_eq!(
        node.auth(Mech::ScramSha256, "patient", PASSWORD).await,
        Auth::Success
    );
}

/// Waits until the node's log mentions `needle`, while it keeps running.
async fn wait_for_log(node: &mut TestNode, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !node.log().contains(needle) {
        assert!(node.is_running(), "the node exited:\n{}", node.log());
        assert!(
            Instant::now() < deadline,
            "no '{needle}' in:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a CQL database (TEST_CQL_NODE); scripts/test-all runs it"]
async fn tls_to_the_database_verifies_the_certificate() {
    cql();
    let db = OwnCql {
        port: 9342,
        tls: true,
    };
    let out = db.cql_db_output("start", false);
    let ca = out
        .lines()
        .find_map(|l| l.strip_prefix("ca: "))
        .expect("cql-db prints the CA")
        .to_owned();
    let contact = out.lines().last().expect("contact point").to_owned();
    let base = [
        ("USHER_SCYLLA__NODES", contact.as_str()),
        ("USHER_SCYLLA__KEYSPACE", "usher_tls"),
        ("USHER_SCYLLA__TLS", "true"),
    ];

    // Trusting the test CA (the certificate names 127.0.0.1): it works.
    let mut env = base.to_vec();
    env.push(("USHER_SCYLLA__TLS_CA_FILE", ca.as_str()));
    let mut node = TestNode::builder()
        .open_registration()
        .no_address_limits()
        .fast_hashing()
        .set_all(&env)
        .start();
    node.register("tls-user", PASSWORD).await;
    assert_eq!(
        node.auth(Mech::ScramSha256, "tls-user", PASSWORD).await,
        Auth::Success
    );
    assert!(node.stop().success());

    // The certificate also names localhost; a name it lacks is refused.
    for (name, works) in [("localhost", true), ("db.example.org", false)] {
        let mut env = base.to_vec();
        env.push(("USHER_SCYLLA__TLS_CA_FILE", ca.as_str()));
        env.push(("USHER_SCYLLA__TLS_SERVER_NAME", name));
        let mut node = TestNode::builder()
            .open_registration()
            .no_address_limits()
            .fast_hashing()
            .set_all(&env)
            .launch();
        if works {
            node.wait_ready();
            assert_eq!(
                node.auth(Mech::Plain, "tls-user", PASSWORD).await,
                Auth::Success
            );
        } else {
            wait_for_log(&mut node, "waiting for the CQL database").await;
            assert_eq!(node.http_get("/ready").0, 503);
        }
    }

    // Without the CA the certificate is not trusted: no storage, no start.
    let mut node = TestNode::builder()
        .open_registration()
        .no_address_limits()
        .fast_hashing()
        .set_all(&base)
        .launch();
    wait_for_log(&mut node, "waiting for the CQL database").await;
    assert!(
        node.log().contains("certificate") || node.log().contains("Certificate"),
        "{}",
        node.log()
    );
    assert_eq!(
        node.http_get("/ready"),
        (
            503,
            "storage: not connected yet\nledger: not started yet\n".to_owned()
        )
    );
}
