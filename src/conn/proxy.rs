//! Who the client really is: the PROXY protocol (v1 text, v2 binary; parsed by the
//! `ppp` crate) from trusted balancers, and `X-Forwarded-For` from trusted HTTP
//! forwarders.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use http::HeaderMap;
use ipnet::IpNet;
use ppp::{HeaderResult, PartialResult, v1, v2};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::config::connections::contains;

/// v2 headers carry TLVs; more than this is not a balancer's header.
const MAX_HEADER: usize = 4096;
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("the connection closed before a complete PROXY header")]
    Eof,
    #[error("no valid PROXY protocol header: {0}")]
    Invalid(String),
    #[error("PROXY header longer than {MAX_HEADER} bytes")]
    TooLong,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A stream that first yields bytes already read (those after the PROXY header).
pub struct Rewind<T> {
    prefix: BytesMut,
    inner: T,
}

impl<T> Rewind<T> {
    pub fn new(inner: T) -> Rewind<T> {
        Rewind {
            prefix: BytesMut::new(),
            inner,
        }
    }
}

/// Read the PROXY header a trusted balancer must send first. Returns the source
/// address it names (`None` for `LOCAL`/`UNKNOWN`: the balancer's own checks).
pub async fn read_header(
    mut tcp: TcpStream,
) -> Result<(Rewind<TcpStream>, Option<SocketAddr>), ProxyHeaderError> {
    let mut buf = BytesMut::with_capacity(256);
    loop {
        if tcp.read_buf(&mut buf).await? == 0 {
            return Err(ProxyHeaderError::Eof);
        }
        let parsed = HeaderResult::parse(&buf);
        if parsed.is_incomplete() {
            if buf.len() >= MAX_HEADER {
                return Err(ProxyHeaderError::TooLong);
            }
            continue;
        }
        let (len, source) = match parsed {
            HeaderResult::V1(Ok(h)) => (h.header.len(), v1_source(&h.addresses)),
            HeaderResult::V2(Ok(h)) => (h.len(), v2_source(&h)),
            HeaderResult::V1(Err(e)) => return Err(ProxyHeaderError::Invalid(e.to_string())),
            HeaderResult::V2(Err(e)) => return Err(ProxyHeaderError::Invalid(e.to_string())),
        };
        buf.advance(len);
        return Ok((
            Rewind {
                prefix: buf,
                inner: tcp,
            },
            source,
        ));
    }
}

fn v1_source(addresses: &v1::Addresses) -> Option<SocketAddr> {
    match addresses {
        v1::Addresses::Tcp4(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        v1::Addresses::Tcp6(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        v1::Addresses::Unknown => None,
    }
}

fn v2_source(header: &v2::Header<'_>) -> Option<SocketAddr> {
    if header.command == v2::Command::Local {
        return None;
    }
    match header.addresses {
        v2::Addresses::IPv4(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        v2::Addresses::IPv6(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        v2::Addresses::Unspecified | v2::Addresses::Unix(_) => None,
    }
}

/// Whether an untrusted peer opens with a PROXY header (it must not be believed, and
/// the connection is refused rather than served as garbage). Waits for the first bytes.
pub async fn starts_with_header(tcp: &TcpStream) -> std::io::Result<bool> {
    let mut first = [0u8; 12];
    let n = tcp.peek(&mut first).await?;
    let got = &first[..n];
    Ok((n >= 6 && got.starts_with(b"PROXY ")) || (n >= 4 && V2_SIGNATURE.starts_with(got)))
}

/// The client behind trusted forwarders: the right-most `X-Forwarded-For` address
/// that is not itself a trusted forwarder. `peer` must already be trusted; an
/// unparsable entry stops the walk there (what is left of it cannot be believed).
pub fn forwarded_client(headers: &HeaderMap, peer: SocketAddr, trusted: &[IpNet]) -> SocketAddr {
    let mut client = peer;
    let values: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    for item in values.iter().rev().flat_map(|v| v.rsplit(',')) {
        let Some(ip) = parse_forwarded(item.trim()) else {
            break;
        };
        client = SocketAddr::new(ip, 0);
        if !contains(trusted, ip) {
            break;
        }
    }
    client
}

/// `192.0.2.1`, `2001:db8::1`, `[2001:db8::1]:443` or `192.0.2.1:443`.
fn parse_forwarded(item: &str) -> Option<IpAddr> {
    item.parse::<IpAddr>()
        .or_else(|_| item.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::connections::parse_net;

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn right_most_untrusted_address_wins() {
        let trusted = vec![parse_net("10.0.0.0/8").unwrap()];
        let peer: SocketAddr = "10.0.0.5:999".parse().unwrap();
        let ip = |h: &HeaderMap| forwarded_client(h, peer, &trusted).ip().to_string();
        // The left-most entry is whatever the client claimed; not believed.
        assert_eq!(ip(&xff(&["6.6.6.6, 203.0.113.9, 10.1.1.1"])), "203.0.113.9");
        assert_eq!(ip(&xff(&["6.6.6.6", "203.0.113.9"])), "203.0.113.9");
        assert_eq!(ip(&xff(&["[2001:db8::1]:443"])), "2001:db8::1");
        assert_eq!(ip(&xff(&["10.2.2.2"])), "10.2.2.2");
        assert_eq!(ip(&xff(&["203.0.113.9, garbage"])), "10.0.0.5");
        assert_eq!(ip(&HeaderMap::new()), "10.0.0.5");
    }
}
