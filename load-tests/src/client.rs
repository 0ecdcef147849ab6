//! The client. It parses the server's output with usher's own stream reader,
//! so tests look at elements, not at strings.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use usher::xmpp::reader::{ReaderLimits, StreamEvent, StreamReader};
use usher::xmpp::sasl::scram::ScramClient;
use usher::xmpp::sasl::HashAlg;
use usher::xmpp::{ns, Element};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("timed out waiting for the server")]
    Timeout,
    #[error("the server closed the stream")]
    Closed,
    #[error("unparsable server output: {0}")]
    Parse(String),
    #[error("stream error from the server: {0}")]
    StreamError(String),
    #[error("unexpected: {0}")]
    Unexpected(String),
}

type Result<T> = std::result::Result<T, ClientError>;

/// How the client checks the server certificate.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Trust exactly this PEM certificate (usher's generated one, in tests).
    Pinned(std::path::PathBuf),
    /// Accept any certificate: for load runs against a throwaway server only.
    Insecure,
}

impl Trust {
    pub fn client_config(&self) -> Result<Arc<ClientConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        let config = match self {
            Trust::Pinned(path) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in load_certs(path)? {
                    roots
                        .add(cert)
                        .map_err(|e| ClientError::Tls(e.to_string()))?;
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            Trust::Insecure => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(insecure::AcceptAny(provider)))
                .with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| ClientError::Tls(format!("{}: {e}", path.display())))
}

enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while the plain socket is being upgraded (or after that failed).
    Gone,
}

/// SASL mechanisms the client can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mech {
    ScramSha256,
    ScramSha1,
    Plain,
}

impl Mech {
    pub const ALL: [Mech; 3] = [Mech::ScramSha1, Mech::ScramSha256, Mech::Plain];

    pub fn name(self) -> &'static str {
        match self {
            Mech::ScramSha256 => "SCRAM-SHA-256",
            Mech::ScramSha1 => "SCRAM-SHA-1",
            Mech::Plain => "PLAIN",
        }
    }
}

/// The outcome of a SASL attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    Success,
    /// `<failure>` with this condition.
    Failure(String),
}

pub struct Client {
    transport: Transport,
    reader: StreamReader,
    events: VecDeque<StreamEvent>,
    domain: String,
    tls: Arc<ClientConfig>,
    /// The features of the current stream.
    pub features: Element,
    pub timeout: Duration,
    next_id: u64,
}

impl Client {
    /// Connects and opens a stream (no TLS yet).
    pub async fn connect(addr: SocketAddr, domain: &str, trust: &Trust) -> Result<Client> {
        let tcp = TcpStream::connect(addr).await?;
        Self::over(tcp, domain, trust).await
    }

    /// Like `connect_tls`, from a chosen local address (e.g. 127.0.0.2, to
    /// look like another client host to the server's per-address limits).
    pub async fn connect_tls_from(
        addr: SocketAddr,
        local: std::net::IpAddr,
        domain: &str,
        trust: &Trust,
    ) -> Result<Client> {
        let socket = match local {
            std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.bind(SocketAddr::new(local, 0))?;
        let tcp = socket.connect(addr).await?;
        let mut client = Self::over(tcp, domain, trust).await?;
        client.starttls().await?;
        Ok(client)
    }

    async fn over(tcp: TcpStream, domain: &str, trust: &Trust) -> Result<Client> {
        tcp.set_nodelay(true)?;
        let mut client = Client {
            transport: Transport::Plain(tcp),
            reader: StreamReader::new(ReaderLimits {
                max_stanza_size: 1 << 20,
                max_depth: 64,
                ..ReaderLimits::default()
            }),
            events: VecDeque::new(),
            domain: domain.to_owned(),
            tls: trust.client_config()?,
            features: Element::new("features", ns::STREAM),
            timeout: Duration::from_secs(10),
            next_id: 0,
        };
        client.open_stream().await?;
        Ok(client)
    }

    /// Connects, negotiates TLS and opens the secured stream.
    pub async fn connect_tls(addr: SocketAddr, domain: &str, trust: &Trust) -> Result<Client> {
        let mut client = Client::connect(addr, domain, trust).await?;
        client.starttls().await?;
        Ok(client)
    }

    pub fn header(&self) -> String {
        format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' to='{}' version='1.0'>",
            self.domain
        )
    }

    pub async fn send_raw(&mut self, data: &[u8]) -> Result<()> {
        match &mut self.transport {
            Transport::Plain(s) => s.write_all(data).await?,
            Transport::Tls(s) => {
                s.write_all(data).await?;
                s.flush().await?;
            }
            Transport::Gone => return Err(ClientError::Closed),
        }
        Ok(())
    }

    pub async fn send(&mut self, element: &Element) -> Result<()> {
        self.send_raw(element.to_stanza_string().as_bytes()).await
    }

    async fn fill(&mut self) -> Result<()> {
        let mut buf = vec![0u8; 16 * 1024];
        let read = async {
            match &mut self.transport {
                Transport::Plain(s) => s.read(&mut buf).await,
                Transport::Tls(s) => s.read(&mut buf).await,
                Transport::Gone => Ok(0),
            }
        };
        let n = tokio::time::timeout(self.timeout, read)
            .await
            .map_err(|_| ClientError::Timeout)??;
        if n == 0 {
            return Err(ClientError::Closed);
        }
        let events = self
            .reader
            .feed(&buf[..n])
            .map_err(|e| ClientError::Parse(e.to_string()))?;
        self.events.extend(events);
        Ok(())
    }

    /// The next stream event: header, element or close.
    pub async fn next_event(&mut self) -> Result<StreamEvent> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Ok(event);
            }
            self.fill().await?;
        }
    }

    /// The next first-level element. A stream error is returned as its element
    /// (`error` in the streams namespace) so tests can look at it.
    pub async fn next_element(&mut self) -> Result<Element> {
        match self.next_event().await? {
            StreamEvent::Stanza(el) => Ok(el),
            StreamEvent::Close => Err(ClientError::Closed),
            StreamEvent::Open(_) => Err(ClientError::Unexpected("a second stream header".into())),
        }
    }

    /// Like `next_element`, but a stream error becomes `ClientError::StreamError`.
    pub async fn next_stanza(&mut self) -> Result<Element> {
        let el = self.next_element().await?;
        if el.is("error", ns::STREAM) {
            let condition = el
                .children()
                .find(|c| c.ns() == ns::STREAMS && c.name() != "text")
                .map(|c| c.name().to_owned())
                .unwrap_or_default();
            return Err(ClientError::StreamError(condition));
        }
        Ok(el)
    }

    /// Sends a stream header; reads the server's header and features.
    pub async fn open_stream(&mut self) -> Result<()> {
        self.reader.reset();
        self.events.clear();
        let header = self.header();
        self.send_raw(header.as_bytes()).await?;
        match self.next_event().await? {
            StreamEvent::Open(_) => {}
            other => {
                return Err(ClientError::Unexpected(format!(
                    "{other:?} instead of a header"
                )))
            }
        }
        let features = self.next_stanza().await?;
        if !features.is("features", ns::STREAM) {
            return Err(ClientError::Unexpected(format!(
                "{features:?} instead of features"
            )));
        }
        self.features = features;
        Ok(())
    }

    pub async fn starttls(&mut self) -> Result<()> {
        self.send_raw(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await?;
        let reply = self.next_stanza().await?;
        if !reply.is("proceed", ns::TLS) {
            return Err(ClientError::Unexpected(format!(
                "{reply:?} instead of proceed"
            )));
        }
        let Transport::Plain(tcp) = std::mem::replace(&mut self.transport, Transport::Gone) else {
            return Err(ClientError::Unexpected("TLS is already on".into()));
        };
        let name = ServerName::try_from(self.domain.clone())
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        let tls = TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        self.transport = Transport::Tls(Box::new(tls));
        self.open_stream().await
    }

    pub fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("c{}", self.next_id)
    }

    /// Sends an IQ (an id is added if missing) and waits for its answer.
    pub async fn request(&mut self, mut iq: Element) -> Result<Element> {
        let id = match iq.attr("id") {
            Some(id) => id.to_owned(),
            None => {
                let id = self.new_id();
                iq.set_attr("id", id.clone());
                id
            }
        };
        self.send(&iq).await?;
        loop {
            let el = self.next_stanza().await?;
            if el.is("iq", ns::CLIENT) && el.attr("id") == Some(id.as_str()) {
                return Ok(el);
            }
        }
    }

    /// XEP-0077 registration with the legacy fields; returns the answer.
    pub async fn register(&mut self, username: &str, password: &str) -> Result<Element> {
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_child(
                Element::new("query", ns::REGISTER)
                    .with_child(Element::new("username", ns::REGISTER).with_text(username))
                    .with_child(Element::new("password", ns::REGISTER).with_text(password)),
            );
        self.request(iq).await
    }

    /// The roster as (jid, subscription, ask) triples.
    pub async fn roster(&mut self) -> Result<Vec<(String, String, bool)>> {
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_child(Element::new("query", ns::ROSTER));
        let reply = self.request(iq).await?;
        Ok(reply
            .get_child("query", ns::ROSTER)
            .map(|q| {
                q.children()
                    .map(|i| {
                        (
                            i.attr("jid").unwrap_or_default().to_owned(),
                            i.attr("subscription").unwrap_or_default().to_owned(),
                            i.attr("ask") == Some("subscribe"),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Waits for the next stanza that `pred` accepts, skipping others.
    pub async fn wait_for(&mut self, pred: impl Fn(&Element) -> bool) -> Result<Element> {
        loop {
            let el = self.next_stanza().await?;
            if pred(&el) {
                return Ok(el);
            }
        }
    }

    /// XEP-0445: proves an invite token on this stream; returns the answer.
    pub async fn preauth(&mut self, token: &str) -> Result<Element> {
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_child(Element::new("preauth", ns::PARS).with_attr("token", token));
        self.request(iq).await
    }

    pub async fn authenticate(
        &mut self,
        mech: Mech,
        username: &str,
        password: &str,
    ) -> Result<Auth> {
        match mech {
            Mech::Plain => {
                let payload = B64.encode(format!("\0{username}\0{password}"));
                self.send_raw(
                    format!(
                        "<auth xmlns='{}' mechanism='PLAIN'>{payload}</auth>",
                        ns::SASL
                    )
                    .as_bytes(),
                )
                .await?;
                self.sasl_outcome(None).await
            }
            Mech::ScramSha1 | Mech::ScramSha256 => {
                let alg = if mech == Mech::ScramSha1 {
                    HashAlg::Sha1
                } else {
                    HashAlg::Sha256
                };
                let nonce = usher::secrets::random_id(18);
                let mut scram = ScramClient::new(alg, username, password, &nonce);
                let first = B64.encode(scram.client_first());
                self.send_raw(
                    format!(
                        "<auth xmlns='{}' mechanism='{}'>{first}</auth>",
                        ns::SASL,
                        mech.name()
                    )
                    .as_bytes(),
                )
                .await?;
                let reply = self.next_stanza().await?;
                if !reply.is("challenge", ns::SASL) {
                    return Ok(failure_of(&reply));
                }
                let server_first = decode(&reply.text())?;
                let last = scram
                    .client_final(&server_first)
                    .map_err(|e| ClientError::Unexpected(format!("server-first: {e}")))?;
                self.send_raw(
                    format!(
                        "<response xmlns='{}'>{}</response>",
                        ns::SASL,
                        B64.encode(last)
                    )
                    .as_bytes(),
                )
                .await?;
                self.sasl_outcome(Some(&scram)).await
            }
        }
    }

    async fn sasl_outcome(&mut self, scram: Option<&ScramClient>) -> Result<Auth> {
        let reply = self.next_stanza().await?;
        if !reply.is("success", ns::SASL) {
            return Ok(failure_of(&reply));
        }
        if let Some(scram) = scram {
            if !scram.verify_server_final(&decode(&reply.text())?) {
                return Err(ClientError::Unexpected(
                    "the server signature is wrong".into(),
                ));
            }
        }
        self.open_stream().await?;
        Ok(Auth::Success)
    }

    /// Binds a resource; returns the full JID.
    pub async fn bind(&mut self, resource: Option<&str>) -> Result<String> {
        let mut bind = Element::new("bind", ns::BIND);
        if let Some(r) = resource {
            bind.push_child(Element::new("resource", ns::BIND).with_text(r));
        }
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_child(bind);
        let reply = self.request(iq).await?;
        reply
            .get_child("bind", ns::BIND)
            .and_then(|b| b.get_child("jid", ns::BIND))
            .map(Element::text)
            .ok_or_else(|| ClientError::Unexpected(format!("bind answer: {reply:?}")))
    }

    /// TLS, SASL and bind in one go.
    pub async fn login(
        addr: SocketAddr,
        domain: &str,
        trust: &Trust,
        mech: Mech,
        username: &str,
        password: &str,
    ) -> Result<(Client, String)> {
        let mut client = Client::connect_tls(addr, domain, trust).await?;
        match client.authenticate(mech, username, password).await? {
            Auth::Success => {}
            Auth::Failure(c) => return Err(ClientError::Unexpected(format!("login failed: {c}"))),
        }
        let jid = client.bind(None).await?;
        Ok((client, jid))
    }

    /// Closes the stream and waits for the server to close its side.
    pub async fn close(mut self) -> Result<()> {
        self.send_raw(b"</stream:stream>").await?;
        loop {
            match self.next_event().await {
                Ok(StreamEvent::Close) | Err(ClientError::Closed) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

fn decode(text: &str) -> Result<Vec<u8>> {
    usher::xmpp::sasl::decode_payload(text).map_err(|e| ClientError::Parse(e.to_string()))
}

fn failure_of(reply: &Element) -> Auth {
    Auth::Failure(
        reply
            .children()
            .next()
            .map(|c| c.name().to_owned())
            .unwrap_or_else(|| reply.name().to_owned()),
    )
}

/// The stanza error condition of an IQ answer, if it is an error.
pub fn error_condition(reply: &Element) -> Option<String> {
    if reply.attr("type") != Some("error") {
        return None;
    }
    reply
        .get_child("error", ns::CLIENT)
        .and_then(|e| {
            e.children()
                .find(|c| c.ns() == ns::STANZAS && c.name() != "text")
        })
        .map(|c| c.name().to_owned())
}

/// The stanza error text of an IQ answer, if any.
pub fn error_text(reply: &Element) -> Option<String> {
    reply
        .get_child("error", ns::CLIENT)
        .and_then(|e| e.get_child("text", ns::STANZAS))
        .map(Element::text)
}

mod insecure {
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::CryptoProvider;
    use rustls::{DigitallySignedStruct, SignatureScheme};
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

    /// Checks signatures but not the certificate: `Trust::Insecure`.
    #[derive(Debug)]
    pub struct AcceptAny(pub Arc<CryptoProvider>);

    impl ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
}
