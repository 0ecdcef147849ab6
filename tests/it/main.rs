//! The end-to-end suite: the real `usher` binary started per test and driven
//! over its sockets, its admin CLI and its HTTP listener. One test binary
//! (one link of the library) with a module per area; every area starts its
//! nodes through `fixture`, whose defaults are production's.
//!
//! `cargo test --test it` runs it on the embedded store; `cargo test --test it
//! -- cql::` runs one area. With TEST_CQL_NODE (host:port) set, nodes keep
//! their accounts in that CQL database, and `--include-ignored` adds the tests
//! that need one (the `cql` and `cluster` areas); scripts/test-all does both.

mod fixture;

mod abuse;
mod accounts;
mod adhoc;
mod admin_tls;
mod cluster;
mod cql;
mod hostile;
mod http;
mod invites;
mod layers;
mod netfaults;
mod rosters;
mod stream;
