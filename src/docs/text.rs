//! Titles taken from documents' first heading.

use std::path::Path;

/// Longest heading/first line accepted as a title for .rst/.txt files.
const MAX_TITLE_CHARS: usize = 100;

/// First heading (Markdown ATX / AsciiDoc `=`), or for .rst/.txt the first
/// non-empty line if short; otherwise the file stem.
pub(super) fn extract_title(rel: &Path, body: &str) -> String {
    let ext = rel
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let found = match ext.as_str() {
        "rst" | "txt" => first_line_title(body, ext == "rst"),
        "adoc" => heading_title(body, '=').or_else(|| heading_title(body, '#')),
        _ => heading_title(body, '#'),
    };
    found.unwrap_or_else(|| {
        rel.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    })
}

/// First ATX-style heading using `marker` (`#` for Markdown, `=` for
/// AsciiDoc), skipping YAML front matter and fenced code blocks (where `#`
/// usually starts a shell comment, not a heading).
fn heading_title(body: &str, marker: char) -> Option<String> {
    let mut lines = body.lines().peekable();
    if lines.peek().is_some_and(|l| l.trim_end() == "---") {
        lines.next();
        for l in lines.by_ref() {
            let l = l.trim_end();
            if l == "---" || l == "..." {
                break;
            }
        }
    }
    let mut fence: Option<&str> = None;
    for line in lines {
        let t = line.trim_start();
        if let Some(open) = fence {
            if t.starts_with(open) {
                fence = None;
            }
            continue;
        }
        if t.starts_with("```") {
            fence = Some("```");
            continue;
        }
        if t.starts_with("~~~") {
            fence = Some("~~~");
            continue;
        }
        if let Some(title) = parse_atx(t, marker) {
            return Some(title);
        }
    }
    None
}

fn parse_atx(line: &str, marker: char) -> Option<String> {
    let level = line.chars().take_while(|&c| c == marker).count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &line[level * marker.len_utf8()..];
    if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
        return None;
    }
    // Optional closing sequence: "## Title ##".
    let title = rest.trim().trim_end_matches(marker).trim_end();
    (!title.is_empty()).then(|| title.to_string())
}

fn first_line_title(body: &str, rst: bool) -> Option<String> {
    for line in body.lines() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        // rst over-line adornment ("=====") or comment/directive ("..").
        if is_adornment(t) || (rst && t.starts_with("..")) {
            continue;
        }
        let t = parse_atx(t, '#').unwrap_or_else(|| t.to_string());
        return (t.chars().count() <= MAX_TITLE_CHARS).then_some(t);
    }
    None
}

fn is_adornment(line: &str) -> bool {
    let mut chars = line.chars();
    match chars.next() {
        Some(c) if c.is_ascii_punctuation() => line.len() >= 2 && chars.all(|x| x == c),
        _ => false,
    }
}
