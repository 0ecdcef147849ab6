//! Delivery of what was kept for a user (XEP-0160) once a session of theirs
//! is available, wherever it is: each message with its XEP-0203 delay stamp.

use std::time::{Duration, UNIX_EPOCH};

use super::routing::{self, Route};
use super::SessionDirectory;
use crate::accounts::{AccountStore, OfflineMessage, StoreError};
use crate::xmpp::jid::{Domain, Username};
use crate::xmpp::reader::ReaderLimits;
use crate::xmpp::stanza::MessageType;
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

/// Takes the user's queue and routes each message to the user's available
/// resources; what finds none goes back into the queue rather than be lost.
pub async fn deliver_kept(
    directory: &SessionDirectory,
    store: &dyn AccountStore,
    limits: ReaderLimits,
    user: &Username,
) -> Result<(), StoreError> {
    for m in store.take_offline(user).await? {
        let Some(stanza) = delayed(&m, limits, directory.domain()) else {
            tracing::warn!(user = %user, "an offline message could not be read back");
            continue;
        };
        let bound = directory.resources(user);
        let sessions = routing::sessions_of(&bound);
        match routing::route_message(MessageType::of(&stanza), None, &sessions) {
            Route::Resources(resources) => {
                directory.send_to(user, &resources, &stanza);
            }
            _ => {
                store.push_offline(user, m, usize::MAX).await?;
            }
        }
    }
    Ok(())
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
