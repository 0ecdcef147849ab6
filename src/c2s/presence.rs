//! Presence subscriptions between local users (RFC 6121 §3), and XEP-0379:
//! a subscription request carrying a valid contact invite of the contact is
//! approved on the contact's behalf, online or not.

use super::session::Session;
use crate::accounts::{RosterItem, StoreError};
use crate::clock::now_millis;
use crate::invites::{InviteKind, Token};
use crate::xmpp::errors::{Condition, ErrorType, StanzaError};
use crate::xmpp::jid::Username;
use crate::xmpp::stanza::{PresenceType, Subscription};
use crate::xmpp::{ns, Element};

/// One side of a subscription change: whose roster, the item, what happens to it.
type Side<'a> = (&'a Username, RosterItem, fn(&mut RosterItem));

impl Session {
    pub(super) async fn on_presence(&mut self, presence: Element) {
        let to = presence.attr("to").map(str::to_owned);
        let result = match (PresenceType::of(&presence), to) {
            (Some(PresenceType::Available), None) => self.on_broadcast(&presence, true).await,
            (Some(PresenceType::Unavailable), None) => self.on_broadcast(&presence, false).await,
            (Some(PresenceType::Available | PresenceType::Unavailable), Some(to)) => {
                self.on_directed(&presence, &to, false).await
            }
            (Some(PresenceType::Probe), Some(to)) => self.on_directed(&presence, &to, true).await,
            (Some(PresenceType::Subscription(kind)), _) => {
                self.on_subscription(kind, &presence).await
            }
            // A probe of nobody, or an error from a client: nothing to do.
            (Some(PresenceType::Probe | PresenceType::Error), _) => Ok(()),
            (None, _) => {
                self.reply_error(&presence, StanzaError::bad_request("Unknown presence type"));
                Ok(())
            }
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "presence handling failed in storage");
            self.reply_error(&presence, StanzaError::internal("Please try again later"));
        }
    }

    /// A `presence` of `kind` from `from` to `user`'s bound resources.
    pub(super) fn deliver_presence(&mut self, user: &Username, from: &str, kind: Subscription) {
        let p = Element::new("presence", ns::CLIENT)
            .with_attr("type", kind.as_str())
            .with_attr("from", from);
        if self.user() == Some(user) {
            self.send(&p);
            self.shared
                .directory
                .deliver_except(user, &p, Some(self.conn_id()));
        } else {
            self.shared.directory.deliver_except(user, &p, None);
        }
    }

    /// RFC 6121 §3.1.3: requests that came while the user was away.
    pub(super) async fn send_pending_requests(&mut self) -> Result<(), StoreError> {
        let Some(user) = self.user().cloned() else {
            return Ok(());
        };
        let items = self.shared.store.roster(&user).await?;
        for item in items.into_iter().filter(|i| i.pending_in) {
            let p = Element::new("presence", ns::CLIENT)
                .with_attr("type", "subscribe")
                .with_attr("from", item.jid);
            self.send(&p);
        }
        Ok(())
    }

    async fn on_subscription(
        &mut self,
        kind: Subscription,
        presence: &Element,
    ) -> Result<(), StoreError> {
        let Some(user) = self.user().cloned() else {
            return Ok(());
        };
        let Some(to) = presence.attr("to") else {
            return Ok(());
        };
        let Some(contact) = self.local_user(to) else {
            // No server-to-server links: remote contacts cannot be reached.
            if kind == Subscription::Subscribe {
                let e = StanzaError::new(ErrorType::Cancel, Condition::RemoteServerNotFound);
                self.reply_error(presence, e);
            }
            return Ok(());
        };
        if contact == user {
            return Ok(());
        }
        if self.shared.store.get(&contact).await?.is_none() {
            if kind == Subscription::Subscribe {
                self.reply_error(presence, StanzaError::service_unavailable());
            }
            return Ok(());
        }
        let me = self.bare_jid(&user);
        let them = self.bare_jid(&contact);
        let store = &self.shared.store;
        let known = store.roster_item(&user, &them).await?.is_some()
            || store.roster_item(&contact, &me).await?.is_some();
        if !known && matches!(kind, Subscription::Unsubscribe | Subscription::Unsubscribed) {
            // Nothing to end: no roster items are made up for it.
            return Ok(());
        }
        let mine = self.load_item(&user, &them).await?;
        let theirs = self.load_item(&contact, &me).await?;
        match kind {
            Subscription::Subscribe => {
                self.subscribe(presence, (&user, mine), (&contact, theirs))
                    .await?;
            }
            Subscription::Subscribed if !mine.pending_in => {
                // RFC 6121 §3.4: approved before being asked.
                let mut mine = mine;
                if mine.pre_approve() {
                    self.save_and_push(&user, mine).await?;
                }
            }
            Subscription::Subscribed => {
                let mine: Side = (&user, mine, RosterItem::sent_subscribed);
                let theirs: Side = (&contact, theirs, RosterItem::got_subscribed);
                self.transition(kind, mine, theirs).await?;
            }
            Subscription::Unsubscribe => {
                let mine: Side = (&user, mine, RosterItem::lose_to);
                let theirs: Side = (&contact, theirs, RosterItem::lose_from);
                self.transition(kind, mine, theirs).await?;
            }
            Subscription::Unsubscribed => {
                let mine: Side = (&user, mine, RosterItem::lose_from);
                let theirs: Side = (&contact, theirs, RosterItem::lose_to);
                self.transition(kind, mine, theirs).await?;
            }
        }
        Ok(())
    }

    /// A subscription request (RFC 6121 §3.1): one carrying a valid XEP-0379
    /// token is settled by it; otherwise it is approved at once when the
    /// contact already lets the user see them or pre-approved it (§3.4), and
    /// passed on to the contact when neither.
    async fn subscribe(
        &mut self,
        presence: &Element,
        (user, mut mine): (&Username, RosterItem),
        (contact, mut theirs): (&Username, RosterItem),
    ) -> Result<(), StoreError> {
        let me = self.bare_jid(user);
        let them = self.bare_jid(contact);
        if let Some(token) = presence
            .get_child("preauth", ns::PARS)
            .and_then(|p| p.attr("token"))
            .and_then(Token::parse)
        {
            if self.preapproved(user, contact, token).await? {
                return Ok(());
            }
        }
        mine.sent_subscribe();
        if theirs.subscription.has_from() {
            // Already approved: answer for the contact at once.
            mine.got_subscribed();
            self.save_and_push(user, mine).await?;
            self.deliver_presence(user, &them, Subscription::Subscribed);
        } else if theirs.approved {
            // Pre-approved by the contact (§3.4): approved now.
            theirs.got_subscribe();
            theirs.sent_subscribed();
            self.save_and_push(contact, theirs).await?;
            mine.got_subscribed();
            self.save_and_push(user, mine).await?;
            self.deliver_presence(user, &them, Subscription::Subscribed);
        } else {
            self.save_and_push(user, mine).await?;
            theirs.got_subscribe();
            self.save_and_push(contact, theirs).await?;
            self.deliver_presence(contact, &me, Subscription::Subscribe);
        }
        Ok(())
    }

    /// Applies a subscription change to both rosters (each side: whose roster,
    /// the item, the change), pushes both, and tells the contact with `kind`.
    async fn transition(
        &mut self,
        kind: Subscription,
        mine: Side<'_>,
        theirs: Side<'_>,
    ) -> Result<(), StoreError> {
        let (user, mut item, change) = mine;
        change(&mut item);
        self.save_and_push(user, item).await?;
        let (contact, mut item, change) = theirs;
        change(&mut item);
        self.save_and_push(contact, item).await?;
        let me = self.bare_jid(user);
        self.deliver_presence(contact, &me, kind);
        Ok(())
    }

    /// XEP-0379. Returns false (an ordinary request follows) unless `token` is a
    /// usable contact invite of `contact` and its use was reserved.
    async fn preapproved(
        &mut self,
        user: &Username,
        contact: &Username,
        token: Token,
    ) -> Result<bool, StoreError> {
        let now = now_millis();
        let fits = self
            .shared
            .ledger
            .read(&token, |l| {
                l.validate(&token, now).is_ok_and(|i| {
                    i.spec.kind == InviteKind::Contact
                        && i.spec.inviter.as_deref() == Some(contact.as_str())
                })
            })
            .await
            .unwrap_or(false);
        if !fits {
            return Ok(false);
        }
        // Spent first, paired after: a use whose commit is lost pairs
        // nobody (see `Registrar::spend_on_presence`).
        let proven = crate::registration::ProvenInvite {
            token: token.clone(),
            validated_at: now,
        };
        if !self.shared.registrar.spend_on_presence(&proven, user).await {
            return Ok(false);
        }
        self.pair_preapproved(user, contact).await?;
        tracing::info!(user = %user, contact = %contact, invite = %token.redacted(), "subscription approved by invite");
        Ok(true)
    }

    /// The contact approves the user and asks back: the user ends with `to`
    /// (and a pending request), the contact with `from` (and an open ask).
    async fn pair_preapproved(
        &mut self,
        user: &Username,
        contact: &Username,
    ) -> Result<(), StoreError> {
        let me = self.bare_jid(user);
        let them = self.bare_jid(contact);
        let mut theirs = self.load_item(contact, &me).await?;
        theirs.sent_subscribed();
        theirs.sent_subscribe();
        self.save_and_push(contact, theirs).await?;
        let mut mine = self.load_item(user, &them).await?;
        mine.got_subscribed();
        mine.got_subscribe();
        self.deliver_presence(user, &them, Subscription::Subscribed);
        self.save_and_push(user, mine).await?;
        self.deliver_presence(user, &them, Subscription::Subscribe);
        Ok(())
    }
}
