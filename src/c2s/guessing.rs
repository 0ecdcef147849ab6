//! Guessing passwords and invite tokens, slowed across the streams of a node:
//! failures are counted per address and per username (see `throttle`).

use std::net::IpAddr;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::config::Limits;
use crate::throttle::{address_bucket, FailureLimiter, DEFAULT_CAPACITY};
use crate::xmpp::jid::Username;

/// A username as the failure count knows it: the digest of its normalised
/// form (of the raw bytes when it does not normalise), so `ALICE` and `alice`
/// share a count, unknown names count like real ones, and a key is 32 bytes
/// whatever was sent.
pub type AccountKey = [u8; 32];

pub fn account_key(raw: &str) -> AccountKey {
    let normalised = Username::parse(raw).ok();
    let name = normalised.as_ref().map_or(raw, |u| u.as_str());
    Sha256::digest(name.as_bytes()).into()
}

/// The first late answer, doubled on every further failure up to `MAX_DELAY`.
const FIRST_DELAY: Duration = Duration::from_millis(500);
const MAX_DELAY: Duration = Duration::from_secs(8);

pub struct Guessing {
    sasl_by_address: FailureLimiter<IpAddr>,
    sasl_by_account: FailureLimiter<AccountKey>,
    preauth_by_address: FailureLimiter<IpAddr>,
}

impl Guessing {
    pub fn new(limits: &Limits) -> Self {
        let window = limits.auth_failure_window;
        Guessing {
            sasl_by_address: FailureLimiter::new(
                limits.auth_failures_per_address,
                window,
                DEFAULT_CAPACITY,
            ),
            sasl_by_account: FailureLimiter::new(
                limits.auth_failures_per_account,
                window,
                DEFAULT_CAPACITY,
            ),
            preauth_by_address: FailureLimiter::new(
                limits.preauth_failures_per_address,
                window,
                DEFAULT_CAPACITY,
            ),
        }
    }

    /// Whether SASL from this address is refused now (its failures are spent).
    pub fn sasl_blocked(&self, ip: IpAddr) -> bool {
        self.sasl_by_address.blocked(&address_bucket(ip)).is_some()
    }

    /// Counts a wrong password (or unknown user); returns how long to hold
    /// the failure back: zero until the username has had its share of
    /// failures in the window, then a delay that doubles per failure.
    pub fn sasl_failed(&self, ip: IpAddr, account: AccountKey) -> Duration {
        self.sasl_by_address.record(address_bucket(ip));
        let failures = self.sasl_by_account.record(account);
        delay_after(failures, self.sasl_by_account.limit())
    }

    pub fn preauth_blocked(&self, ip: IpAddr) -> bool {
        self.preauth_by_address
            .blocked(&address_bucket(ip))
            .is_some()
    }

    pub fn preauth_failed(&self, ip: IpAddr) {
        self.preauth_by_address.record(address_bucket(ip));
    }
}

/// The delay for the `failures`th failure when `limit` come without one.
fn delay_after(failures: u32, limit: u32) -> Duration {
    if limit == 0 || failures <= limit {
        return Duration::ZERO;
    }
    let doublings = (failures - limit - 1).min(16);
    FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_grows_past_the_limit_and_is_capped() {
        assert_eq!(delay_after(3, 3), Duration::ZERO);
        assert_eq!(delay_after(4, 3), FIRST_DELAY);
        assert_eq!(delay_after(5, 3), FIRST_DELAY * 2);
        assert_eq!(delay_after(1000, 3), MAX_DELAY);
        assert_eq!(delay_after(u32::MAX, 3), MAX_DELAY);
        assert_eq!(delay_after(100, 0), Duration::ZERO);
    }

    #[test]
    fn usernames_share_a_count_by_their_normalised_form() {
        assert_eq!(account_key("ALICE"), account_key("alice"));
        assert_ne!(account_key("alice"), account_key("bob"));
        // Names that do not normalise still get a key of their own.
        assert_ne!(account_key("a b"), account_key("a  b"));
    }

    #[test]
    fn addresses_and_accounts_are_counted_apart() {
        let limits = Limits {
            auth_failures_per_address: 2,
            auth_failures_per_account: 1,
            ..Limits::default()
        };
        let g = Guessing::new(&limits);
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        assert_eq!(g.sasl_failed(a, account_key("alice")), Duration::ZERO);
        assert!(!g.sasl_blocked(a));
        // The second failure on alice comes late, from any address.
        assert_eq!(g.sasl_failed(b, account_key("Alice")), FIRST_DELAY);
        assert!(!g.sasl_blocked(a));
        g.sasl_failed(a, account_key("carol"));
        assert!(g.sasl_blocked(a));
        assert!(!g.sasl_blocked(b));
        assert!(!g.preauth_blocked(a));
    }
}
