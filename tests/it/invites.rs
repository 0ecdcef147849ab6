//! Invites end to end against the real binary: the preauth IQ, invite-gated
//! registration of every kind, races for one invite, restarts and crashes
//! between reserve and commit, and the CLI.

use std::time::Duration;

use crate::fixture::*;
use usher::xmpp::ns;
use usher_load::client::{Auth, Mech};

const INVALID: &str = "The invite token is invalid or expired";

#[tokio::test]
async fn invite_features_appear_only_where_they_belong() {
    let node = TestNode::builder()
        .no_address_limits()
        .fast_hashing()
        .start();
    let mut c = node.connect().await;
    assert!(!c.features.has_child("register", ns::IBR_TOKEN));
    c.starttls().await.unwrap();
    let names: Vec<&str> = c.features.children().map(|f| f.ns()).collect();
    assert_eq!(
        &names[..3],
        [ns::INVITE, ns::IBR_TOKEN, ns::REGISTER_FEATURE]
    );
    drop(c);
    node.register_via_invite("feat", PASSWORD).await;
    let (c, _) = usher_load::Client::login(
        node.addr,
        DOMAIN,
        &node.trust(),
        Mech::Plain,
        "feat",
        PASSWORD,
    )
    .await
    .unwrap();
    assert!(!c.features.has_child("register", ns::IBR_TOKEN));
    assert!(!c.features.has_child("register", ns::INVITE));
}

#[tokio::test]
async fn preauth_answers_valid_and_every_kind_of_invalid_token() {
    // Six bad tokens on one stream: more than it may have by default (5).
    let node = TestNode::builder()
        .no_address_limits()
        .fast_hashing()
        .set("USHER_LIMITS__MAX_PREAUTH_FAILURES", "10")
        .start();
    let valid = node.invite(&[]);
    let revoked = node.invite(&[]);
    let out = node.cli(&["revoke", &revoked]);
    assert!(out.status.success());
    let expiring = node.invite(&["--ttl", "1s"]);
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let mut c = node.connect_tls().await;
    assert_eq!(
        c.preauth(&valid).await.unwrap().attr("type"),
        Some("result")
    );
    for bad in [
        "",
        "nonsense",
        "AAAAAAAAAAAAAAAAAAAAAA",
        revoked.as_str(),
        expiring.as_str(),
    ] {
        let reply = c.preauth(bad).await.unwrap();
        assert_iq_error(&reply, "cancel", "item-not-found", Some(INVALID));
    }
    // A preauth element without any token attribute.
    let bare = usher::xmpp::Element::new("iq", ns::CLIENT)
        .with_attr("type", "set")
        .with_child(usher::xmpp::Element::new("preauth", ns::PARS));
    assert_iq_error(
        &c.request(bare).await.unwrap(),
        "cancel",
        "item-not-found",
        Some(INVALID),
    );
    // Before TLS the preauth IQ is refused like any other.
    let mut plain = node.connect().await;
    let reply = plain.preauth(&valid).await.unwrap();
    assert_iq_error(
        &reply,
        "modify",
        "policy-violation",
        Some("Encryption is required"),
    );
}

#[tokio::test]
async fn registration_needs_an_invite_and_spends_it_once() {
    let node = TestNode::builder()
        .no_address_limits()
        .fast_hashing()
        .start();
    let mut c = node.connect_tls().await;
    let reply = c.register("nobody", PASSWORD).await.unwrap();
    assert_iq_error(
        &reply,
        "modify",
        "not-acceptable",
        Some("Registration on this server is through invitation only"),
    );
    let token = node.invite(&[]);
    let mut c = node.with_invite(&token).await;
    let reply = c.register("first", PASSWORD).await.unwrap();
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    // The stream's invite is gone after a success: no second account from it.
    let reply = c.register("second", PASSWORD).await.unwrap();
    assert_iq_error(&reply, "modify", "not-acceptable", None);
    assert_eq!(
        node.auth(Mech::ScramSha256, "first", PASSWORD).await,
        Auth::Success
    );
    // And the invite is spent for everyone else.
    let mut other = node.connect_tls().await;
    assert_iq_error(
        &other.preauth(&token).await.unwrap(),
        "cancel",
        "item-not-found",
        Some(INVALID),
    );
    let show = node.show(&token);
    assert!(
        show.contains("state:    used-up") && show.contains("uses:     1/1"),
        "{show}"
    );
}

#[tokio::test]
async fn bad_username_or_taken_name_leave_the_invite_usable() {
    let node = TestNode::builder()
        .no_address_limits()
        .fast_hashing()
        .start();
    node.register_via_invite("taken", PASSWORD).await;
    let token = node.invite(&[]);
    let mut c = node.with_invite(&token).await;
    let reply = c.register("bad name", PASSWORD).await.unwrap();
    assert_iq_error(
        &reply,
        "modify",
        "not-acceptable",
        Some("The requested username is invalid."),
    );
    let reply = c.register("taken", PASSWORD).await.unwrap();
    assert_iq_error(
        &reply,
        "cancel",
        "conflict",
        Some("The requested username already exists."),
    );
    let show = node.show(&token);
    assert!(show.contains("uses:     0/1 (0 pending, 1 left)"), "{show}");
    // Same stream, same invite, a free name: it works.
    let reply = c.register("fresh", PASSWORD).await.unwrap();
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
}

#[tokio::test]
async fn a_username_bound_invite_refuses_other_names() {
    let node = TestNode::builder()
        .no_address_limits()
        .fast_hashing()
        .start();
    let token = node.invite(&["--username", "Bound"]);
    let mut c = node.with_invite(&token).await;
    let reply = c.register("someoneelse", PASSWORD).await.unwrap();
    assert_iq_error(
        &reply,
        "cancel",
        "forbidden",
        Some("This invite is for another username"),
    );
    let reply = c.register("bound", PASSWORD).await.unwrap();
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    // Binding to a taken name is refused at creation.
    assert_cli_error(node.cli(&["create", "--username", "bound"]), "taken");
}

#[tokio::test]
async fn reset_invites_replace_the_password() {
    let node = TestNode::builder()
        .no_address_limits()
        .fast_hashing()
        .start();
    node.register_via_invite("resetme", PASSWORD).await;
    let token = node.invite(&["--reset", "resetme"]);
    let mut c = node.with_invite(&token).await;
    let reply = c
        .register("someoneelse", "a brand new password")
        .await
        .unwrap();
    assert_iq_error(
        &reply,
        "cancel",
        "forbidden",
        Some("This invite is for another username"),
    );
    let reply = c.register("resetme", "a brand new password").await.unwrap();
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    for mech in Mech::ALL {
        assert_eq!(
            node.auth(mech, "resetme", PASSWORD).await,
            Auth::Failure("not-authorized".into())
        );
        assert_eq!(
            node.auth(mech, "resetme", "a brand new password").await,
            Auth::Success
        );
    }
    // Reset invites live one day unless told otherwise; others seven.
    let reset = node.invite(&["--reset", "resetme"]);
    let lifetime = |token: &str| {
        let out = node.cli(&["--json", "show", token]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let at = |k: &str| humantime::parse_rfc3339(json[k].as_str().unwrap()).unwrap();
        at("expires_at")
            .duration_since(at("created_at"))
            .unwrap()
            .as_secs()
    };
    assert_eq!(lifetime(&reset), 24 * 3600);
    assert_eq!(lifetime(&node.invite(&[])), 7 * 24 * 3600);
    // A reset invite is for an existing account only.
    assert_cli_error(
        node.cli(&["create", "--reset", "ghost"]),
        "no account 'ghost'",
    );
}

#[tokio::test]
async fn group_invite_admits_exactly_its_uses() {
    let node = TestNode::builder()
        .no_address_limits()
        .fast_hashing()
        .start();
    let token = node.invite(&["--uses", "3", "--group", "friends"]);
    for i in 0..3 {
        let mut c = node.with_invite(&token).await;
        let reply = c.register(&format!("member{i}"), PASSWORD).await.unwrap();
        assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    }
    let mut c = node.connect_tls().await;
    assert_iq_error(
        &c.preauth(&token).await.unwrap(),
        "cancel",
        "item-not-found",
        Some(INVALID),
    );
}

#[tokio::test]
async fn expiry_is_checked_at_preauth_only() {
    let node = TestNode::builder()
        .no_address_limits()
        .fast_hashing()
        .start();
    let token = node.invite(&["--ttl", "2s"]);
    let mut c = node.with_invite(&token).await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    // Validated while good: the registration goes through after expiry (XEP-0445).
    let reply = c.register("justintime", PASSWORD).await.unwrap();
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
}

/// `clients` streams validate one invite with `uses` uses, then all register at
/// once; exactly `uses` succeed, the rest get item-not-found.
async fn race(node: &TestNode, clients: usize, uses: u32, round: usize) {
    let token = if uses == 1 {
        node.invite(&[])
    } else {
        node.invite(&["--uses", &uses.to_string()])
    };
    let mut streams = Vec::new();
    for _ in 0..clients {
        streams.push(node.with_invite(&token).await);
    }
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(clients));
    let tasks: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                c.register(&format!("r{round}u{uses}c{i}"), PASSWORD)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        let reply = t.await.unwrap();
        if reply.attr("type") == Some("result") {
            ok += 1;
        } else {
            assert_iq_error(&reply, "cancel", "item-not-found", Some(INVALID));
        }
    }
    assert_eq!(
        ok, uses as usize,
        "round {round}: {ok} registrations for {uses} uses"
    );
    let show = node.show(&token);
    assert!(
        show.contains(&format!("uses:     {uses}/{uses} (0 pending, 0 left)")),
        "{show}"
    );
}

/// Issue 14 on the embedded store: every account write is held up
/// (`slow-account-write`) longer than the 1 s lease while 30 clients race a
/// 3-use invite. With lease extensions the writes keep their uses; without
/// them the janitor fences the names and releases, and the late writes do
/// not land. Either way: at most 3 accounts, as many uses as accounts, none
/// pending, and every client told "success" can log in.
async fn slow_writes_round(node: &TestNode, round: usize) -> usize {
    let token = node.invite(&["--uses", "3"]);
    let mut streams = Vec::new();
    for _ in 0..30 {
        streams.push(node.with_invite(&token).await);
    }
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(streams.len()));
    let tasks: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let user = format!("slow{round}c{i}");
                let reply = c.register(&user, PASSWORD).await.unwrap();
                (user, reply.attr("type") == Some("result"))
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let show = loop {
        let show = node.show(&token);
        if show.contains("(0 pending") || std::time::Instant::now() > deadline {
            break show;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(show.contains("(0 pending"), "round {round}: {show}");
    let mut accounts = 0;
    for (user, ok) in &outcomes {
        let exists = node.auth(Mech::Plain, user, PASSWORD).await == Auth::Success;
        assert!(
            exists || !ok,
            "round {round}: {user} was told success but has no account"
        );
        accounts += usize::from(exists);
    }
    assert!(
        accounts <= 3,
        "round {round}: {accounts} accounts on a 3-use invite"
    );
    assert!(
        show.contains(&format!("uses:     {accounts}/3")),
        "round {round}: {accounts} accounts: {show}"
    );
    accounts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_writes_slower_than_the_lease_keep_their_use_by_extending_it() {
    let node = TestNode::builder()
        .no_address_limits()
        .fast_hashing()
        .set("USHER_LEDGER__RESERVATION_LEASE", "1s")
        .set("USHER_LEDGER__JANITOR_INTERVAL", "200ms")
        .set("USHER_FAILPOINTS", "slow-account-write:2500ms")
        .start();
    for round in 0..saga_stall_rounds(2) {
        assert_eq!(slow_writes_round(&node, round).await, 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_writes_that_lose_their_lease_are_fenced_and_never_land() {
    let node = TestNode::builder()
        .no_address_limits()
        .fast_hashing()
        .set("USHER_LEDGER__RESERVATION_LEASE", "1s")
        .set("USHER_LEDGER__JANITOR_INTERVAL", "200ms")
        .set(
            "USHER_FAILPOINTS",
            "slow-account-write:2500ms,no-lease-extension",
        )
        .start();
    for round in 0..saga_stall_rounds(2) {
        slow_writes_round(&node, round).await;
    }
    assert!(
        node.log().contains("resolved an expired reservation"),
        "the janitor never settled a lease"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_race_a_single_use_invite_twenty_times() {
    let node = TestNode::builder()
        .no_address_limits()
        .fast_hashing()
        .start();
    for round in 0..20 {
        race(&node, 50, 1, round).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_clients_race_a_five_use_invite_twenty_times() {
    let node = TestNode::builder()
        .no_address_limits()
        .fast_hashing()
        .start();
    for round in 0..20 {
        race(&node, 20, 5, round).await;
    }
}

#[tokio::test]
async fn invites_and_uses_survive_a_restart() {
    let mut node = TestNode::builder()
        .no_address_limits()
        .fast_hashing()
        .start();
    let token = node.invite(&["--uses", "2"]);
    let mut c = node.with_invite(&token).await;
    assert_eq!(
        c.register("before", PASSWORD).await.unwrap().attr("type"),
        Some("result")
    );
    drop(c);
    assert!(node.stop().success());
    node.restart();
    let show = node.show(&token);
    assert!(show.contains("uses:     1/2"), "{show}");
    let mut c = node.with_invite(&token).await;
    assert_eq!(
        c.register("after", PASSWORD).await.unwrap().attr("type"),
        Some("result")
    );
    let mut c = node.connect_tls().await;
    assert_iq_error(
        &c.preauth(&token).await.unwrap(),
        "cancel",
        "item-not-found",
        Some(INVALID),
    );
}

/// The node dies (as by kill -9) at `failpoint` during a registration; after a
/// restart the lease janitor settles the reservation.
async fn crash_during_registration(failpoint: &str) -> (TestNode, String) {
    let mut node = TestNode::builder()
        .no_address_limits()
        .fast_hashing()
        .set("USHER_LEDGER__RESERVATION_LEASE", "1s")
        .set("USHER_LEDGER__JANITOR_INTERVAL", "200ms")
        .set("USHER_FAILPOINTS", failpoint)
        .start();
    let token = node.invite(&[]);
    let mut c = node.with_invite(&token).await;
    let died = c.register("crashy", PASSWORD).await;
    assert!(died.is_err(), "the node should have died: {died:?}");
    node.kill9();
    // Same data dir, failpoint off.
    node.set_env("USHER_FAILPOINTS", "");
    node.restart();
    (node, token)
}

async fn wait_for(node: &TestNode, token: &str, needle: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let show = node.show(token);
        if show.contains(needle) {
            return show;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never reached '{needle}': {show}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn crash_after_the_account_write_commits_the_use() {
    let (node, token) = crash_during_registration("after-account-write").await;
    wait_for(&node, &token, "uses:     1/1 (0 pending, 0 left)").await;
    assert_eq!(
        node.auth(Mech::ScramSha1, "crashy", PASSWORD).await,
        Auth::Success
    );
}

#[tokio::test]
async fn crash_before_the_account_write_releases_the_use() {
    let (node, token) = crash_during_registration("after-reserve").await;
    wait_for(&node, &token, "uses:     0/1 (0 pending, 1 left)").await;
    assert_eq!(
        node.auth(Mech::Plain, "crashy", PASSWORD).await,
        Auth::Failure("not-authorized".into())
    );
    // The invite is still good.
    let mut c = node.with_invite(&token).await;
    assert_eq!(
        c.register("crashy", PASSWORD).await.unwrap().attr("type"),
        Some("result")
    );
}

#[tokio::test]
async fn cli_lists_shows_revokes_and_reports_errors() {
    let node = TestNode::builder()
        .no_address_limits()
        .fast_hashing()
        .start();
    let a = node.invite(&[]);
    let b = node.invite(&["--unlimited", "--ttl", "1h", "--role", "tester"]);
    // Tokens may begin with '-': the CLI must still take them as tokens.
    let out = node.cli(&["show", "-AAAAAAAAAAAAAAAAAAAAA"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no such invite"),
        "{out:?}"
    );
    let list = String::from_utf8(node.cli(&["list"]).stdout).unwrap();
    assert!(list.contains(&a) && list.contains(&b), "{list}");
    let groups = String::from_utf8(node.cli(&["list", "--kind", "group"]).stdout).unwrap();
    assert!(groups.contains(&b) && !groups.contains(&a), "{groups}");
    let json: serde_json::Value =
        serde_json::from_slice(&node.cli(&["--json", "show", &b]).stdout).unwrap();
    assert_eq!(json["kind"], "group");
    assert_eq!(json["max_uses"], serde_json::Value::Null);
    assert_eq!(json["roles"][0], "tester");
    let out = node.cli(&["revoke", &a]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("revoked {a}")
    );
    let revoked = String::from_utf8(node.cli(&["list", "--state", "revoked"]).stdout).unwrap();
    assert!(revoked.contains(&a) && !revoked.contains(&b), "{revoked}");

    // Errors: one line on stderr, exit 1.
    assert_cli_error(
        node.cli(&["show", "AAAAAAAAAAAAAAAAAAAAAA"]),
        "no such invite",
    );
    assert_cli_error(node.cli(&["create", "--uses", "0"]), "at least 1");
    let wrong = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(wrong.path(), "not-the-token-at-all").unwrap();
    let out = usher_command()
        .args([
            "invite",
            "list",
            "--server",
            &format!("http://{}", node.admin_addr),
            "--token-file",
        ])
        .arg(wrong.path())
        .output()
        .unwrap();
    assert_cli_error(out, "refused the token");
    let out = usher_command()
        .args([
            "invite",
            "list",
            "--server",
            &format!("http://127.0.0.1:{}", free_port()),
            "--token-file",
        ])
        .arg(wrong.path())
        .output()
        .unwrap();
    assert_cli_error(out, "cannot reach the admin API");
}
