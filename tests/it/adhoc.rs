//! XEP-0050 / XEP-0401 ad-hoc invite commands against the real binary.

use crate::fixture::*;
use usher::xmpp::dataform::{DataForm, Field};
use usher::xmpp::{ns, Element};
use usher_load::Client;

const CREATE_ACCOUNT: &str = "urn:xmpp:invite#create-account";
const INVITE: &str = "urn:xmpp:invite#invite";
/// boss is an admin by configuration, everyone else a user.
const ADMINS: &str = "[\"boss@localhost\"]";

async fn command_nodes(c: &mut Client) -> Vec<String> {
    let iq = Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_attr("to", "localhost")
        .with_child(Element::new("query", ns::DISCO_ITEMS).with_attr("node", ns::COMMANDS));
    let reply = c.request(iq).await.unwrap();
    reply
        .get_child("query", ns::DISCO_ITEMS)
        .expect("items")
        .children()
        .map(|i| i.attr("node").unwrap_or_default().to_owned())
        .collect()
}

/// The completed command's form values.
fn completed(reply: &Element) -> DataForm {
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    let cmd = reply.get_child("command", ns::COMMANDS).expect("command");
    assert_eq!(cmd.attr("status"), Some("completed"));
    assert!(cmd.attr("sessionid").is_some_and(|s| !s.is_empty()));
    let form = DataForm::parse(cmd.get_child("x", ns::DATA_FORMS).expect("form")).unwrap();
    assert_eq!(form.title.as_deref(), Some("Your invite has been created"));
    form
}

#[tokio::test]
async fn users_see_and_run_the_contact_invite_command() {
    let node = TestNode::builder()
        .no_address_limits()
        .fast_hashing()
        .set("USHER_ADMINS", ADMINS)
        .start();
    node.register_via_invite("usr", PASSWORD).await;
    let mut c = login_as(&node, "usr").await;
    assert_eq!(command_nodes(&mut c).await, [INVITE]);
    let form = completed(&c.request(adhoc_execute(INVITE, None)).await.unwrap());
    let uri = form.value("uri").unwrap();
    assert!(
        uri.starts_with("xmpp:usr@localhost?roster;preauth="),
        "{uri}"
    );
    assert!(
        !uri.contains("ibr=y"),
        "registration is not allowed by default: {uri}"
    );
    assert_eq!(form.value("landing-url"), Some(""));
    assert!(form.value("expire").is_some_and(|e| e.ends_with('Z')));
    // Not permitted to make account invites.
    let reply = c
        .request(adhoc_execute(CREATE_ACCOUNT, None))
        .await
        .unwrap();
    assert_iq_error(
        &reply,
        "auth",
        "forbidden",
        Some("You don't have permission to execute this command"),
    );
    let cmd = reply.get_child("command", ns::COMMANDS).expect("command");
    assert_eq!(cmd.attr("status"), Some("canceled"));
    assert_eq!(
        cmd.get_child("note", ns::COMMANDS)
            .and_then(|n| n.attr("type")),
        Some("error")
    );
}

#[tokio::test]
async fn with_user_invites_allowed_a_contact_invite_registers() {
    let node = TestNode::builder()
        .no_address_limits()
        .fast_hashing()
        .set("USHER_ADMINS", ADMINS)
        .set("USHER_ALLOW_USER_INVITES", "true")
        .set("USHER_WEB_BASE_URL", "https://invite.example")
        .start();
    node.register_via_invite("host", PASSWORD).await;
    let mut c = login_as(&node, "host").await;
    let form = completed(&c.request(adhoc_execute(INVITE, None)).await.unwrap());
    let uri = form.value("uri").unwrap();
    assert!(uri.ends_with(";ibr=y"), "{uri}");
    let token = token_of(uri);
    assert_eq!(
        form.value("landing-url"),
        Some(format!("https://invite.example/invite/{token}").as_str())
    );
    let mut guest = node.with_invite(&token).await;
    assert_eq!(
        guest
            .register("guest", PASSWORD)
            .await
            .unwrap()
            .attr("type"),
        Some("result")
    );
    assert_eq!(
        c.roster().await.unwrap(),
        [("guest@localhost".to_owned(), "both".to_owned(), false)]
    );
}

#[tokio::test]
async fn admins_create_account_invites_plain_and_bound() {
    let node = TestNode::builder()
        .no_address_limits()
        .fast_hashing()
        .set("USHER_ADMINS", ADMINS)
        .start();
    // An administrator's name takes an invite bound to it.
    let token = node.invite(&["--username", "boss"]);
    let reply = node
        .with_invite(&token)
        .await
        .register("boss", PASSWORD)
        .await
        .unwrap();
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    node.register_via_invite("taken", PASSWORD).await;
    let mut c = login_as(&node, "boss").await;
    assert_eq!(command_nodes(&mut c).await, [CREATE_ACCOUNT, INVITE]);
    let form = completed(
        &c.request(adhoc_execute(CREATE_ACCOUNT, None))
            .await
            .unwrap(),
    );
    let uri = form.value("uri").unwrap().to_owned();
    assert!(uri.starts_with("xmpp:localhost?register;preauth="), "{uri}");
    let mut newbie = node.with_invite(&token_of(&uri)).await;
    assert_eq!(
        newbie
            .register("newbie", PASSWORD)
            .await
            .unwrap()
            .attr("type"),
        Some("result")
    );

    let with_name = |name: &str| {
        Some(
            DataForm::new("submit")
                .with_form_type("urn:xmpp:invite")
                .with_field(Field::new("username", "text-single").value(name)),
        )
    };
    let form = completed(
        &c.request(adhoc_execute(CREATE_ACCOUNT, with_name("Bound")))
            .await
            .unwrap(),
    );
    assert!(form
        .value("uri")
        .unwrap()
        .starts_with("xmpp:bound@localhost?register;preauth="));
    let reply = c
        .request(adhoc_execute(CREATE_ACCOUNT, with_name("taken")))
        .await
        .unwrap();
    assert_iq_error(&reply, "cancel", "conflict", None);
    let reply = c
        .request(adhoc_execute(CREATE_ACCOUNT, with_name("not valid")))
        .await
        .unwrap();
    assert_iq_error(&reply, "modify", "not-acceptable", None);
}

#[tokio::test]
async fn unauthenticated_streams_get_service_unavailable() {
    let node = TestNode::builder()
        .no_address_limits()
        .fast_hashing()
        .set("USHER_ADMINS", ADMINS)
        .start();
    let mut c = node.connect_tls().await;
    let reply = c.request(adhoc_execute(INVITE, None)).await.unwrap();
    assert_iq_error(&reply, "cancel", "service-unavailable", None);
}

#[tokio::test]
async fn the_admin_role_from_an_invite_makes_an_admin() {
    let node = TestNode::builder()
        .no_address_limits()
        .fast_hashing()
        .set("USHER_ADMINS", ADMINS)
        .start();
    let token = node.invite(&["--role", "admin"]);
    let mut c = node.with_invite(&token).await;
    assert_eq!(
        c.register("chief", PASSWORD).await.unwrap().attr("type"),
        Some("result")
    );
    let mut chief = login_as(&node, "chief").await;
    assert_eq!(command_nodes(&mut chief).await, [CREATE_ACCOUNT, INVITE]);
    completed(
        &chief
            .request(adhoc_execute(CREATE_ACCOUNT, None))
            .await
            .unwrap(),
    );
}
