//! Availability presence (RFC 6121 §4): a session's broadcast to the contacts
//! subscribed to it (`from`/`both`) and to the user's other resources, the
//! probes answered at initial presence (contacts it is subscribed to:
//! `to`/`both`), directed presence, and `unavailable` when a session ends.
//! The last presence of each session lives in the session directory.

use std::sync::Arc;

use super::session::Session;
use super::C2sShared;
use crate::accounts::{RosterItem, StoreError};
use crate::sessions::Presence;
use crate::xmpp::errors::{Condition, ErrorType, StanzaError};
use crate::xmpp::jid::{FullJid, Jid, Username};
use crate::xmpp::{ns, Element};

impl Session {
    /// Presence with no `to`: available (`initial` or an update) or unavailable.
    pub(super) async fn on_broadcast(
        &mut self,
        presence: &Element,
        available: bool,
    ) -> Result<(), StoreError> {
        let conn = self.conn_id();
        let Some(b) = self.bound_mut() else {
            return Ok(());
        };
        let (user, jid, was_available) = (b.user.clone(), b.jid.clone(), b.available);
        if !available && !was_available {
            return Ok(());
        }
        let priority = match presence
            .get_child("priority", ns::CLIENT)
            .map(Element::text)
        {
            None => 0,
            Some(p) => match p.trim().parse::<i8>() {
                Ok(p) => p,
                Err(_) => {
                    let e = StanzaError::bad_request("The priority is an integer from -128 to 127");
                    self.reply_error(presence, e);
                    return Ok(());
                }
            },
        };
        let mut stanza = presence.clone();
        stanza.remove_attr("to");
        stanza.set_attr("from", jid.to_string());
        let directed = if let Some(b) = self.bound_mut() {
            b.available = available;
            if available {
                Vec::new()
            } else {
                std::mem::take(&mut b.directed)
            }
        } else {
            Vec::new()
        };
        let directory = self.shared.directory.clone();
        directory.set_presence(
            &user,
            conn,
            available.then(|| Presence {
                priority,
                stanza: stanza.clone(),
            }),
        );
        let roster = self.shared.store.roster(&user).await?;
        broadcast(&self.shared, &user, &roster, &stanza, &directed);
        if available && !was_available {
            // Every node routes to this session before its queue is taken, so
            // nothing is kept for it after that.
            directory.until_announced().await;
            self.answer_probes(&user, &jid, &roster);
            self.send_pending_requests().await?;
            self.send_offline_messages(&user).await?;
        }
        Ok(())
    }

    /// RFC 6121 §4.3: the current presence of each contact the user is
    /// subscribed to, and of the user's other resources, to this session.
    fn answer_probes(&mut self, user: &Username, jid: &FullJid, roster: &[RosterItem]) {
        let directory = self.shared.directory.clone();
        let mut sources: Vec<Username> = roster
            .iter()
            .filter(|i| i.subscription.has_to())
            .filter_map(|i| self.local_user(&i.jid))
            .collect();
        sources.push(user.clone());
        for contact in sources {
            for (resource, presence) in directory.resources(&contact) {
                let Some(p) = presence else { continue };
                if contact == *user && resource == jid.resource.as_str() {
                    continue;
                }
                let mut copy = p.stanza;
                copy.set_attr("to", jid.to_string());
                self.send(&copy);
            }
        }
    }

    /// Presence with a `to`: directed presence (§4.6) or a probe (§4.3).
    pub(super) async fn on_directed(
        &mut self,
        presence: &Element,
        to: &str,
        probe: bool,
    ) -> Result<(), StoreError> {
        let Some((user, jid)) = self.bound().map(|b| (b.user.clone(), b.jid.clone())) else {
            return Ok(());
        };
        let Ok(target) = Jid::parse(to) else {
            let e = StanzaError::new(ErrorType::Modify, Condition::JidMalformed);
            self.reply_error(presence, e);
            return Ok(());
        };
        if target.bare.domain != self.shared.config.domain {
            let e = StanzaError::new(ErrorType::Cancel, Condition::RemoteServerNotFound);
            self.reply_error(presence, e);
            return Ok(());
        }
        let Some(contact) = target.bare.local.clone() else {
            return Ok(());
        };
        let directory = self.shared.directory.clone();
        if probe {
            // Answered only to a subscriber of the contact.
            let me = self.bare_jid(&user);
            let allowed = contact == user
                || self
                    .shared
                    .store
                    .roster_item(&contact, &me)
                    .await?
                    .is_some_and(|i| i.subscription.has_from());
            if allowed {
                for (_, p) in directory.resources(&contact) {
                    if let Some(p) = p {
                        let mut copy = p.stanza;
                        copy.set_attr("to", jid.to_string());
                        self.send(&copy);
                    }
                }
            }
            return Ok(());
        }
        let mut stanza = presence.clone();
        stanza.set_attr("from", jid.to_string());
        stanza.set_attr("to", target.to_string());
        match &target.resource {
            Some(r) => {
                directory.send_to(&contact, &[r.as_str().to_owned()], &stanza);
            }
            None => directory.send_to_available(&contact, &stanza, None),
        }
        let unavailable = presence.attr("type") == Some("unavailable");
        if let Some(b) = self.bound_mut() {
            let t = target.to_string();
            b.directed.retain(|d| *d != t);
            if !unavailable && b.available {
                b.directed.push(t);
            }
        }
        Ok(())
    }
}

/// Sends `stanza` (a session's presence) to the available resources of each
/// contact subscribed to the user, of the user, and to the `directed` JIDs.
fn broadcast(
    shared: &C2sShared,
    user: &Username,
    roster: &[RosterItem],
    stanza: &Element,
    directed: &[String],
) {
    let directory = &shared.directory;
    let local = |jid: &str| {
        Jid::parse(jid)
            .ok()
            .filter(|j| j.bare.domain == shared.config.domain)
    };
    let mut reached = Vec::new();
    for item in roster.iter().filter(|i| i.subscription.has_from()) {
        if let Some(contact) = local(&item.jid).and_then(|j| j.bare.local) {
            directory.send_to_available(&contact, stanza, None);
            reached.push(item.jid.clone());
        }
    }
    directory.send_to_available(user, stanza, None);
    for to in directed {
        let Some(target) = local(to) else { continue };
        let Some(contact) = target.bare.local.clone() else {
            continue;
        };
        if target.resource.is_none() && reached.contains(&target.bare.to_string()) {
            continue;
        }
        let mut copy = stanza.clone();
        copy.set_attr("to", target.to_string());
        match &target.resource {
            Some(r) => {
                directory.send_to(&contact, &[r.as_str().to_owned()], &copy);
            }
            None => directory.send_to_available(&contact, &copy, None),
        }
    }
}

/// A session that had sent presence ended (closed, dropped, or its node
/// stops): `unavailable` from it to whoever saw it available.
pub(super) async fn announce_gone(
    shared: Arc<C2sShared>,
    user: Username,
    jid: FullJid,
    directed: Vec<String>,
) {
    let stanza = Element::new("presence", ns::CLIENT)
        .with_attr("type", "unavailable")
        .with_attr("from", jid.to_string());
    match shared.store.roster(&user).await {
        Ok(roster) => broadcast(&shared, &user, &roster, &stanza, &directed),
        Err(e) => tracing::warn!(error = %e, user = %user, "no roster to announce a session's end"),
    }
}
