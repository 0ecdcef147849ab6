//! The stream state machine driven without a socket: bytes go into a
//! `Session`, what it writes comes back through its outbox and is read with
//! the same stream reader a client would use. TLS is not really negotiated
//! here — the session only asks its pump to start it — so these tests cover
//! the stages and their transitions, and `tests/` covers the wire with TLS.

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::io::{IoCommand, Outbox};
use super::pre_auth_slots::PreAuthSlots;
use super::session::Session;
use super::C2sShared;
use crate::accounts::embedded::EmbeddedStore;
use crate::accounts::{Account, AccountStore, Credentials};
use crate::blocking_pool::CpuPool;
use crate::config::Config;
use crate::ledger::{LedgerHandle, LedgerOptions};
use crate::registration::{Registrar, RegistrationLimiter};
use crate::sessions::SessionDirectory;
use crate::xmpp::reader::{ReaderLimits, StreamEvent, StreamReader};
use crate::xmpp::sasl::HashAlg;
use crate::xmpp::{ns, Element};

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

/// What the session wrote, as a client reads it.
#[derive(Debug, Default)]
struct Output {
    events: Vec<StreamEvent>,
    start_tls: bool,
    closed: bool,
}

impl Output {
    fn stanzas(&self) -> Vec<&Element> {
        self.events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Stanza(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    fn only(&self) -> &Element {
        let s = self.stanzas();
        assert_eq!(s.len(), 1, "{:?}", self.events);
        s[0]
    }

    /// The condition of the stream error the session ended with.
    fn stream_error(&self) -> Option<String> {
        self.stanzas()
            .into_iter()
            .find(|s| s.is("error", ns::STREAM))
            .and_then(|e| e.children().next().map(|c| c.name().to_owned()))
    }
}

struct Driver {
    session: Session,
    outbox: mpsc::UnboundedReceiver<IoCommand>,
    client: StreamReader,
    _dir: tempfile::TempDir,
}

impl Driver {
    async fn new(configure: impl FnOnce(&mut Config)) -> Driver {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            scram_iterations: 4096,
            ..Config::default()
        };
        configure(&mut config);
        let shared = shared(config).await;
        let (tx, outbox) = mpsc::unbounded_channel();
        let peer: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        Driver {
            session: Session::new(shared, Outbox::new(tx), peer),
            outbox,
            client: StreamReader::new(ReaderLimits::default()),
            _dir: dir,
        }
    }

    fn shared(&self) -> &Arc<C2sShared> {
        &self.session.shared
    }

    /// Feeds `xml` and collects everything the session wrote in answer.
    async fn send(&mut self, xml: &str) -> Output {
        self.session.on_data(xml.as_bytes()).await;
        self.drain()
    }

    fn drain(&mut self) -> Output {
        let mut out = Output::default();
        while let Ok(cmd) = self.outbox.try_recv() {
            match cmd {
                IoCommand::Send(bytes) => {
                    // A new stream header from the server: the client starts over too.
                    if bytes.starts_with(b"<?xml") {
                        self.client.reset();
                    }
                    out.events.extend(self.client.feed(&bytes).unwrap());
                }
                IoCommand::StartTls => out.start_tls = true,
                IoCommand::Close => out.closed = true,
                IoCommand::SetIdleTimeout(_) => {}
            }
        }
        out
    }

    /// Opens the stream and does STARTTLS (as far as the session sees it).
    async fn secured(&mut self) {
        self.send(HEADER).await;
        let out = self
            .send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await;
        assert!(out.start_tls);
    }

    async fn add_account(&self, name: &str, password: &str) {
        let account = Account {
            username: crate::xmpp::jid::Username::parse(name).unwrap(),
            credentials: Credentials::derive(password, 4096, &HashAlg::ALL),
            created_at: 0,
            roles: vec![],
            reservation: None,
            generation: None,
        };
        self.shared().store.create(account).await.unwrap();
    }

    /// Logs in with PLAIN on a secured stream; returns the answer to SASL.
    async fn plain(&mut self, user: &str, password: &str) -> Output {
        use base64::Engine as _;
        let payload =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{payload}</auth>"
        ))
        .await
    }
}

async fn shared(config: Config) -> Arc<C2sShared> {
    let dir = config.data_dir.clone();
    let config = Arc::new(config);
    let store: Arc<dyn AccountStore> =
        Arc::new(EmbeddedStore::open(&dir.join("accounts.redb")).unwrap());
    let options = LedgerOptions {
        shards: 1,
        ..LedgerOptions::default()
    };
    let ledger = LedgerHandle::open_single(&dir, options).await.unwrap();
    let cpu = CpuPool::new(2, 8, 8);
    let directory = Arc::new(SessionDirectory::new(config.domain.clone()));
    let registrar = Arc::new(Registrar {
        config: config.clone(),
        store: store.clone(),
        ledger: ledger.clone(),
        cpu: cpu.clone(),
        limiter: RegistrationLimiter::new(0),
        directory: directory.clone(),
    });
    let pre_auth_slots = PreAuthSlots::new(config.limits.pre_auth_connections_per_address);
    Arc::new(C2sShared {
        tls: super::tls::acceptor(&config).unwrap(),
        guessing: super::guessing::Guessing::new(&config.limits),
        config,
        store,
        ledger,
        cpu,
        registrar,
        decoy_secret: vec![7; 32],
        connections: Arc::new(AtomicUsize::new(0)),
        max_connections: 100,
        pre_auth_slots,
        directory,
    })
}

fn iq(kind: &str, id: &str, payload: &str) -> String {
    format!("<iq type='{kind}' id='{id}'>{payload}</iq>")
}

#[actix_rt::test]
async fn a_plain_stream_offers_only_starttls_and_refuses_everything_else() {
    let mut d = Driver::new(|_| {}).await;
    let out = d.send(HEADER).await;
    assert!(matches!(out.events[0], StreamEvent::Open(_)));
    let features = out.only();
    let names: Vec<_> = features.children().map(|c| c.name()).collect();
    assert_eq!(names, ["starttls"]);
    assert!(features
        .get_child("starttls", ns::TLS)
        .unwrap()
        .has_child("required", ns::TLS));

    let out = d
        .send(&iq("get", "1", "<ping xmlns='urn:xmpp:ping'/>"))
        .await;
    let reply = out.only();
    assert_eq!(reply.attr("type"), Some("error"));
    assert!(format!("{reply:?}").contains("policy-violation"));

    let out = d
        .send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AA==</auth>")
        .await;
    assert!(out.only().has_child("encryption-required", ns::SASL));

    let out = d
        .send("<message to='a@localhost'><body>hi</body></message>")
        .await;
    assert_eq!(out.stream_error().as_deref(), Some("policy-violation"));
    assert!(out.closed);
}

#[actix_rt::test]
async fn starttls_drops_what_was_pipelined_behind_it_and_restarts_the_stream() {
    let mut d = Driver::new(|_| {}).await;
    d.send(HEADER).await;
    // A client may not pipeline past <starttls/>: those bytes are plaintext.
    let out = d
        .send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><iq type='get' id='x'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert!(out.start_tls);
    assert_eq!(out.stanzas().len(), 1, "only <proceed/>: {:?}", out.events);
    assert!(out.only().is("proceed", ns::TLS));

    let out = d.send(HEADER).await;
    let features = out.only();
    assert!(features.has_child("mechanisms", ns::SASL));
    assert!(features.has_child("register", ns::REGISTER_FEATURE));
    assert!(!features.has_child("starttls", ns::TLS));
    // Secured but anonymous: no stanzas but IQs.
    let out = d.send("<presence/>").await;
    assert_eq!(out.stream_error().as_deref(), Some("not-authorized"));
}

#[actix_rt::test]
async fn login_then_bind_walks_every_stage() {
    let mut d = Driver::new(|_| {}).await;
    d.add_account("alice", "correct horse").await;
    d.secured().await;
    d.send(HEADER).await;
    // Bind is not for anonymous streams.
    let out = d
        .send(&iq(
            "set",
            "b0",
            "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>",
        ))
        .await;
    assert!(format!("{:?}", out.only()).contains("not-authorized"));

    let out = d.plain("alice", "correct horse").await;
    assert!(out.only().is("success", ns::SASL));
    // SASL success restarts the stream: the next header gets bind.
    let features = d.send(HEADER).await;
    let features = features.only();
    assert!(features.has_child("bind", ns::BIND));
    assert!(!features.has_child("mechanisms", ns::SASL));
    let out = d
        .send(&iq(
            "set",
            "b1",
            "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>phone</resource></bind>",
        ))
        .await;
    let reply = out.only();
    assert_eq!(reply.attr("type"), Some("result"));
    let jid = reply
        .get_child("bind", ns::BIND)
        .and_then(|b| b.get_child("jid", ns::BIND))
        .map(Element::text);
    assert_eq!(jid.as_deref(), Some("alice@localhost/phone"));
    // Bound: the roster answers, a second bind does not.
    let out = d
        .send(&iq("get", "r1", "<query xmlns='jabber:iq:roster'/>"))
        .await;
    assert_eq!(out.only().attr("type"), Some("result"));
    let out = d
        .send(&iq(
            "set",
            "b2",
            "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>",
        ))
        .await;
    assert!(format!("{:?}", out.only()).contains("not-allowed"));
    // A second authentication on an authenticated stream ends it.
    let out = d.plain("alice", "correct horse").await;
    assert_eq!(out.stream_error().as_deref(), Some("policy-violation"));
}

#[actix_rt::test]
async fn failed_logins_close_the_stream_at_the_limit() {
    let mut d = Driver::new(|c| c.limits.max_auth_failures = 2).await;
    d.add_account("bob", "the right one").await;
    d.secured().await;
    d.send(HEADER).await;
    let out = d.plain("bob", "wrong").await;
    assert!(out.only().has_child("not-authorized", ns::SASL));
    assert!(!out.closed);
    // An unknown user fails the same way and counts the same.
    let out = d.plain("nobody", "wrong").await;
    assert_eq!(out.stream_error().as_deref(), Some("policy-violation"));
    assert!(out.closed);
}

#[actix_rt::test]
async fn registration_needs_an_invite_by_default_and_a_bad_invite_is_refused() {
    let mut d = Driver::new(|_| {}).await;
    d.secured().await;
    d.send(HEADER).await;
    let set = iq(
        "set",
        "reg",
        "<query xmlns='jabber:iq:register'><username>carol</username><password>long enough pw</password></query>",
    );
    let out = d.send(&set).await;
    let text = format!("{:?}", out.only());
    assert!(
        text.contains("not-acceptable") && text.contains("invitation only"),
        "{text}"
    );
    let out = d
        .send(&iq(
            "set",
            "p",
            "<preauth xmlns='urn:xmpp:pars:0' token='no-such-token'/>",
        ))
        .await;
    assert!(format!("{:?}", out.only()).contains("item-not-found"));
    assert!(d
        .shared()
        .store
        .get(&crate::xmpp::jid::Username::parse("carol").unwrap())
        .await
        .unwrap()
        .is_none());
}

#[actix_rt::test]
async fn the_stream_header_is_checked() {
    for (header, condition) in [
        (
            "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
            "invalid-namespace",
        ),
        (
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='elsewhere.example' version='1.0'>",
            "host-unknown",
        ),
        (
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost'>",
            "unsupported-version",
        ),
    ] {
        let mut d = Driver::new(|_| {}).await;
        let out = d.send(header).await;
        assert!(matches!(out.events[0], StreamEvent::Open(_)), "a header first");
        assert_eq!(out.stream_error().as_deref(), Some(condition), "{header}");
    }
}

#[actix_rt::test]
async fn only_bound_streams_take_delivered_stanzas_and_timeouts_end_the_stream() {
    let mut d = Driver::new(|_| {}).await;
    d.send(HEADER).await;
    d.session
        .deliver(Element::new("message", ns::CLIENT).with_attr("from", "x@localhost"));
    assert!(d.drain().events.is_empty());
    d.session.on_idle_timeout();
    let out = d.drain();
    assert_eq!(out.stream_error().as_deref(), Some("connection-timeout"));
    assert!(out.closed);
    // Nothing more is read once closed.
    assert!(d.send(HEADER).await.events.is_empty());
}

#[actix_rt::test]
async fn not_well_formed_input_ends_the_stream() {
    let mut d = Driver::new(|_| {}).await;
    d.send(HEADER).await;
    let out = d.send("<iq></message>").await;
    assert_eq!(out.stream_error().as_deref(), Some("not-well-formed"));
}

impl Driver {
    /// A secured, logged-in stream bound to `user@localhost/res`.
    async fn bound(configure: impl FnOnce(&mut Config), user: &str) -> Driver {
        let mut d = Driver::new(configure).await;
        d.add_account(user, "pw").await;
        d.secured().await;
        d.send(HEADER).await;
        assert!(d.plain(user, "pw").await.only().is("success", ns::SASL));
        d.send(HEADER).await;
        let out = d
            .send(&iq(
                "set",
                "b",
                "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>res</resource></bind>",
            ))
            .await;
        assert_eq!(out.only().attr("type"), Some("result"));
        d
    }
}

fn condition(stanza: &Element) -> Option<(String, String)> {
    let e = stanza.get_child("error", ns::CLIENT)?;
    let c = e.children().find(|c| c.ns() == ns::STANZAS)?;
    Some((e.attr("type")?.to_owned(), c.name().to_owned()))
}

#[actix_rt::test]
async fn bound_streams_offer_roster_versioning_and_pre_approval() {
    let mut d = Driver::new(|_| {}).await;
    d.add_account("alice", "pw").await;
    d.secured().await;
    d.send(HEADER).await;
    d.plain("alice", "pw").await;
    let features = d.send(HEADER).await;
    let features = features.only();
    assert!(features.has_child("ver", ns::ROSTER_VER));
    assert!(features.has_child("sub", ns::PRE_APPROVAL));
}

#[actix_rt::test]
async fn a_roster_get_with_the_current_version_is_answered_empty() {
    let mut d = Driver::bound(|_| {}, "alice").await;
    let out = d
        .send(&iq("get", "r1", "<query xmlns='jabber:iq:roster' ver=''/>"))
        .await;
    let ver = out
        .only()
        .get_child("query", ns::ROSTER)
        .and_then(|q| q.attr("ver"))
        .expect("a version with the roster")
        .to_owned();
    let out = d
        .send(&iq(
            "get",
            "r2",
            &format!("<query xmlns='jabber:iq:roster' ver='{ver}'/>"),
        ))
        .await;
    let reply = out.only();
    assert_eq!(reply.attr("type"), Some("result"));
    assert_eq!(reply.children().count(), 0, "{reply:?}");
    // A change gives a push carrying the new version, and the old one no
    // longer matches.
    let out = d
        .send(&iq(
            "set",
            "r3",
            "<query xmlns='jabber:iq:roster'><item jid='carol@example.org'/></query>",
        ))
        .await;
    let push = out
        .stanzas()
        .into_iter()
        .find(|s| s.attr("type") == Some("set"))
        .expect("a push")
        .clone();
    let new_ver = push
        .get_child("query", ns::ROSTER)
        .and_then(|q| q.attr("ver"))
        .expect("a versioned push");
    assert_ne!(new_ver, ver);
    let out = d
        .send(&iq(
            "get",
            "r4",
            &format!("<query xmlns='jabber:iq:roster' ver='{ver}'/>"),
        ))
        .await;
    let q = out
        .only()
        .get_child("query", ns::ROSTER)
        .expect("the roster");
    assert_eq!(q.attr("ver"), Some(new_ver));
    assert_eq!(q.children().count(), 1);
}

#[actix_rt::test]
async fn disco_info_of_an_account_is_the_account_and_of_nobody_an_error() {
    let mut d = Driver::bound(|_| {}, "alice").await;
    d.add_account("bob", "pw").await;
    for to in ["alice@localhost", "bob@localhost"] {
        let out = d
            .send(&format!(
                "<iq type='get' id='d' to='{to}'><query xmlns='{}'/></iq>",
                ns::DISCO_INFO
            ))
            .await;
        let identity = out
            .only()
            .get_child("query", ns::DISCO_INFO)
            .and_then(|q| q.get_child("identity", ns::DISCO_INFO))
            .map(|i| (i.attr("category"), i.attr("type")));
        assert_eq!(
            identity,
            Some((Some("account"), Some("registered"))),
            "{to}"
        );
    }
    let out = d
        .send(&format!(
            "<iq type='get' id='d' to='nobody@localhost'><query xmlns='{}'/></iq>",
            ns::DISCO_INFO
        ))
        .await;
    assert_eq!(
        condition(out.only()),
        Some(("cancel".into(), "service-unavailable".into()))
    );
    // Another account's bare JID answers nothing else on its behalf.
    let out = d
        .send("<iq type='get' id='p' to='bob@localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(
        condition(out.only()),
        Some(("cancel".into(), "service-unavailable".into()))
    );
    // The server lists what it does.
    let out = d
        .send(&iq(
            "get",
            "s",
            &format!("<query xmlns='{}'/>", ns::DISCO_INFO),
        ))
        .await;
    let vars: Vec<String> = out
        .only()
        .get_child("query", ns::DISCO_INFO)
        .unwrap()
        .children()
        .filter_map(|f| f.attr("var").map(str::to_owned))
        .collect();
    assert!(vars.iter().any(|v| v == ns::ROSTER), "{vars:?}");
}

#[actix_rt::test]
async fn an_iq_to_a_session_that_is_not_bound_is_service_unavailable() {
    let mut d = Driver::bound(|_| {}, "alice").await;
    d.add_account("bob", "pw").await;
    let out = d
        .send("<iq type='get' id='p' to='bob@localhost/gone'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(
        condition(out.only()),
        Some(("cancel".into(), "service-unavailable".into()))
    );
}

#[actix_rt::test]
async fn messages_to_offline_users_are_kept_up_to_the_limit_then_refused() {
    let mut d = Driver::bound(|c| c.limits.offline_messages_per_user = 2, "alice").await;
    d.add_account("bob", "pw").await;
    for n in 0..2 {
        let out = d
            .send(&format!(
                "<message type='chat' to='bob@localhost' id='m{n}'><body>{n}</body></message>"
            ))
            .await;
        assert!(
            out.stanzas().is_empty(),
            "kept, not bounced: {:?}",
            out.events
        );
    }
    let out = d
        .send("<message type='chat' to='bob@localhost' id='m2'><body>2</body></message>")
        .await;
    assert_eq!(
        condition(out.only()),
        Some(("cancel".into(), "service-unavailable".into()))
    );
    let bob = crate::xmpp::jid::Username::parse("bob").unwrap();
    let kept = d.shared().store.take_offline(&bob).await.unwrap();
    assert_eq!(kept.len(), 2);
    assert!(
        kept[0].stanza.contains("from=\"alice@localhost/res\"")
            || kept[0].stanza.contains("from='alice@localhost/res'"),
        "{:?}",
        kept[0]
    );
    // Nobody, a server, another domain, a groupchat: each its error.
    for (to, kind, expected) in [
        ("nobody@localhost", "chat", "service-unavailable"),
        ("localhost", "chat", "service-unavailable"),
        ("bob@example.org", "chat", "remote-server-not-found"),
        ("bob@localhost", "groupchat", "service-unavailable"),
    ] {
        let out = d
            .send(&format!(
                "<message type='{kind}' to='{to}'><body>x</body></message>"
            ))
            .await;
        assert_eq!(
            condition(out.only()).map(|c| c.1),
            Some(expected.into()),
            "{to} {kind}"
        );
    }
    // A headline to nobody online is dropped, and errors are never answered.
    for kind in ["headline", "error"] {
        let out = d
            .send(&format!(
                "<message type='{kind}' to='bob@localhost'><body>x</body></message>"
            ))
            .await;
        assert!(out.stanzas().is_empty(), "{kind}: {:?}", out.events);
    }
}

#[actix_rt::test]
async fn a_kept_message_comes_at_initial_presence_with_its_time() {
    let mut d = Driver::bound(|_| {}, "bob").await;
    let bob = crate::xmpp::jid::Username::parse("bob").unwrap();
    let kept = crate::accounts::OfflineMessage {
        stored_at: 1_700_000_000_000,
        stanza: "<message xmlns='jabber:client' type='chat' from='alice@localhost/x' \
                 to='bob@localhost'><body>hi</body></message>"
            .into(),
    };
    d.shared().store.push_offline(&bob, kept, 10).await.unwrap();
    let out = d.send("<presence/>").await;
    let msg = out
        .stanzas()
        .into_iter()
        .find(|s| s.name() == "message")
        .expect("the kept message")
        .clone();
    let delay = msg.get_child("delay", ns::DELAY).expect("a delay stamp");
    assert_eq!(delay.attr("stamp"), Some("2023-11-14T22:13:20.000Z"));
    // Delivered once: the queue is empty, a second presence brings nothing.
    assert!(d
        .shared()
        .store
        .take_offline(&bob)
        .await
        .unwrap()
        .is_empty());
    let out = d.send("<presence><show>away</show></presence>").await;
    assert!(out.stanzas().iter().all(|s| s.name() != "message"));
    // A priority out of range is a bad request.
    let out = d
        .send("<presence><priority>300</priority></presence>")
        .await;
    assert_eq!(
        condition(out.only()).map(|c| c.1),
        Some("bad-request".into())
    );
}

#[actix_rt::test]
async fn a_stream_over_its_stanza_rate_gets_wait_errors() {
    let mut d = Driver::bound(|c| c.limits.stanzas_per_second = 3, "alice").await;
    let mut conditions = Vec::new();
    for n in 0..6 {
        let out = d
            .send(&format!(
                "<iq type='get' id='p{n}'><ping xmlns='urn:xmpp:ping'/></iq>"
            ))
            .await;
        conditions.push(condition(out.only()));
    }
    // The bind took one token of the first second's three.
    let refused = conditions.iter().filter(|c| c.is_some()).count();
    assert!((3..=4).contains(&refused), "{conditions:?}");
    assert!(conditions
        .iter()
        .flatten()
        .all(|c| *c == ("wait".to_owned(), "resource-constraint".to_owned())));
}

#[actix_rt::test]
async fn the_pre_auth_deadline_ends_only_unauthenticated_streams() {
    let mut d = Driver::new(|_| {}).await;
    d.secured().await;
    d.session.on_pre_auth_deadline();
    let out = d.drain();
    assert_eq!(out.stream_error().as_deref(), Some("policy-violation"));
    assert!(out.closed);

    let mut d = Driver::new(|_| {}).await;
    d.add_account("alice", "correct horse").await;
    d.secured().await;
    d.send(HEADER).await;
    assert!(d
        .plain("alice", "correct horse")
        .await
        .only()
        .is("success", ns::SASL));
    d.session.on_pre_auth_deadline();
    let out = d.drain();
    assert!(out.events.is_empty() && !out.closed, "{out:?}");
}

#[actix_rt::test]
async fn an_address_past_its_unauthenticated_share_is_refused_until_one_logs_in() {
    let mut first = Driver::new(|c| c.limits.pre_auth_connections_per_address = 1).await;
    first.add_account("alice", "correct horse").await;
    first.session.take_pre_auth_slot();
    assert!(first.drain().events.is_empty(), "the first one is served");

    // Same node, same address: a second session on the same shared state.
    let (tx, mut outbox) = mpsc::unbounded_channel();
    let peer: SocketAddr = "192.0.2.7:40001".parse().unwrap();
    let mut second = Session::new(first.shared().clone(), Outbox::new(tx), peer);
    second.take_pre_auth_slot();
    let mut bytes = Vec::new();
    let mut closed = false;
    while let Ok(cmd) = outbox.try_recv() {
        match cmd {
            IoCommand::Send(b) => bytes.extend(b),
            IoCommand::Close => closed = true,
            _ => {}
        }
    }
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.contains("<policy-violation"), "{text}");
    assert!(closed);

    // Logging in gives the place back.
    first.secured().await;
    first.send(HEADER).await;
    assert!(first
        .plain("alice", "correct horse")
        .await
        .only()
        .is("success", ns::SASL));
    assert_eq!(first.shared().pre_auth_slots.held_by(peer.ip()), 0);
}
