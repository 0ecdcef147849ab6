//! XEP-0050 ad-hoc commands for invites (XEP-0401): any local user may create
//! a contact invite; administrators may create account invites, optionally
//! bound to a username given in a submitted form.

use super::iq::iq_result;
use super::session::Session;
use crate::invites::InviteKind;
use crate::issuing::{InviteView, IssueError, Issuer, NewInvite};
use crate::xmpp::dataform::{DataForm, Field};
use crate::xmpp::errors::{Condition, ErrorType, StanzaError};
use crate::xmpp::jid::Username;
use crate::xmpp::{ns, Element};

pub const CREATE_ACCOUNT: &str = "urn:xmpp:invite#create-account";
pub const INVITE: &str = "urn:xmpp:invite#invite";

const NOT_PERMITTED: &str = "You don't have permission to execute this command";

impl Session {
    /// The invite operations, shared with the admin API.
    fn invite_admin(&self) -> Issuer {
        Issuer {
            ledger: self.shared.ledger.clone(),
            store: self.shared.store.clone(),
            config: self.shared.config.clone(),
        }
    }

    /// Whether `user` administers this server: listed in `admins`, or holding the `admin` role.
    pub(super) async fn is_admin(&self, user: &Username) -> bool {
        self.invite_admin().is_admin(user).await
    }

    async fn has_role(&self, user: &Username, role: &str) -> bool {
        self.invite_admin()
            .roles(user)
            .await
            .iter()
            .any(|r| r == role)
    }

    /// The command items of disco#items on the commands node.
    pub(super) async fn command_items(&self) -> Element {
        let mut query = Element::new("query", ns::DISCO_ITEMS).with_attr("node", ns::COMMANDS);
        let Some(user) = self.user().cloned() else {
            return query;
        };
        let domain = self.domain().to_owned();
        let item = |node: &str, name: &str| {
            Element::new("item", ns::DISCO_ITEMS)
                .with_attr("jid", domain.clone())
                .with_attr("node", node)
                .with_attr("name", name)
        };
        if self.is_admin(&user).await {
            query.push_child(item(CREATE_ACCOUNT, "Create new account invite"));
        }
        query.push_child(item(INVITE, "Create new contact invite"));
        query
    }

    pub(super) async fn on_command(&mut self, iq: &Element, command: &Element) {
        let Some(user) = self.user().cloned() else {
            return self.reply_error(iq, StanzaError::service_unavailable());
        };
        let node = command.attr("node").unwrap_or_default().to_owned();
        if node != CREATE_ACCOUNT && node != INVITE {
            return self.reply_error(
                iq,
                StanzaError::new(ErrorType::Cancel, Condition::ItemNotFound),
            );
        }
        let session_id = command
            .attr("sessionid")
            .map(str::to_owned)
            .unwrap_or_else(|| crate::secrets::random_id(9));
        if command.attr("action") == Some("cancel") {
            let canceled = Element::new("command", ns::COMMANDS)
                .with_attr("node", node.clone())
                .with_attr("sessionid", session_id)
                .with_attr("status", "canceled");
            return self.send(&iq_result(iq).with_child(canceled));
        }
        let admin = self.is_admin(&user).await;
        let request = if node == CREATE_ACCOUNT {
            if !admin {
                return self.command_forbidden(iq, &node, &session_id);
            }
            let username = command
                .get_child("x", ns::DATA_FORMS)
                .and_then(DataForm::parse)
                .filter(|f| f.kind == "submit")
                .and_then(|f| f.value("username").map(str::to_owned))
                .filter(|u| !u.is_empty());
            NewInvite {
                kind: Some(InviteKind::Account),
                username,
                created_by: Some(self.bare_jid(&user)),
                as_user: Some(user.as_str().to_owned()),
                ..NewInvite::default()
            }
        } else {
            let may_register = self.shared.config.allow_user_invites
                || admin
                || self.has_role(&user, "invite").await;
            NewInvite {
                kind: Some(InviteKind::Contact),
                inviter: Some(user.as_str().to_owned()),
                allow_registration: may_register,
                created_by: Some(self.bare_jid(&user)),
                as_user: Some(user.as_str().to_owned()),
                ..NewInvite::default()
            }
        };
        match self.invite_admin().create(request).await {
            Ok(view) => {
                let done = completed(&node, &session_id, &view);
                self.send(&iq_result(iq).with_child(done));
            }
            Err(IssueError::InvalidArgument(_)) => self.reply_error(
                iq,
                StanzaError::not_acceptable("The requested username is invalid."),
            ),
            Err(IssueError::ResourceExhausted(why)) => {
                self.command_refused(iq, &node, &session_id, Condition::ResourceConstraint, &why)
            }
            Err(IssueError::Conflict(_)) => self.reply_error(
                iq,
                StanzaError::new(ErrorType::Cancel, Condition::Conflict)
                    .with_text("The requested username already exists."),
            ),
            Err(e) => {
                tracing::error!(error = %e, "invite creation by ad-hoc command failed");
                self.reply_error(iq, StanzaError::internal("Please try again later"));
            }
        }
    }

    fn command_forbidden(&mut self, iq: &Element, node: &str, session_id: &str) {
        self.command_refused(iq, node, session_id, Condition::Forbidden, NOT_PERMITTED);
    }

    /// An IQ error carrying the canceled command with an error note, so the
    /// client can show the reason.
    fn command_refused(
        &mut self,
        iq: &Element,
        node: &str,
        session_id: &str,
        condition: Condition,
        text: &str,
    ) {
        let canceled = Element::new("command", ns::COMMANDS)
            .with_attr("node", node)
            .with_attr("sessionid", session_id)
            .with_attr("status", "canceled")
            .with_child(
                Element::new("note", ns::COMMANDS)
                    .with_attr("type", "error")
                    .with_text(text),
            );
        let kind = match condition {
            Condition::Forbidden => ErrorType::Auth,
            _ => ErrorType::Wait,
        };
        let error = StanzaError::new(kind, condition).with_text(text);
        let mut reply = error.reply_to(iq);
        reply.push_child(canceled);
        self.send(&reply);
    }
}

/// The one-step result: a form with the invite's landing URL, URI and expiry.
fn completed(node: &str, session_id: &str, view: &InviteView) -> Element {
    let expires =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(view.invite.spec.expires_at);
    let form = DataForm {
        title: Some("Your invite has been created".into()),
        ..DataForm::new("result")
    }
    .with_field(
        Field::new("landing-url", "text-single")
            .label("Invite web link")
            .value(view.landing_url.as_deref().unwrap_or("")),
    )
    .with_field(
        Field::new("uri", "text-single")
            .label("Invite URI")
            .value(&view.uri),
    )
    .with_field(
        Field::new("expire", "text-single")
            .label("Invite valid until")
            .value(&humantime::format_rfc3339_seconds(expires).to_string()),
    );
    Element::new("command", ns::COMMANDS)
        .with_attr("node", node)
        .with_attr("sessionid", session_id)
        .with_attr("status", "completed")
        .with_child(form.to_element())
}
