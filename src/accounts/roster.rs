//! Roster items and the subscription states of RFC 6121 §3, as pure
//! transitions so both sides of a subscription change the same way everywhere.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Subscription {
    #[default]
    None,
    /// The user receives the contact's presence.
    To,
    /// The contact receives the user's presence.
    From,
    Both,
}

impl Subscription {
    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
        }
    }

    pub fn has_to(self) -> bool {
        matches!(self, Subscription::To | Subscription::Both)
    }

    pub fn has_from(self) -> bool {
        matches!(self, Subscription::From | Subscription::Both)
    }

    fn with(to: bool, from: bool) -> Subscription {
        match (to, from) {
            (false, false) => Subscription::None,
            (true, false) => Subscription::To,
            (false, true) => Subscription::From,
            (true, true) => Subscription::Both,
        }
    }
}

/// One contact in a user's roster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterItem {
    /// The contact's bare JID.
    pub jid: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub subscription: Subscription,
    /// The user asked to see the contact's presence; no answer yet.
    #[serde(default)]
    pub ask: bool,
    /// The contact asked to see the user's presence; the user has not answered.
    #[serde(default)]
    pub pending_in: bool,
}

impl RosterItem {
    pub fn new(jid: impl Into<String>) -> RosterItem {
        RosterItem {
            jid: jid.into(),
            name: None,
            groups: Vec::new(),
            subscription: Subscription::None,
            ask: false,
            pending_in: false,
        }
    }

    /// False for an item that is only a stored inbound request: RFC 6121 keeps
    /// those out of the roster the user sees.
    pub fn is_visible(&self) -> bool {
        !self.pending_in
            || self.subscription != Subscription::None
            || self.ask
            || self.name.is_some()
            || !self.groups.is_empty()
    }

    /// The user sent `subscribe` to the contact.
    pub fn sent_subscribe(&mut self) {
        if !self.subscription.has_to() {
            self.ask = true;
        }
    }

    /// The contact approved (`subscribed` came in).
    pub fn got_subscribed(&mut self) {
        self.ask = false;
        self.subscription = Subscription::with(true, self.subscription.has_from());
    }

    /// The contact asked (`subscribe` came in).
    pub fn got_subscribe(&mut self) {
        if !self.subscription.has_from() {
            self.pending_in = true;
        }
    }

    /// The user approved the contact (`subscribed` went out).
    pub fn sent_subscribed(&mut self) {
        self.pending_in = false;
        self.subscription = Subscription::with(self.subscription.has_to(), true);
    }

    /// The user stopped following the contact (`unsubscribe` went out), or the
    /// contact cancelled it (`unsubscribed` came in).
    pub fn lose_to(&mut self) {
        self.ask = false;
        self.subscription = Subscription::with(false, self.subscription.has_from());
    }

    /// The contact stopped following the user (`unsubscribe` came in), or the
    /// user cancelled it (`unsubscribed` went out).
    pub fn lose_from(&mut self) {
        self.pending_in = false;
        self.subscription = Subscription::with(self.subscription.has_to(), false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_handshake_ends_in_both() {
        // alice's item for bob, and bob's item for alice.
        let mut a = RosterItem::new("bob@x");
        let mut b = RosterItem::new("alice@x");
        a.sent_subscribe();
        assert!(a.ask);
        b.got_subscribe();
        assert!(b.pending_in && !b.is_visible());
        b.sent_subscribed();
        a.got_subscribed();
        assert_eq!(
            (a.subscription, b.subscription),
            (Subscription::To, Subscription::From)
        );
        b.sent_subscribe();
        a.got_subscribe();
        a.sent_subscribed();
        b.got_subscribed();
        assert_eq!(
            (a.subscription, b.subscription),
            (Subscription::Both, Subscription::Both)
        );
        assert!(!a.ask && !b.ask && !a.pending_in && !b.pending_in);
        a.lose_to();
        b.lose_from();
        assert_eq!(
            (a.subscription, b.subscription),
            (Subscription::From, Subscription::To)
        );
        // Asking for what one already has sets no ask flag.
        b.sent_subscribe();
        assert!(!b.ask);
    }
}
