//! SCRAM credentials: per hash a salt, the iteration count, StoredKey and
//! ServerKey (RFC 5802 §3). The password itself is never stored.

use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::xmpp::sasl::{HashAlg, ScramKeys};

const SALT_LEN: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub sha1: ScramKeys,
    pub sha256: ScramKeys,
}

impl Credentials {
    /// Derives keys for both hashes with fresh random salts. Costs two PBKDF2
    /// runs: call it on the CPU pool.
    pub fn derive(password: &str, iterations: u32) -> Credentials {
        let mut rng = rand::rng();
        let mut salt1 = [0u8; SALT_LEN];
        let mut salt256 = [0u8; SALT_LEN];
        rng.fill_bytes(&mut salt1);
        rng.fill_bytes(&mut salt256);
        Credentials {
            sha1: ScramKeys::derive(HashAlg::Sha1, password, &salt1, iterations),
            sha256: ScramKeys::derive(HashAlg::Sha256, password, &salt256, iterations),
        }
    }

    pub fn keys(&self, alg: HashAlg) -> &ScramKeys {
        match alg {
            HashAlg::Sha1 => &self.sha1,
            HashAlg::Sha256 => &self.sha256,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derive_uses_distinct_salts_and_verifies() {
        let c = Credentials::derive("correct horse", 4096);
        assert_ne!(c.sha1.salt, c.sha256.salt);
        assert!(c.sha256.verify_password(HashAlg::Sha256, "correct horse"));
        assert!(c.sha1.verify_password(HashAlg::Sha1, "correct horse"));
        assert!(!c.sha1.verify_password(HashAlg::Sha1, "wrong"));
        let again = Credentials::derive("correct horse", 4096);
        assert_ne!(c, again);
    }
}
