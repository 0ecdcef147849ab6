//! Creating an account, whichever door the person came in by — in-band
//! registration on an XMPP stream or the web form: the checks on the chosen
//! username and password, the per-address limit, and with an invite the saga of
//! DESIGN.md (reserve a use through the ledger, write the account, commit the
//! use, pair the inviter), so an invite is never spent more often than it allows.
//! Callers turn `RegistrationError` into their own reply: a stanza error or a
//! message on the form.

pub mod janitor;
mod pairing;
mod rate_limit;

use std::net::IpAddr;
use std::sync::Arc;

use crate::accounts::{Account, AccountStore, CreateOutcome, Credentials};
use crate::blocking_pool::{CpuPool, PoolError};
use crate::clock::{now_millis, now_unix};
use crate::config::Config;
use crate::invites::{
    Command, InviteKind, InviteSpec, Outcome, Purpose, RedeemPath, Rejection, ReservationId, Token,
};
use crate::ledger::LedgerHandle;
use crate::sessions::SessionDirectory;
use crate::xmpp::jid::{prepare_password, Username};
pub use rate_limit::RegistrationLimiter;

/// An invite the person proved to hold, and when: on a stream, the XEP-0445
/// preauth; on the web, the form's submission.
#[derive(Debug, Clone)]
pub struct ProvenInvite {
    pub token: Token,
    pub validated_at: u64,
}

/// Why a registration did not happen. The texts are for logs; each door words
/// its own reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    #[error("too many registrations from this address")]
    RateLimited,
    #[error("registration is by invitation only")]
    InviteRequired,
    #[error("the username is not valid")]
    InvalidUsername,
    #[error("no password was given")]
    PasswordMissing,
    #[error("the password is shorter than {0} characters")]
    PasswordTooShort(usize),
    #[error("the password has characters that are not allowed")]
    PasswordNotAllowed,
    #[error("the invite is unknown, expired, revoked or used up")]
    InvalidInvite,
    #[error("the invite is for another username")]
    WrongUsername,
    #[error("the invite does not allow registration")]
    NotAllowed,
    #[error("the username is taken")]
    UsernameTaken,
    #[error("the registration queue is full")]
    Busy,
    #[error("the invite ledger is unavailable")]
    LedgerUnavailable,
    #[error("account storage is unavailable")]
    StoreUnavailable,
}

impl RegistrationError {
    /// The `outcome` label of `usher_registrations_total`.
    pub fn outcome(&self) -> &'static str {
        use RegistrationError::*;
        match self {
            RateLimited | Busy => "rate_limited",
            InviteRequired | InvalidUsername | PasswordMissing | PasswordTooShort(_)
            | PasswordNotAllowed => "not_acceptable",
            InvalidInvite => "invalid_invite",
            WrongUsername | NotAllowed => "forbidden",
            UsernameTaken => "conflict",
            LedgerUnavailable | StoreUnavailable => "unavailable",
        }
    }

    /// Whether the invite is spent for this person: retrying with it is pointless.
    pub fn invite_unusable(&self) -> bool {
        matches!(
            self,
            RegistrationError::InvalidInvite | RegistrationError::NotAllowed
        )
    }
}

/// What one registration asks for, as submitted (the registrar checks it).
pub struct Request<'a> {
    pub peer: IpAddr,
    pub invite: Option<ProvenInvite>,
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
    pub path: RedeemPath,
}

/// A registration that happened.
#[derive(Debug)]
pub struct Registered {
    pub username: Username,
    /// The invite's kind; `None` for open registration.
    pub kind: Option<InviteKind>,
}

/// Why an account write did not succeed, and whether it may still have landed.
enum WriteFailure {
    /// Certainly not written: the use can be given back at once.
    NotWritten(RegistrationError),
    /// The store failed mid-request; the write may have applied.
    Unknown(RegistrationError),
}

/// What both doors share on a node.
pub struct Registrar {
    pub config: Arc<Config>,
    pub store: Arc<dyn AccountStore>,
    pub ledger: LedgerHandle,
    pub cpu: CpuPool,
    pub limiter: RegistrationLimiter,
    pub directory: Arc<SessionDirectory>,
}

impl Registrar {
    /// Checks and performs one registration, and counts its outcome.
    pub async fn register(&self, request: Request<'_>) -> Result<Registered, RegistrationError> {
        let door = request.path.as_str();
        let outcome = self.attempt(request).await;
        let label = match &outcome {
            Ok(_) => "created",
            Err(e) => e.outcome(),
        };
        crate::metrics::registration(label, door);
        outcome
    }

    async fn attempt(&self, request: Request<'_>) -> Result<Registered, RegistrationError> {
        if !self.limiter.allow(request.peer) {
            crate::metrics::rate_limit_hit("registrations_per_ip");
            return Err(RegistrationError::RateLimited);
        }
        if request.invite.is_none() && self.config.registration_invite_only {
            return Err(RegistrationError::InviteRequired);
        }
        let username = self.check_username(request.username)?;
        let password = self.check_password(request.password)?;
        // Hash first: the use is then held only for the write, and a busy
        // node refuses before touching the ledger.
        let credentials = self.derive(password).await?;
        match request.invite {
            Some(invite) => {
                self.redeem(invite, username, credentials, request.path)
                    .await
            }
            None => self.create_open(username, credentials).await,
        }
    }

    pub fn check_username(&self, raw: Option<&str>) -> Result<Username, RegistrationError> {
        let username = raw
            .and_then(|u| Username::parse(u).ok())
            .ok_or(RegistrationError::InvalidUsername)?;
        let reserved = self
            .config
            .reserved_usernames
            .iter()
            .any(|r| r.eq_ignore_ascii_case(username.as_str()));
        if reserved {
            return Err(RegistrationError::InvalidUsername);
        }
        Ok(username)
    }

    /// The password as it will be hashed (PRECIS OpaqueString).
    pub fn check_password(&self, raw: Option<&str>) -> Result<String, RegistrationError> {
        let password = raw.unwrap_or("");
        if password.is_empty() {
            return Err(RegistrationError::PasswordMissing);
        }
        let min = self.config.min_password_length;
        if password.chars().count() < min {
            return Err(RegistrationError::PasswordTooShort(min));
        }
        prepare_password(password).ok_or(RegistrationError::PasswordNotAllowed)
    }

    /// SCRAM keys for a new password, computed on the CPU pool through its
    /// bounded registration queue.
    pub async fn derive(&self, password: String) -> Result<Credentials, RegistrationError> {
        let iterations = self.config.scram_iterations;
        let hashes = self.config.scram_hashes.clone();
        let derived = self
            .cpu
            .run_queued(move || Credentials::derive(&password, iterations, &hashes))
            .await;
        derived.map_err(|e| match e {
            PoolError::Busy => {
                crate::metrics::rate_limit_hit("registration_queue");
                RegistrationError::Busy
            }
            PoolError::Closed | PoolError::Panicked => {
                tracing::error!(error = %e, "password hashing failed");
                RegistrationError::StoreUnavailable
            }
        })
    }

    async fn create_open(
        &self,
        username: Username,
        credentials: Credentials,
    ) -> Result<Registered, RegistrationError> {
        let account = Account {
            username: username.clone(),
            credentials,
            created_at: now_unix(),
            roles: Vec::new(),
            reservation: None,
        };
        match self.store.create(account).await {
            Ok(CreateOutcome::Created) => {
                tracing::info!(user = %username, "account registered");
                Ok(Registered {
                    username,
                    kind: None,
                })
            }
            Ok(CreateOutcome::AlreadyExists) => Err(RegistrationError::UsernameTaken),
            Err(e) => {
                tracing::error!(error = %e, "registration failed in storage");
                Err(RegistrationError::StoreUnavailable)
            }
        }
    }

    /// The saga: reserve, write, commit (or give back), then side effects.
    async fn redeem(
        &self,
        invite: ProvenInvite,
        username: Username,
        credentials: Credentials,
        path: RedeemPath,
    ) -> Result<Registered, RegistrationError> {
        let lease = self.config.ledger.reservation_lease;
        let reservation = ReservationId::generate();
        let reserve = Command::Reserve {
            token: invite.token.clone(),
            reservation: reservation.clone(),
            username: username.clone(),
            purpose: Purpose::Register,
            validated_at: invite.validated_at,
            lease_until: now_millis() + lease.as_millis() as u64,
            node: self.config.node_name(),
            path,
        };
        let spec = match self.ledger.propose(reserve).await {
            Ok(Outcome::Reserved(spec)) => spec,
            Ok(Outcome::Rejected(r)) => return Err(refusal(r)),
            Ok(other) => {
                tracing::error!(?other, "unexpected ledger answer to a reservation");
                return Err(RegistrationError::LedgerUnavailable);
            }
            Err(e) => {
                tracing::error!(error = %e, "reservation failed");
                return Err(RegistrationError::LedgerUnavailable);
            }
        };
        crate::failpoint::hit("after-reserve");
        match self
            .write_account(&spec, &username, credentials, &reservation)
            .await
        {
            Ok(()) => {
                self.finish(&spec, &username, reservation, path).await;
                Ok(Registered {
                    username,
                    kind: Some(spec.kind),
                })
            }
            Err(WriteFailure::NotWritten(error)) => {
                // Nothing was written: give the use back at once, not at lease end.
                let release = Command::Release {
                    token: spec.token.clone(),
                    reservation,
                };
                if let Err(e) = self.propose_quietly(release).await {
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
    async fn finish(
        &self,
        spec: &InviteSpec,
        username: &Username,
        reservation: ReservationId,
        path: RedeemPath,
    ) {
        crate::failpoint::hit("after-account-write");
        // The account exists and names the reservation: if this commit is
        // lost, the janitor commits it when the lease runs out.
        let commit = Command::Commit {
            token: spec.token.clone(),
            reservation,
        };
        if let Err(e) = self.propose_quietly(commit).await {
            tracing::warn!(error = %e, "commit deferred to the lease janitor");
        }
        if let Some(inviter) = spec
            .inviter
            .as_ref()
            .filter(|_| spec.kind == InviteKind::Contact)
        {
            if let Err(e) = self.pair_with_inviter(username, inviter).await {
                tracing::error!(error = %e, "could not add the inviter as a contact");
            }
        }
        tracing::info!(
            user = %username,
            invite = %spec.token.redacted(),
            kind = spec.kind.as_str(),
            path = path.as_str(),
            "registered with an invite"
        );
    }

    /// Writes (or, for a reset, updates) the account.
    async fn write_account(
        &self,
        spec: &InviteSpec,
        username: &Username,
        credentials: Credentials,
        reservation: &ReservationId,
    ) -> Result<(), WriteFailure> {
        if spec.kind == InviteKind::Reset {
            return match self
                .store
                .set_credentials(username, credentials, Some(reservation.clone()))
                .await
            {
                Ok(true) => Ok(()),
                Ok(false) => Err(WriteFailure::NotWritten(RegistrationError::InvalidInvite)),
                Err(e) => {
                    tracing::error!(error = %e, "password reset failed in storage");
                    Err(WriteFailure::Unknown(RegistrationError::StoreUnavailable))
                }
            };
        }
        let account = Account {
            username: username.clone(),
            credentials,
            created_at: now_unix(),
            roles: spec.roles.clone(),
            reservation: Some(reservation.clone()),
        };
        match self.store.create(account).await {
            Ok(CreateOutcome::Created) => Ok(()),
            Ok(CreateOutcome::AlreadyExists) => {
                Err(WriteFailure::NotWritten(RegistrationError::UsernameTaken))
            }
            Err(e) => {
                tracing::error!(error = %e, "registration failed in storage");
                Err(WriteFailure::Unknown(RegistrationError::StoreUnavailable))
            }
        }
    }

    async fn propose_quietly(&self, command: Command) -> Result<(), crate::ledger::LedgerError> {
        if let Outcome::Rejected(r) = self.ledger.propose(command).await? {
            tracing::warn!(reason = %r, "ledger refused to resolve a reservation");
        }
        Ok(())
    }
}

/// The registration error for a ledger refusal.
fn refusal(r: Rejection) -> RegistrationError {
    match r {
        Rejection::WrongUsername => RegistrationError::WrongUsername,
        Rejection::NotAllowed => RegistrationError::NotAllowed,
        _ => RegistrationError::InvalidInvite,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_an_outcome_label_and_spent_invites_are_marked() {
        assert_eq!(refusal(Rejection::WrongUsername).outcome(), "forbidden");
        assert_eq!(refusal(Rejection::NotAllowed).outcome(), "forbidden");
        assert!(refusal(Rejection::NotAllowed).invite_unusable());
        assert!(!refusal(Rejection::WrongUsername).invite_unusable());
        assert!(!RegistrationError::UsernameTaken.invite_unusable());
        assert_eq!(RegistrationError::UsernameTaken.outcome(), "conflict");
        assert_eq!(
            RegistrationError::PasswordTooShort(8).outcome(),
            "not_acceptable"
        );
    }
}
