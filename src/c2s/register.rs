//! XEP-0077 in-band registration: creating an account on a secured stream,
//! and password change / account removal once authenticated.

use super::invite::{invalid_invite, unavailable};
use super::iq::iq_result;
use super::session::Session;
use crate::invites::RedeemPath;
use crate::registration::{LifecycleError, RegistrationError, Request};
use crate::xmpp::dataform::{DataForm, Field};
use crate::xmpp::errors::{Condition, ErrorType, StanzaError};
use crate::xmpp::jid::Username;
use crate::xmpp::{ns, Element};

const INSTRUCTIONS: &str = "Choose a username and password for use with this service.";

/// Username and password from a submitted form or the legacy fields.
fn submitted_fields(query: &Element) -> (Option<String>, Option<String>) {
    if let Some(form) = query
        .get_child("x", ns::DATA_FORMS)
        .and_then(DataForm::parse)
        .filter(|f| f.kind == "submit")
    {
        return (
            form.value("username").map(str::to_owned),
            form.value("password").map(str::to_owned),
        );
    }
    (
        query.get_child("username", ns::REGISTER).map(Element::text),
        query.get_child("password", ns::REGISTER).map(Element::text),
    )
}

/// The stanza error for a refused registration or password change.
fn stanza_error(e: &RegistrationError) -> StanzaError {
    use RegistrationError::*;
    match e {
        RateLimited => StanzaError::new(ErrorType::Wait, Condition::ResourceConstraint)
            .with_text("Too many registrations from your address; try again later"),
        Busy => StanzaError::new(ErrorType::Wait, Condition::ResourceConstraint)
            .with_text("The server is busy with other registrations; try again shortly"),
        InviteRequired => {
            StanzaError::not_acceptable("Registration on this server is through invitation only")
        }
        InvalidUsername => StanzaError::not_acceptable("The requested username is invalid."),
        PasswordMissing => StanzaError::not_acceptable("A password is required."),
        PasswordTooShort(min) => StanzaError::not_acceptable(&format!(
            "The password is too short: use at least {min} characters."
        )),
        PasswordNotAllowed => {
            StanzaError::not_acceptable("The password contains characters that are not allowed.")
        }
        InvalidInvite => invalid_invite(),
        WrongUsername => StanzaError::new(ErrorType::Cancel, Condition::Forbidden)
            .with_text("This invite is for another username"),
        NotAllowed => StanzaError::new(ErrorType::Cancel, Condition::Forbidden)
            .with_text("This invite does not allow registration"),
        UsernameTaken => StanzaError::new(ErrorType::Cancel, Condition::Conflict)
            .with_text("The requested username already exists."),
        Quarantined => StanzaError::new(ErrorType::Cancel, Condition::Conflict).with_text(
            "The requested username belonged to a removed account and cannot be registered yet.",
        ),
        AdminName => StanzaError::new(ErrorType::Cancel, Condition::Forbidden).with_text(
            "This username is reserved for an administrator and needs an invite made for it.",
        ),
        LeaseLost => StanzaError::new(ErrorType::Wait, Condition::ResourceConstraint)
            .with_text("The registration took too long; please try again"),
        LedgerUnavailable => unavailable(),
        StoreUnavailable => {
            StanzaError::internal("Account storage is unavailable; please try again later")
        }
    }
}

impl Session {
    pub(super) async fn on_register(&mut self, iq: &Element, query: &Element) {
        let is_set = iq.attr("type") == Some("set");
        match (self.user().cloned(), is_set) {
            (Some(user), false) => {
                let reply = iq_result(iq).with_child(
                    Element::new("query", ns::REGISTER)
                        .with_child(Element::new("registered", ns::REGISTER))
                        .with_child(
                            Element::new("username", ns::REGISTER).with_text(user.as_str()),
                        ),
                );
                self.send(&reply);
            }
            (Some(user), true) => self.change_or_remove(iq, query, user).await,
            (None, _) if !self.shared.config.allow_registration => {
                self.reply_error(iq, StanzaError::service_unavailable())
            }
            (None, false) => {
                let reply = iq_result(iq).with_child(registration_form());
                self.send(&reply);
            }
            (None, true) => self.register(iq, query).await,
        }
    }

    async fn register(&mut self, iq: &Element, query: &Element) {
        if query.has_child("remove", ns::REGISTER) {
            crate::metrics::registration("not_authorized", RedeemPath::Ibr.as_str());
            return self.reply_error(
                iq,
                StanzaError::new(ErrorType::Auth, Condition::NotAuthorized)
                    .with_text("Log in to remove an account"),
            );
        }
        let (username, password) = submitted_fields(query);
        // Kept on the stream until a registration succeeds: a taken or invalid
        // username may be retried with the same invite.
        let request = Request {
            peer: self.peer.ip(),
            invite: self.unauthenticated().and_then(|s| s.invite.clone()),
            username: username.as_deref(),
            password: password.as_deref(),
            path: RedeemPath::Ibr,
        };
        match self.shared.registrar.register(request).await {
            Ok(registered) => {
                self.forget_invite();
                tracing::debug!(peer = %self.peer, user = %registered.username, "registered in band");
                self.send(&iq_result(iq));
            }
            Err(e) => {
                if e.invite_unusable() {
                    self.forget_invite();
                }
                self.reply_error(iq, stanza_error(&e));
            }
        }
    }

    fn forget_invite(&mut self) {
        if let Some(state) = self.unauthenticated() {
            state.invite = None;
        }
    }

    async fn change_or_remove(&mut self, iq: &Element, query: &Element, user: Username) {
        if query.has_child("remove", ns::REGISTER) {
            return match self.shared.registrar.remove_account(&user).await {
                Ok(()) => {
                    self.send(&iq_result(iq));
                    self.account_removed();
                }
                Err(e) => {
                    tracing::error!(error = %e, "account removal failed in storage");
                    self.reply_error(iq, StanzaError::internal("Please try again later"))
                }
            };
        }
        let (username, password) = submitted_fields(query);
        let same_user = username
            .as_deref()
            .and_then(|u| Username::parse(u).ok())
            .is_some_and(|u| u == user);
        if !same_user {
            return self.reply_error(
                iq,
                StanzaError::new(ErrorType::Modify, Condition::BadRequest)
                    .with_text("The username does not match this account"),
            );
        }
        let registrar = &self.shared.registrar;
        let credentials = match registrar.check_password(password.as_deref()) {
            Ok(p) => registrar.derive(p).await,
            Err(e) => Err(e),
        };
        let credentials = match credentials {
            Ok(c) => c,
            Err(e) => return self.reply_error(iq, stanza_error(&e)),
        };
        match self
            .shared
            .registrar
            .change_password(&user, credentials, Some(self.conn_id()))
            .await
        {
            Ok(()) => self.send(&iq_result(iq)),
            Err(LifecycleError::NoAccount) => self.reply_error(
                iq,
                StanzaError::new(ErrorType::Auth, Condition::NotAuthorized)
                    .with_text("Account removed"),
            ),
            Err(e) => {
                tracing::error!(error = %e, "password change failed in storage");
                self.reply_error(iq, StanzaError::internal("Please try again later"))
            }
        }
    }
}

fn registration_form() -> Element {
    let form = DataForm {
        title: Some("Account registration".into()),
        instructions: Some(INSTRUCTIONS.into()),
        ..DataForm::new("form")
    }
    .with_form_type(ns::REGISTER)
    .with_field(
        Field::new("username", "text-single")
            .label("Username")
            .required(),
    )
    .with_field(
        Field::new("password", "text-private")
            .label("Password")
            .required(),
    );
    Element::new("query", ns::REGISTER)
        .with_child(Element::new("instructions", ns::REGISTER).with_text(INSTRUCTIONS))
        .with_child(Element::new("username", ns::REGISTER))
        .with_child(Element::new("password", ns::REGISTER))
        .with_child(form.to_element())
}
