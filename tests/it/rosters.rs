//! Rosters, presence subscriptions between local users, contact invites and
//! XEP-0379 pre-approved subscriptions, against the real binary.

use crate::fixture::*;
use usher::xmpp::{ns, Element};
use usher_load::client::Mech;
use usher_load::Client;

async fn login(node: &TestNode, user: &str) -> Client {
    let (mut c, _) = Client::login(
        node.addr,
        DOMAIN,
        &node.trust(),
        Mech::ScramSha256,
        user,
        PASSWORD,
    )
    .await
    .unwrap_or_else(|e| panic!("login {user}: {e}"));
    c.send_raw(b"<presence/>").await.unwrap();
    c
}

fn is_push_for(jid: &'static str, subscription: &'static str) -> impl Fn(&Element) -> bool {
    move |el| {
        el.is("iq", ns::CLIENT)
            && el.attr("type") == Some("set")
            && el
                .get_child("query", ns::ROSTER)
                .and_then(|q| q.get_child("item", ns::ROSTER))
                .is_some_and(|i| {
                    i.attr("jid") == Some(jid) && i.attr("subscription") == Some(subscription)
                })
    }
}

fn is_presence(kind: &'static str, from: &'static str) -> impl Fn(&Element) -> bool {
    move |el| {
        el.is("presence", ns::CLIENT)
            && el.attr("type") == Some(kind)
            && el.attr("from") == Some(from)
    }
}

fn entry(jid: &str, sub: &str, ask: bool) -> (String, String, bool) {
    (jid.to_owned(), sub.to_owned(), ask)
}

#[tokio::test]
async fn roster_set_push_and_remove() {
    let node = TestNode::builder()
        .open_registration()
        .no_address_limits()
        .fast_hashing()
        .start();
    node.register("ann", PASSWORD).await;
    let mut a1 = login(&node, "ann").await;
    let mut a2 = login(&node, "ann").await;
    let set = Element::new("iq", ns::CLIENT)
        .with_attr("type", "set")
        .with_child(
            Element::new("query", ns::ROSTER).with_child(
                Element::new("item", ns::ROSTER)
                    .with_attr("jid", "Friend@LocalHost")
                    .with_attr("name", "A friend")
                    .with_child(Element::new("group", ns::ROSTER).with_text("Pals")),
            ),
        );
    assert_eq!(a1.request(set).await.unwrap().attr("type"), Some("result"));
    // The other resource hears about it.
    a2.wait_for(is_push_for("friend@localhost", "none"))
        .await
        .unwrap();
    assert_eq!(
        a2.roster().await.unwrap(),
        [entry("friend@localhost", "none", false)]
    );
    let remove = Element::new("iq", ns::CLIENT)
        .with_attr("type", "set")
        .with_child(
            Element::new("query", ns::ROSTER).with_child(
                Element::new("item", ns::ROSTER)
                    .with_attr("jid", "friend@localhost")
                    .with_attr("subscription", "remove"),
            ),
        );
    assert_eq!(
        a1.request(remove).await.unwrap().attr("type"),
        Some("result")
    );
    a2.wait_for(is_push_for("friend@localhost", "remove"))
        .await
        .unwrap();
    assert!(a1.roster().await.unwrap().is_empty());
    // A full JID is not a roster item.
    let bad = Element::new("iq", ns::CLIENT)
        .with_attr("type", "set")
        .with_child(
            Element::new("query", ns::ROSTER)
                .with_child(Element::new("item", ns::ROSTER).with_attr("jid", "x@localhost/res")),
        );
    assert_iq_error(
        &a1.request(bad).await.unwrap(),
        "modify",
        "bad-request",
        None,
    );
}

#[tokio::test]
async fn a_subscription_handshake_between_online_users_ends_in_both() {
    let node = TestNode::builder()
        .open_registration()
        .no_address_limits()
        .fast_hashing()
        .start();
    node.register("alice", PASSWORD).await;
    node.register("bob", PASSWORD).await;
    let mut alice = login(&node, "alice").await;
    let mut bob = login(&node, "bob").await;
    bob.send_raw(b"<presence type='subscribe' to='alice@localhost'/>")
        .await
        .unwrap();
    alice
        .wait_for(is_presence("subscribe", "bob@localhost"))
        .await
        .unwrap();
    alice
        .send_raw(b"<presence type='subscribed' to='bob@localhost'/>")
        .await
        .unwrap();
    bob.wait_for(is_presence("subscribed", "alice@localhost"))
        .await
        .unwrap();
    alice
        .send_raw(b"<presence type='subscribe' to='bob@localhost'/>")
        .await
        .unwrap();
    bob.wait_for(is_presence("subscribe", "alice@localhost"))
        .await
        .unwrap();
    bob.send_raw(b"<presence type='subscribed' to='alice@localhost'/>")
        .await
        .unwrap();
    alice
        .wait_for(is_presence("subscribed", "bob@localhost"))
        .await
        .unwrap();
    assert_eq!(
        alice.roster().await.unwrap(),
        [entry("bob@localhost", "both", false)]
    );
    assert_eq!(
        bob.roster().await.unwrap(),
        [entry("alice@localhost", "both", false)]
    );
}

#[tokio::test]
async fn registering_with_a_contact_invite_makes_mutual_contacts() {
    let node = TestNode::builder()
        .no_address_limits()
        .fast_hashing()
        .start();
    node.register_via_invite("alice", PASSWORD).await;
    let mut alice = login(&node, "alice").await;
    let token = node.invite(&["--contact", "alice"]);
    let mut carol = node.with_invite(&token).await;
    let reply = carol.register("carol", PASSWORD).await.unwrap();
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    // alice is online: she gets a roster push.
    alice
        .wait_for(is_push_for("carol@localhost", "both"))
        .await
        .unwrap();
    assert_eq!(
        alice.roster().await.unwrap(),
        [entry("carol@localhost", "both", false)]
    );
    let mut carol = login(&node, "carol").await;
    assert_eq!(
        carol.roster().await.unwrap(),
        [entry("alice@localhost", "both", false)]
    );
    let show = node.show(&token);
    assert!(show.contains("state:    used-up"), "{show}");

    // Without permission to register, a contact invite creates no account.
    let token = node.invite(&["--contact", "alice", "--no-register"]);
    assert!(node.cli(&["show", &token]).status.success());
    let mut dan = node.with_invite(&token).await;
    let reply = dan.register("dan", PASSWORD).await.unwrap();
    assert_iq_error(
        &reply,
        "cancel",
        "forbidden",
        Some("This invite does not allow registration"),
    );
}

#[tokio::test]
async fn xep0379_preapproved_subscription_with_the_inviter_offline() {
    let node = TestNode::builder()
        .no_address_limits()
        .fast_hashing()
        .start();
    node.register_via_invite("alice", PASSWORD).await;
    node.register_via_invite("bob", PASSWORD).await;
    let token = node.invite(&["--contact", "alice", "--no-register"]);
    let mut bob = login(&node, "bob").await;
    bob.send_raw(
        format!(
            "<presence type='subscribe' to='alice@localhost'><preauth xmlns='urn:xmpp:pars:0' token='{token}'/></presence>"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    bob.wait_for(is_presence("subscribed", "alice@localhost"))
        .await
        .unwrap();
    bob.wait_for(is_presence("subscribe", "alice@localhost"))
        .await
        .unwrap();
    assert_eq!(
        bob.roster().await.unwrap(),
        [entry("alice@localhost", "to", false)]
    );
    let show = node.show(&token);
    assert!(show.contains("state:    used-up"), "{show}");
    // bob approves alice's request: both sides end with `both`.
    bob.send_raw(b"<presence type='subscribed' to='alice@localhost'/>")
        .await
        .unwrap();
    bob.wait_for(is_push_for("alice@localhost", "both"))
        .await
        .unwrap();
    let mut alice = login(&node, "alice").await;
    assert_eq!(
        alice.roster().await.unwrap(),
        [entry("bob@localhost", "both", false)]
    );
}

#[tokio::test]
async fn a_bogus_or_misdirected_token_is_an_ordinary_request() {
    let node = TestNode::builder()
        .no_address_limits()
        .fast_hashing()
        .start();
    for u in ["alice", "bob", "eve"] {
        node.register_via_invite(u, PASSWORD).await;
    }
    let alices = node.invite(&["--contact", "alice", "--no-register"]);
    let mut bob = login(&node, "bob").await;
    // alice's token sent with a request to eve, and a made-up token to alice.
    for (to, token) in [
        ("eve", alices.as_str()),
        ("alice", "AAAAAAAAAAAAAAAAAAAAAA"),
    ] {
        bob.send_raw(
            format!("<presence type='subscribe' to='{to}@localhost'><preauth xmlns='urn:xmpp:pars:0' token='{token}'/></presence>")
                .as_bytes(),
        )
        .await
        .unwrap();
    }
    // No approval: bob's items wait (ask), and alice's invite is untouched.
    let roster = bob.roster().await.unwrap();
    assert_eq!(
        roster,
        [
            entry("alice@localhost", "none", true),
            entry("eve@localhost", "none", true)
        ]
    );
    let show = node.show(&alices);
    assert!(show.contains("uses:     0/1"), "{show}");
    // eve gets the request when she comes online.
    let mut eve = login(&node, "eve").await;
    eve.wait_for(is_presence("subscribe", "bob@localhost"))
        .await
        .unwrap();
}

/// Issue 14: removing an account ends every session, takes the user out of
/// the contacts' rosters, revokes the invites bound to the name or naming
/// the user as inviter, and quarantines the name; whoever registers it
/// after the quarantine starts with an empty roster.
#[tokio::test]
async fn removing_an_account_leaves_nothing_to_the_next_holder_of_its_name() {
    let node = TestNode::builder()
        .no_address_limits()
        .fast_hashing()
        .set("USHER_ACCOUNT_QUARANTINE", "4s")
        .start();
    node.register_via_invite("alice", PASSWORD).await;
    let mut alice = login(&node, "alice").await;
    // Made before erin exists, and never used: bound to her name.
    let bound = node.invite(&["--username", "erin"]);
    let token = node.invite(&["--contact", "alice"]);
    let mut c = node.with_invite(&token).await;
    let reply = c.register("erin", PASSWORD).await.unwrap();
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    alice
        .wait_for(is_push_for("erin@localhost", "both"))
        .await
        .unwrap();
    let reset = node.invite(&["--reset", "erin"]);
    let erins = node.invite(&["--contact", "erin"]);
    let mut first = login(&node, "erin").await;
    let mut second = login(&node, "erin").await;
    let remove = Element::new("iq", ns::CLIENT)
        .with_attr("type", "set")
        .with_child(
            Element::new("query", ns::REGISTER).with_child(Element::new("remove", ns::REGISTER)),
        );
    assert_eq!(
        first.request(remove).await.unwrap().attr("type"),
        Some("result")
    );
    // The other session ends too (after the presence it is now sent).
    let el = loop {
        let el = second.next_element().await.unwrap();
        if !el.is("presence", ns::CLIENT) {
            break el;
        }
    };
    assert_eq!(
        stream_error(&el),
        ("not-authorized".into(), Some("Account removed".into()))
    );
    // erin leaves alice's roster, and alice's client is told.
    alice
        .wait_for(is_push_for("erin@localhost", "remove"))
        .await
        .unwrap();
    assert!(alice.roster().await.unwrap().is_empty());
    // Every invite that could act for the name is revoked.
    for token in [&bound, &reset, &erins] {
        let show = node.show(token);
        assert!(show.contains("revoked"), "{show}");
        let mut c = node.connect_tls().await;
        let reply = c.preauth(token).await.unwrap();
        assert_eq!(reply.attr("type"), Some("error"), "{reply:?}");
    }
    // The name is quarantined...
    let fresh = node.invite(&[]);
    let mut c = node.with_invite(&fresh).await;
    let reply = c.register("erin", PASSWORD).await.unwrap();
    assert_iq_error(&reply, "cancel", "conflict", None);
    // ...then free, for someone who inherits nothing.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let reply = c.register("erin", PASSWORD).await.unwrap();
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    let mut erin = login(&node, "erin").await;
    assert!(erin.roster().await.unwrap().is_empty());
    assert!(alice.roster().await.unwrap().is_empty());
}

/// A name listed in `admins` gets an administrator's rights, so only an
/// operator's invite bound to that name can register it: not anyone with
/// an invite, before or after the account exists.
#[tokio::test]
async fn an_administrators_name_needs_an_invite_made_for_it() {
    let node = TestNode::builder()
        .no_address_limits()
        .fast_hashing()
        .set("USHER_ADMINS", "[\"boss@localhost\"]")
        .start();
    let open = node.invite(&[]);
    let mut c = node.with_invite(&open).await;
    let reply = c.register("boss", PASSWORD).await.unwrap();
    assert_iq_error(&reply, "cancel", "forbidden", None);
    // The same invite still works for another name.
    let reply = c.register("worker", PASSWORD).await.unwrap();
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    let bound = node.invite(&["--username", "boss"]);
    let mut c = node.with_invite(&bound).await;
    let reply = c.register("boss", PASSWORD).await.unwrap();
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
}

/// A roster set of one item with `name` and `groups`.
fn roster_set(jid: &str, name: &str, groups: usize) -> Element {
    let mut item = Element::new("item", ns::ROSTER)
        .with_attr("jid", jid)
        .with_attr("name", name);
    for g in 0..groups {
        item.push_child(Element::new("group", ns::ROSTER).with_text(format!("g{g}")));
    }
    Element::new("iq", ns::CLIENT)
        .with_attr("type", "set")
        .with_child(Element::new("query", ns::ROSTER).with_child(item))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roster_stays_within_its_limits() {
    let node = TestNode::builder()
        .open_registration()
        .fast_hashing()
        .set("USHER_LIMITS__ROSTER_ITEMS_PER_USER", "5")
        .set("USHER_LIMITS__ROSTER_GROUPS_PER_ITEM", "3")
        .start();
    node.register("kim", PASSWORD).await;
    let mut c = login(&node, "kim").await;
    for n in 0..5 {
        let reply = c
            .request(roster_set(&format!("c{n}@localhost"), "friend", 3))
            .await
            .unwrap();
        assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    }
    let full = c.request(roster_set("c5@localhost", "one more", 0)).await;
    assert_iq_error(
        &full.unwrap(),
        "cancel",
        "not-allowed",
        Some("The roster is full (5 contacts)"),
    );
    // Changing a contact that is there still works.
    let reply = c.request(roster_set("c0@localhost", "renamed", 1)).await;
    assert_eq!(reply.unwrap().attr("type"), Some("result"));
    let too_many = c.request(roster_set("c1@localhost", "x", 4)).await;
    assert_iq_error(
        &too_many.unwrap(),
        "modify",
        "not-acceptable",
        Some("Too many groups"),
    );
    let long_name = c
        .request(roster_set("c1@localhost", &"n".repeat(1024), 0))
        .await;
    assert_iq_error(
        &long_name.unwrap(),
        "modify",
        "not-acceptable",
        Some("The name is too long"),
    );
    // RFC 7622: no JID part over 1023 bytes (the issue's 100 KB contacts).
    let long_jid = format!("{}@localhost", "j".repeat(100_000));
    let reply = c.request(roster_set(&long_jid, "x", 0)).await.unwrap();
    assert_iq_error(&reply, "modify", "bad-request", None);
    assert_eq!(c.roster().await.unwrap().len(), 5);
    assert_eq!(
        node.metric(r#"usher_rate_limit_hits_total{limit="roster_items_per_user"}"#),
        1.0
    );
}
