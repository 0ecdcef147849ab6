//! The stream state machine of one client connection (RFC 6120):
//! plain → secured (STARTTLS) → authenticated (SASL) → bound. Stanzas are
//! handled one at a time, in order; async steps (storage, hashing) finish before
//! the next stanza is looked at.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix::Recipient;

use super::auth::SaslState;
use super::connection::Deliver;
use super::io::{IoCommand, Outbox};
use super::C2sShared;
use crate::xmpp::errors::{ErrorType, StanzaError, StreamError};
use crate::xmpp::jid::{normalize_domain, Username};
use crate::xmpp::reader::{ReadError, StreamEvent, StreamHeader, StreamReader};
use crate::xmpp::sasl::Mechanism;
use crate::xmpp::{ns, stream, Element};

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

pub struct Session {
    pub(super) shared: Arc<C2sShared>,
    out: Outbox,
    pub(super) peer: SocketAddr,
    reader: StreamReader,
    header_sent: bool,
    pub(super) secured: bool,
    pub(super) sasl: SaslState,
    pub(super) auth_failures: u32,
    pub(super) user: Option<Username>,
    pub(super) resource: Option<String>,
    /// The invite this unauthenticated stream proved (XEP-0445 preauth).
    pub(super) invite: Option<crate::registration::ProvenInvite>,
    /// This stream's actor, for the session directory.
    me: Option<Recipient<Deliver>>,
    conn_id: u64,
    /// Initial presence was sent (pending subscription requests go out then).
    pub(super) available: bool,
    /// The peer must open a new stream (after STARTTLS or SASL success).
    restart: bool,
    closed: bool,
    outbuf: String,
}

impl Session {
    pub fn new(shared: Arc<C2sShared>, out: Outbox, peer: SocketAddr) -> Self {
        let reader = StreamReader::new(shared.reader_limits());
        Session {
            shared,
            out,
            peer,
            reader,
            header_sent: false,
            secured: false,
            sasl: SaslState::Idle,
            auth_failures: 0,
            user: None,
            resource: None,
            invite: None,
            me: None,
            conn_id: NEXT_CONN.fetch_add(1, Ordering::Relaxed),
            available: false,
            restart: false,
            closed: false,
            outbuf: String::new(),
        }
    }

    pub(super) fn conn_id(&self) -> u64 {
        self.conn_id
    }

    pub fn set_address(&mut self, me: Recipient<Deliver>) {
        self.me = Some(me);
    }

    /// A stanza from elsewhere on the node; only bound streams take them.
    pub fn deliver(&mut self, stanza: Element) {
        if self.resource.is_some() && !self.closed {
            self.send(&stanza);
            self.flush();
        }
    }

    /// Registers the bound resource in the session directory.
    pub(super) fn bound(&mut self, resource: String) {
        if let (Some(user), Some(me)) = (&self.user, &self.me) {
            self.shared
                .directory
                .register(user, self.conn_id, &resource, me.clone());
        }
        self.resource = Some(resource);
    }

    pub fn domain(&self) -> &str {
        &self.shared.config.domain
    }

    /// Handles bytes read from the socket.
    pub async fn on_data(&mut self, data: &[u8]) {
        if self.closed {
            return;
        }
        match self.reader.feed(data) {
            Ok(events) => {
                for event in events {
                    match event {
                        StreamEvent::Open(header) => self.on_open(header),
                        StreamEvent::Stanza(stanza) => self.on_stanza(stanza).await,
                        StreamEvent::Close => self.on_close(),
                    }
                    if self.closed || self.restart {
                        break;
                    }
                }
            }
            Err(e) => self.stream_error(read_error(&e)),
        }
        if self.restart {
            // Anything after the restart point was pipelined: drop it.
            self.restart = false;
            self.reader.reset();
            self.header_sent = false;
        }
        self.flush();
    }

    pub fn on_idle_timeout(&mut self) {
        self.stream_error(StreamError::new("connection-timeout"));
    }

    pub fn on_shutdown(&mut self) {
        self.stream_error(StreamError::new("system-shutdown"));
    }

    pub(super) fn send(&mut self, element: &Element) {
        element.write_to(&mut self.outbuf, ns::CLIENT);
        crate::metrics::stanza_out();
    }

    fn flush(&mut self) {
        if !self.outbuf.is_empty() {
            let data = std::mem::take(&mut self.outbuf).into_bytes();
            self.out.command(IoCommand::Send(data));
        }
    }

    /// Sends a stream error and closes the stream.
    pub(super) fn stream_error(&mut self, error: StreamError) {
        if self.closed {
            return;
        }
        tracing::debug!(peer = %self.peer, condition = error.condition, "stream error");
        metrics::counter!(crate::metrics::STREAM_ERRORS, "condition" => error.condition)
            .increment(1);
        if !self.header_sent {
            self.send_header();
        }
        self.outbuf.push_str(&error.to_xml());
        self.outbuf.push_str(stream::CLOSE);
        self.close();
    }

    fn close(&mut self) {
        self.flush();
        self.out.command(IoCommand::Close);
        self.closed = true;
    }

    fn on_close(&mut self) {
        if self.header_sent {
            self.outbuf.push_str(stream::CLOSE);
        }
        self.close();
    }

    fn send_header(&mut self) {
        let id = crate::secrets::random_id(12);
        self.outbuf.push_str(&stream::header(self.domain(), &id));
        self.header_sent = true;
    }

    fn on_open(&mut self, h: StreamHeader) {
        self.send_header();
        if h.root_name != "stream" || h.root_ns != ns::STREAM || h.content_ns != ns::CLIENT {
            return self.stream_error(StreamError::new("invalid-namespace"));
        }
        if let Some(to) = &h.to {
            if normalize_domain(to) != self.domain() {
                return self.stream_error(StreamError::new("host-unknown"));
            }
        }
        let major = h
            .version
            .as_deref()
            .and_then(|v| v.split('.').next())
            .and_then(|m| m.parse::<u32>().ok());
        if major.unwrap_or(0) < 1 {
            return self.stream_error(
                StreamError::new("unsupported-version").with_text("XMPP 1.0 streams only"),
            );
        }
        let features = self.features();
        self.outbuf.push_str(&features);
    }

    fn features(&self) -> String {
        let mut f = Element::new("features", ns::STREAM);
        if !self.secured {
            f.push_child(
                Element::new("starttls", ns::TLS).with_child(Element::new("required", ns::TLS)),
            );
        } else if self.user.is_none() {
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
        } else {
            f.push_child(Element::new("bind", ns::BIND));
            f.push_child(
                Element::new("session", ns::SESSION)
                    .with_child(Element::new("optional", ns::SESSION)),
            );
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
        if !self.secured {
            return self.on_stanza_before_tls(stanza);
        }
        match stanza.ns() {
            ns::SASL => self.on_sasl(stanza).await,
            ns::TLS => {
                // TLS is already on; a second STARTTLS is a protocol error.
                self.outbuf
                    .push_str("<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
                self.outbuf.push_str(stream::CLOSE);
                self.close();
            }
            ns::CLIENT => match stanza.name() {
                "iq" => self.on_iq(stanza).await,
                "message" | "presence" if self.resource.is_none() => {
                    self.stream_error(StreamError::new("not-authorized"))
                }
                "message" => self.on_message(stanza),
                "presence" => self.on_presence(stanza).await,
                other => tracing::debug!(element = other, "ignoring unknown element"),
            },
            other => tracing::debug!(namespace = other, "ignoring element of unknown namespace"),
        }
    }

    fn on_stanza_before_tls(&mut self, stanza: Element) {
        if stanza.is("starttls", ns::TLS) {
            self.outbuf
                .push_str("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
            self.flush();
            self.out.command(IoCommand::StartTls);
            self.secured = true;
            self.restart = true;
            return;
        }
        if stanza.is("auth", ns::SASL) {
            let failure = crate::xmpp::sasl::SaslError::EncryptionRequired.to_element();
            return self.send(&failure);
        }
        if stanza.is("iq", ns::CLIENT) {
            if matches!(stanza.attr("type"), Some("get" | "set")) {
                let error = StanzaError::new(ErrorType::Modify, "policy-violation")
                    .with_text("Encryption is required");
                self.send(&error.reply_to(&stanza));
            }
            return;
        }
        self.stream_error(StreamError::new("policy-violation").with_text("Encryption is required"));
    }

    fn on_message(&mut self, message: Element) {
        // This node delivers no messages: tell the sender rather than drop silently.
        if message.attr("type") != Some("error") {
            let reply = StanzaError::service_unavailable().reply_to(&message);
            self.send(&reply);
        }
    }

    /// Called after SASL success.
    pub(super) fn authenticated(&mut self, user: Username) {
        tracing::debug!(peer = %self.peer, user = %user, "authenticated");
        self.user = Some(user);
        self.restart = true;
        self.out.command(IoCommand::SetIdleTimeout(None));
    }

    /// Called after the account was removed: the stream cannot go on.
    pub(super) fn account_removed(&mut self) {
        self.stream_error(StreamError::new("not-authorized").with_text("Account removed"));
    }
}

fn read_error(e: &ReadError) -> StreamError {
    match e {
        ReadError::NotWellFormed(_) => StreamError::new("not-well-formed"),
        ReadError::Restricted(what) => {
            StreamError::new("restricted-xml").with_text(format!("{what} not allowed"))
        }
        ReadError::TooBig(_) => StreamError::new("policy-violation")
            .with_text("XML stanza is too big")
            .with_app(Element::new("stanza-too-big", ns::XMPP_ERRORS)),
        ReadError::TooDeep(_) => {
            StreamError::new("policy-violation").with_text("XML is nested too deeply")
        }
        ReadError::TooManyAttributes(_) => {
            StreamError::new("policy-violation").with_text("too many attributes on one element")
        }
        ReadError::TooManyNamespaceDeclarations(_) => StreamError::new("policy-violation")
            .with_text("too many namespace declarations on one element"),
        ReadError::NameTooLong(_) => {
            StreamError::new("policy-violation").with_text("XML name too long")
        }
        ReadError::NamespaceTooLong(_) => {
            StreamError::new("policy-violation").with_text("namespace name too long")
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let (Some(user), Some(_)) = (&self.user, &self.resource) {
            self.shared.directory.unregister(user, self.conn_id);
        }
    }
}
