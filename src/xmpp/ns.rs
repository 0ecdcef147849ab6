//! XML namespaces used on the wire.

pub const STREAM: &str = "http://etherx.jabber.org/streams";
pub const CLIENT: &str = "jabber:client";
pub const XML: &str = "http://www.w3.org/XML/1998/namespace";
pub const TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
pub const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
pub const BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
pub const SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
pub const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
pub const STREAMS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
pub const XMPP_ERRORS: &str = "urn:xmpp:errors";
pub const REGISTER: &str = "jabber:iq:register";
pub const REGISTER_FEATURE: &str = "http://jabber.org/features/iq-register";
pub const DATA_FORMS: &str = "jabber:x:data";
pub const PING: &str = "urn:xmpp:ping";
pub const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
pub const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
pub const PARS: &str = "urn:xmpp:pars:0";
pub const IBR_TOKEN: &str = "urn:xmpp:ibr-token:0";
pub const INVITE: &str = "urn:xmpp:invite";
pub const ROSTER: &str = "jabber:iq:roster";
pub const ROSTER_VER: &str = "urn:xmpp:features:rosterver";
pub const PRE_APPROVAL: &str = "urn:xmpp:features:pre-approval";
pub const DELAY: &str = "urn:xmpp:delay";
pub const COMMANDS: &str = "http://jabber.org/protocol/commands";
