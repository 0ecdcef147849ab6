//! Invite URIs (XEP-0401 / RFC 5122 query actions) and landing page URLs.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::model::{InviteKind, InviteSpec};
use super::token::Token;

/// Everything but RFC 3986 unreserved characters is escaped in a localpart.
const LOCALPART: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn jid(local: Option<&str>, domain: &str) -> String {
    match local {
        Some(l) => format!("{}@{domain}", utf8_percent_encode(l, LOCALPART)),
        None => domain.to_owned(),
    }
}

/// The `xmpp:` URI a client opens to use the invite.
pub fn invite_uri(spec: &InviteSpec, domain: &str) -> String {
    let token = spec.token.as_str();
    match spec.kind {
        InviteKind::Contact => {
            let ibr = if spec.allow_registration {
                ";ibr=y"
            } else {
                ""
            };
            format!(
                "xmpp:{}?roster;preauth={token}{ibr}",
                jid(spec.inviter.as_deref(), domain)
            )
        }
        InviteKind::Account | InviteKind::Reset | InviteKind::Group => {
            format!(
                "xmpp:{}?register;preauth={token}",
                jid(spec.username.as_deref(), domain)
            )
        }
    }
}

/// The preauth token in an invite URI (`xmpp:JID?ACTION;preauth=TOKEN;…`), as
/// a client reads it back: the inverse of `invite_uri` for the token, and
/// tolerant of URIs from other servers (any parameter order, `&` between pairs,
/// a fragment). None unless it is an `xmpp:` URI with a non-empty `preauth`.
pub fn token_of(uri: &str) -> Option<&str> {
    let (_, query) = uri.strip_prefix("xmpp:")?.split_once('?')?;
    let query = query.split_once('#').map_or(query, |(query, _)| query);
    query
        .split([';', '&'])
        .find_map(|pair| pair.strip_prefix("preauth="))
        .filter(|token| !token.is_empty())
}

/// `BASE/invite/TOKEN`, when a web base URL is configured.
pub fn landing_url(base: &str, token: &Token) -> String {
    format!("{}/invite/{}", base.trim_end_matches('/'), token.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmpp::jid::Username;

    fn spec(
        kind: InviteKind,
        username: Option<&str>,
        inviter: Option<&str>,
        ibr: bool,
    ) -> InviteSpec {
        InviteSpec {
            token: Token::parse("AAAAAAAAAAAAAAAAAAAAAA").unwrap(),
            kind,
            username: username.map(|u| Username::parse(u).unwrap()),
            inviter: inviter.map(|u| Username::parse(u).unwrap()),
            allow_registration: ibr,
            max_uses: Some(1),
            roles: vec![],
            groups: vec![],
            created_at: 0,
            expires_at: 1,
            created_by: None,
            generation: None,
        }
    }

    #[test]
    fn uris_follow_the_protocol() {
        let t = "AAAAAAAAAAAAAAAAAAAAAA";
        assert_eq!(
            invite_uri(&spec(InviteKind::Account, None, None, false), "example.org"),
            format!("xmpp:example.org?register;preauth={t}")
        );
        assert_eq!(
            invite_uri(
                &spec(InviteKind::Account, Some("bob"), None, false),
                "example.org"
            ),
            format!("xmpp:bob@example.org?register;preauth={t}")
        );
        assert_eq!(
            invite_uri(
                &spec(InviteKind::Reset, Some("j\u{fc}rgen"), None, false),
                "example.org"
            ),
            format!("xmpp:j%C3%BCrgen@example.org?register;preauth={t}")
        );
        assert_eq!(
            invite_uri(
                &spec(InviteKind::Contact, None, Some("alice"), true),
                "example.org"
            ),
            format!("xmpp:alice@example.org?roster;preauth={t};ibr=y")
        );
        assert_eq!(
            invite_uri(
                &spec(InviteKind::Contact, None, Some("alice"), false),
                "example.org"
            ),
            format!("xmpp:alice@example.org?roster;preauth={t}")
        );
        assert_eq!(
            landing_url("https://example.org/", &Token::parse(t).unwrap()),
            format!("https://example.org/invite/{t}")
        );
    }

    #[test]
    fn the_token_comes_back_out_of_every_uri_made() {
        let t = "AAAAAAAAAAAAAAAAAAAAAA";
        for (kind, username, inviter, ibr) in [
            (InviteKind::Account, None, None, false),
            (InviteKind::Account, Some("bob"), None, false),
            (InviteKind::Reset, Some("j\u{fc}rgen"), None, false),
            (InviteKind::Group, None, None, false),
            (InviteKind::Contact, None, Some("alice"), true),
            (InviteKind::Contact, None, Some("alice"), false),
        ] {
            let uri = invite_uri(&spec(kind, username, inviter, ibr), "example.org");
            assert_eq!(token_of(&uri), Some(t), "{uri}");
        }
    }

    #[test]
    fn tokens_of_other_servers_uris_and_of_no_uri() {
        assert_eq!(
            token_of("xmpp:example.org?register;ibr=y;preauth=abc-123"),
            Some("abc-123")
        );
        assert_eq!(
            token_of("xmpp:example.org?register&preauth=x_Y#frag"),
            Some("x_Y")
        );
        assert_eq!(token_of("xmpp:example.org?register"), None);
        assert_eq!(token_of("xmpp:example.org?register;preauth="), None);
        assert_eq!(token_of("xmpp:preauth=abc"), None);
        assert_eq!(token_of("https://example.org/?preauth=abc"), None);
        assert_eq!(token_of("AAAAAAAAAAAAAAAAAAAAAA"), None);
    }
}
