//! Who invited whom, and what happened to each invite: the audit trail and
//! account origins as administrators read them.

use crate::invites::model::InviteStatus;
use crate::invites::{EventFilter, EventKind, InviteEvent, Millis, Origin, Token};
use crate::ledger::now_millis;
use crate::xmpp::jid::Username;

use super::invites::{AdminError, InviteAdmin};

/// An event as shown to administrators: a trail event, or the expiry of an
/// invite, which happens by the clock and so is not in the trail.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    /// `None` for an expiry.
    pub seq: Option<u64>,
    pub at: Millis,
    pub token: Token,
    pub inviter: Option<String>,
    /// `None` for an expiry.
    pub event: Option<EventKind>,
}

impl HistoryEntry {
    pub fn name(&self) -> &'static str {
        self.event.as_ref().map_or("expired", EventKind::name)
    }
}

impl From<InviteEvent> for HistoryEntry {
    fn from(e: InviteEvent) -> Self {
        HistoryEntry {
            seq: Some(e.seq),
            at: e.at,
            token: e.token,
            inviter: e.inviter,
            event: Some(e.what),
        }
    }
}

/// An account's place in the invite trees, and its minting allowance now.
#[derive(Debug, Clone)]
pub struct OriginView {
    pub username: String,
    pub origin: Option<Origin>,
    pub admin: bool,
    pub tree_size: u32,
    pub tree_limit: Option<u32>,
    pub live_invites: u32,
    /// `None`: no quota (an administrator).
    pub invite_quota: Option<u32>,
    /// When a young deep chain stops blocking this account from minting.
    pub minting_blocked_until: Option<Millis>,
}

impl InviteAdmin {
    /// One page of events, oldest first, from sequence number `from` on; the
    /// next page's `from`, if there is more. With a token filter the last page
    /// ends with the invite's expiry when it has expired.
    pub async fn events(
        &self,
        filter: EventFilter,
        from: u64,
        limit: usize,
    ) -> Result<(Vec<HistoryEntry>, Option<u64>), AdminError> {
        let now = now_millis();
        let (events, expiry) = self
            .ledger
            .read(|l| {
                // One more than asked tells whether another page follows.
                let events = l.events(&filter, from, limit + 1);
                let expiry = filter.token.as_ref().and_then(|t| {
                    let invite = l.get(t)?;
                    (invite.status(now) == InviteStatus::Expired).then(|| HistoryEntry {
                        seq: None,
                        at: invite.spec.expires_at,
                        token: t.clone(),
                        inviter: invite
                            .minted_by
                            .clone()
                            .or_else(|| invite.spec.inviter.clone())
                            .or_else(|| invite.spec.created_by.clone()),
                        event: None,
                    })
                });
                (events, expiry)
            })
            .await?;
        let more = events.len() > limit;
        let mut page: Vec<HistoryEntry> = events
            .into_iter()
            .take(limit)
            .map(HistoryEntry::from)
            .collect();
        let next = if more {
            page.last().and_then(|e| e.seq).map(|s| s + 1)
        } else {
            page.extend(expiry);
            None
        };
        Ok((page, next))
    }

    /// Where `user` came from and what they may mint now.
    pub async fn origin(&self, user: &Username) -> Result<OriginView, AdminError> {
        if self.account_missing(user).await? {
            return Err(AdminError::FailedPrecondition(format!(
                "no account '{user}'"
            )));
        }
        let limits = self.mint_limits(user).await;
        let now = now_millis();
        let name = user.as_str().to_owned();
        let (origin, tree_size, live) = self
            .ledger
            .read(|l| {
                let origin = l.origin(&name).cloned();
                let size = origin.as_ref().map_or(0, |o| l.tree_size(&o.tree));
                (origin, size, l.live_invites_of(&name, now))
            })
            .await?;
        let blocked_until = match (&origin, &limits) {
            (Some(o), Some(lim))
                if lim.fast_chain_window > 0 && o.depth >= lim.fast_chain_depth =>
            {
                Some(o.chain_started + lim.fast_chain_window).filter(|t| *t > now)
            }
            _ => None,
        };
        Ok(OriginView {
            username: name,
            origin,
            admin: limits.is_none(),
            tree_size,
            tree_limit: limits.as_ref().and_then(|l| l.max_tree),
            live_invites: live,
            invite_quota: limits.as_ref().and_then(|l| l.max_live),
            minting_blocked_until: blocked_until,
        })
    }
}
