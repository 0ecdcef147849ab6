//! Messages from a bound client (RFC 6121 §5, §8.5): addressed, stamped with
//! the sender's full JID and handed to the session directory's routing; kept
//! offline (XEP-0160) when the recipient has no available resource, and
//! delivered with a delay stamp (XEP-0203) at its next initial presence.

use super::session::Session;
use crate::accounts::{OfflineMessage, Queued, StoreError};
use crate::clock::now_millis;
use crate::sessions::kept;
use crate::sessions::routing::{self, Route};
use crate::xmpp::errors::{Condition, ErrorType, StanzaError};
use crate::xmpp::jid::{Jid, Username};
use crate::xmpp::stanza::MessageType;
use crate::xmpp::Element;

impl Session {
    pub(super) async fn on_message(&mut self, mut message: Element) {
        let Some(from) = self.bound().map(|b| b.jid.clone()) else {
            return;
        };
        let kind = MessageType::of(&message);
        let bounce = |s: &mut Session, m: &Element, e: StanzaError| {
            if kind != MessageType::Error {
                s.reply_error(m, e);
            }
        };
        // RFC 6120 §10.3: no `to` means the sender's own bare JID.
        let to = match message.attr("to") {
            None => Jid {
                bare: from.bare.clone(),
                resource: None,
            },
            Some(to) => match Jid::parse(to) {
                Ok(jid) => jid,
                Err(_) => {
                    let e = StanzaError::new(ErrorType::Modify, Condition::JidMalformed);
                    return bounce(self, &message, e);
                }
            },
        };
        if to.bare.domain != self.shared.config.domain {
            // No server-to-server links.
            let e = StanzaError::new(ErrorType::Cancel, Condition::RemoteServerNotFound);
            return bounce(self, &message, e);
        }
        let Some(user) = to.bare.local.clone() else {
            // The server itself takes no messages.
            return bounce(self, &message, StanzaError::service_unavailable());
        };
        message.set_attr("from", from.to_string());
        message.set_attr("to", to.to_string());
        if let Err(e) = self.route_message(&user, &to, kind, message.clone()).await {
            tracing::error!(error = %e, "message routing failed in storage");
            bounce(
                self,
                &message,
                StanzaError::internal("Please try again later"),
            );
        }
    }

    async fn route_message(
        &mut self,
        user: &Username,
        to: &Jid,
        kind: MessageType,
        message: Element,
    ) -> Result<(), StoreError> {
        let directory = self.shared.directory.clone();
        let bound = directory.resources(user);
        let sessions = routing::sessions_of(&bound);
        let resource = to.resource.as_ref().map(|r| r.as_str());
        match routing::route_message(kind, resource, &sessions) {
            Route::Resources(resources) => {
                directory.send_to(user, &resources, &message);
            }
            Route::Drop => {}
            Route::Bounce(condition) => {
                self.reply_error(&message, StanzaError::new(ErrorType::Cancel, condition));
            }
            Route::Offline => self.keep_offline(user, message).await?,
        }
        Ok(())
    }

    /// XEP-0160: keeps a chat/normal message for a user with no available
    /// resource, or tells the sender it cannot be delivered.
    async fn keep_offline(&mut self, user: &Username, message: Element) -> Result<(), StoreError> {
        let store = self.shared.store.clone();
        if store.get(user).await?.is_none() {
            // RFC 6121 §8.5.1: no such account.
            self.reply_error(&message, StanzaError::service_unavailable());
            return Ok(());
        }
        let max = self.shared.config.limits.offline_messages_per_user;
        let kept = OfflineMessage {
            stored_at: now_millis(),
            stanza: message.to_stanza_string(),
        };
        if store.push_offline(user, kept, max).await? == Queued::Full {
            let e = StanzaError::service_unavailable()
                .with_text("The recipient's offline storage is full");
            self.reply_error(&message, e);
            return Ok(());
        }
        // The user may have come online between the routing and the store:
        // their sessions take the queue again, so it is not left behind.
        let directory = self.shared.directory.clone();
        if directory.resources(user).iter().any(|(_, p)| p.is_some()) {
            directory.send_to_available(user, &crate::sessions::take_kept(), None);
        }
        Ok(())
    }

    /// Asked by a sender that kept a message while this session came online.
    pub(super) async fn take_kept(&mut self) {
        let Some(user) = self.bound().filter(|b| b.available).map(|b| b.user.clone()) else {
            return;
        };
        if let Err(e) = self.send_offline_messages(&user).await {
            tracing::warn!(user = %user, error = %e, "kept messages not taken");
        }
        self.io.flush();
    }

    /// At initial presence: what was kept for the user, oldest first, to
    /// this session.
    pub(super) async fn send_offline_messages(
        &mut self,
        user: &Username,
    ) -> Result<(), StoreError> {
        let kept = self.shared.store.take_offline(user).await?;
        let limits = self.shared.config.limits.reader();
        for m in kept {
            match kept::delayed(&m, limits, &self.shared.config.domain) {
                Some(stanza) => self.send(&stanza),
                None => tracing::warn!(user = %user, "an offline message could not be read back"),
            }
        }
        Ok(())
    }
}
