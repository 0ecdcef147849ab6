//! JIDs (RFC 7622) as far as the server needs them: usernames are enforced with
//! PRECIS UsernameCaseMapped, domains are compared in lower case.

use std::fmt;

use precis_core::profile::Profile;
use precis_profiles::{OpaqueString, UsernameCaseMapped};

/// Longest localpart or resourcepart, in bytes (RFC 7622 §3.3, §3.4).
const MAX_PART_BYTES: usize = 1023;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JidError {
    #[error("the username is empty")]
    Empty,
    #[error("the username is longer than 1023 bytes")]
    TooLong,
    #[error("the username contains characters a JID forbids")]
    ForbiddenCharacter,
    #[error("the username is not a valid PRECIS username")]
    Precis,
    #[error("the resource is not valid")]
    Resource,
}

/// A normalised, valid localpart. Construction is the only way in, so holding a
/// `Username` proves it was enforced.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Username(String);

impl Username {
    pub fn parse(input: &str) -> Result<Username, JidError> {
        if input.is_empty() {
            return Err(JidError::Empty);
        }
        if input.len() > MAX_PART_BYTES * 4 {
            return Err(JidError::TooLong);
        }
        let enforced = UsernameCaseMapped::new()
            .enforce(input)
            .map_err(|_| JidError::Precis)?
            .into_owned();
        if enforced.is_empty() {
            return Err(JidError::Empty);
        }
        if enforced.len() > MAX_PART_BYTES {
            return Err(JidError::TooLong);
        }
        // RFC 7622 §3.3.1: these are allowed by PRECIS but not in a localpart.
        if enforced
            .chars()
            .any(|c| matches!(c, '"' | '&' | '\'' | '/' | ':' | '<' | '>' | '@'))
        {
            return Err(JidError::ForbiddenCharacter);
        }
        Ok(Username(enforced))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Prepares a password with the PRECIS OpaqueString profile (RFC 8265 §4.2), as
/// both registration and SASL PLAIN must, so that SCRAM keys match.
pub fn prepare_password(input: &str) -> Option<String> {
    OpaqueString::new()
        .enforce(input)
        .ok()
        .map(|s| s.into_owned())
}

/// Checks a client-chosen resourcepart: non-empty, bounded, no control characters.
/// (Full OpaqueString enforcement, less the width mapping the RFC leaves optional.)
pub fn prepare_resource(input: &str) -> Result<String, JidError> {
    let enforced = OpaqueString::new()
        .enforce(input)
        .map_err(|_| JidError::Resource)?;
    if enforced.is_empty() || enforced.len() > MAX_PART_BYTES {
        return Err(JidError::Resource);
    }
    Ok(enforced.into_owned())
}

/// Normalises a domain for comparison with ours (ASCII case folding, no trailing dot).
pub fn normalize_domain(input: &str) -> String {
    input.trim_end_matches('.').to_ascii_lowercase()
}

/// The parts of a JID string, unvalidated: enough to route an IQ to "the server"
/// or "this account".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JidParts<'a> {
    pub local: Option<&'a str>,
    pub domain: &'a str,
    pub resource: Option<&'a str>,
}

pub fn split_jid(jid: &str) -> JidParts<'_> {
    let (bare, resource) = match jid.split_once('/') {
        Some((b, r)) => (b, Some(r)),
        None => (jid, None),
    };
    let (local, domain) = match bare.split_once('@') {
        Some((l, d)) => (Some(l), d),
        None => (None, bare),
    };
    JidParts {
        local,
        domain,
        resource,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_case_mapped_and_checked() {
        assert_eq!(Username::parse("Alice").unwrap().as_str(), "alice");
        assert_eq!(
            Username::parse("J\u{00DC}rgen").unwrap().as_str(),
            "j\u{00fc}rgen"
        );
        assert_eq!(Username::parse(""), Err(JidError::Empty));
        assert_eq!(Username::parse("a b"), Err(JidError::Precis));
        assert_eq!(Username::parse("a@b"), Err(JidError::ForbiddenCharacter));
        assert_eq!(Username::parse("a/b"), Err(JidError::ForbiddenCharacter));
        assert_eq!(Username::parse("a:b"), Err(JidError::ForbiddenCharacter));
        assert_eq!(Username::parse("a\u{0007}"), Err(JidError::Precis));
        assert_eq!(Username::parse(&"x".repeat(1024)), Err(JidError::TooLong));
        assert!(Username::parse(&"x".repeat(1023)).is_ok());
    }

    #[test]
    fn passwords_and_resources() {
        assert_eq!(
            prepare_password("s3cr3t pass").as_deref(),
            Some("s3cr3t pass")
        );
        assert_eq!(prepare_password(""), None);
        assert_eq!(prepare_password("a\u{0000}b"), None);
        assert_eq!(prepare_resource("laptop").unwrap(), "laptop");
        assert!(prepare_resource("").is_err());
    }

    #[test]
    fn splits_jids() {
        let p = split_jid("a@b/c/d");
        assert_eq!(
            (p.local, p.domain, p.resource),
            (Some("a"), "b", Some("c/d"))
        );
        assert_eq!(split_jid("b").local, None);
        assert_eq!(normalize_domain("LocalHost."), "localhost");
    }
}
