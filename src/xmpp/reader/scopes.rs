//! Namespace scopes of the open elements. A declaration's URI is allocated
//! once; every element in its scope shares it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::xmpp::ns;

#[derive(Debug)]
struct Frame {
    default: Arc<str>,
    /// How many prefixes this element declared (the last ones in `declared`).
    declared: usize,
}

/// The namespaces in scope: one frame per open element, the stream root first,
/// and for each prefix the URIs bound to it, innermost last, so that resolving
/// a prefix is one hash lookup however many are declared.
#[derive(Debug, Default)]
pub(super) struct Scopes {
    frames: Vec<Frame>,
    bound: HashMap<Box<str>, Vec<Arc<str>>>,
    declared: Vec<Box<str>>,
    /// The namespace of the `xml` prefix, made when first used.
    xml: Option<Arc<str>>,
}

impl Scopes {
    /// The default namespace in scope (none before the stream header).
    pub(super) fn default_ns(&self) -> Option<&Arc<str>> {
        self.frames.last().map(|f| &f.default)
    }

    /// Enters an element with its default namespace and its prefix declarations.
    pub(super) fn push(&mut self, default: Arc<str>, prefixes: Vec<(&str, Arc<str>)>) {
        self.frames.push(Frame {
            default,
            declared: prefixes.len(),
        });
        for (prefix, uri) in prefixes {
            let prefix: Box<str> = prefix.into();
            self.bound.entry(prefix.clone()).or_default().push(uri);
            self.declared.push(prefix);
        }
    }

    /// Leaves the innermost element: its declarations go out of scope.
    pub(super) fn pop(&mut self) {
        let Some(frame) = self.frames.pop() else {
            return;
        };
        for _ in 0..frame.declared {
            let Some(prefix) = self.declared.pop() else {
                break;
            };
            if let Some(uris) = self.bound.get_mut(&prefix) {
                uris.pop();
                if uris.is_empty() {
                    self.bound.remove(&prefix);
                }
            }
        }
    }

    /// The namespace a prefix is bound to; `xml` is bound by definition.
    pub(super) fn resolve(&mut self, prefix: &str) -> Option<&Arc<str>> {
        if prefix == "xml" {
            return Some(self.xml.get_or_insert_with(|| ns::XML.into()));
        }
        self.bound.get(prefix).and_then(|uris| uris.last())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inner_declarations_shadow_and_then_expire() {
        let mut s = Scopes::default();
        s.push("jabber:client".into(), vec![("p", "urn:outer".into())]);
        s.push("urn:inner".into(), vec![("p", "urn:shadow".into())]);
        assert_eq!(s.resolve("xml").map(|u| &**u), Some(ns::XML));
        assert_eq!(s.resolve("p").map(|u| &**u), Some("urn:shadow"));
        assert_eq!(s.default_ns().map(|u| &**u), Some("urn:inner"));
        s.pop();
        assert_eq!(s.resolve("p").map(|u| &**u), Some("urn:outer"));
        assert_eq!(s.default_ns().map(|u| &**u), Some("jabber:client"));
        s.pop();
        assert_eq!(s.resolve("p"), None);
        assert!(s.bound.is_empty() && s.declared.is_empty() && s.frames.is_empty());
    }
}
