//! The server's side of the stream envelope.

use super::element::escape;
use super::ns;

/// The response stream header (RFC 6120 §4.7).
pub fn header(domain: &str, id: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{}' from='{}' id='{}' \
         version='1.0' xml:lang='en'>",
        ns::CLIENT,
        ns::STREAM,
        escape(domain),
        escape(id)
    )
}

pub const CLOSE: &str = "</stream:stream>";
