//! Host names as clients send them (`Host`, `:authority`, `Origin`) and as the
//! configuration lists them, in one comparable form.

use std::fmt;
use std::net::IpAddr;

/// A host name, lower-cased, without IPv6 brackets or port: `[::1]:8443` → `::1`.
/// Host names are case-insensitive (RFC 3986 §3.2.2), so plain `==` compares them.
/// `Display` writes the URL form (`[::1]`, `mcp.example.com`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostName(String);

impl HostName {
    /// A bare host name (`mcp.example.com`, `::1` or `[::1]`), as configured.
    pub fn new(name: &str) -> Self {
        Self(unbracket(name).to_ascii_lowercase())
    }

    /// The host of an authority (a `Host` header, an HTTP/2 `:authority`):
    /// `name[:port]` or `[v6][:port]`; `None` when it does not parse.
    pub fn from_authority(authority: &str) -> Option<Self> {
        let authority: http::uri::Authority = authority.parse().ok()?;
        Some(Self::new(authority.host()))
    }

    /// The host of a URL (an `Origin`); `None` without one.
    pub fn from_uri(uri: &http::Uri) -> Option<Self> {
        uri.host().map(Self::new)
    }

    /// The bare name (`::1`, not `[::1]`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the configured name `name` (bracketed or not, any case).
    pub fn is(&self, name: &str) -> bool {
        unbracket(name).eq_ignore_ascii_case(&self.0)
    }

    /// `localhost`, `127.0.0.1`, `::1` and friends.
    pub fn is_loopback(&self) -> bool {
        self.0 == "localhost" || self.0.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.contains(':') {
            true => write!(f, "[{}]", self.0),
            false => f.write_str(&self.0),
        }
    }
}

/// The address a configured `server.host` binds: an IP (IPv6 with or without
/// brackets) or `localhost`. The error is the host as read, brackets stripped.
pub fn bind_ip(host: &str) -> Result<IpAddr, &str> {
    match unbracket(host) {
        "localhost" => Ok(IpAddr::from([127, 0, 0, 1])),
        text => text.parse().map_err(|_| text),
    }
}

/// `[::1]` → `::1`; other names unchanged.
fn unbracket(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authority(text: &str) -> Option<String> {
        HostName::from_authority(text).map(|h| h.as_str().to_owned())
    }

    #[test]
    fn an_authority_loses_its_port_brackets_and_case() {
        assert_eq!(
            authority("MCP.Example.COM").as_deref(),
            Some("mcp.example.com")
        );
        assert_eq!(
            authority("mcp.example.com:8443").as_deref(),
            Some("mcp.example.com")
        );
        assert_eq!(authority("[::1]").as_deref(), Some("::1"));
        assert_eq!(authority("[::1]:8443").as_deref(), Some("::1"));
        assert_eq!(
            authority("[2001:DB8::A]:443").as_deref(),
            Some("2001:db8::a")
        );
        assert_eq!(authority("127.0.0.1:80").as_deref(), Some("127.0.0.1"));
        // A trailing dot is kept: `example.com.` is not `example.com` here.
        assert_eq!(authority("example.com.").as_deref(), Some("example.com."));
    }

    #[test]
    fn garbage_is_no_host() {
        for text in [
            "",
            "a b",
            "a:1:2",
            "[::1",
            "::1]",
            "exa mple.com:80",
            "h\u{e9}.com",
        ] {
            assert_eq!(authority(text), None, "{text:?}");
        }
    }

    #[test]
    fn configured_names_compare_bracketed_or_not_in_any_case() {
        let v6 = HostName::from_authority("[::1]:8443").unwrap();
        assert!(v6.is("::1") && v6.is("[::1]"));
        assert_eq!(v6, HostName::new("[::1]"));
        assert_eq!(v6.to_string(), "[::1]");
        let name = HostName::from_authority("MCP.example.com").unwrap();
        assert!(name.is("mcp.example.com") && name.is("Mcp.Example.Com"));
        assert!(!name.is("example.com") && !name.is("mcp.example.com."));
        assert_eq!(name.to_string(), "mcp.example.com");
    }

    #[test]
    fn an_origin_names_its_host() {
        let uri: http::Uri = "https://[::1]:6274".parse().unwrap();
        assert_eq!(HostName::from_uri(&uri), Some(HostName::new("::1")));
        let uri: http::Uri = "/relative".parse().unwrap();
        assert_eq!(HostName::from_uri(&uri), None);
    }

    #[test]
    fn loopback_names() {
        for name in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.1.2.3",
            "[::1]",
            "::1",
        ] {
            assert!(HostName::new(name).is_loopback(), "{name}");
        }
        for name in ["example.com", "10.0.0.1", "::2", "localhost.example.com"] {
            assert!(!HostName::new(name).is_loopback(), "{name}");
        }
    }

    #[test]
    fn bind_addresses() {
        assert_eq!(bind_ip("localhost"), Ok(IpAddr::from([127, 0, 0, 1])));
        assert_eq!(bind_ip("0.0.0.0"), Ok(IpAddr::from([0, 0, 0, 0])));
        assert_eq!(bind_ip("[::1]"), Ok("::1".parse().unwrap()));
        assert_eq!(bind_ip("::"), Ok("::".parse().unwrap()));
        assert_eq!(bind_ip("[example.com]"), Err("example.com"));
        assert_eq!(bind_ip("LOCALHOST"), Err("LOCALHOST"));
    }
}
