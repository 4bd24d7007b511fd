//! MCP authorization metadata: the RFC 9728 protected-resource documents and the
//! challenge 401/403 answers point to.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};
use serde_json::{Value, json};

use super::error::{Challenge, EdgeError};
use super::state::AppState;
use crate::auth::ToolPolicy;
use crate::config::Config;

/// `https://host/mcp` → `https://host/.well-known/oauth-protected-resource/mcp` (RFC 9728 §3.1).
pub fn metadata_url(resource: &str) -> String {
    match resource.parse::<http::Uri>() {
        Ok(uri) if uri.authority().is_some() => {
            let path = uri.path().trim_end_matches('/');
            format!(
                "{}://{}/.well-known/oauth-protected-resource{}",
                uri.scheme_str().unwrap_or("https"),
                uri.authority().map(|a| a.as_str()).unwrap_or_default(),
                path
            )
        }
        _ => String::new(),
    }
}

/// The metadata document and the challenge for this configuration.
///
/// Without an authorization server (API keys only) there is no OAuth flow to
/// discover: the document is `Null` (the well-known paths answer 404) and challenges
/// carry no `resource_metadata`, so OAuth-aware clients (mcp-remote, the Inspector)
/// use the `Authorization` header they were given instead of starting a dynamic
/// client registration that cannot succeed.
pub fn auth_metadata(config: &Config, policy: &ToolPolicy) -> (Value, Challenge) {
    let auth = &config.auth;
    let oauth = !auth.authorization_servers.is_empty();
    let mut scopes: Vec<String> = auth.required_scopes.clone();
    scopes.extend(policy.all_scopes());
    scopes.sort();
    scopes.dedup();
    let mut doc = json!({
        "resource": auth.resource,
        "bearer_methods_supported": ["header"],
        "resource_name": "mcp-edge",
    });
    if !auth.authorization_servers.is_empty() {
        doc["authorization_servers"] = json!(auth.authorization_servers);
    }
    if !scopes.is_empty() {
        doc["scopes_supported"] = json!(scopes);
    }
    let scope = if auth.required_scopes.is_empty() {
        scopes.join(" ")
    } else {
        auth.required_scopes.join(" ")
    };
    if !oauth {
        return (
            Value::Null,
            Challenge {
                // Scopes mean something to JWTs only.
                scope: if auth.jwt.is_some() {
                    scope.into()
                } else {
                    "".into()
                },
                ..Challenge::default()
            },
        );
    }
    let challenge = Challenge {
        resource_metadata: metadata_url(&auth.resource).into(),
        scope: scope.into(),
        by_path: auth
            .resources
            .iter()
            .map(|(path, resource)| (path.clone(), metadata_url(resource).into()))
            .collect(),
    };
    (doc, challenge)
}

pub async fn no_registration() -> Response {
    let body = json!({
        "error": "registration_not_supported",
        "error_description": "this server uses API keys, not OAuth: send `Authorization: Bearer <key>` (the key given was missing or refused)",
    });
    (http::StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

pub fn resource_metadata(state: &AppState, resource: &str) -> Response {
    if state.metadata.is_null() {
        return EdgeError::NotFound.into_response();
    }
    let mut doc = state.metadata.as_ref().clone();
    doc["resource"] = Value::from(resource);
    let mut response = axum::Json(doc).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    response
}
