//! The XMPP wire: XML stream reading, elements, JIDs, errors, forms, SASL. No I/O
//! here, so everything is unit-tested and fuzzed directly.

pub mod dataform;
pub mod element;
pub mod errors;
pub mod fuzzing;
pub mod jid;
pub mod ns;
pub mod reader;
pub mod sasl;
pub mod stanza;
pub mod stream;

pub use element::Element;
