//! Step 1: refuse a foreign `Host` (DNS rebinding) and a foreign `Origin` (a
//! cross-site page), before anything else looks at the request.

use http::header;
use http::request::Parts;

use super::error::EdgeError;
use super::request::host_name_of;
use super::state::AppState;
use crate::host::HostName;

pub fn check(state: &AppState, request: &Parts) -> Result<(), EdgeError> {
    let hosts = &state.allowed_hosts;
    let known = host_name_of(request).is_some_and(|h| hosts.iter().any(|a| h.is(a)));
    if !known {
        return Err(EdgeError::Forbidden(
            "Host header is not one of this server's names".into(),
        ));
    }
    if let Some(origin) = request.headers.get(header::ORIGIN) {
        let ok = origin.to_str().is_ok_and(|o| {
            origin_allowed(
                o,
                hosts,
                &state.config.server.allowed_origins,
                state.config.tls == crate::config::TlsConfig::Off,
            )
        });
        if !ok {
            return Err(EdgeError::Forbidden("Origin is not allowed".into()));
        }
    }
    Ok(())
}

/// `https://<allowed host>[:port]`, `server.allowed_origins` entries, and — only
/// when this listener is plain HTTP (TLS off, which is loopback only) —
/// `http://<loopback name>[:port]`. Keep in step with [`crate::mcp::allowed_origins`].
pub fn origin_allowed(origin: &str, hosts: &[String], extra: &[String], plain_http: bool) -> bool {
    if extra.iter().any(|o| o == origin) {
        return true;
    }
    let Ok(uri) = origin.parse::<http::Uri>() else {
        return false;
    };
    let Some(host) = HostName::from_uri(&uri) else {
        return false;
    };
    match uri.scheme_str() {
        Some("https") => hosts.iter().any(|allowed| host.is(allowed)),
        Some("http") => plain_http && host.is_loopback(),
        _ => false,
    }
}
