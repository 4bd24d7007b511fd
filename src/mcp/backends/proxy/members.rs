//! The proxy's members, built once from `[[backends]]`: the docs tools, or an upstream
//! (a command to run, or an HTTP server with its client). Configuration errors name
//! the `[[backends]]` entry.

use std::sync::Arc;

use super::super::credentials::CredentialSpec;
use super::super::process::StdioSpec;
use super::http::HttpSpec;
use super::upstream::{Upstream, UpstreamSpec};
use crate::config::{BackendConfig, BackendKind};
use crate::mcp::DocsBackend;

/// A `[[backends]]` entry the proxy cannot be built with.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("backends[{index}] ({name}): {message}")]
    Backend {
        index: usize,
        name: String,
        message: String,
    },
}

pub enum MemberKind {
    Docs(DocsBackend),
    Upstream(Box<Upstream>),
}

pub struct Member {
    pub name: Arc<str>,
    pub kind: MemberKind,
}

/// The members `backends` describes (docs members reuse `docs`).
pub fn build(
    backends: &[BackendConfig],
    docs: Option<&DocsBackend>,
) -> Result<Vec<Member>, ProxyError> {
    let mut members = Vec::new();
    for (index, b) in backends.iter().enumerate() {
        let err = |message: String| ProxyError::Backend {
            index,
            name: b.name.clone(),
            message,
        };
        let kind = match &b.kind {
            BackendKind::Docs => MemberKind::Docs(
                docs.cloned()
                    .ok_or_else(|| err("the docs index was not built".into()))?,
            ),
            BackendKind::Stdio {
                command,
                env,
                env_allowlist,
                cwd,
            } => upstream(
                UpstreamSpec::Stdio(StdioSpec {
                    command: command.clone(),
                    env: env.clone(),
                    env_allowlist: env_allowlist.clone(),
                    cwd: cwd.clone(),
                }),
                b,
            ),
            BackendKind::Http {
                url,
                credential_file,
                ca_file,
                connect_timeout,
            } => upstream(
                UpstreamSpec::Http(
                    HttpSpec::new(
                        url,
                        credential_file.as_deref(),
                        ca_file.as_deref(),
                        *connect_timeout,
                    )
                    .map_err(err)?,
                ),
                b,
            ),
        };
        members.push(Member {
            name: b.name.as_str().into(),
            kind,
        });
    }
    Ok(members)
}

fn upstream(spec: UpstreamSpec, b: &BackendConfig) -> MemberKind {
    let credentials = b.credentials.as_ref().map(CredentialSpec::new);
    MemberKind::Upstream(Box::new(Upstream::new(spec, b.share, credentials)))
}
