//! The HTTP listener: probes and Prometheus metrics, checked against what
//! clients actually did.

use crate::fixture::*;
use usher_load::client::{Auth, Mech};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_ready_answer_on_a_running_node() {
    let node = TestNode::builder()
        .open_registration()
        .no_address_limits()
        .fast_hashing()
        .start();
    assert_eq!(node.http_get("/health"), (200, "ok\n".to_owned()));
    assert_eq!(node.http_get("/ready"), (200, "ready\n".to_owned()));
    let (status, _) = node.http_get("/nope");
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_clients_did() {
    let node = TestNode::builder()
        .no_address_limits()
        .fast_hashing()
        .start();
    let created = r#"usher_registrations_total{outcome="created",door="ibr"}"#;
    let conflict = r#"usher_registrations_total{outcome="conflict",door="ibr"}"#;
    let refused = r#"usher_registrations_total{outcome="not_acceptable",door="ibr"}"#;
    let invalid = r#"usher_preauth_total{outcome="invalid"}"#;
    let valid = r#"usher_preauth_total{outcome="valid"}"#;
    let before: Vec<f64> = [created, conflict, refused, invalid, valid]
        .iter()
        .map(|s| node.metric(s))
        .collect();

    // Three registrations with invites, one taken name, one without an invite,
    // one unknown token.
    for name in ["ada", "bob", "cy"] {
        node.register_via_invite(name, PASSWORD).await;
    }
    let token = node.invite(&[]);
    let mut c = node.with_invite(&token).await;
    let reply = c.register("ada", PASSWORD).await.expect("register");
    assert_iq_error(&reply, "cancel", "conflict", None);
    let mut c = node.connect_tls().await;
    let reply = c.register("dan", PASSWORD).await.expect("register");
    assert_iq_error(&reply, "modify", "not-acceptable", None);
    let reply = c.preauth("no-such-token").await.expect("preauth");
    assert_eq!(reply.attr("type"), Some("error"));
    assert_eq!(
        node.auth(Mech::ScramSha256, "bob", PASSWORD).await,
        Auth::Success
    );

    let after: Vec<f64> = [created, conflict, refused, invalid, valid]
        .iter()
        .map(|s| node.metric(s))
        .collect();
    let moved: Vec<f64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    // created 3, conflict 1, no invite 1, bad token 1, good tokens 4.
    assert_eq!(moved, vec![3.0, 1.0, 1.0, 1.0, 4.0]);

    let (_, text) = node.http_get("/metrics");
    for series in [
        r#"usher_sasl_auth_total{outcome="success"}"#,
        "usher_stanzas_in_total",
        "usher_stanzas_out_total",
        "usher_connections_accepted_total",
        "usher_ledger_proposal_seconds_count",
        "usher_raft_commit_seconds_count",
        "usher_ledger_batch_size_count",
        r#"usher_account_store_seconds_count{op="insert",result="ok"}"#,
    ] {
        let value = metric_value(&text, series).unwrap_or(0.0);
        assert!(value >= 1.0, "{series} = {value} in\n{text}");
    }
    assert!(
        text.contains("# TYPE usher_account_store_seconds histogram"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_pages_show_the_invite_or_say_why_not() {
    let node = TestNode::builder()
        .no_address_limits()
        .fast_hashing()
        .start();
    node.register_via_invite("ann", PASSWORD).await;
    let token = node.invite(&["--contact", "ann"]);
    let android = "Mozilla/5.0 (Linux; Android 14; Pixel 8)";
    let (status, page) = node.http_get_as(&format!("/invite/{token}"), android);
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("ann@localhost invites you to chat on localhost."),
        "{page}"
    );
    assert!(
        page.contains(&format!("href=\"xmpp:ann@localhost?roster;preauth={token}")),
        "{page}"
    );
    assert!(page.contains("<svg"), "a QR code: {page}");
    // Android clients first; the others behind a summary.
    let apps = page.split("id=\"apps\"").nth(1).expect("app list");
    let mine = apps.split("</ul>").next().expect("first list");
    assert!(
        mine.contains("Conversations") && !mine.contains("Monal"),
        "{mine}"
    );
    assert!(page.contains("Monal"), "others are still listed");
    assert!(page.contains("name=\"viewport\""), "usable on a phone");
    assert!(!page.contains("<script"), "no JavaScript needed");

    // An iPhone gets iOS clients.
    let (_, page) = node.http_get_as(
        &format!("/invite/{token}"),
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0)",
    );
    let mine = page
        .split("id=\"apps\"")
        .nth(1)
        .and_then(|a| a.split("</ul>").next())
        .expect("apps");
    assert!(
        mine.contains("Monal") && !mine.contains("Conversations"),
        "{mine}"
    );

    // Unknown: 404; revoked or used up: 410, each saying so.
    let (status, page) = node.http_get("/invite/no-such-invite-token");
    assert_eq!(status, 404);
    assert!(page.contains("There is no such invite"), "{page}");
    assert!(node.cli(&["revoke", &token]).status.success());
    let (status, page) = node.http_get(&format!("/invite/{token}"));
    assert_eq!(status, 410);
    assert!(page.contains("withdrawn"), "{page}");
    let used = node.invite(&[]);
    let mut c = node.with_invite(&used).await;
    let reply = c.register("bo", PASSWORD).await.expect("register");
    assert_eq!(reply.attr("type"), Some("result"));
    let (status, page) = node.http_get(&format!("/invite/{used}"));
    assert_eq!(status, 410);
    assert!(page.contains("already been used"), "{page}");
}

/// The form page's cookie nonce and hidden CSRF field.
fn form_tokens(reply: &HttpReply) -> (String, String) {
    let cookie = reply
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .expect("a form cookie")
        .to_owned();
    let field = reply
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a csrf field")
        .to_owned();
    (cookie, field)
}

fn get_form(node: &TestNode, token: &str) -> HttpReply {
    http_exchange(
        node.http_addr,
        "GET",
        &format!("/register/{token}"),
        &[],
        "",
    )
}

fn post_form(
    node: &TestNode,
    token: &str,
    headers: &[(&str, &str)],
    fields: &[(&str, &str)],
) -> HttpReply {
    let body = fields
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace(' ', "+")))
        .collect::<Vec<_>>()
        .join("&");
    let mut all = vec![("Content-Type", "application/x-www-form-urlencoded")];
    all.extend_from_slice(headers);
    http_exchange(
        node.http_addr,
        "POST",
        &format!("/register/{token}"),
        &all,
        &body,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_registration_checks_its_form_token_and_shares_the_address_limit() {
    let node = TestNode::builder()
        .fast_hashing()
        .set("USHER_LIMITS__REGISTRATIONS_PER_IP_PER_MINUTE", "3")
        .start();
    let token = node.invite(&["--uses", "10"]);
    let form = get_form(&node, &token);
    assert_eq!(form.status, 200, "{}", form.body);
    let set_cookie = form.header("set-cookie").expect("cookie").to_owned();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
        "{set_cookie}"
    );
    let (cookie, csrf) = form_tokens(&form);
    let fields = |name: &'static str, csrf: &str| {
        vec![
            ("username", name),
            ("password", PASSWORD),
            ("password_confirm", PASSWORD),
            ("csrf", csrf),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_owned()))
        .collect::<Vec<_>>()
    };
    let post = |headers: &[(&str, &str)], f: &[(&'static str, String)]| {
        let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        post_form(&node, &token, headers, &f)
    };

    // Forged: no cookie, a field for another cookie, another site's origin.
    let forged = [
        post(&[], &fields("forged1", &csrf)),
        post(
            &[("Cookie", "usher_form=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")],
            &fields("forged2", &csrf),
        ),
        post(
            &[("Cookie", &cookie), ("Origin", "https://evil.example")],
            &fields("forged3", &csrf),
        ),
        post(&[("Cookie", &cookie)], &fields("forged4", "bm90IGl0")),
    ];
    for reply in &forged {
        assert_eq!(reply.status, 403, "{}", reply.body);
        assert!(
            reply.body.contains("This form has expired"),
            "{}",
            reply.body
        );
    }
    for name in ["forged1", "forged2", "forged3", "forged4"] {
        let auth = node.auth(Mech::Plain, name, PASSWORD).await;
        assert!(matches!(auth, Auth::Failure(_)), "{name}: {auth:?}");
    }

    // Genuine, from this browser's own origin: registered, with the web path
    // in the invite's history. Forged posts did not count against the limit.
    let origin = format!("http://{}", node.http_addr);
    let done = post(
        &[("Cookie", &cookie), ("Origin", &origin)],
        &fields("webby", &csrf),
    );
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("webby@localhost"), "{}", done.body);
    assert_eq!(
        node.auth(Mech::ScramSha256, "webby", PASSWORD).await,
        Auth::Success
    );
    let history = node.cli(&["history", &token]);
    let history = String::from_utf8_lossy(&history.stdout);
    assert!(history.contains("webby via web"), "{history}");

    // The limit of 3 a minute is one budget for both doors: one more in band,
    // one more on the web, then both refuse.
    let mut c = node.with_invite(&token).await;
    let reply = c.register("ibr-one", PASSWORD).await.expect("register");
    assert_eq!(reply.attr("type"), Some("result"));
    let second = post(&[("Cookie", &cookie)], &fields("webtwo", &csrf));
    assert_eq!(second.status, 200, "{}", second.body);
    let refused = post(&[("Cookie", &cookie)], &fields("webthree", &csrf));
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert!(
        refused.body.contains("Too many registrations"),
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains("value=\"webthree\""),
        "the input is kept"
    );
    let mut c = node.with_invite(&token).await;
    let reply = c.register("ibr-two", PASSWORD).await.expect("register");
    assert_iq_error(&reply, "wait", "resource-constraint", None);
    let shown = node.show(&token);
    assert!(shown.contains("uses:     3/10"), "{shown}");

    // The outcomes, by door; forged posts never reached the registrar.
    let counted = |outcome: &str, door: &str| {
        node.metric(&format!(
            r#"usher_registrations_total{{outcome="{outcome}",door="{door}"}}"#
        ))
    };
    assert_eq!(counted("created", "web"), 2.0);
    assert_eq!(counted("rate_limited", "web"), 1.0);
    assert_eq!(counted("created", "ibr"), 1.0);
    assert_eq!(counted("rate_limited", "ibr"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_registration_off_the_web_door_is_closed_too() {
    let node = TestNode::builder()
        .no_address_limits()
        .fast_hashing()
        .set("USHER_ALLOW_REGISTRATION", "false")
        .start();
    let token = node.invite(&[]);
    let (status, landing) = node.http_get(&format!("/invite/{token}"));
    assert_eq!(status, 200, "{landing}");
    assert!(!landing.contains("/register/"), "{landing}");

    let form = get_form(&node, &token);
    assert_eq!(form.status, 403, "{}", form.body);
    assert!(form.body.contains("not creating accounts"), "{}", form.body);
    let posted = post_form(
        &node,
        &token,
        &[],
        &[
            ("username", "closed"),
            ("password", PASSWORD),
            ("password_confirm", PASSWORD),
            ("csrf", "x"),
        ],
    );
    assert_eq!(posted.status, 403, "{}", posted.body);
    assert!(matches!(
        node.auth(Mech::Plain, "closed", PASSWORD).await,
        Auth::Failure(_)
    ));
    assert!(node.show(&token).contains("uses:     0/1"));
}
