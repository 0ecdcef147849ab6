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
    /// The user approved a subscription the contact has not asked for yet
    /// (RFC 6121 §3.4): the contact's request will be approved at once.
    #[serde(default)]
    pub approved: bool,
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
            approved: false,
        }
    }

    /// False for an item that is only a stored inbound request: RFC 6121 keeps
    /// those out of the roster the user sees.
    pub fn is_visible(&self) -> bool {
        !self.pending_in
            || self.subscription != Subscription::None
            || self.ask
            || self.approved
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
        self.approved = false;
        self.subscription = Subscription::with(self.subscription.has_to(), true);
    }

    /// The user approved the contact before being asked (RFC 6121 §3.4); false
    /// when there is nothing to pre-approve (the contact already has it).
    pub fn pre_approve(&mut self) -> bool {
        if self.subscription.has_from() {
            return false;
        }
        self.approved = true;
        true
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
        self.approved = false;
        self.subscription = Subscription::with(self.subscription.has_to(), false);
    }
}

/// The roster version (RFC 6121 §2.6) of a roster: a digest of what its owner
/// sees (the visible items, in JID order). Any change a client can see gives a
/// new version and a roster that is back to an earlier state has that state's
/// version, so a client holding it holds the roster; it needs no counter in
/// the store, and both stores compute it alike.
pub fn roster_version(items: &[RosterItem]) -> String {
    use sha2::Digest as _;
    let mut visible: Vec<&RosterItem> = items.iter().filter(|i| i.is_visible()).collect();
    visible.sort_by(|a, b| a.jid.cmp(&b.jid));
    let mut hash = sha2::Sha256::new();
    for item in visible {
        // Only what the wire form carries: a hidden request flag is no change.
        let seen = (
            &item.jid,
            &item.name,
            &item.groups,
            item.subscription.as_str(),
            item.ask,
            item.approved,
        );
        if let Ok(bytes) = serde_json::to_vec(&seen) {
            hash.update(&bytes);
            hash.update(b"\n");
        }
    }
    let digest = hash.finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
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

    #[test]
    fn a_pre_approval_holds_until_the_subscription_exists() {
        let mut a = RosterItem::new("bob@x");
        assert!(a.pre_approve() && a.approved && a.is_visible());
        a.sent_subscribed();
        assert!(!a.approved && a.subscription == Subscription::From);
        // Nothing to pre-approve once bob has it.
        assert!(!a.pre_approve() && !a.approved);
        a.lose_from();
        assert!(a.pre_approve());
        a.lose_from();
        assert!(!a.approved);
    }

    #[test]
    fn the_version_follows_what_the_owner_sees() {
        let mut bob = RosterItem::new("bob@x");
        bob.subscription = Subscription::Both;
        let carol = RosterItem::new("carol@x");
        let v1 = roster_version(&[bob.clone()]);
        assert_eq!(v1.len(), 16);
        // The order items come from the store in does not matter.
        assert_eq!(
            roster_version(&[bob.clone(), carol.clone()]),
            roster_version(&[carol.clone(), bob.clone()])
        );
        assert_ne!(roster_version(&[bob.clone(), carol.clone()]), v1);
        // A hidden inbound request is not part of the roster the owner sees.
        let mut dave = RosterItem::new("dave@x");
        dave.pending_in = true;
        assert_eq!(roster_version(&[bob.clone(), dave]), v1);
        let mut renamed = bob.clone();
        renamed.name = Some("Bob".into());
        assert_ne!(roster_version(&[renamed]), v1);
        let mut asked = bob;
        asked.ask = true;
        assert_ne!(roster_version(&[asked]), v1);
        assert_ne!(roster_version(&[]), v1);
    }
}
