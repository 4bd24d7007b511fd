//! `[server]` and `[tls]`: the listener's address, transport, public names, timeouts
//! and certificate source (the connection settings are in [`super::connections`]).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    AcmeSettings, Choice, ConnectionsConfig, Errors, Profile, RawConfig, connections, deploy,
    duration, path_of, positive, ser_duration, valid_hostname,
};

/// `server.transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    #[serde(alias = "http")]
    StreamableHttp,
    Stdio,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub transport: Transport,
    pub public_hostnames: Vec<String>,
    pub allowed_origins: Vec<String>,
    #[serde(serialize_with = "ser_duration")]
    pub handshake_timeout: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub first_request_timeout: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub shutdown_grace: Duration,
    pub max_body_bytes: usize,
    /// Timeouts after the first request, caps, trusted proxies.
    pub connections: ConnectionsConfig,
}

impl ServerConfig {
    /// Whether clients reach this server over the network (not stdin/stdout).
    pub(super) fn network(&self) -> bool {
        self.transport == Transport::StreamableHttp
    }
}

/// `tls.mode`, as written (the settings each needs are in [`TlsConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    Files,
    Acme,
    SelfSigned,
    Off,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum TlsConfig {
    /// PEM certificate chain and private key files.
    Files {
        cert_file: PathBuf,
        key_file: PathBuf,
    },
    /// A certificate for the public hostnames made in memory at start (dev only).
    SelfSigned,
    /// Plain HTTP, only on a loopback bind (behind a trusted proxy).
    Off,
    /// Certificates from an ACME CA (Let's Encrypt or private), TLS-ALPN-01 on this port.
    Acme(AcmeSettings),
}

pub(super) fn validate(e: &mut Errors<'_>, raw: &RawConfig, profile: Profile) -> ServerConfig {
    let transport = e
        .choice("server.transport", &raw.server.transport)
        .unwrap_or(Transport::StreamableHttp);
    let listen = listen(e, raw, profile);
    let public_hostnames = public_hostnames(e, raw);
    let allowed_origins = raw.server.allowed_origins.clone().unwrap_or_default();
    for origin in &allowed_origins {
        if origin != "null" && !(origin.starts_with("https://") || origin.starts_with("http://")) {
            e.push(
                "server.allowed_origins",
                format!("{origin:?} must start with https:// or http://"),
            );
        }
    }
    let s = &raw.server;
    let handshake_timeout = duration(
        e,
        "server.handshake_timeout",
        s.handshake_timeout.as_deref(),
        Duration::from_secs(10),
    );
    let first_request_timeout = duration(
        e,
        "server.first_request_timeout",
        s.first_request_timeout.as_deref(),
        Duration::from_secs(15),
    );
    let shutdown_grace = duration(
        e,
        "server.shutdown_grace",
        s.shutdown_grace.as_deref(),
        Duration::from_secs(30),
    );
    let max_body_bytes = positive(e, "server.max_body_bytes", s.max_body_bytes, 4 << 20);
    ServerConfig {
        listen,
        transport,
        public_hostnames,
        allowed_origins,
        handshake_timeout,
        first_request_timeout,
        shutdown_grace,
        max_body_bytes,
        connections: connections::validate(e, raw),
    }
}

fn listen(e: &mut Errors<'_>, raw: &RawConfig, profile: Profile) -> SocketAddr {
    // The dev profile stays on this machine; a deployment listens everywhere (containers).
    let default_host = match profile {
        Profile::Dev => "127.0.0.1",
        Profile::Deployment => "0.0.0.0",
    };
    let host_text = raw.server.host.as_deref().unwrap_or(default_host);
    let ip = crate::host::bind_ip(host_text).unwrap_or_else(|text| {
        e.push(
            "server.host",
            format!("must be an IP address to bind (e.g. 0.0.0.0 or 127.0.0.1), got {text:?}"),
        );
        IpAddr::from([127, 0, 0, 1])
    });
    SocketAddr::new(ip, raw.server.port.unwrap_or(8443))
}

fn public_hostnames(e: &mut Errors<'_>, raw: &RawConfig) -> Vec<String> {
    let mut public_hostnames = raw
        .server
        .public_hostnames
        .clone()
        .unwrap_or_else(|| vec!["localhost".into()]);
    for name in &mut public_hostnames {
        *name = name.trim().to_ascii_lowercase();
    }
    public_hostnames.retain(|n| !n.is_empty());
    for name in &public_hostnames {
        if !valid_hostname(name) {
            e.push(
                "server.public_hostnames",
                format!("{name:?} is not a hostname (give names only, no scheme or port)"),
            );
        }
    }
    if public_hostnames.is_empty() {
        e.push("server.public_hostnames", "must name at least one hostname");
    }
    public_hostnames
}

pub(super) fn validate_tls(
    e: &mut Errors<'_>,
    raw: &RawConfig,
    profile: Profile,
    server: &ServerConfig,
) -> TlsConfig {
    let cert_file = path_of(&raw.tls.cert_file);
    let key_file = path_of(&raw.tls.key_file);
    let mode = match &raw.tls.mode {
        None => TlsMode::Files,
        Some(Choice::Known(mode)) => *mode,
        Some(Choice::Unknown(unknown)) => {
            e.push("tls.mode", unknown.to_string());
            return TlsConfig::Off;
        }
    };
    match mode {
        TlsMode::Files => match (cert_file, key_file) {
            (Some(cert_file), Some(key_file)) => TlsConfig::Files {
                cert_file,
                key_file,
            },
            (None, None) if profile == Profile::Dev => TlsConfig::SelfSigned,
            (cert, key) => {
                if server.network() {
                    if cert.is_none() {
                        e.push(
                            "tls.cert_file",
                            "is required (PEM certificate chain, e.g. /run/secrets/tls_cert); set MCP_TLS_CERT_FILE or tls.cert_file",
                        );
                    }
                    if key.is_none() {
                        e.push(
                            "tls.key_file",
                            "is required (PEM private key, e.g. /run/secrets/tls_key); set MCP_TLS_KEY_FILE or tls.key_file",
                        );
                    }
                }
                TlsConfig::Off
            }
        },
        TlsMode::SelfSigned => TlsConfig::SelfSigned,
        TlsMode::Acme => TlsConfig::Acme(deploy::acme(e, raw, &server.public_hostnames)),
        TlsMode::Off => {
            let ip = server.listen.ip();
            if !ip.is_loopback() && server.network() {
                e.push(
                    "tls.mode",
                    format!(
                        "\"off\" (plain HTTP) is only allowed on a loopback bind behind a trusted proxy, but server.host is {ip}"
                    ),
                );
            }
            TlsConfig::Off
        }
    }
}
