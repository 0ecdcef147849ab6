//! A deliberately small XMPP client: enough to drive usher through STARTTLS,
//! registration, SASL and binding, with exact control of the bytes sent. The
//! load harness and the integration tests share it.

pub mod client;

pub use client::{Client, ClientError, Trust};
