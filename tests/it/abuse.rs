//! Abuse controls against the real binary: invite quotas under concurrency,
//! invite-tree and fast-chain limits, registration floods, account
//! enumeration, and the audit trail of who invited whom.

use std::net::IpAddr;
use std::time::Duration;

use crate::fixture::*;
use usher::xmpp::dataform::DataForm;
use usher::xmpp::ns;
use usher_load::client::{Auth, Mech};
use usher_load::Client;

const INVITE: &str = "urn:xmpp:invite#invite";

/// Runs the contact-invite command as `user`: the new invite's token, or the
/// refusal's condition and note.
async fn mint(node: &TestNode, user: &str) -> Result<String, (String, String)> {
    let mut c = login_as(node, user).await;
    let reply = c.request(adhoc_execute(INVITE, None)).await.expect("reply");
    if reply.attr("type") == Some("result") {
        let cmd = reply.get_child("command", ns::COMMANDS).expect("command");
        let form =
            DataForm::parse(cmd.get_child("x", ns::DATA_FORMS).expect("form")).expect("a form");
        let uri = form.value("uri").expect("uri");
        return Ok(token_of(uri));
    }
    let condition = usher_load::client::error_condition(&reply).unwrap_or_default();
    let note = reply
        .get_child("command", ns::COMMANDS)
        .and_then(|c| c.get_child("note", ns::COMMANDS))
        .map(|n| n.text())
        .unwrap_or_default();
    Err((condition, note))
}

fn json(out: std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_mints_end_at_exactly_the_quota() {
    let node = TestNode::builder()
        .no_address_limits()
        .fast_hashing()
        .set("USHER_ALLOW_USER_INVITES", "true")
        .set("USHER_MAX_INVITES_PER_USER", "7")
        .start();
    node.register_via_invite("ann", PASSWORD).await;
    let attempts: Vec<_> = (0..20)
        .map(|_| {
            let node = &node;
            async move { mint(node, "ann").await }
        })
        .collect();
    let results = futures_util::future::join_all(attempts).await;
    let made = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(made, 7, "{results:?}");
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(refused.0, "resource-constraint");
        assert!(refused.1.contains("7 usable invites"), "{}", refused.1);
    }
    // The admin API shows the same count and quota, and says so over gRPC.
    let origin = json(node.cli_any(&["account", "origin", "ann", "--json"]));
    assert_eq!(origin["live_invites"], 7);
    assert_eq!(origin["invite_quota"], 7);
    let out = node.cli(&["create", "--contact", "ann", "--as-user", "ann"]);
    assert_cli_error(out, "7 usable invites");
    // A revoked invite frees a slot.
    let token = results
        .iter()
        .find_map(|r| r.as_ref().ok())
        .expect("a token");
    assert!(node.cli(&["revoke", token]).status.success());
    assert!(mint(&node, "ann").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_tree_stops_at_its_limit() {
    let node = TestNode::builder()
        .no_address_limits()
        .fast_hashing()
        .set("USHER_ALLOW_USER_INVITES", "true")
        .set("USHER_INVITE_TREE__MAX_INVITES", "3")
        .start();
    let root = node.invite(&["--uses", "2"]);
    for user in ["ann", "bo"] {
        let mut c = node.with_invite(&root).await;
        let reply = c.register(user, PASSWORD).await.expect("register");
        assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    }
    // Root + two minted invites fill a tree of three, whoever mints them.
    let a = mint(&node, "ann").await.expect("first");
    mint(&node, "bo").await.expect("second");
    let (condition, note) = mint(&node, "ann").await.expect_err("tree full");
    assert_eq!(condition, "resource-constraint");
    assert!(note.contains("limit of 3 invites"), "{note}");
    let shown = json(node.cli(&["show", &a, "--json"]));
    assert_eq!(shown["tree"], root.as_str());
    assert_eq!(shown["minted_by"], "ann");
    assert_eq!(shown["remaining"], 1);
    let origin = json(node.cli_any(&["account", "origin", "bo", "--json"]));
    assert_eq!(origin["origin"]["tree"], root.as_str());
    assert_eq!(origin["origin"]["tree_size"], 3);
    assert_eq!(origin["tree_limit"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_chain_is_blocked_then_unblocked() {
    let node = TestNode::builder()
        .no_address_limits()
        .fast_hashing()
        .set("USHER_ALLOW_USER_INVITES", "true")
        .set("USHER_INVITE_TREE__FAST_CHAIN_WINDOW", "3s")
        .start();
    node.register_via_invite("ann", PASSWORD).await; // depth 1
    let invite = mint(&node, "ann").await.expect("depth 1 may mint");
    let mut c = node.with_invite(&invite).await;
    let reply = c.register("bo", PASSWORD).await.expect("register");
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    // bo is two levels deep, and the chain is seconds old.
    let (condition, note) = mint(&node, "bo").await.expect_err("blocked");
    assert_eq!(condition, "resource-constraint");
    assert!(note.contains("new invites are possible from"), "{note}");
    let origin = json(node.cli_any(&["account", "origin", "bo", "--json"]));
    assert_eq!(origin["origin"]["depth"], 2);
    assert_eq!(origin["origin"]["inviter"], "ann");
    assert!(origin["minting_blocked_until"].is_string(), "{origin}");
    tokio::time::sleep(Duration::from_millis(3200)).await;
    mint(&node, "bo")
        .await
        .expect("unblocked once the chain aged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_address_is_throttled_while_another_registers() {
    let node = TestNode::builder()
        .open_registration()
        .fast_hashing()
        .set("USHER_LIMITS__REGISTRATIONS_PER_IP_PER_MINUTE", "10")
        .start();
    let flooder: IpAddr = "127.0.0.1".parse().expect("ip");
    let neighbour: IpAddr = "127.0.0.2".parse().expect("ip");
    let mut created = 0;
    let mut throttled = 0;
    let mut c = Client::connect_tls_from(node.addr, flooder, DOMAIN, &node.trust())
        .await
        .expect("connect");
    for i in 0..200 {
        let reply = c
            .register(&format!("flood{i}"), PASSWORD)
            .await
            .expect("reply");
        match reply.attr("type") {
            Some("result") => {
                created += 1;
                // A success ends registration on this stream: take a new one.
                c = Client::connect_tls_from(node.addr, flooder, DOMAIN, &node.trust())
                    .await
                    .expect("connect");
            }
            _ => {
                assert_iq_error(&reply, "wait", "resource-constraint", None);
                throttled += 1;
            }
        }
    }
    // The budget is 10 at once, refilled by one every 6 s while the flood runs.
    assert!(
        (10..=12).contains(&created),
        "{created} registrations got through"
    );
    assert_eq!(created + throttled, 200);
    let mut other = Client::connect_tls_from(node.addr, neighbour, DOMAIN, &node.trust())
        .await
        .expect("connect from 127.0.0.2");
    let reply = other.register("neighbour", PASSWORD).await.expect("reply");
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    assert_eq!(
        node.metric(r#"usher_rate_limit_hits_total{limit="registrations_per_ip"}"#),
        f64::from(throttled)
    );
}

/// The server's answers to one SASL exchange on a fresh stream, serialized.
async fn raw_sasl(node: &TestNode, auth: &[u8], response: Option<&[u8]>) -> Vec<String> {
    let mut c = node.connect_tls().await;
    c.send_raw(auth).await.expect("send");
    let mut seen = vec![c.next_element().await.expect("answer")];
    if let Some(r) = response {
        c.send_raw(r).await.expect("send");
        seen.push(c.next_element().await.expect("answer"));
    }
    seen.iter().map(|e| e.to_stanza_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_cannot_tell_a_missing_account_from_a_wrong_password() {
    let node = TestNode::builder()
        .open_registration()
        .no_address_limits()
        .fast_hashing()
        .start();
    node.register("bob", PASSWORD).await;
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    let plain = |user: &str| {
        format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
            b64(&format!("\0{user}\0wrong password"))
        )
    };
    let wrong = raw_sasl(&node, plain("bob").as_bytes(), None).await;
    let missing = raw_sasl(&node, plain("nobody").as_bytes(), None).await;
    assert_eq!(wrong, missing);

    // SCRAM: the challenge has the same shape (salt length, iterations), and
    // a bad proof fails with the same bytes.
    let first = |user: &str| {
        format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>{}</auth>",
            b64(&format!("n,,n={user},r=clientnonce"))
        )
    };
    let shape = |answers: &[String]| -> (usize, String) {
        // <challenge xmlns='…'>BASE64</challenge>
        let inner = answers[0]
            .split_once('>')
            .and_then(|(_, rest)| rest.split_once('<'))
            .map(|(b64, _)| b64)
            .expect("a challenge");
        use base64::Engine;
        let text = base64::engine::general_purpose::STANDARD
            .decode(inner)
            .expect("base64");
        let text = String::from_utf8(text).expect("utf-8");
        let field = |k: &str| {
            text.split(',')
                .find_map(|p| p.strip_prefix(k))
                .unwrap_or_default()
                .to_owned()
        };
        (field("s=").len(), field("i="))
    };
    let final_msg = format!(
        "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
        b64("c=biws,r=clientnonce-wrong,p=AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    );
    let wrong = raw_sasl(&node, first("bob").as_bytes(), Some(final_msg.as_bytes())).await;
    let missing = raw_sasl(
        &node,
        first("nobody").as_bytes(),
        Some(final_msg.as_bytes()),
    )
    .await;
    assert_eq!(shape(&wrong), shape(&missing));
    assert_eq!(wrong[1], missing[1]);
    assert!(wrong[1].contains("failure"), "{wrong:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_shows_ibr_and_presence_redemptions_in_order() {
    let node = TestNode::builder()
        .no_address_limits()
        .fast_hashing()
        .set("USHER_ALLOW_USER_INVITES", "true")
        .start();
    node.register_via_invite("ann", PASSWORD).await;
    // A contact invite redeemed by registering (IBR)…
    let by_ibr = mint(&node, "ann").await.expect("mint");
    let mut c = node.with_invite(&by_ibr).await;
    let reply = c.register("bo", PASSWORD).await.expect("register");
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    // …and one redeemed by an existing user's subscription (XEP-0379).
    node.register_via_invite("cy", PASSWORD).await;
    let by_presence = mint(&node, "ann").await.expect("mint");
    let mut cy = login_as(&node, "cy").await;
    let subscribe = usher::xmpp::Element::new("presence", ns::CLIENT)
        .with_attr("to", "ann@localhost")
        .with_attr("type", "subscribe")
        .with_child(
            usher::xmpp::Element::new("preauth", ns::PARS).with_attr("token", by_presence.as_str()),
        );
    cy.send(&subscribe).await.expect("send");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let uses = json(node.cli(&["show", &by_presence, "--json"]))["uses"].clone();
        if uses == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the subscription never used the invite"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    type Row = (String, Option<String>, Option<String>, Option<String>);
    let history = |token: &str| -> Vec<Row> {
        json(node.cli(&["history", token, "--json"]))
            .as_array()
            .expect("events")
            .iter()
            .map(|e| {
                let s = |k: &str| e[k].as_str().map(str::to_owned);
                (
                    s("event").unwrap_or_default(),
                    s("inviter"),
                    s("account"),
                    s("path"),
                )
            })
            .collect()
    };
    let ann = Some("ann".to_owned());
    let some = |s: &str| Some(s.to_owned());
    assert_eq!(
        history(&by_ibr),
        [
            ("created".into(), ann.clone(), None, None),
            ("reserved".into(), ann.clone(), some("bo"), some("ibr")),
            ("redeemed".into(), ann.clone(), some("bo"), some("ibr")),
        ]
    );
    assert_eq!(
        history(&by_presence),
        [
            ("created".into(), ann.clone(), None, None),
            ("reserved".into(), ann.clone(), some("cy"), some("presence")),
            ("redeemed".into(), ann.clone(), some("cy"), some("presence")),
        ]
    );
    // Filters: by account, and by inviter.
    let bo = json(node.cli(&["events", "--account", "bo", "--json"]));
    assert_eq!(bo.as_array().map(Vec::len), Some(2));
    let by_ann = json(node.cli(&["events", "--inviter", "ann", "--json"]));
    assert_eq!(by_ann.as_array().map(Vec::len), Some(6));
    let origin = json(node.cli_any(&["account", "origin", "bo", "--json"]));
    assert_eq!(origin["origin"]["inviter"], "ann");
    assert_eq!(origin["origin"]["invite"], by_ibr.as_str());
    // Unknown tokens and accounts are clear errors.
    assert_cli_error(
        node.cli(&["history", "no-such-token-at-all"]),
        "no such invite",
    );
    assert_cli_error(
        node.cli_any(&["account", "origin", "ghost"]),
        "no account 'ghost'",
    );
    // Logins still work for everyone involved.
    for user in ["ann", "bo", "cy"] {
        assert_eq!(
            node.auth(Mech::ScramSha1, user, PASSWORD).await,
            Auth::Success
        );
    }
}
