//! The I/O pump: owns the socket (plain, then TLS), reads and hands bytes to the
//! connection actor one chunk at a time, and writes what the session queues.
//!
//! Reading waits for the actor to finish with the previous chunk, which gives
//! back-pressure and keeps stanzas in order. Commands queued while a chunk was
//! handled (output, STARTTLS) run before the next read, so nothing a client
//! pipelines after `<starttls/>` is ever read as plaintext.

use std::time::Duration;

use actix::Addr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::connection::{C2sConnection, Disconnected, IdleTimeout, Incoming, Shutdown};

const READ_BUFFER: usize = 4096;
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug)]
pub enum IoCommand {
    Send(Vec<u8>),
    /// Upgrade to TLS (after `<proceed/>` was sent).
    StartTls,
    /// How long a read may wait; `None` waits forever.
    SetIdleTimeout(Option<Duration>),
    Close,
}

/// The session's handle for output.
#[derive(Clone, Debug)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<IoCommand>,
}

impl Outbox {
    pub fn new(tx: mpsc::UnboundedSender<IoCommand>) -> Self {
        Outbox { tx }
    }

    pub fn command(&self, cmd: IoCommand) {
        // The pump is gone only when the socket is: nothing left to tell it.
        let _ = self.tx.send(cmd);
    }
}

enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Transport {
    /// Waits until the socket has bytes (or EOF, or an error) to read.
    async fn readable(&self) -> std::io::Result<()> {
        match self {
            Transport::Plain(s) => s.readable().await,
            Transport::Tls(s) => s.get_ref().0.readable().await,
        }
    }

    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf).await,
            Transport::Tls(s) => s.read(buf).await,
        }
    }

    async fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Transport::Plain(s) => s.write_all(data).await,
            Transport::Tls(s) => {
                s.write_all(data).await?;
                s.flush().await
            }
        }
    }

    async fn shutdown(&mut self) {
        let _ = match self {
            Transport::Plain(s) => s.shutdown().await,
            Transport::Tls(s) => s.shutdown().await,
        };
    }
}

enum Read {
    Data(Vec<u8>),
    Eof,
    Idle,
}

/// Reads one chunk. The buffer exists only while bytes are arriving: an idle
/// connection waits for readiness without one (most connections are idle most
/// of the time, and this is a quarter of what each one costs). `buffered`: the
/// TLS layer may hold decrypted bytes the socket no longer signals (after the
/// handshake, or when the last read filled the buffer), so read at once.
async fn read_with_timeout(
    t: &mut Transport,
    buffered: bool,
    idle: Option<Duration>,
) -> std::io::Result<Read> {
    let read = async {
        if !buffered {
            t.readable().await?;
        }
        let mut buf = vec![0u8; READ_BUFFER];
        match t.read(&mut buf).await? {
            0 => Ok(Read::Eof),
            n => {
                buf.truncate(n);
                Ok(Read::Data(buf))
            }
        }
    };
    match idle {
        Some(limit) => match tokio::time::timeout(limit, read).await {
            Ok(r) => r,
            Err(_) => Ok(Read::Idle),
        },
        None => read.await,
    }
}

pub struct Pump {
    pub stream: TcpStream,
    pub commands: mpsc::UnboundedReceiver<IoCommand>,
    pub actor: Addr<C2sConnection>,
    pub tls: TlsAcceptor,
    pub shutdown: CancellationToken,
    pub idle: Option<Duration>,
}

impl Pump {
    pub async fn run(self) {
        let Pump {
            stream,
            mut commands,
            actor,
            tls,
            shutdown,
            mut idle,
        } = self;
        let mut transport = Some(Transport::Plain(stream));
        let mut buffered = false;
        let mut shutdown_sent = shutdown.is_cancelled();
        if shutdown_sent {
            actor.do_send(Shutdown);
        }
        while let Some(t) = transport.as_mut() {
            tokio::select! {
                biased;
                cmd = commands.recv() => match cmd {
                    None | Some(IoCommand::Close) => {
                        t.shutdown().await;
                        break;
                    }
                    Some(IoCommand::Send(data)) => {
                        match tokio::time::timeout(WRITE_TIMEOUT, t.write_all(&data)).await {
                            Ok(Ok(())) => {}
                            _ => break,
                        }
                    }
                    Some(IoCommand::SetIdleTimeout(d)) => idle = d,
                    Some(IoCommand::StartTls) => {
                        let Some(Transport::Plain(tcp)) = transport.take() else {
                            break;
                        };
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                            Ok(Ok(s)) => {
                                transport = Some(Transport::Tls(Box::new(s)));
                                // Data sent right behind the client's Finished.
                                buffered = true;
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, "TLS handshake failed");
                                break;
                            }
                            Err(_) => {
                                tracing::debug!("TLS handshake timed out");
                                break;
                            }
                        }
                    }
                },
                _ = shutdown.cancelled(), if !shutdown_sent => {
                    shutdown_sent = true;
                    actor.do_send(Shutdown);
                }
                read = read_with_timeout(t, buffered, idle) => match read {
                    Ok(Read::Data(data)) => {
                        buffered = data.len() == READ_BUFFER;
                        if actor.send(Incoming(data)).await.is_err() {
                            break;
                        }
                    }
                    Ok(Read::Idle) => {
                        // The session writes the stream error and asks us to close.
                        idle = None;
                        actor.do_send(IdleTimeout);
                    }
                    Ok(Read::Eof) | Err(_) => break,
                },
            }
        }
        actor.do_send(Disconnected);
    }
}
