//! Invite administration: validating requests, creating, listing and revoking
//! invites through the ledger. Transport-neutral, so the gRPC API and the
//! ad-hoc commands give the same answers.

use std::sync::Arc;
use std::time::Duration;

use crate::accounts::AccountStore;
use crate::clock::now_millis;
use crate::config::Config;
use crate::invites::model::InviteStatus;
use crate::invites::uri::{invite_uri, landing_url};
use crate::invites::{Command, Invite, InviteKind, InviteSpec, Outcome, Rejection, Token};
use crate::ledger::{LedgerError, LedgerHandle};
use crate::xmpp::jid::Username;

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("no such invite")]
    NotFound,
    #[error(transparent)]
    Unavailable(#[from] LedgerError),
    #[error("storage: {0}")]
    Storage(String),
}

/// What a caller asks for.
#[derive(Debug, Clone, Default)]
pub struct NewInvite {
    pub kind: Option<InviteKind>,
    pub username: Option<String>,
    pub inviter: Option<String>,
    pub allow_registration: bool,
    pub max_uses: Option<u32>,
    pub unlimited: bool,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    pub ttl: Option<Duration>,
    pub created_by: Option<String>,
    /// The local user minting it: their quota and tree limits apply unless
    /// they are an administrator. `None`: an operator's invite.
    pub as_user: Option<String>,
}

/// An invite as administrators see it.
#[derive(Debug, Clone)]
pub struct InviteView {
    pub invite: Invite,
    pub status: InviteStatus,
    pub uri: String,
    pub landing_url: Option<String>,
}

/// Which invites to list.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub kind: Option<InviteKind>,
    pub status: Option<InviteStatus>,
}

#[derive(Clone)]
pub struct Issuer {
    pub ledger: LedgerHandle,
    pub store: Arc<dyn AccountStore>,
    pub config: Arc<Config>,
}

fn invalid(msg: impl Into<String>) -> IssueError {
    IssueError::InvalidArgument(msg.into())
}

fn labels(what: &str, values: Vec<String>) -> Result<Vec<String>, IssueError> {
    for v in &values {
        if v.is_empty() || v.len() > 64 || v.chars().any(char::is_control) {
            return Err(invalid(format!(
                "{what} '{v}' must be 1 to 64 printable characters"
            )));
        }
    }
    Ok(values)
}

/// A name given in a request, parsed; empty means none.
fn name_of(what: &str, raw: Option<&str>) -> Result<Option<Username>, IssueError> {
    match raw.filter(|u| !u.is_empty()) {
        Some(u) => Username::parse(u)
            .map(Some)
            .map_err(|e| invalid(format!("{what} '{u}': {e}"))),
        None => Ok(None),
    }
}

/// The uses an invite of `kind` may have, from what was asked.
fn max_uses(
    kind: InviteKind,
    asked: Option<u32>,
    unlimited: bool,
) -> Result<Option<u32>, IssueError> {
    match (kind, asked, unlimited) {
        (InviteKind::Group, None, false) => {
            Err(invalid("a group invite needs max_uses or unlimited"))
        }
        (InviteKind::Group, _, true) => Ok(None),
        (_, _, true) => Err(invalid("only group invites can be unlimited")),
        (_, Some(0), _) => Err(invalid("max_uses must be at least 1")),
        (InviteKind::Group, Some(n), false) => Ok(Some(n)),
        (_, Some(n), false) if n > 1 => Err(invalid("only group invites have more than one use")),
        (_, _, false) => Ok(Some(1)),
    }
}

impl Issuer {
    pub async fn create(&self, req: NewInvite) -> Result<InviteView, IssueError> {
        let kind = req.kind.unwrap_or(InviteKind::Account);
        let username = name_of("username", req.username.as_deref())?;
        let inviter = name_of("inviter", req.inviter.as_deref())?;
        let minter = match name_of("as_user", req.as_user.as_deref())? {
            Some(user) => Some(self.existing(user).await?),
            None => None,
        };
        let max_uses = max_uses(kind, req.max_uses, req.unlimited)?;
        self.check_names(kind, &username, &inviter).await?;
        let ttl = req.ttl.unwrap_or(match kind {
            InviteKind::Reset => self.config.reset_invite_expiry,
            _ => self.config.invite_expiry,
        });
        if ttl.is_zero() || ttl > crate::config::MAX_INVITE_LIFETIME {
            return Err(invalid(
                "the lifetime must be between 1 second and 365 days",
            ));
        }
        // A reset is tied to the account it is issued against: the name's
        // next holder is another incarnation.
        let generation = match (kind, &username) {
            (InviteKind::Reset, Some(user)) => match self.store.get(user).await {
                Ok(account) => account.and_then(|a| a.generation),
                Err(e) => return Err(IssueError::Storage(e.to_string())),
            },
            _ => None,
        };
        let now = now_millis();
        let spec = InviteSpec {
            token: Token::generate(),
            kind,
            username,
            inviter,
            allow_registration: kind == InviteKind::Contact && req.allow_registration,
            max_uses,
            roles: labels("role", req.roles)?,
            groups: labels("group", req.groups)?,
            created_at: now,
            expires_at: now.saturating_add(crate::clock::millis(ttl)),
            created_by: req.created_by,
            generation,
        };
        let token = self.submit(spec, minter).await?;
        tracing::info!(invite = %token.redacted(), kind = kind.as_str(), "invite created");
        self.get(&token).await
    }

    /// `user`, if an account of that name exists.
    async fn existing(&self, user: Username) -> Result<Username, IssueError> {
        if self.account_missing(&user).await? {
            return Err(IssueError::FailedPrecondition(format!(
                "no account '{user}'"
            )));
        }
        Ok(user)
    }

    /// What each kind needs of the names it is given.
    async fn check_names(
        &self,
        kind: InviteKind,
        username: &Option<Username>,
        inviter: &Option<Username>,
    ) -> Result<(), IssueError> {
        match kind {
            InviteKind::Reset => {
                let Some(user) = username else {
                    return Err(invalid("a reset invite needs the username to reset"));
                };
                self.existing(user.clone()).await?;
            }
            InviteKind::Contact => {
                let Some(user) = inviter else {
                    return Err(invalid("a contact invite needs an inviter"));
                };
                self.existing(user.clone()).await?;
                if username.is_some() {
                    return Err(invalid("a contact invite is not bound to a username"));
                }
            }
            InviteKind::Group if username.is_some() => {
                return Err(invalid("a group invite is not bound to a username"));
            }
            InviteKind::Account | InviteKind::Group => {
                if let Some(user) = username {
                    if !self.account_missing(user).await? {
                        return Err(IssueError::Conflict(format!(
                            "the username '{user}' is taken"
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Creates the invite through the ledger: an operator's as is, a user's
    /// under their minting limits (and in their shard).
    async fn submit(
        &self,
        mut spec: InviteSpec,
        minter: Option<Username>,
    ) -> Result<Token, IssueError> {
        let limits = match &minter {
            Some(user) => self.mint_limits(user).await,
            None => None,
        };
        if let (Some(user), Some(_)) = (&minter, &limits) {
            // Everything a minting limit looks at (the minter's invites, their
            // tree, their origin) lives in one shard; the token must too.
            spec.token = self.ledger.token_in_shard(self.mint_shard(user).await?);
        }
        let token = spec.token.clone();
        let command = match (&minter, &limits) {
            (Some(user), Some(limits)) => Command::Mint {
                spec,
                minter: user.clone(),
                limits: limits.clone(),
            },
            _ => Command::Create(spec),
        };
        match self.ledger.propose(command).await? {
            Outcome::Created => Ok(token),
            Outcome::Rejected(
                r @ (Rejection::QuotaExceeded | Rejection::TreeFull | Rejection::ChainTooFast),
            ) => match (&minter, &limits) {
                (Some(user), Some(limits)) => {
                    tracing::info!(user = %user, reason = %r, "invite refused by a minting limit");
                    Err(self.limit_error(user, limits, r).await)
                }
                _ => Err(IssueError::FailedPrecondition(r.to_string())),
            },
            Outcome::Rejected(r) => Err(IssueError::FailedPrecondition(r.to_string())),
            other => Err(IssueError::FailedPrecondition(format!(
                "unexpected: {other:?}"
            ))),
        }
    }

    pub(super) async fn account_missing(&self, user: &Username) -> Result<bool, IssueError> {
        self.store
            .get(user)
            .await
            .map(|a| a.is_none())
            .map_err(|e| IssueError::Storage(e.to_string()))
    }

    pub async fn get(&self, token: &Token) -> Result<InviteView, IssueError> {
        let invite = self.ledger.read(token, |l| l.get(token).cloned()).await?;
        invite.map(|i| self.view(i)).ok_or(IssueError::NotFound)
    }

    pub async fn revoke(&self, token: &Token) -> Result<InviteView, IssueError> {
        match self
            .ledger
            .propose(Command::Revoke {
                token: token.clone(),
            })
            .await?
        {
            Outcome::Revoked => {
                tracing::info!(invite = %token.redacted(), "invite revoked");
                self.get(token).await
            }
            Outcome::Rejected(Rejection::UnknownToken) => Err(IssueError::NotFound),
            other => Err(IssueError::FailedPrecondition(format!(
                "unexpected: {other:?}"
            ))),
        }
    }

    /// One page, newest first. `after` is the cursor a previous page returned.
    pub async fn list(
        &self,
        filter: &ListFilter,
        page_size: usize,
        after: Option<&str>,
    ) -> Result<(Vec<InviteView>, Option<String>), IssueError> {
        let now = now_millis();
        let cursor = match after.filter(|c| !c.is_empty()) {
            Some(c) => Some(parse_cursor(c)?),
            None => None,
        };
        let mut matching: Vec<Invite> = self
            .ledger
            .read_all(|l| {
                l.invites()
                    .filter(|i| filter.kind.is_none_or(|k| k == i.spec.kind))
                    .filter(|i| filter.status.is_none_or(|s| s == i.status(now)))
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .await?
            .into_iter()
            .flatten()
            .collect();
        matching.sort_by_key(|i| std::cmp::Reverse(order_key(i)));
        let start = match &cursor {
            Some(c) => matching
                .iter()
                .position(|i| order_key(i) < (c.0, c.1.clone()))
                .unwrap_or(matching.len()),
            None => 0,
        };
        let page: Vec<Invite> = matching
            .iter()
            .skip(start)
            .take(page_size)
            .cloned()
            .collect();
        let next = (start + page.len() < matching.len())
            .then(|| {
                page.last()
                    .map(|i| format!("{}.{}", i.spec.created_at, i.spec.token.as_str()))
            })
            .flatten();
        Ok((page.into_iter().map(|i| self.view(i)).collect(), next))
    }

    pub fn view(&self, invite: Invite) -> InviteView {
        let status = invite.status(now_millis());
        let uri = invite_uri(&invite.spec, self.config.domain.as_str());
        let landing_url = self
            .config
            .web_base_url
            .as_deref()
            .map(|base| landing_url(base, &invite.spec.token));
        InviteView {
            invite,
            status,
            uri,
            landing_url,
        }
    }
}

fn order_key(i: &Invite) -> (u64, String) {
    (i.spec.created_at, i.spec.token.as_str().to_owned())
}

fn parse_cursor(c: &str) -> Result<(u64, String), IssueError> {
    let (at, token) = c
        .split_once('.')
        .ok_or_else(|| invalid("malformed page token"))?;
    let at = at.parse().map_err(|_| invalid("malformed page token"))?;
    Ok((at, token.to_owned()))
}

/// An admin core over a single-node, four-shard ledger and an embedded store
/// in `dir`, for the admin modules' tests.
#[cfg(test)]
pub(crate) async fn test_issuer(dir: &std::path::Path) -> (Issuer, LedgerHandle) {
    let options = crate::ledger::LedgerOptions {
        batching: true,
        shards: 4,
        ..Default::default()
    };
    let ledger = LedgerHandle::open_single(dir, options).await.unwrap();
    let store = crate::accounts::embedded::EmbeddedStore::open(&dir.join("a.redb")).unwrap();
    let admin = Issuer {
        ledger: ledger.clone(),
        store: Arc::new(store),
        config: Arc::new(Config::default()),
    };
    (admin, ledger)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn pages_newest_first_without_gaps_or_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let (admin, ledger) = test_issuer(dir.path()).await;
        let mut made = Vec::new();
        for _ in 0..5 {
            made.push(
                admin
                    .create(NewInvite::default())
                    .await
                    .unwrap()
                    .invite
                    .spec,
            );
        }
        let group = NewInvite {
            kind: Some(InviteKind::Group),
            unlimited: true,
            ..NewInvite::default()
        };
        admin.create(group).await.unwrap();
        // Defaults: one use, seven days.
        assert_eq!(made[0].max_uses, Some(1));
        assert_eq!(
            made[0].expires_at - made[0].created_at,
            7 * 24 * 3600 * 1000
        );

        let filter = ListFilter {
            kind: Some(InviteKind::Account),
            status: None,
        };
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let (page, next) = admin.list(&filter, 2, cursor.as_deref()).await.unwrap();
            assert!(page.len() <= 2);
            seen.extend(page.into_iter().map(|v| v.invite.spec));
            match next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(
            seen.len(),
            5,
            "each account invite once, the group one filtered out"
        );
        let mut expected = made.clone();
        expected.sort_by_key(|s| std::cmp::Reverse((s.created_at, s.token.as_str().to_owned())));
        assert_eq!(seen, expected);
        assert!(matches!(
            admin.list(&filter, 2, Some("garbage")).await,
            Err(IssueError::InvalidArgument(_))
        ));
        ledger.shutdown().await;
    }
}
