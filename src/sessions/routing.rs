//! Where a message to a local user goes (RFC 6121 §8.5.2, §8.5.3), decided
//! from the user's sessions alone so that the rules are tested without any.

use crate::xmpp::errors::Condition;
use crate::xmpp::stanza::MessageType;

/// One bound session of the recipient: its resource and, once it sent
/// initial presence, its priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session<'a> {
    pub resource: &'a str,
    pub priority: Option<i8>,
}

/// The routing view of a user's bound resources as the directory lists
/// them (a resource without presence is bound but not available).
pub fn sessions_of(bound: &[(String, Option<super::Presence>)]) -> Vec<Session<'_>> {
    bound
        .iter()
        .map(|(resource, presence)| Session {
            resource,
            priority: presence.as_ref().map(|p| p.priority),
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// To these resources.
    Resources(Vec<String>),
    /// Kept for the next initial presence (XEP-0160).
    Offline,
    /// An error back to the sender.
    Bounce(Condition),
    /// Silently dropped, as the RFC says for this type.
    Drop,
}

/// The route of a message of `kind` to `resource` (None: the bare JID) of a
/// user whose sessions are `sessions`.
pub fn route_message(kind: MessageType, resource: Option<&str>, sessions: &[Session]) -> Route {
    // §8.5.3.1: a session with that resource gets it, whatever the type.
    if let Some(r) = resource {
        if sessions.iter().any(|s| s.resource == r) {
            return Route::Resources(vec![r.to_owned()]);
        }
    }
    // §8.5.2, and §8.5.3.2.1 (a full JID that matches no session is treated
    // as the bare JID): only available sessions of non-negative priority count.
    let candidates: Vec<(&str, i8)> = sessions
        .iter()
        .filter_map(|s| s.priority.map(|p| (s.resource, p)))
        .filter(|(_, p)| *p >= 0)
        .collect();
    match kind {
        MessageType::Error => Route::Drop,
        MessageType::Groupchat => Route::Bounce(Condition::ServiceUnavailable),
        MessageType::Headline if candidates.is_empty() => Route::Drop,
        MessageType::Headline => {
            Route::Resources(candidates.iter().map(|(r, _)| (*r).to_owned()).collect())
        }
        MessageType::Chat | MessageType::Normal => {
            let Some(top) = candidates.iter().map(|(_, p)| *p).max() else {
                return Route::Offline;
            };
            Route::Resources(
                candidates
                    .iter()
                    .filter(|(_, p)| *p == top)
                    .map(|(r, _)| (*r).to_owned())
                    .collect(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(resource: &str, priority: Option<i8>) -> Session<'_> {
        Session { resource, priority }
    }

    fn to(resources: &[&str]) -> Route {
        Route::Resources(resources.iter().map(|r| (*r).to_owned()).collect())
    }

    #[test]
    fn a_bare_jid_chat_goes_to_the_highest_priority_resources() {
        let sessions = [
            s("phone", Some(1)),
            s("laptop", Some(5)),
            s("tablet", Some(5)),
            s("bound-only", None),
        ];
        let route = route_message(MessageType::Chat, None, &sessions);
        assert_eq!(route, to(&["laptop", "tablet"]));
        assert_eq!(
            route_message(MessageType::Normal, None, &sessions[..1]),
            to(&["phone"])
        );
    }

    #[test]
    fn with_no_usable_resource_chat_is_kept_and_headline_dropped() {
        let sessions = [s("away", Some(-1)), s("bound-only", None)];
        assert_eq!(
            route_message(MessageType::Chat, None, &sessions),
            Route::Offline
        );
        assert_eq!(
            route_message(MessageType::Normal, None, &[]),
            Route::Offline
        );
        assert_eq!(
            route_message(MessageType::Headline, None, &sessions),
            Route::Drop
        );
        assert_eq!(route_message(MessageType::Error, None, &[]), Route::Drop);
    }

    #[test]
    fn headline_goes_to_every_non_negative_resource() {
        let sessions = [s("a", Some(0)), s("b", Some(3)), s("c", Some(-5))];
        assert_eq!(
            route_message(MessageType::Headline, None, &sessions),
            to(&["a", "b"])
        );
    }

    #[test]
    fn a_full_jid_reaches_its_session_even_before_presence() {
        let sessions = [s("a", None), s("b", Some(3))];
        for kind in [
            MessageType::Chat,
            MessageType::Groupchat,
            MessageType::Error,
        ] {
            assert_eq!(route_message(kind, Some("a"), &sessions), to(&["a"]));
        }
    }

    #[test]
    fn a_full_jid_that_is_gone_is_treated_as_the_bare_jid() {
        let sessions = [s("b", Some(3))];
        assert_eq!(
            route_message(MessageType::Chat, Some("gone"), &sessions),
            to(&["b"])
        );
        assert_eq!(
            route_message(MessageType::Chat, Some("gone"), &[]),
            Route::Offline
        );
        assert_eq!(
            route_message(MessageType::Groupchat, Some("gone"), &sessions),
            Route::Bounce(Condition::ServiceUnavailable)
        );
        assert_eq!(
            route_message(MessageType::Error, Some("gone"), &sessions),
            Route::Drop
        );
    }
}
