//! Finds where the token at the start of the unread input ends. The scan
//! resumes where the previous read left it, so a token that arrives in many
//! small reads is examined once in all, not once per read.
//!
//! Token boundaries are the ones quick-xml uses (it tokenises each complete
//! token afterwards): a tag ends at the first `>` outside a quoted value, the
//! XML declaration at `?>`, CDATA at `]]>`, character data before the next `<`.

use memchr::{memchr, memchr3};

use super::{malformed, ReadError};

/// A complete token's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Token {
    /// Character data (references included), up to the next `<`.
    Text,
    /// A tag, the XML declaration or a CDATA section.
    Markup,
}

/// What the reader's state allows the pending token to be. It cannot change
/// while the token is pending: nothing is handled between its reads.
#[derive(Debug, Clone, Copy)]
pub(super) struct Context {
    /// Inside a stanza, where character data may be anything.
    pub in_stanza: bool,
    /// Before the stream header (only whitespace may come as text).
    pub in_prolog: bool,
    /// An XML declaration may still come.
    pub decl_allowed: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing of the token examined yet.
    #[default]
    Start,
    Text,
    /// `<` and too few bytes yet to tell which markup follows.
    Markup,
    /// A start or end tag, inside a value opened with `quote` if any.
    Tag {
        quote: Option<u8>,
    },
    Decl,
    CData,
}

const CDATA_OPEN: &[u8] = b"<![CDATA[";

#[derive(Debug, Default)]
pub(super) struct Scanner {
    state: State,
    /// Bytes of the pending token examined so far.
    pos: usize,
    /// Bytes examined since the stream started: tests check it stays linear.
    pub(super) examined: u64,
}

impl Scanner {
    /// The length and kind of the complete token `rest` starts with, or `None`
    /// if it needs more input. `rest` must begin where the pending token does
    /// and only grow between calls until a token is returned.
    pub(super) fn next_token(
        &mut self,
        rest: &[u8],
        cx: Context,
    ) -> Result<Option<(usize, Token)>, ReadError> {
        loop {
            match self.state {
                State::Start => {
                    let Some(&first) = rest.first() else {
                        return Ok(None);
                    };
                    self.state = if first == b'<' {
                        State::Markup
                    } else {
                        State::Text
                    };
                }
                State::Markup => {
                    // At most nine bytes, whatever the read sizes: constant work.
                    let head = &rest[..rest.len().min(CDATA_OPEN.len())];
                    self.examined += head.len() as u64;
                    match classify_markup(head, cx)? {
                        Some((state, pos)) => {
                            self.state = state;
                            self.pos = pos;
                        }
                        None => return Ok(None),
                    }
                }
                State::Text => return self.scan_text(rest, cx),
                State::Tag { quote } => return self.scan_tag(rest, quote),
                State::Decl => return self.scan_until(rest, b"?>"),
                State::CData => return self.scan_until(rest, b"]]>"),
            }
        }
    }

    fn complete(&mut self, len: usize, token: Token) -> Result<Option<(usize, Token)>, ReadError> {
        self.state = State::Start;
        self.pos = 0;
        Ok(Some((len, token)))
    }

    fn pending(&mut self, rest: &[u8]) -> Result<Option<(usize, Token)>, ReadError> {
        self.pos = rest.len();
        Ok(None)
    }

    /// Examines `bytes`, the next ones of the token.
    fn examine(&mut self, bytes: &[u8]) -> Result<(), ReadError> {
        self.examined += bytes.len() as u64;
        check_characters(bytes)
    }

    fn scan_text(&mut self, rest: &[u8], cx: Context) -> Result<Option<(usize, Token)>, ReadError> {
        let tail = &rest[self.pos..];
        let end = memchr(b'<', tail);
        let run = &tail[..end.unwrap_or(tail.len())];
        if cx.in_stanza {
            self.examine(run)?;
        } else {
            self.examined += run.len() as u64;
            if run.iter().any(|&b| !is_xml_space(b)) {
                return Err(malformed(if cx.in_prolog {
                    "content before the stream header"
                } else {
                    "text between stanzas"
                }));
            }
        }
        match end {
            Some(i) => self.complete(self.pos + i, Token::Text),
            None => self.pending(rest),
        }
    }

    fn scan_tag(
        &mut self,
        rest: &[u8],
        mut quote: Option<u8>,
    ) -> Result<Option<(usize, Token)>, ReadError> {
        loop {
            let tail = &rest[self.pos..];
            let hit = match quote {
                None => memchr3(b'>', b'\'', b'"', tail),
                Some(q) => memchr(q, tail),
            };
            let Some(i) = hit else {
                self.examine(tail)?;
                self.state = State::Tag { quote };
                return self.pending(rest);
            };
            self.examine(&tail[..=i])?;
            self.pos += i + 1;
            match (quote, tail[i]) {
                (None, b'>') => return self.complete(self.pos, Token::Markup),
                (None, q) => quote = Some(q),
                (Some(_), _) => quote = None,
            }
        }
    }

    /// Scans for `close`, which ends the declaration or CDATA section.
    fn scan_until(
        &mut self,
        rest: &[u8],
        close: &[u8],
    ) -> Result<Option<(usize, Token)>, ReadError> {
        let last = close[close.len() - 1];
        loop {
            let tail = &rest[self.pos..];
            let Some(i) = memchr(last, tail) else {
                self.examine(tail)?;
                return self.pending(rest);
            };
            self.examine(&tail[..=i])?;
            self.pos += i + 1;
            // The bytes before it are still in the buffer, whichever read brought them.
            if rest[..self.pos].ends_with(close) {
                return self.complete(self.pos, Token::Markup);
            }
        }
    }
}

/// Tells which markup `head` (the first bytes of a token, from `<`) opens, and
/// where its scan starts; `None` if more bytes are needed to tell. Comments,
/// processing instructions and DTDs are refused on their first bytes, so a
/// peer cannot make the server buffer them.
fn classify_markup(head: &[u8], cx: Context) -> Result<Option<(State, usize)>, ReadError> {
    let Some(&second) = head.get(1) else {
        return Ok(None);
    };
    match second {
        b'!' => match head.get(2) {
            None => Ok(None),
            Some(b'-') => Err(ReadError::Restricted("comment")),
            Some(b'D' | b'd') => Err(ReadError::Restricted("document type declaration")),
            Some(b'[') if CDATA_OPEN.starts_with(head) => {
                Ok((head.len() == CDATA_OPEN.len()).then_some((State::CData, CDATA_OPEN.len())))
            }
            _ => Err(malformed("markup that is neither an element nor CDATA")),
        },
        b'?' => {
            let could_be_decl = b"<?xml ".starts_with(&head[..head.len().min(6)])
                || head.starts_with(b"<?xml\t")
                || head.starts_with(b"<?xml\n")
                || head.starts_with(b"<?xml\r");
            if !(cx.decl_allowed && could_be_decl) {
                return Err(ReadError::Restricted("processing instruction"));
            }
            Ok((head.len() >= 6).then_some((State::Decl, 2)))
        }
        _ => Ok(Some((State::Tag { quote: None }, 1))),
    }
}

pub(super) fn is_xml_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
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

#[cfg(test)]
mod tests {
    use super::*;

    const IN_STANZA: Context = Context {
        in_stanza: true,
        in_prolog: false,
        decl_allowed: false,
    };

    /// Feeds `input` to a scanner one byte more at a time; returns the first token.
    fn dripped(input: &[u8], cx: Context) -> Result<Option<(usize, Token)>, ReadError> {
        let mut s = Scanner::default();
        for n in 1..=input.len() {
            if let Some(t) = s.next_token(&input[..n], cx)? {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }

    #[test]
    fn token_ends_as_quick_xml_ends_them() {
        for (input, len, token) in [
            ("<a b='>' c=\">\">rest", 15, Token::Markup),
            ("</a '>'>x", 8, Token::Markup),
            ("text &amp; more<b>", 15, Token::Text),
            ("<![CDATA[ ]> ]]]>x", 17, Token::Markup),
            ("<![CDATA[]]>", 12, Token::Markup),
        ] {
            for result in [
                Scanner::default().next_token(input.as_bytes(), IN_STANZA),
                dripped(input.as_bytes(), IN_STANZA),
            ] {
                assert_eq!(result, Ok(Some((len, token))), "{input}");
            }
        }
        let prolog = Context {
            in_stanza: false,
            in_prolog: true,
            decl_allowed: true,
        };
        assert_eq!(
            dripped(b"<?xml version='1.0'?><s>", prolog),
            Ok(Some((21, Token::Markup)))
        );
        // Unfinished: more input needed, in one piece or many.
        for input in ["<a b='>", "text", "<![CDATA[x]]", "<!", "<![CDA"] {
            assert_eq!(dripped(input.as_bytes(), IN_STANZA), Ok(None), "{input}");
        }
    }

    #[test]
    fn refuses_early() {
        for (input, cx) in [
            ("<!-", IN_STANZA),
            ("<!D", IN_STANZA),
            ("<?p", IN_STANZA),
            ("<![X", IN_STANZA),
            ("<!x", IN_STANZA),
            ("<a \u{1}", IN_STANZA),
            (
                " x",
                Context {
                    in_stanza: false,
                    in_prolog: false,
                    decl_allowed: false,
                },
            ),
        ] {
            assert!(dripped(input.as_bytes(), cx).is_err(), "{input:?}");
        }
    }

    #[test]
    fn resumed_scan_examines_each_byte_once() {
        let mut s = Scanner::default();
        let mut input = b"<message a='".to_vec();
        for _ in 0..10_000 {
            input.push(b'x');
            assert_eq!(s.next_token(&input, IN_STANZA), Ok(None));
        }
        input.extend_from_slice(b"'/>");
        assert_eq!(
            s.next_token(&input, IN_STANZA),
            Ok(Some((input.len(), Token::Markup)))
        );
        // Nine bytes of classification at most, then every byte once.
        assert!(s.examined <= input.len() as u64 + 9, "{}", s.examined);
    }
}
