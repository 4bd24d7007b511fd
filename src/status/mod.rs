//! The operators' status page: what the edge is doing now, gathered from the state
//! the components already keep — the session registry, the live-children record,
//! the tool-call metrics (sampled by [`history`]), refusals ([`refusals`], fed by the
//! access log for refused requests only), the reloads' last outcomes, the served
//! certificate and ACME, the replicas seen, Redis and the trace exporter. Served on
//! the admin listener by `server::admin` (`/status`, `/status.json`); nothing here
//! runs on a served request.

pub mod history;
pub mod page;
pub mod refusals;
pub mod token;

use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::certs::CertStatus;
use crate::cluster::{Cluster, PeerSeen};
use crate::config::{BackendKind, Config, Share};
use crate::mcp::SessionRegistry;
use crate::ratelimit::redis::RedisStore;
use crate::reload::ReloadCounts;
pub use history::History;
pub use refusals::Refusals;
pub use token::StatusToken;

/// Where the page's figures come from (each an `Arc` the component already holds).
pub struct Status {
    pub config: Arc<Config>,
    pub sessions: Arc<SessionRegistry>,
    pub cert: Arc<CertStatus>,
    pub cluster: Arc<Cluster>,
    pub redis: Option<Arc<RedisStore>>,
    pub refusals: Arc<Refusals>,
    pub history: Arc<History>,
    /// Set once the reloader runs (after the admin listener is up).
    pub reloads: OnceLock<Vec<(&'static str, Arc<ReloadCounts>)>>,
    /// `None`: no token configured (loopback only).
    pub token: Option<Arc<StatusToken>>,
    pub started: SystemTime,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Everything the page shows; `/status.json` serves it as is.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub generated_at_unix: u64,
    pub version: &'static str,
    pub uptime_seconds: u64,
    /// This replica's peer address (several replicas), if any.
    pub replica: Option<String>,
    pub sessions: Sessions,
    pub backends: Vec<BackendStatus>,
    pub calls: history::CallsView,
    /// Principals refused by their rate limit in the refusals' window.
    pub rate_limited: Vec<refusals::Limited>,
    pub refusals: refusals::RefusalsView,
    pub certificate: Certificate,
    pub reloads: Vec<ReloadStatus>,
    pub replicas: Vec<Replica>,
    pub redis: Option<RedisStatus>,
    pub collector: Option<Collector>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sessions {
    pub total: usize,
    pub by_principal: Vec<PrincipalSessions>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PrincipalSessions {
    pub principal: Arc<str>,
    pub sessions: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackendStatus {
    pub name: String,
    /// `docs`, `stdio` or `http`.
    pub kind: &'static str,
    /// Who shares a child: `none`, `principal` or `all`.
    pub share: &'static str,
    pub children: usize,
    /// Children by the principal they were started for (`""`: a shared one).
    pub children_by_principal: Vec<PrincipalChildren>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PrincipalChildren {
    pub principal: Arc<str>,
    pub children: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Certificate {
    /// `files`, `acme`, `self-signed`; `None` before the first (ACME) or without TLS.
    pub source: Option<&'static str>,
    pub not_after_unix: Option<i64>,
    pub expires_in_seconds: Option<i64>,
    pub acme: Option<Acme>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Acme {
    pub state: &'static str,
    pub at_unix: u64,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReloadStatus {
    pub kind: &'static str,
    pub ok: u64,
    pub failed: u64,
    /// The last outcome since start, if any.
    pub last: Option<LastReload>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastReload {
    pub at_unix: u64,
    pub ok: bool,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Replica {
    pub address: String,
    #[serde(flatten)]
    pub seen: PeerSeen,
}

#[derive(Debug, Clone, Serialize)]
pub struct RedisStatus {
    /// Whether the last command reached Redis.
    pub up: bool,
    /// The URL with any password masked.
    pub url: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Collector {
    /// Scheme, host and port of the OTLP endpoint.
    pub endpoint: String,
    /// Exports are failing: new traces wait until the collector answers.
    pub failing: bool,
    pub queued_spans: usize,
    pub export_failures: u64,
    pub spans_dropped: u64,
    pub traces_shed: u64,
}

fn share_name(share: Share) -> &'static str {
    match share {
        Share::None => "none",
        Share::All => "all",
        Share::Principal => "principal",
    }
}

/// `scheme://host:port` of a URL (no path, query or credentials).
fn origin_of(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port_or_known_default()) {
            (Some(h), Some(p)) => format!("{}://{h}:{p}", u.scheme()),
            (Some(h), None) => format!("{}://{h}", u.scheme()),
            _ => u.scheme().to_owned(),
        },
        Err(_) => "(unparsable)".to_owned(),
    }
}

impl Status {
    /// What is happening now.
    pub fn snapshot(&self) -> Snapshot {
        let now = SystemTime::now();
        let refusals = self.refusals.view();
        let mut by_principal: Vec<PrincipalSessions> = self
            .sessions
            .per_principal()
            .into_iter()
            .map(|(principal, sessions)| PrincipalSessions {
                principal,
                sessions,
            })
            .collect();
        by_principal.sort_by(|a, b| a.principal.cmp(&b.principal));
        Snapshot {
            generated_at_unix: unix(now),
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: now
                .duration_since(self.started)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            replica: self.cluster.advertise().map(str::to_owned),
            sessions: Sessions {
                total: self.sessions.len(),
                by_principal,
            },
            backends: self.backends(),
            calls: self.history.view(),
            rate_limited: refusals.rate_limited.clone(),
            refusals,
            certificate: self.certificate(),
            reloads: self.reloads(),
            replicas: self
                .cluster
                .peers_seen()
                .into_iter()
                .map(|(address, seen)| Replica { address, seen })
                .collect(),
            redis: self.redis.as_ref().map(|r| RedisStatus {
                up: r.is_up(),
                url: self
                    .config
                    .redis
                    .as_ref()
                    .map(|c| crate::config::redacted_url(&c.url))
                    .unwrap_or_default(),
            }),
            collector: self.collector(),
        }
    }

    fn backends(&self) -> Vec<BackendStatus> {
        let children = crate::mcp::backends::process::children_by_owner();
        let of = |name: &str| -> Vec<PrincipalChildren> {
            children
                .iter()
                .filter(|(b, ..)| &**b == name)
                .map(|(_, p, n)| PrincipalChildren {
                    principal: p.clone(),
                    children: *n,
                })
                .collect()
        };
        if self.config.backends.is_empty() {
            return vec![BackendStatus {
                name: "docs".into(),
                kind: "docs",
                share: "all",
                children: 0,
                children_by_principal: Vec::new(),
            }];
        }
        self.config
            .backends
            .iter()
            .map(|b| {
                let by = of(&b.name);
                BackendStatus {
                    name: b.name.clone(),
                    kind: match b.kind {
                        BackendKind::Docs => "docs",
                        BackendKind::Stdio { .. } => "stdio",
                        BackendKind::Http { .. } => "http",
                    },
                    share: share_name(b.share),
                    children: by.iter().map(|c| c.children).sum(),
                    children_by_principal: by,
                }
            })
            .collect()
    }

    fn certificate(&self) -> Certificate {
        let not_after = self.cert.not_after();
        let now = crate::certs::now_unix();
        Certificate {
            source: self.cert.source(),
            not_after_unix: not_after,
            expires_in_seconds: not_after.map(|t| t - now),
            acme: self.cert.acme().map(|a| Acme {
                state: a.state,
                at_unix: unix(a.at),
                detail: a.detail,
            }),
        }
    }

    fn reloads(&self) -> Vec<ReloadStatus> {
        use std::sync::atomic::Ordering;
        self.reloads
            .get()
            .into_iter()
            .flatten()
            .map(|(kind, counts)| ReloadStatus {
                kind,
                ok: counts.ok.load(Ordering::Relaxed),
                failed: counts.failed.load(Ordering::Relaxed),
                last: counts.last().map(|l| LastReload {
                    at_unix: unix(l.at),
                    ok: l.ok,
                    message: l.message,
                }),
            })
            .collect()
    }

    fn collector(&self) -> Option<Collector> {
        let otel = self.config.otel.as_ref()?;
        let (queued_spans, failing) = crate::telemetry::otel::exporter_state().unwrap_or_default();
        let text = crate::metrics::render();
        let count = |name: &str| crate::metrics::sample(&text, name, &[]).unwrap_or(0.0) as u64;
        Some(Collector {
            endpoint: origin_of(&otel.endpoint),
            failing,
            queued_spans,
            export_failures: count("mcp_edge_trace_export_failures_total"),
            spans_dropped: count("mcp_edge_trace_spans_dropped_total"),
            traces_shed: count("mcp_edge_traces_shed_total"),
        })
    }
}

/// The snapshot as JSON safe to put anywhere in a page: `<`, `>` and `&` escaped
/// (`\u003c` …), so no value can close a script or start markup.
pub fn to_json(value: &impl Serialize) -> String {
    let text = serde_json::to_string(value).unwrap_or_else(|_| "{}".into());
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_cannot_break_out_of_markup() {
        let v = serde_json::json!({"principal": "</script><img src=x onerror=alert(1)>&"});
        let text = to_json(&v);
        assert!(!text.contains('<') && !text.contains('>') && !text.contains('&'));
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn an_endpoint_is_shown_without_its_path_or_credentials() {
        assert_eq!(
            origin_of("https://user:pw@otel.example:4318/v1/traces?x=1"),
            "https://otel.example:4318"
        );
        assert_eq!(origin_of("http://collector:4317"), "http://collector:4317");
    }
}
