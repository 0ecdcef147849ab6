//! The node's sessions: which users are bound where (on this node, and through
//! a fanout on the others), and how a stanza reaches them. Registration, the
//! peer service and every client stream deliver through here.

mod directory;
mod ending;
pub mod kept;
mod remote;
mod roster_push;
pub mod routing;

pub use directory::{Fanout, Presence, SessionDirectory};
pub use ending::{end_session, ending, is_take_kept, take_kept};
pub use remote::RemoteSession;
pub use roster_push::{roster_item_element, roster_push, roster_push_versioned};

/// A stanza for one bound stream from elsewhere on the node (roster push,
/// presence); the stream's connection actor handles it.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct Deliver(pub crate::xmpp::Element);
