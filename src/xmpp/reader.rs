//! Incremental reader for an XMPP stream: bytes go in as they arrive, whole
//! stream events come out (the stream header, each complete first-level
//! element, the stream close).
//!
//! quick-xml tokenises; this module resolves namespaces, builds elements, and
//! enforces the limits. It resumes at the last complete token, so every byte is
//! tokenised about once however the input is split: partial tokens stay in the
//! buffer, partial elements stay on the open-element stack.

use quick_xml::errors::{Error as XmlError, IllFormedError, SyntaxError};
use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

use super::element::Element;
use super::ns;

#[derive(Debug, Clone, Copy)]
pub struct ReaderLimits {
    /// Largest first-level element, in bytes of input (also bounds the header).
    pub max_stanza_size: usize,
    /// Deepest nesting inside a stanza (the stanza itself is depth 1).
    pub max_depth: usize,
}

impl Default for ReaderLimits {
    fn default() -> Self {
        ReaderLimits {
            max_stanza_size: 256 * 1024,
            max_depth: 32,
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
}

/// The UTF-8 byte order mark.
const BOM: &[u8] = b"\xEF\xBB\xBF";

fn malformed(msg: impl Into<String>) -> ReadError {
    ReadError::NotWellFormed(msg.into())
}

/// Namespace declarations made by one element.
#[derive(Debug, Clone)]
struct Scope {
    default: String,
    prefixes: Vec<(String, String)>,
}

#[derive(Debug)]
struct OpenElement {
    element: Element,
    qname: String,
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    Prolog { seen_decl: bool },
    InRoot { qname: String },
    Closed,
}

#[derive(Debug)]
pub struct StreamReader {
    limits: ReaderLimits,
    buf: Vec<u8>,
    phase: Phase,
    scopes: Vec<Scope>,
    open: Vec<OpenElement>,
    /// Input bytes consumed by the stanza being built.
    stanza_bytes: usize,
    /// Nothing but (part of) a byte order mark seen yet.
    at_stream_start: bool,
}

impl StreamReader {
    pub fn new(limits: ReaderLimits) -> Self {
        StreamReader {
            limits,
            buf: Vec::new(),
            phase: Phase::Prolog { seen_decl: false },
            scopes: Vec::new(),
            open: Vec::new(),
            stanza_bytes: 0,
            at_stream_start: true,
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

    /// Feeds bytes; returns the events they complete. After an error or the
    /// stream close, further input is ignored.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<StreamEvent>, ReadError> {
        let mut events = Vec::new();
        if self.is_closed() {
            return Ok(events);
        }
        self.buf.extend_from_slice(data);
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
        let consumed = self.parse(&buf, &mut events);
        let consumed = match consumed {
            Ok(n) => n,
            Err(e) => {
                self.phase = Phase::Closed;
                return Err(e);
            }
        };
        self.buf = buf[consumed..].to_vec();
        if !self.is_closed() {
            // Bytes of a token still incomplete are judged now, not when it ends.
            if let Err(e) = check_characters(&self.buf) {
                self.phase = Phase::Closed;
                return Err(e);
            }
            let pending = self.stanza_bytes + self.buf.len();
            if pending > self.limits.max_stanza_size {
                self.phase = Phase::Closed;
                return Err(ReadError::TooBig(self.limits.max_stanza_size));
            }
        }
        Ok(events)
    }

    /// Parses as many whole tokens as `buf` holds; returns how many bytes they took.
    fn parse(&mut self, buf: &[u8], events: &mut Vec<StreamEvent>) -> Result<usize, ReadError> {
        // quick-xml drops a byte order mark at the start of any input it is
        // given and counts positions from after it. Inside a stanza that is a
        // real character (U+FEFF), so take it as text here and start after it.
        let mut base = 0;
        while buf[base..].starts_with(BOM) {
            let Some(top) = self.open.last_mut() else {
                break;
            };
            top.element.push_text('\u{FEFF}'.to_string());
            self.stanza_bytes += BOM.len();
            base += BOM.len();
        }
        let mut reader = Reader::from_reader(&buf[base..]);
        let config = reader.config_mut();
        config.check_end_names = false;
        config.allow_unmatched_ends = true;
        config.expand_empty_elements = false;
        config.trim_text(false);
        let mut consumed = base;
        loop {
            if self.is_closed() {
                return Ok(consumed);
            }
            let rest = &buf[consumed..];
            if rest.is_empty() {
                return Ok(consumed);
            }
            check_restricted_markup(rest, &self.phase)?;
            if self.open.is_empty() {
                self.check_between_stanzas(rest)?;
            }
            let event = match reader.read_event() {
                Ok(Event::Eof) => return Ok(consumed),
                Ok(ev) => ev,
                Err(e) if is_incomplete(&e, rest) => return Ok(consumed),
                Err(e) => return Err(malformed(e.to_string())),
            };
            let end = base + reader.buffer_position() as usize;
            // Text running to the end of what we have may continue in the next read;
            // outside a stanza only whitespace can, anything else fails right away.
            if matches!(event, Event::Text(_) | Event::GeneralRef(_)) && end == buf.len() {
                let may_continue =
                    !self.open.is_empty() || matches!(&event, Event::Text(t) if is_whitespace(t));
                if may_continue {
                    return Ok(consumed);
                }
            }
            check_characters(&buf[consumed..end])?;
            let len = end - consumed;
            consumed = end;
            self.handle(event, len, events)?;
        }
    }

    fn handle(
        &mut self,
        event: Event<'_>,
        len: usize,
        events: &mut Vec<StreamEvent>,
    ) -> Result<(), ReadError> {
        if !self.open.is_empty() {
            self.stanza_bytes += len;
            if self.stanza_bytes > self.limits.max_stanza_size {
                return Err(ReadError::TooBig(self.limits.max_stanza_size));
            }
        }
        match &self.phase {
            Phase::Prolog { seen_decl } => self.handle_prolog(event, *seen_decl, events),
            Phase::InRoot { .. } => self.handle_content(event, len, events),
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
            Event::Text(t) if is_whitespace(&t) => Ok(()),
            Event::Start(ref start) | Event::Empty(ref start) => {
                let empty = matches!(event, Event::Empty(_));
                let (element, scope) = self.build_element(start)?;
                let header = StreamHeader {
                    root_ns: element.ns().to_owned(),
                    root_name: element.name().to_owned(),
                    content_ns: scope.default.clone(),
                    to: element.attr("to").map(str::to_owned),
                    from: element.attr("from").map(str::to_owned),
                    version: element.attr("version").map(str::to_owned),
                    lang: element.attr("xml:lang").map(str::to_owned),
                };
                self.scopes.push(scope);
                events.push(StreamEvent::Open(header));
                if empty {
                    self.phase = Phase::Closed;
                    events.push(StreamEvent::Close);
                } else {
                    self.phase = Phase::InRoot {
                        qname: start.name().as_ref().to_owned(),
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
                let (element, scope) = self.build_element(&start)?;
                self.scopes.push(scope);
                self.open.push(OpenElement {
                    element,
                    qname: start.name().as_ref().to_owned(),
                });
            }
            Event::Empty(start) => {
                if self.open.len() >= self.limits.max_depth {
                    return Err(ReadError::TooDeep(self.limits.max_depth));
                }
                if self.open.is_empty() && len > self.limits.max_stanza_size {
                    return Err(ReadError::TooBig(self.limits.max_stanza_size));
                }
                let (element, _) = self.build_element(&start)?;
                self.complete(element, events);
            }
            Event::End(end) => {
                let Some(top) = self.open.pop() else {
                    let Phase::InRoot { qname } = &self.phase else {
                        return Err(malformed("unexpected end tag"));
                    };
                    if end.name().as_ref() != qname.as_str() {
                        return Err(malformed("mismatched end tag of the stream"));
                    }
                    self.phase = Phase::Closed;
                    events.push(StreamEvent::Close);
                    return Ok(());
                };
                if end.name().as_ref() != top.qname.as_str() {
                    return Err(malformed(format!("end tag does not match <{}>", top.qname)));
                }
                self.scopes.pop();
                self.complete(top.element, events);
            }
            Event::Text(t) => {
                let text = t.xml_content(XmlVersion::Implicit1_0);
                match self.open.last_mut() {
                    Some(top) => top.element.push_text(text.into_owned()),
                    None if text.trim_matches(is_xml_space).is_empty() => {}
                    None => return Err(malformed("text between stanzas")),
                }
            }
            Event::CData(c) => {
                let text = c.xml_content(XmlVersion::Implicit1_0).into_owned();
                match self.open.last_mut() {
                    Some(top) => top.element.push_text(text),
                    None => return Err(malformed("CDATA between stanzas")),
                }
            }
            Event::GeneralRef(r) => {
                let c = resolve_reference(&r)?;
                match self.open.last_mut() {
                    Some(top) => top.element.push_text(c.to_string()),
                    None => return Err(malformed("reference between stanzas")),
                }
            }
            Event::Decl(_) | Event::PI(_) => {
                return Err(ReadError::Restricted("processing instruction"))
            }
            Event::DocType(_) => return Err(ReadError::Restricted("document type declaration")),
            Event::Comment(_) => return Err(ReadError::Restricted("comment")),
            Event::Eof => {}
        }
        Ok(())
    }

    /// Between stanzas (and before the header) only whitespace and markup may
    /// come, so anything else fails at once, however the input was split.
    fn check_between_stanzas(&self, rest: &[u8]) -> Result<(), ReadError> {
        match rest
            .iter()
            .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            None | Some(b'<') => Ok(()),
            Some(_) => Err(malformed(match self.phase {
                Phase::Prolog { .. } => "content before the stream header",
                _ => "text between stanzas",
            })),
        }
    }

    /// Attaches a finished element to its parent, or emits it as a stanza.
    fn complete(&mut self, element: Element, events: &mut Vec<StreamEvent>) {
        match self.open.last_mut() {
            Some(parent) => parent.element.push_child(element),
            None => {
                self.stanza_bytes = 0;
                events.push(StreamEvent::Stanza(element));
            }
        }
    }

    fn build_element(&self, start: &BytesStart<'_>) -> Result<(Element, Scope), ReadError> {
        let parent = self.scopes.last();
        let mut scope = Scope {
            default: parent.map(|s| s.default.clone()).unwrap_or_default(),
            prefixes: Vec::new(),
        };
        let mut attrs = Vec::new();
        for attr in start.attributes().with_checks(true) {
            let attr = attr.map_err(|e| malformed(format!("attribute: {e}")))?;
            let key = attr.key.as_ref();
            let value = attr
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|e| malformed(format!("attribute value: {e}")))?;
            if key == "xmlns" {
                scope.default = value.into_owned();
            } else if let Some(prefix) = key.strip_prefix("xmlns:") {
                if value.is_empty() {
                    return Err(malformed("empty namespace for a prefix"));
                }
                scope.prefixes.push((prefix.to_owned(), value.into_owned()));
            } else {
                attrs.push((key.to_owned(), value.into_owned()));
            }
        }
        let qname = start.name().as_ref().to_owned();
        let (ns, local) = match qname.split_once(':') {
            Some((prefix, local)) => {
                let ns = self
                    .lookup_prefix(prefix, &scope)
                    .ok_or_else(|| malformed(format!("undeclared prefix '{prefix}'")))?;
                (ns, local.to_owned())
            }
            None => (scope.default.clone(), qname),
        };
        let mut element = Element::new(local, ns);
        for (k, v) in attrs {
            element.set_attr(k, v);
        }
        Ok((element, scope))
    }

    fn lookup_prefix(&self, prefix: &str, innermost: &Scope) -> Option<String> {
        if prefix == "xml" {
            return Some(ns::XML.to_owned());
        }
        std::iter::once(innermost)
            .chain(self.scopes.iter().rev())
            .flat_map(|s| s.prefixes.iter().rev())
            .find(|(p, _)| p == prefix)
            .map(|(_, uri)| uri.clone())
    }
}

/// XML 1.0 allows no C0 controls but tab, newline and carriage return.
fn check_characters(bytes: &[u8]) -> Result<(), ReadError> {
    match bytes
        .iter()
        .find(|&&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r'))
    {
        Some(b) => Err(malformed(format!("control character 0x{b:02x}"))),
        None => Ok(()),
    }
}

fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

fn is_whitespace(t: &quick_xml::events::BytesText<'_>) -> bool {
    t.xml_content(XmlVersion::Implicit1_0)
        .trim_matches(is_xml_space)
        .is_empty()
}

/// Comments, processing instructions and DTDs are refused as soon as their first
/// bytes arrive, so a peer cannot make the server buffer them.
fn check_restricted_markup(rest: &[u8], phase: &Phase) -> Result<(), ReadError> {
    let at = rest
        .iter()
        .position(|&b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .map_or(&[][..], |i| &rest[i..]);
    if at.starts_with(b"<!-") {
        return Err(ReadError::Restricted("comment"));
    }
    if at.starts_with(b"<!D") {
        return Err(ReadError::Restricted("document type declaration"));
    }
    if at.starts_with(b"<?") {
        let decl_allowed = matches!(phase, Phase::Prolog { seen_decl: false });
        let could_be_decl = b"<?xml ".starts_with(&at[..at.len().min(6)])
            || at.starts_with(b"<?xml\t")
            || at.starts_with(b"<?xml\n")
            || at.starts_with(b"<?xml\r");
        if !(decl_allowed && could_be_decl) {
            return Err(ReadError::Restricted("processing instruction"));
        }
    }
    Ok(())
}

/// Whether more input could turn this error into valid XML.
fn is_incomplete(err: &XmlError, rest: &[u8]) -> bool {
    match err {
        // `<!` needs up to nine bytes (`<![CDATA[`) before it can be told apart.
        XmlError::Syntax(SyntaxError::InvalidBangMarkup) => rest.len() < 9,
        XmlError::Syntax(_) => true,
        // A multi-byte character cut by the read boundary.
        XmlError::Encoding(_) => {
            matches!(std::str::from_utf8(rest), Err(e) if e.error_len().is_none())
        }
        // The failing reference is in the text token `rest` starts with, which
        // ends at the next `<`: without one, the `;` may still come.
        XmlError::IllFormed(IllFormedError::UnclosedReference) => !rest.contains(&b'<'),
        _ => false,
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
}
