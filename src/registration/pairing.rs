//! A contact invite's promise: the new account and its inviter are in each
//! other's rosters with a mutual subscription, and the inviter's online
//! clients hear of it by roster push.

use super::Registrar;
use crate::accounts::{RosterItem, StoreError};
use crate::sessions::{roster_item_element, roster_push};
use crate::xmpp::jid::{BareJid, Username};

impl Registrar {
    /// Idempotent: pairing twice leaves the same two items.
    pub(super) async fn pair_with_inviter(
        &self,
        user: &Username,
        inviter: &Username,
    ) -> Result<(), StoreError> {
        let domain = &self.config.domain;
        let user_jid = BareJid::user(user.clone(), domain.clone()).to_string();
        let inviter_jid = BareJid::user(inviter.clone(), domain.clone()).to_string();
        let mut theirs = self.item(inviter, &user_jid).await?;
        theirs.sent_subscribed();
        theirs.got_subscribed();
        self.store.put_roster_item(inviter, theirs.clone()).await?;
        // The new account has no session yet; only the inviter's are told.
        if theirs.is_visible() {
            let push = roster_push(roster_item_element(&theirs));
            self.directory.deliver_except(inviter, &push, None);
        }
        let mut mine = self.item(user, &inviter_jid).await?;
        mine.sent_subscribed();
        mine.got_subscribed();
        self.store.put_roster_item(user, mine).await
    }

    async fn item(&self, user: &Username, jid: &str) -> Result<RosterItem, StoreError> {
        Ok(self
            .store
            .roster_item(user, jid)
            .await?
            .unwrap_or_else(|| RosterItem::new(jid)))
    }
}
