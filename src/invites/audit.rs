//! The audit trail: an append-only record of what happened to each invite,
//! kept in the ledger's replicated state so every node tells the same story.
//! Old events are pruned after the retention period by the janitor's sweep.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::model::{InviteKind, Millis, RedeemPath, ReservationId};
use super::token::Token;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteEvent {
    /// Position in the trail; increases by one per event, never reused.
    pub seq: u64,
    pub at: Millis,
    pub token: Token,
    /// Who made the invite (operator, admin JID or minting user), copied onto
    /// every event so filtering by inviter survives the invite being swept.
    pub inviter: Option<String>,
    pub what: EventKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Created {
        kind: InviteKind,
        roles: Vec<String>,
        groups: Vec<String>,
    },
    Reserved {
        reservation: ReservationId,
        account: String,
        node: String,
        path: RedeemPath,
    },
    Redeemed {
        reservation: ReservationId,
        account: String,
        node: String,
        path: RedeemPath,
    },
    Released {
        reservation: ReservationId,
        account: String,
    },
    Revoked,
}

impl EventKind {
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Created { .. } => "created",
            EventKind::Reserved { .. } => "reserved",
            EventKind::Redeemed { .. } => "redeemed",
            EventKind::Released { .. } => "released",
            EventKind::Revoked => "revoked",
        }
    }

    /// The account an event is about, if any.
    pub fn account(&self) -> Option<&str> {
        match self {
            EventKind::Reserved { account, .. }
            | EventKind::Redeemed { account, .. }
            | EventKind::Released { account, .. } => Some(account),
            _ => None,
        }
    }
}

/// Which events a query wants; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub token: Option<Token>,
    pub inviter: Option<String>,
    pub account: Option<String>,
    pub since: Option<Millis>,
    pub until: Option<Millis>,
}

impl EventFilter {
    fn matches(&self, e: &InviteEvent) -> bool {
        self.token.as_ref().is_none_or(|t| *t == e.token)
            && self
                .inviter
                .as_deref()
                .is_none_or(|i| e.inviter.as_deref() == Some(i))
            && self
                .account
                .as_deref()
                .is_none_or(|a| e.what.account() == Some(a))
            && self.since.is_none_or(|s| e.at >= s)
            && self.until.is_none_or(|u| e.at < u)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditLog {
    events: VecDeque<InviteEvent>,
    next_seq: u64,
}

impl AuditLog {
    /// Appends an event; returns its sequence number.
    pub fn record(
        &mut self,
        at: Millis,
        token: &Token,
        inviter: Option<&str>,
        what: EventKind,
    ) -> u64 {
        let seq = self.next_seq;
        self.events.push_back(InviteEvent {
            seq,
            at,
            token: token.clone(),
            inviter: inviter.map(str::to_owned),
            what,
        });
        self.next_seq += 1;
        seq
    }

    /// Takes back the event `seq` (a failed attempt the trail will not keep);
    /// false if it is gone already. Recent events sit at the back, where
    /// removal is cheap.
    pub fn remove(&mut self, seq: u64) -> bool {
        let at = self.events.partition_point(|e| e.seq < seq);
        if self.events.get(at).is_some_and(|e| e.seq == seq) {
            self.events.remove(at);
            true
        } else {
            false
        }
    }

    /// Forgets events recorded before `before`; returns how many.
    pub fn prune(&mut self, before: Millis) -> usize {
        // Events are appended in log order, and batch stamps only grow on one
        // leader; a stamp that went backwards across a leader change only
        // delays pruning of the events behind it.
        let mut n = 0;
        while self.events.front().is_some_and(|e| e.at < before) {
            self.events.pop_front();
            n += 1;
        }
        n
    }

    /// Up to `limit` matching events with `seq >= from`, oldest first.
    pub fn query(&self, filter: &EventFilter, from: u64, limit: usize) -> Vec<InviteEvent> {
        let start = self.events.partition_point(|e| e.seq < from);
        self.events
            .range(start..)
            .filter(|e| filter.matches(e))
            .take(limit)
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(n: u8) -> Token {
        Token::parse(&format!("token-{n:0>10}-xxxxx")).unwrap()
    }

    #[test]
    fn query_filters_and_pages_prune_drops_the_old() {
        let mut log = AuditLog::default();
        let created = || EventKind::Created {
            kind: InviteKind::Account,
            roles: vec![],
            groups: vec![],
        };
        log.record(10, &token(1), Some("alice@x"), created());
        log.record(20, &token(2), Some("bob@x"), created());
        log.record(
            30,
            &token(1),
            Some("alice@x"),
            EventKind::Redeemed {
                reservation: "r".into(),
                account: "carol".into(),
                node: "n1".into(),
                path: RedeemPath::Ibr,
            },
        );
        let all = log.query(&EventFilter::default(), 0, 10);
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [0, 1, 2]);
        let alice = EventFilter {
            inviter: Some("alice@x".into()),
            ..Default::default()
        };
        assert_eq!(log.query(&alice, 0, 10).len(), 2);
        // Paging: continue after the last seq seen.
        assert_eq!(log.query(&alice, 1, 10)[0].seq, 2);
        let carol = EventFilter {
            account: Some("carol".into()),
            ..Default::default()
        };
        assert_eq!(log.query(&carol, 0, 10)[0].what.name(), "redeemed");
        let window = EventFilter {
            since: Some(15),
            until: Some(30),
            ..Default::default()
        };
        assert_eq!(log.query(&window, 0, 10)[0].seq, 1);
        assert!(log.remove(1));
        assert!(!log.remove(1));
        assert_eq!(log.query(&EventFilter::default(), 0, 10).len(), 2);
        assert_eq!(log.prune(25), 1);
        assert_eq!(log.len(), 1);
        // Sequence numbers are never reused after pruning.
        log.record(40, &token(3), None, EventKind::Revoked);
        assert_eq!(log.query(&EventFilter::default(), 0, 10)[1].seq, 3);
    }
}
