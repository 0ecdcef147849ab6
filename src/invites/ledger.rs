//! The invite ledger as a deterministic state machine. Every change is a
//! `Command` carrying the time its proposer stamped on it; `apply` never reads a
//! clock, so every replica that applies the same log ends in the same state.
//!
//! Redemption is a two-step saga: `Reserve` takes a use while the account is
//! being written, then `Commit` spends it or `Release` gives it back. A
//! reservation succeeds only while committed plus pending uses stay below the
//! invite's maximum, so no interleaving spends an invite more often than it allows.
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
        lease_until: Millis,
        /// The node redeeming, and how (for the audit trail).
        #[serde(default)]
        node: String,
        #[serde(default)]
        path: RedeemPath,
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
    Revoke {
        token: Token,
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
    /// sweep, which every shard runs.
    pub fn token(&self) -> Option<&Token> {
        match self {
            Command::Create(spec) | Command::Mint { spec, .. } => Some(&spec.token),
            Command::Reserve { token, .. }
            | Command::Commit { token, .. }
            | Command::Release { token, .. }
            | Command::Revoke { token } => Some(token),
            Command::Sweep { .. } => None,
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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Created,
    /// The use is held; the spec tells the saga what the invite grants.
    Reserved(InviteSpec),
    Committed,
    Released,
    Revoked,
    Swept(u32),
    Rejected(Rejection),
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
                lease_until,
                node,
                path,
            } => self.reserve(
                token,
                reservation,
                Reservation {
                    username,
                    purpose,
                    lease_until,
                    state: ReservationState::Pending,
                    node,
                    path,
                },
                validated_at,
                at,
            ),
            Command::Commit { reservation, .. } => {
                self.resolve(&reservation, ReservationState::Committed, at)
            }
            Command::Release { reservation, .. } => {
                self.resolve(&reservation, ReservationState::Released, at)
            }
            Command::Revoke { token } => self.revoke(&token, at),
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
        if self.invites.contains_key(&spec.token) {
            return Err(Rejection::Exists);
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

    fn mint(
        &mut self,
        spec: InviteSpec,
        minter: Username,
        limits: &MintLimits,
        at: Millis,
    ) -> Result<Outcome, Rejection> {
        if self.invites.contains_key(&spec.token) {
            return Err(Rejection::Exists);
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
        reservation: Reservation,
        validated_at: Millis,
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
                Some(r) if *existing == token && r.username == reservation.username => {
                    Ok(Outcome::Reserved(invite.spec.clone()))
                }
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
        self.audit.record(at, &token, inviter.as_deref(), event);
        invite.reservations.insert(id.clone(), reservation);
        self.reservations.insert(id, token);
        Ok(Outcome::Reserved(invite.spec.clone()))
    }

    fn resolve(
        &mut self,
        id: &ReservationId,
        to: ReservationState,
        at: Millis,
    ) -> Result<Outcome, Rejection> {
        let token = self
            .reservations
            .get(id)
            .ok_or(Rejection::UnknownReservation)?;
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
                reservation.state = to;
                let account = reservation.username.clone();
                let event = if to == ReservationState::Committed {
                    invite.uses += 1;
                    if reservation.purpose == Purpose::Register
                        && invite.spec.kind != InviteKind::Reset
                    {
                        let tree = invite
                            .tree
                            .clone()
                            .unwrap_or_else(|| invite.spec.token.clone());
                        self.trees.record_registration(
                            &account,
                            &invite.spec.token,
                            invite.minted_by.as_ref(),
                            tree,
                            at,
                        );
                    }
                    EventKind::Redeemed {
                        reservation: id.clone(),
                        account: account.to_string(),
                        node: reservation.node.clone(),
                        path: reservation.path,
                    }
                } else {
                    EventKind::Released {
                        reservation: id.clone(),
                        account: account.to_string(),
                    }
                };
                let inviter =
                    inviter_of(&invite.spec, invite.minted_by.as_deref()).map(str::to_owned);
                self.audit
                    .record(at, &invite.spec.token, inviter.as_deref(), event);
                Ok(done)
            }
            // Idempotent: resolving again the same way changes nothing.
            s if s == to => Ok(done),
            _ => Err(Rejection::AlreadyResolved),
        }
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

    fn sweep(&mut self, before: Millis, events_before: Millis) -> Outcome {
        self.audit.prune(events_before);
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
            lease_until: at + 100,
            node: "n1".into(),
            path: RedeemPath::Ibr,
        }
    }

    #[test]
    fn single_use_invite_admits_one_commit() {
        let mut l = Ledger::default();
        let s = spec(1, InviteKind::Account, Some(1), 1000);
        let t = s.token.clone();
        assert_eq!(l.run(Command::Create(s.clone())), Outcome::Created);
        assert_eq!(
            l.run(Command::Create(s)),
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
        // Released (username taken, say): the use is free again.
        assert_eq!(l.run(release("r1")), Outcome::Released);
        assert_eq!(l.run(release("r1")), Outcome::Released);
        assert_eq!(
            l.run(commit("r1")),
            Outcome::Rejected(Rejection::AlreadyResolved)
        );
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
            lease_until: 10,
            node: "n1".into(),
            path: RedeemPath::Presence,
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
        l.run(reserve(&t, "a", "a", 1)); // lease until 101
        l.run(reserve(&t, "b", "b", 500)); // lease until 600
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
        l.run(commit("a"));
        l.run(release("b"));
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
            rid.prop_map(|reservation| Command::Release {
                token: any_token(),
                reservation: reservation.into()
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
            let committed = inv
                .reservations
                .values()
                .filter(|r| r.state == ReservationState::Committed)
                .count() as u32;
            assert_eq!(committed, inv.uses);
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
