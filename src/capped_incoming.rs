//! The accepted connections of a gRPC listener (peer API, admin API), at most
//! `max` open at once and `per_address` from one address. Past either a new
//! connection is closed as soon as it is accepted, before any TLS handshake:
//! whoever reaches a port cannot make the node hold, and handshake, any
//! number of them, and one address cannot take every place from the others
//! (peers, operators). The backlog is drained meanwhile.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// How long a caller has to finish the TLS handshake on a capped listener.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// HTTP/2 pings on the capped listeners, and how long an answer may take:
/// a connection to a peer that died stops counting within their sum.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// A gRPC server for [`incoming`]: it pings its connections, so a dead or
/// silent one gives its place back.
pub fn server() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
}

/// How many connections a listener takes.
#[derive(Clone, Copy, Debug)]
pub struct Cap {
    pub max: usize,
    /// From one remote address; loopback counts only towards `max` when
    /// `loopback_exempt` (the machine's own processes: CLI runs, tools, the
    /// peers of a cluster on 127.0.0.x, which all call from 127.0.0.1).
    pub per_address: usize,
    pub loopback_exempt: bool,
}

/// One accepted connection, holding its places until dropped.
pub struct Capped {
    stream: TcpStream,
    _place: Place,
}

type PerAddress = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// A connection's place under both caps.
struct Place {
    _total: OwnedSemaphorePermit,
    /// None: not counted per address.
    address: Option<IpAddr>,
    counts: PerAddress,
}

impl Drop for Place {
    fn drop(&mut self) {
        let Some(address) = self.address else { return };
        // Nothing panics while holding it; if something did, counting on
        // beats refusing every connection from then on.
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = counts.get_mut(&address) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&address);
            }
        }
    }
}

struct Places {
    total: Arc<Semaphore>,
    counts: PerAddress,
    cap: Cap,
}

impl Places {
    fn take(&self, address: IpAddr) -> Option<Place> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let counted = !(self.cap.loopback_exempt && address.is_loopback());
        if counted && counts.get(&address).copied().unwrap_or(0) >= self.cap.per_address {
            return None;
        }
        let total = self.total.clone().try_acquire_owned().ok()?;
        if counted {
            *counts.entry(address).or_insert(0) += 1;
        }
        Some(Place {
            _total: total,
            address: counted.then_some(address),
            counts: self.counts.clone(),
        })
    }
}

/// The listener's connections, each with a place under `cap`; `what` names
/// the listener in logs and metrics.
pub fn incoming(
    listener: TcpListener,
    cap: Cap,
    what: &'static str,
) -> impl Stream<Item = std::io::Result<Capped>> + Send + 'static {
    let places = Places {
        total: Arc::new(Semaphore::new(cap.max)),
        counts: PerAddress::default(),
        cap,
    };
    futures_util::stream::unfold((listener, places), move |(listener, places)| async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::debug!(listener = what, error = %e, "accept failed");
                    if out_of_resources(&e) {
                        // Out of file descriptors, say: wait a moment rather
                        // than spin on the same error.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    continue;
                }
            };
            match places.take(address_key(peer.ip())) {
                Some(place) => {
                    let _ = stream.set_nodelay(true);
                    let capped = Capped {
                        stream,
                        _place: place,
                    };
                    return Some((Ok(capped), (listener, places)));
                }
                None => {
                    metrics::counter!(crate::metrics::LISTENER_CONNECTIONS_REFUSED, "listener" => what)
                        .increment(1);
                    tracing::debug!(listener = what, %peer, ?cap, "connection refused: at the cap");
                    drop(stream);
                }
            }
        }
    })
}

/// Whom a connection counts against: IPv4 as itself (also when it arrives
/// IPv4-mapped on a dual-stack listener), IPv6 by its /64, which one host
/// usually holds whole.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) if !v6.is_loopback() => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        other => other,
    }
}

/// Errors of the process, not of one connection (which would be retried at
/// once).
fn out_of_resources(e: &std::io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM on Linux.
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}

impl Connected for Capped {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Capped {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Capped {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt as _;
    use tokio::io::AsyncReadExt as _;

    type Accepted = Pin<Box<dyn Stream<Item = std::io::Result<Capped>> + Send>>;

    fn listen(listener: TcpListener, cap: Cap) -> Accepted {
        Box::pin(incoming(listener, cap, "test"))
    }

    /// `client` is closed by the listener, and nothing is handed out
    /// meanwhile (the stream is polled all along: it is what refuses).
    async fn assert_refused(client: &mut TcpStream, accepted: &mut Accepted) {
        let closed = async {
            let read = client.read(&mut [0u8; 1]).await;
            assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        };
        tokio::select! {
            _ = closed => {}
            next = accepted.next() => panic!(
                "a connection past the cap was handed out: {:?}",
                next.map(|r| r.is_ok())
            ),
            _ = tokio::time::sleep(Duration::from_secs(10)) => panic!("not closed"),
        }
    }

    #[test]
    fn addresses_are_counted_by_host() {
        let key = |s: &str| address_key(s.parse().unwrap()).to_string();
        assert_eq!(key("::ffff:10.0.0.7"), "10.0.0.7");
        assert_eq!(key("::ffff:127.0.0.1"), "127.0.0.1");
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::1"), "::1");
    }

    #[tokio::test]
    async fn loopback_counts_only_towards_the_total_when_exempt() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cap = Cap {
            max: 2,
            per_address: 1,
            loopback_exempt: true,
        };
        let mut accepted = listen(listener, cap);
        let _a = TcpStream::connect(addr).await.unwrap();
        let _first = accepted.next().await.unwrap().unwrap();
        let _b = TcpStream::connect(addr).await.unwrap();
        let next = tokio::time::timeout(Duration::from_secs(5), accepted.next()).await;
        assert!(
            matches!(next, Ok(Some(Ok(_)))),
            "a second loopback connection was refused"
        );
        let mut third = TcpStream::connect(addr).await.unwrap();
        assert_refused(&mut third, &mut accepted).await;
    }

    #[tokio::test]
    async fn past_the_cap_a_connection_is_closed_and_a_freed_place_is_reused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cap = Cap {
            max: 2,
            per_address: 2,
            loopback_exempt: true,
        };
        let mut accepted = listen(listener, cap);
        let a = TcpStream::connect(addr).await.unwrap();
        let first = accepted.next().await.unwrap().unwrap();
        let _b = TcpStream::connect(addr).await.unwrap();
        let _second = accepted.next().await.unwrap().unwrap();
        // The third is accepted and closed while the stream looks for one
        // it may hand out.
        let mut third = TcpStream::connect(addr).await.unwrap();
        assert_refused(&mut third, &mut accepted).await;
        // One closes: its place goes to the next connection.
        drop(first);
        drop(a);
        let _fourth = TcpStream::connect(addr).await.unwrap();
        let next = tokio::time::timeout(Duration::from_secs(5), accepted.next()).await;
        assert!(matches!(next, Ok(Some(Ok(_)))));
    }

    #[tokio::test]
    async fn one_address_cannot_take_every_place() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Loopback stands in for remote addresses here.
        let cap = Cap {
            max: 3,
            per_address: 1,
            loopback_exempt: false,
        };
        let mut accepted = listen(listener, cap);
        let _a = TcpStream::connect(addr).await.unwrap();
        let first = accepted.next().await.unwrap().unwrap();
        // A second from 127.0.0.1 is refused although places are free...
        let mut again = TcpStream::connect(addr).await.unwrap();
        assert_refused(&mut again, &mut accepted).await;
        // ...and another address gets one.
        let other = tokio::net::TcpSocket::new_v4().unwrap();
        other.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let _b = other.connect(addr).await.unwrap();
        let next = tokio::time::timeout(Duration::from_secs(5), accepted.next()).await;
        assert!(matches!(next, Ok(Some(Ok(_)))));
        // Its place freed, the first address may connect again.
        drop(first);
        let _c = TcpStream::connect(addr).await.unwrap();
        let next = tokio::time::timeout(Duration::from_secs(5), accepted.next()).await;
        assert!(matches!(next, Ok(Some(Ok(_)))));
    }
}
