//! Nodes sharing a CQL database: a registration race across two nodes, a
//! database outage in the middle of registrations, a node started before its
//! database. Built only with `--features cql-tests`, which scripts/test-all
//! passes together with TEST_CQL_NODE once Cassandra is up.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use usher_load::client::{Auth, Mech};

/// The shared CQL database's contact point; these tests are pointless without it.
fn cql() -> String {
    std::env::var("TEST_CQL_NODE").expect("TEST_CQL_NODE (host:port of a CQL database) must be set")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_race_for_one_username_with_different_invites() {
    let cql = cql();
    let keyspace = format!("usher_race_{}", unique("").replace('-', "_"));
    let env = [
        ("USHER_REGISTRATION_INVITE_ONLY", "true"),
        ("USHER_SCYLLA__NODES", cql.as_str()),
        ("USHER_SCYLLA__KEYSPACE", keyspace.as_str()),
    ];
    let nodes = [TestNode::start_with(&env), TestNode::start_with(&env)];
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
            assert!(show.contains("uses:     1/1 (0 pending)"), "{show}");
        } else {
            assert_iq_error(
                &reply,
                "cancel",
                "conflict",
                Some("The requested username already exists."),
            );
            // The loser's reservation was released: the invite is whole again.
            assert!(show.contains("uses:     0/1 (0 pending)"), "{show}");
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
}

impl OwnCql {
    fn cql_db(&self, action: &str, keep_data: bool) -> String {
        let out = Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/cluster/cql-db/cql-db"
        ))
        .arg(action)
        .env("CQL_PORT", self.port.to_string())
        .env("CQL_HEAP", "512M")
        .env("CQL_KEEP_DATA", if keep_data { "1" } else { "0" })
        .output()
        .expect("run cluster/cql-db");
        assert!(
            out.status.success(),
            "cql-db {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_survive_a_database_outage() {
    cql();
    let db = OwnCql { port: 9142 };
    let contact = db.cql_db("start", false);
    let mut node = TestNode::start_with(&[
        ("USHER_SCYLLA__NODES", contact.as_str()),
        ("USHER_SCYLLA__KEYSPACE", "usher_outage"),
        ("USHER_SCYLLA__REQUEST_TIMEOUT", "2s"),
    ]);
    node.register("before", PASSWORD).await;

    db.cql_db("stop", false);
    // Clients get a temporary error; the node stays up.
    let mut refused = Vec::new();
    for i in 0..3 {
        let name = format!("during{i}");
        let mut c = node.connect_tls().await;
        let reply = c.register(&name, PASSWORD).await.unwrap();
        assert_iq_error(&reply, "wait", "internal-server-error", None);
        refused.push(name);
    }
    assert!(
        node.is_running(),
        "the node exited during the outage:\n{}",
        node.log()
    );

    db.cql_db("start", true);
    // No operator action: registrations work again once the driver reconnects.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let mut c = node.connect_tls().await;
        let reply = c.register("after", PASSWORD).await.unwrap();
        if reply.attr("type") == Some("result") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery: {reply:?}\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        node.log().contains("the CQL database answers again"),
        "{}",
        node.log()
    );
    // Every account that exists is whole; the refused ones do not exist.
    for name in ["before", "after"] {
        assert_eq!(
            node.auth(Mech::ScramSha1, name, PASSWORD).await,
            Auth::Success,
            "{name}"
        );
    }
    for name in &refused {
        assert_eq!(
            node.auth(Mech::Plain, name, PASSWORD).await,
            Auth::Failure("not-authorized".into())
        );
    }
    assert!(node.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_before_its_database_waits_for_it() {
    cql();
    let db = OwnCql { port: 9242 };
    let contact = "127.0.0.1:9242";
    let mut node = TestNode::launch(&[
        ("USHER_SCYLLA__NODES", contact),
        ("USHER_SCYLLA__KEYSPACE", "usher_late"),
    ]);
    // No database yet: the node waits rather than exiting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(node.is_running(), "the node gave up:\n{}", node.log());
    assert!(
        node.log().contains("waiting for the CQL database"),
        "{}",
        node.log()
    );
    db.cql_db("start", false);
    node.wait_ready();
    node.register("patient", PASSWORD).await;
    assert_eq!(
        node.auth(Mech::ScramSha256, "patient", PASSWORD).await,
        Auth::Success
    );
}
