//! Commands for the tests of the ledger and of what carries its commands.

use crate::clock::now_millis;
use crate::invites::{Command, InviteKind, InviteSpec, Purpose, RedeemPath, Token};
use crate::xmpp::jid::Username;

/// A group invite with `max_uses` uses and a fresh token, valid for a minute.
pub fn spec(max_uses: u32) -> InviteSpec {
    InviteSpec {
        token: Token::generate(),
        kind: InviteKind::Group,
        username: None,
        inviter: None,
        allow_registration: false,
        max_uses: Some(max_uses),
        roles: vec![],
        groups: vec!["g".into()],
        created_at: now_millis(),
        expires_at: now_millis() + 60_000,
        created_by: None,
        generation: None,
    }
}

/// Reservation `res-N` of `token` for user `userN`.
pub fn reserve(token: &Token, n: usize) -> Command {
    Command::Reserve {
        token: token.clone(),
        reservation: format!("res-{n}").into(),
        username: Username::parse(&format!("user{n}")).expect("userN is a valid name"),
        purpose: Purpose::Register,
        validated_at: now_millis(),
        lease: 60_000,
        lease_until: None,
        operator_bound: false,
        node: "test".into(),
        path: RedeemPath::Ibr,
    }
}
