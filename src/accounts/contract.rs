//! What every AccountStore must do, as one test suite run against each store.

use std::sync::Arc;

use super::{Account, AccountStore, CreateOutcome, Credentials, RosterItem, Subscription};
use crate::xmpp::jid::Username;
use crate::xmpp::sasl::HashAlg;

fn account(name: &str, password: &str) -> Account {
    Account {
        username: Username::parse(name).unwrap(),
        credentials: Credentials::derive(password, 4096, &HashAlg::ALL),
        created_at: 1_700_000_000,
        roles: vec!["tester".into()],
        reservation: Some(format!("res-{name}").into()),
    }
}

fn user(name: &str) -> Username {
    Username::parse(name).expect("valid test username")
}

/// Runs every check; `prefix` keeps names apart when stores are shared.
pub async fn exercise(store: Arc<dyn AccountStore>, prefix: &str) {
    let name = |n: &str| format!("{prefix}{n}");
    let alice = user(&name("alice"));

    // Create once; a second create of the name is refused, and changes nothing.
    assert_eq!(
        store
            .create(account(&name("alice"), "pw-one"))
            .await
            .unwrap(),
        CreateOutcome::Created
    );
    assert_eq!(
        store
            .create(account(&name("alice"), "pw-two"))
            .await
            .unwrap(),
        CreateOutcome::AlreadyExists
    );
    let got = store.get(&alice).await.unwrap().expect("alice exists");
    assert!(got
        .credentials
        .keys(HashAlg::Sha256)
        .unwrap()
        .verify_password(HashAlg::Sha256, "pw-one"));
    assert!(got
        .credentials
        .keys(HashAlg::Sha1)
        .unwrap()
        .verify_password(HashAlg::Sha1, "pw-one"));
    assert_eq!(got.roles, ["tester"]);
    assert_eq!(got.created_at, 1_700_000_000);
    assert_eq!(
        got.reservation.as_deref(),
        Some(format!("res-{}", name("alice")).as_str())
    );
    assert!(store.get(&user(&name("nobody"))).await.unwrap().is_none());

    // Credentials change only on existing accounts; a reset records its reservation.
    let new = Credentials::derive("pw-new", 4096, &HashAlg::ALL);
    assert!(store
        .set_credentials(&alice, new.clone(), None)
        .await
        .unwrap());
    let got = store.get(&alice).await.unwrap().unwrap();
    assert!(got
        .credentials
        .keys(HashAlg::Sha256)
        .unwrap()
        .verify_password(HashAlg::Sha256, "pw-new"));
    assert_eq!(
        got.reservation.as_deref(),
        Some(format!("res-{}", name("alice")).as_str())
    );
    assert!(store
        .set_credentials(&alice, new.clone(), Some("reset-1".into()))
        .await
        .unwrap());
    assert_eq!(
        store
            .get(&alice)
            .await
            .unwrap()
            .unwrap()
            .reservation
            .as_deref(),
        Some("reset-1")
    );
    assert!(!store
        .set_credentials(&user(&name("ghost")), new, None)
        .await
        .unwrap());

    // Rosters: per user, items replaced whole, removed once.
    let bob = user(&name("bob"));
    store.create(account(&name("bob"), "pw")).await.unwrap();
    let mut item = RosterItem::new("carol@localhost");
    item.subscription = Subscription::Both;
    item.groups = vec!["Friends".into()];
    store.put_roster_item(&alice, item.clone()).await.unwrap();
    store
        .put_roster_item(&alice, RosterItem::new("dave@localhost"))
        .await
        .unwrap();
    store
        .put_roster_item(&bob, RosterItem::new("erin@localhost"))
        .await
        .unwrap();
    let mut roster = store.roster(&alice).await.unwrap();
    roster.sort_by(|a, b| a.jid.cmp(&b.jid));
    assert_eq!(roster.len(), 2);
    assert_eq!(roster[0], item);
    assert_eq!(
        store.roster_item(&alice, "carol@localhost").await.unwrap(),
        Some(item.clone())
    );
    item.ask = true;
    store.put_roster_item(&alice, item.clone()).await.unwrap();
    assert_eq!(
        store.roster_item(&alice, "carol@localhost").await.unwrap(),
        Some(item)
    );
    assert!(store
        .remove_roster_item(&alice, "dave@localhost")
        .await
        .unwrap());
    assert!(!store
        .remove_roster_item(&alice, "dave@localhost")
        .await
        .unwrap());
    assert_eq!(store.roster(&bob).await.unwrap().len(), 1);

    // Deleting an account takes its roster with it, and frees the name.
    assert!(store.delete(&alice).await.unwrap());
    assert!(!store.delete(&alice).await.unwrap());
    assert!(store.get(&alice).await.unwrap().is_none());
    assert!(store.roster(&alice).await.unwrap().is_empty());
    assert_eq!(
        store
            .create(account(&name("alice"), "again"))
            .await
            .unwrap(),
        CreateOutcome::Created
    );

    // Many concurrent creates of one name: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = store.clone();
        let n = name("race");
        tasks.push(tokio::spawn(async move {
            store.create(account(&n, &format!("pw{i}"))).await
        }));
    }
    let mut created = 0;
    for t in tasks {
        if t.await.unwrap().unwrap() == CreateOutcome::Created {
            created += 1;
        }
    }
    assert_eq!(created, 1);
}

#[tokio::test]
async fn embedded_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = super::embedded::EmbeddedStore::open(&dir.path().join("a.redb")).unwrap();
    exercise(Arc::new(store), "").await;
}

/// Runs against the CQL database named by TEST_CQL_NODE (host:port), which
/// scripts/test-all starts before it runs the ignored tests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a CQL database (TEST_CQL_NODE); scripts/test-all runs it"]
async fn cql_store_keeps_the_contract() {
    let node = std::env::var("TEST_CQL_NODE").expect("TEST_CQL_NODE must name a CQL database");
    let config = crate::config::ScyllaConfig {
        nodes: vec![node],
        keyspace: format!(
            "usher_contract_{}",
            crate::secrets::random_id(6)
                .to_lowercase()
                .replace('-', "_")
        ),
        ..Default::default()
    };
    let store = super::scylla::ScyllaStore::connect(&config)
        .await
        .expect("connect to CQL");
    exercise(Arc::new(store), "").await;
}
