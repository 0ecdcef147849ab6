//! Registration, login with every mechanism, password change, removal, and
//! persistence across restarts, against the real binary.

use crate::fixture::*;
use usher::xmpp::{ns, Element};
use usher_load::client::{Auth, Mech};

#[tokio::test]
async fn register_then_log_in_with_every_mechanism_and_bind() {
    let node = TestNode::builder()
        .open_registration()
        .no_address_limits()
        .fast_hashing()
        .start();
    let mut c = node.connect_tls().await;
    assert!(c.features.has_child("register", ns::REGISTER_FEATURE));
    assert_eq!(mechanisms(&c), ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]);
    let reply = c.register("Alice", PASSWORD).await.unwrap();
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    drop(c);
    for mech in Mech::ALL {
        // Usernames are case-mapped: "ALICE" and "alice" are the same account.
        let (mut c, jid) =
            usher_load::Client::login(node.addr, DOMAIN, &node.trust(), mech, "ALICE", PASSWORD)
                .await
                .unwrap_or_else(|e| panic!("{mech:?}: {e}"));
        assert!(jid.starts_with("alice@localhost/"), "{jid}");
        assert!(!c.features.has_child("register", ns::REGISTER_FEATURE));
        assert!(!c.features.has_child("mechanisms", ns::SASL));
        let reply = c.request(ping()).await.unwrap();
        assert_eq!(reply.attr("type"), Some("result"));
        c.close().await.unwrap();
    }
    // A requested resource is honoured.
    let mut c = node.connect_tls().await;
    assert_eq!(
        c.authenticate(Mech::ScramSha256, "alice", PASSWORD)
            .await
            .unwrap(),
        Auth::Success
    );
    assert_eq!(
        c.bind(Some("laptop")).await.unwrap(),
        "alice@localhost/laptop"
    );
}

fn mechanisms(c: &usher_load::Client) -> Vec<String> {
    c.features
        .get_child("mechanisms", ns::SASL)
        .expect("mechanisms")
        .children()
        .map(Element::text)
        .collect()
}

/// `scram_hashes = sha-1` (Prosody's work per password): only SHA-1 keys are
/// stored, only SCRAM-SHA-1 and PLAIN are offered, and both work.
#[tokio::test]
async fn scram_hashes_limit_stored_keys_and_offered_mechanisms() {
    let node = TestNode::builder()
        .open_registration()
        .no_address_limits()
        .fast_hashing()
        .set("USHER_SCRAM_HASHES", "sha-1")
        .start();
    let mut c = node.connect_tls().await;
    assert_eq!(mechanisms(&c), ["SCRAM-SHA-1", "PLAIN"]);
    let reply = c.register("sha1only", PASSWORD).await.unwrap();
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    for mech in [Mech::ScramSha1, Mech::Plain] {
        assert_eq!(node.auth(mech, "sha1only", PASSWORD).await, Auth::Success);
    }
    assert_eq!(
        node.auth(Mech::ScramSha256, "sha1only", PASSWORD).await,
        Auth::Failure("invalid-mechanism".into())
    );
}

#[tokio::test]
async fn wrong_password_and_unknown_user_fail_alike() {
    let node = TestNode::builder()
        .open_registration()
        .no_address_limits()
        .fast_hashing()
        .start();
    node.register("bob", PASSWORD).await;
    for mech in Mech::ALL {
        let wrong = node.auth(mech, "bob", "not the password").await;
        assert_eq!(wrong, Auth::Failure("not-authorized".into()), "{mech:?}");
        let unknown = node.auth(mech, "nobody", PASSWORD).await;
        assert_eq!(unknown, Auth::Failure("not-authorized".into()), "{mech:?}");
    }
    // An unknown user still gets a normal-looking SCRAM challenge (salt and
    // iterations), stable across attempts so that it cannot be told apart.
    let mut salts = Vec::new();
    for _ in 0..2 {
        let mut c = node.connect_tls().await;
        c.send_raw(
            b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>biwsbj1ub2JvZHkscj1hYmNkZWZnaGlqa2w=</auth>",
        )
        .await
        .unwrap();
        let challenge = c.next_stanza().await.unwrap();
        assert!(challenge.is("challenge", ns::SASL), "{challenge:?}");
        let text = String::from_utf8(usher::xmpp::sasl::decode_payload(&challenge.text()).unwrap())
            .unwrap();
        assert!(
            text.starts_with("r=abcdefghijkl") && text.contains(",i=4096"),
            "{text}"
        );
        salts.push(text.split(',').nth(1).unwrap().to_owned());
    }
    assert_eq!(salts[0], salts[1]);
}

#[tokio::test]
async fn too_many_failures_close_the_stream() {
    let node = TestNode::builder()
        .open_registration()
        .no_address_limits()
        .fast_hashing()
        .set("USHER_LIMITS__MAX_AUTH_FAILURES", "2")
        .start();
    let mut c = node.connect_tls().await;
    assert!(matches!(
        c.authenticate(Mech::Plain, "x", "yyyyyyyy").await.unwrap(),
        Auth::Failure(_)
    ));
    assert!(matches!(
        c.authenticate(Mech::Plain, "x", "yyyyyyyy").await.unwrap(),
        Auth::Failure(_)
    ));
    let el = c.next_element().await.unwrap();
    assert_eq!(stream_error(&el).0, "policy-violation");
}

#[tokio::test]
async fn invalid_reserved_and_taken_usernames_are_refused() {
    let node = TestNode::builder()
        .open_registration()
        .no_address_limits()
        .fast_hashing()
        .start();
    node.register("carol", PASSWORD).await;
    let mut c = node.connect_tls().await;
    for bad in ["", "with space", "a@b", "x/y", "admin", "\u{2163}"] {
        let reply = c.register(bad, PASSWORD).await.unwrap();
        assert_iq_error(
            &reply,
            "modify",
            "not-acceptable",
            Some("The requested username is invalid."),
        );
    }
    let reply = c.register("CAROL", PASSWORD).await.unwrap();
    assert_iq_error(
        &reply,
        "cancel",
        "conflict",
        Some("The requested username already exists."),
    );
    let reply = c.register("dave", "").await.unwrap();
    assert_iq_error(
        &reply,
        "modify",
        "not-acceptable",
        Some("A password is required."),
    );
    let reply = c.register("dave", "short").await.unwrap();
    assert_iq_error(
        &reply,
        "modify",
        "not-acceptable",
        Some("The password is too short: use at least 8 characters."),
    );
    // The same stream can still register once the input is right.
    let reply = c.register("dave", PASSWORD).await.unwrap();
    assert_eq!(reply.attr("type"), Some("result"));
    // The refused attempt did not change carol's password.
    assert_eq!(
        node.auth(Mech::ScramSha1, "carol", PASSWORD).await,
        Auth::Success
    );
}

#[tokio::test]
async fn registration_form_and_form_submission() {
    let node = TestNode::builder()
        .open_registration()
        .no_address_limits()
        .fast_hashing()
        .start();
    let mut c = node.connect_tls().await;
    let get = Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_child(Element::new("query", ns::REGISTER));
    let reply = c.request(get).await.unwrap();
    let query = reply.get_child("query", ns::REGISTER).expect("query");
    assert!(query.has_child("username", ns::REGISTER) && query.has_child("password", ns::REGISTER));
    let form =
        usher::xmpp::dataform::DataForm::parse(query.get_child("x", ns::DATA_FORMS).expect("form"))
            .unwrap();
    assert_eq!(form.kind, "form");
    assert_eq!(form.form_type(), Some("jabber:iq:register"));
    let required: Vec<&str> = form
        .fields
        .iter()
        .filter(|f| f.required)
        .map(|f| f.var.as_str())
        .collect();
    assert_eq!(required, ["username", "password"]);

    let submit = usher::xmpp::dataform::DataForm::new("submit")
        .with_form_type(ns::REGISTER)
        .with_field(usher::xmpp::dataform::Field::new("username", "text-single").value("erin"))
        .with_field(usher::xmpp::dataform::Field::new("password", "text-private").value(PASSWORD));
    let set = Element::new("iq", ns::CLIENT)
        .with_attr("type", "set")
        .with_child(Element::new("query", ns::REGISTER).with_child(submit.to_element()));
    let reply = c.request(set).await.unwrap();
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    assert_eq!(
        node.auth(Mech::ScramSha256, "erin", PASSWORD).await,
        Auth::Success
    );
}

#[tokio::test]
async fn invite_only_mode_refuses_registration_without_an_invite() {
    let node = TestNode::builder()
        .no_address_limits()
        .fast_hashing()
        .start();
    let mut c = node.connect_tls().await;
    let reply = c.register("frank", PASSWORD).await.unwrap();
    assert_iq_error(
        &reply,
        "modify",
        "not-acceptable",
        Some("Registration on this server is through invitation only"),
    );
    assert_eq!(
        node.auth(Mech::Plain, "frank", PASSWORD).await,
        Auth::Failure("not-authorized".into())
    );
}

#[tokio::test]
async fn registration_can_be_switched_off() {
    let node = TestNode::builder()
        .open_registration()
        .no_address_limits()
        .fast_hashing()
        .set("USHER_ALLOW_REGISTRATION", "false")
        .start();
    let mut c = node.connect_tls().await;
    assert!(!c.features.has_child("register", ns::REGISTER_FEATURE));
    let reply = c.register("gina", PASSWORD).await.unwrap();
    assert_iq_error(&reply, "cancel", "service-unavailable", None);
}

#[tokio::test]
async fn registrations_per_address_are_rate_limited() {
    let node = TestNode::builder()
        .open_registration()
        .fast_hashing()
        .set("USHER_LIMITS__REGISTRATIONS_PER_IP_PER_MINUTE", "2")
        .start();
    let mut c = node.connect_tls().await;
    for name in ["r1", "r2"] {
        let reply = c.register(name, PASSWORD).await.unwrap();
        assert_eq!(reply.attr("type"), Some("result"));
    }
    let reply = c.register("r3", PASSWORD).await.unwrap();
    assert_iq_error(&reply, "wait", "resource-constraint", None);
    // The stream stays open.
    assert_eq!(
        c.request(ping()).await.unwrap().attr("type"),
        Some("result")
    );
}

#[tokio::test]
async fn password_change_and_account_removal() {
    let node = TestNode::builder()
        .open_registration()
        .no_address_limits()
        .fast_hashing()
        .start();
    node.register("hank", PASSWORD).await;
    let (mut c, _) = usher_load::Client::login(
        node.addr,
        DOMAIN,
        &node.trust(),
        Mech::ScramSha1,
        "hank",
        PASSWORD,
    )
    .await
    .unwrap();
    let (mut other, _) = usher_load::Client::login(
        node.addr,
        DOMAIN,
        &node.trust(),
        Mech::Plain,
        "hank",
        PASSWORD,
    )
    .await
    .unwrap();
    // Someone else's name is refused.
    let reply = c.register("notme", "brand new password").await.unwrap();
    assert_iq_error(&reply, "modify", "bad-request", None);
    let reply = c.register("hank", "brand new password").await.unwrap();
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    // The change ends the user's other session (whoever knew the old
    // password is out), not the one that made it.
    let el = other.next_element().await.unwrap();
    assert_eq!(
        stream_error(&el),
        ("not-authorized".into(), Some("Password changed".into()))
    );
    assert_eq!(
        c.request(ping()).await.unwrap().attr("type"),
        Some("result")
    );
    for mech in Mech::ALL {
        assert_eq!(
            node.auth(mech, "hank", PASSWORD).await,
            Auth::Failure("not-authorized".into())
        );
        assert_eq!(
            node.auth(mech, "hank", "brand new password").await,
            Auth::Success
        );
    }
    let remove = Element::new("iq", ns::CLIENT)
        .with_attr("type", "set")
        .with_child(
            Element::new("query", ns::REGISTER).with_child(Element::new("remove", ns::REGISTER)),
        );
    let reply = c.request(remove).await.unwrap();
    assert_eq!(reply.attr("type"), Some("result"));
    let el = c.next_element().await.unwrap();
    assert_eq!(stream_error(&el).0, "not-authorized");
    assert_eq!(
        node.auth(Mech::Plain, "hank", "brand new password").await,
        Auth::Failure("not-authorized".into())
    );
    // The name is quarantined (30 days by default), with a clear refusal.
    let mut c = node.connect_tls().await;
    let reply = c.register("hank", PASSWORD).await.unwrap();
    assert_iq_error(
        &reply,
        "cancel",
        "conflict",
        Some("The requested username belonged to a removed account and cannot be registered yet."),
    );
}

#[tokio::test]
async fn accounts_survive_a_graceful_restart_and_a_kill() {
    let mut node = TestNode::builder()
        .open_registration()
        .no_address_limits()
        .fast_hashing()
        .start();
    node.register("ivan", PASSWORD).await;
    let mut open = node.connect_tls().await;
    let status = node.stop();
    assert!(status.success(), "exit status {status}");
    // The open stream was told why it ends.
    let el = open.next_element().await.unwrap();
    assert_eq!(stream_error(&el).0, "system-shutdown");
    node.restart();
    assert_eq!(
        node.auth(Mech::ScramSha256, "ivan", PASSWORD).await,
        Auth::Success
    );

    node.register("judy", PASSWORD).await;
    node.kill9();
    node.restart();
    assert_eq!(
        node.auth(Mech::ScramSha1, "judy", PASSWORD).await,
        Auth::Success
    );
    assert_eq!(
        node.auth(Mech::Plain, "ivan", PASSWORD).await,
        Auth::Success
    );
}

#[tokio::test]
async fn secrets_stay_out_of_the_log() {
    let node = TestNode::builder()
        .open_registration()
        .no_address_limits()
        .fast_hashing()
        .start();
    node.register("kate", PASSWORD).await;
    assert_eq!(
        node.auth(Mech::Plain, "kate", PASSWORD).await,
        Auth::Success
    );
    let log = node.log();
    assert!(log.contains("account registered"), "{log}");
    assert!(!log.contains(PASSWORD), "password in the log");
    let key =
        std::fs::metadata(usher::c2s::tls::generated_paths(&node.data_dir, DOMAIN).1).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        key.permissions().mode() & 0o077,
        0,
        "private key readable by others"
    );
}

#[test]
fn invalid_configuration_exits_with_code_2_naming_the_key() {
    let out = usher_command()
        .arg("serve")
        .env("USHER_LIMITS__MAX_STANZA_SIZE", "lots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("limits.max_stanza_size"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("usher.toml");
    std::fs::write(&file, "domain = 'example.org'\nc2s_adr = '127.0.0.1:1'\n").unwrap();
    let out = usher_command()
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("c2s_adr"));
}

#[tokio::test]
async fn an_operator_removes_an_account_and_lifts_its_quarantine() {
    let node = TestNode::builder()
        .open_registration()
        .no_address_limits()
        .fast_hashing()
        .start();
    node.register("gina", PASSWORD).await;
    let (mut c, _) = usher_load::Client::login(
        node.addr,
        DOMAIN,
        &node.trust(),
        Mech::Plain,
        "gina",
        PASSWORD,
    )
    .await
    .unwrap();
    let out = node.cli_any(&["account", "remove", "gina"]);
    assert!(out.status.success(), "{out:?}");
    let el = c.next_element().await.unwrap();
    assert_eq!(
        stream_error(&el),
        ("not-authorized".into(), Some("Account removed".into()))
    );
    let mut c = node.connect_tls().await;
    let reply = c.register("gina", PASSWORD).await.unwrap();
    assert_iq_error(&reply, "cancel", "conflict", None);
    let out = node.cli_any(&["account", "unquarantine", "gina"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "gina may be registered again"
    );
    node.register("gina", PASSWORD).await;
    let out = node.cli_any(&["account", "unquarantine", "gina"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "gina was not quarantined"
    );
    assert_cli_error(
        node.cli_any(&["account", "remove", "ghost"]),
        "no such account",
    );
}
