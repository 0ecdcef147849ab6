//! Invites on the stream: the XEP-0445 preauth IQ, which proves the invite the
//! stream may then register with (the saga itself is in `registration`).

use super::iq::iq_result;
use super::session::Session;
use crate::clock::now_millis;
use crate::invites::Token;
use crate::registration::ProvenInvite;
use crate::xmpp::errors::{Condition, ErrorType, StanzaError, StreamCondition, StreamError};
use crate::xmpp::Element;

pub const INVALID_INVITE: &str = "The invite token is invalid or expired";

pub(super) fn invalid_invite() -> StanzaError {
    StanzaError::new(ErrorType::Cancel, Condition::ItemNotFound).with_text(INVALID_INVITE)
}

pub(super) fn unavailable() -> StanzaError {
    StanzaError::new(ErrorType::Wait, Condition::InternalServerError)
        .with_text("The invite service is unavailable; please try again later")
}

/// Refused without a lookup: this address sent too many bad tokens lately.
pub(super) fn throttled() -> StanzaError {
    StanzaError::new(ErrorType::Wait, Condition::PolicyViolation)
        .with_text("Too many invalid invite tokens from your address; try again later")
}

fn preauth_outcome(outcome: &'static str) {
    metrics::counter!(crate::metrics::PREAUTH, "outcome" => outcome).increment(1);
}

impl Session {
    pub(super) async fn on_preauth(&mut self, iq: &Element, preauth: &Element) {
        if self.shared.guessing.preauth_blocked(self.peer.ip()) {
            crate::metrics::rate_limit_hit("preauth_failures_per_address");
            preauth_outcome("throttled");
            self.reply_error(iq, throttled());
            return self.count_preauth_failure();
        }
        let token = preauth.attr("token").and_then(Token::parse);
        let Some(token) = token else {
            preauth_outcome("invalid");
            return self.invite_refused(iq);
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
                self.invite_refused(iq);
            }
            Err(e) => {
                tracing::error!(error = %e, "ledger read failed");
                preauth_outcome("unavailable");
                self.reply_error(iq, unavailable());
            }
        }
    }

    /// A bad token: counted for the address and the stream.
    fn invite_refused(&mut self, iq: &Element) {
        self.shared.guessing.preauth_failed(self.peer.ip());
        self.reply_error(iq, invalid_invite());
        self.count_preauth_failure();
    }

    /// Ends the stream once it had its share of refused tokens.
    fn count_preauth_failure(&mut self) {
        let failures = self.unauthenticated().map_or(0, |state| {
            state.preauth_failures += 1;
            state.preauth_failures
        });
        if failures >= self.shared.config.limits.max_preauth_failures {
            crate::metrics::rate_limit_hit("preauth_failures");
            self.stream_error(
                StreamError::new(StreamCondition::PolicyViolation)
                    .with_text("Too many invalid invite tokens"),
            );
        }
    }
}
