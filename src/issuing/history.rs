//! Who invited whom, and what happened to each invite: the audit trail and
//! account origins as administrators read them.

use crate::clock::now_millis;
use crate::invites::model::InviteStatus;
use crate::invites::{EventFilter, EventKind, InviteEvent, Millis, Origin, Token};
use crate::xmpp::jid::Username;

use super::{IssueError, Issuer};

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

impl Issuer {
    /// One page of events, oldest first. `page_token` is where the previous
    /// page stopped (empty: the start); the next one is returned if there is
    /// more. With a token filter the last page ends with the invite's expiry
    /// when it has expired.
    pub async fn events(
        &self,
        filter: EventFilter,
        page_token: &str,
        limit: usize,
    ) -> Result<(Vec<HistoryEntry>, Option<String>), IssueError> {
        let shards = self.ledger.shard_count() as usize;
        let mut from = parse_page_token(page_token, shards)?;
        let now = now_millis();
        // Each shard keeps its own trail; one more than asked from each (after
        // where the last page stopped) tells whether more follow, and merging
        // by time gives one ordered page.
        let starts = from.clone();
        let per_shard = self
            .ledger
            .read_each(|shard, l| {
                let start = starts.get(shard as usize).copied().unwrap_or(0);
                l.events(&filter, start, limit + 1)
            })
            .await?;
        let mut merged: Vec<(usize, InviteEvent)> = per_shard
            .into_iter()
            .enumerate()
            .flat_map(|(shard, events)| events.into_iter().map(move |e| (shard, e)))
            .collect();
        merged.sort_by_key(|(shard, e)| (e.at, *shard, e.seq));
        let more = merged.len() > limit;
        let mut page = Vec::with_capacity(limit.min(merged.len()));
        for (shard, event) in merged.into_iter().take(limit) {
            from[shard] = event.seq + 1;
            page.push(HistoryEntry::from(event));
        }
        if more {
            let next = from
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            return Ok((page, Some(next)));
        }
        if let Some(token) = &filter.token {
            let expiry = self
                .ledger
                .read(token, |l| {
                    let invite = l.get(token)?;
                    (invite.status(now) == InviteStatus::Expired).then(|| HistoryEntry {
                        seq: None,
                        at: invite.spec.expires_at,
                        token: token.clone(),
                        inviter: invite
                            .minted_by
                            .as_ref()
                            .or(invite.spec.inviter.as_ref())
                            .map(|u| u.to_string())
                            .or_else(|| invite.spec.created_by.clone()),
                        event: None,
                    })
                })
                .await?;
            page.extend(expiry);
        }
        Ok((page, None))
    }

    /// Where `user` came from and what they may mint now.
    pub async fn origin(&self, user: &Username) -> Result<OriginView, IssueError> {
        if self.account_missing(user).await? {
            return Err(IssueError::FailedPrecondition(format!(
                "no account '{user}'"
            )));
        }
        let limits = self.mint_limits(user).await;
        let now = now_millis();
        let name = user.as_str().to_owned();
        let origin = self.origin_of(user).await?;
        let tree_size = match &origin {
            Some(o) => self.ledger.read(&o.tree, |l| l.tree_size(&o.tree)).await?,
            None => 0,
        };
        let live = self
            .ledger
            .read_all(|l| l.live_invites_of(&name, now))
            .await?
            .into_iter()
            .sum();
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

/// Per shard, the first sequence number not yet shown.
fn parse_page_token(token: &str, shards: usize) -> Result<Vec<u64>, IssueError> {
    if token.is_empty() {
        return Ok(vec![0; shards]);
    }
    let from: Vec<u64> = token
        .split(',')
        .map(|p| p.parse())
        .collect::<Result<_, _>>()
        .map_err(|_| IssueError::InvalidArgument("malformed page token".into()))?;
    if from.len() != shards {
        return Err(IssueError::InvalidArgument("malformed page token".into()));
    }
    Ok(from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issuing::{test_issuer, NewInvite};

    #[actix_rt::test]
    async fn event_pages_across_shards_are_complete_ordered_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let (admin, ledger) = test_issuer(dir.path()).await;
        for _ in 0..9 {
            admin.create(NewInvite::default()).await.unwrap();
        }
        let (everything, next) = admin.events(EventFilter::default(), "", 100).await.unwrap();
        assert_eq!((everything.len(), next), (9, None));

        let mut paged = Vec::new();
        let mut cursor = String::new();
        loop {
            let (page, next) = admin
                .events(EventFilter::default(), &cursor, 2)
                .await
                .unwrap();
            assert!(page.len() <= 2);
            paged.extend(page);
            match next {
                Some(c) => cursor = c,
                None => break,
            }
        }
        assert_eq!(paged, everything, "pages of 2 add up to the one big page");
        assert!(paged.windows(2).all(|w| w[0].at <= w[1].at), "oldest first");
        assert!(matches!(
            admin.events(EventFilter::default(), "1,2", 2).await,
            Err(IssueError::InvalidArgument(_))
        ));
        ledger.shutdown().await;
    }
}
