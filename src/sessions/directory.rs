//! Which users are online on this node, at which resources, and how to reach
//! their connection actors: for roster pushes and presence subscriptions.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use actix::Recipient;

use super::Deliver;
use crate::xmpp::jid::{Domain, Username};
use crate::xmpp::Element;

struct Bound {
    conn: u64,
    resource: String,
    addr: Recipient<Deliver>,
}

/// Carries a stanza to the other nodes of a cluster, whose directories
/// deliver it to the user's sessions there.
pub trait Fanout: Send + Sync {
    fn deliver(&self, user: &Username, stanza: &Element);
}

pub struct SessionDirectory {
    /// The node's domain: what the `to` of a delivered copy names.
    domain: Domain,
    users: RwLock<HashMap<Username, Vec<Bound>>>,
    /// Set on a cluster node: users may be connected to other nodes too.
    fanout: OnceLock<Arc<dyn Fanout>>,
}

impl SessionDirectory {
    pub fn new(domain: Domain) -> SessionDirectory {
        SessionDirectory {
            domain,
            users: RwLock::default(),
            fanout: OnceLock::new(),
        }
    }

    pub fn register(&self, user: &Username, conn: u64, resource: &str, addr: Recipient<Deliver>) {
        if let Ok(mut users) = self.users.write() {
            users.entry(user.clone()).or_default().push(Bound {
                conn,
                resource: resource.to_owned(),
                addr,
            });
        }
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
