//! RFC 6121 rosters: get, set (add, update, remove) and pushes to every bound
//! resource of the user.

use super::iq::iq_result;
use super::session::Session;
use crate::accounts::roster_version;
use crate::accounts::{RosterItem, StoreError};
use crate::sessions::{roster_item_element, roster_push_versioned};
use crate::xmpp::errors::{Condition, ErrorType, StanzaError};
use crate::xmpp::jid::{Jid, Username, MAX_PART_BYTES};
use crate::xmpp::stanza::Subscription;
use crate::xmpp::{ns, Element};

impl Session {
    pub(super) fn bare_jid(&self, user: &Username) -> String {
        self.jid_of(user).to_string()
    }

    /// A local account's username from a JID of our domain (resource ignored).
    pub(super) fn local_user(&self, jid: &str) -> Option<Username> {
        let jid = Jid::parse(jid).ok()?;
        if jid.bare.domain != self.shared.config.domain {
            return None;
        }
        jid.bare.local
    }

    pub(super) async fn load_item(
        &self,
        user: &Username,
        jid: &str,
    ) -> Result<RosterItem, StoreError> {
        Ok(self
            .shared
            .store
            .roster_item(user, jid)
            .await?
            .unwrap_or_else(|| RosterItem::new(jid)))
    }

    /// Stores the item and pushes it to the user's bound resources (this
    /// stream's own copy is written at once, others go through their actors).
    pub(super) async fn save_and_push(
        &mut self,
        user: &Username,
        item: RosterItem,
    ) -> Result<(), StoreError> {
        self.shared
            .store
            .put_roster_item(user, item.clone())
            .await?;
        if item.is_visible() {
            let ver = self.roster_ver(user).await?;
            self.push(user, roster_item_element(&item), &ver);
        }
        Ok(())
    }

    /// The user's roster version now (RFC 6121 §2.6).
    async fn roster_ver(&self, user: &Username) -> Result<String, StoreError> {
        Ok(roster_version(&self.shared.store.roster(user).await?))
    }

    pub(super) fn push(&mut self, user: &Username, item: Element, ver: &str) {
        let push = roster_push_versioned(item, Some(ver));
        let own = self.user() == Some(user);
        self.shared
            .directory
            .deliver_except(user, &push, own.then_some(self.conn_id()));
        if own {
            if let Some(jid) = self.bound().map(|b| b.jid.to_string()) {
                self.send(&push.with_attr("to", jid));
            }
        }
    }

    pub(super) async fn on_roster(&mut self, iq: &Element, query: &Element) {
        let Some(user) = self.user().cloned() else {
            return self.reply_error(
                iq,
                StanzaError::new(ErrorType::Auth, Condition::NotAuthorized),
            );
        };
        if iq.attr("type") == Some("get") {
            return self.roster_get(iq, query, &user).await;
        }
        self.roster_set(iq, query, &user).await
    }

    async fn roster_get(&mut self, iq: &Element, query: &Element, user: &Username) {
        let items = match self.shared.store.roster(user).await {
            Ok(items) => items,
            Err(e) => {
                tracing::error!(error = %e, "roster read failed");
                return self.reply_error(iq, StanzaError::internal("Please try again later"));
            }
        };
        // §2.6.3: a client holding the current version gets an empty result;
        // one asking with another version the roster and its version.
        let ver = query.attr("ver").map(|_| roster_version(&items));
        if ver.is_some() && query.attr("ver") == ver.as_deref() {
            return self.send(&iq_result(iq));
        }
        let mut q = Element::new("query", ns::ROSTER);
        if let Some(ver) = ver {
            q.set_attr("ver", ver);
        }
        for item in items.iter().filter(|i| i.is_visible()) {
            q.push_child(roster_item_element(item));
        }
        self.send(&iq_result(iq).with_child(q));
    }

    async fn roster_set(&mut self, iq: &Element, query: &Element, user: &Username) {
        let user = user.clone();
        let mut items = query.children().filter(|c| c.is("item", ns::ROSTER));
        let (Some(item), None) = (items.next(), items.next()) else {
            return self.reply_error(
                iq,
                StanzaError::bad_request("A roster set carries exactly one item"),
            );
        };
        let Some(jid) = item.attr("jid").and_then(|j| self.normalize_contact(j)) else {
            return self.reply_error(
                iq,
                StanzaError::bad_request("The item needs a valid bare JID"),
            );
        };
        let result = if item.attr("subscription") == Some("remove") {
            self.remove_contact(&user, &jid).await
        } else {
            let mut groups: Vec<String> = item
                .children()
                .filter(|g| g.is("group", ns::ROSTER))
                .map(Element::text)
                .collect();
            groups.sort();
            groups.dedup();
            if let Err(error) = self.check_item(item, &groups) {
                return self.reply_error(iq, error);
            }
            match self.room_for(&user, &jid).await {
                Ok(true) => {}
                Ok(false) => {
                    crate::metrics::rate_limit_hit("roster_items_per_user");
                    return self.reply_error(
                        iq,
                        StanzaError::new(ErrorType::Cancel, Condition::NotAllowed).with_text(
                            format!(
                                "The roster is full ({} contacts)",
                                self.shared.config.limits.roster_items_per_user
                            ),
                        ),
                    );
                }
                Err(e) => {
                    tracing::error!(error = %e, "roster read failed");
                    return self.reply_error(iq, StanzaError::internal("Please try again later"));
                }
            }
            match self.load_item(&user, &jid).await {
                Ok(mut existing) => {
                    existing.name = item
                        .attr("name")
                        .filter(|n| !n.is_empty())
                        .map(str::to_owned);
                    existing.groups = groups;
                    // A set makes the item part of the roster even if it was only a request.
                    existing.pending_in &=
                        existing.subscription != crate::accounts::Subscription::None;
                    self.save_and_push(&user, existing).await
                }
                Err(e) => Err(e),
            }
        };
        match result {
            Ok(()) => self.send(&iq_result(iq)),
            Err(e) => {
                tracing::error!(error = %e, "roster update failed");
                self.reply_error(iq, StanzaError::internal("Please try again later"));
            }
        }
    }

    /// RFC 6121 §2.3.3: names and groups within the server's limits (a
    /// JID part's 1023 bytes, `limits.roster_groups_per_item`), or
    /// `not-acceptable`.
    fn check_item(&self, item: &Element, groups: &[String]) -> Result<(), StanzaError> {
        let refuse = |text: &str| {
            Err(StanzaError::new(ErrorType::Modify, Condition::NotAcceptable).with_text(text))
        };
        if groups
            .iter()
            .any(|g| g.is_empty() || g.len() > MAX_PART_BYTES)
        {
            return refuse("Invalid group name");
        }
        if groups.len() > self.shared.config.limits.roster_groups_per_item {
            return refuse("Too many groups");
        }
        if item.attr("name").is_some_and(|n| n.len() > MAX_PART_BYTES) {
            return refuse("The name is too long");
        }
        Ok(())
    }

    /// Whether `jid` is on the roster already or there is room to add it.
    async fn room_for(&self, user: &Username, jid: &str) -> Result<bool, StoreError> {
        let store = &self.shared.store;
        if store.roster_item(user, jid).await?.is_some() {
            return Ok(true);
        }
        let limit = self.shared.config.limits.roster_items_per_user;
        Ok(store.roster(user).await?.len() < limit)
    }

    /// A contact's bare JID in canonical form, if it is one.
    fn normalize_contact(&self, jid: &str) -> Option<String> {
        let jid = Jid::parse(jid.trim()).ok()?;
        if jid.resource.is_some() {
            return None;
        }
        Some(jid.bare.to_string())
    }

    /// Roster removal (RFC 6121 §2.5): the subscriptions both ways end too.
    async fn remove_contact(&mut self, user: &Username, jid: &str) -> Result<(), StoreError> {
        let Some(item) = self.shared.store.roster_item(user, jid).await? else {
            return Ok(());
        };
        if let Some(contact) = self.local_user(jid) {
            let me = self.bare_jid(user);
            if let Some(mut theirs) = self.shared.store.roster_item(&contact, &me).await? {
                if item.subscription.has_to() || item.ask {
                    theirs.lose_from();
                    self.deliver_presence(&contact, &me, Subscription::Unsubscribe);
                }
                if item.subscription.has_from() {
                    theirs.lose_to();
                    self.deliver_presence(&contact, &me, Subscription::Unsubscribed);
                }
                self.save_and_push(&contact, theirs).await?;
            }
        }
        self.shared.store.remove_roster_item(user, jid).await?;
        let el = Element::new("item", ns::ROSTER)
            .with_attr("jid", jid)
            .with_attr("subscription", "remove");
        let ver = self.roster_ver(user).await?;
        self.push(user, el, &ver);
        Ok(())
    }
}
