//! SASL (RFC 6120 §6) mechanisms, server side, without I/O: message parsing and
//! the cryptographic checks. Looking up credentials is the caller's job.

pub mod plain;
pub mod scram;

use base64::Engine as _;

use super::element::Element;
use super::ns;

pub use scram::{HashAlg, ScramKeys};

/// Mechanisms in the order they are offered (strongest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    ScramSha256,
    ScramSha1,
    Plain,
}

impl Mechanism {
    pub const ALL: [Mechanism; 3] = [
        Mechanism::ScramSha256,
        Mechanism::ScramSha1,
        Mechanism::Plain,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::Plain => "PLAIN",
        }
    }

    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// SASL failure conditions (RFC 6120 §6.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    #[error("aborted")]
    Aborted,
    #[error("encryption required")]
    EncryptionRequired,
    #[error("incorrect encoding")]
    IncorrectEncoding,
    #[error("invalid authzid")]
    InvalidAuthzid,
    #[error("invalid mechanism")]
    InvalidMechanism,
    #[error("malformed request")]
    MalformedRequest,
    #[error("not authorized")]
    NotAuthorized,
    #[error("temporary auth failure")]
    TemporaryAuthFailure,
}

impl SaslError {
    pub fn condition(self) -> &'static str {
        match self {
            SaslError::Aborted => "aborted",
            SaslError::EncryptionRequired => "encryption-required",
            SaslError::IncorrectEncoding => "incorrect-encoding",
            SaslError::InvalidAuthzid => "invalid-authzid",
            SaslError::InvalidMechanism => "invalid-mechanism",
            SaslError::MalformedRequest => "malformed-request",
            SaslError::NotAuthorized => "not-authorized",
            SaslError::TemporaryAuthFailure => "temporary-auth-failure",
        }
    }

    pub fn to_element(self) -> Element {
        Element::new("failure", ns::SASL).with_child(Element::new(self.condition(), ns::SASL))
    }
}

/// Decodes the base64 payload of `<auth>`/`<response>`; `=` is an empty payload.
pub fn decode_payload(text: &str) -> Result<Vec<u8>, SaslError> {
    let text = text.trim();
    if text.is_empty() || text == "=" {
        return Ok(Vec::new());
    }
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| SaslError::IncorrectEncoding)
}

/// Encodes a challenge or success payload (`=` for an empty one).
pub fn encode_payload(data: &[u8]) -> String {
    if data.is_empty() {
        return "=".to_owned();
    }
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads() {
        assert_eq!(decode_payload("=").unwrap(), b"");
        assert_eq!(decode_payload(" AGEAYg== ").unwrap(), b"\0a\0b");
        assert_eq!(decode_payload("***"), Err(SaslError::IncorrectEncoding));
        assert_eq!(encode_payload(b""), "=");
        assert_eq!(
            Mechanism::from_name("SCRAM-SHA-1"),
            Some(Mechanism::ScramSha1)
        );
        assert_eq!(Mechanism::from_name("DIGEST-MD5"), None);
    }
}
