//! Delivery of what was kept for a user (XEP-0160) once a session of theirs
//! is available, wherever it is: each message with its XEP-0203 delay stamp.

use std::time::{Duration, UNIX_EPOCH};

use super::SessionDirectory;
use crate::accounts::{AccountStore, OfflineMessage, StoreError};
use crate::xmpp::jid::{Domain, Username};
use crate::xmpp::reader::ReaderLimits;
use crate::xmpp::{ns, Element};

/// A kept message as stored, with its delay stamp; None if it cannot be read.
pub fn delayed(m: &OfflineMessage, limits: ReaderLimits, domain: &Domain) -> Option<Element> {
    let mut stanza = crate::xmpp::reader::parse_stanza(&m.stanza, limits).ok()?;
    let when = UNIX_EPOCH + Duration::from_millis(m.stored_at);
    stanza.push_child(
        Element::new("delay", ns::DELAY)
            .with_attr("from", domain.as_str())
            .with_attr("stamp", humantime::format_rfc3339_millis(when).to_string())
            .with_text("Offline storage"),
    );
    Some(stanza)
}

/// A session on a node that died: `unavailable` from it to the available
/// sessions on this node of the contacts subscribed to the user, and of the
/// user (every surviving node tells its own sessions).
pub async fn announce_gone_here(
    directory: &SessionDirectory,
    store: &dyn AccountStore,
    user: &Username,
    resource: &str,
) -> Result<(), StoreError> {
    let domain = directory.domain().clone();
    let stanza = Element::new("presence", ns::CLIENT)
        .with_attr("type", "unavailable")
        .with_attr("from", format!("{user}@{domain}/{resource}"));
    for item in store.roster(user).await? {
        if !item.subscription.has_from() {
            continue;
        }
        let Ok(jid) = crate::xmpp::jid::Jid::parse(&item.jid) else {
            continue;
        };
        if jid.bare.domain != domain {
            continue;
        }
        if let Some(contact) = jid.bare.local {
            directory.send_to_available_local(&contact, &stanza, None);
        }
    }
    directory.send_to_available_local(user, &stanza, None);
    Ok(())
}
