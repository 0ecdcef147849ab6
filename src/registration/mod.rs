//! Creating an account, whichever door the person came in by — in-band
//! registration on an XMPP stream or the web form: the checks on the chosen
//! username and password, the per-address limit, and with an invite the saga of
//! DESIGN.md (reserve a use through the ledger, write the account, commit the
//! use, pair the inviter), so an invite is never spent more often than it allows.
//! Callers turn `RegistrationError` into their own reply: a stanza error or a
//! message on the form.

pub mod fence;
pub mod janitor;
mod lifecycle;
mod pairing;
mod rate_limit;

use std::net::IpAddr;
use std::sync::Arc;

use crate::accounts::{Account, AccountRow, AccountStore, Credentials, Stamp};
use crate::blocking_pool::{CpuPool, PoolError, Queue};
use crate::clock::{now_millis, now_unix};
use crate::config::Config;
use crate::invites::{
    Command, InviteKind, InviteSpec, Outcome, Purpose, RedeemPath, Rejection, ReservationId, Token,
};
use crate::ledger::LedgerHandle;
use crate::sessions::SessionDirectory;
use crate::xmpp::jid::{prepare_password, Username};
use fence::{Claim, Refusal, Write};
pub use lifecycle::LifecycleError;
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
    #[error("the username belonged to a removed account and is quarantined")]
    Quarantined,
    #[error(
        "the username is an administrator's: only an operator's invite bound to it can register it"
    )]
    AdminName,
    #[error("the registration took longer than its hold on the invite")]
    LeaseLost,
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
            WrongUsername | NotAllowed | AdminName => "forbidden",
            UsernameTaken | Quarantined => "conflict",
            LedgerUnavailable | StoreUnavailable | LeaseLost => "unavailable",
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
        if let Some(invite) = &request.invite {
            // A stream may not keep an invite alive past its expiry for longer
            // than this: refused like an expired one (the client may preauth again).
            let max_age = self.config.limits.validated_invite_max_age.as_millis();
            let age = now_millis().saturating_sub(invite.validated_at);
            if u128::from(age) > max_age {
                crate::metrics::rate_limit_hit("validated_invite_max_age");
                return Err(RegistrationError::InvalidInvite);
            }
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
            .run_queued(Queue::Registration, move || {
                Credentials::derive(&password, iterations, &hashes)
            })
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
        let account = self.new_account(&username, credentials, Vec::new(), None);
        match self.write_new(account, None).await {
            Ok(_) => {
                tracing::info!(user = %username, "account registered");
                Ok(Registered {
                    username,
                    kind: None,
                })
            }
            Err(WriteFailure::NotWritten(e) | WriteFailure::Unknown(e)) => Err(e),
        }
    }

    fn new_account(
        &self,
        username: &Username,
        credentials: Credentials,
        roles: Vec<String>,
        reservation: Option<ReservationId>,
    ) -> Account {
        Account {
            username: username.clone(),
            credentials,
            created_at: now_unix(),
            roles,
            reservation,
            generation: Some(crate::secrets::random_id(12)),
        }
    }

    /// The saga: reserve, write (extending the lease while it runs), commit
    /// (or give back), then side effects. See `saga` for why it spends a use
    /// exactly when an account stands.
    async fn redeem(
        &self,
        invite: ProvenInvite,
        username: Username,
        credentials: Credentials,
        path: RedeemPath,
    ) -> Result<Registered, RegistrationError> {
        let operator_bound = self.config.is_admin_name(&username);
        let held = self
            .reserve(&invite, &username, Purpose::Register, path, operator_bound)
            .await?;
        let claim = Claim {
            reservation: held.reservation.clone(),
            reserved_at: held.reserved_at,
        };
        let spec = held.spec.clone();
        crate::failpoint::hit("after-reserve");
        let written = self
            .holding(
                &held,
                self.write_account(&spec, &username, credentials, &claim),
            )
            .await;
        match written {
            Ok(written) => {
                self.finish(&spec, &username, &claim, written, path).await?;
                Ok(Registered {
                    username,
                    kind: Some(spec.kind),
                })
            }
            Err(WriteFailure::NotWritten(error)) => {
                // Nothing was written: give the use back at once, not at lease end.
                self.release(&spec.token, &claim.reservation).await;
                Err(error)
            }
            Err(WriteFailure::Unknown(error)) => {
                // The store may have applied the write before failing (a timeout
                // after the request left): only the janitor, which fences the
                // name before it decides, can tell whether the use was spent.
                tracing::warn!(
                    invite = %spec.token.redacted(),
                    "account write outcome unknown; the lease janitor settles the invite use"
                );
                Err(error)
            }
        }
    }

    /// XEP-0379: spends a use of the contact invite for `user`'s
    /// subscription; true when the use is committed, and only then may the
    /// caller pair the two (idempotently). No account row is written, so
    /// there is nothing to fence: a commit whose outcome is unknown (a
    /// timeout) answers false and the janitor releases the use at lease end,
    /// or finds it committed. Either way nobody is paired on a use that was
    /// not spent: under-delivery, never over-redemption.
    pub async fn spend_on_presence(&self, invite: &ProvenInvite, user: &Username) -> bool {
        let held = match self
            .reserve(
                invite,
                user,
                Purpose::Subscribe,
                RedeemPath::Presence,
                false,
            )
            .await
        {
            Ok(held) => held,
            Err(_) => return false,
        };
        let commit = Command::Commit {
            token: invite.token.clone(),
            reservation: held.reservation,
        };
        match self.ledger.propose(commit).await {
            Ok(Outcome::Committed) => true,
            Ok(other) => {
                tracing::warn!(?other, "subscription invite not committed");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "subscription invite commit outcome unknown; no pairing");
                false
            }
        }
    }

    /// Takes a use of `invite` for `username`.
    pub(crate) async fn reserve(
        &self,
        invite: &ProvenInvite,
        username: &Username,
        purpose: Purpose,
        path: RedeemPath,
        operator_bound: bool,
    ) -> Result<HeldUse, RegistrationError> {
        let lease = self.config.ledger.reservation_lease;
        let reservation = ReservationId::generate();
        let reserve = Command::Reserve {
            token: invite.token.clone(),
            reservation: reservation.clone(),
            username: username.clone(),
            purpose,
            validated_at: invite.validated_at,
            lease: lease.as_millis() as u64,
            lease_until: None,
            node: self.config.node_name(),
            path,
            operator_bound,
        };
        match self.ledger.propose(reserve).await {
            Ok(Outcome::Reserved(held)) => Ok(HeldUse {
                spec: held.spec,
                reservation,
                reserved_at: held.reserved_at,
                lease,
            }),
            Ok(Outcome::Rejected(r)) => Err(refusal(r)),
            Ok(other) => {
                tracing::error!(?other, "unexpected ledger answer to a reservation");
                Err(RegistrationError::LedgerUnavailable)
            }
            Err(e) => {
                tracing::error!(error = %e, "reservation failed");
                Err(RegistrationError::LedgerUnavailable)
            }
        }
    }

    /// Runs `work` while extending the held use's lease through the ledger
    /// each third of it, so a slow write does not lose its use to the
    /// janitor. A refused extension (the janitor was faster) is only logged:
    /// the janitor fenced the name first, so the write cannot land.
    pub(crate) async fn holding<F: std::future::Future>(
        &self,
        held: &HeldUse,
        work: F,
    ) -> F::Output {
        let ledger = self.ledger.clone();
        let (token, reservation) = (held.spec.token.clone(), held.reservation.clone());
        let lease = held.lease;
        let every = (lease / 3).max(std::time::Duration::from_millis(50));
        // Tests switch extensions off to see the janitor fence a slow write.
        let extend = !crate::failpoint::on("no-lease-extension");
        let extender = tokio::spawn(async move {
            if !extend {
                return;
            }
            loop {
                tokio::time::sleep(every).await;
                let extend = Command::Extend {
                    token: token.clone(),
                    reservation: reservation.clone(),
                    lease: lease.as_millis() as u64,
                };
                match ledger.propose(extend).await {
                    Ok(Outcome::Extended { .. }) => {
                        tracing::debug!(invite = %token.redacted(), "lease extended")
                    }
                    Ok(other) => {
                        tracing::warn!(?other, invite = %token.redacted(), "lease not extended");
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "lease extension failed"),
                }
            }
        });
        let _stop = AbortOnDrop(extender);
        work.await
    }

    /// Commits the use of a registration whose account is written, then does
    /// the idempotent side effects. A refused commit (the use was given back)
    /// takes the write back and fails the registration.
    async fn finish(
        &self,
        spec: &InviteSpec,
        username: &Username,
        claim: &Claim,
        written: Written,
        path: RedeemPath,
    ) -> Result<(), RegistrationError> {
        crate::failpoint::hit("after-account-write");
        let commit = Command::Commit {
            token: spec.token.clone(),
            reservation: claim.reservation.clone(),
        };
        match self.ledger.propose(commit).await {
            Ok(Outcome::Committed) => {}
            Ok(Outcome::Rejected(r)) => {
                tracing::warn!(reason = %r, invite = %spec.token.redacted(), "commit refused; taking the account write back");
                let undo =
                    fence::undo(written.before.as_ref(), &written.row, &written.stamp, claim);
                match apply(self.store.as_ref(), &undo).await {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        tracing::warn!(user = %username, "the account changed since; left as it is")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, user = %username, "could not take an account write back")
                    }
                }
                return Err(RegistrationError::LeaseLost);
            }
            // The account stands and names the reservation; if this commit
            // is lost the janitor finds it at lease end and commits it, so
            // success is the right answer.
            Ok(other) => tracing::warn!(?other, "unexpected ledger answer to a commit"),
            Err(e) => tracing::warn!(error = %e, "commit deferred to the lease janitor"),
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
        Ok(())
    }

    /// Writes (or, for a reset, updates) the account for `claim`.
    async fn write_account(
        &self,
        spec: &InviteSpec,
        username: &Username,
        credentials: Credentials,
        claim: &Claim,
    ) -> Result<Written, WriteFailure> {
        if spec.kind != InviteKind::Reset {
            let account = self.new_account(
                username,
                credentials,
                spec.roles.clone(),
                Some(claim.reservation.clone()),
            );
            return self.write_new(account, Some(claim)).await;
        }
        for _ in 0..CAS_ATTEMPTS {
            let before = self.read_row(username).await?;
            let write = fence::reset(
                before.as_ref(),
                credentials.clone(),
                claim,
                spec.generation.as_deref(),
            );
            match self.try_write(before, write).await? {
                Some(written) => return Ok(written),
                None => continue,
            }
        }
        Err(WriteFailure::NotWritten(
            RegistrationError::StoreUnavailable,
        ))
    }

    /// Creates `account` unless its name is held: read the row, decide, and
    /// make the decision stick with a compare-and-set (again if the row
    /// changed meanwhile).
    async fn write_new(
        &self,
        account: Account,
        claim: Option<&Claim>,
    ) -> Result<Written, WriteFailure> {
        for _ in 0..CAS_ATTEMPTS {
            let before = self.read_row(&account.username).await?;
            let write = fence::new_account(before.as_ref(), account.clone(), claim, now_unix());
            match self.try_write(before, write).await? {
                Some(written) => return Ok(written),
                None => continue,
            }
        }
        Err(WriteFailure::NotWritten(
            RegistrationError::StoreUnavailable,
        ))
    }

    async fn read_row(&self, username: &Username) -> Result<Option<AccountRow>, WriteFailure> {
        self.store.row(username).await.map_err(|e| {
            tracing::error!(error = %e, "account read failed in storage");
            WriteFailure::NotWritten(RegistrationError::StoreUnavailable)
        })
    }

    /// `None`: the row changed since it was read; decide again.
    async fn try_write(
        &self,
        before: Option<AccountRow>,
        write: Result<Write, Refusal>,
    ) -> Result<Option<Written>, WriteFailure> {
        let write = match write {
            Ok(w) => w,
            Err(Refusal::AlreadyWritten) => {
                let row = before.clone().ok_or(WriteFailure::NotWritten(
                    RegistrationError::StoreUnavailable,
                ))?;
                let stamp = row.stamp.clone().unwrap_or_else(Stamp::fresh);
                return Ok(Some(Written {
                    before: None,
                    row,
                    stamp,
                }));
            }
            Err(r) => return Err(WriteFailure::NotWritten(refused_write(r))),
        };
        // Tests hold the write up here, between the read it was decided on
        // and the conditional write, the widest window there is.
        crate::failpoint::delay("slow-account-write").await;
        match apply(self.store.as_ref(), &write).await {
            Ok(Some(stamp)) => Ok(Some(Written {
                before,
                row: write.row().clone(),
                stamp,
            })),
            Ok(None) => Ok(None),
            Err(e) => {
                tracing::error!(error = %e, "account write failed in storage");
                Err(WriteFailure::Unknown(RegistrationError::StoreUnavailable))
            }
        }
    }

    /// Gives a held use back now; if the ledger cannot be reached the
    /// janitor does it at lease end.
    pub(crate) async fn release(&self, token: &Token, reservation: &ReservationId) {
        let release = Command::Release {
            token: token.clone(),
            reservation: reservation.clone(),
        };
        match self.ledger.propose(release).await {
            Ok(Outcome::Released) => {}
            Ok(other) => tracing::warn!(?other, "ledger did not release a reservation"),
            Err(e) => tracing::warn!(error = %e, "release deferred to the lease janitor"),
        }
    }
}

/// How often a write is decided again when its row keeps changing under it.
const CAS_ATTEMPTS: usize = 4;

/// A use held for a saga.
pub(crate) struct HeldUse {
    pub spec: InviteSpec,
    pub reservation: ReservationId,
    /// Ledger time of the reservation (the fence compares it).
    pub reserved_at: u64,
    pub lease: std::time::Duration,
}

/// An account write that landed, and what it replaced.
struct Written {
    before: Option<AccountRow>,
    row: AccountRow,
    stamp: Stamp,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Makes a fencing decision on the store; the new stamp if it applied.
pub(crate) async fn apply(
    store: &dyn AccountStore,
    write: &Write,
) -> Result<Option<Stamp>, crate::accounts::StoreError> {
    match write {
        Write::Insert(row) => store.insert_row(row.clone()).await,
        Write::Replace { expected, row } => store.replace_row(expected.as_ref(), row.clone()).await,
    }
}

/// The registration error for a write the fence refused.
fn refused_write(r: Refusal) -> RegistrationError {
    match r {
        Refusal::Taken | Refusal::AlreadyWritten => RegistrationError::UsernameTaken,
        Refusal::Quarantined(_) => RegistrationError::Quarantined,
        Refusal::LeaseLost => RegistrationError::LeaseLost,
        Refusal::NoAccount => RegistrationError::InvalidInvite,
    }
}

/// The registration error for a ledger refusal.
fn refusal(r: Rejection) -> RegistrationError {
    match r {
        Rejection::WrongUsername => RegistrationError::WrongUsername,
        Rejection::NotAllowed => RegistrationError::NotAllowed,
        Rejection::OperatorInviteRequired => RegistrationError::AdminName,
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
