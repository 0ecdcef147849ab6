//! Issuing invites: validating what a caller asks for, creating, listing and
//! revoking invites through the ledger, the minting limits of users, and the
//! history of invites and accounts. Transport-neutral: the gRPC admin API and
//! the ad-hoc commands on client streams give the same answers.

pub mod history;
mod invites;
pub mod limits;

#[cfg(test)]
pub(crate) use invites::test_issuer;
pub use invites::{InviteView, IssueError, Issuer, ListFilter, NewInvite};
