//! The stream state machine of one client connection (RFC 6120):
//! plain → secured (STARTTLS) → authenticated (SASL) → bound. Stanzas are
//! handled one at a time, in order; async steps (storage, hashing) finish before
//! the next stanza is looked at. Bytes come in through `on_data` and what goes
//! out leaves through the `Outbox`, so a test drives a session without a socket.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix::Recipient;

use super::auth::SaslState;
use super::io::{IoCommand, Outbox};
use super::pre_auth_slots::PreAuthSlot;
use super::stream_io::StreamIo;
use super::C2sShared;
use crate::registration::ProvenInvite;
use crate::sessions::Deliver;
use crate::xmpp::errors::{Condition, ErrorType, StanzaError, StreamCondition, StreamError};
use crate::xmpp::jid::{normalize_domain, BareJid, FullJid, Username};
use crate::xmpp::reader::{ReadError, StreamEvent, StreamHeader};
use crate::xmpp::sasl::Mechanism;
use crate::xmpp::stanza::IqType;
use crate::xmpp::{ns, Element};

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// Where the stream stands; each stage holds what only it has.
pub(super) enum Stage {
    /// Before STARTTLS: only TLS is on offer.
    Plain,
    /// TLS is on, nobody is logged in: registration and SASL.
    Secured(Unauthenticated),
    /// SASL succeeded; no resource yet.
    Authenticated(Username),
    Bound(Bound),
}

#[derive(Default)]
pub(super) struct Unauthenticated {
    pub sasl: SaslState,
    pub auth_failures: u32,
    /// Invite tokens refused on this stream (XEP-0445 preauth).
    pub preauth_failures: u32,
    /// The invite this stream proved (XEP-0445 preauth).
    pub invite: Option<ProvenInvite>,
}

pub(super) struct Bound {
    pub user: Username,
    pub jid: FullJid,
    /// Initial presence was sent (pending subscription requests go out then).
    pub available: bool,
    /// Where directed presence went while available (RFC 6121 §4.6): they
    /// get `unavailable` when the session goes.
    pub directed: Vec<String>,
}

pub struct Session {
    pub(super) shared: Arc<C2sShared>,
    pub(super) io: StreamIo,
    pub(super) peer: SocketAddr,
    pub(super) stage: Stage,
    /// This stream's actor, for the session directory.
    me: Option<Recipient<Deliver>>,
    conn_id: u64,
    /// `limits.stanzas_per_second` for this stream.
    outgoing: super::rate::TokenBucket,
    /// Its address's place for an unauthenticated connection, until it
    /// authenticates.
    pre_auth_slot: Option<PreAuthSlot>,
}

impl Session {
    pub fn new(shared: Arc<C2sShared>, out: Outbox, peer: SocketAddr) -> Self {
        let io = StreamIo::new(out, shared.reader_limits());
        let outgoing =
            super::rate::TokenBucket::per_second(shared.config.limits.stanzas_per_second);
        Session {
            outgoing,
            shared,
            io,
            peer,
            stage: Stage::Plain,
            me: None,
            conn_id: NEXT_CONN.fetch_add(1, Ordering::Relaxed),
            pre_auth_slot: None,
        }
    }

    /// Takes a place among its address's unauthenticated connections, or,
    /// when they are all taken, ends the stream before reading a byte.
    pub fn take_pre_auth_slot(&mut self) {
        match self.shared.pre_auth_slots.take(self.peer.ip()) {
            Some(slot) => self.pre_auth_slot = Some(slot),
            None => {
                tracing::debug!(peer = %self.peer, "refused: too many unauthenticated connections");
                crate::metrics::rate_limit_hit("pre_auth_connections_per_address");
                self.stream_error(
                    StreamError::new(StreamCondition::PolicyViolation)
                        .with_text("Too many unauthenticated connections from your address"),
                );
            }
        }
    }

    pub(super) fn conn_id(&self) -> u64 {
        self.conn_id
    }

    pub fn set_address(&mut self, me: Recipient<Deliver>) {
        self.me = Some(me);
    }

    pub fn domain(&self) -> &str {
        self.shared.config.domain.as_str()
    }

    /// The logged-in user, once SASL succeeded.
    pub(super) fn user(&self) -> Option<&Username> {
        match &self.stage {
            Stage::Authenticated(user) | Stage::Bound(Bound { user, .. }) => Some(user),
            Stage::Plain | Stage::Secured(_) => None,
        }
    }

    pub(super) fn bound(&self) -> Option<&Bound> {
        match &self.stage {
            Stage::Bound(b) => Some(b),
            _ => None,
        }
    }

    pub(super) fn bound_mut(&mut self) -> Option<&mut Bound> {
        match &mut self.stage {
            Stage::Bound(b) => Some(b),
            _ => None,
        }
    }

    /// The unauthenticated state of a secured stream.
    pub(super) fn unauthenticated(&mut self) -> Option<&mut Unauthenticated> {
        match &mut self.stage {
            Stage::Secured(u) => Some(u),
            _ => None,
        }
    }

    /// A local user's bare JID.
    pub(super) fn jid_of(&self, user: &Username) -> BareJid {
        BareJid::user(user.clone(), self.shared.config.domain.clone())
    }

    /// A stanza from elsewhere on the node; only bound streams take them.
    pub fn deliver(&mut self, stanza: Element) {
        if let Some(text) = crate::sessions::ending(&stanza) {
            if self.bound().is_some() {
                self.stream_error(StreamError::new(StreamCondition::NotAuthorized).with_text(text));
            }
            return;
        }
        if self.bound().is_some() && !self.io.is_closed() {
            self.send(&stanza);
            self.io.flush();
        }
    }

    /// Binds `jid` to this stream and registers it in the session directory.
    pub(super) fn bind(&mut self, user: Username, jid: FullJid) {
        if let Some(me) = &self.me {
            self.shared
                .directory
                .register(&user, self.conn_id, jid.resource.as_str(), me.clone());
        }
        self.stage = Stage::Bound(Bound {
            user,
            jid,
            available: false,
            directed: Vec::new(),
        });
    }

    /// Handles bytes read from the socket.
    pub async fn on_data(&mut self, data: &[u8]) {
        if self.io.is_closed() {
            return;
        }
        match self.io.feed(data) {
            Ok(events) => {
                for event in events {
                    match event {
                        StreamEvent::Open(header) => self.on_open(header),
                        StreamEvent::Stanza(stanza) => self.on_stanza(stanza).await,
                        StreamEvent::Close => self.io.close_stream(),
                    }
                    if self.io.is_closed() || self.io.restarting() {
                        break;
                    }
                }
            }
            Err(e) => self.stream_error(read_error(&e)),
        }
        self.io.finish_restart();
        self.io.flush();
    }

    /// `limits.pre_auth_deadline` has passed since the connection opened.
    pub fn on_pre_auth_deadline(&mut self) {
        if matches!(self.stage, Stage::Plain | Stage::Secured(_)) {
            let limit = self.shared.config.limits.pre_auth_deadline;
            self.stream_error(
                StreamError::new(StreamCondition::PolicyViolation).with_text(format!(
                    "Not authenticated within {}",
                    humantime::format_duration(limit)
                )),
            );
        }
    }

    pub fn on_idle_timeout(&mut self) {
        self.stream_error(StreamError::new(StreamCondition::ConnectionTimeout));
    }

    pub fn on_shutdown(&mut self) {
        self.stream_error(StreamError::new(StreamCondition::SystemShutdown));
    }

    pub(super) fn send(&mut self, element: &Element) {
        self.io.send(element);
    }

    pub(super) fn reply_error(&mut self, stanza: &Element, error: StanzaError) {
        let reply = error.reply_to(stanza);
        self.send(&reply);
    }

    /// Sends a stream error and closes the stream.
    pub(super) fn stream_error(&mut self, error: StreamError) {
        if self.io.is_closed() {
            return;
        }
        tracing::debug!(peer = %self.peer, condition = %error.condition, "stream error");
        metrics::counter!(crate::metrics::STREAM_ERRORS, "condition" => error.condition.as_str())
            .increment(1);
        let domain = self.shared.config.domain.clone();
        self.io.stream_error(&error, domain.as_str());
    }

    fn on_open(&mut self, h: StreamHeader) {
        let domain = self.shared.config.domain.clone();
        self.io.send_header(domain.as_str());
        if h.root_name != "stream" || h.root_ns != ns::STREAM || h.content_ns != ns::CLIENT {
            return self.stream_error(StreamError::new(StreamCondition::InvalidNamespace));
        }
        if let Some(to) = &h.to {
            if normalize_domain(to) != self.domain() {
                return self.stream_error(StreamError::new(StreamCondition::HostUnknown));
            }
        }
        let major = h
            .version
            .as_deref()
            .and_then(|v| v.split('.').next())
            .and_then(|m| m.parse::<u32>().ok());
        if major.unwrap_or(0) < 1 {
            return self.stream_error(
                StreamError::new(StreamCondition::UnsupportedVersion)
                    .with_text("XMPP 1.0 streams only"),
            );
        }
        let features = self.features();
        self.io.send_raw(&features);
    }

    fn features(&self) -> String {
        let mut f = Element::new("features", ns::STREAM);
        match &self.stage {
            Stage::Plain => f.push_child(
                Element::new("starttls", ns::TLS).with_child(Element::new("required", ns::TLS)),
            ),
            Stage::Secured(_) => {
                if self.shared.config.allow_registration {
                    f.push_child(Element::new("register", ns::INVITE));
                    f.push_child(Element::new("register", ns::IBR_TOKEN));
                    f.push_child(Element::new("register", ns::REGISTER_FEATURE));
                }
                let mut mechanisms = Element::new("mechanisms", ns::SASL);
                for m in Mechanism::ALL.into_iter().filter(|m| self.offers(*m)) {
                    mechanisms.push_child(Element::new("mechanism", ns::SASL).with_text(m.name()));
                }
                f.push_child(mechanisms);
            }
            Stage::Authenticated(_) | Stage::Bound(_) => {
                f.push_child(Element::new("bind", ns::BIND));
                f.push_child(Element::new("ver", ns::ROSTER_VER));
                f.push_child(Element::new("sub", ns::PRE_APPROVAL));
                f.push_child(
                    Element::new("session", ns::SESSION)
                        .with_child(Element::new("optional", ns::SESSION)),
                );
            }
        }
        // The stream prefix is declared on the header, so write the wrapper by hand.
        let mut out = String::from("<stream:features>");
        for child in f.children() {
            child.write_to(&mut out, ns::CLIENT);
        }
        out.push_str("</stream:features>");
        out
    }

    async fn on_stanza(&mut self, stanza: Element) {
        crate::metrics::stanza_in();
        if matches!(self.stage, Stage::Plain) {
            return self.on_stanza_before_tls(stanza);
        }
        match stanza.ns() {
            ns::SASL => self.on_sasl(stanza).await,
            ns::TLS => {
                // TLS is already on; a second STARTTLS is a protocol error.
                self.io
                    .send_raw("<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
                self.io.close_stream();
            }
            ns::CLIENT => match stanza.name() {
                "message" | "presence" | "iq"
                    if self.bound().is_some() && !self.outgoing.take() =>
                {
                    self.rate_limited(&stanza)
                }
                "iq" => self.on_iq(stanza).await,
                "message" | "presence" if self.bound().is_none() => {
                    self.stream_error(StreamError::new(StreamCondition::NotAuthorized))
                }
                "message" => self.on_message(stanza).await,
                "presence" => self.on_presence(stanza).await,
                other => tracing::debug!(element = other, "ignoring unknown element"),
            },
            other => tracing::debug!(namespace = other, "ignoring element of unknown namespace"),
        }
    }

    fn on_stanza_before_tls(&mut self, stanza: Element) {
        if stanza.is("starttls", ns::TLS) {
            self.io
                .send_raw("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
            self.io.flush();
            self.io.command(IoCommand::StartTls);
            self.stage = Stage::Secured(Unauthenticated::default());
            self.io.require_restart();
            return;
        }
        if stanza.is("auth", ns::SASL) {
            let failure = crate::xmpp::sasl::SaslError::EncryptionRequired.to_element();
            return self.send(&failure);
        }
        if stanza.is("iq", ns::CLIENT) {
            if IqType::of(&stanza).is_some_and(IqType::is_request) {
                let error = StanzaError::new(ErrorType::Modify, Condition::PolicyViolation)
                    .with_text("Encryption is required");
                self.reply_error(&stanza, error);
            }
            return;
        }
        self.stream_error(
            StreamError::new(StreamCondition::PolicyViolation).with_text("Encryption is required"),
        );
    }

    /// Over `limits.stanzas_per_second`: refused with a `wait` error (none
    /// for errors and results, which must not be answered).
    fn rate_limited(&mut self, stanza: &Element) {
        crate::metrics::rate_limit_hit("stanzas_per_second");
        let t = stanza.attr("type");
        if t == Some("error") || (stanza.name() == "iq" && t == Some("result")) {
            return;
        }
        let e = StanzaError::new(ErrorType::Wait, Condition::ResourceConstraint)
            .with_text("Too many stanzas; slow down");
        self.reply_error(stanza, e);
    }

    /// Called after SASL success: a new stream follows.
    pub(super) fn authenticated(&mut self, user: Username) {
        tracing::debug!(peer = %self.peer, user = %user, "authenticated");
        self.stage = Stage::Authenticated(user);
        self.pre_auth_slot = None;
        self.io.require_restart();
        self.io.command(IoCommand::SetIdleTimeout(None));
    }

    /// Called after the account was removed: the stream cannot go on.
    pub(super) fn account_removed(&mut self) {
        self.stream_error(
            StreamError::new(StreamCondition::NotAuthorized).with_text("Account removed"),
        );
    }
}

fn read_error(e: &ReadError) -> StreamError {
    match e {
        ReadError::NotWellFormed(_) => StreamError::new(StreamCondition::NotWellFormed),
        ReadError::Restricted(what) => StreamError::new(StreamCondition::RestrictedXml)
            .with_text(format!("{what} not allowed")),
        ReadError::TooBig(_) => StreamError::new(StreamCondition::PolicyViolation)
            .with_text("XML stanza is too big")
            .with_app(Element::new("stanza-too-big", ns::XMPP_ERRORS)),
        ReadError::TooDeep(_) => {
            StreamError::new(StreamCondition::PolicyViolation).with_text("XML is nested too deeply")
        }
        ReadError::TooManyAttributes(_) => StreamError::new(StreamCondition::PolicyViolation)
            .with_text("too many attributes on one element"),
        ReadError::TooManyNamespaceDeclarations(_) => {
            StreamError::new(StreamCondition::PolicyViolation)
                .with_text("too many namespace declarations on one element")
        }
        ReadError::NameTooLong(_) => {
            StreamError::new(StreamCondition::PolicyViolation).with_text("XML name too long")
        }
        ReadError::NamespaceTooLong(_) => {
            StreamError::new(StreamCondition::PolicyViolation).with_text("namespace name too long")
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Stage::Bound(b) = &mut self.stage {
            self.shared.directory.unregister(&b.user, self.conn_id);
            // Clean close or not, its contacts learn that it is gone.
            if b.available {
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    let gone = super::availability::announce_gone(
                        self.shared.clone(),
                        b.user.clone(),
                        b.jid.clone(),
                        std::mem::take(&mut b.directed),
                    );
                    rt.spawn(gone);
                }
            }
        }
    }
}
