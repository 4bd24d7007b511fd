//! Facts about a request that several steps need: who sent it and which name it used.
//! They read the request's parts: a `&Request` is not `Send` across an await (its
//! body is not `Sync`), so async steps hold `Parts`.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request};
use http::header;
use http::request::Parts;

use crate::host::HostName;

/// The real client address (PROXY header / trusted `X-Forwarded-For`, set by the
/// connection layer), else the TCP peer (side listeners); `None` in memory.
pub fn client_addr(request: &Request) -> Option<SocketAddr> {
    client_addr_in(request.extensions())
}

fn client_addr_in(ext: &http::Extensions) -> Option<SocketAddr> {
    ext.get::<crate::conn::ClientAddr>()
        .map(|c| c.0)
        .or_else(|| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0))
}

/// [`client_addr`]'s IP, `0.0.0.0` when unknown.
pub fn client_ip(request: &Request) -> IpAddr {
    ip_of(client_addr_in(request.extensions()))
}

pub fn client_ip_of(parts: &Parts) -> IpAddr {
    ip_of(client_addr_in(&parts.extensions))
}

fn ip_of(addr: Option<SocketAddr>) -> IpAddr {
    addr.map(|a| a.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// The host name the client used (`Host`, or the URI's authority for HTTP/2).
pub fn host_name(request: &Request) -> Option<HostName> {
    host_in(request.headers(), request.uri())
}

pub fn host_name_of(parts: &Parts) -> Option<HostName> {
    host_in(&parts.headers, &parts.uri)
}

fn host_in(headers: &http::HeaderMap, uri: &http::Uri) -> Option<HostName> {
    let authority = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))?;
    HostName::from_authority(authority)
}
