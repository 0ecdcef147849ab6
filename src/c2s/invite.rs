//! Invites on the stream: the XEP-0445 preauth IQ, which proves the invite the
//! stream may then register with (the saga itself is in `registration`).

use super::iq::iq_result;
use super::session::Session;
use crate::clock::now_millis;
use crate::invites::Token;
use crate::registration::ProvenInvite;
use crate::xmpp::errors::{Condition, ErrorType, StanzaError};
use crate::xmpp::Element;

pub const INVALID_INVITE: &str = "The invite token is invalid or expired";

pub(super) fn invalid_invite() -> StanzaError {
    StanzaError::new(ErrorType::Cancel, Condition::ItemNotFound).with_text(INVALID_INVITE)
}

pub(super) fn unavailable() -> StanzaError {
    StanzaError::new(ErrorType::Wait, Condition::InternalServerError)
        .with_text("The invite service is unavailable; please try again later")
}

fn preauth_outcome(outcome: &'static str) {
    metrics::counter!(crate::metrics::PREAUTH, "outcome" => outcome).increment(1);
}

impl Session {
    pub(super) async fn on_preauth(&mut self, iq: &Element, preauth: &Element) {
        let token = preauth.attr("token").and_then(Token::parse);
        let Some(token) = token else {
            preauth_outcome("invalid");
            return self.reply_error(iq, invalid_invite());
        };
        let now = now_millis();
        let checked = self
            .shared
            .ledger
            .read(&token, |l| l.validate(&token, now).map(|_| ()))
            .await;
        match checked {
            Ok(Ok(())) => {
                tracing::debug!(peer = %self.peer, invite = %token.redacted(), "invite validated");
                preauth_outcome("valid");
                if let Some(state) = self.unauthenticated() {
                    state.invite = Some(ProvenInvite {
                        token,
                        validated_at: now,
                    });
                }
                self.send(&iq_result(iq));
            }
            Ok(Err(reason)) => {
                tracing::debug!(peer = %self.peer, invite = %token.redacted(), %reason, "invite refused");
                preauth_outcome("invalid");
                self.reply_error(iq, invalid_invite());
            }
            Err(e) => {
                tracing::error!(error = %e, "ledger read failed");
                preauth_outcome("unavailable");
                self.reply_error(iq, unavailable());
            }
        }
    }
}
