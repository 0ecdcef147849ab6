//! The wire form of a roster item and its push (RFC 6121 §2.1.6), shared by
//! the client streams and registration (a contact invite pairs two rosters).

use crate::accounts::RosterItem;
use crate::xmpp::{ns, Element};

pub fn roster_item_element(item: &RosterItem) -> Element {
    let mut el = Element::new("item", ns::ROSTER)
        .with_attr("jid", item.jid.clone())
        .with_attr("subscription", item.subscription.as_str())
        .with_opt_attr("name", item.name.as_deref());
    if item.ask {
        el.set_attr("ask", "subscribe");
    }
    for g in &item.groups {
        el.push_child(Element::new("group", ns::ROSTER).with_text(g.clone()));
    }
    el
}

/// The push announcing `item` (already in its wire form) to any of the
/// user's sessions.
pub fn roster_push(item: Element) -> Element {
    Element::new("iq", ns::CLIENT)
        .with_attr("type", "set")
        .with_attr("id", format!("push-{}", crate::secrets::random_id(6)))
        .with_child(Element::new("query", ns::ROSTER).with_child(item))
}
