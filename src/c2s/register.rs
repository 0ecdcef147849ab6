//! XEP-0077 in-band registration: creating an account on a secured stream,
//! and password change / account removal once authenticated.

use super::iq::iq_result;
use super::session::Session;
use crate::accounts::{now_unix, Account, CreateOutcome, Credentials};
use crate::xmpp::dataform::{DataForm, Field};
use crate::xmpp::errors::{ErrorType, StanzaError};
use crate::xmpp::jid::{prepare_password, Username};
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

/// The `outcome` label of a registration attempt.
fn registration_outcome(outcome: &Result<(), StanzaError>) -> &'static str {
    match outcome {
        Ok(()) => "created",
        Err(e) => match e.condition {
            "conflict" => "conflict",
            "item-not-found" => "invalid_invite",
            "forbidden" => "forbidden",
            "not-acceptable" => "not_acceptable",
            "resource-constraint" => "rate_limited",
            "not-authorized" => "not_authorized",
            _ => "unavailable",
        },
    }
}

impl Session {
    pub(super) async fn on_register(&mut self, iq: &Element, query: &Element) {
        let is_set = iq.attr("type") == Some("set");
        match (self.user.clone(), is_set) {
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
            (None, true) => {
                let outcome = self.register(iq, query).await;
                crate::metrics::registration(registration_outcome(&outcome));
                if let Err(error) = outcome {
                    self.reply_error(iq, error);
                }
            }
        }
    }

    /// Ok once the result is sent; Err is the refusal to send.
    async fn register(&mut self, iq: &Element, query: &Element) -> Result<(), StanzaError> {
        if query.has_child("remove", ns::REGISTER) {
            return Err(StanzaError::new(ErrorType::Auth, "not-authorized")
                .with_text("Log in to remove an account"));
        }
        if !self.shared.registrations.allow(self.peer.ip()) {
            crate::metrics::rate_limit_hit("registrations_per_ip");
            return Err(StanzaError::new(ErrorType::Wait, "resource-constraint")
                .with_text("Too many registrations from your address; try again later"));
        }
        // Kept on the stream until a registration succeeds: a taken or invalid
        // username may be retried with the same invite.
        let invite = self.invite.clone();
        if invite.is_none() && self.shared.config.registration_invite_only {
            return Err(StanzaError::not_acceptable(
                "Registration on this server is through invitation only",
            ));
        }
        let (username, password) = submitted_fields(query);
        let Some(username) = username
            .as_deref()
            .and_then(|u| Username::parse(u).ok())
            .filter(|u| !self.is_reserved(u))
        else {
            return Err(StanzaError::not_acceptable(
                "The requested username is invalid.",
            ));
        };
        let password = match self.check_password(password.as_deref()) {
            Ok(p) => p,
            Err(e) => return Err(e),
        };
        if let Some(invite) = invite {
            return self
                .register_with_invite(iq, invite, username, password)
                .await;
        }
        let credentials = self.derive(password).await?;
        let account = Account {
            username: username.as_str().to_owned(),
            credentials,
            created_at: now_unix(),
            roles: Vec::new(),
            reservation: None,
        };
        match self.shared.store.create(account).await {
            Ok(CreateOutcome::Created) => {
                tracing::info!(peer = %self.peer, user = %username, "account registered");
                self.send(&iq_result(iq));
                Ok(())
            }
            Ok(CreateOutcome::AlreadyExists) => {
                Err(StanzaError::new(ErrorType::Cancel, "conflict")
                    .with_text("The requested username already exists."))
            }
            Err(e) => {
                tracing::error!(error = %e, "registration failed in storage");
                Err(StanzaError::internal("Please try again later"))
            }
        }
    }

    async fn change_or_remove(&mut self, iq: &Element, query: &Element, user: Username) {
        if query.has_child("remove", ns::REGISTER) {
            return match self.shared.store.delete(&user).await {
                Ok(_) => {
                    tracing::info!(user = %user, "account removed");
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
                StanzaError::new(ErrorType::Modify, "bad-request")
                    .with_text("The username does not match this account"),
            );
        }
        let password = match self.check_password(password.as_deref()) {
            Ok(p) => p,
            Err(e) => return self.reply_error(iq, e),
        };
        let credentials = match self.derive(password).await {
            Ok(c) => c,
            Err(e) => return self.reply_error(iq, e),
        };
        match self
            .shared
            .store
            .set_credentials(&user, credentials, None)
            .await
        {
            Ok(true) => {
                tracing::info!(user = %user, "password changed");
                self.send(&iq_result(iq));
            }
            Ok(false) => self.reply_error(
                iq,
                StanzaError::new(ErrorType::Auth, "not-authorized").with_text("Account removed"),
            ),
            Err(e) => {
                tracing::error!(error = %e, "password change failed in storage");
                self.reply_error(iq, StanzaError::internal("Please try again later"))
            }
        }
    }

    fn is_reserved(&self, user: &Username) -> bool {
        self.shared
            .config
            .reserved_usernames
            .iter()
            .any(|r| r.eq_ignore_ascii_case(user.as_str()))
    }

    fn check_password(&self, password: Option<&str>) -> Result<String, StanzaError> {
        let password = password.unwrap_or("");
        if password.is_empty() {
            return Err(StanzaError::not_acceptable("A password is required."));
        }
        let min = self.shared.config.min_password_length;
        if password.chars().count() < min {
            return Err(StanzaError::not_acceptable(&format!(
                "The password is too short: use at least {min} characters."
            )));
        }
        prepare_password(password).ok_or_else(|| {
            StanzaError::not_acceptable("The password contains characters that are not allowed.")
        })
    }

    /// SCRAM keys for a new password, computed on the CPU pool through its
    /// bounded registration queue.
    pub(super) async fn derive(&self, password: String) -> Result<Credentials, StanzaError> {
        let iterations = self.shared.config.scram_iterations;
        let hashes = self.shared.config.scram_algs();
        let derived = self
            .shared
            .cpu
            .run_queued(move || Credentials::derive(&password, iterations, &hashes))
            .await;
        derived.map_err(|e| match e {
            crate::blocking_pool::PoolError::Busy => {
                crate::metrics::rate_limit_hit("registration_queue");
                StanzaError::new(ErrorType::Wait, "resource-constraint")
                    .with_text("The server is busy with other registrations; try again shortly")
            }
            _ => StanzaError::internal("Please try again later"),
        })
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
