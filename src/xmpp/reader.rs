//! Incremental reader for an XMPP stream: bytes go in as they arrive, whole
//! stream events come out (the stream header, each complete first-level
//! element, the stream close).
//!
//! `scan` finds where each token ends, resuming across reads, so every byte is
//! examined about once however the input is split; quick-xml then tokenises
//! each complete token. This module resolves namespaces, builds elements, and
//! enforces the limits: partial tokens stay in the buffer, partial elements on
//! the open-element stack.
//!
//! What a stanza costs is bounded by its size: see [`TREE_HEAP_PER_BYTE`].

mod scan;
mod scopes;

use std::collections::HashSet;
use std::sync::Arc;

use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

use super::element::Element;
use scan::{Context, Scanner, Token};
use scopes::Scopes;

/// The stanzas parsed from n bytes of input hold at most
/// `TREE_HEAP_PER_BYTE * n + TREE_HEAP_FIXED` bytes of heap (as requested from
/// the allocator, the namespaces they share counted once). The worst inputs,
/// measured by `tests/tree_memory.rs`, take 19.6 (an empty element and a
/// one-character text node, over and over); 32 leaves room, and is also what
/// glibc's malloc really spends on that worst case. The `tree_memory` fuzz
/// target enforces it.
pub const TREE_HEAP_PER_BYTE: usize = 32;

/// Slack for the fixed part of a stream. None is needed so far (the stream
/// header's bytes pay for the namespaces it declares); kept small so the
/// bound stays a per-byte one.
pub const TREE_HEAP_FIXED: usize = 256;

#[derive(Debug, Clone, Copy)]
pub struct ReaderLimits {
    /// Largest first-level element, in bytes of input (also bounds the header).
    pub max_stanza_size: usize,
    /// Deepest nesting inside a stanza (the stanza itself is depth 1).
    pub max_depth: usize,
    /// Attributes on one element, namespace declarations not counted.
    pub max_attributes: usize,
    /// Namespace declarations (`xmlns`, `xmlns:p`) on one element, the stream
    /// header included.
    pub max_namespace_declarations: usize,
    /// Longest element or attribute name, prefix included, in bytes.
    pub max_name_length: usize,
    /// Longest namespace URI, in bytes.
    pub max_namespace_length: usize,
}

impl Default for ReaderLimits {
    fn default() -> Self {
        ReaderLimits {
            max_stanza_size: 256 * 1024,
            max_depth: 32,
            // Real stanzas carry a handful (Jingle ICE candidates, about a
            // dozen, are the most seen); the stream header seven.
            max_attributes: 64,
            max_namespace_declarations: 32,
            max_name_length: 1024,
            max_namespace_length: 1024,
        }
    }
}

/// The opening `<stream:stream>` as the peer sent it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamHeader {
    /// Namespace of the root element (must be the streams namespace).
    pub root_ns: String,
    pub root_name: String,
    /// Default namespace for the stream's content (`jabber:client` for clients).
    pub content_ns: String,
    pub to: Option<String>,
    pub from: Option<String>,
    pub version: Option<String>,
    pub lang: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    Open(StreamHeader),
    Stanza(Element),
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("not well-formed: {0}")]
    NotWellFormed(String),
    #[error("restricted XML: {0}")]
    Restricted(&'static str),
    #[error("stanza larger than {0} bytes")]
    TooBig(usize),
    #[error("elements nested deeper than {0}")]
    TooDeep(usize),
    #[error("more than {0} attributes on one element")]
    TooManyAttributes(usize),
    #[error("more than {0} namespace declarations on one element")]
    TooManyNamespaceDeclarations(usize),
    #[error("name longer than {0} bytes")]
    NameTooLong(usize),
    #[error("namespace longer than {0} bytes")]
    NamespaceTooLong(usize),
}

/// The UTF-8 byte order mark.
const BOM: &[u8] = b"\xEF\xBB\xBF";

fn malformed(msg: impl Into<String>) -> ReadError {
    ReadError::NotWellFormed(msg.into())
}

#[derive(Debug)]
struct OpenElement {
    element: Element,
    qname: Box<str>,
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    Prolog { seen_decl: bool },
    InRoot { qname: Box<str> },
    Closed,
}

#[derive(Debug)]
pub struct StreamReader {
    limits: ReaderLimits,
    buf: Vec<u8>,
    phase: Phase,
    scopes: Scopes,
    open: Vec<OpenElement>,
    /// Where the scan of the token at the start of `buf` stopped.
    scanner: Scanner,
    /// Input bytes consumed by the stanza being built.
    stanza_bytes: usize,
    /// Nothing but (part of) a byte order mark seen yet.
    at_stream_start: bool,
    /// Bytes copied or tokenised besides the scan (tests check it stays linear).
    handled: u64,
}

impl StreamReader {
    pub fn new(limits: ReaderLimits) -> Self {
        StreamReader {
            limits,
            buf: Vec::new(),
            phase: Phase::Prolog { seen_decl: false },
            scopes: Scopes::default(),
            open: Vec::new(),
            scanner: Scanner::default(),
            stanza_bytes: 0,
            at_stream_start: true,
            handled: 0,
        }
    }

    /// Starts over for a new stream on the same connection (after STARTTLS or
    /// SASL). Buffered bytes are dropped: nothing may be pipelined across a restart.
    pub fn reset(&mut self) {
        *self = StreamReader::new(self.limits);
    }

    /// Bytes received but not yet part of a complete token.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Bytes examined, copied and tokenised since the stream started: the
    /// reader's work, which must stay proportional to its input.
    #[cfg(test)]
    fn work(&self) -> u64 {
        self.scanner.examined + self.handled
    }

    /// Feeds bytes; returns the events they complete. After an error or the
    /// stream close, further input is ignored.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<StreamEvent>, ReadError> {
        let mut events = Vec::new();
        if self.is_closed() {
            return Ok(events);
        }
        self.buf.extend_from_slice(data);
        self.handled += data.len() as u64;
        if self.at_stream_start {
            // A byte order mark may open a stream: drop it before parsing.
            if BOM.starts_with(&self.buf) {
                return Ok(events);
            }
            if self.buf.starts_with(BOM) {
                self.buf.drain(..BOM.len());
            }
            self.at_stream_start = false;
        }
        let buf = std::mem::take(&mut self.buf);
        let parsed = self.parse(&buf, &mut events);
        self.buf = buf;
        let consumed = match parsed {
            Ok(n) => n,
            Err(e) => {
                self.phase = Phase::Closed;
                return Err(e);
            }
        };
        if consumed > 0 {
            // What stays is the pending token, which began in this read since
            // one before it ended: moving it costs no more than the read itself.
            self.handled += (self.buf.len() - consumed) as u64;
            self.buf.drain(..consumed);
        }
        if !self.is_closed() {
            let pending = self.stanza_bytes + self.buf.len();
            if pending > self.limits.max_stanza_size {
                self.phase = Phase::Closed;
                return Err(ReadError::TooBig(self.limits.max_stanza_size));
            }
        }
        Ok(events)
    }

    /// Handles as many whole tokens as `buf` holds; returns how many bytes they took.
    fn parse(&mut self, buf: &[u8], events: &mut Vec<StreamEvent>) -> Result<usize, ReadError> {
        let mut consumed = 0;
        while !self.is_closed() && consumed < buf.len() {
            let cx = Context {
                in_stanza: !self.open.is_empty(),
                in_prolog: matches!(self.phase, Phase::Prolog { .. }),
                decl_allowed: self.phase == Phase::Prolog { seen_decl: false },
            };
            let Some((len, token)) = self.scanner.next_token(&buf[consumed..], cx)? else {
                break;
            };
            let bytes = &buf[consumed..consumed + len];
            consumed += len;
            self.handled += len as u64;
            if !self.open.is_empty() {
                self.stanza_bytes += len;
                if self.stanza_bytes > self.limits.max_stanza_size {
                    return Err(ReadError::TooBig(self.limits.max_stanza_size));
                }
            }
            match token {
                // Between stanzas the scan let through whitespace only.
                Token::Text if !cx.in_stanza => {}
                Token::Text => self.handle_text(bytes)?,
                Token::Markup => self.handle_markup(bytes, events)?,
            }
        }
        Ok(consumed)
    }

    /// Character data inside a stanza, references resolved.
    fn handle_text(&mut self, mut bytes: &[u8]) -> Result<(), ReadError> {
        let Some(top) = self.open.last_mut() else {
            return Err(malformed("text between stanzas"));
        };
        // quick-xml drops a byte order mark at the start of its input; inside
        // a stanza it is a real character (U+FEFF), so take it here.
        while let Some(rest) = bytes.strip_prefix(BOM) {
            top.element.push_str("\u{FEFF}");
            bytes = rest;
        }
        let mut reader = Reader::from_reader(bytes);
        reader.config_mut().trim_text(false);
        loop {
            match reader.read_event() {
                Ok(Event::Text(t)) => top
                    .element
                    .push_str(&t.xml_content(XmlVersion::Implicit1_0)),
                Ok(Event::GeneralRef(r)) => {
                    let mut utf8 = [0; 4];
                    top.element
                        .push_str(resolve_reference(&r)?.encode_utf8(&mut utf8));
                }
                Ok(Event::Eof) => return Ok(()),
                Ok(_) => return Err(malformed("markup inside character data")),
                Err(e) => return Err(malformed(e.to_string())),
            }
        }
    }

    /// One complete tag, declaration or CDATA section.
    fn handle_markup(
        &mut self,
        bytes: &[u8],
        events: &mut Vec<StreamEvent>,
    ) -> Result<(), ReadError> {
        let mut reader = Reader::from_reader(bytes);
        let config = reader.config_mut();
        config.check_end_names = false;
        config.allow_unmatched_ends = true;
        config.expand_empty_elements = false;
        config.trim_text(false);
        let event = reader.read_event().map_err(|e| malformed(e.to_string()))?;
        // The scan and quick-xml agree on where tokens end; if they did not,
        // the rest would be lost, so refuse rather than guess.
        if reader.buffer_position() != bytes.len() as u64 {
            debug_assert!(false, "token boundary disagrees: {bytes:?}");
            return Err(malformed("token boundary"));
        }
        match &self.phase {
            Phase::Prolog { seen_decl } => self.handle_prolog(event, *seen_decl, events),
            Phase::InRoot { .. } => self.handle_content(event, bytes.len(), events),
            Phase::Closed => Ok(()),
        }
    }

    fn handle_prolog(
        &mut self,
        event: Event<'_>,
        seen_decl: bool,
        events: &mut Vec<StreamEvent>,
    ) -> Result<(), ReadError> {
        match event {
            Event::Decl(_) if !seen_decl => {
                self.phase = Phase::Prolog { seen_decl: true };
                Ok(())
            }
            Event::Start(ref start) | Event::Empty(ref start) => {
                let empty = matches!(event, Event::Empty(_));
                let element = self.build_element(start)?;
                let header = StreamHeader {
                    root_ns: element.ns().to_owned(),
                    root_name: element.name().to_owned(),
                    content_ns: self
                        .scopes
                        .default_ns()
                        .map(|d| d.to_string())
                        .unwrap_or_default(),
                    to: element.attr("to").map(str::to_owned),
                    from: element.attr("from").map(str::to_owned),
                    version: element.attr("version").map(str::to_owned),
                    lang: element.attr("xml:lang").map(str::to_owned),
                };
                events.push(StreamEvent::Open(header));
                if empty {
                    self.phase = Phase::Closed;
                    events.push(StreamEvent::Close);
                } else {
                    self.phase = Phase::InRoot {
                        qname: start.name().as_ref().into(),
                    };
                }
                Ok(())
            }
            Event::Decl(_) | Event::PI(_) => Err(ReadError::Restricted("processing instruction")),
            Event::DocType(_) => Err(ReadError::Restricted("document type declaration")),
            Event::Comment(_) => Err(ReadError::Restricted("comment")),
            _ => Err(malformed("content before the stream header")),
        }
    }

    fn handle_content(
        &mut self,
        event: Event<'_>,
        len: usize,
        events: &mut Vec<StreamEvent>,
    ) -> Result<(), ReadError> {
        match event {
            Event::Start(start) => {
                if self.open.is_empty() {
                    self.stanza_bytes = len;
                }
                if self.open.len() >= self.limits.max_depth {
                    return Err(ReadError::TooDeep(self.limits.max_depth));
                }
                let element = self.build_element(&start)?;
                self.open.push(OpenElement {
                    element,
                    qname: start.name().as_ref().into(),
                });
            }
            Event::Empty(start) => {
                if self.open.len() >= self.limits.max_depth {
                    return Err(ReadError::TooDeep(self.limits.max_depth));
                }
                if self.open.is_empty() && len > self.limits.max_stanza_size {
                    return Err(ReadError::TooBig(self.limits.max_stanza_size));
                }
                let element = self.build_element(&start)?;
                self.scopes.pop();
                self.complete(element, events);
            }
            Event::End(end) => {
                let Some(top) = self.open.pop() else {
                    let Phase::InRoot { qname } = &self.phase else {
                        return Err(malformed("unexpected end tag"));
                    };
                    if end.name().as_ref() != &**qname {
                        return Err(malformed("mismatched end tag of the stream"));
                    }
                    self.phase = Phase::Closed;
                    events.push(StreamEvent::Close);
                    return Ok(());
                };
                if end.name().as_ref() != &*top.qname {
                    return Err(malformed(format!("end tag does not match <{}>", top.qname)));
                }
                self.scopes.pop();
                self.complete(top.element, events);
            }
            Event::CData(c) => match self.open.last_mut() {
                Some(top) => top
                    .element
                    .push_str(&c.xml_content(XmlVersion::Implicit1_0)),
                None => return Err(malformed("CDATA between stanzas")),
            },
            Event::Decl(_) | Event::PI(_) => {
                return Err(ReadError::Restricted("processing instruction"))
            }
            Event::DocType(_) => return Err(ReadError::Restricted("document type declaration")),
            Event::Comment(_) => return Err(ReadError::Restricted("comment")),
            Event::Text(_) | Event::GeneralRef(_) | Event::Eof => {
                return Err(malformed("character data where markup was expected"))
            }
        }
        Ok(())
    }

    /// Attaches a finished element to its parent, or emits it as a stanza.
    fn complete(&mut self, mut element: Element, events: &mut Vec<StreamEvent>) {
        element.shrink_to_fit();
        match self.open.last_mut() {
            Some(parent) => parent.element.push_child(element),
            None => {
                self.stanza_bytes = 0;
                events.push(StreamEvent::Stanza(element));
            }
        }
    }

    /// Builds the element a start tag opens and enters its namespace scope
    /// (the caller leaves it again for an empty element).
    fn build_element(&mut self, start: &BytesStart<'_>) -> Result<Element, ReadError> {
        let limits = self.limits;
        let qname = start.name().0;
        if qname.len() > limits.max_name_length {
            return Err(ReadError::NameTooLong(limits.max_name_length));
        }
        let mut keys = SeenKeys::default();
        let mut default = None;
        let mut prefixes = Vec::new();
        let mut attrs = Vec::new();
        for attr in start.attributes().with_checks(false) {
            let attr = attr.map_err(|e| malformed(format!("attribute: {e}")))?;
            let key = attr.key.0;
            if key.len() > limits.max_name_length {
                return Err(ReadError::NameTooLong(limits.max_name_length));
            }
            if !keys.insert(key) {
                return Err(malformed(format!("duplicate attribute '{key}'")));
            }
            let declares = key == "xmlns" || key.starts_with("xmlns:");
            if declares {
                let declared = usize::from(default.is_some()) + prefixes.len();
                if declared >= limits.max_namespace_declarations {
                    return Err(ReadError::TooManyNamespaceDeclarations(
                        limits.max_namespace_declarations,
                    ));
                }
            } else if attrs.len() >= limits.max_attributes {
                return Err(ReadError::TooManyAttributes(limits.max_attributes));
            }
            let value = attr
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|e| malformed(format!("attribute value: {e}")))?;
            if declares && value.len() > limits.max_namespace_length {
                return Err(ReadError::NamespaceTooLong(limits.max_namespace_length));
            }
            if key == "xmlns" {
                default = Some(Arc::from(&*value));
            } else if let Some(prefix) = key.strip_prefix("xmlns:") {
                if value.is_empty() {
                    return Err(malformed("empty namespace for a prefix"));
                }
                prefixes.push((prefix, Arc::from(&*value)));
            } else {
                attrs.push((key, value.into_owned().into_boxed_str()));
            }
        }
        let default = match default {
            Some(d) => d,
            None => match self.scopes.default_ns() {
                Some(d) => d.clone(),
                // Before the stream header: no namespace.
                None => Arc::from(""),
            },
        };
        self.scopes.push(default.clone(), prefixes);
        let (ns, local) = match qname.split_once(':') {
            Some((prefix, local)) => match self.scopes.resolve(prefix) {
                Some(ns) => (ns.clone(), local),
                None => return Err(malformed(format!("undeclared prefix '{prefix}'"))),
            },
            None => (default, qname),
        };
        let mut element = Element::in_shared_ns(local.into(), ns);
        element.reserve_attrs(attrs.len());
        for (key, value) in attrs {
            element.push_new_attr(key.into(), value);
        }
        Ok(element)
    }
}

/// Attribute names seen on one element: a few are searched in place, more
/// are hashed, so that duplicate detection stays constant time per attribute.
#[derive(Default)]
struct SeenKeys<'a> {
    few: [&'a str; SeenKeys::FEW],
    len: usize,
    many: HashSet<&'a str>,
}

impl<'a> SeenKeys<'a> {
    const FEW: usize = 8;

    /// Records `key`; false if it was seen already.
    fn insert(&mut self, key: &'a str) -> bool {
        if self.len < Self::FEW {
            if self.few[..self.len].contains(&key) {
                return false;
            }
            self.few[self.len] = key;
            self.len += 1;
            return true;
        }
        if self.many.is_empty() {
            self.many.extend(self.few);
        }
        self.many.insert(key)
    }
}

fn resolve_reference(r: &quick_xml::events::BytesRef<'_>) -> Result<char, ReadError> {
    let c = match r.resolve_char_ref() {
        Ok(Some(c)) => c,
        Ok(None) => match &**r {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "apos" => '\'',
            "quot" => '"',
            other => {
                return Err(ReadError::Restricted(if other.is_empty() {
                    "empty entity reference"
                } else {
                    "entity reference"
                }))
            }
        },
        Err(e) => return Err(malformed(format!("character reference: {e}"))),
    };
    let valid = matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}');
    if valid {
        Ok(c)
    } else {
        Err(malformed("character reference to a character XML forbids"))
    }
}

/// Parses one stanza serialized on its own (as `Element::to_stanza_string`
/// writes it, in the `jabber:client` namespace), e.g. from another node.
pub fn parse_stanza(xml: &str, limits: ReaderLimits) -> Result<Element, ReadError> {
    let mut reader = StreamReader::new(limits);
    let mut events = reader.feed(
        b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
    )?;
    events.extend(reader.feed(xml.as_bytes())?);
    events
        .into_iter()
        .find_map(|e| match e {
            StreamEvent::Stanza(el) => Some(el),
            _ => None,
        })
        .ok_or_else(|| malformed("no complete stanza"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmpp::element::Node;
    use crate::xmpp::fuzzing::stanzas_heap;
    use crate::xmpp::ns;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

    fn reader() -> StreamReader {
        StreamReader::new(ReaderLimits::default())
    }

    fn feed_all(r: &mut StreamReader, input: &[u8]) -> Result<Vec<StreamEvent>, ReadError> {
        r.feed(input)
    }

    fn stanzas(events: &[StreamEvent]) -> Vec<&Element> {
        events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Stanza(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn reads_header_stanzas_and_close() {
        let mut r = reader();
        let input = format!(
            "{HEADER}<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq> \n\
             <message><body>a &amp; b &#x263A;<![CDATA[<x>]]></body></message></stream:stream>"
        );
        let events = feed_all(&mut r, input.as_bytes()).unwrap();
        let StreamEvent::Open(h) = &events[0] else {
            panic!("no header: {events:?}")
        };
        assert_eq!(h.root_ns, ns::STREAM);
        assert_eq!(h.root_name, "stream");
        assert_eq!(h.content_ns, ns::CLIENT);
        assert_eq!(h.to.as_deref(), Some("localhost"));
        let s = stanzas(&events);
        assert_eq!(s.len(), 2);
        assert!(s[0].is("iq", ns::CLIENT));
        assert!(s[0].has_child("ping", ns::PING));
        let body = s[1].get_child("body", ns::CLIENT).unwrap();
        assert_eq!(body.text(), "a & b \u{263A}<x>");
        assert_eq!(events.last(), Some(&StreamEvent::Close));
        assert!(r.is_closed());
    }

    #[test]
    fn byte_at_a_time_gives_the_same_events() {
        let input = format!(
            "{HEADER}<iq type='set' id='a&apos;b'><query xmlns='jabber:iq:register'>\
             <username>j\u{00fc}rgen</username><password>p&lt;w</password></query></iq>\
             <presence/></stream:stream>"
        );
        let whole = feed_all(&mut reader(), input.as_bytes()).unwrap();
        let mut r = reader();
        let mut split = Vec::new();
        for b in input.as_bytes() {
            split.extend(r.feed(std::slice::from_ref(b)).unwrap());
        }
        assert_eq!(whole, split);
        assert_eq!(stanzas(&split)[0].attr("id"), Some("a'b"));
    }

    #[test]
    fn prefixed_elements_resolve() {
        let mut r = reader();
        let input = format!(
            "{HEADER}<x:iq xmlns:x='jabber:client' type='get'><q:query xmlns:q='urn:q' xml:lang='en'/></x:iq>"
        );
        let events = r.feed(input.as_bytes()).unwrap();
        let s = stanzas(&events);
        assert!(s[0].is("iq", ns::CLIENT));
        let q = s[0].get_child("query", "urn:q").unwrap();
        assert_eq!(q.attr("xml:lang"), Some("en"));
    }

    #[test]
    fn malformed_xml_is_an_error() {
        for bad in [
            "<iq></message>",
            "<iq a='1' a='2'/>",
            "<p:iq/>",
            "just text",
            "<iq>&#0;</iq>",
            "<iq>\u{1}</iq>",
        ] {
            let mut r = reader();
            r.feed(HEADER.as_bytes()).unwrap();
            let err = r.feed(bad.as_bytes()).and_then(|mut ev| {
                // a stanza whose end has not come yet is fine; end the stream to force it
                ev.extend(r.feed(b"</stream:stream>")?);
                Ok(ev)
            });
            assert!(
                matches!(err, Err(ReadError::NotWellFormed(_))),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn restricted_xml_is_refused_early() {
        for (prefix, bad) in [
            ("", "<!DOCTYPE foo [<!ENTITY x 'y'>]>"),
            (HEADER, "<!-- hi -->"),
            (HEADER, "<?php x?>"),
            (HEADER, "<iq><?pi?></iq>"),
            (HEADER, "<message><body>&xxe;</body></message>"),
            ("<?xml version='1.0'?>", "<?xml version='1.0'?>"),
        ] {
            let mut r = reader();
            let res = r.feed(format!("{prefix}{bad}").as_bytes());
            assert!(
                matches!(res, Err(ReadError::Restricted(_))),
                "{bad}: {res:?}"
            );
        }
        // Only the first bytes of a DOCTYPE are enough.
        let mut r = reader();
        assert!(matches!(r.feed(b"<!DOC"), Err(ReadError::Restricted(_))));
    }

    #[test]
    fn limits_size_and_depth() {
        let limits = ReaderLimits {
            max_stanza_size: 1024,
            max_depth: 4,
            ..ReaderLimits::default()
        };
        let mut r = StreamReader::new(limits);
        r.feed(HEADER.as_bytes()).unwrap();
        let big = format!("<message><body>{}</body></message>", "x".repeat(2000));
        assert_eq!(r.feed(big.as_bytes()), Err(ReadError::TooBig(1024)));

        // Arriving in small pieces is caught before the stanza completes.
        let mut r = StreamReader::new(limits);
        r.feed(HEADER.as_bytes()).unwrap();
        r.feed(b"<message><body>").unwrap();
        let mut failed = false;
        for _ in 0..200 {
            if r.feed(b"xxxxxxxxxx").is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed);

        let mut r = StreamReader::new(limits);
        r.feed(HEADER.as_bytes()).unwrap();
        assert_eq!(
            r.feed(b"<a><b><c><d><e/></d></c></b></a>"),
            Err(ReadError::TooDeep(4))
        );
        // Stanza sizes do not accumulate across stanzas.
        let mut r = StreamReader::new(limits);
        r.feed(HEADER.as_bytes()).unwrap();
        for _ in 0..100 {
            let ev = r.feed(b"<presence><status>0123456789abcdef</status></presence>");
            assert_eq!(ev.unwrap().len(), 1);
        }
    }

    #[test]
    fn byte_order_marks() {
        // One may open the stream, even split; inside text U+FEFF is kept.
        let mut r = reader();
        assert!(r.feed(b"\xEF\xBB").unwrap().is_empty());
        r.feed(b"\xBF").unwrap();
        r.feed(HEADER.as_bytes()).unwrap();
        r.feed("<message><body>a".as_bytes()).unwrap();
        let ev = r.feed("\u{FEFF}b</body></message>".as_bytes()).unwrap();
        assert_eq!(
            stanzas(&ev)[0]
                .get_child("body", ns::CLIENT)
                .unwrap()
                .text(),
            "a\u{FEFF}b"
        );
    }

    #[test]
    fn reset_starts_a_new_stream() {
        let mut r = reader();
        r.feed(HEADER.as_bytes()).unwrap();
        r.reset();
        let ev = r.feed(HEADER.as_bytes()).unwrap();
        assert!(matches!(ev[0], StreamEvent::Open(_)));
    }

    #[test]
    fn partial_tokens_wait_for_more() {
        let mut r = reader();
        r.feed(HEADER.as_bytes()).unwrap();
        for piece in [
            "<mess",
            "age to='a@b'><bo",
            "dy>x &am",
            "p; y</bo",
            "dy><![CD",
            "ATA[z]]></message>",
        ] {
            let ev = r.feed(piece.as_bytes()).unwrap();
            if piece.ends_with("</message>") {
                let msg = stanzas(&ev)[0];
                assert_eq!(msg.get_child("body", ns::CLIENT).unwrap().text(), "x & y");
                assert_eq!(msg.text(), "z");
            } else {
                assert!(ev.is_empty(), "{piece}");
            }
        }
    }

    /// The stanzas of a stream, or the error that ended it.
    fn parse_all(input: &[u8], limits: ReaderLimits) -> Result<Vec<Element>, ReadError> {
        let mut r = StreamReader::new(limits);
        let events = r.feed(input)?;
        Ok(stanzas(&events).into_iter().cloned().collect())
    }

    fn within_heap_bound(input: &[u8], stanzas: &[Element]) -> usize {
        let heap = stanzas_heap(stanzas);
        let bound = TREE_HEAP_PER_BYTE * input.len() + TREE_HEAP_FIXED;
        assert!(
            heap <= bound,
            "{heap} bytes of heap from {} of input",
            input.len()
        );
        heap
    }

    #[test]
    fn namespace_bomb_is_stored_once() {
        let bomb = format!(
            "{HEADER}<x xmlns='urn:{}'>{}</x>",
            "A".repeat(50_000),
            "<a/>".repeat(20_000)
        );
        // No real namespace is that long: refused under the default limits.
        assert_eq!(
            parse_all(bomb.as_bytes(), ReaderLimits::default()),
            Err(ReadError::NamespaceTooLong(1024))
        );
        // Allowed, the namespace is one allocation for all 20,000 elements.
        let limits = ReaderLimits {
            max_namespace_length: 64 * 1024,
            ..ReaderLimits::default()
        };
        let parsed = parse_all(bomb.as_bytes(), limits).unwrap();
        assert_eq!(parsed[0].children().count(), 20_000);
        assert!(parsed[0].children().all(|a| a.ns().len() == 50_004));
        let heap = within_heap_bound(bomb.as_bytes(), &parsed);
        let slots = 20_000 * std::mem::size_of::<Node>();
        assert!(heap < slots + 2 * 50_004, "{heap}");
    }

    #[test]
    fn small_pieces_stay_within_the_heap_bound() {
        let stanza = |inner: String| format!("{HEADER}<message>{inner}</message>");
        let attrs: String = (0..60).map(|i| format!(" a{i}=''")).collect();
        for input in [
            stanza("<a/>".repeat(20_000)),
            stanza("<a/>x".repeat(20_000)),
            stanza("x<a/>".repeat(20_000)),
            stanza("<a>x</a>".repeat(10_000)),
            stanza(format!("{}{}", "<a>".repeat(30), "</a>".repeat(30)).repeat(300)),
            stanza("&#x41;".repeat(20_000)),
            stanza(format!("<a{attrs}/>").repeat(300)),
            format!("{HEADER}{}", "<a/>".repeat(20_000)),
        ] {
            let parsed = parse_all(input.as_bytes(), ReaderLimits::default()).unwrap();
            assert!(!parsed.is_empty());
            within_heap_bound(input.as_bytes(), &parsed);
        }
    }

    #[test]
    fn attribute_bomb_is_refused_at_the_cap() {
        let attrs = |n: usize| -> String { (0..n).map(|i| format!(" a{i}=''")).collect() };
        let bomb = format!("{HEADER}<message{}/>", attrs(20_000));
        assert_eq!(
            parse_all(bomb.as_bytes(), ReaderLimits::default()),
            Err(ReadError::TooManyAttributes(64))
        );
        let full = format!("{HEADER}<message xmlns:p='urn:p'{}/>", attrs(64));
        let parsed = parse_all(full.as_bytes(), ReaderLimits::default()).unwrap();
        assert_eq!(parsed[0].attr("a63"), Some(""));
        // Duplicates are caught however many attributes come before them.
        for n in [3, 9, 40] {
            let dup = format!("{HEADER}<message{} a1='again'/>", attrs(n));
            assert!(matches!(
                parse_all(dup.as_bytes(), ReaderLimits::default()),
                Err(ReadError::NotWellFormed(_))
            ));
        }
    }

    #[test]
    fn prefix_bomb_is_refused_and_prefixes_resolve_by_scope() {
        let prefixes: String = (0..9_000).map(|i| format!(" xmlns:p{i}='u'")).collect();
        let header = format!(
            "<stream:stream xmlns='jabber:client' xmlns:stream='{}'{prefixes}>",
            ns::STREAM
        );
        assert_eq!(
            reader().feed(header.as_bytes()),
            Err(ReadError::TooManyNamespaceDeclarations(32))
        );
        // The innermost declaration wins, and ends with its element.
        let input = format!(
            "{HEADER}<message xmlns:p='urn:outer'><p:a xmlns:p='urn:inner'><p:b/></p:a><p:c/></message>"
        );
        let parsed = parse_all(input.as_bytes(), ReaderLimits::default()).unwrap();
        let a = parsed[0].get_child("a", "urn:inner").unwrap();
        assert!(a.has_child("b", "urn:inner"));
        assert!(parsed[0].has_child("c", "urn:outer"));
        let after = format!("{HEADER}<message xmlns:p='urn:p'/><p:a/>");
        assert!(matches!(
            parse_all(after.as_bytes(), ReaderLimits::default()),
            Err(ReadError::NotWellFormed(_))
        ));
    }

    #[test]
    fn long_names_and_namespaces_are_refused() {
        let long = "n".repeat(1025);
        for (input, err) in [
            (format!("<{long}/>"), ReadError::NameTooLong(1024)),
            (format!("<a {long}='x'/>"), ReadError::NameTooLong(1024)),
            (
                format!("<a xmlns='{long}'/>"),
                ReadError::NamespaceTooLong(1024),
            ),
            (
                format!("<a xmlns:p='{long}'/>"),
                ReadError::NamespaceTooLong(1024),
            ),
        ] {
            let input = format!("{HEADER}{input}");
            assert_eq!(
                parse_all(input.as_bytes(), ReaderLimits::default()),
                Err(err)
            );
        }
        let at_limit = "n".repeat(1024);
        let input = format!("{HEADER}<{at_limit} xmlns='{at_limit}' {at_limit}='x'/>");
        let parsed = parse_all(input.as_bytes(), ReaderLimits::default()).unwrap();
        assert!(parsed[0].is(&at_limit, &at_limit));
    }

    #[test]
    fn nesting_is_refused_past_the_default_depth() {
        let nest = |n: usize| format!("{HEADER}{}{}", "<a>".repeat(n), "</a>".repeat(n));
        assert_eq!(
            parse_all(nest(32).as_bytes(), ReaderLimits::default()).map(|s| s.len()),
            Ok(1)
        );
        assert_eq!(
            parse_all(nest(33).as_bytes(), ReaderLimits::default()),
            Err(ReadError::TooDeep(32))
        );
    }

    #[test]
    fn dripping_into_a_large_pending_token_costs_what_it_does_into_a_small_one() {
        // Work per dripped byte with `pending` bytes of an unfinished token buffered.
        let per_byte = |opening: &str, pending: usize| -> u64 {
            let mut r = reader();
            r.feed(HEADER.as_bytes()).unwrap();
            r.feed(format!("{opening}{}", "x".repeat(pending)).as_bytes())
                .unwrap();
            assert!(r.buffered() >= pending);
            let before = r.work();
            for _ in 0..1_000 {
                assert_eq!(r.feed(b"y"), Ok(vec![]));
            }
            (r.work() - before) / 1_000
        };
        for opening in ["<message a='", "<message><body>", "<message><![CDATA["] {
            let small = per_byte(opening, 1_000);
            let large = per_byte(opening, 240_000);
            assert_eq!(small, large, "{opening}");
            // Copying the byte in and examining it.
            assert!(large <= 2, "{opening}: {large}");
        }
    }

    #[test]
    fn work_is_linear_however_the_input_is_split() {
        let input = format!(
            "{HEADER}<message><body>{}</body><x a='{}'/><![CDATA[{}]]></message>",
            "t &amp; ".repeat(2_000),
            "v".repeat(2_000),
            "c".repeat(2_000)
        );
        let input = input.as_bytes();
        for piece in [1, 7, 4096, input.len()] {
            let mut r = reader();
            let mut events = Vec::new();
            for chunk in input.chunks(piece) {
                events.extend(r.feed(chunk).unwrap());
            }
            assert_eq!(stanzas(&events).len(), 1);
            // Copy in, scan, tokenise: each byte about three times, plus the
            // few bytes each tag's first look takes.
            assert!(r.work() <= 4 * input.len() as u64, "{piece}: {}", r.work());
        }
    }

    #[test]
    fn parsed_trees_keep_no_spare_capacity() {
        let input = format!("{HEADER}<message>{}</message>", "<a>x&amp;y</a>".repeat(33));
        let parsed = parse_all(input.as_bytes(), ReaderLimits::default()).unwrap();
        let node = std::mem::size_of::<Node>();
        let shared = |len: usize| (16 + len).next_multiple_of(8);
        // The namespace once; the stanza's children exactly; each child's
        // name and one text node exactly ("a", "x&y").
        let expected = "message".len()
            + shared(ns::CLIENT.len())
            + (16 + 33 * node)
            + 33 * (1 + 16 + node + 3);
        assert_eq!(
            stanzas_heap(&parsed) - std::mem::size_of::<Element>(),
            expected
        );
    }
}
