//! What an invite is, and the state the ledger keeps for it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::token::Token;
use crate::xmpp::jid::Username;

/// Milliseconds since the Unix epoch, as stamped by the proposer of a command.
pub type Millis = u64;

/// Chosen by the node that starts a registration; names one use in the making.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReservationId(String);

impl ReservationId {
    /// A fresh id from the CSPRNG.
    pub fn generate() -> ReservationId {
        ReservationId(crate::secrets::random_id(16))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for ReservationId {
    fn from(s: &str) -> ReservationId {
        ReservationId(s.to_owned())
    }
}

impl From<String> for ReservationId {
    fn from(s: String) -> ReservationId {
        ReservationId(s)
    }
}

impl std::ops::Deref for ReservationId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ReservationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InviteKind {
    /// Creates one account: any username, or the one in `username`.
    Account,
    /// Sets a new password on the existing account `username`.
    Reset,
    /// Adds `inviter` as a contact; may also create an account.
    Contact,
    /// Reusable account invite: `max_uses` accounts (or unlimited until expiry),
    /// each joining `groups`.
    Group,
}

impl InviteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InviteKind::Account => "account",
            InviteKind::Reset => "reset",
            InviteKind::Contact => "contact",
            InviteKind::Group => "group",
        }
    }
}

/// What an invite may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// In-band registration (or a password reset) with the invite.
    Register,
    /// An existing user subscribing to the inviter (XEP-0379).
    Subscribe,
}

/// Through which door a use was redeemed (for the audit trail).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedeemPath {
    /// In-band registration (XEP-0077 with XEP-0445/0401).
    #[default]
    Ibr,
    /// The web registration form.
    Web,
    /// A subscription with a preauth token (XEP-0379).
    Presence,
}

impl RedeemPath {
    pub fn as_str(self) -> &'static str {
        match self {
            RedeemPath::Ibr => "ibr",
            RedeemPath::Web => "web",
            RedeemPath::Presence => "presence",
        }
    }
}

/// The immutable part of an invite, fixed at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteSpec {
    pub token: Token,
    pub kind: InviteKind,
    /// Account: the only username it may create. Reset: the account it resets.
    pub username: Option<Username>,
    /// Contact invites: the user who invites.
    pub inviter: Option<Username>,
    /// Contact invites: whether the invitee may also register an account.
    pub allow_registration: bool,
    /// `None`: unlimited until expiry (group invites only).
    pub max_uses: Option<u32>,
    /// Given to the account the invite creates.
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    pub created_at: Millis,
    pub expires_at: Millis,
    /// Who made it (an admin JID, a user, or the admin API).
    pub created_by: Option<String>,
    /// Reset: the incarnation (generation) of the account it was issued
    /// against, so it cannot reset whoever holds the name later. Opaque here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<String>,
}

impl InviteSpec {
    /// Whether it creates (or, for a reset, re-keys) an account at all: every
    /// kind but a contact invite that only adds a contact.
    pub fn registers(&self) -> bool {
        self.kind != InviteKind::Contact || self.allow_registration
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationState {
    Pending,
    Committed,
    Released,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub username: Username,
    pub purpose: Purpose,
    pub lease_until: Millis,
    pub state: ReservationState,
    #[serde(default)]
    pub node: String,
    #[serde(default)]
    pub path: RedeemPath,
    /// The stamp of the entry that made it: the saga's fence compares it
    /// (see `registration::fence`), and its lease is counted from it.
    #[serde(default)]
    pub reserved_at: Millis,
    /// When it was committed (committed ones are pruned after the audit
    /// retention; released ones are dropped at once).
    #[serde(default)]
    pub resolved_at: Millis,
    /// The audit event that tells of it, while it is in the trail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<u64>,
}

/// An invite as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    pub spec: InviteSpec,
    /// Committed uses.
    pub uses: u32,
    pub revoked: bool,
    /// The local user who minted it (quota and tree limits applied), or
    /// `None` for an operator's invite.
    #[serde(default)]
    pub minted_by: Option<Username>,
    /// Root of the invite tree it belongs to (its own token for a root).
    #[serde(default)]
    pub tree: Option<Token>,
    /// Pending and committed reservations. A released one is dropped at once
    /// (it holds nothing); a committed one stays, so a retried commit gets the
    /// same answer, until the audit retention.
    pub reservations: BTreeMap<ReservationId, Reservation>,
    /// Reservations given back so far.
    #[serde(default)]
    pub released: u64,
    /// Of those, how many the audit trail tells (at most
    /// `ledger::AUDITED_RELEASES`, so failed attempts cannot grow it).
    #[serde(default)]
    pub audited_releases: u32,
}

/// Where an invite stands at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InviteStatus {
    Active,
    Expired,
    Revoked,
    UsedUp,
}

impl Invite {
    pub fn new(spec: InviteSpec) -> Invite {
        Invite {
            spec,
            uses: 0,
            revoked: false,
            minted_by: None,
            tree: None,
            reservations: BTreeMap::new(),
            released: 0,
            audited_releases: 0,
        }
    }

    pub fn pending(&self) -> u32 {
        let n = self
            .reservations
            .values()
            .filter(|r| r.state == ReservationState::Pending)
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Whether another reservation fits next to the committed and pending ones.
    pub fn has_room(&self) -> bool {
        match self.spec.max_uses {
            None => true,
            Some(max) => self.uses.saturating_add(self.pending()) < max,
        }
    }

    pub fn status(&self, now: Millis) -> InviteStatus {
        if self.revoked {
            InviteStatus::Revoked
        } else if self.spec.max_uses.is_some_and(|max| self.uses >= max) {
            InviteStatus::UsedUp
        } else if now >= self.spec.expires_at {
            InviteStatus::Expired
        } else {
            InviteStatus::Active
        }
    }

    /// Remaining uses, counting pending reservations as taken.
    pub fn remaining(&self) -> Option<u32> {
        self.spec
            .max_uses
            .map(|max| max.saturating_sub(self.uses.saturating_add(self.pending())))
    }
}
