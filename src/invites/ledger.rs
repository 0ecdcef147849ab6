//! The invite ledger as a deterministic state machine. Every change is a
//! `Command` carrying the time its proposer stamped on it; `apply` never reads a
//! clock, so every replica that applies the same log ends in the same state.
//!
//! Redemption is a two-step saga: `Reserve` takes a use while the account is
//! being written, then `Commit` spends it or `Release` gives it back. A
//! reservation succeeds only while committed plus pending uses stay below the
//! invite's maximum, so no interleaving spends an invite more often than it allows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::model::{
    Invite, InviteKind, InviteSpec, InviteStatus, Millis, Purpose, Reservation, ReservationId,
    ReservationState,
};
use super::token::Token;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Create(InviteSpec),
    Reserve {
        token: Token,
        reservation: ReservationId,
        username: String,
        purpose: Purpose,
        /// When the stream validated the invite (XEP-0445: expiry is checked then).
        validated_at: Millis,
        lease_until: Millis,
    },
    Commit {
        reservation: ReservationId,
    },
    Release {
        reservation: ReservationId,
    },
    Revoke {
        token: Token,
    },
    /// Forgets invites that expired before `before` and have nothing pending.
    Sweep {
        before: Millis,
    },
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
}

impl Ledger {
    pub fn apply(&mut self, command: Command) -> Outcome {
        let result = match command {
            Command::Create(spec) => self.create(spec),
            Command::Reserve {
                token,
                reservation,
                username,
                purpose,
                validated_at,
                lease_until,
            } => self.reserve(
                token,
                reservation,
                username,
                purpose,
                validated_at,
                lease_until,
            ),
            Command::Commit { reservation } => {
                self.resolve(&reservation, ReservationState::Committed)
            }
            Command::Release { reservation } => {
                self.resolve(&reservation, ReservationState::Released)
            }
            Command::Revoke { token } => self.revoke(&token),
            Command::Sweep { before } => Ok(self.sweep(before)),
        };
        result.unwrap_or_else(Outcome::Rejected)
    }

    pub fn get(&self, token: &Token) -> Option<&Invite> {
        self.invites.get(token)
    }

    pub fn invites(&self) -> impl Iterator<Item = &Invite> {
        self.invites.values()
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

    fn create(&mut self, spec: InviteSpec) -> Result<Outcome, Rejection> {
        if self.invites.contains_key(&spec.token) {
            return Err(Rejection::Exists);
        }
        self.invites.insert(spec.token.clone(), Invite::new(spec));
        Ok(Outcome::Created)
    }

    fn reserve(
        &mut self,
        token: Token,
        id: ReservationId,
        username: String,
        purpose: Purpose,
        validated_at: Millis,
        lease_until: Millis,
    ) -> Result<Outcome, Rejection> {
        let invite = self
            .invites
            .get_mut(&token)
            .ok_or(Rejection::UnknownToken)?;
        if let Some(existing) = self.reservations.get(&id) {
            // A retried proposal: same answer as the first time.
            let held = invite.reservations.get(&id);
            return match held {
                Some(r) if *existing == token && r.username == username => {
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
        check_use(&invite.spec, &username, purpose)?;
        if !invite.has_room() {
            return Err(Rejection::UsedUp);
        }
        invite.reservations.insert(
            id.clone(),
            Reservation {
                username,
                purpose,
                lease_until,
                state: ReservationState::Pending,
            },
        );
        self.reservations.insert(id, token);
        Ok(Outcome::Reserved(invite.spec.clone()))
    }

    fn resolve(&mut self, id: &ReservationId, to: ReservationState) -> Result<Outcome, Rejection> {
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
                if to == ReservationState::Committed {
                    invite.uses += 1;
                }
                Ok(done)
            }
            // Idempotent: resolving again the same way changes nothing.
            s if s == to => Ok(done),
            _ => Err(Rejection::AlreadyResolved),
        }
    }

    fn revoke(&mut self, token: &Token) -> Result<Outcome, Rejection> {
        let invite = self.invites.get_mut(token).ok_or(Rejection::UnknownToken)?;
        invite.revoked = true;
        Ok(Outcome::Revoked)
    }

    fn sweep(&mut self, before: Millis) -> Outcome {
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
            }
        }
        Outcome::Swept(u32::try_from(gone.len()).unwrap_or(u32::MAX))
    }
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

    fn spec(n: u8, kind: InviteKind, max_uses: Option<u32>, expires_at: Millis) -> InviteSpec {
        InviteSpec {
            token: Token::parse(&format!("token-{n:0>10}-xxxxx")).unwrap(),
            kind,
            username: None,
            inviter: (kind == InviteKind::Contact).then(|| "alice".to_owned()),
            allow_registration: true,
            max_uses,
            roles: vec![],
            groups: vec![],
            created_at: 0,
            expires_at,
            created_by: None,
        }
    }

    fn commit(id: &str) -> Command {
        Command::Commit {
            reservation: id.into(),
        }
    }

    fn release(id: &str) -> Command {
        Command::Release {
            reservation: id.into(),
        }
    }

    fn reserve(token: &Token, id: &str, user: &str, at: Millis) -> Command {
        Command::Reserve {
            token: token.clone(),
            reservation: id.to_owned(),
            username: user.to_owned(),
            purpose: Purpose::Register,
            validated_at: at,
            lease_until: at + 100,
        }
    }

    #[test]
    fn single_use_invite_admits_one_commit() {
        let mut l = Ledger::default();
        let s = spec(1, InviteKind::Account, Some(1), 1000);
        let t = s.token.clone();
        assert_eq!(l.apply(Command::Create(s.clone())), Outcome::Created);
        assert_eq!(
            l.apply(Command::Create(s)),
            Outcome::Rejected(Rejection::Exists)
        );
        assert!(matches!(
            l.apply(reserve(&t, "r1", "a", 10)),
            Outcome::Reserved(_)
        ));
        // The pending reservation holds the only use.
        assert_eq!(
            l.apply(reserve(&t, "r2", "b", 10)),
            Outcome::Rejected(Rejection::UsedUp)
        );
        // Released (username taken, say): the use is free again.
        assert_eq!(l.apply(release("r1")), Outcome::Released);
        assert_eq!(l.apply(release("r1")), Outcome::Released);
        assert_eq!(
            l.apply(commit("r1")),
            Outcome::Rejected(Rejection::AlreadyResolved)
        );
        assert!(matches!(
            l.apply(reserve(&t, "r2", "b", 10)),
            Outcome::Reserved(_)
        ));
        assert_eq!(l.apply(commit("r2")), Outcome::Committed);
        assert_eq!(l.apply(commit("r2")), Outcome::Committed);
        assert_eq!(l.get(&t).unwrap().uses, 1);
        assert_eq!(l.validate(&t, 10).unwrap_err(), Rejection::UsedUp);
    }

    #[test]
    fn expiry_revocation_and_binding() {
        let mut l = Ledger::default();
        let mut bound = spec(2, InviteKind::Account, Some(1), 1000);
        bound.username = Some("bob".into());
        let t = bound.token.clone();
        l.apply(Command::Create(bound));
        assert_eq!(
            l.apply(reserve(&t, "x", "eve", 10)),
            Outcome::Rejected(Rejection::WrongUsername)
        );
        // Validated before expiry: still good after it (XEP-0445).
        assert!(matches!(
            l.apply(reserve(&t, "y", "bob", 999)),
            Outcome::Reserved(_)
        ));
        assert_eq!(l.validate(&t, 1000).unwrap_err(), Rejection::Expired);

        let g = spec(3, InviteKind::Group, None, 1000);
        let tg = g.token.clone();
        l.apply(Command::Create(g));
        assert_eq!(
            l.apply(reserve(&tg, "z", "c", 1000)),
            Outcome::Rejected(Rejection::Expired)
        );
        assert_eq!(
            l.apply(Command::Revoke { token: tg.clone() }),
            Outcome::Revoked
        );
        assert_eq!(
            l.apply(reserve(&tg, "z", "c", 1)),
            Outcome::Rejected(Rejection::Revoked)
        );
        assert_eq!(l.validate(&tg, 1).unwrap_err(), Rejection::Revoked);

        let mut c = spec(4, InviteKind::Contact, Some(1), 1000);
        c.allow_registration = false;
        let tc = c.token.clone();
        l.apply(Command::Create(c));
        assert_eq!(
            l.apply(reserve(&tc, "c1", "dan", 1)),
            Outcome::Rejected(Rejection::NotAllowed)
        );
        let sub = |user: &str| Command::Reserve {
            token: tc.clone(),
            reservation: format!("s-{user}"),
            username: user.to_owned(),
            purpose: Purpose::Subscribe,
            validated_at: 1,
            lease_until: 10,
        };
        // The inviter cannot use their own contact invite.
        assert_eq!(
            l.apply(sub("alice")),
            Outcome::Rejected(Rejection::NotAllowed)
        );
        assert!(matches!(l.apply(sub("dan")), Outcome::Reserved(_)));
    }

    #[test]
    fn leases_and_sweeping() {
        let mut l = Ledger::default();
        let s = spec(5, InviteKind::Group, Some(3), 1000);
        let t = s.token.clone();
        l.apply(Command::Create(s));
        l.apply(reserve(&t, "a", "a", 1)); // lease until 101
        l.apply(reserve(&t, "b", "b", 500)); // lease until 600
        let expired: Vec<_> = l
            .expired_leases(200)
            .into_iter()
            .map(|(id, _, _)| id)
            .collect();
        assert_eq!(expired, ["a"]);
        // Pending reservations keep an expired invite from being forgotten.
        assert_eq!(l.apply(Command::Sweep { before: 5000 }), Outcome::Swept(0));
        l.apply(commit("a"));
        l.apply(release("b"));
        assert_eq!(l.apply(Command::Sweep { before: 500 }), Outcome::Swept(0));
        assert_eq!(l.apply(Command::Sweep { before: 5000 }), Outcome::Swept(1));
        assert!(l.get(&t).is_none());
        assert_eq!(
            l.apply(commit("a")),
            Outcome::Rejected(Rejection::UnknownReservation)
        );
    }

    fn arb_command() -> impl Strategy<Value = Command> {
        let token = (0u8..3).prop_map(|n| Token::parse(&format!("token-{n:0>10}-xxxxx")).unwrap());
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
            rid.clone()
                .prop_map(|reservation| Command::Commit { reservation }),
            rid.prop_map(|reservation| Command::Release { reservation }),
            token.prop_map(|token| Command::Revoke { token }),
            (0u64..3000).prop_map(|before| Command::Sweep { before }),
        ]
    }

    /// Uses and reservations add up, and never exceed the maximum.
    fn check_invariants(l: &Ledger) {
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
                l.apply(c);
                check_invariants(&l);
            }
        }

        #[test]
        fn replaying_the_log_gives_the_same_state(cmds in prop::collection::vec(arb_command(), 0..60)) {
            let mut a = Ledger::default();
            let outcomes: Vec<Outcome> = cmds.iter().cloned().map(|c| a.apply(c)).collect();
            let mut b = Ledger::default();
            let replayed: Vec<Outcome> = cmds.into_iter().map(|c| b.apply(c)).collect();
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
            for c in cmds { l.apply(c); }
            let c = if commit { Command::Commit { reservation: id.clone() } } else { Command::Release { reservation: id } };
            let first = l.apply(c.clone());
            let after_first = l.clone();
            let second = l.apply(c);
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
            for c in cmds { l.apply(c); }
            let t = Token::parse(&format!("token-{n:0>10}-xxxxx")).unwrap();
            let before = l.get(&t).cloned();
            let out = l.apply(reserve(&t, "fresh", "someone", at));
            if let Some(inv) = before {
                if inv.revoked || at >= inv.spec.expires_at {
                    prop_assert!(matches!(out, Outcome::Rejected(_)), "{:?}", out);
                }
            }
        }
    }
}
