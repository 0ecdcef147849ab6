//! Ending every session of a user, on every node (an account removed, a
//! password changed): a control element that the directory carries like a
//! stanza, through the peer fanout too, and that a session turns into a
//! stream error instead of sending it on. Clients cannot have one delivered:
//! the server only routes stanzas (message, presence, iq) it built or checked.

use crate::xmpp::Element;

const CONTROL_NS: &str = "urn:usher:control";
const END: &str = "end-session";
const TAKE_KEPT: &str = "take-kept";

/// The element that ends the sessions it reaches with `<not-authorized/>`
/// and `text`.
pub fn end_session(text: &str) -> Element {
    Element::new(END, CONTROL_NS).with_text(text)
}

/// The text of an `end_session` element; `None` for anything else.
pub fn ending(element: &Element) -> Option<String> {
    (element.name() == END && element.ns() == CONTROL_NS).then(|| element.text())
}

/// The element that has an available session take the messages kept for
/// its user: a sender that stored one while the user came online sends it,
/// so that only the user's own sessions take their queue, one after another,
/// and what was kept arrives in order.
pub fn take_kept() -> Element {
    Element::new(TAKE_KEPT, CONTROL_NS)
}

pub fn is_take_kept(element: &Element) -> bool {
    element.name() == TAKE_KEPT && element.ns() == CONTROL_NS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_control_element_ends_a_session() {
        assert_eq!(
            ending(&end_session("Account removed")).as_deref(),
            Some("Account removed")
        );
        assert_eq!(ending(&Element::new(END, "jabber:client")), None);
        assert_eq!(ending(&Element::new("message", CONTROL_NS)), None);
        assert!(is_take_kept(&take_kept()) && ending(&take_kept()).is_none());
        assert!(!is_take_kept(&Element::new(TAKE_KEPT, "jabber:client")));
    }
}
