//! The connection layer of the HTTPS listener, one chain for every TLS mode:
//!
//! ```text
//! accept ─► cap (total) ─► PROXY header (trusted balancers only) ─► cap (per client IP)
//!        ─► TLS (files | ACME | none) ─► ConnIo (idle / header timeouts)
//!        ─► ConnService (ClientAddr, X-Forwarded-For, body deadline, in-flight count)
//! ```
//!
//! hyper has a header-read timer and HTTP/2 keep-alive pings (set in [`tune`]) but no
//! idle timeout for kept-alive connections, and its header timer also runs while a
//! connection is idle; so both deadlines live in [`io::ConnIo`], which knows whether
//! a request is in flight or a response is still streaming (an SSE stream is never
//! cut for being "idle").

mod io;
mod proxy;

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::config::ConnectionsConfig;
use crate::config::connections::contains;
use crate::sync::lock;

pub use io::{BodyTimeout, ConnIo, ConnService, is_body_timeout};
pub use proxy::forwarded_client;

/// The client's address as the edge believes it: the TCP peer, or what a trusted
/// balancer's PROXY header or a trusted forwarder's `X-Forwarded-For` says. Put in
/// every request's extensions by [`ConnService`]; the failed-auth lockout, rate
/// limits and the access log read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// The client's IP from a request's extensions: [`ClientAddr`], else the TCP peer
/// (side listeners); `0.0.0.0` when unknown (in memory).
pub fn client_ip_in(ext: &http::Extensions) -> std::net::IpAddr {
    ext.get::<ClientAddr>()
        .map(|c| c.0.ip())
        .or_else(|| {
            ext.get::<axum::extract::ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip())
        })
        .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]))
}

/// How the listener speaks TLS.
#[derive(Clone)]
pub enum TlsMode {
    Plain,
    /// Certificate files or the dev self-signed certificate (reloadable config).
    Files(RustlsConfig),
    Acme(crate::acme::AcmeAcceptor),
}

/// Why a connection was closed at accept (the `reason` label of the metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    MaxConnections,
    MaxConnectionsPerIp,
    /// A PROXY header from a peer not in `server.proxy_protocol_from`.
    ProxyUntrusted,
    /// A trusted balancer's connection without a valid PROXY header.
    ProxyInvalid,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::MaxConnections => "max_connections",
            Refusal::MaxConnectionsPerIp => "max_connections_per_ip",
            Refusal::ProxyUntrusted => "proxy_untrusted",
            Refusal::ProxyInvalid => "proxy_invalid",
        }
    }
}

/// Settings and live counts shared by every connection of one listener.
pub struct Shared {
    pub config: ConnectionsConfig,
    handshake_timeout: Duration,
    open: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection; dropping it (when the connection ends) frees its slots.
pub struct Permit {
    shared: Arc<Shared>,
    ip: Option<IpAddr>,
}

impl Shared {
    fn admit(self: &Arc<Self>) -> Result<Permit, Refusal> {
        let max = self.config.max_connections;
        let taken = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            });
        if taken.is_err() {
            return Err(Refusal::MaxConnections);
        }
        crate::metrics::connection_opened();
        Ok(Permit {
            shared: self.clone(),
            ip: None,
        })
    }

    fn admit_ip(&self, permit: &mut Permit, ip: IpAddr) -> Result<(), Refusal> {
        let mut map = lock(&self.per_ip);
        let n = map.entry(ip).or_insert(0);
        if *n >= self.config.max_connections_per_ip {
            if *n == 0 {
                map.remove(&ip);
            }
            return Err(Refusal::MaxConnectionsPerIp);
        }
        *n += 1;
        permit.ip = Some(ip);
        Ok(())
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.shared.open.fetch_sub(1, Ordering::AcqRel);
        crate::metrics::connection_closed();
        if let Some(ip) = self.ip {
            let mut map = lock(&self.shared.per_ip);
            if let Some(n) = map.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
    }
}

/// HTTP settings hyper does have: HTTP/2 keep-alive pings. (The HTTP/1 header timer
/// stays off: [`ConnIo`] starts it at a request's first byte, not when idle begins.)
pub fn tune(builder: &mut Builder<TokioExecutor>, config: &ConnectionsConfig) {
    builder
        .http2()
        .keep_alive_interval(Some(config.http2_keepalive_interval))
        .keep_alive_timeout(config.http2_keepalive_timeout);
}

/// The axum-server acceptor for the main listener.
#[derive(Clone)]
pub struct EdgeAcceptor {
    shared: Arc<Shared>,
    tls: TlsMode,
}

impl EdgeAcceptor {
    pub fn new(config: &crate::config::ServerConfig, tls: TlsMode) -> EdgeAcceptor {
        EdgeAcceptor {
            shared: Arc::new(Shared {
                config: config.connections.clone(),
                handshake_timeout: config.handshake_timeout,
                open: AtomicUsize::new(0),
                per_ip: Mutex::new(HashMap::new()),
            }),
            tls,
        }
    }

    /// Connections open now (accepted and not yet closed).
    pub fn open(&self) -> usize {
        self.shared.open.load(Ordering::Acquire)
    }
}

/// The TCP stream with any bytes read past the PROXY header put back in front.
pub type Socket = proxy::Rewind<TcpStream>;

/// The stream hyper serves: plain or TLS over the socket, under [`ConnIo`]'s timers.
pub type Stream = ConnIo<Transport>;

type AcceptFuture<S> = Pin<Box<dyn Future<Output = std::io::Result<(Stream, S)>> + Send>>;

impl<S: Send + 'static> axum_server::accept::Accept<TcpStream, S> for EdgeAcceptor {
    type Stream = Stream;
    type Service = ConnService<S>;
    type Future = AcceptFuture<ConnService<S>>;

    fn accept(&self, tcp: TcpStream, service: S) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let (stream, client) = match this.establish(tcp).await {
                Ok(ok) => ok,
                Err(Failure::Refused(why)) => {
                    crate::metrics::connection_refused(why.label());
                    return Err(std::io::Error::other(why.label()));
                }
                Err(Failure::Io(e)) => return Err(e),
            };
            let service = ConnService::new(service, stream.state(), client, &this.shared);
            Ok((stream, service))
        })
    }
}

enum Failure {
    Refused(Refusal),
    Io(std::io::Error),
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::Io(e)
    }
}

impl EdgeAcceptor {
    /// Cap, PROXY header, per-IP cap, TLS: everything before the first HTTP byte.
    async fn establish(&self, tcp: TcpStream) -> Result<(Stream, SocketAddr), Failure> {
        // Counted before anything is read: a refused connection costs one accept.
        let mut permit = self.shared.admit().map_err(Failure::Refused)?;
        let peer = tcp.peer_addr()?;
        let _ = tcp.set_nodelay(true);
        let cfg = &self.shared.config;
        let timeout = self.shared.handshake_timeout;
        // A trusted HTTP forwarder carries many clients; only the total cap applies.
        let admit_ip = |permit: &mut Permit, client: SocketAddr| {
            if contains(&cfg.trusted_forwarders, client.ip()) {
                return Ok(());
            }
            self.shared
                .admit_ip(permit, client.ip().to_canonical())
                .map_err(Failure::Refused)
        };
        let setup = async {
            let (socket, client) = if contains(&cfg.proxy_protocol_from, peer.ip()) {
                let (socket, source) = proxy::read_header(tcp).await.map_err(|e| {
                    tracing::debug!(%peer, error = %e, "refused a connection: bad PROXY header");
                    Failure::Refused(Refusal::ProxyInvalid)
                })?;
                let client = source.unwrap_or(peer);
                admit_ip(&mut permit, client)?;
                (socket, client)
            } else {
                // Counted before waiting for the first bytes, which may never come.
                admit_ip(&mut permit, peer)?;
                if proxy::starts_with_header(&tcp).await? {
                    tracing::warn!(%peer, "refused a PROXY protocol header from an untrusted peer (see server.proxy_protocol_from)");
                    return Err(Failure::Refused(Refusal::ProxyUntrusted));
                }
                (proxy::Rewind::new(tcp), peer)
            };
            let transport = match &self.tls {
                TlsMode::Plain => Transport::Plain(socket),
                TlsMode::Files(rustls) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(rustls.get_inner());
                    Transport::Tls(Box::new(acceptor.accept(socket).await?))
                }
                TlsMode::Acme(acme) => Transport::Tls(Box::new(acme.handshake(socket).await?)),
            };
            Ok::<_, Failure>((transport, client))
        };
        let (transport, client) = match tokio::time::timeout(timeout, setup).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(Failure::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connection setup (PROXY header, TLS handshake) timed out",
                )));
            }
        };
        Ok((ConnIo::new(transport, cfg, permit), client))
    }
}

/// Plain or TLS, over the socket.
pub enum Transport {
    Plain(Socket),
    Tls(Box<tokio_rustls::server::TlsStream<Socket>>),
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Plain(s) => s.is_write_vectored(),
            Transport::Tls(s) => s.is_write_vectored(),
        }
    }
}
