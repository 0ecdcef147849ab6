//! Stanza errors (RFC 6120 §8.3) and stream errors (§4.9): their defined
//! conditions as enums, and builders for the elements.

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

/// Declares a condition enum with its wire names, in one table.
macro_rules! conditions {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $wire:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)*
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The element name on the wire (and the metrics label).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire,)*
                }
            }

            pub fn from_name(name: &str) -> Option<$name> {
                match name {
                    $($wire => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

conditions! {
    /// RFC 6120 §8.3.3.
    Condition {
        BadRequest = "bad-request",
        Conflict = "conflict",
        FeatureNotImplemented = "feature-not-implemented",
        Forbidden = "forbidden",
        Gone = "gone",
        InternalServerError = "internal-server-error",
        ItemNotFound = "item-not-found",
        JidMalformed = "jid-malformed",
        NotAcceptable = "not-acceptable",
        NotAllowed = "not-allowed",
        NotAuthorized = "not-authorized",
        PolicyViolation = "policy-violation",
        RecipientUnavailable = "recipient-unavailable",
        Redirect = "redirect",
        RegistrationRequired = "registration-required",
        RemoteServerNotFound = "remote-server-not-found",
        RemoteServerTimeout = "remote-server-timeout",
        ResourceConstraint = "resource-constraint",
        ServiceUnavailable = "service-unavailable",
        SubscriptionRequired = "subscription-required",
        UndefinedCondition = "undefined-condition",
        UnexpectedRequest = "unexpected-request",
    }
}

conditions! {
    /// RFC 6120 §4.9.3.
    StreamCondition {
        BadFormat = "bad-format",
        BadNamespacePrefix = "bad-namespace-prefix",
        Conflict = "conflict",
        ConnectionTimeout = "connection-timeout",
        HostGone = "host-gone",
        HostUnknown = "host-unknown",
        ImproperAddressing = "improper-addressing",
        InternalServerError = "internal-server-error",
        InvalidFrom = "invalid-from",
        InvalidNamespace = "invalid-namespace",
        InvalidXml = "invalid-xml",
        NotAuthorized = "not-authorized",
        NotWellFormed = "not-well-formed",
        PolicyViolation = "policy-violation",
        RemoteConnectionFailed = "remote-connection-failed",
        Reset = "reset",
        ResourceConstraint = "resource-constraint",
        RestrictedXml = "restricted-xml",
        SeeOtherHost = "see-other-host",
        SystemShutdown = "system-shutdown",
        UndefinedCondition = "undefined-condition",
        UnsupportedEncoding = "unsupported-encoding",
        UnsupportedFeature = "unsupported-feature",
        UnsupportedStanzaType = "unsupported-stanza-type",
        UnsupportedVersion = "unsupported-version",
    }
}

/// A stanza error: type, defined condition, optional English text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StanzaError {
    pub kind: ErrorType,
    pub condition: Condition,
    pub text: Option<String>,
    /// An application-specific condition element, if any.
    pub app: Option<Box<Element>>,
}

impl StanzaError {
    pub fn new(kind: ErrorType, condition: Condition) -> Self {
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
        Self::new(ErrorType::Cancel, Condition::ServiceUnavailable)
    }

    pub fn bad_request(text: &str) -> Self {
        Self::new(ErrorType::Modify, Condition::BadRequest).with_text(text)
    }

    pub fn internal(text: &str) -> Self {
        Self::new(ErrorType::Wait, Condition::InternalServerError).with_text(text)
    }

    pub fn not_acceptable(text: &str) -> Self {
        Self::new(ErrorType::Modify, Condition::NotAcceptable).with_text(text)
    }

    pub fn to_element(&self) -> Element {
        let mut error = Element::new("error", ns::CLIENT)
            .with_attr("type", self.kind.as_str())
            .with_child(Element::new(self.condition.as_str(), ns::STANZAS));
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
    pub condition: StreamCondition,
    pub text: Option<String>,
    pub app: Option<Element>,
}

impl StreamError {
    pub fn new(condition: StreamCondition) -> Self {
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
            self.condition.as_str(),
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
    fn condition_names_round_trip() {
        for c in Condition::ALL {
            assert_eq!(Condition::from_name(c.as_str()), Some(*c));
        }
        for c in StreamCondition::ALL {
            assert_eq!(StreamCondition::from_name(c.as_str()), Some(*c));
        }
        assert_eq!(Condition::ALL.len(), 22);
        assert_eq!(StreamCondition::ALL.len(), 25);
        assert_eq!(Condition::from_name("no-such-condition"), None);
    }

    #[test]
    fn stream_error_with_app_condition() {
        let e = StreamError::new(StreamCondition::PolicyViolation)
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
