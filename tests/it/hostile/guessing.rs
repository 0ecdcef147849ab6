//! Guessing against the real binary over its sockets: passwords per address
//! and per username across streams, invite tokens per stream and per address,
//! the age of a validated invite, and SCRAM answers that do not tell who
//! exists (salts, iteration counts, timing). The attacker connects from
//! 127.0.0.1, the honest client from 127.0.0.2 (another address to the node).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::fixture::*;
use usher::xmpp::{ns, Element};
use usher_load::client::{Auth, Mech};
use usher_load::Client;

const WRONG: &str = "not the password";
/// The node's default `limits.max_auth_failures` and `max_preauth_failures`.
const PER_STREAM: usize = 5;
/// What a username past its share of failures waits first (see `c2s::guessing`).
const FIRST_DELAY: Duration = Duration::from_millis(500);

fn attacker() -> IpAddr {
    "127.0.0.1".parse().expect("ip")
}

fn honest() -> IpAddr {
    "127.0.0.2".parse().expect("ip")
}

async fn stream_from(node: &TestNode, from: IpAddr) -> Client {
    Client::connect_tls_from(node.addr, from, DOMAIN, &node.trust())
        .await
        .expect("connect")
}

async fn attempt(c: &mut Client, mech: Mech, user: &str, password: &str) -> String {
    match c.authenticate(mech, user, password).await.expect("answer") {
        Auth::Success => "success".to_owned(),
        Auth::Failure(condition) => condition,
    }
}

/// Logs in from `from` on a fresh stream: the SASL outcome.
async fn login_from(node: &TestNode, from: IpAddr, mech: Mech, user: &str) -> String {
    let mut c = stream_from(node, from).await;
    attempt(&mut c, mech, user, PASSWORD).await
}

/// Wrong passwords on one stream until the node ends it: the SASL condition
/// of each answer, and the stream error it ended with.
async fn guess_until_closed(
    node: &TestNode,
    mech: Mech,
    user: &str,
) -> (Vec<String>, (String, Option<String>)) {
    let mut c = stream_from(node, attacker()).await;
    let mut answers = Vec::new();
    for _ in 0..PER_STREAM {
        answers.push(attempt(&mut c, mech, user, WRONG).await);
    }
    let end = c.next_element().await.expect("a stream error");
    (answers, stream_error(&end))
}

fn rate_limit_hits(node: &TestNode, limit: &str) -> f64 {
    node.metric(&format!(
        r#"usher_rate_limit_hits_total{{limit="{limit}"}}"#
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_guessing_from_one_address_is_refused_while_others_log_in() {
    let node = TestNode::builder()
        .open_registration()
        .no_address_limits()
        .fast_hashing()
        .set_all(&[
            ("USHER_LIMITS__AUTH_FAILURES_PER_ADDRESS", "8"),
            ("USHER_LIMITS__AUTH_FAILURES_PER_ACCOUNT", "0"),
        ])
        .start();
    node.register("victim", PASSWORD).await;
    let closed = (
        "policy-violation".to_owned(),
        Some("Too many failed authentication attempts".to_owned()),
    );

    let (answers, end) = guess_until_closed(&node, Mech::Plain, "victim").await;
    assert_eq!(answers, vec!["not-authorized"; 5]);
    assert_eq!(end, closed);

    // During the attack, another address logs in and registers.
    assert_eq!(
        login_from(&node, honest(), Mech::ScramSha256, "victim").await,
        "success"
    );

    // Eight failures spent: the rest are refused at once, and the stream
    // still ends at its own limit.
    let (answers, end) = guess_until_closed(&node, Mech::ScramSha1, "victim").await;
    assert_eq!(
        answers,
        [
            "not-authorized",
            "not-authorized",
            "not-authorized",
            "temporary-auth-failure",
            "temporary-auth-failure"
        ]
    );
    assert_eq!(end, closed);
    // Even the right password is not checked from that address now.
    assert_eq!(
        login_from(&node, attacker(), Mech::Plain, "victim").await,
        "temporary-auth-failure"
    );

    // After: the honest address is unaffected.
    assert_eq!(
        login_from(&node, honest(), Mech::Plain, "victim").await,
        "success"
    );
    let mut c = stream_from(&node, honest()).await;
    let reply = c.register("newcomer", PASSWORD).await.expect("reply");
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    assert_eq!(
        login_from(&node, honest(), Mech::ScramSha1, "newcomer").await,
        "success"
    );
    assert_eq!(rate_limit_hits(&node, "auth_failures_per_address"), 3.0);
    assert_eq!(rate_limit_hits(&node, "sasl_failures"), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_username_under_attack_answers_late_but_its_owner_logs_in() {
    let node = TestNode::builder()
        .open_registration()
        .no_address_limits()
        .fast_hashing()
        .set_all(&[
            ("USHER_LIMITS__AUTH_FAILURES_PER_ADDRESS", "0"),
            ("USHER_LIMITS__AUTH_FAILURES_PER_ACCOUNT", "3"),
            ("USHER_LIMITS__MAX_AUTH_FAILURES", "10"),
        ])
        .start();
    node.register("alice", PASSWORD).await;
    let mut c = stream_from(&node, attacker()).await;
    // The username's share, spent under both spellings of the name.
    for user in ["alice", "ALICE", "alice"] {
        let started = Instant::now();
        assert_eq!(
            attempt(&mut c, Mech::ScramSha1, user, WRONG).await,
            "not-authorized"
        );
        assert!(started.elapsed() < FIRST_DELAY, "{:?}", started.elapsed());
    }

    // Now each failure comes later than the one before, whatever the address.
    let attack = tokio::spawn(async move {
        let mut waited = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            assert_eq!(
                attempt(&mut c, Mech::Plain, "alice", WRONG).await,
                "not-authorized"
            );
            waited.push(started.elapsed());
        }
        waited
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Meanwhile the owner, from elsewhere, is neither locked out nor slowed.
    let started = Instant::now();
    assert_eq!(
        login_from(&node, honest(), Mech::ScramSha256, "alice").await,
        "success"
    );
    assert!(started.elapsed() < FIRST_DELAY, "{:?}", started.elapsed());
    assert!(!attack.is_finished(), "the attacker's answers came early");
    let waited = attack.await.expect("attack");
    assert!(waited[0] >= FIRST_DELAY, "{waited:?}");
    assert!(waited[1] >= FIRST_DELAY * 2, "{waited:?}");
    assert!(waited[2] >= FIRST_DELAY * 4, "{waited:?}");

    // After the attack: the right password still works at once, and an
    // unrelated username was never slowed.
    assert_eq!(
        login_from(&node, attacker(), Mech::Plain, "alice").await,
        "success"
    );
    let mut other = stream_from(&node, attacker()).await;
    let started = Instant::now();
    assert_eq!(
        attempt(&mut other, Mech::Plain, "bob", WRONG).await,
        "not-authorized"
    );
    assert!(started.elapsed() < FIRST_DELAY, "{:?}", started.elapsed());
    assert_eq!(rate_limit_hits(&node, "auth_failures_per_account"), 3.0);
}

/// The salt and iteration count the node answers a SCRAM client-first with.
async fn server_first(node: &TestNode, mech: Mech, user: &str) -> (Vec<u8>, u32) {
    let mut c = node.connect_tls().await;
    let first = B64.encode(format!("n,,n={user},r=probe"));
    let auth = format!(
        "<auth xmlns='{}' mechanism='{}'>{first}</auth>",
        ns::SASL,
        mech.name()
    );
    c.send_raw(auth.as_bytes()).await.expect("send");
    let challenge = c.next_element().await.expect("challenge");
    assert!(challenge.is("challenge", ns::SASL), "{challenge:?}");
    let text = String::from_utf8(B64.decode(challenge.text()).expect("base64")).expect("utf-8");
    let field = |k: &str| {
        text.split(',')
            .find_map(|p| p.strip_prefix(k))
            .unwrap_or_else(|| panic!("no {k} in {text}"))
            .to_owned()
    };
    let salt = B64.decode(field("s=")).expect("salt");
    let iterations = field("i=").parse().expect("iterations");
    (salt, iterations)
}

/// How long the node takes to refuse a wrong SCRAM proof or PLAIN password
/// for `user`, from the last byte sent to the failure.
async fn failure_time(node: &TestNode, mech: Mech, user: &str) -> Duration {
    let mut c = node.connect_tls().await;
    let response = match mech {
        Mech::Plain => format!(
            "<auth xmlns='{}' mechanism='PLAIN'>{}</auth>",
            ns::SASL,
            B64.encode(format!("\0{user}\0{WRONG}"))
        ),
        Mech::ScramSha1 | Mech::ScramSha256 => {
            let first = B64.encode(format!("n,,n={user},r=probe"));
            let auth = format!(
                "<auth xmlns='{}' mechanism='{}'>{first}</auth>",
                ns::SASL,
                mech.name()
            );
            c.send_raw(auth.as_bytes()).await.expect("send");
            let challenge = c.next_element().await.expect("challenge");
            let text =
                String::from_utf8(B64.decode(challenge.text()).expect("base64")).expect("utf-8");
            let nonce = text
                .split(',')
                .find_map(|p| p.strip_prefix("r="))
                .expect("nonce");
            let proof = B64.encode([0u8; 32]);
            format!(
                "<response xmlns='{}'>{}</response>",
                ns::SASL,
                B64.encode(format!("c=biws,r={nonce},p={proof}"))
            )
        }
    };
    let started = Instant::now();
    c.send_raw(response.as_bytes()).await.expect("send");
    let failure = c.next_element().await.expect("failure");
    let took = started.elapsed();
    assert!(failure.is("failure", ns::SASL), "{failure:?}");
    assert!(
        failure.get_child("not-authorized", ns::SASL).is_some(),
        "{failure:?}"
    );
    took
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_does_not_tell_who_exists_by_salt_iterations_or_timing() {
    // Production's iteration count, so that PLAIN's hashing is measurable.
    let node = TestNode::builder()
        .open_registration()
        .no_address_limits()
        .set_all(&[
            ("USHER_LIMITS__AUTH_FAILURES_PER_ADDRESS", "0"),
            ("USHER_LIMITS__AUTH_FAILURES_PER_ACCOUNT", "0"),
        ])
        .start();
    node.register("alice", PASSWORD).await;
    let names = ["alice", "ALICE", "nobody", "NOBODY"];
    let mut seen = Vec::new();
    for user in names {
        let sha1 = server_first(&node, Mech::ScramSha1, user).await;
        let sha256 = server_first(&node, Mech::ScramSha256, user).await;
        // Stable from one stream to the next.
        assert_eq!(sha1, server_first(&node, Mech::ScramSha1, user).await);
        assert_eq!(sha256, server_first(&node, Mech::ScramSha256, user).await);
        // One salt per hash, of the same length, and one iteration count.
        assert_ne!(sha1.0, sha256.0, "{user}: one salt for both hashes");
        assert_eq!((sha1.0.len(), sha256.0.len()), (16, 16), "{user}");
        assert_eq!((sha1.1, sha256.1), (10_000, 10_000), "{user}");
        seen.push((sha1, sha256));
    }
    // A name and its other case answer alike, whether or not it exists.
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[2], seen[3]);
    assert_ne!(seen[0], seen[2]);

    // Failures take as long for a wrong password as for nobody. Interleaved,
    // so that load on the machine falls on both alike.
    for mech in [Mech::ScramSha256, Mech::Plain] {
        let (mut known, mut unknown) = (Vec::new(), Vec::new());
        for _ in 0..15 {
            known.push(failure_time(&node, mech, "ALICE").await);
            unknown.push(failure_time(&node, mech, "nobody").await);
        }
        let (k, u) = (median(known), median(unknown));
        let gap = k.abs_diff(u);
        let tolerance = Duration::from_millis(5).max(k.max(u) / 3);
        assert!(
            gap <= tolerance,
            "{mech:?}: wrong password {k:?}, unknown user {u:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_login_brings_old_keys_to_the_configured_iteration_count() {
    let mut node = TestNode::builder()
        .open_registration()
        .no_address_limits()
        .fast_hashing()
        .start();
    node.register("old", PASSWORD).await;
    assert!(node.stop().success());
    node.set_env("USHER_SCRAM_ITERATIONS", "5000");
    node.restart();
    let before = server_first(&node, Mech::ScramSha256, "old").await;
    // The residual: until its owner logs in with PLAIN (or sets a new
    // password), an old account still shows the count it was made with.
    assert_eq!(before.1, 4096);
    assert_eq!(server_first(&node, Mech::ScramSha256, "new").await.1, 5000);
    // SCRAM cannot re-derive (the node never sees the password) ...
    assert_eq!(
        login_from(&node, honest(), Mech::ScramSha1, "old").await,
        "success"
    );
    assert_eq!(server_first(&node, Mech::ScramSha1, "old").await.1, 4096);
    // ... PLAIN can.
    assert_eq!(
        login_from(&node, honest(), Mech::Plain, "old").await,
        "success"
    );
    let sha1 = server_first(&node, Mech::ScramSha1, "old").await;
    let sha256 = server_first(&node, Mech::ScramSha256, "old").await;
    assert_eq!((sha1.1, sha256.1), (5000, 5000));
    assert_ne!(sha256.0, before.0, "fresh salts with the new keys");
    for mech in Mech::ALL {
        assert_eq!(
            login_from(&node, honest(), mech, "old").await,
            "success",
            "{mech:?}"
        );
    }
}

async fn preauth_answer(c: &mut Client, token: &str) -> Element {
    c.preauth(token).await.expect("preauth answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_guessing_closes_the_stream_and_is_refused_per_address() {
    let node = TestNode::builder()
        .set("USHER_LIMITS__PREAUTH_FAILURES_PER_ADDRESS", "8")
        .start();
    let token = node.invite(&[]);
    let guess = |i: usize| format!("guess{i:0>20}");

    let mut c = stream_from(&node, attacker()).await;
    for i in 0..PER_STREAM {
        let reply = preauth_answer(&mut c, &guess(i)).await;
        assert_iq_error(
            &reply,
            "cancel",
            "item-not-found",
            Some("The invite token is invalid or expired"),
        );
    }
    let end = c.next_element().await.expect("a stream error");
    assert_eq!(
        stream_error(&end),
        (
            "policy-violation".to_owned(),
            Some("Too many invalid invite tokens".to_owned())
        )
    );

    // During the attack, an invitee on another address registers.
    let mut invitee = stream_from(&node, honest()).await;
    let reply = preauth_answer(&mut invitee, &token).await;
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    let reply = invitee.register("invitee", PASSWORD).await.expect("reply");
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");

    // Eight refused from this address: the rest are refused without a
    // lookup (a good token too), and the stream ends at its limit.
    let mut c = stream_from(&node, attacker()).await;
    for i in 0..3 {
        let reply = preauth_answer(&mut c, &guess(10 + i)).await;
        assert_iq_error(&reply, "cancel", "item-not-found", None);
    }
    let fresh = node.invite(&[]);
    for t in [fresh.as_str(), "guess-again"] {
        let reply = preauth_answer(&mut c, t).await;
        assert_iq_error(
            &reply,
            "wait",
            "policy-violation",
            Some("Too many invalid invite tokens from your address; try again later"),
        );
    }
    let end = c.next_element().await.expect("a stream error");
    assert_eq!(stream_error(&end).0, "policy-violation");

    // After: the honest address uses the fresh invite and logs in.
    let mut second = stream_from(&node, honest()).await;
    let reply = preauth_answer(&mut second, &fresh).await;
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    let reply = second.register("second", PASSWORD).await.expect("reply");
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    for user in ["invitee", "second"] {
        assert_eq!(
            login_from(&node, honest(), Mech::ScramSha256, user).await,
            "success"
        );
    }
    assert_eq!(rate_limit_hits(&node, "preauth_failures"), 2.0);
    assert_eq!(rate_limit_hits(&node, "preauth_failures_per_address"), 2.0);
    assert_eq!(
        node.metric(r#"usher_preauth_total{outcome="throttled"}"#),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validated_invite_ages_out_on_its_stream() {
    let node = TestNode::builder()
        .fast_hashing()
        .set("USHER_LIMITS__VALIDATED_INVITE_MAX_AGE", "2s")
        .start();
    let token = node.invite(&[]);
    let mut c = node.with_invite(&token).await;
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let reply = c.register("late", PASSWORD).await.expect("reply");
    assert_iq_error(
        &reply,
        "cancel",
        "item-not-found",
        Some("The invite token is invalid or expired"),
    );
    // The stream forgot it; proving it again (it is still valid) works.
    let reply = c.register("late", PASSWORD).await.expect("reply");
    assert_iq_error(&reply, "modify", "not-acceptable", None);
    let reply = preauth_answer(&mut c, &token).await;
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    let reply = c.register("late", PASSWORD).await.expect("reply");
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    assert_eq!(rate_limit_hits(&node, "validated_invite_max_age"), 1.0);
}
