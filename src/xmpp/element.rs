//! A small owned XML element tree: what the stream reader produces and what the
//! server serialises. Names are namespace-resolved; prefixes never leave the reader.
//!
//! Storage is compact because a parsed tree's size is what a peer controls:
//! the namespace is shared (`Arc<str>`: the reader hands the allocation made
//! for a declaration to every element in its scope), strings are boxed to
//! their length, and attributes and children live in thin vectors (one
//! pointer, no allocation, when empty).

use std::alloc::Layout;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Arc;

use thin_vec::ThinVec;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    name: Box<str>,
    ns: Arc<str>,
    attrs: ThinVec<(Box<str>, Box<str>)>,
    children: ThinVec<Node>,
}

impl Element {
    pub fn new(name: impl Into<String>, ns: impl AsRef<str>) -> Self {
        Element::in_shared_ns(name.into().into_boxed_str(), ns.as_ref().into())
    }

    /// An element whose namespace is an allocation shared with others.
    pub(crate) fn in_shared_ns(name: Box<str>, ns: Arc<str>) -> Self {
        Element {
            name,
            ns,
            attrs: ThinVec::new(),
            children: ThinVec::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn ns(&self) -> &str {
        &self.ns
    }

    pub fn is(&self, name: &str, ns: &str) -> bool {
        *self.name == *name && *self.ns == *ns
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| **k == *name)
            .map(|(_, v)| &**v)
    }

    pub fn set_attr(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into().into_boxed_str();
        match self.attrs.iter_mut().find(|(k, _)| **k == *name) {
            Some(slot) => slot.1 = value,
            None => self.attrs.push((name.into_boxed_str(), value)),
        }
    }

    /// Makes room for exactly `n` more attributes, so that an element built
    /// whole needs no trimming.
    pub(crate) fn reserve_attrs(&mut self, n: usize) {
        self.attrs.reserve_exact(n);
    }

    /// Appends an attribute the caller knows is not set yet (the reader checks
    /// duplicates itself, in constant time per attribute).
    pub(crate) fn push_new_attr(&mut self, name: Box<str>, value: Box<str>) {
        self.attrs.push((name, value));
    }

    pub fn remove_attr(&mut self, name: &str) -> Option<String> {
        let pos = self.attrs.iter().position(|(k, _)| **k == *name)?;
        Some(self.attrs.remove(pos).1.into_string())
    }

    /// Builder form of [`Element::set_attr`].
    pub fn with_attr(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_attr(name, value);
        self
    }

    /// Sets the attribute only when a value is given.
    pub fn with_opt_attr(self, name: &str, value: Option<&str>) -> Self {
        match value {
            Some(v) => self.with_attr(name, v),
            None => self,
        }
    }

    pub fn with_child(mut self, child: Element) -> Self {
        self.children.push(Node::Element(child));
        self
    }

    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.push_text(text.into());
        self
    }

    pub fn push_child(&mut self, child: Element) {
        self.children.push(Node::Element(child));
    }

    pub fn push_text(&mut self, text: String) {
        if text.is_empty() {
            return;
        }
        // Adjacent text (split by entity references or CDATA) is merged so that
        // `text()` is a single borrow.
        if let Some(Node::Text(last)) = self.children.last_mut() {
            last.push_str(&text);
        } else {
            self.children.push(Node::Text(text));
        }
    }

    /// [`Element::push_text`] without an owned string to hand over.
    pub(crate) fn push_str(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        if let Some(Node::Text(last)) = self.children.last_mut() {
            last.push_str(text);
        } else {
            self.children.push(Node::Text(text.to_owned()));
        }
    }

    /// Gives back the room vectors and strings grew into while the element was
    /// built, so that a finished tree holds only what it contains.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.attrs.shrink_to_fit();
        self.children.shrink_to_fit();
        for node in self.children.iter_mut() {
            if let Node::Text(t) = node {
                t.shrink_to_fit();
            }
        }
    }

    pub fn nodes(&self) -> &[Node] {
        &self.children
    }

    pub fn children(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    pub fn get_child(&self, name: &str, ns: &str) -> Option<&Element> {
        self.children().find(|c| c.is(name, ns))
    }

    pub fn has_child(&self, name: &str, ns: &str) -> bool {
        self.get_child(name, ns).is_some()
    }

    /// All direct text content, concatenated.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for node in &self.children {
            if let Node::Text(t) = node {
                out.push_str(t);
            }
        }
        out
    }

    /// Heap bytes this element and its descendants hold, a shared namespace
    /// counted once however many elements refer to it (the element's own
    /// struct is not included: it lives wherever the caller keeps it).
    pub fn heap_size(&self) -> usize {
        self.heap_size_sharing(&mut HashSet::new())
    }

    /// [`Element::heap_size`] over several trees: `seen` holds the shared
    /// allocations already counted.
    pub fn heap_size_sharing(&self, seen: &mut HashSet<usize>) -> usize {
        let mut total = self.name.len() + shared_size(&self.ns, seen);
        total += thin_vec_size(&self.attrs);
        for (k, v) in self.attrs.iter() {
            total += k.len() + v.len();
        }
        total += thin_vec_size(&self.children);
        for node in self.children.iter() {
            total += match node {
                Node::Element(e) => e.heap_size_sharing(seen),
                Node::Text(t) => t.capacity(),
            };
        }
        total
    }

    /// Serialises the element; `parent_ns` is the default namespace in scope, so
    /// `xmlns` is written only where it changes.
    pub fn write_to(&self, out: &mut String, parent_ns: &str) {
        out.push('<');
        out.push_str(&self.name);
        if *self.ns != *parent_ns {
            out.push_str(" xmlns='");
            escape_into(out, &self.ns);
            out.push('\'');
        }
        for (k, v) in self.attrs.iter() {
            let _ = write!(out, " {k}='");
            escape_into(out, v);
            out.push('\'');
        }
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        for node in self.children.iter() {
            match node {
                Node::Element(e) => e.write_to(out, &self.ns),
                Node::Text(t) => escape_into(out, t),
            }
        }
        out.push_str("</");
        out.push_str(&self.name);
        out.push('>');
    }

    /// Serialises as a top-level stanza of a `jabber:client` stream.
    pub fn to_stanza_string(&self) -> String {
        let mut out = String::with_capacity(128);
        self.write_to(&mut out, super::ns::CLIENT);
        out
    }
}

/// Size of the allocation behind an `Arc<str>` (two counters, then the bytes),
/// or 0 when `seen` says it was counted already.
fn shared_size(s: &Arc<str>, seen: &mut HashSet<usize>) -> usize {
    if !seen.insert(Arc::as_ptr(s).cast::<u8>() as usize) {
        return 0;
    }
    Layout::new::<[usize; 2]>()
        .extend(Layout::for_value::<str>(s))
        .map_or(0, |(layout, _)| layout.pad_to_align().size())
}

/// Size of a thin vector's allocation: a header of length and capacity, then
/// the items; an empty one allocates nothing.
fn thin_vec_size<T>(v: &ThinVec<T>) -> usize {
    match v.capacity() {
        0 => 0,
        cap => 2 * std::mem::size_of::<usize>() + cap * std::mem::size_of::<T>(),
    }
}

/// Escapes text for both character data and single- or double-quoted attributes.
pub fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(&mut out, s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_namespaces_only_where_they_change() {
        let iq = Element::new("iq", "jabber:client")
            .with_attr("type", "result")
            .with_attr("id", "a'1")
            .with_child(
                Element::new("query", "jabber:iq:register")
                    .with_child(Element::new("username", "jabber:iq:register").with_text("a<b")),
            );
        assert_eq!(
            iq.to_stanza_string(),
            "<iq type='result' id='a&apos;1'><query xmlns='jabber:iq:register'>\
             <username>a&lt;b</username></query></iq>"
        );
    }

    #[test]
    fn text_merges_adjacent_pieces() {
        let mut e = Element::new("body", "jabber:client");
        e.push_text("a".into());
        e.push_str("&");
        e.push_text(String::new());
        assert_eq!(e.nodes().len(), 1);
        assert_eq!(e.text(), "a&");
    }

    #[test]
    fn attributes_set_replace_and_remove() {
        let mut e = Element::new("iq", "jabber:client").with_attr("id", "1");
        e.set_attr("id", String::from("2"));
        e.set_attr("type", "get");
        assert_eq!(e.attr("id"), Some("2"));
        assert_eq!(e.remove_attr("id").as_deref(), Some("2"));
        assert_eq!(e.attr("id"), None);
        assert_eq!(e.attr("type"), Some("get"));
    }

    #[test]
    fn heap_size_counts_a_shared_namespace_once() {
        let ns: Arc<str> = "urn:example:a-long-namespace".into();
        let shared = (16 + ns.len()).next_multiple_of(8);
        let one = Element::in_shared_ns("item".into(), ns.clone());
        // The name's four bytes and the namespace; no attributes, no children.
        assert_eq!(one.heap_size(), 4 + shared);
        let mut parent = Element::in_shared_ns("list".into(), ns.clone());
        for _ in 0..10 {
            parent.push_child(Element::in_shared_ns("item".into(), ns.clone()));
        }
        parent.shrink_to_fit();
        // Ten children add their slots and names, not ten copies of the namespace.
        assert_eq!(
            parent.heap_size(),
            4 + shared + 16 + 10 * (std::mem::size_of::<Node>() + 4)
        );
    }

    #[test]
    fn constructors_take_what_they_took_before() {
        let name = String::from("iq");
        let ns = String::from(crate::xmpp::ns::CLIENT);
        let a = Element::new(name.clone(), &ns);
        let b = Element::new(&*name, ns.as_str());
        let c = Element::new("iq", crate::xmpp::ns::CLIENT).with_attr(String::from("id"), &name);
        assert_eq!(a, b);
        assert!(c.is("iq", &ns));
        assert_eq!(c.attr("id"), Some("iq"));
    }
}
