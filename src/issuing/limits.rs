//! Who may mint how many invites: administrators without limit, other users
//! within the configured quota (raised by roles) and invite-tree limits. The
//! numbers go into the ledger's Mint command, which enforces them.

use crate::invites::tree::MintLimits;
use crate::invites::Origin;
use crate::invites::{Millis, Rejection};
use crate::xmpp::jid::Username;

use super::{IssueError, Issuer};

impl Issuer {
    /// Whether `user` administers this server: listed in `admins`, or holding
    /// the `admin` role.
    pub async fn is_admin(&self, user: &Username) -> bool {
        if self.config.is_admin_name(user) {
            return true;
        }
        self.roles(user).await.iter().any(|r| r == "admin")
    }

    /// The user's roles; none when the account is missing or unreadable.
    pub async fn roles(&self, user: &Username) -> Vec<String> {
        match self.store.get(user).await {
            Ok(Some(account)) => account.roles,
            _ => Vec::new(),
        }
    }

    /// The limits `user` mints under, or `None` for an administrator.
    pub async fn mint_limits(&self, user: &Username) -> Option<MintLimits> {
        if self.is_admin(user).await {
            return None;
        }
        let roles = self.roles(user).await;
        let quota = roles
            .iter()
            .filter_map(|r| self.config.role_invite_quotas.get(r))
            .copied()
            .chain([self.config.max_invites_per_user])
            .max()
            .unwrap_or(0);
        let tree = &self.config.invite_tree;
        Some(MintLimits {
            max_live: Some(quota),
            max_tree: Some(tree.max_invites),
            fast_chain_depth: tree.fast_chain_depth,
            fast_chain_window: tree.fast_chain_window.as_millis() as Millis,
        })
    }

    /// Where `user` came from: the newest origin any shard records (a name
    /// deleted and registered again has an older one elsewhere).
    pub async fn origin_of(&self, user: &Username) -> Result<Option<Origin>, IssueError> {
        let name = user.as_str();
        let found = self.ledger.read_all(|l| l.origin(name).cloned()).await?;
        Ok(found.into_iter().flatten().max_by_key(|o| o.registered_at))
    }

    /// The shard a user's invites are minted into: that of their invite tree,
    /// or one of their own if they came by no invite. Quota, tree size and
    /// chain checks then all see the whole picture in one place.
    pub async fn mint_shard(&self, user: &Username) -> Result<u32, IssueError> {
        let shards = self.ledger.shard_count();
        Ok(match self.origin_of(user).await? {
            Some(origin) => crate::ledger::shard_of(&origin.tree, shards),
            None => crate::ledger::shard_of_name(user.as_str(), shards),
        })
    }

    /// The error for a refused mint, saying what limit and what to do.
    pub(super) async fn limit_error(
        &self,
        user: &Username,
        limits: &MintLimits,
        why: Rejection,
    ) -> IssueError {
        let message = match why {
            Rejection::QuotaExceeded => format!(
                "{user} already has {} usable invites, the most allowed; revoke one or wait \
                 until one is used or expires",
                limits.max_live.unwrap_or(0)
            ),
            Rejection::TreeFull => format!(
                "the invite tree {user} belongs to has reached its limit of {} invites",
                limits.max_tree.unwrap_or(0)
            ),
            Rejection::ChainTooFast => {
                let until = self
                    .origin_of(user)
                    .await
                    .ok()
                    .flatten()
                    .map_or(0, |o| o.chain_started + limits.fast_chain_window);
                let when = std::time::UNIX_EPOCH + std::time::Duration::from_millis(until);
                format!(
                    "{user} joined through a chain of invites {} levels deep created moments \
                     ago; new invites are possible from {}",
                    limits.fast_chain_depth,
                    humantime::format_rfc3339_seconds(when)
                )
            }
            other => return IssueError::FailedPrecondition(other.to_string()),
        };
        IssueError::ResourceExhausted(message)
    }
}
