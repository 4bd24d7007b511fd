//! How several backends share one set of names: tools and prompts `<name>__<tool>`,
//! resource URIs and templates `<name>+<uri>`, resource names `<name>__<resource>`;
//! with one backend nothing is renamed. Also how the members' server infos merge into
//! the one the client sees.

use std::sync::Arc;

use rmcp::model::{
    Implementation, PromptsCapability, ResourceContents, ServerCapabilities, ServerConfig,
    ToolsCapability,
};

/// Separator between a backend's name and its tool or prompt name.
pub const NAME_SEP: &str = "__";
/// Separator between a backend's name and a resource URI (`<name>+<uri>`).
pub const URI_SEP: char = '+';

/// The members' names, in `[[backends]]` order (an index is a member).
pub struct Namespace {
    names: Vec<Arc<str>>,
    namespaced: bool,
}

impl Namespace {
    pub fn new(names: Vec<Arc<str>>) -> Namespace {
        Namespace {
            namespaced: names.len() > 1,
            names,
        }
    }

    /// Whether the client sees prefixed names (more than one member).
    pub fn is_namespaced(&self) -> bool {
        self.namespaced
    }

    /// The prefix member `index` gets, if names are prefixed.
    pub fn prefix(&self, index: usize) -> Option<String> {
        self.namespaced.then(|| self.names[index].to_string())
    }

    /// The member serving a tool or prompt name the client sees, and its own name.
    pub fn find_by_name<'a>(&self, name: &'a str) -> Option<(usize, &'a str)> {
        self.find(name, |rest| rest.strip_prefix(NAME_SEP))
    }

    /// The member serving a resource URI the client sees, and its own URI.
    pub fn find_by_uri<'a>(&self, uri: &'a str) -> Option<(usize, &'a str)> {
        self.find(uri, |rest| rest.strip_prefix(URI_SEP))
    }

    fn find<'a>(
        &self,
        full: &'a str,
        after_sep: impl Fn(&'a str) -> Option<&'a str>,
    ) -> Option<(usize, &'a str)> {
        if !self.namespaced {
            return Some((0, full));
        }
        self.names.iter().enumerate().find_map(|(i, n)| {
            full.strip_prefix(&**n)
                .and_then(&after_sep)
                .map(|rest| (i, rest))
        })
    }

    /// Member `index`'s tool, prompt or resource name as the client sees it.
    pub fn name(&self, index: usize, name: &str) -> String {
        if self.namespaced {
            format!("{}{NAME_SEP}{name}", self.names[index])
        } else {
            name.to_owned()
        }
    }

    /// Member `index`'s resource URI (or template) as the client sees it.
    pub fn uri(&self, index: usize, uri: &str) -> String {
        if self.namespaced {
            format!("{}{URI_SEP}{uri}", self.names[index])
        } else {
            uri.to_owned()
        }
    }

    /// The server info the client sees: one member's own (minus what the proxy does
    /// not forward), or the union of several members' capabilities.
    pub fn merge_info(&self, infos: &[(usize, Option<ServerConfig>)]) -> ServerConfig {
        if !self.namespaced
            && let Some((_, Some(info))) = infos.first()
        {
            let mut info = info.clone();
            // Extensions (tasks, skills) need methods this proxy does not forward.
            info.capabilities.extensions = None;
            info.capabilities.experimental = None;
            info.meta = None;
            return info;
        }
        if infos.iter().all(|(_, i)| i.is_none()) {
            return default_info();
        }
        let mut caps = ServerCapabilities::default();
        let mut instructions = Vec::new();
        for (i, info) in infos {
            let Some(info) = info else { continue };
            merge_capabilities(&mut caps, &info.capabilities);
            if let Some(text) = &info.instructions {
                instructions.push(format!("[{}] {text}", self.names[*i]));
            }
        }
        let mut info = ServerConfig::new(caps)
            .with_server_info(Implementation::new("mcp-edge", env!("CARGO_PKG_VERSION")));
        if !instructions.is_empty() {
            info = info.with_instructions(instructions.join("\n"));
        }
        info
    }
}

/// Add one member's capabilities to the merged ones. Lists may change as members
/// come and go, so every merged list says `list_changed`.
fn merge_capabilities(caps: &mut ServerCapabilities, c: &ServerCapabilities) {
    if c.tools.is_some() {
        let mut t = ToolsCapability::default();
        t.list_changed = Some(true);
        caps.tools = Some(t);
    }
    if c.prompts.is_some() {
        let mut p = PromptsCapability::default();
        p.list_changed = Some(true);
        caps.prompts = Some(p);
    }
    if let Some(r) = &c.resources {
        let mut merged = caps.resources.take().unwrap_or_default();
        merged.subscribe = Some(merged.subscribe.unwrap_or(false) || r.subscribe.unwrap_or(false));
        merged.list_changed = Some(true);
        caps.resources = Some(merged);
    }
    if c.completions.is_some() {
        caps.completions = Some(Default::default());
    }
    if c.logging.is_some() {
        caps.logging = Some(Default::default());
    }
}

/// What the proxy claims before (or without) hearing from any backend.
pub fn default_info() -> ServerConfig {
    ServerConfig::new(
        ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_resources()
            .enable_prompts()
            .enable_completions()
            .enable_logging()
            .build(),
    )
    .with_server_info(Implementation::new("mcp-edge", env!("CARGO_PKG_VERSION")))
}

/// A connected upstream's handshake result, as server info.
pub fn peer_to_info(p: &rmcp::model::ServerPeerInfo) -> ServerConfig {
    let mut info = ServerConfig::new(p.capabilities.clone());
    info.protocol_version = p.protocol_version.clone();
    if let Some(s) = &p.server_info {
        info.server_info = s.clone();
    }
    info.instructions = p.instructions.clone();
    info
}

/// Apply `f` to the URI of one content item of a `resources/read` result.
pub fn rename_contents_uri(c: &mut ResourceContents, f: impl Fn(&str) -> String) {
    match c {
        ResourceContents::TextResourceContents { uri, .. }
        | ResourceContents::BlobResourceContents { uri, .. } => *uri = f(uri),
        #[allow(unreachable_patterns)]
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_members_are_prefixed_one_is_not() {
        let ns = Namespace::new(vec!["a".into(), "ab".into()]);
        assert_eq!(ns.name(1, "t"), "ab__t");
        assert_eq!(ns.uri(0, "file:///x"), "a+file:///x");
        assert_eq!(ns.find_by_name("ab__t"), Some((1, "t")));
        assert_eq!(ns.find_by_uri("a+file:///x"), Some((0, "file:///x")));
        assert_eq!(ns.find_by_name("c__t"), None);
        assert_eq!(ns.prefix(0).as_deref(), Some("a"));

        let one = Namespace::new(vec!["a".into()]);
        assert_eq!(one.name(0, "t"), "t");
        assert_eq!(one.find_by_name("anything"), Some((0, "anything")));
        assert_eq!(one.prefix(0), None);
    }
}
