//! Invites on the stream: the XEP-0445 preauth IQ, and registration as the saga
//! of DESIGN.md — reserve a use through the ledger, write the account, commit
//! the use — so that an invite is never spent more often than it allows.

use super::iq::iq_result;
use super::session::Session;
use crate::accounts::{now_unix, Account, CreateOutcome, Credentials};
use crate::invites::{
    Command, InviteKind, InviteSpec, Outcome, Purpose, RedeemPath, Rejection, Token,
};
use crate::ledger::now_millis;
use crate::xmpp::errors::{ErrorType, StanzaError};
use crate::xmpp::jid::Username;
use crate::xmpp::Element;

pub const INVALID_INVITE: &str = "The invite token is invalid or expired";

/// An invite the stream proved, and when.
#[derive(Debug, Clone)]
pub struct ValidatedInvite {
    pub token: Token,
    pub validated_at: u64,
}

fn invalid_invite() -> StanzaError {
    StanzaError::new(ErrorType::Cancel, "item-not-found").with_text(INVALID_INVITE)
}

fn unavailable() -> StanzaError {
    StanzaError::new(ErrorType::Wait, "internal-server-error")
        .with_text("The invite service is unavailable; please try again later")
}

fn preauth_outcome(outcome: &'static str) {
    metrics::counter!(crate::metrics::PREAUTH, "outcome" => outcome).increment(1);
}

fn store_unavailable() -> StanzaError {
    StanzaError::internal("Account storage is unavailable; please try again later")
}

/// Why an account write did not succeed, and whether it may still have landed.
enum WriteFailure {
    /// Certainly not written: the use can be given back at once.
    NotWritten(StanzaError),
    /// The store failed mid-request; the write may have applied.
    Unknown(StanzaError),
}

/// The stanza error for a ledger refusal during registration.
fn refusal(r: Rejection) -> StanzaError {
    match r {
        Rejection::WrongUsername => StanzaError::new(ErrorType::Cancel, "forbidden")
            .with_text("This invite is for another username"),
        Rejection::NotAllowed => StanzaError::new(ErrorType::Cancel, "forbidden")
            .with_text("This invite does not allow registration"),
        _ => invalid_invite(),
    }
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
                self.invite = Some(ValidatedInvite {
                    token,
                    validated_at: now,
                });
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

    /// Registration with the stream's validated invite; the caller has checked
    /// the username and password. After a success the stream's invite is gone,
    /// so a second registration on it has none; after a taken username it stays.
    pub(super) async fn register_with_invite(
        &mut self,
        iq: &Element,
        invite: ValidatedInvite,
        username: Username,
        password: String,
    ) -> Result<(), StanzaError> {
        // Hash first: the use is then held only for the write, and a busy
        // node refuses before touching the ledger.
        let credentials = self.derive(password).await?;
        let lease = self.shared.config.ledger.reservation_lease;
        let reservation = crate::secrets::random_id(16);
        let reserve = Command::Reserve {
            token: invite.token.clone(),
            reservation: reservation.clone(),
            username: username.as_str().to_owned(),
            purpose: Purpose::Register,
            validated_at: invite.validated_at,
            lease_until: now_millis() + lease.as_millis() as u64,
            node: self.shared.config.node_name(),
            path: RedeemPath::Ibr,
        };
        let spec = match self.shared.ledger.propose(reserve).await {
            Ok(Outcome::Reserved(spec)) => spec,
            Ok(Outcome::Rejected(r)) => {
                if r != Rejection::WrongUsername {
                    self.invite = None;
                }
                return Err(refusal(r));
            }
            Ok(other) => {
                tracing::error!(?other, "unexpected ledger answer to a reservation");
                return Err(unavailable());
            }
            Err(e) => {
                tracing::error!(error = %e, "reservation failed");
                return Err(unavailable());
            }
        };
        crate::failpoint::hit("after-reserve");
        let written = self
            .write_account(&spec, &username, credentials, &reservation)
            .await;
        match written {
            Ok(()) => {
                self.finish_registration(iq, spec, username, reservation)
                    .await;
                Ok(())
            }
            Err(WriteFailure::NotWritten(error)) => {
                // Nothing was written: give the use back at once, not at lease end.
                if let Err(e) = self
                    .propose_quietly(Command::Release {
                        token: spec.token.clone(),
                        reservation,
                    })
                    .await
                {
                    tracing::warn!(error = %e, "release deferred to the lease janitor");
                }
                Err(error)
            }
            Err(WriteFailure::Unknown(error)) => {
                // The store may have applied the write before failing (a timeout
                // after the request left): only the janitor, which looks for the
                // account when the lease ends, can tell whether the use was spent.
                tracing::warn!(
                    invite = %spec.token.redacted(),
                    "account write outcome unknown; the lease janitor settles the invite use"
                );
                Err(error)
            }
        }
    }

    /// Commits the use of a registration whose account is written, then does
    /// the idempotent side effects.
    async fn finish_registration(
        &mut self,
        iq: &Element,
        spec: InviteSpec,
        username: Username,
        reservation: String,
    ) {
        crate::failpoint::hit("after-account-write");
        self.invite = None;
        // The account exists and names the reservation: if this commit is
        // lost, the janitor commits it when the lease runs out.
        if let Err(e) = self
            .propose_quietly(Command::Commit {
                token: spec.token.clone(),
                reservation,
            })
            .await
        {
            tracing::warn!(error = %e, "commit deferred to the lease janitor");
        }
        if let Some(inviter) = spec
            .inviter
            .as_deref()
            .filter(|_| spec.kind == InviteKind::Contact)
            .and_then(|i| Username::parse(i).ok())
        {
            if let Err(e) = self.pair_with_inviter(&username, &inviter).await {
                tracing::error!(error = %e, "could not add the inviter as a contact");
            }
        }
        tracing::info!(
            peer = %self.peer,
            user = %username,
            invite = %spec.token.redacted(),
            kind = spec.kind.as_str(),
            "registered with an invite"
        );
        self.send(&iq_result(iq));
    }

    /// Writes (or, for a reset, updates) the account.
    async fn write_account(
        &mut self,
        spec: &InviteSpec,
        username: &Username,
        credentials: Credentials,
        reservation: &str,
    ) -> Result<(), WriteFailure> {
        let store = &self.shared.store;
        if spec.kind == InviteKind::Reset {
            return match store
                .set_credentials(username, credentials, Some(reservation.to_owned()))
                .await
            {
                Ok(true) => Ok(()),
                Ok(false) => Err(WriteFailure::NotWritten(invalid_invite())),
                Err(e) => {
                    tracing::error!(error = %e, "password reset failed in storage");
                    Err(WriteFailure::Unknown(store_unavailable()))
                }
            };
        }
        let account = Account {
            username: username.as_str().to_owned(),
            credentials,
            created_at: now_unix(),
            roles: spec.roles.clone(),
            reservation: Some(reservation.to_owned()),
        };
        match store.create(account).await {
            Ok(CreateOutcome::Created) => Ok(()),
            Ok(CreateOutcome::AlreadyExists) => Err(WriteFailure::NotWritten(
                StanzaError::new(ErrorType::Cancel, "conflict")
                    .with_text("The requested username already exists."),
            )),
            Err(e) => {
                tracing::error!(error = %e, "registration failed in storage");
                Err(WriteFailure::Unknown(store_unavailable()))
            }
        }
    }

    async fn propose_quietly(&self, command: Command) -> Result<(), crate::ledger::LedgerError> {
        match self.shared.ledger.propose(command).await? {
            Outcome::Rejected(r) => {
                tracing::warn!(reason = %r, "ledger refused to resolve a reservation");
                Ok(())
            }
            _ => Ok(()),
        }
    }
}
