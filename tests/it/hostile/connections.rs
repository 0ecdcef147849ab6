//! Connections that cost the node while giving nothing: half-open streams
//! from one address, streams that trickle bytes to never time out, and HTTP
//! requests sent one byte at a time.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::fixture::*;

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

async fn tcp_from(source: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    let source: IpAddr = source.parse().expect("ip");
    socket.bind(SocketAddr::new(source, 0)).expect("bind");
    socket.connect(to).await.expect("connect")
}

/// Everything the server sends until it closes, or what came within `limit`.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut seen = Vec::new();
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&seen).into(), true),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&seen).into(), false),
        }
    }
}

/// An honest newcomer from `127.0.0.2`: registers with an invite, then logs in.
async fn honest_client_gets_in(node: &TestNode) {
    let name = unique("honest");
    node.register_via_invite(&name, PASSWORD).await;
    login_as(node, &name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_streams_from_one_address_stop_at_its_share() {
    const SHARE: usize = 50;
    let node = TestNode::builder()
        .set(
            "USHER_LIMITS__PRE_AUTH_CONNECTIONS_PER_ADDRESS",
            &SHARE.to_string(),
        )
        .start();
    node.assert_serving().await;
    let before = node.usage();
    // Each holds a stream open and a stanza half sent, as a slow attacker would.
    let mut held = Vec::new();
    for _ in 0..SHARE {
        let mut s = tcp_from("127.0.0.3", node.addr).await;
        s.write_all(HEADER.as_bytes()).await.expect("header");
        s.write_all(&[b' '; 1000]).await.expect("padding");
        s.write_all(b"<iq type='get' id='x'><query xmlns='jabber:iq:")
            .await
            .expect("half a stanza");
        held.push(s);
    }
    // The header's answer shows each was read before the next check.
    for s in &mut held {
        let (seen, closed) = read_until_closed(s, Duration::from_millis(500)).await;
        assert!(seen.contains("<stream:features") && !closed, "{seen}");
    }
    let mut refused = tcp_from("127.0.0.3", node.addr).await;
    let (seen, closed) = read_until_closed(&mut refused, Duration::from_secs(5)).await;
    assert!(closed, "the connection past the share is closed");
    assert!(seen.contains("<policy-violation"), "{seen}");
    assert!(
        seen.contains("Too many unauthenticated connections"),
        "{seen}"
    );
    assert_eq!(
        node.metric(r#"usher_rate_limit_hits_total{limit="pre_auth_connections_per_address"}"#),
        1.0
    );
    // What they cost: the node keeps no read buffer for a silent stream, so
    // each is its socket, a session and the half stanza (bound: 64 KiB each).
    let grown = node.usage().rss_kib.saturating_sub(before.rss_kib);
    assert!(
        grown <= 64 * SHARE as u64,
        "{SHARE} half-open streams grew RSS by {grown} KiB"
    );
    let cpu = node.usage().cpu_time() - before.cpu_time();
    assert!(
        cpu <= Duration::from_secs(2),
        "{SHARE} half-open streams cost {cpu:?} of CPU"
    );
    // Other addresses are not affected, and a freed place is taken again.
    honest_client_gets_in(&node).await;
    drop(held.pop());
    let mut again = None;
    for _ in 0..50 {
        let mut s = tcp_from("127.0.0.3", node.addr).await;
        s.write_all(HEADER.as_bytes()).await.expect("header");
        let (seen, _) = read_until_closed(&mut s, Duration::from_millis(300)).await;
        if seen.contains("<stream:features") {
            again = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(again.is_some(), "the freed place was not given back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_stream_ends_at_the_pre_auth_deadline_and_a_logged_in_one_does_not() {
    let node = TestNode::builder()
        .fast_hashing()
        .set("USHER_LIMITS__PRE_AUTH_DEADLINE", "5s")
        .set("USHER_LIMITS__PRE_AUTH_IDLE_TIMEOUT", "60s")
        .start();
    let user = unique("staying");
    node.register_via_invite(&user, PASSWORD).await;
    let mut logged_in = login_as(&node, &user).await;

    let started = Instant::now();
    let mut s = tcp_from("127.0.0.1", node.addr).await;
    s.write_all(HEADER.as_bytes()).await.expect("header");
    // A space every half second: never idle, never authenticated.
    let (seen, closed) = loop {
        s.write_all(b" ").await.ok();
        let (seen, closed) = read_until_closed(&mut s, Duration::from_millis(500)).await;
        if closed || started.elapsed() > Duration::from_secs(30) {
            break (seen, closed);
        }
    };
    let took = started.elapsed();
    assert!(closed, "still open after {took:?}");
    assert!(took >= Duration::from_secs(5), "ended after {took:?}");
    assert!(seen.contains("<policy-violation"), "{seen}");
    assert!(seen.contains("Not authenticated within 5s"), "{seen}");

    let reply = logged_in
        .request(ping())
        .await
        .expect("ping after the deadline");
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    honest_client_gets_in(&node).await;
}

/// Sends `head` and then `drip` one byte every 200 ms; how long the server
/// kept the connection and what it answered.
async fn slow_http(node: &TestNode, head: &str, drip: &str) -> (Duration, String) {
    let started = Instant::now();
    let mut s = tcp_from("127.0.0.1", node.http_addr).await;
    s.write_all(head.as_bytes()).await.expect("head");
    let mut answer = String::new();
    for b in drip.bytes().cycle().take(400) {
        if s.write_all(&[b]).await.is_err() {
            break;
        }
        let (seen, closed) = read_until_closed(&mut s, Duration::from_millis(200)).await;
        answer.push_str(&seen);
        if closed {
            return (started.elapsed(), answer);
        }
    }
    panic!("still open after {:?}: {answer}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_http_requests_are_cut_at_their_timeouts() {
    let node = TestNode::builder()
        .set("USHER_LIMITS__HTTP_HEADER_TIMEOUT", "2s")
        .set("USHER_LIMITS__HTTP_REQUEST_TIMEOUT", "3s")
        .start();
    // Headers that never end.
    let (took, answer) =
        slow_http(&node, "GET /health HTTP/1.1\r\nHost: x\r\n", "X-a: b\r\n").await;
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "headers cut after {took:?}: {answer}"
    );
    // A body that never ends: the request's own timeout answers.
    let (took, answer) = slow_http(
        &node,
        "POST /register/abc HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 10000\r\n\r\n",
        "a",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(12),
        "body cut after {took:?}"
    );
    // A kept-alive connection that says nothing more is closed too.
    let mut idle = tcp_from("127.0.0.1", node.http_addr).await;
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("request");
    let (seen, closed) = read_until_closed(&mut idle, Duration::from_secs(10)).await;
    assert!(seen.starts_with("HTTP/1.1 200") && closed, "{seen}");
    // Meanwhile and after, honest requests are served.
    assert_eq!(node.http_get("/health").0, 200);
}
