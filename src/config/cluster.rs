//! `[cluster]`: the peer listener and the session-id key ring for several replicas.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Errors, RawConfig, path_of};

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub peer_listen: Option<String>,
    pub advertise: Option<String>,
    pub key_ring_file: Option<String>,
}

/// Unset `peer_listen`: a single replica (no peer listener).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClusterConfig {
    pub peer_listen: Option<SocketAddr>,
    /// `host:port` other replicas reach this one at; `None` with `peer_listen` set
    /// means the bound peer address (resolved at start, for port 0).
    pub advertise: Option<String>,
    /// The session-id key ring (a secret file); `None`: a random in-memory key.
    pub key_ring_file: Option<PathBuf>,
}

fn valid_advertise(text: &str) -> bool {
    // host:port or [v6]:port, with a non-zero port and no scheme or path.
    let Some((host, port)) = text.rsplit_once(':') else {
        return false;
    };
    !host.is_empty()
        && !text.contains('/')
        && text.len() < 200
        && port.parse::<u16>().is_ok_and(|p| p != 0)
}

pub(super) fn validate(e: &mut Errors<'_>, raw: &RawConfig) -> ClusterConfig {
    let c = &raw.cluster;
    let peer_listen = c
        .peer_listen
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .and_then(|text| {
            text.trim()
                .parse::<SocketAddr>()
                .map_err(|_| {
                    e.push(
                "cluster.peer_listen",
                format!("must be an IP address and port to bind (e.g. 0.0.0.0:8444), got {text:?}"),
            )
                })
                .ok()
        });
    let advertise = c
        .advertise
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    if let Some(a) = &advertise
        && !valid_advertise(a)
    {
        e.push(
            "cluster.advertise",
            format!(
                "must be host:port that other replicas can reach (e.g. 10.0.0.7:8444), got {a:?}"
            ),
        );
    }
    let key_ring_file = path_of(&c.key_ring_file);
    if let Some(listen) = peer_listen {
        if advertise.is_none() && listen.ip().is_unspecified() {
            e.push(
                "cluster.advertise",
                format!("is required when cluster.peer_listen binds {listen} (an unspecified address): set MCP_PEER_ADVERTISE to this replica's reachable host:port, e.g. \"$(POD_IP):8444\""),
            );
        }
        if key_ring_file.is_none() {
            e.push(
                "cluster.key_ring_file",
                "is required when cluster.peer_listen is set (every replica must share the session key ring); set MCP_SESSION_KEYS_FILE",
            );
        }
    } else if advertise.is_some() {
        e.push(
            "cluster.advertise",
            "has no effect without cluster.peer_listen (MCP_PEER_LISTEN)",
        );
    }
    ClusterConfig {
        peer_listen,
        advertise,
        key_ring_file,
    }
}
