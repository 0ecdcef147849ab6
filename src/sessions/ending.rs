//! Ending every session of a user, on every node (an account removed, a
//! password changed): a control element that the directory carries like a
//! stanza, through the peer fanout too, and that a session turns into a
//! stream error instead of sending it on. Clients cannot have one delivered:
//! the server only routes stanzas (message, presence, iq) it built or checked.

use crate::xmpp::Element;

const CONTROL_NS: &str = "urn:usher:control";
const END: &str = "end-session";

/// The element that ends the sessions it reaches with `<not-authorized/>`
/// and `text`.
pub fn end_session(text: &str) -> Element {
    Element::new(END, CONTROL_NS).with_text(text)
}

/// The text of an `end_session` element; `None` for anything else.
pub fn ending(element: &Element) -> Option<String> {
    (element.name() == END && element.ns() == CONTROL_NS).then(|| element.text())
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
    }
}
