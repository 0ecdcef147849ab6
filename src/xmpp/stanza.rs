//! The `type` of each stanza kind (RFC 6120 §8.2.3, RFC 6121 §4.7.1, §5.2.2),
//! read once from the element so that handlers match on an enum.

use super::Element;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IqType {
    Get,
    Set,
    Result,
    Error,
}

impl IqType {
    /// `None` when missing or unknown: such an IQ is answered with `bad-request`.
    pub fn of(iq: &Element) -> Option<IqType> {
        match iq.attr("type")? {
            "get" => Some(IqType::Get),
            "set" => Some(IqType::Set),
            "result" => Some(IqType::Result),
            "error" => Some(IqType::Error),
            _ => None,
        }
    }

    /// A request, which must be answered (RFC 6120 §8.2.3).
    pub fn is_request(self) -> bool {
        matches!(self, IqType::Get | IqType::Set)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Normal,
    Chat,
    Groupchat,
    Headline,
    Error,
}

impl MessageType {
    /// Missing or unknown types are `normal` (RFC 6121 §5.2.2).
    pub fn of(message: &Element) -> MessageType {
        match message.attr("type") {
            Some("chat") => MessageType::Chat,
            Some("groupchat") => MessageType::Groupchat,
            Some("headline") => MessageType::Headline,
            Some("error") => MessageType::Error,
            _ => MessageType::Normal,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Normal => "normal",
            MessageType::Chat => "chat",
            MessageType::Groupchat => "groupchat",
            MessageType::Headline => "headline",
            MessageType::Error => "error",
        }
    }
}

/// The four subscription types (RFC 6121 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscription {
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
}

impl Subscription {
    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::Subscribe => "subscribe",
            Subscription::Subscribed => "subscribed",
            Subscription::Unsubscribe => "unsubscribe",
            Subscription::Unsubscribed => "unsubscribed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceType {
    /// No `type` attribute.
    Available,
    Unavailable,
    Probe,
    Error,
    Subscription(Subscription),
}

impl PresenceType {
    /// `None` for an unknown type, which is a `bad-request`.
    pub fn of(presence: &Element) -> Option<PresenceType> {
        let t = match presence.attr("type") {
            None => PresenceType::Available,
            Some("unavailable") => PresenceType::Unavailable,
            Some("probe") => PresenceType::Probe,
            Some("error") => PresenceType::Error,
            Some("subscribe") => PresenceType::Subscription(Subscription::Subscribe),
            Some("subscribed") => PresenceType::Subscription(Subscription::Subscribed),
            Some("unsubscribe") => PresenceType::Subscription(Subscription::Unsubscribe),
            Some("unsubscribed") => PresenceType::Subscription(Subscription::Unsubscribed),
            Some(_) => return None,
        };
        Some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmpp::ns;

    fn with_type(name: &str, t: Option<&str>) -> Element {
        Element::new(name, ns::CLIENT).with_opt_attr("type", t)
    }

    #[test]
    fn types_are_read_as_the_rfcs_say() {
        assert_eq!(IqType::of(&with_type("iq", Some("get"))), Some(IqType::Get));
        assert_eq!(IqType::of(&with_type("iq", None)), None);
        assert_eq!(IqType::of(&with_type("iq", Some("GET"))), None);
        assert!(IqType::Set.is_request() && !IqType::Result.is_request());
        assert_eq!(
            MessageType::of(&with_type("message", None)),
            MessageType::Normal
        );
        assert_eq!(
            MessageType::of(&with_type("message", Some("bogus"))),
            MessageType::Normal
        );
        assert_eq!(
            MessageType::of(&with_type("message", Some("chat"))),
            MessageType::Chat
        );
        assert_eq!(
            PresenceType::of(&with_type("presence", None)),
            Some(PresenceType::Available)
        );
        assert_eq!(
            PresenceType::of(&with_type("presence", Some("unsubscribed"))),
            Some(PresenceType::Subscription(Subscription::Unsubscribed))
        );
        assert_eq!(PresenceType::of(&with_type("presence", Some("away"))), None);
    }
}
