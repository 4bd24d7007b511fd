//! The module graph of `src/` has no cycles: each module (and each module inside a
//! folder module) only uses the ones below it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `src/server/chain.rs` → `["server", "chain"]`; `mod.rs` names its folder.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().unwrap() != "bin" {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().unwrap() != "tests.rs"
        {
            out.push(path);
        }
    }
}

/// The modules a file's non-test code names through `crate::` and `super::` paths.
fn references(module: &[String], text: &str) -> BTreeSet<Vec<String>> {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    let mut found = BTreeSet::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (prefix, base) in [("crate::", Vec::new()), ("super::", parent(module))] {
            let mut rest = line;
            while let Some(at) = rest.find(prefix) {
                let before = rest[..at].chars().last();
                rest = &rest[at + prefix.len()..];
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                    continue;
                }
                let mut path = base.clone();
                for segment in rest.split("::").take(2) {
                    let name: String = segment
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                        .collect();
                    if name.is_empty() || name.len() != segment.len() && !segment.starts_with(&name)
                    {
                        break;
                    }
                    path.push(name.clone());
                    if name.len() != segment.len() {
                        break;
                    }
                }
                found.insert(path);
            }
        }
    }
    found
}

fn parent(module: &[String]) -> Vec<String> {
    module[..module.len().saturating_sub(1)].to_vec()
}

/// Modules at depth one and two: `server`, `server::chain`, `mcp::backends`.
fn node(path: &[String]) -> String {
    path.iter().take(2).cloned().collect::<Vec<_>>().join("::")
}

fn is_within(a: &str, b: &str) -> bool {
    a == b || a.starts_with(&format!("{b}::")) || b.starts_with(&format!("{a}::"))
}

#[test]
fn the_module_graph_has_no_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    // Between top-level modules, and between the modules inside one folder module.
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let module = module_of(&src, file);
        let text = std::fs::read_to_string(file).unwrap();
        for target in references(&module, &text) {
            let (Some(from_top), Some(to_top)) = (module.first(), target.first()) else {
                continue;
            };
            let (from, to) = match from_top == to_top {
                true => (node(&module), node(&target)),
                false => (from_top.clone(), to_top.clone()),
            };
            if !is_within(&from, &to) {
                graph.entry(from).or_default().insert(to);
            }
        }
    }
    // Every edge `a → b` must not have a way back from `b` to `a`.
    let reaches = |start: &str, goal: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![start.to_owned()];
        while let Some(at) = stack.pop() {
            if at == goal {
                return true;
            }
            if seen.insert(at.clone()) {
                stack.extend(graph.get(&at).into_iter().flatten().cloned());
            }
        }
        false
    };
    let mut cycles = Vec::new();
    for (from, targets) in &graph {
        for to in targets {
            if reaches(to, from) {
                cycles.push(format!("{from} → {to}"));
            }
        }
    }
    assert!(
        graph.contains_key("server::chain") && graph.contains_key("server"),
        "the scan found the modules"
    );
    assert!(cycles.is_empty(), "import cycles: {cycles:#?}");
}
