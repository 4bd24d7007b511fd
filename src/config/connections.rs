//! Validation of the connection settings: timeouts after the first request, HTTP/2
//! keep-alive, connection caps, and which peers may say who the real client is.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Serialize;

use super::{Errors, RawConfig, duration, positive, ser_duration};

/// How long connections may sit idle or trickle, how many there may be, and whose
/// PROXY protocol header or `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionsConfig {
    /// Closes a connection with no request in flight and no response streaming.
    #[serde(serialize_with = "ser_duration")]
    pub idle_timeout: Duration,
    /// From the first byte of a later HTTP/1 request until its headers are complete.
    #[serde(serialize_with = "ser_duration")]
    pub header_read_timeout: Duration,
    /// From the request's headers until its body is complete (else 408).
    #[serde(serialize_with = "ser_duration")]
    pub body_read_timeout: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub http2_keepalive_interval: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub http2_keepalive_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Peers that must start each connection with a PROXY protocol v1/v2 header.
    #[serde(serialize_with = "ser_nets")]
    pub proxy_protocol_from: Vec<IpNet>,
    /// Peers whose `X-Forwarded-For` names the client.
    #[serde(serialize_with = "ser_nets")]
    pub trusted_forwarders: Vec<IpNet>,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        ConnectionsConfig {
            idle_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(60),
            http2_keepalive_interval: Duration::from_secs(30),
            http2_keepalive_timeout: Duration::from_secs(10),
            max_connections: 4096,
            max_connections_per_ip: 256,
            proxy_protocol_from: Vec::new(),
            trusted_forwarders: Vec::new(),
        }
    }
}

fn ser_nets<S: serde::Serializer>(nets: &[IpNet], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(nets.iter().map(ToString::to_string))
}

/// `10.0.0.0/8`, `fd00::/8`, or a single address (`192.0.2.7` = `/32`).
pub fn parse_net(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .map(|n| n.trunc())
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// Whether `ip` (IPv4-mapped IPv6 seen as IPv4) is in one of `nets`.
pub fn contains(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    nets.iter().any(|n| n.contains(&ip))
}

fn nets(e: &mut Errors<'_>, key: &str, value: Option<&Vec<String>>) -> Vec<IpNet> {
    let mut out = Vec::new();
    for item in value.into_iter().flatten().filter(|s| !s.trim().is_empty()) {
        match parse_net(item) {
            Some(net) => out.push(net),
            None => e.push(
                key,
                format!("{item:?} is not an address or CIDR range (e.g. 10.0.0.0/8)"),
            ),
        }
    }
    out
}

pub(super) fn validate(e: &mut Errors<'_>, raw: &RawConfig) -> ConnectionsConfig {
    let s = &raw.server;
    let d = ConnectionsConfig::default();
    let mut nonzero_duration = |key: &str, value: Option<&str>, default: Duration| {
        let v = duration(e, key, value, default);
        if v.is_zero() {
            e.push(key, "must be more than 0s");
            return default;
        }
        v
    };
    let idle_timeout = nonzero_duration(
        "server.idle_timeout",
        s.idle_timeout.as_deref(),
        d.idle_timeout,
    );
    let header_read_timeout = nonzero_duration(
        "server.header_read_timeout",
        s.header_read_timeout.as_deref(),
        d.header_read_timeout,
    );
    let body_read_timeout = nonzero_duration(
        "server.body_read_timeout",
        s.body_read_timeout.as_deref(),
        d.body_read_timeout,
    );
    let http2_keepalive_interval = nonzero_duration(
        "server.http2_keepalive_interval",
        s.http2_keepalive_interval.as_deref(),
        d.http2_keepalive_interval,
    );
    let http2_keepalive_timeout = nonzero_duration(
        "server.http2_keepalive_timeout",
        s.http2_keepalive_timeout.as_deref(),
        d.http2_keepalive_timeout,
    );
    ConnectionsConfig {
        idle_timeout,
        header_read_timeout,
        body_read_timeout,
        http2_keepalive_interval,
        http2_keepalive_timeout,
        max_connections: positive(
            e,
            "server.max_connections",
            s.max_connections,
            d.max_connections as u64,
        ),
        max_connections_per_ip: positive(
            e,
            "server.max_connections_per_ip",
            s.max_connections_per_ip,
            d.max_connections_per_ip as u64,
        ),
        proxy_protocol_from: nets(
            e,
            "server.proxy_protocol_from",
            s.proxy_protocol_from.as_ref(),
        ),
        trusted_forwarders: nets(
            e,
            "server.trusted_forwarders",
            s.trusted_forwarders.as_ref(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nets_parse_ranges_and_single_addresses() {
        let nets: Vec<IpNet> = ["10.0.0.0/8", "192.0.2.7", "fd00::/8", "10.1.2.3/8"]
            .iter()
            .map(|s| parse_net(s).unwrap())
            .collect();
        assert!(contains(&nets, "10.9.9.9".parse().unwrap()));
        assert!(contains(&nets, "192.0.2.7".parse().unwrap()));
        assert!(!contains(&nets, "192.0.2.8".parse().unwrap()));
        assert!(contains(&nets, "::ffff:10.0.0.1".parse().unwrap()));
        assert!(contains(&nets, "fd12::1".parse().unwrap()));
        assert!(parse_net("10.0.0.0/33").is_none());
        assert!(parse_net("example.com").is_none());
    }
}
