//! Invite tokens: 128 bits from a CSPRNG, URL-safe base64 without padding.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore;
use serde::{Deserialize, Serialize};

const TOKEN_BYTES: usize = 16;

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    pub fn generate() -> Token {
        let mut raw = [0u8; TOKEN_BYTES];
        // ThreadRng: ChaCha12 seeded from the OS, a CSPRNG.
        rand::rng().fill_bytes(&mut raw);
        Token(URL_SAFE_NO_PAD.encode(raw))
    }

    /// Accepts what a client sends, if it can be a token at all (URL-safe, 16
    /// to 128 characters); whether it names an invite is the ledger's business.
    pub fn parse(s: &str) -> Option<Token> {
        let ok = (16..=128).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Token(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A short, non-secret handle for logs: the first four characters.
    pub fn redacted(&self) -> String {
        format!("{}…", &self.0[..4.min(self.0.len())])
    }
}

impl fmt::Debug for Token {
    // Tokens are bearer secrets: keep them out of logs and panics.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({})", self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_url_safe_and_distinct() {
        let a = Token::generate();
        let b = Token::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 22);
        assert_eq!(Token::parse(a.as_str()), Some(a.clone()));
        assert!(!format!("{a:?}").contains(a.as_str()));
    }

    #[test]
    fn parse_rejects_what_cannot_be_a_token() {
        assert!(Token::parse("").is_none());
        assert!(Token::parse("short").is_none());
        assert!(Token::parse("has space in it....").is_none());
        assert!(Token::parse("abc/def+ghi=jklmnop").is_none());
        assert!(Token::parse(&"a".repeat(129)).is_none());
        assert!(Token::parse("0123456789abcdef").is_some());
    }
}
