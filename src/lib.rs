//! usher: invite-based XMPP account onboarding.
//!
//! Layers, lowest first; a module uses only modules of lower layers (checked
//! by `tests/layers.rs`, explained in README's "Architecture"):
//! 1. `xmpp` (the wire, pure), `clock`, `secrets`, `bearer`, `metrics`,
//!    `failpoint`, `blocking_pool`;
//! 2. `invites` (the model and the ledger state machine, pure), `config`;
//! 3. `accounts` (storage) and `ledger` (consensus), unaware of each other;
//! 4. `sessions` (who is bound where, delivery);
//! 5. `registration` (the invite saga, its janitor, limits), `issuing`
//!    (creating and reading invites);
//! 6. `peer` (the node-to-node transport and service);
//! 7. the doors: `c2s`, `web`, `admin`;
//! 8. `node` (wiring and lifecycle).

pub mod accounts;
pub mod admin;
pub mod bearer;
pub mod blocking_pool;
pub mod c2s;
pub mod capped_incoming;
pub mod clock;
pub mod config;
pub mod failpoint;
pub mod invites;
pub mod issuing;
pub mod ledger;
pub mod metrics;
pub mod node;
pub mod peer;
pub mod registration;
pub mod secrets;
pub mod sessions;
pub mod throttle;
pub mod tls_files;
pub mod web;
pub mod xmpp;
