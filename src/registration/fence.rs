//! The fencing decisions of the saga, as pure functions of the account row
//! read (serially) from the store: what a registration may write, and what the
//! lease janitor writes before it may give a use back. The store then makes a
//! decision stick with a compare-and-set on the row's stamp, so a decision
//! taken on a row that changed meanwhile is not applied and is taken again.
//!
//! The fence is `AccountRow::fenced_until`, in ledger time: a reservation
//! made at or before it can no longer write the row. The janitor raises it to
//! the expired reservation's `reserved_at` before releasing; it never goes
//! down (a takeover or a tombstone keeps it), so however long a write is held
//! up, and whatever happens to the name meanwhile, it cannot land once the
//! janitor has decided against it.

use crate::accounts::{Account, AccountRow, Credentials, RowKind, Stamp};
use crate::invites::{Millis, ReservationId};

/// The reservation a write is made for, as the ledger recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub reservation: ReservationId,
    /// The ledger's stamp of the entry that made it.
    pub reserved_at: Millis,
}

impl Claim {
    fn fenced_by(&self, row: &AccountRow) -> bool {
        self.reserved_at <= row.fenced_until
    }
}

/// A write to make, conditioned on the row as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// The name has no row: insert unless one appeared.
    Insert(AccountRow),
    /// Replace the row if its stamp is still this.
    Replace {
        expected: Option<Stamp>,
        row: AccountRow,
    },
}

impl Write {
    pub fn row(&self) -> &AccountRow {
        match self {
            Write::Insert(row) | Write::Replace { row, .. } => row,
        }
    }
}

/// Why a registration writes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// An account holds the name.
    Taken,
    /// A removed account's name, until then (unix seconds).
    Quarantined(u64),
    /// The janitor fenced this reservation out: its lease was lost.
    LeaseLost,
    /// A reset for an account that is not there (or not the one it was
    /// issued against).
    NoAccount,
    /// This very reservation's write is there already (a retried write).
    AlreadyWritten,
}

/// What creating `account` (for `claim`, or open registration without one)
/// does to the name's row, read at `now` (unix seconds).
pub fn new_account(
    row: Option<&AccountRow>,
    account: Account,
    claim: Option<&Claim>,
    now: u64,
) -> Result<Write, Refusal> {
    let mut new = AccountRow::new_account(account);
    let Some(row) = row else {
        return Ok(Write::Insert(new));
    };
    match row.state {
        RowKind::Active => {
            let mine = claim.is_some_and(|c| row.reservation.as_ref() == Some(&c.reservation));
            return Err(if mine {
                Refusal::AlreadyWritten
            } else {
                Refusal::Taken
            });
        }
        RowKind::Deleted if row.quarantine_until > now => {
            return Err(Refusal::Quarantined(row.quarantine_until));
        }
        RowKind::Deleted | RowKind::Fenced => {}
    }
    if claim.is_some_and(|c| c.fenced_by(row)) {
        return Err(Refusal::LeaseLost);
    }
    new.fenced_until = row.fenced_until;
    Ok(Write::Replace {
        expected: row.stamp.clone(),
        row: new,
    })
}

/// What a reset to `credentials` for `claim` does to the account's row;
/// `generation` is the account the invite was issued against, if it says.
pub fn reset(
    row: Option<&AccountRow>,
    credentials: Credentials,
    claim: &Claim,
    generation: Option<&str>,
) -> Result<Write, Refusal> {
    let Some(row) = row.filter(|r| r.state == RowKind::Active) else {
        return Err(Refusal::NoAccount);
    };
    if generation.is_some() && row.generation.as_deref() != generation {
        return Err(Refusal::NoAccount);
    }
    if row.reservation.as_ref() == Some(&claim.reservation) {
        return Err(Refusal::AlreadyWritten);
    }
    if claim.fenced_by(row) {
        return Err(Refusal::LeaseLost);
    }
    let mut new = row.clone();
    new.credentials = Some(credentials);
    new.reservation = Some(claim.reservation.clone());
    Ok(Write::Replace {
        expected: row.stamp.clone(),
        row: new,
    })
}

/// What the janitor does about a reservation whose lease ran out.
#[allow(clippy::large_enum_variant)] // one short-lived value per expired lease
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    /// Its account is written: spend the use.
    Commit,
    /// It is fenced out already: give the use back.
    Release,
    /// Fence it out with this write first; once applied, release.
    Fence(Write),
}

/// The janitor's decision for an expired account-writing `claim` on
/// `username`, from the row as read.
pub fn settle(
    username: &crate::xmpp::jid::Username,
    row: Option<&AccountRow>,
    claim: &Claim,
) -> Settle {
    let Some(row) = row else {
        return Settle::Fence(Write::Insert(AccountRow::placeholder(
            username.clone(),
            claim.reserved_at,
        )));
    };
    if row.state == RowKind::Active && row.reservation.as_ref() == Some(&claim.reservation) {
        return Settle::Commit;
    }
    if claim.fenced_by(row) {
        return Settle::Release;
    }
    let mut fenced = row.clone();
    fenced.fenced_until = claim.reserved_at;
    Settle::Fence(Write::Replace {
        expected: row.stamp.clone(),
        row: fenced,
    })
}

/// How a registration whose commit was refused takes its own write back:
/// the row as it was before (a reset), or a placeholder (a new account),
/// fenced against the claim either way.
pub fn undo(
    before: Option<&AccountRow>,
    written: &AccountRow,
    stamp: &Stamp,
    claim: &Claim,
) -> Write {
    let mut row = match before {
        Some(b) if b.state == RowKind::Active => b.clone(),
        _ => AccountRow::placeholder(written.username.clone(), 0),
    };
    row.fenced_until = written.fenced_until.max(claim.reserved_at);
    Write::Replace {
        expected: Some(stamp.clone()),
        row,
    }
}

#[cfg(test)]
mod tests;
