//! SCRAM credentials: per hash a salt, the iteration count, StoredKey and
//! ServerKey (RFC 5802 §3). The password itself is never stored.

use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::xmpp::sasl::scram::SALT_LEN;
use crate::xmpp::sasl::{HashAlg, ScramKeys};

/// Keys for the hashes configured when the password was set (`scram_hashes`):
/// an account made with only SHA-1 cannot use SCRAM-SHA-256 until its password
/// is set again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha1: Option<ScramKeys>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<ScramKeys>,
}

impl Credentials {
    /// Derives keys for each hash with fresh random salts: one PBKDF2 run per
    /// hash, so call it on the CPU pool.
    pub fn derive(password: &str, iterations: u32, hashes: &[HashAlg]) -> Credentials {
        let mut rng = rand::rng();
        let mut derive = |alg| {
            hashes.contains(&alg).then(|| {
                let mut salt = [0u8; SALT_LEN];
                rng.fill_bytes(&mut salt);
                ScramKeys::derive(alg, password, &salt, iterations)
            })
        };
        Credentials {
            sha1: derive(HashAlg::Sha1),
            sha256: derive(HashAlg::Sha256),
        }
    }

    pub fn keys(&self, alg: HashAlg) -> Option<&ScramKeys> {
        match alg {
            HashAlg::Sha1 => self.sha1.as_ref(),
            HashAlg::Sha256 => self.sha256.as_ref(),
        }
    }

    /// The keys to check a plain password against: `preferred` if stored, else
    /// any.
    pub fn keys_for_plain(&self, preferred: HashAlg) -> Option<(HashAlg, &ScramKeys)> {
        [preferred, HashAlg::Sha256, HashAlg::Sha1]
            .into_iter()
            .find_map(|alg| self.keys(alg).map(|k| (alg, k)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derive_uses_distinct_salts_and_verifies() {
        let both = [HashAlg::Sha1, HashAlg::Sha256];
        let c = Credentials::derive("correct horse", 4096, &both);
        let (sha1, sha256) = (c.sha1.as_ref().unwrap(), c.sha256.as_ref().unwrap());
        assert_ne!(sha1.salt, sha256.salt);
        assert!(sha256.verify_password(HashAlg::Sha256, "correct horse"));
        assert!(sha1.verify_password(HashAlg::Sha1, "correct horse"));
        assert!(!sha1.verify_password(HashAlg::Sha1, "wrong"));
        let again = Credentials::derive("correct horse", 4096, &both);
        assert_ne!(c, again);
    }

    #[test]
    fn only_the_configured_hashes_are_derived_and_stored() {
        let c = Credentials::derive("pw", 4096, &[HashAlg::Sha1]);
        assert!(c.sha256.is_none() && c.keys(HashAlg::Sha256).is_none());
        assert_eq!(
            c.keys_for_plain(HashAlg::Sha256).map(|(alg, _)| alg),
            Some(HashAlg::Sha1)
        );
        // Stored records without a hash read back the same, and records of
        // both hashes written before the option existed still parse.
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("sha256"), "{json}");
        assert_eq!(serde_json::from_str::<Credentials>(&json).unwrap(), c);
    }
}
