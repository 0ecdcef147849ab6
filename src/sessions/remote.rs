//! The sessions of the other nodes of a cluster, as each last announced them:
//! soft state, replaced whole by each announcement and dropped when a node
//! stops renewing it, so a node that dies leaves nothing behind for long.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::Presence;
use crate::xmpp::jid::Username;

/// One session bound on another node.
#[derive(Debug, Clone)]
pub struct RemoteSession {
    pub resource: String,
    pub presence: Option<Presence>,
}

struct Table {
    renewed: Instant,
    users: HashMap<Username, Vec<RemoteSession>>,
}

#[derive(Default)]
pub(super) struct RemoteTables {
    nodes: HashMap<u64, Table>,
}

impl RemoteTables {
    /// Replaces `node`'s table; returns the users who have an available
    /// session there now and had none in the table before.
    pub fn replace(
        &mut self,
        node: u64,
        sessions: Vec<(Username, RemoteSession)>,
        now: Instant,
    ) -> Vec<Username> {
        let mut users: HashMap<Username, Vec<RemoteSession>> = HashMap::new();
        for (user, s) in sessions {
            users.entry(user).or_default().push(s);
        }
        let available = |t: Option<&Table>, u: &Username| {
            t.and_then(|t| t.users.get(u))
                .is_some_and(|l| l.iter().any(|s| s.presence.is_some()))
        };
        let before = self.nodes.get(&node);
        let came = users
            .keys()
            .filter(|u| users[*u].iter().any(|s| s.presence.is_some()) && !available(before, u))
            .cloned()
            .collect();
        self.nodes.insert(
            node,
            Table {
                renewed: now,
                users,
            },
        );
        came
    }

    /// Drops the tables not renewed within `ttl`; returns their available
    /// sessions (node, user, session) for their contacts to learn they are gone.
    pub fn expire(&mut self, ttl: Duration, now: Instant) -> Vec<(u64, Username, RemoteSession)> {
        let stale: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(t.renewed) > ttl)
            .map(|(n, _)| *n)
            .collect();
        let mut gone = Vec::new();
        for node in stale {
            if let Some(t) = self.nodes.remove(&node) {
                for (user, list) in t.users {
                    for s in list.into_iter().filter(|s| s.presence.is_some()) {
                        gone.push((node, user.clone(), s));
                    }
                }
            }
        }
        gone
    }

    /// The user's sessions on other nodes, with the node holding each.
    pub fn sessions(&self, user: &Username) -> Vec<(u64, RemoteSession)> {
        let mut out = Vec::new();
        for (node, t) in &self.nodes {
            for s in t.users.get(user).into_iter().flatten() {
                out.push((*node, s.clone()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmpp::{ns, Element};

    fn session(resource: &str, available: bool) -> RemoteSession {
        RemoteSession {
            resource: resource.into(),
            presence: available.then(|| Presence {
                priority: 0,
                stanza: Element::new("presence", ns::CLIENT),
            }),
        }
    }

    #[test]
    fn a_table_is_replaced_whole_and_expires_unless_renewed() {
        let bob = Username::parse("bob").unwrap();
        let mut t = RemoteTables::default();
        let t0 = Instant::now();
        let came = t.replace(3, vec![(bob.clone(), session("phone", false))], t0);
        assert!(came.is_empty(), "bound is not available");
        let came = t.replace(3, vec![(bob.clone(), session("phone", true))], t0);
        assert_eq!(came, vec![bob.clone()]);
        assert!(t
            .replace(3, vec![(bob.clone(), session("phone", true))], t0)
            .is_empty());
        assert_eq!(t.sessions(&bob).len(), 1);
        // Renewed in time: kept.
        let t1 = t0 + Duration::from_secs(3);
        t.replace(3, vec![(bob.clone(), session("phone", true))], t1);
        assert!(t
            .expire(Duration::from_secs(4), t1 + Duration::from_secs(4))
            .is_empty());
        // Not renewed: dropped, and its available session reported gone.
        let gone = t.expire(Duration::from_secs(4), t1 + Duration::from_secs(5));
        assert_eq!(gone.len(), 1);
        assert_eq!((gone[0].0, gone[0].2.resource.as_str()), (3, "phone"));
        assert!(t.sessions(&bob).is_empty());
        // A table without the session drops it.
        t.replace(3, vec![(bob.clone(), session("phone", true))], t1);
        t.replace(3, vec![], t1);
        assert!(t.sessions(&bob).is_empty());
    }
}
