//! The saga against the pure ledger and a model of the account store, in
//! random interleavings: registrations that reserve, read, write (maybe long
//! after their lease), commit or die at any step; the janitor settling
//! expired leases; extensions; removals of settled accounts. Whatever the
//! order, uses never exceed the invite's maximum, and once everything has
//! settled a use is committed exactly when its account was written (and not
//! taken back).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;
use crate::accounts::Account;
use crate::invites::{
    Command, InviteKind, InviteSpec, Ledger, Outcome, Purpose, RedeemPath, ReservationId, Token,
};
use crate::xmpp::jid::Username;

const MAX_USES: u32 = 2;
const LEASE: u64 = 100;

/// The account store's contract, in memory: insert-if-absent and
/// compare-and-set on a stamp.
#[derive(Default)]
struct Store {
    rows: BTreeMap<Username, AccountRow>,
    next: u64,
}

impl Store {
    fn read(&self, name: &Username) -> Option<AccountRow> {
        self.rows.get(name).cloned()
    }

    fn apply(&mut self, write: &Write) -> Option<Stamp> {
        let row = write.row();
        let current = self.rows.get(&row.username);
        let ok = match write {
            Write::Insert(_) => current.is_none(),
            Write::Replace { expected, .. } => current.is_some_and(|c| &c.stamp == expected),
        };
        if !ok {
            return None;
        }
        self.next += 1;
        let stamp = Stamp::from(format!("s{}", self.next));
        let mut row = row.clone();
        row.stamp = Some(stamp.clone());
        self.rows.insert(row.username.clone(), row);
        Some(stamp)
    }
}

#[derive(Debug, Clone)]
enum Phase {
    Start,
    Reserved(Claim),
    /// Read the row and decided; the write is still to be made.
    Decided(Claim, Option<AccountRow>, Result<Write, Refusal>),
    Written(Claim, Option<AccountRow>, AccountRow, Stamp),
    Done,
}

struct World {
    ledger: Ledger,
    store: Store,
    token: Token,
    now: u64,
    phases: Vec<Phase>,
    names: Vec<Username>,
    /// Reservations whose account write stands (applied, not taken back).
    landed: BTreeSet<ReservationId>,
}

#[derive(Debug, Clone)]
enum Step {
    /// Registration `i` takes its next step.
    Advance(usize),
    /// Registration `i` dies where it is.
    Die(usize),
    /// Registration `i` extends its lease.
    Extend(usize),
    /// The registration `i`'s commit is lost (sent, never applied).
    LoseCommit(usize),
    Janitor,
    /// The account of name `n` is removed, if its use is settled.
    Remove(usize),
    Tick(u64),
}

impl World {
    fn new(registrations: usize, names: usize) -> World {
        let token = Token::generate();
        let mut ledger = Ledger::default();
        let spec = InviteSpec {
            token: token.clone(),
            kind: InviteKind::Group,
            username: None,
            inviter: None,
            allow_registration: false,
            max_uses: Some(MAX_USES),
            roles: vec![],
            groups: vec![],
            created_at: 0,
            expires_at: u64::MAX,
            created_by: None,
            generation: None,
        };
        assert_eq!(ledger.apply(Command::Create(spec), 1), Outcome::Created);
        World {
            ledger,
            store: Store::default(),
            token,
            now: 1,
            phases: vec![Phase::Start; registrations],
            names: (0..names)
                .map(|n| Username::parse(&format!("u{n}")).unwrap())
                .collect(),
            landed: BTreeSet::new(),
        }
    }

    fn name(&self, i: usize) -> Username {
        self.names[i % self.names.len()].clone()
    }

    fn rid(i: usize) -> ReservationId {
        format!("r{i}").into()
    }

    fn run(&mut self, command: Command) -> Outcome {
        self.ledger.apply(command, self.now)
    }

    fn release(&mut self, claim: &Claim) {
        self.run(Command::Release {
            token: self.token.clone(),
            reservation: claim.reservation.clone(),
        });
    }

    fn advance(&mut self, i: usize) {
        let name = self.name(i);
        let phase = std::mem::replace(&mut self.phases[i], Phase::Done);
        self.phases[i] = match phase {
            Phase::Start => {
                let reserve = Command::Reserve {
                    token: self.token.clone(),
                    reservation: Self::rid(i),
                    username: name.clone(),
                    purpose: Purpose::Register,
                    validated_at: self.now,
                    lease: LEASE,
                    lease_until: None,
                    node: "n".into(),
                    path: RedeemPath::Ibr,
                    operator_bound: false,
                };
                match self.run(reserve) {
                    Outcome::Reserved(held) => Phase::Reserved(Claim {
                        reservation: Self::rid(i),
                        reserved_at: held.reserved_at,
                    }),
                    _ => Phase::Done,
                }
            }
            Phase::Reserved(claim) => {
                let before = self.store.read(&name);
                let account = Account {
                    username: name.clone(),
                    credentials: crate::accounts::Credentials::derive("pw", 1, &[]),
                    created_at: 0,
                    roles: vec![],
                    reservation: Some(claim.reservation.clone()),
                    generation: Some(format!("g{i}")),
                };
                let write = new_account(before.as_ref(), account, Some(&claim), 0);
                Phase::Decided(claim, before, write)
            }
            Phase::Decided(claim, before, write) => match write {
                Ok(write) => match self.store.apply(&write) {
                    Some(stamp) => {
                        self.landed.insert(claim.reservation.clone());
                        Phase::Written(claim, before, write.row().clone(), stamp)
                    }
                    None => Phase::Reserved(claim),
                },
                Err(Refusal::AlreadyWritten) => unreachable!("one write per reservation"),
                Err(_) => {
                    self.release(&claim);
                    Phase::Done
                }
            },
            Phase::Written(claim, before, row, stamp) => {
                let commit = Command::Commit {
                    token: self.token.clone(),
                    reservation: claim.reservation.clone(),
                };
                if let Outcome::Rejected(_) = self.run(commit) {
                    let undo = undo(before.as_ref(), &row, &stamp, &claim);
                    if self.store.apply(&undo).is_some() {
                        self.landed.remove(&claim.reservation);
                    }
                }
                Phase::Done
            }
            Phase::Done => Phase::Done,
        };
    }

    fn janitor(&mut self) {
        for (id, _, r) in self.ledger.expired_leases(self.now) {
            let claim = Claim {
                reservation: id.clone(),
                reserved_at: r.reserved_at,
            };
            let row = self.store.read(&r.username);
            let command = match settle(&r.username, row.as_ref(), &claim) {
                Settle::Commit => Command::Commit {
                    token: self.token.clone(),
                    reservation: id,
                },
                Settle::Release => Command::Release {
                    token: self.token.clone(),
                    reservation: id,
                },
                Settle::Fence(write) => {
                    if self.store.apply(&write).is_none() {
                        continue;
                    }
                    Command::Release {
                        token: self.token.clone(),
                        reservation: id,
                    }
                }
            };
            self.run(command);
        }
    }

    fn remove(&mut self, n: usize) {
        let name = self.names[n % self.names.len()].clone();
        let Some(row) = self
            .store
            .read(&name)
            .filter(|r| r.state == RowKind::Active)
        else {
            return;
        };
        // Only a settled account: one whose use the ledger has decided.
        let settled = row.reservation.as_ref().is_some_and(|r| {
            self.ledger.get(&self.token).is_some_and(|i| {
                i.reservations
                    .get(r)
                    .is_some_and(|r| r.state != crate::invites::model::ReservationState::Pending)
            })
        });
        if !settled {
            return;
        }
        let mut gone = row.clone();
        gone.state = RowKind::Deleted;
        gone.credentials = None;
        gone.reservation = None;
        let write = Write::Replace {
            expected: row.stamp.clone(),
            row: gone,
        };
        self.store.apply(&write);
    }

    fn step(&mut self, step: Step) {
        let n = self.phases.len();
        match step {
            Step::Advance(i) => self.advance(i % n),
            Step::Die(i) => self.phases[i % n] = Phase::Done,
            Step::Extend(i) => {
                if let Phase::Reserved(c) | Phase::Decided(c, ..) | Phase::Written(c, ..) =
                    &self.phases[i % n]
                {
                    let extend = Command::Extend {
                        token: self.token.clone(),
                        reservation: c.reservation.clone(),
                        lease: LEASE,
                    };
                    self.run(extend);
                }
            }
            Step::LoseCommit(i) => {
                if let Phase::Written(..) = self.phases[i % n] {
                    self.phases[i % n] = Phase::Done;
                }
            }
            Step::Janitor => self.janitor(),
            Step::Remove(k) => self.remove(k),
            Step::Tick(ms) => self.now += ms,
        }
        let invite = self.ledger.get(&self.token).unwrap();
        assert!(invite.uses + invite.pending() <= MAX_USES, "{invite:?}");
    }

    /// Everyone left stops; time passes beyond every lease; the janitor
    /// settles what is left.
    fn settle_all(&mut self) {
        for p in &mut self.phases {
            *p = Phase::Done;
        }
        for _ in 0..3 {
            self.now += 10 * LEASE;
            self.janitor();
        }
    }
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0usize..6).prop_map(Step::Advance),
        1 => (0usize..6).prop_map(Step::Die),
        1 => (0usize..6).prop_map(Step::Extend),
        1 => (0usize..6).prop_map(Step::LoseCommit),
        2 => Just(Step::Janitor),
        1 => (0usize..3).prop_map(Step::Remove),
        2 => (0u64..(2 * LEASE)).prop_map(Step::Tick),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn a_use_is_committed_exactly_when_its_account_stands(
        names in 1usize..4,
        steps in proptest::collection::vec(step(), 1..80),
    ) {
        let mut world = World::new(6, names);
        for s in steps {
            world.step(s);
        }
        world.settle_all();
        let invite = world.ledger.get(&world.token).unwrap();
        prop_assert_eq!(invite.pending(), 0);
        prop_assert!(invite.uses <= MAX_USES);
        let committed: BTreeSet<ReservationId> = invite
            .reservations
            .iter()
            .filter(|(_, r)| r.state == crate::invites::model::ReservationState::Committed)
            .map(|(id, _)| id.clone())
            .collect();
        prop_assert_eq!(committed.len() as u32, invite.uses);
        prop_assert_eq!(&committed, &world.landed, "committed uses vs. account writes that stand");
        // And every active account of an invite is one of them.
        for row in world.store.rows.values().filter(|r| r.state == RowKind::Active) {
            let r = row.reservation.as_ref().unwrap();
            prop_assert!(committed.contains(r), "an account without a committed use: {:?}", row);
        }
    }
}
