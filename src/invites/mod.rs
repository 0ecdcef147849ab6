//! Invites: the model, their URIs, and the ledger state machine that decides
//! every use. Pure and deterministic: no I/O, no clock (time comes in commands),
//! so Raft replicas replaying the same log reach the same state.

pub mod audit;
pub mod ledger;
pub mod model;
pub mod token;
pub mod tree;
pub mod uri;

pub use audit::{EventFilter, EventKind, InviteEvent};
pub use ledger::{Command, Ledger, Outcome, Rejection};
pub use model::{Invite, InviteKind, InviteSpec, Millis, Purpose, RedeemPath, ReservationId};
pub use token::Token;
pub use tree::{MintLimits, Origin};
