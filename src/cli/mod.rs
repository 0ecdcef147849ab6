//! Subcommands that talk to a running node through its admin API.

pub mod invite;
