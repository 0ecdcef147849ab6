//! Builders for stanza errors (RFC 6120 §8.3) and stream errors (§4.9).

use super::element::{escape, Element};
use super::ns;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    Auth,
    Cancel,
    Continue,
    Modify,
    Wait,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Auth => "auth",
            ErrorType::Cancel => "cancel",
            ErrorType::Continue => "continue",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
        }
    }
}

/// A stanza error: type, defined condition, optional English text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StanzaError {
    pub kind: ErrorType,
    pub condition: &'static str,
    pub text: Option<String>,
    /// An application-specific condition element, if any.
    pub app: Option<Box<Element>>,
}

impl StanzaError {
    pub fn new(kind: ErrorType, condition: &'static str) -> Self {
        StanzaError {
            kind,
            condition,
            text: None,
            app: None,
        }
    }

    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    pub fn service_unavailable() -> Self {
        Self::new(ErrorType::Cancel, "service-unavailable")
    }

    pub fn bad_request(text: &str) -> Self {
        Self::new(ErrorType::Modify, "bad-request").with_text(text)
    }

    pub fn internal(text: &str) -> Self {
        Self::new(ErrorType::Wait, "internal-server-error").with_text(text)
    }

    pub fn not_acceptable(text: &str) -> Self {
        Self::new(ErrorType::Modify, "not-acceptable").with_text(text)
    }

    pub fn to_element(&self) -> Element {
        let mut error = Element::new("error", ns::CLIENT)
            .with_attr("type", self.kind.as_str())
            .with_child(Element::new(self.condition, ns::STANZAS));
        if let Some(text) = &self.text {
            error.push_child(
                Element::new("text", ns::STANZAS)
                    .with_attr("xml:lang", "en")
                    .with_text(text.clone()),
            );
        }
        if let Some(app) = &self.app {
            error.push_child(app.as_ref().clone());
        }
        error
    }

    /// The error reply to `stanza`: same name and id, addresses swapped.
    pub fn reply_to(&self, stanza: &Element) -> Element {
        Element::new(stanza.name(), ns::CLIENT)
            .with_attr("type", "error")
            .with_opt_attr("id", stanza.attr("id"))
            .with_opt_attr("to", stanza.attr("from"))
            .with_opt_attr("from", stanza.attr("to"))
            .with_child(self.to_element())
    }
}

/// A stream error: ends the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamError {
    pub condition: &'static str,
    pub text: Option<String>,
    pub app: Option<Element>,
}

impl StreamError {
    pub fn new(condition: &'static str) -> Self {
        StreamError {
            condition,
            text: None,
            app: None,
        }
    }

    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    pub fn with_app(mut self, app: Element) -> Self {
        self.app = Some(app);
        self
    }

    /// `<stream:error>…</stream:error>`; the caller closes the stream after it.
    pub fn to_xml(&self) -> String {
        let mut out = format!(
            "<stream:error><{} xmlns='{}'/>",
            self.condition,
            ns::STREAMS
        );
        if let Some(text) = &self.text {
            out.push_str(&format!(
                "<text xmlns='{}' xml:lang='en'>{}</text>",
                ns::STREAMS,
                escape(text)
            ));
        }
        if let Some(app) = &self.app {
            app.write_to(&mut out, ns::CLIENT);
        }
        out.push_str("</stream:error>");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stanza_error_reply_swaps_addresses() {
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_attr("id", "r1")
            .with_attr("to", "localhost")
            .with_attr("from", "a@localhost/x");
        let reply = StanzaError::not_acceptable("why").reply_to(&iq);
        assert_eq!(
            reply.to_stanza_string(),
            "<iq type='error' id='r1' to='a@localhost/x' from='localhost'>\
             <error type='modify'><not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
             <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' xml:lang='en'>why</text>\
             </error></iq>"
        );
    }

    #[test]
    fn stream_error_with_app_condition() {
        let e = StreamError::new("policy-violation")
            .with_text("XML stanza is too big")
            .with_app(Element::new("stanza-too-big", ns::XMPP_ERRORS));
        assert_eq!(
            e.to_xml(),
            "<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
             <text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>XML stanza is too big</text>\
             <stanza-too-big xmlns='urn:xmpp:errors'/></stream:error>"
        );
    }
}
