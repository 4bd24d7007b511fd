//! Per-tool access: which principal may see and call which tool.
//!
//! API-key principals carry an allowlist from their keys-file line (`tools=`);
//! JWT principals need the scopes `[access.tool_scopes]` names for a tool (the most
//! specific matching entry wins; `default_tool_scopes` covers the rest).

use super::{Principal, PrincipalKind};
use crate::config::AccessConfig;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolDenied {
    #[error("tool {tool:?} is not permitted for principal {principal:?}")]
    NotAllowed { tool: String, principal: String },
    #[error("tool {tool:?} needs scope(s) {}", missing.join(" "))]
    MissingScopes { tool: String, missing: Vec<String> },
}

/// `name` matches `pattern` exactly, or `pattern` ends in `*` and is a prefix of it.
pub fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

#[derive(Debug, Clone, Default)]
pub struct ToolPolicy {
    /// Sorted most specific first: exact names, then longer globs.
    tool_scopes: Vec<(String, Vec<String>)>,
    default_scopes: Vec<String>,
}

impl ToolPolicy {
    pub fn new(access: &AccessConfig) -> ToolPolicy {
        let mut tool_scopes: Vec<(String, Vec<String>)> = access
            .tool_scopes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        tool_scopes.sort_by_key(|(p, _)| (p.ends_with('*'), std::cmp::Reverse(p.len())));
        ToolPolicy {
            tool_scopes,
            default_scopes: access.default_tool_scopes.clone(),
        }
    }

    /// The scopes a JWT needs for `tool`.
    pub fn scopes_for(&self, tool: &str) -> &[String] {
        self.tool_scopes
            .iter()
            .find(|(p, _)| matches(p, tool))
            .map(|(_, s)| s.as_slice())
            .unwrap_or(&self.default_scopes)
    }

    /// Every scope the policy mentions (for `scopes_supported`).
    pub fn all_scopes(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .tool_scopes
            .iter()
            .flat_map(|(_, s)| s.iter().cloned())
            .chain(self.default_scopes.iter().cloned())
            .collect();
        all.sort();
        all.dedup();
        all
    }

    pub fn check(&self, principal: &Principal, tool: &str) -> Result<(), ToolDenied> {
        if principal.kind == PrincipalKind::Anonymous {
            return Ok(());
        }
        if let Some(allowed) = &principal.tools
            && !allowed.iter().any(|p| matches(p, tool))
        {
            return Err(ToolDenied::NotAllowed {
                tool: tool.to_owned(),
                principal: principal.name.to_string(),
            });
        }
        if let Some(scopes) = &principal.scopes {
            let missing: Vec<String> = self
                .scopes_for(tool)
                .iter()
                .filter(|s| !scopes.contains(*s))
                .cloned()
                .collect();
            if !missing.is_empty() {
                return Err(ToolDenied::MissingScopes {
                    tool: tool.to_owned(),
                    missing,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use super::*;

    fn policy() -> ToolPolicy {
        let mut access = AccessConfig::default();
        access
            .tool_scopes
            .insert("search_docs".into(), vec!["docs:read".into()]);
        access
            .tool_scopes
            .insert("github__*".into(), vec!["github".into()]);
        access.tool_scopes.insert(
            "github__delete_repo".into(),
            vec!["github".into(), "admin".into()],
        );
        access.default_tool_scopes = vec!["mcp".into()];
        ToolPolicy::new(&access)
    }

    fn jwt(scopes: &[&str]) -> Principal {
        Principal {
            kind: PrincipalKind::Jwt,
            scopes: Some(Arc::new(
                scopes
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<BTreeSet<_>>(),
            )),
            ..Principal::new("ana")
        }
    }

    #[test]
    fn scopes_by_most_specific_rule() {
        let p = policy();
        assert!(p.check(&jwt(&["docs:read"]), "search_docs").is_ok());
        assert!(p.check(&jwt(&["github"]), "github__list").is_ok());
        assert_eq!(
            p.check(&jwt(&["github"]), "github__delete_repo"),
            Err(ToolDenied::MissingScopes {
                tool: "github__delete_repo".into(),
                missing: vec!["admin".into()]
            })
        );
        assert!(p.check(&jwt(&[]), "read_doc").is_err());
        assert!(p.check(&jwt(&["mcp"]), "read_doc").is_ok());
        assert_eq!(p.all_scopes(), ["admin", "docs:read", "github", "mcp"]);
    }

    #[test]
    fn api_key_allowlists() {
        let p = policy();
        let mut bob = Principal::new("bob");
        assert!(p.check(&bob, "anything").is_ok());
        bob.tools = Some(vec!["search_docs".to_string(), "github__*".into()].into());
        assert!(p.check(&bob, "github__list").is_ok());
        assert!(matches!(
            p.check(&bob, "read_doc"),
            Err(ToolDenied::NotAllowed { .. })
        ));
    }
}
