//! usher: invite-based XMPP account onboarding.
//!
//! See DESIGN.md for how the folders fit together: `xmpp` and `invites` are pure;
//! `c2s` drives client connections and `web` the HTTP pages; both register
//! people through `registration`; `accounts` stores users.

pub mod accounts;
pub mod admin;
pub mod blocking_pool;
pub mod c2s;
pub mod config;
pub mod failpoint;
pub mod invites;
pub mod ledger;
pub mod metrics;
pub mod node;
pub mod peer;
pub mod registration;
pub mod secrets;
pub mod web;
pub mod xmpp;
