//! JIDs (RFC 7622): localparts enforced with PRECIS UsernameCaseMapped,
//! resourceparts with OpaqueString, domains compared in lower case. Each part
//! is a type whose only way in is its parser, so holding one proves it was
//! checked; `BareJid`, `FullJid` and `Jid` put them together, and `Display`
//! writes the canonical string.

use std::fmt;
use std::str::FromStr;

use precis_core::profile::Profile;
use precis_profiles::{OpaqueString, UsernameCaseMapped};
use serde::{Deserialize, Serialize};

/// Longest localpart, domainpart or resourcepart, in bytes (RFC 7622 §3).
pub const MAX_PART_BYTES: usize = 1023;

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
    #[error("the domain is not valid")]
    Domain,
}

/// A normalised, valid localpart (the name of an account here).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username(String);

/// RFC 7622 §3.3.1: allowed by PRECIS but not in a localpart.
fn forbidden_in_localpart(c: char) -> bool {
    matches!(c, '"' | '&' | '\'' | '/' | ':' | '<' | '>' | '@')
}

impl Username {
    pub fn parse(input: &str) -> Result<Username, JidError> {
        if input.is_empty() {
            return Err(JidError::Empty);
        }
        if input.len() > MAX_PART_BYTES * 4 {
            return Err(JidError::TooLong);
        }
        // Printable ASCII without capitals is its own UsernameCaseMapped form:
        // most names take this path and skip the PRECIS tables.
        let enforced = if input
            .bytes()
            .all(|b| (0x21..0x7f).contains(&b) && !b.is_ascii_uppercase())
        {
            input.to_owned()
        } else {
            UsernameCaseMapped::new()
                .enforce(input)
                .map_err(|_| JidError::Precis)?
                .into_owned()
        };
        if enforced.is_empty() {
            return Err(JidError::Empty);
        }
        if enforced.len() > MAX_PART_BYTES {
            return Err(JidError::TooLong);
        }
        if enforced.chars().any(forbidden_in_localpart) {
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

/// A checked name reads as the string it is (and looks up like one).
impl std::ops::Deref for Username {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Username {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Username {
    type Error = JidError;
    fn try_from(s: String) -> Result<Username, JidError> {
        Username::parse(&s)
    }
}

impl From<Username> for String {
    fn from(u: Username) -> String {
        u.0
    }
}

/// A domainpart in canonical form: lower case, no trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Domain(String);

impl Domain {
    /// The domain of a node started with no configuration.
    pub fn localhost() -> Domain {
        Domain("localhost".into())
    }

    pub fn parse(input: &str) -> Result<Domain, JidError> {
        let d = normalize_domain(input);
        let bad = d.is_empty()
            || d.len() > MAX_PART_BYTES
            || d.chars().any(|c| {
                c.is_whitespace()
                    || c.is_control()
                    || matches!(c, '@' | '/' | '<' | '>' | '\'' | '"' | '&')
            });
        if bad {
            return Err(JidError::Domain);
        }
        Ok(Domain(d))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Domain {
    type Error = JidError;
    fn try_from(s: String) -> Result<Domain, JidError> {
        Domain::parse(&s)
    }
}

impl From<Domain> for String {
    fn from(d: Domain) -> String {
        d.0
    }
}

impl PartialEq<str> for Domain {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A resourcepart (OpaqueString, RFC 7622 §3.4).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Resource(String);

impl Resource {
    pub fn parse(input: &str) -> Result<Resource, JidError> {
        prepare_resource(input).map(Resource)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `local@domain`, or a bare domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BareJid {
    pub local: Option<Username>,
    pub domain: Domain,
}

impl BareJid {
    /// An account of `domain`.
    pub fn user(local: Username, domain: Domain) -> BareJid {
        BareJid {
            local: Some(local),
            domain,
        }
    }

    pub fn with_resource(self, resource: Resource) -> FullJid {
        FullJid {
            bare: self,
            resource,
        }
    }
}

impl fmt::Display for BareJid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.local {
            Some(l) => write!(f, "{l}@{}", self.domain),
            None => write!(f, "{}", self.domain),
        }
    }
}

/// `local@domain/resource`: one session.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FullJid {
    pub bare: BareJid,
    pub resource: Resource,
}

impl fmt::Display for FullJid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.bare, self.resource)
    }
}

/// Any JID, as found in a `to` or `from` attribute.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Jid {
    pub bare: BareJid,
    pub resource: Option<Resource>,
}

impl Jid {
    /// Parses and canonicalises every part (RFC 7622 §3.1: the domain ends at
    /// the first `/`, the localpart at the first `@` before it).
    pub fn parse(input: &str) -> Result<Jid, JidError> {
        let (bare, resource) = match input.split_once('/') {
            Some((b, r)) => (b, Some(Resource::parse(r)?)),
            None => (input, None),
        };
        let (local, domain) = match bare.split_once('@') {
            Some((l, d)) => (Some(Username::parse(l)?), d),
            None => (None, bare),
        };
        Ok(Jid {
            bare: BareJid {
                local,
                domain: Domain::parse(domain)?,
            },
            resource,
        })
    }

    /// The full JID, when there is a resource.
    pub fn full(&self) -> Option<FullJid> {
        self.resource.clone().map(|resource| FullJid {
            bare: self.bare.clone(),
            resource,
        })
    }
}

impl FromStr for Jid {
    type Err = JidError;
    fn from_str(s: &str) -> Result<Jid, JidError> {
        Jid::parse(s)
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.resource {
            Some(r) => write!(f, "{}/{r}", self.bare),
            None => write!(f, "{}", self.bare),
        }
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

/// Normalises a domain for comparison with ours (case folding, no trailing dot).
pub fn normalize_domain(input: &str) -> String {
    input.trim_end_matches('.').to_lowercase()
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
    fn the_ascii_fast_path_agrees_with_precis() {
        for name in [
            "alice",
            "bob.smith",
            "x_y-z",
            "a+b",
            "~tilde",
            "0123",
            "a!b#c",
        ] {
            let precis = UsernameCaseMapped::new().enforce(name).unwrap();
            assert_eq!(Username::parse(name).unwrap().as_str(), precis, "{name}");
        }
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
    fn jids_parse_into_canonical_parts() {
        let j = Jid::parse("Alice@LocalHost./phone/2").unwrap();
        assert_eq!(j.to_string(), "alice@localhost/phone/2");
        assert_eq!(j.bare.to_string(), "alice@localhost");
        assert_eq!(j.resource.as_ref().map(Resource::as_str), Some("phone/2"));
        assert_eq!(j.full().unwrap().to_string(), "alice@localhost/phone/2");
        let d = Jid::parse("example.org").unwrap();
        assert!(d.bare.local.is_none() && d.resource.is_none());
        assert_eq!(
            "x@example.org".parse::<Jid>().unwrap().bare.domain.as_str(),
            "example.org"
        );
        for bad in ["", "@example.org", "a@", "a@b/", "a b@c", "a@b c", "a@<b>"] {
            assert!(Jid::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(normalize_domain("LocalHost."), "localhost");
    }

    #[test]
    fn usernames_serialize_as_strings_and_are_checked_when_read() {
        let u = Username::parse("alice").unwrap();
        assert_eq!(serde_json::to_string(&u).unwrap(), "\"alice\"");
        assert_eq!(serde_json::from_str::<Username>("\"Alice\"").unwrap(), u);
        assert!(serde_json::from_str::<Username>("\"a@b\"").is_err());
    }
}
