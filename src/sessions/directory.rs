//! Which users are online on this node, at which resources, and how to reach
//! their connection actors: for roster pushes and presence subscriptions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use actix::Recipient;

use super::remote::{RemoteSession, RemoteTables};
use super::Deliver;
use crate::xmpp::jid::{Domain, Username};
use crate::xmpp::Element;

struct Bound {
    conn: u64,
    resource: String,
    addr: Recipient<Deliver>,
    /// The session's last available presence; None until its initial
    /// presence and after it went unavailable.
    presence: Option<Presence>,
}

/// What a session last broadcast: the stanza (its `from` stamped) and the
/// priority read from it, which the routing of bare-JID messages follows.
#[derive(Debug, Clone)]
pub struct Presence {
    pub priority: i8,
    pub stanza: Element,
}

/// Carries a stanza to the other nodes of a cluster, whose directories
/// deliver it to the user's sessions there.
pub trait Fanout: Send + Sync {
    fn deliver(&self, user: &Username, stanza: &Element);

    /// Carries `stanza` to sessions of `user` on `node`: to the named
    /// resources as addressed, or (none named) to each available one.
    fn route(&self, node: u64, user: &Username, resources: &[String], stanza: &Element);
}

pub struct SessionDirectory {
    /// The node's domain: what the `to` of a delivered copy names.
    domain: Domain,
    users: RwLock<HashMap<Username, Vec<Bound>>>,
    /// Set on a cluster node: users may be connected to other nodes too.
    fanout: OnceLock<Arc<dyn Fanout>>,
    /// The other nodes' sessions, as they announced them.
    remote: RwLock<RemoteTables>,
    /// Woken when a local session is bound, unbound or changes presence, so
    /// that the other nodes hear of it.
    changed: tokio::sync::Notify,
    /// Counts those changes; `announced` is the count the last finished
    /// announcement round covered, so a session can wait until the other
    /// nodes (those that answer) can reach it.
    generation: AtomicU64,
    announced: tokio::sync::watch::Sender<u64>,
}

/// How long a bind or an initial presence waits for the other nodes to
/// acknowledge it before it goes on without them.
pub const ANNOUNCE_WAIT: Duration = Duration::from_secs(2);

impl SessionDirectory {
    pub fn new(domain: Domain) -> SessionDirectory {
        SessionDirectory {
            domain,
            users: RwLock::default(),
            fanout: OnceLock::new(),
            remote: RwLock::default(),
            changed: tokio::sync::Notify::new(),
            generation: AtomicU64::new(0),
            announced: tokio::sync::watch::Sender::new(0),
        }
    }

    fn local_change(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_one();
    }

    /// The count of local changes so far; announce what is listed after
    /// reading it, then `mark_announced` it.
    pub fn local_generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// An announcement round of the table as of `generation` has finished.
    pub fn mark_announced(&self, generation: u64) {
        self.announced.send_if_modified(|seen| {
            let newer = generation > *seen;
            if newer {
                *seen = generation;
            }
            newer
        });
    }

    /// On a cluster node, waits (at most `ANNOUNCE_WAIT`) until an
    /// announcement round has covered every local change made so far: after a bind or an
    /// initial presence they route to the session rather than keep its
    /// messages. A node alone returns at once.
    pub async fn until_announced(&self) {
        if self.fanout.get().is_none() {
            return;
        }
        let target = self.local_generation();
        let mut seen = self.announced.subscribe();
        let reached = tokio::time::timeout(ANNOUNCE_WAIT, seen.wait_for(|g| *g >= target)).await;
        if reached.is_err() {
            tracing::debug!("no announcement round finished in time");
        }
    }

    pub fn register(&self, user: &Username, conn: u64, resource: &str, addr: Recipient<Deliver>) {
        if let Ok(mut users) = self.users.write() {
            users.entry(user.clone()).or_default().push(Bound {
                conn,
                resource: resource.to_owned(),
                addr,
                presence: None,
            });
        }
        self.local_change();
    }

    pub fn unregister(&self, user: &Username, conn: u64) {
        if let Ok(mut users) = self.users.write() {
            if let Some(list) = users.get_mut(user) {
                list.retain(|b| b.conn != conn);
                if list.is_empty() {
                    users.remove(user);
                }
            }
        }
        self.local_change();
    }

    /// Records the session's presence (None: unavailable).
    pub fn set_presence(&self, user: &Username, conn: u64, presence: Option<Presence>) {
        if let Ok(mut users) = self.users.write() {
            if let Some(b) = users
                .get_mut(user)
                .and_then(|list| list.iter_mut().find(|b| b.conn == conn))
            {
                b.presence = presence;
            }
        }
        self.local_change();
    }

    /// The user's bound resources, on this node and the others, and their presence.
    pub fn resources(&self, user: &Username) -> Vec<(String, Option<Presence>)> {
        let mut out: Vec<(String, Option<Presence>)> = match self.users.read() {
            Ok(users) => users
                .get(user)
                .into_iter()
                .flatten()
                .map(|b| (b.resource.clone(), b.presence.clone()))
                .collect(),
            Err(_) => Vec::new(),
        };
        for (_, s) in self.remote_sessions(user) {
            out.push((s.resource, s.presence));
        }
        out
    }

    fn remote_sessions(&self, user: &Username) -> Vec<(u64, RemoteSession)> {
        match self.remote.read() {
            Ok(r) if self.fanout.get().is_some() => r.sessions(user),
            _ => Vec::new(),
        }
    }

    /// Sends `stanza` as it is (its `to` untouched) to the named resources of
    /// `user`, here or on other nodes; returns how many it went to.
    pub fn send_to(&self, user: &Username, resources: &[String], stanza: &Element) -> usize {
        let mut sent = self.send_to_local(user, resources, stanza);
        if let Some(fanout) = self.fanout.get() {
            let mut by_node: HashMap<u64, Vec<String>> = HashMap::new();
            for (node, s) in self.remote_sessions(user) {
                if resources.contains(&s.resource) {
                    by_node.entry(node).or_default().push(s.resource);
                }
            }
            for (node, named) in by_node {
                sent += named.len();
                fanout.route(node, user, &named, stanza);
            }
        }
        sent
    }

    /// Like `send_to`, to this node's sessions only.
    pub fn send_to_local(&self, user: &Username, resources: &[String], stanza: &Element) -> usize {
        let Ok(users) = self.users.read() else {
            return 0;
        };
        let mut sent = 0;
        for b in users.get(user).into_iter().flatten() {
            if resources.contains(&b.resource) {
                b.addr.do_send(Deliver(stanza.clone()));
                sent += 1;
            }
        }
        sent
    }

    /// Sends a copy of `stanza`, addressed to each, to every available
    /// resource of `user` (here and on other nodes) but the connection `except`.
    pub fn send_to_available(&self, user: &Username, stanza: &Element, except: Option<u64>) {
        self.send_to_available_local(user, stanza, except);
        if let Some(fanout) = self.fanout.get() {
            let mut nodes: Vec<u64> = self
                .remote_sessions(user)
                .into_iter()
                .filter(|(_, s)| s.presence.is_some())
                .map(|(n, _)| n)
                .collect();
            nodes.sort_unstable();
            nodes.dedup();
            for node in nodes {
                fanout.route(node, user, &[], stanza);
            }
        }
    }

    /// Like `send_to_available`, to this node's sessions only.
    pub fn send_to_available_local(&self, user: &Username, stanza: &Element, except: Option<u64>) {
        let Ok(users) = self.users.read() else {
            return;
        };
        for b in users.get(user).into_iter().flatten() {
            if b.presence.is_none() || Some(b.conn) == except {
                continue;
            }
            let mut copy = stanza.clone();
            copy.set_attr("to", format!("{user}@{}/{}", self.domain, b.resource));
            b.addr.do_send(Deliver(copy));
        }
    }

    /// This node's sessions, for announcing them to the other nodes.
    pub fn local_sessions(&self) -> Vec<(Username, RemoteSession)> {
        let Ok(users) = self.users.read() else {
            return Vec::new();
        };
        users
            .iter()
            .flat_map(|(u, list)| {
                list.iter().map(move |b| {
                    (
                        u.clone(),
                        RemoteSession {
                            resource: b.resource.clone(),
                            presence: b.presence.clone(),
                        },
                    )
                })
            })
            .collect()
    }

    /// Resolves once a local session changed since the last call.
    pub async fn local_changed(&self) {
        self.changed.notified().await;
    }

    /// Takes `node`'s announced sessions; returns the users newly available there.
    pub fn replace_remote(
        &self,
        node: u64,
        sessions: Vec<(Username, RemoteSession)>,
    ) -> Vec<Username> {
        match self.remote.write() {
            Ok(mut r) => r.replace(node, sessions, Instant::now()),
            Err(_) => Vec::new(),
        }
    }

    /// Drops the tables of nodes silent for `ttl`; returns the available
    /// sessions they held as (user, resource).
    pub fn expire_remote(&self, ttl: Duration) -> Vec<(Username, String)> {
        match self.remote.write() {
            Ok(mut r) => r
                .expire(ttl, Instant::now())
                .into_iter()
                .map(|(_, u, s)| (u, s.resource))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    pub fn set_fanout(&self, fanout: Arc<dyn Fanout>) {
        let _ = self.fanout.set(fanout);
    }

    /// Sends a copy of `stanza` to each bound resource of `user` but the
    /// connection `except`, addressed to that resource; in a cluster, also to
    /// the user's sessions on other nodes.
    pub fn deliver_except(&self, user: &Username, stanza: &Element, except: Option<u64>) {
        self.deliver_local(user, stanza, except);
        if let Some(fanout) = self.fanout.get() {
            fanout.deliver(user, stanza);
        }
    }

    /// Like `deliver_except`, to this node's sessions only.
    pub fn deliver_local(&self, user: &Username, stanza: &Element, except: Option<u64>) {
        let Ok(users) = self.users.read() else {
            return;
        };
        for b in users.get(user).into_iter().flatten() {
            if Some(b.conn) == except {
                continue;
            }
            let mut copy = stanza.clone();
            copy.set_attr("to", format!("{user}@{}/{}", self.domain, b.resource));
            b.addr.do_send(Deliver(copy));
        }
    }
}
