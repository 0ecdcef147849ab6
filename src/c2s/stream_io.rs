//! The session's side of the wire: the incremental reader for what comes in,
//! the buffer for what goes out (flushed to the I/O pump once per read), and
//! the stream envelope (header, errors, close, restarts).

use super::io::{IoCommand, Outbox};
use crate::xmpp::errors::StreamError;
use crate::xmpp::reader::{ReadError, ReaderLimits, StreamEvent, StreamReader};
use crate::xmpp::{ns, stream, Element};

pub struct StreamIo {
    out: Outbox,
    reader: StreamReader,
    outbuf: String,
    header_sent: bool,
    /// The peer must open a new stream (after STARTTLS or SASL success).
    restart: bool,
    closed: bool,
}

impl StreamIo {
    pub fn new(out: Outbox, limits: ReaderLimits) -> StreamIo {
        StreamIo {
            out,
            reader: StreamReader::new(limits),
            outbuf: String::new(),
            header_sent: false,
            restart: false,
            closed: false,
        }
    }

    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<StreamEvent>, ReadError> {
        self.reader.feed(data)
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether the events after the current one must wait for a new stream.
    pub fn restarting(&self) -> bool {
        self.restart
    }

    pub fn require_restart(&mut self) {
        self.restart = true;
    }

    /// Starts over after a restart point: anything the peer pipelined behind
    /// it is dropped (never read in the old stream's security context).
    pub fn finish_restart(&mut self) {
        if self.restart {
            self.restart = false;
            self.reader.reset();
            self.header_sent = false;
        }
    }

    pub fn send(&mut self, element: &Element) {
        element.write_to(&mut self.outbuf, ns::CLIENT);
        crate::metrics::stanza_out();
    }

    /// Markup that is not a stanza (features, SASL, the TLS answers).
    pub fn send_raw(&mut self, xml: &str) {
        self.outbuf.push_str(xml);
    }

    pub fn command(&self, cmd: IoCommand) {
        self.out.command(cmd);
    }

    pub fn flush(&mut self) {
        if !self.outbuf.is_empty() {
            let data = std::mem::take(&mut self.outbuf).into_bytes();
            self.out.command(IoCommand::Send(data));
        }
    }

    pub fn send_header(&mut self, domain: &str) {
        let id = crate::secrets::random_id(12);
        self.outbuf.push_str(&stream::header(domain, &id));
        self.header_sent = true;
    }

    /// Writes the stream error (behind a header if none went out yet) and closes.
    pub fn stream_error(&mut self, error: &StreamError, domain: &str) {
        if self.closed {
            return;
        }
        if !self.header_sent {
            self.send_header(domain);
        }
        self.outbuf.push_str(&error.to_xml());
        self.outbuf.push_str(stream::CLOSE);
        self.close();
    }

    /// The peer closed its stream: close ours.
    pub fn close_stream(&mut self) {
        if self.header_sent {
            self.outbuf.push_str(stream::CLOSE);
        }
        self.close();
    }

    pub fn close(&mut self) {
        self.flush();
        self.out.command(IoCommand::Close);
        self.closed = true;
    }
}
