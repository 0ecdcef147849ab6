//! Raw-socket tests of bad input: every case gets the error PROTOCOL.md names,
//! and the node keeps serving other clients throughout.

use std::time::Duration;

use crate::fixture::*;
use usher::xmpp::{ns, Element};

/// Sends `bytes` on a fresh stream (TLS or not) and returns the stream error.
async fn stream_error_after(
    node: &TestNode,
    tls: bool,
    bytes: &[u8],
) -> (String, Option<String>, Element) {
    let mut c = if tls {
        node.connect_tls().await
    } else {
        node.connect().await
    };
    c.send_raw(bytes).await.expect("send");
    let el = c.next_element().await.expect("an answer");
    let (condition, text) = stream_error(&el);
    expect_closed(&mut c).await;
    (condition, text, el)
}

/// Writes `bytes` on a raw TCP connection and returns all the server sends
/// until it closes the connection.
async fn raw_exchange(node: &TestNode, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    raw.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut out))
        .await
        .expect("closed in time")
        .unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn malformed_xml_is_not_well_formed() {
    let node = TestNode::builder()
        .open_registration()
        .no_address_limits()
        .fast_hashing()
        .start();
    let bystander = node.connect_tls().await;
    for bad in [
        &b"<iq type='get'></message>"[..],
        b"<a b='1' b='2'/>",
        b"<p:x/>",
        b"hello",
    ] {
        let (condition, _, _) = stream_error_after(&node, true, bad).await;
        assert_eq!(
            condition,
            "not-well-formed",
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    let (condition, _, _) = stream_error_after(&node, false, b"<iq>\x00</iq>").await;
    assert_eq!(condition, "not-well-formed");
    node.assert_serving().await;
    drop(bystander);
}

#[tokio::test]
async fn doctype_entities_and_processing_instructions_are_restricted() {
    let node = TestNode::builder()
        .open_registration()
        .no_address_limits()
        .fast_hashing()
        .start();
    // A DOCTYPE before the stream header.
    let out = raw_exchange(
        &node,
        b"<?xml version='1.0'?><!DOCTYPE stream [<!ENTITY x 'y'>]>",
    )
    .await;
    assert!(
        out.contains("<restricted-xml xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"),
        "{out}"
    );
    assert!(out.ends_with("</stream:stream>"), "{out}");

    for bad in [
        &b"<!-- c -->"[..],
        b"<?php echo 1 ?>",
        b"<message><body>&xxe;</body></message>",
    ] {
        let (condition, _, _) = stream_error_after(&node, true, bad).await;
        assert_eq!(
            condition,
            "restricted-xml",
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    node.assert_serving().await;
}

#[tokio::test]
async fn a_one_mebibyte_stanza_is_a_policy_violation() {
    let node = TestNode::builder()
        .open_registration()
        .no_address_limits()
        .fast_hashing()
        .start();
    let mut bystander = node.connect_tls().await;
    let big = format!(
        "<message to='a@localhost'><body>{}</body></message>",
        "x".repeat(1 << 20)
    );
    let (condition, text, el) = stream_error_after(&node, true, big.as_bytes()).await;
    assert_eq!(condition, "policy-violation");
    assert_eq!(text.as_deref(), Some("XML stanza is too big"));
    assert!(el.has_child("stanza-too-big", "urn:xmpp:errors"), "{el:?}");
    // The open stream of another client is unaffected.
    let reply = bystander.request(ping()).await.unwrap();
    assert_eq!(reply.attr("type"), Some("result"));
}

#[tokio::test]
async fn nesting_too_deep_is_a_policy_violation() {
    let node = TestNode::builder()
        .open_registration()
        .no_address_limits()
        .fast_hashing()
        .start();
    let deep = format!("<iq type='get'>{}", "<a>".repeat(100));
    let (condition, _, _) = stream_error_after(&node, true, deep.as_bytes()).await;
    assert_eq!(condition, "policy-violation");
}

#[tokio::test]
async fn registration_before_tls_is_refused_and_the_stream_stays() {
    let node = TestNode::builder()
        .open_registration()
        .no_address_limits()
        .fast_hashing()
        .start();
    let mut c = node.connect().await;
    assert!(c.features.has_child("starttls", ns::TLS));
    assert!(!c.features.has_child("mechanisms", ns::SASL));
    let reply = c.register("early", PASSWORD).await.unwrap();
    assert_iq_error(
        &reply,
        "modify",
        "policy-violation",
        Some("Encryption is required"),
    );
    // SASL before TLS: encryption-required, stream still usable.
    c.send_raw(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth>")
        .await
        .unwrap();
    let failure = c.next_stanza().await.unwrap();
    assert!(failure.is("failure", ns::SASL) && failure.has_child("encryption-required", ns::SASL));
    c.starttls().await.expect("STARTTLS still works");
    let reply = c.register("early", PASSWORD).await.unwrap();
    assert_eq!(reply.attr("type"), Some("result"));
    // Nothing was created by the refused attempt before TLS: the later one did it.
    assert_eq!(
        node.auth(usher_load::client::Mech::Plain, "early", PASSWORD)
            .await,
        usher_load::client::Auth::Success
    );
}

#[tokio::test]
async fn other_stanzas_before_tls_end_the_stream() {
    let node = TestNode::builder()
        .open_registration()
        .no_address_limits()
        .fast_hashing()
        .start();
    let (condition, text, _) = stream_error_after(
        &node,
        false,
        b"<message to='a@localhost'><body>hi</body></message>",
    )
    .await;
    assert_eq!(condition, "policy-violation");
    assert_eq!(text.as_deref(), Some("Encryption is required"));
}

#[tokio::test]
async fn stream_header_checks() {
    let node = TestNode::builder()
        .open_registration()
        .no_address_limits()
        .fast_hashing()
        .start();
    for (header, expected) in [
        (
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.org' version='1.0'>",
            "host-unknown",
        ),
        (
            "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>",
            "invalid-namespace",
        ),
        (
            "<stream:stream xmlns='jabber:client' xmlns:stream='urn:wrong' to='localhost' version='1.0'>",
            "invalid-namespace",
        ),
        (
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost'>",
            "unsupported-version",
        ),
    ] {
        let out = raw_exchange(&node, header.as_bytes()).await;
        assert!(out.starts_with("<?xml version='1.0'?><stream:stream "), "{out}");
        assert!(out.contains(&format!("<{expected} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>")), "{header}: {out}");
    }
    node.assert_serving().await;
}

#[tokio::test]
async fn unknown_elements_and_namespaces_do_not_kill_the_stream() {
    let node = TestNode::builder()
        .open_registration()
        .no_address_limits()
        .fast_hashing()
        .start();
    let mut c = node.connect_tls().await;
    c.send_raw(b"<enable xmlns='urn:xmpp:sm:3'/><foo xmlns='jabber:client'/>")
        .await
        .unwrap();
    let unknown = Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_child(Element::new("query", "jabber:iq:version"));
    let reply = c.request(unknown).await.unwrap();
    assert_iq_error(&reply, "cancel", "service-unavailable", None);
    let reply = c.request(ping()).await.unwrap();
    assert_eq!(reply.attr("type"), Some("result"));
    // Malformed IQs get bad-request, and the stream goes on.
    let two_children = Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_child(Element::new("ping", ns::PING))
        .with_child(Element::new("ping", ns::PING));
    let reply = c.request(two_children).await.unwrap();
    assert_iq_error(&reply, "modify", "bad-request", None);
    let disco = Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_attr("to", "localhost")
        .with_child(Element::new("query", ns::DISCO_INFO));
    let reply = c.request(disco).await.unwrap();
    let query = reply
        .get_child("query", ns::DISCO_INFO)
        .expect("disco info");
    assert!(query
        .children()
        .any(|f| f.attr("var") == Some(ns::REGISTER)));
}

#[tokio::test]
async fn silent_streams_time_out_before_authentication() {
    let node = TestNode::builder()
        .open_registration()
        .no_address_limits()
        .fast_hashing()
        .set("USHER_LIMITS__PRE_AUTH_IDLE_TIMEOUT", "1s")
        .start();
    let mut c = node.connect_tls().await;
    let el = c.next_element().await.expect("stream error");
    assert_eq!(stream_error(&el).0, "connection-timeout");
    expect_closed(&mut c).await;
}

#[tokio::test]
async fn connections_over_the_limit_are_refused() {
    let node = TestNode::builder()
        .open_registration()
        .no_address_limits()
        .fast_hashing()
        .set("USHER_LIMITS__MAX_CONNECTIONS", "2")
        .start();
    let _a = node.connect_tls().await;
    let _b = node.connect_tls().await;
    let refused = usher_load::Client::connect(node.addr, DOMAIN, &node.trust()).await;
    assert!(refused.is_err(), "a third connection was served");
    drop(_a);
    // The slot frees up once a client leaves.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if usher_load::Client::connect(node.addr, DOMAIN, &node.trust())
            .await
            .is_ok()
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn pipelined_plaintext_after_starttls_is_discarded() {
    // A client (or an attacker in the middle) sends a stanza right behind
    // <starttls/>: it must never be processed as if it came over TLS.
    let node = TestNode::builder()
        .open_registration()
        .no_address_limits()
        .fast_hashing()
        .start();
    let mut c = node.connect().await;
    c.send_raw(
        b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\
          <iq type='set' id='inj'><query xmlns='jabber:iq:register'><username>injected</username>\
          <password>correct horse battery</password></query></iq>",
    )
    .await
    .unwrap();
    let proceed = c.next_stanza().await.unwrap();
    assert!(proceed.is("proceed", ns::TLS));
    drop(c);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c = node.connect_tls().await;
    let reply = c.register("injected", PASSWORD).await.unwrap();
    assert_eq!(
        reply.attr("type"),
        Some("result"),
        "the pipelined registration ran: {reply:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_header_sent_with_the_tls_finished_is_answered() {
    // rustls queues what is written before the handshake ends and sends it in
    // the same flight as the client's Finished, so the server's TLS layer holds
    // the new stream header before the socket is read again. The node must
    // answer it without waiting for more bytes that never come.
    use std::io::{Read, Write};
    let node = TestNode::builder()
        .open_registration()
        .no_address_limits()
        .fast_hashing()
        .start();
    let addr = node.addr;
    let config = node.trust().client_config().expect("trust");
    let features = tokio::task::spawn_blocking(move || {
        let mut tcp = std::net::TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let header = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";
        tcp.write_all(header.as_bytes()).unwrap();
        tcp.write_all(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .unwrap();
        let mut plain = String::new();
        let mut chunk = [0u8; 4096];
        while !plain.contains("<proceed") {
            let n = tcp.read(&mut chunk).expect("read until proceed");
            assert!(n > 0, "closed before proceed: {plain}");
            plain.push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = rustls::ClientConnection::new(config, name).expect("client");
        tls.writer().write_all(header.as_bytes()).unwrap();
        let mut seen = String::new();
        while !seen.contains("</stream:features>") {
            while tls.wants_write() {
                tls.write_tls(&mut tcp).expect("write TLS");
            }
            match tls.read_tls(&mut tcp) {
                Ok(0) => panic!("closed; got {seen:?}"),
                Ok(_) => {}
                Err(e) => panic!("no answer to the pipelined header ({e}); got {seen:?}"),
            }
            tls.process_new_packets().expect("TLS");
            let mut out = Vec::new();
            let _ = tls.reader().read_to_end(&mut out);
            seen.push_str(&String::from_utf8_lossy(&out));
        }
        seen
    })
    .await
    .expect("client thread");
    assert!(features.contains("<mechanisms"), "{features}");
}
