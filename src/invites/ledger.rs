//! The invite ledger as a deterministic state machine. Every change is a
//! `Command` carrying the time its proposer stamped on it; `apply` never reads a
//! clock, so every replica that applies the same log ends in the same state.
//!
//! Redemption is a two-step saga: `Reserve` takes a use while the account is
//! being written (its lease counted from when the entry is applied, and
//! `Extend`ed while the write runs), then `Commit` spends it or `Release` gives
//! it back. A reservation succeeds only while committed plus pending uses stay
//! below the invite's maximum, so no interleaving spends an invite more often
//! than it allows. Whether a use whose lease ran out is committed or released
//! is for the saga's janitor to decide (`registration`): this ledger knows
//! nothing of accounts.
//!
//! Its size is bounded by the live invites, the reservations in flight and
//! the retained audit: a released reservation is dropped at once, and only the
//! first `AUDITED_RELEASES` of an invite stay in the trail.
//!
//! Users who mint invites are held to limits decided here too (live invites per
//! user, invites per tree, young deep chains), so they hold cluster-wide and
//! under any concurrency; and every change leaves an event in the audit trail.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::audit::{AuditLog, EventFilter, EventKind, InviteEvent};
use super::model::{
    Invite, InviteKind, InviteSpec, InviteStatus, Millis, Purpose, RedeemPath, Reservation,
    ReservationId, ReservationState,
};
use super::token::Token;
use super::tree::{MintLimits, Origin, Trees};
use crate::xmpp::jid::Username;

/// Released reservations of one invite the audit trail tells of; later ones
/// are only counted (`Invite::released`), so failed attempts (a taken
/// username, say) leave the ledger's size where it was.
pub const AUDITED_RELEASES: u32 = 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// An operator's invite (admin API, admin user): no minting limits.
    Create(InviteSpec),
    /// A user's invite: `limits` apply to `minter`.
    Mint {
        spec: InviteSpec,
        minter: Username,
        limits: MintLimits,
    },
    Reserve {
        token: Token,
        reservation: ReservationId,
        username: Username,
        purpose: Purpose,
        /// When the stream validated the invite (XEP-0445: expiry is checked then).
        validated_at: Millis,
        /// How long the use is held, from when this entry is applied.
        #[serde(default)]
        lease: Millis,
        /// Entries of older versions held the use until this absolute time.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lease_until: Option<Millis>,
        /// The node redeeming, and how (for the audit trail).
        #[serde(default)]
        node: String,
        #[serde(default)]
        path: RedeemPath,
        /// The username is an administrator's (`admins`): only an operator's
        /// invite bound to it may register it.
        #[serde(default)]
        operator_bound: bool,
    },
    /// `token` is the reserved invite: it routes the command to its shard.
    Commit {
        token: Token,
        reservation: ReservationId,
    },
    Release {
        token: Token,
        reservation: ReservationId,
    },
    /// Holds a pending use `lease` longer, from when this entry is applied;
    /// refused once the reservation is resolved.
    Extend {
        token: Token,
        reservation: ReservationId,
        lease: Millis,
    },
    Revoke {
        token: Token,
    },
    /// Revokes, on every shard, the invites a deleted account leaves behind:
    /// resets of it and invites bound to its name, and contact invites it
    /// minted or that name it as the inviter.
    RevokeUser {
        username: Username,
    },
    /// Forgets invites that expired before `before` and have nothing pending,
    /// and audit events older than `events_before`.
    Sweep {
        before: Millis,
        #[serde(default)]
        events_before: Millis,
    },
}

impl Command {
    /// The invite a command is about, which decides its shard; `None` for a
    /// sweep or a user's revocation, which every shard runs.
    pub fn token(&self) -> Option<&Token> {
        match self {
            Command::Create(spec) | Command::Mint { spec, .. } => Some(&spec.token),
            Command::Reserve { token, .. }
            | Command::Commit { token, .. }
            | Command::Release { token, .. }
            | Command::Extend { token, .. }
            | Command::Revoke { token } => Some(token),
            Command::Sweep { .. } | Command::RevokeUser { .. } => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    #[error("no such invite")]
    UnknownToken,
    #[error("an invite with this token exists")]
    Exists,
    #[error("the invite has expired")]
    Expired,
    #[error("the invite was revoked")]
    Revoked,
    #[error("the invite has no uses left")]
    UsedUp,
    #[error("the invite is for another username")]
    WrongUsername,
    #[error("the invite does not allow this")]
    NotAllowed,
    #[error("no such reservation")]
    UnknownReservation,
    #[error("the reservation was already resolved the other way")]
    AlreadyResolved,
    #[error("the user holds as many live invites as allowed")]
    QuotaExceeded,
    #[error("the invite tree has reached its size limit")]
    TreeFull,
    #[error("the user's invite chain is too deep and too recent to invite more")]
    ChainTooFast,
    #[error("the username is reserved for an administrator: only an operator's invite bound to it can register it")]
    OperatorInviteRequired,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Created,
    /// The use is held.
    Reserved(Box<Held>),
    Committed,
    Released,
    /// The hold now lasts until then (the ledger's clock).
    Extended {
        lease_until: Millis,
    },
    Revoked,
    /// Invites revoked by a `RevokeUser`.
    RevokedAll(u32),
    Swept(u32),
    Rejected(Rejection),
}

/// A use held for a saga: what the invite grants, and the hold's times on
/// the ledger's clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub spec: InviteSpec,
    /// The stamp of the entry that reserved it.
    pub reserved_at: Millis,
    pub lease_until: Millis,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    invites: BTreeMap<Token, Invite>,
    /// reservation → its invite, for commit and release.
    reservations: BTreeMap<ReservationId, Token>,
    /// Invites each user minted, for their quota.
    #[serde(default)]
    minted: BTreeMap<Username, BTreeSet<Token>>,
    #[serde(default)]
    trees: Trees,
    #[serde(default)]
    audit: AuditLog,
}

impl Ledger {
    /// Applies one command; `at` is the time its Raft entry was stamped with.
    pub fn apply(&mut self, command: Command, at: Millis) -> Outcome {
        let result = match command {
            Command::Create(spec) => self.create(spec, None, at),
            Command::Mint {
                spec,
                minter,
                limits,
            } => self.mint(spec, minter, &limits, at),
            Command::Reserve {
                token,
                reservation,
                username,
                purpose,
                validated_at,
                lease,
                lease_until,
                node,
                path,
                operator_bound,
            } => self.reserve(
                token,
                reservation,
                Reservation {
                    username,
                    purpose,
                    lease_until: lease_until.unwrap_or(at.saturating_add(lease)),
                    state: ReservationState::Pending,
                    node,
                    path,
                    reserved_at: at,
                    resolved_at: 0,
                    event: None,
                },
                validated_at,
                operator_bound,
                at,
            ),
            Command::Commit { reservation, .. } => {
                self.resolve(&reservation, ReservationState::Committed, at)
            }
            Command::Release { reservation, .. } => {
                self.resolve(&reservation, ReservationState::Released, at)
            }
            Command::Extend {
                reservation, lease, ..
            } => self.extend(&reservation, lease, at),
            Command::Revoke { token } => self.revoke(&token, at),
            Command::RevokeUser { username } => Ok(self.revoke_user(&username, at)),
            Command::Sweep {
                before,
                events_before,
            } => Ok(self.sweep(before, events_before)),
        };
        result.unwrap_or_else(Outcome::Rejected)
    }

    pub fn get(&self, token: &Token) -> Option<&Invite> {
        self.invites.get(token)
    }

    pub fn invites(&self) -> impl Iterator<Item = &Invite> {
        self.invites.values()
    }

    /// Where an account came from, if it registered with an invite.
    pub fn origin(&self, account: &str) -> Option<&Origin> {
        self.trees.origin(account)
    }

    /// How many invites the tree rooted at `root` holds.
    pub fn tree_size(&self, root: &Token) -> u32 {
        self.trees.size(root)
    }

    /// Invites `user` minted that are usable at `now`.
    pub fn live_invites_of(&self, user: &str, now: Millis) -> u32 {
        let live = self.minted.get(user).map_or(0, |tokens| {
            tokens
                .iter()
                .filter_map(|t| self.invites.get(t))
                .filter(|i| i.status(now) == InviteStatus::Active)
                .count()
        });
        u32::try_from(live).unwrap_or(u32::MAX)
    }

    /// Audit events matching `filter`, from sequence number `from` on.
    pub fn events(&self, filter: &EventFilter, from: u64, limit: usize) -> Vec<InviteEvent> {
        self.audit.query(filter, from, limit)
    }

    /// The check behind the preauth IQ: the invite exists, is neither revoked
    /// nor expired, and has a use left. Pending reservations do not count here,
    /// since they may yet be released; `Reserve` decides.
    pub fn validate(&self, token: &Token, now: Millis) -> Result<&Invite, Rejection> {
        let invite = self.invites.get(token).ok_or(Rejection::UnknownToken)?;
        match invite.status(now) {
            InviteStatus::Active => Ok(invite),
            InviteStatus::Expired => Err(Rejection::Expired),
            InviteStatus::Revoked => Err(Rejection::Revoked),
            InviteStatus::UsedUp => Err(Rejection::UsedUp),
        }
    }

    /// Pending reservations whose lease ran out before `now`: the leader
    /// resolves each by looking for the account it was meant to create.
    pub fn expired_leases(&self, now: Millis) -> Vec<(ReservationId, Token, Reservation)> {
        self.invites
            .values()
            .flat_map(|inv| {
                inv.reservations
                    .iter()
                    .filter(move |(_, r)| {
                        r.state == ReservationState::Pending && r.lease_until < now
                    })
                    .map(move |(id, r)| (id.clone(), inv.spec.token.clone(), r.clone()))
            })
            .collect()
    }

    fn create(
        &mut self,
        spec: InviteSpec,
        minter: Option<Username>,
        at: Millis,
    ) -> Result<Outcome, Rejection> {
        if let Some(replayed) = self.replayed_create(&spec, minter.as_ref()) {
            return replayed;
        }
        let tree = self.trees.tree_for(minter.as_deref(), &spec.token);
        self.trees.add_invite(tree.clone());
        if let Some(m) = &minter {
            self.minted
                .entry(m.clone())
                .or_default()
                .insert(spec.token.clone());
        }
        let created = EventKind::Created {
            kind: spec.kind,
            roles: spec.roles.clone(),
            groups: spec.groups.clone(),
        };
        let inviter = inviter_of(&spec, minter.as_deref()).map(str::to_owned);
        self.audit
            .record(at, &spec.token, inviter.as_deref(), created);
        let mut invite = Invite::new(spec);
        invite.minted_by = minter;
        invite.tree = Some(tree);
        self.invites.insert(invite.spec.token.clone(), invite);
        Ok(Outcome::Created)
    }

    /// The answer to a Create or Mint of a token that already exists. The
    /// same spec from the same minter is this proposal again (a node retries
    /// a write whose first try timed out, and tokens are 256 random bits):
    /// it gets the first answer, so an invite that was made is never reported
    /// as a clash. Anything else under that token is one.
    fn replayed_create(
        &self,
        spec: &InviteSpec,
        minter: Option<&Username>,
    ) -> Option<Result<Outcome, Rejection>> {
        let existing = self.invites.get(&spec.token)?;
        Some(
            if existing.spec == *spec && existing.minted_by.as_ref() == minter {
                Ok(Outcome::Created)
            } else {
                Err(Rejection::Exists)
            },
        )
    }

    fn mint(
        &mut self,
        spec: InviteSpec,
        minter: Username,
        limits: &MintLimits,
        at: Millis,
    ) -> Result<Outcome, Rejection> {
        if let Some(replayed) = self.replayed_create(&spec, Some(&minter)) {
            return replayed;
        }
        if let Some(max) = limits.max_live {
            if self.live_invites_of(&minter, at) >= max {
                return Err(Rejection::QuotaExceeded);
            }
        }
        if self.trees.chain_blocks(&minter, limits, at) {
            return Err(Rejection::ChainTooFast);
        }
        if let Some(max) = limits.max_tree {
            let tree = self.trees.tree_for(Some(&minter), &spec.token);
            if self.trees.size(&tree) >= max {
                return Err(Rejection::TreeFull);
            }
        }
        self.create(spec, Some(minter), at)
    }

    fn reserve(
        &mut self,
        token: Token,
        id: ReservationId,
        mut reservation: Reservation,
        validated_at: Millis,
        operator_bound: bool,
        at: Millis,
    ) -> Result<Outcome, Rejection> {
        let invite = self
            .invites
            .get_mut(&token)
            .ok_or(Rejection::UnknownToken)?;
        if let Some(existing) = self.reservations.get(&id) {
            // A retried proposal: same answer as the first time.
            let held = invite.reservations.get(&id);
            return match held {
                Some(r)
                    if *existing == token
                        && r.username == reservation.username
                        && r.state == ReservationState::Pending =>
                {
                    Ok(Outcome::Reserved(Box::new(Held {
                        spec: invite.spec.clone(),
                        reserved_at: r.reserved_at,
                        lease_until: r.lease_until,
                    })))
                }
                Some(r) if r.state != ReservationState::Pending => Err(Rejection::AlreadyResolved),
                _ => Err(Rejection::UnknownReservation),
            };
        }
        if invite.revoked {
            return Err(Rejection::Revoked);
        }
        if validated_at >= invite.spec.expires_at {
            return Err(Rejection::Expired);
        }
        check_use(&invite.spec, &reservation.username, reservation.purpose)?;
        if operator_bound && reservation.purpose == Purpose::Register {
            let bound_here = invite.minted_by.is_none()
                && matches!(invite.spec.kind, InviteKind::Account | InviteKind::Reset)
                && invite.spec.username.as_ref() == Some(&reservation.username);
            if !bound_here {
                return Err(Rejection::OperatorInviteRequired);
            }
        }
        if !invite.has_room() {
            return Err(Rejection::UsedUp);
        }
        let event = EventKind::Reserved {
            reservation: id.clone(),
            account: reservation.username.to_string(),
            node: reservation.node.clone(),
            path: reservation.path,
        };
        let inviter = inviter_of(&invite.spec, invite.minted_by.as_deref()).map(str::to_owned);
        reservation.event = Some(self.audit.record(at, &token, inviter.as_deref(), event));
        let held = Held {
            spec: invite.spec.clone(),
            reserved_at: reservation.reserved_at,
            lease_until: reservation.lease_until,
        };
        invite.reservations.insert(id.clone(), reservation);
        self.reservations.insert(id, token);
        Ok(Outcome::Reserved(Box::new(held)))
    }

    // One function on purpose: every branch works on the same borrowed invite
    // and reservation, and the ledger's counts (uses, released, audit) change
    // together or not at all; split, each part would re-look them up.
    fn resolve(
        &mut self,
        id: &ReservationId,
        to: ReservationState,
        at: Millis,
    ) -> Result<Outcome, Rejection> {
        let releasing = to == ReservationState::Released;
        let Some(token) = self.reservations.get(id) else {
            // Nothing holds a use under this id (a release already dropped
            // it, or it never was): giving it back again changes nothing.
            return if releasing {
                Ok(Outcome::Released)
            } else {
                Err(Rejection::UnknownReservation)
            };
        };
        let invite = self
            .invites
            .get_mut(token)
            .ok_or(Rejection::UnknownReservation)?;
        let reservation = invite
            .reservations
            .get_mut(id)
            .ok_or(Rejection::UnknownReservation)?;
        let done = match to {
            ReservationState::Committed => Outcome::Committed,
            _ => Outcome::Released,
        };
        match reservation.state {
            ReservationState::Pending => {
                let account = reservation.username.clone();
                let inviter =
                    inviter_of(&invite.spec, invite.minted_by.as_deref()).map(str::to_owned);
                let token = invite.spec.token.clone();
                if releasing {
                    let event = reservation.event;
                    invite.reservations.remove(id);
                    self.reservations.remove(id);
                    invite.released += 1;
                    if invite.audited_releases < AUDITED_RELEASES {
                        invite.audited_releases += 1;
                        let event = EventKind::Released {
                            reservation: id.clone(),
                            account: account.to_string(),
                        };
                        self.audit.record(at, &token, inviter.as_deref(), event);
                    } else if let Some(seq) = event {
                        // Past the invite's quota of told attempts: the
                        // attempt leaves only the count behind.
                        self.audit.remove(seq);
                    }
                    return Ok(done);
                }
                reservation.state = to;
                reservation.resolved_at = at;
                invite.uses += 1;
                if reservation.purpose == Purpose::Register && invite.spec.kind != InviteKind::Reset
                {
                    let tree = invite.tree.clone().unwrap_or_else(|| token.clone());
                    self.trees.record_registration(
                        &account,
                        &token,
                        invite.minted_by.as_ref(),
                        tree,
                        at,
                    );
                }
                let event = EventKind::Redeemed {
                    reservation: id.clone(),
                    account: account.to_string(),
                    node: reservation.node.clone(),
                    path: reservation.path,
                };
                self.audit.record(at, &token, inviter.as_deref(), event);
                Ok(done)
            }
            // Idempotent: resolving again the same way changes nothing.
            s if s == to => Ok(done),
            _ => Err(Rejection::AlreadyResolved),
        }
    }

    fn extend(
        &mut self,
        id: &ReservationId,
        lease: Millis,
        at: Millis,
    ) -> Result<Outcome, Rejection> {
        let token = self
            .reservations
            .get(id)
            .ok_or(Rejection::UnknownReservation)?;
        let reservation = self
            .invites
            .get_mut(token)
            .and_then(|i| i.reservations.get_mut(id))
            .ok_or(Rejection::UnknownReservation)?;
        if reservation.state != ReservationState::Pending {
            return Err(Rejection::AlreadyResolved);
        }
        // Never shortened: a retried extension arriving late changes nothing.
        reservation.lease_until = reservation.lease_until.max(at.saturating_add(lease));
        Ok(Outcome::Extended {
            lease_until: reservation.lease_until,
        })
    }

    fn revoke(&mut self, token: &Token, at: Millis) -> Result<Outcome, Rejection> {
        let invite = self.invites.get_mut(token).ok_or(Rejection::UnknownToken)?;
        if !invite.revoked {
            invite.revoked = true;
            let inviter = inviter_of(&invite.spec, invite.minted_by.as_deref()).map(str::to_owned);
            self.audit
                .record(at, token, inviter.as_deref(), EventKind::Revoked);
        }
        Ok(Outcome::Revoked)
    }

    fn revoke_user(&mut self, user: &Username, at: Millis) -> Outcome {
        let mut revoked = 0u32;
        for invite in self.invites.values_mut() {
            let spec = &invite.spec;
            let bound = matches!(spec.kind, InviteKind::Account | InviteKind::Reset)
                && spec.username.as_ref() == Some(user);
            let theirs =
                invite.minted_by.as_ref() == Some(user) || spec.inviter.as_ref() == Some(user);
            if invite.revoked || !(bound || theirs) {
                continue;
            }
            invite.revoked = true;
            revoked = revoked.saturating_add(1);
            let inviter = inviter_of(&invite.spec, invite.minted_by.as_deref()).map(str::to_owned);
            self.audit.record(
                at,
                &invite.spec.token,
                inviter.as_deref(),
                EventKind::Revoked,
            );
        }
        Outcome::RevokedAll(revoked)
    }

    fn sweep(&mut self, before: Millis, events_before: Millis) -> Outcome {
        self.audit.prune(events_before);
        // Committed reservations are kept for the retention (a retried
        // commit, the invite's story), released ones of older versions went
        // at once now; either way `uses` keeps the count.
        for invite in self.invites.values_mut() {
            let created = invite.spec.created_at;
            let gone: Vec<ReservationId> = invite
                .reservations
                .iter()
                .filter(|(_, r)| match r.state {
                    ReservationState::Pending => false,
                    ReservationState::Released => true,
                    ReservationState::Committed => {
                        let resolved = if r.resolved_at == 0 {
                            created
                        } else {
                            r.resolved_at
                        };
                        resolved < events_before
                    }
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in gone {
                invite.reservations.remove(&id);
                self.reservations.remove(&id);
            }
        }
        let gone: Vec<Token> = self
            .invites
            .values()
            .filter(|i| i.spec.expires_at < before && i.pending() == 0)
            .map(|i| i.spec.token.clone())
            .collect();
        for token in &gone {
            if let Some(invite) = self.invites.remove(token) {
                for id in invite.reservations.keys() {
                    self.reservations.remove(id);
                }
                if let Some(m) = &invite.minted_by {
                    if let Some(set) = self.minted.get_mut(m) {
                        set.remove(token);
                        if set.is_empty() {
                            self.minted.remove(m);
                        }
                    }
                }
            }
        }
        Outcome::Swept(u32::try_from(gone.len()).unwrap_or(u32::MAX))
    }
}

/// Who an invite is attributed to: the minting user, else the contact
/// invite's inviter, else whoever created it (an admin JID or the API).
fn inviter_of<'a>(spec: &'a InviteSpec, minter: Option<&'a str>) -> Option<&'a str> {
    minter
        .or(spec.inviter.as_deref())
        .or(spec.created_by.as_deref())
}

/// Whether this invite may be used by `username` for `purpose`.
fn check_use(spec: &InviteSpec, username: &str, purpose: Purpose) -> Result<(), Rejection> {
    let bound_ok = spec.username.as_deref().is_none_or(|u| u == username);
    match (spec.kind, purpose) {
        (InviteKind::Account | InviteKind::Reset, Purpose::Register) if !bound_ok => {
            Err(Rejection::WrongUsername)
        }
        (InviteKind::Reset, Purpose::Register) if spec.username.is_none() => {
            Err(Rejection::NotAllowed)
        }
        (InviteKind::Account | InviteKind::Reset | InviteKind::Group, Purpose::Register) => Ok(()),
        (InviteKind::Contact, Purpose::Register) if spec.allow_registration => Ok(()),
        (InviteKind::Contact, Purpose::Subscribe) if spec.inviter.as_deref() != Some(username) => {
            Ok(())
        }
        _ => Err(Rejection::NotAllowed),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn user(name: &str) -> Username {
        Username::parse(name).unwrap()
    }

    impl Ledger {
        /// Applies at time 0: these tests stamp their own times in commands.
        fn run(&mut self, command: Command) -> Outcome {
            self.apply(command, 0)
        }
    }

    fn spec(n: u8, kind: InviteKind, max_uses: Option<u32>, expires_at: Millis) -> InviteSpec {
        InviteSpec {
            token: Token::parse(&format!("token-{n:0>10}-xxxxx")).unwrap(),
            kind,
            username: None,
            inviter: (kind == InviteKind::Contact).then(|| user("alice")),
            allow_registration: true,
            max_uses,
            roles: vec![],
            groups: vec![],
            created_at: 0,
            expires_at,
            created_by: None,
            generation: None,
        }
    }

    /// Commit and release find the invite by reservation; the token only routes.
    fn any_token() -> Token {
        Token::parse("token-0000000000-xxxxx").unwrap()
    }

    fn commit(id: &str) -> Command {
        Command::Commit {
            token: any_token(),
            reservation: id.into(),
        }
    }

    fn release(id: &str) -> Command {
        Command::Release {
            token: any_token(),
            reservation: id.into(),
        }
    }

    fn reserve(token: &Token, id: &str, user: &str, at: Millis) -> Command {
        Command::Reserve {
            token: token.clone(),
            reservation: id.into(),
            username: self::user(user),
            purpose: Purpose::Register,
            validated_at: at,
            lease: 100,
            lease_until: None,
            node: "n1".into(),
            path: RedeemPath::Ibr,
            operator_bound: false,
        }
    }

    #[test]
    fn single_use_invite_admits_one_commit() {
        let mut l = Ledger::default();
        let s = spec(1, InviteKind::Account, Some(1), 1000);
        let t = s.token.clone();
        assert_eq!(l.run(Command::Create(s.clone())), Outcome::Created);
        // The same proposal again (a retry after a timeout) gets the same
        // answer and changes nothing; another spec under the token clashes.
        let events = |l: &Ledger| l.events(&EventFilter::default(), 0, usize::MAX).len();
        let before = (events(&l), l.get(&t).cloned());
        assert_eq!(l.run(Command::Create(s.clone())), Outcome::Created);
        assert_eq!((events(&l), l.get(&t).cloned()), before);
        let mut other = s;
        other.max_uses = Some(2);
        assert_eq!(
            l.run(Command::Create(other)),
            Outcome::Rejected(Rejection::Exists)
        );
        assert!(matches!(
            l.run(reserve(&t, "r1", "a", 10)),
            Outcome::Reserved(_)
        ));
        // The pending reservation holds the only use.
        assert_eq!(
            l.run(reserve(&t, "r2", "b", 10)),
            Outcome::Rejected(Rejection::UsedUp)
        );
        // Released (username taken, say): the use is free again, and the
        // reservation is gone: a late commit is refused.
        assert_eq!(l.run(release("r1")), Outcome::Released);
        assert_eq!(l.run(release("r1")), Outcome::Released);
        assert_eq!(
            l.run(commit("r1")),
            Outcome::Rejected(Rejection::UnknownReservation)
        );
        assert!(l.get(&t).unwrap().reservations.is_empty());
        assert!(matches!(
            l.run(reserve(&t, "r2", "b", 10)),
            Outcome::Reserved(_)
        ));
        assert_eq!(l.run(commit("r2")), Outcome::Committed);
        assert_eq!(l.run(commit("r2")), Outcome::Committed);
        assert_eq!(l.get(&t).unwrap().uses, 1);
        assert_eq!(l.validate(&t, 10).unwrap_err(), Rejection::UsedUp);
    }

    #[test]
    fn expiry_revocation_and_binding() {
        let mut l = Ledger::default();
        let mut bound = spec(2, InviteKind::Account, Some(1), 1000);
        bound.username = Some(user("bob"));
        let t = bound.token.clone();
        l.run(Command::Create(bound));
        assert_eq!(
            l.run(reserve(&t, "x", "eve", 10)),
            Outcome::Rejected(Rejection::WrongUsername)
        );
        // Validated before expiry: still good after it (XEP-0445).
        assert!(matches!(
            l.run(reserve(&t, "y", "bob", 999)),
            Outcome::Reserved(_)
        ));
        assert_eq!(l.validate(&t, 1000).unwrap_err(), Rejection::Expired);

        let g = spec(3, InviteKind::Group, None, 1000);
        let tg = g.token.clone();
        l.run(Command::Create(g));
        assert_eq!(
            l.run(reserve(&tg, "z", "c", 1000)),
            Outcome::Rejected(Rejection::Expired)
        );
        assert_eq!(
            l.run(Command::Revoke { token: tg.clone() }),
            Outcome::Revoked
        );
        assert_eq!(
            l.run(reserve(&tg, "z", "c", 1)),
            Outcome::Rejected(Rejection::Revoked)
        );
        assert_eq!(l.validate(&tg, 1).unwrap_err(), Rejection::Revoked);

        let mut c = spec(4, InviteKind::Contact, Some(1), 1000);
        c.allow_registration = false;
        let tc = c.token.clone();
        l.run(Command::Create(c));
        assert_eq!(
            l.run(reserve(&tc, "c1", "dan", 1)),
            Outcome::Rejected(Rejection::NotAllowed)
        );
        let sub = |user: &str| Command::Reserve {
            token: tc.clone(),
            reservation: format!("s-{user}").into(),
            username: self::user(user),
            purpose: Purpose::Subscribe,
            validated_at: 1,
            lease: 10,
            lease_until: None,
            node: "n1".into(),
            path: RedeemPath::Presence,
            operator_bound: false,
        };
        // The inviter cannot use their own contact invite.
        assert_eq!(
            l.run(sub("alice")),
            Outcome::Rejected(Rejection::NotAllowed)
        );
        assert!(matches!(l.run(sub("dan")), Outcome::Reserved(_)));
    }

    #[test]
    fn leases_and_sweeping() {
        let mut l = Ledger::default();
        let s = spec(5, InviteKind::Group, Some(3), 1000);
        let t = s.token.clone();
        l.run(Command::Create(s));
        // Leases count from when the entry is applied.
        l.apply(reserve(&t, "a", "a", 1), 1); // lease until 101
        l.apply(reserve(&t, "b", "b", 0), 500); // lease until 600
        let expired: Vec<_> = l
            .expired_leases(200)
            .into_iter()
            .map(|(id, _, _)| id)
            .collect();
        assert_eq!(expired, [ReservationId::from("a")]);
        // Pending reservations keep an expired invite from being forgotten.
        assert_eq!(
            l.run(Command::Sweep {
                before: 5000,
                events_before: 0
            }),
            Outcome::Swept(0)
        );
        // An extension holds the use longer; a resolved one cannot be extended.
        let extend = |id: &str| Command::Extend {
            token: any_token(),
            reservation: id.into(),
            lease: 1000,
        };
        assert_eq!(
            l.apply(extend("a"), 150),
            Outcome::Extended { lease_until: 1150 }
        );
        assert!(l.expired_leases(200).is_empty());
        l.run(commit("a"));
        l.run(release("b"));
        assert_eq!(
            l.run(extend("a")),
            Outcome::Rejected(Rejection::AlreadyResolved)
        );
        assert_eq!(
            l.run(extend("b")),
            Outcome::Rejected(Rejection::UnknownReservation)
        );
        assert_eq!(
            l.run(Command::Sweep {
                before: 500,
                events_before: 0
            }),
            Outcome::Swept(0)
        );
        assert_eq!(
            l.run(Command::Sweep {
                before: 5000,
                events_before: 0
            }),
            Outcome::Swept(1)
        );
        assert!(l.get(&t).is_none());
        assert_eq!(
            l.run(commit("a")),
            Outcome::Rejected(Rejection::UnknownReservation)
        );
    }

    /// The ledger's whole replicated state, as a snapshot stores it.
    fn snapshot_bytes(l: &Ledger) -> usize {
        serde_json::to_vec(l).unwrap().len()
    }

    #[test]
    fn failed_attempts_leave_the_ledger_size_flat() {
        let mut l = Ledger::default();
        let s = spec(9, InviteKind::Group, Some(3), 1_000_000);
        let t = s.token.clone();
        l.run(Command::Create(s));
        let attempt = |l: &mut Ledger, n: u32| {
            let id = format!("attempt-{n}");
            let at = Millis::from(n);
            assert!(matches!(
                l.apply(reserve(&t, &id, &format!("user{n}"), at), at),
                Outcome::Reserved(_)
            ));
            // The username was taken: the use goes back.
            assert_eq!(l.apply(release(&id), at), Outcome::Released);
        };
        for n in 0..AUDITED_RELEASES {
            attempt(&mut l, n);
        }
        let before = snapshot_bytes(&l);
        for n in AUDITED_RELEASES..10_000 {
            attempt(&mut l, n);
        }
        let after = snapshot_bytes(&l);
        println!("ledger snapshot: {before} bytes after {AUDITED_RELEASES} failed attempts, {after} after 10000");
        let invite = l.get(&t).unwrap();
        assert_eq!(invite.released, 10_000);
        assert!(invite.reservations.is_empty());
        // Only the counter grew (by a few digits).
        assert!(after <= before + 8, "{before} -> {after} bytes");
        let events = l.events(&EventFilter::default(), 0, usize::MAX);
        assert_eq!(events.len(), 1 + 2 * AUDITED_RELEASES as usize);
        // A reservation in flight is still told, and the use still works.
        assert!(matches!(
            l.apply(reserve(&t, "winner", "winner", 20_000), 20_000),
            Outcome::Reserved(_)
        ));
        assert_eq!(l.run(commit("winner")), Outcome::Committed);
        let names: Vec<_> = l
            .events(&EventFilter::default(), 0, usize::MAX)
            .iter()
            .rev()
            .take(2)
            .map(|e| e.what.name())
            .collect();
        assert_eq!(names, ["redeemed", "reserved"]);
    }

    #[test]
    fn committed_reservations_go_after_the_retention() {
        let mut l = Ledger::default();
        let s = spec(8, InviteKind::Group, Some(3), 1_000_000);
        let t = s.token.clone();
        l.run(Command::Create(s));
        l.apply(reserve(&t, "c", "carol", 10), 10);
        l.apply(commit("c"), 20);
        l.apply(
            Command::Sweep {
                before: 0,
                events_before: 20,
            },
            30,
        );
        assert_eq!(l.run(commit("c")), Outcome::Committed);
        l.apply(
            Command::Sweep {
                before: 0,
                events_before: 21,
            },
            30,
        );
        let invite = l.get(&t).unwrap();
        assert!(invite.reservations.is_empty());
        assert_eq!(invite.uses, 1);
    }

    #[test]
    fn a_deleted_user_leaves_no_usable_invite_behind() {
        let mut l = Ledger::default();
        let lim = limits(10, 1000, 0);
        // erin's own contact invite, one naming her as inviter, a reset of
        // her and an invite bound to her name; and someone else's.
        l.apply(mint(1, "erin", &lim), 0);
        let mut contact = spec(2, InviteKind::Contact, Some(1), 10_000);
        contact.inviter = Some(user("erin"));
        let mut reset = spec(3, InviteKind::Reset, Some(1), 10_000);
        reset.username = Some(user("erin"));
        let mut bound = spec(4, InviteKind::Account, Some(1), 10_000);
        bound.username = Some(user("erin"));
        for s in [contact, reset, bound] {
            l.run(Command::Create(s));
        }
        l.apply(mint(5, "frank", &lim), 0);
        assert_eq!(
            l.run(Command::RevokeUser {
                username: user("erin")
            }),
            Outcome::RevokedAll(4)
        );
        assert_eq!(
            l.run(Command::RevokeUser {
                username: user("erin")
            }),
            Outcome::RevokedAll(0)
        );
        let revoked: Vec<bool> = l.invites().map(|i| i.revoked).collect();
        assert_eq!(revoked, [true, true, true, true, false]);
    }

    #[test]
    fn an_administrators_name_needs_an_operators_invite_bound_to_it() {
        let mut l = Ledger::default();
        let open = spec(1, InviteKind::Account, Some(1), 10_000);
        let mut bound = spec(2, InviteKind::Account, Some(1), 10_000);
        bound.username = Some(user("boss"));
        let (to, tb) = (open.token.clone(), bound.token.clone());
        l.run(Command::Create(open));
        l.run(Command::Create(bound));
        let admin = |t: &Token, id: &str| match reserve(t, id, "boss", 1) {
            Command::Reserve {
                token,
                reservation,
                username,
                purpose,
                validated_at,
                lease,
                lease_until,
                node,
                path,
                ..
            } => Command::Reserve {
                token,
                reservation,
                username,
                purpose,
                validated_at,
                lease,
                lease_until,
                node,
                path,
                operator_bound: true,
            },
            _ => unreachable!(),
        };
        assert_eq!(
            l.run(admin(&to, "a")),
            Outcome::Rejected(Rejection::OperatorInviteRequired)
        );
        assert!(matches!(l.run(admin(&tb, "b")), Outcome::Reserved(_)));
    }

    fn limits(max_live: u32, max_tree: u32, window: Millis) -> MintLimits {
        MintLimits {
            max_live: Some(max_live),
            max_tree: Some(max_tree),
            fast_chain_depth: 2,
            fast_chain_window: window,
        }
    }

    fn mint(n: u8, minter: &str, limits: &MintLimits) -> Command {
        let mut s = spec(n, InviteKind::Contact, Some(1), 10_000);
        s.inviter = Some(user(minter));
        Command::Mint {
            spec: s,
            minter: user(minter),
            limits: limits.clone(),
        }
    }

    /// Registers `user` with invite `n` at `at` (reserve, then commit).
    fn register(l: &mut Ledger, n: u8, user: &str, at: Millis) {
        let t = Token::parse(&format!("token-{n:0>10}-xxxxx")).unwrap();
        let id = format!("reg-{user}");
        assert!(matches!(
            l.apply(reserve(&t, &id, user, at), at),
            Outcome::Reserved(_)
        ));
        assert_eq!(l.apply(commit(&id), at), Outcome::Committed);
    }

    #[test]
    fn quota_counts_live_invites_only() {
        let mut l = Ledger::default();
        let lim = limits(2, 1000, 0);
        assert_eq!(l.apply(mint(1, "ann", &lim), 0), Outcome::Created);
        assert_eq!(l.apply(mint(2, "ann", &lim), 0), Outcome::Created);
        assert_eq!(
            l.apply(mint(3, "ann", &lim), 0),
            Outcome::Rejected(Rejection::QuotaExceeded)
        );
        // Another user has a quota of their own.
        assert_eq!(l.apply(mint(4, "bo", &lim), 0), Outcome::Created);
        // Revoked and used-up invites no longer count.
        let t1 = Token::parse("token-0000000001-xxxxx").unwrap();
        l.apply(Command::Revoke { token: t1 }, 5);
        assert_eq!(l.apply(mint(3, "ann", &lim), 6), Outcome::Created);
        register(&mut l, 2, "cy", 7);
        assert_eq!(l.live_invites_of("ann", 8), 1);
        assert_eq!(l.apply(mint(5, "ann", &lim), 8), Outcome::Created);
        assert_eq!(
            l.apply(mint(6, "ann", &lim), 8),
            Outcome::Rejected(Rejection::QuotaExceeded)
        );
        // Nor do expired ones.
        assert_eq!(l.live_invites_of("ann", 10_000), 0);
        assert_eq!(l.apply(mint(6, "ann", &lim), 10_000), Outcome::Created);
    }

    #[test]
    fn a_retried_mint_gets_its_first_answer_even_at_the_quota() {
        let mut l = Ledger::default();
        let lim = limits(1, 1000, 0);
        assert_eq!(l.apply(mint(1, "ann", &lim), 0), Outcome::Created);
        // The same proposal again, with ann now at her quota: still made.
        assert_eq!(l.apply(mint(1, "ann", &lim), 1), Outcome::Created);
        assert_eq!(l.live_invites_of("ann", 1), 1);
        // The same spec under another minter is not a replay.
        let Command::Mint { spec, .. } = mint(1, "ann", &lim) else {
            unreachable!("mint() builds a Mint")
        };
        let other = Command::Mint {
            spec,
            minter: user("bo"),
            limits: lim.clone(),
        };
        assert_eq!(l.apply(other, 2), Outcome::Rejected(Rejection::Exists));
    }

    #[test]
    fn a_tree_stops_at_its_limit() {
        let mut l = Ledger::default();
        let root = spec(1, InviteKind::Group, Some(10), 10_000);
        let root_token = root.token.clone();
        l.apply(Command::Create(root), 0);
        register(&mut l, 1, "ann", 10);
        register(&mut l, 1, "bo", 10);
        let lim = limits(10, 4, 0);
        // The root plus three minted invites fill a tree of four.
        assert_eq!(l.apply(mint(2, "ann", &lim), 20), Outcome::Created);
        assert_eq!(l.apply(mint(3, "bo", &lim), 20), Outcome::Created);
        register(&mut l, 2, "cy", 30);
        assert_eq!(l.origin("cy").unwrap().tree, root_token);
        assert_eq!(l.apply(mint(4, "cy", &lim), 30), Outcome::Created);
        assert_eq!(l.tree_size(&root_token), 4);
        for (n, who) in [(5, "ann"), (6, "cy")] {
            assert_eq!(
                l.apply(mint(n, who, &lim), 40),
                Outcome::Rejected(Rejection::TreeFull)
            );
        }
        // A user who came by no invite starts a tree of their own.
        assert_eq!(l.apply(mint(7, "root-user", &lim), 40), Outcome::Created);
    }

    #[test]
    fn a_young_deep_chain_is_blocked_until_it_ages() {
        let mut l = Ledger::default();
        l.apply(
            Command::Create(spec(1, InviteKind::Account, Some(1), 100_000)),
            0,
        );
        register(&mut l, 1, "ann", 1_000); // depth 1: may mint at once
        let lim = limits(10, 1000, 300);
        assert_eq!(l.apply(mint(2, "ann", &lim), 1_010), Outcome::Created);
        register(&mut l, 2, "bo", 1_100); // depth 2, chain started at 1000
        let o = l.origin("bo").unwrap().clone();
        assert_eq!((o.depth, o.chain_started), (2, 1_000));
        assert_eq!(o.inviter.as_deref(), Some("ann"));
        assert_eq!(
            l.apply(mint(3, "bo", &lim), 1_299),
            Outcome::Rejected(Rejection::ChainTooFast)
        );
        assert_eq!(l.apply(mint(3, "bo", &lim), 1_300), Outcome::Created);
    }

    #[test]
    fn the_audit_trail_tells_each_invite_in_order() {
        let mut l = Ledger::default();
        let lim = limits(10, 1000, 0);
        l.apply(mint(1, "ann", &lim), 100);
        let t = Token::parse("token-0000000001-xxxxx").unwrap();
        l.apply(reserve(&t, "r1", "bo", 200), 200);
        l.apply(release("r1"), 210);
        l.apply(reserve(&t, "r2", "cy", 300), 300);
        l.apply(commit("r2"), 310);
        l.apply(Command::Revoke { token: t.clone() }, 400);
        l.apply(Command::Revoke { token: t.clone() }, 410);
        let filter = EventFilter {
            token: Some(t),
            ..Default::default()
        };
        let events = l.events(&filter, 0, 100);
        let names: Vec<_> = events.iter().map(|e| (e.at, e.what.name())).collect();
        assert_eq!(
            names,
            [
                (100, "created"),
                (200, "reserved"),
                (210, "released"),
                (300, "reserved"),
                (310, "redeemed"),
                (400, "revoked"),
            ]
        );
        assert!(events.iter().all(|e| e.inviter.as_deref() == Some("ann")));
        assert_eq!(events[4].what.account(), Some("cy"));
        // Retention: the sweep drops events older than its cut-off.
        l.apply(
            Command::Sweep {
                before: 0,
                events_before: 300,
            },
            500,
        );
        assert_eq!(l.events(&EventFilter::default(), 0, 100).len(), 3);
    }

    fn arb_command() -> impl Strategy<Value = Command> {
        let token = (0u8..6).prop_map(|n| Token::parse(&format!("token-{n:0>10}-xxxxx")).unwrap());
        let rid = (0u8..12).prop_map(|n| format!("r{n}"));
        prop_oneof![
            (0u8..3, 0u32..4, prop::bool::ANY, 100u64..2000).prop_map(
                |(n, max, unlimited, exp)| {
                    let kind = if unlimited {
                        InviteKind::Group
                    } else {
                        InviteKind::Account
                    };
                    Command::Create(spec(n, kind, (!unlimited).then_some(max), exp))
                }
            ),
            (token.clone(), rid.clone(), 0u8..4, 0u64..2500)
                .prop_map(|(t, r, u, at)| { reserve(&t, &r, &format!("u{u}"), at) }),
            rid.clone().prop_map(|reservation| Command::Commit {
                token: any_token(),
                reservation: reservation.into()
            }),
            rid.clone().prop_map(|reservation| Command::Release {
                token: any_token(),
                reservation: reservation.into()
            }),
            (rid, 0u64..200).prop_map(|(reservation, lease)| Command::Extend {
                token: any_token(),
                reservation: reservation.into(),
                lease,
            }),
            (0u8..4).prop_map(|u| Command::RevokeUser {
                username: user(&format!("u{u}"))
            }),
            token.clone().prop_map(|token| Command::Revoke { token }),
            (3u8..6, 0u8..3).prop_map(|(n, who)| mint(n, &format!("u{who}"), &limits(2, 3, 50))),
            (0u64..3000).prop_map(|before| Command::Sweep {
                before,
                events_before: before
            }),
        ]
    }

    /// Uses and reservations add up, and never exceed the maximum.
    fn check_invariants(l: &Ledger) {
        // Minting limits of `arb_command` (quota 2, trees of 3; time stays 0).
        for user in ["u0", "u1", "u2"] {
            assert!(l.live_invites_of(user, 0) <= 2, "{user} over quota");
        }
        for inv in l.invites() {
            assert!(inv.tree.is_some(), "every invite has a tree");
        }
        for inv in l.invites() {
            // Committed reservations may have been pruned; released ones
            // are never kept.
            let committed = inv
                .reservations
                .values()
                .filter(|r| r.state == ReservationState::Committed)
                .count() as u32;
            assert!(committed <= inv.uses, "{inv:?}");
            assert!(inv
                .reservations
                .values()
                .all(|r| r.state != ReservationState::Released));
            let told = l
                .events(
                    &EventFilter {
                        token: Some(inv.spec.token.clone()),
                        ..Default::default()
                    },
                    0,
                    usize::MAX,
                )
                .iter()
                .filter(|e| e.what.name() == "released")
                .count() as u32;
            assert!(told <= AUDITED_RELEASES, "{told} released events");
            if let Some(max) = inv.spec.max_uses {
                assert!(inv.uses + inv.pending() <= max, "{inv:?}");
            }
            for id in inv.reservations.keys() {
                assert_eq!(l.reservations.get(id), Some(&inv.spec.token));
            }
        }
        for (id, token) in &l.reservations {
            assert!(l
                .invites
                .get(token)
                .is_some_and(|i| i.reservations.contains_key(id)));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn commits_never_exceed_max_uses(cmds in prop::collection::vec(arb_command(), 0..60)) {
            let mut l = Ledger::default();
            for c in cmds {
                let minted = match &c {
                    Command::Mint { spec, .. } => Some(spec.token.clone()),
                    _ => None,
                };
                if l.run(c) == Outcome::Created {
                    // A mint never grows its tree past the limit (3 here).
                    if let Some(tree) = minted.and_then(|t| l.get(&t)?.tree.clone()) {
                        prop_assert!(l.tree_size(&tree) <= 3);
                    }
                }
                check_invariants(&l);
            }
        }

        #[test]
        fn replaying_the_log_gives_the_same_state(cmds in prop::collection::vec(arb_command(), 0..60)) {
            let mut a = Ledger::default();
            let outcomes: Vec<Outcome> = cmds.iter().cloned().map(|c| a.run(c)).collect();
            let mut b = Ledger::default();
            let replayed: Vec<Outcome> = cmds.into_iter().map(|c| b.run(c)).collect();
            prop_assert_eq!(&outcomes, &replayed);
            prop_assert_eq!(&a, &b);
            // A snapshot restores the same state.
            let restored: Ledger = serde_json::from_slice(&serde_json::to_vec(&a).unwrap()).unwrap();
            prop_assert_eq!(a, restored);
        }

        #[test]
        fn commit_and_release_are_idempotent(
            cmds in prop::collection::vec(arb_command(), 0..40),
            id in (0u8..12).prop_map(|n| format!("r{n}")),
            commit in prop::bool::ANY,
        ) {
            let mut l = Ledger::default();
            for c in cmds { l.run(c); }
            let c = if commit { super::tests::commit(&id) } else { super::tests::release(&id) };
            let first = l.run(c.clone());
            let after_first = l.clone();
            let second = l.run(c);
            prop_assert_eq!(first, second);
            prop_assert_eq!(after_first, l);
        }

        #[test]
        fn expired_or_revoked_invites_never_reserve(
            cmds in prop::collection::vec(arb_command(), 0..40),
            n in 0u8..3,
            at in 0u64..2500,
        ) {
            let mut l = Ledger::default();
            for c in cmds { l.run(c); }
            let t = Token::parse(&format!("token-{n:0>10}-xxxxx")).unwrap();
            let before = l.get(&t).cloned();
            let out = l.run(reserve(&t, "fresh", "someone", at));
            if let Some(inv) = before {
                if inv.revoked || at >= inv.spec.expires_at {
                    prop_assert!(matches!(out, Outcome::Rejected(_)), "{:?}", out);
                }
            }
        }
    }
}
