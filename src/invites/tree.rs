//! Invite trees: which invite (and so which inviter) each account came from,
//! and the limits on minting that follow from it. Every invite belongs to the
//! tree of the operator invite at its root; an account invited by someone
//! invited by someone… sits `depth` levels below the operator.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::model::Millis;
use super::token::Token;
use crate::xmpp::jid::Username;

/// Where an account came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The invite it registered with.
    pub invite: Token,
    /// Who minted that invite (a user), or `None` for an operator's invite.
    pub inviter: Option<Username>,
    /// The root of its invite tree.
    pub tree: Token,
    /// 1 for an account invited by an operator; one more per user in between.
    pub depth: u32,
    /// When the first user-invited link of this chain registered (depth 1).
    pub chain_started: Millis,
    pub registered_at: Millis,
}

/// The limits that apply to one user minting an invite; the proposer reads
/// them from its configuration and puts them in the command, so every replica
/// decides with the same numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MintLimits {
    /// Live (usable) invites this user may hold at once; `None`: no limit.
    pub max_live: Option<u32>,
    /// Invites a whole tree may contain; `None`: no limit.
    pub max_tree: Option<u32>,
    /// Minting is blocked for an account this many levels deep…
    pub fast_chain_depth: u32,
    /// …while its chain is younger than this (0 disables the block).
    pub fast_chain_window: Millis,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trees {
    origins: BTreeMap<Username, Origin>,
    /// Invites created per tree root.
    sizes: BTreeMap<Token, u32>,
}

impl Trees {
    pub fn origin(&self, account: &str) -> Option<&Origin> {
        self.origins.get(account)
    }

    pub fn size(&self, tree: &Token) -> u32 {
        self.sizes.get(tree).copied().unwrap_or(0)
    }

    /// The tree an invite minted by `minter` joins: the minter's own tree, or a
    /// new one rooted at the invite for operators and accounts of no invite.
    pub fn tree_for(&self, minter: Option<&str>, invite: &Token) -> Token {
        minter
            .and_then(|m| self.origins.get(m))
            .map_or_else(|| invite.clone(), |o| o.tree.clone())
    }

    /// Whether the chain that brought `minter` here is too deep and too young
    /// for them to mint now.
    pub fn chain_blocks(&self, minter: &str, limits: &MintLimits, now: Millis) -> bool {
        limits.fast_chain_window > 0
            && self.origins.get(minter).is_some_and(|o| {
                o.depth >= limits.fast_chain_depth
                    && now < o.chain_started.saturating_add(limits.fast_chain_window)
            })
    }

    pub fn add_invite(&mut self, tree: Token) {
        *self.sizes.entry(tree).or_insert(0) += 1;
    }

    /// Records that `account` registered with `invite` (minted by `inviter`,
    /// in `tree`) at `at`. A re-registered name gets its new origin.
    pub fn record_registration(
        &mut self,
        account: &Username,
        invite: &Token,
        inviter: Option<&Username>,
        tree: Token,
        at: Millis,
    ) {
        let parent = inviter.and_then(|i| self.origins.get(i.as_str()));
        let depth = parent.map_or(1, |p| p.depth + 1);
        let chain_started = match parent {
            Some(p) => p.chain_started,
            None => at,
        };
        self.origins.insert(
            account.clone(),
            Origin {
                invite: invite.clone(),
                inviter: inviter.cloned(),
                tree,
                depth,
                chain_started,
                registered_at: at,
            },
        );
    }
}
