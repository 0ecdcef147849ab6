//! Which shard holds a token: a stable hash of the token modulo the shard
//! count. Stable across versions and platforms (SHA-256, not the std hasher),
//! since it decides where an invite lives on disk.

use sha2::{Digest, Sha256};

use crate::invites::Token;

pub fn shard_of(token: &Token, shards: u32) -> u32 {
    shard_of_name(token.as_str(), shards)
}

/// The shard of any name (a token, or a username without an invite tree).
pub fn shard_of_name(name: &str, shards: u32) -> u32 {
    let digest = Sha256::digest(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % u64::from(shards.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_stable_and_spread() {
        let t = Token::parse("token-0000000001-xxxxx").unwrap();
        assert_eq!(shard_of(&t, 8), shard_of(&t, 8));
        assert_eq!(shard_of(&t, 1), 0);
        let mut counts = [0u32; 8];
        for _ in 0..8000 {
            counts[shard_of(&Token::generate(), 8) as usize] += 1;
        }
        // Each shard gets its share, give or take.
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }
}
