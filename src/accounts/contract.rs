//! What every AccountStore must do, as one test suite run against each store.

use std::sync::Arc;

use super::{
    Account, AccountStore, CreateOutcome, Credentials, OfflineMessage, Queued, RosterItem, RowKind,
    Subscription,
};
use crate::xmpp::jid::Username;
use crate::xmpp::sasl::HashAlg;

fn account(name: &str, password: &str) -> Account {
    Account {
        username: Username::parse(name).unwrap(),
        credentials: Credentials::derive(password, 4096, &HashAlg::ALL),
        created_at: 1_700_000_000,
        roles: vec!["tester".into()],
        reservation: Some(format!("res-{name}").into()),
        generation: Some(format!("gen-{name}")),
    }
}

fn user(name: &str) -> Username {
    Username::parse(name).expect("valid test username")
}

/// Runs every check; `prefix` keeps names apart when stores are shared. One
/// long sequence on purpose: later checks build on the state earlier ones left.
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

    // Rows change by compare-and-set on their stamp: a write conditioned on
    // a stamp that is no longer there is not applied.
    let row = store.row(&alice).await.unwrap().expect("alice's row");
    assert_eq!(row.state, RowKind::Active);
    assert_eq!(
        row.generation.as_deref(),
        Some(format!("gen-{}", name("alice")).as_str())
    );
    let stamp = row.stamp.clone().expect("a stamped row");
    let mut reset = row.clone();
    reset.credentials = Some(Credentials::derive("pw-new", 4096, &HashAlg::ALL));
    reset.reservation = Some("reset-1".into());
    reset.fenced_until = 77;
    let second = store
        .replace_row(Some(&stamp), reset.clone())
        .await
        .unwrap()
        .expect("applied on the stamp it read");
    assert_ne!(second, stamp);
    assert!(store
        .replace_row(Some(&stamp), row.clone())
        .await
        .unwrap()
        .is_none());
    let got = store.row(&alice).await.unwrap().unwrap();
    assert_eq!(got.stamp.as_ref(), Some(&second));
    assert_eq!(got.reservation.as_deref(), Some("reset-1"));
    assert_eq!(got.fenced_until, 77);
    assert!(store
        .get(&alice)
        .await
        .unwrap()
        .unwrap()
        .credentials
        .keys(HashAlg::Sha256)
        .unwrap()
        .verify_password(HashAlg::Sha256, "pw-new"));
    // No row, no replace: a compare-and-set never creates one.
    let mut ghost = reset.clone();
    ghost.username = user(&name("ghost"));
    assert!(store
        .replace_row(None, ghost.clone())
        .await
        .unwrap()
        .is_none());
    assert!(store
        .replace_row(Some(&second), ghost)
        .await
        .unwrap()
        .is_none());
    assert!(store.row(&user(&name("ghost"))).await.unwrap().is_none());

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

    // A pre-approval is kept with the item.
    let mut erin = RosterItem::new("erin@localhost");
    assert!(erin.pre_approve());
    store.put_roster_item(&bob, erin.clone()).await.unwrap();
    assert_eq!(
        store.roster_item(&bob, "erin@localhost").await.unwrap(),
        Some(erin)
    );

    // Offline messages: kept in order up to the limit, taken once.
    let msg = |n: u64| OfflineMessage {
        stored_at: 1_700_000_000_000 + n,
        stanza: format!("<message to='bob@localhost'><body>m{n}</body></message>"),
    };
    assert!(store.take_offline(&bob).await.unwrap().is_empty());
    for n in 0..3 {
        assert_eq!(
            store.push_offline(&bob, msg(n), 3).await.unwrap(),
            Queued::Stored
        );
    }
    assert_eq!(
        store.push_offline(&bob, msg(3), 3).await.unwrap(),
        Queued::Full
    );
    store.push_offline(&alice, msg(9), 3).await.unwrap();
    let taken = store.take_offline(&bob).await.unwrap();
    assert_eq!(taken, vec![msg(0), msg(1), msg(2)]);
    assert!(store.take_offline(&bob).await.unwrap().is_empty());
    // Room again once taken.
    assert_eq!(
        store.push_offline(&bob, msg(4), 3).await.unwrap(),
        Queued::Stored
    );
    // Many takers at once: every message goes to exactly one of them.
    for n in 5..10 {
        store.push_offline(&bob, msg(n), 100).await.unwrap();
    }
    let mut takers = Vec::new();
    for _ in 0..4 {
        let store = store.clone();
        let bob = bob.clone();
        takers.push(tokio::spawn(async move { store.take_offline(&bob).await }));
    }
    let mut all = Vec::new();
    for t in takers {
        all.extend(t.await.unwrap().unwrap());
    }
    all.sort_by_key(|m| m.stored_at);
    assert_eq!(all, (4..10).map(msg).collect::<Vec<_>>());

    // A tombstone or a placeholder is no account, but holds the name
    // against a plain insert; the roster and kept messages go on their own.
    let bobs = store.roster(&bob).await.unwrap().len();
    let mut gone = store.row(&alice).await.unwrap().unwrap();
    let stamp = gone.stamp.take();
    gone.state = RowKind::Deleted;
    gone.credentials = None;
    gone.quarantine_until = 123;
    assert!(store
        .replace_row(stamp.as_ref(), gone)
        .await
        .unwrap()
        .is_some());
    store.delete_user_data(&alice).await.unwrap();
    assert!(store.get(&alice).await.unwrap().is_none());
    assert!(store.roster(&alice).await.unwrap().is_empty());
    assert!(store.take_offline(&alice).await.unwrap().is_empty());
    assert_eq!(
        store.roster(&bob).await.unwrap().len(),
        bobs,
        "others' rosters stay"
    );
    let tomb = store.row(&alice).await.unwrap().unwrap();
    assert_eq!(
        (tomb.state, tomb.quarantine_until, tomb.fenced_until),
        (RowKind::Deleted, 123, 77)
    );
    assert_eq!(
        store
            .create(account(&name("alice"), "again"))
            .await
            .unwrap(),
        CreateOutcome::AlreadyExists
    );
    let placeholder = super::AccountRow::placeholder(user(&name("fenced")), 9);
    assert!(store
        .insert_row(placeholder.clone())
        .await
        .unwrap()
        .is_some());
    assert!(store.insert_row(placeholder).await.unwrap().is_none());
    assert!(store.get(&user(&name("fenced"))).await.unwrap().is_none());

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
