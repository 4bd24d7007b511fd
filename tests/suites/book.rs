//! The documentation book (`docs/`, built by mdBook in `.ci/run`): every internal link in
//! `docs/src/**/*.md` points at a page of the book that exists and is listed in
//! `SUMMARY.md`, and every `#anchor` at a heading of that page. mdBook itself checks
//! neither; a broken link fails here, naming the file, the line and the link. The
//! README's links into the repository and the book are checked the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

fn book_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/src")
}

/// Every Markdown file under `dir`, as paths relative to it.
fn markdown_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The lines of a Markdown text outside fenced code blocks, with inline code removed
/// (links inside code are not links), numbered from 1.
fn prose_lines(text: &str) -> Vec<(usize, String)> {
    let mut fence: Option<String> = None;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker: String = trimmed
            .chars()
            .take_while(|&c| c == '`' || c == '~')
            .collect();
        if marker.len() >= 3 && marker.chars().all(|c| c == marker.chars().next().unwrap()) {
            match &fence {
                None => {
                    fence = Some(marker);
                    continue;
                }
                Some(open) if marker.starts_with(open.as_str()) => {
                    fence = None;
                    continue;
                }
                Some(_) => {}
            }
        }
        if fence.is_none() {
            out.push((i + 1, strip_code_spans(line)));
        }
    }
    out
}

/// `line` without its inline code spans (a run of N backticks up to the next run of N).
fn strip_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let run = rest[start..].chars().take_while(|&c| c == '`').count();
        let after = &rest[start + run..];
        let closing = "`".repeat(run);
        match after.find(&closing) {
            Some(end) => rest = &after[end + run..],
            None => {
                out.push_str(&rest[start..start + run]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The targets of the inline links and images (`[text](target "title")`) and of the
/// reference definitions (`[label]: target`) on a line of prose.
fn link_targets(line: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let mut depth = 0usize;
        let mut end = after.len();
        for (i, c) in after.char_indices() {
            match c {
                '(' => depth += 1,
                ')' if depth == 0 => {
                    end = i;
                    break;
                }
                ')' => depth -= 1,
                _ => {}
            }
        }
        let inner = after[..end].trim();
        let target = inner.split_whitespace().next().unwrap_or("");
        let target = target.trim_start_matches('<').trim_end_matches('>');
        targets.push(target.to_owned());
        rest = &after[end.min(after.len())..];
    }
    let trimmed = line.trim_start();
    if trimmed.starts_with('[')
        && !trimmed.starts_with("[^")
        && let Some(close) = trimmed.find("]:")
    {
        let target = trimmed[close + 2..].split_whitespace().next().unwrap_or("");
        targets.push(target.to_owned());
    }
    targets
}

/// The anchor mdBook gives a heading's text: inline markup dropped, lower-cased, letters,
/// digits, `_` and `-` kept, white space turned into `-`, anything else left out.
fn heading_id(text: &str) -> String {
    let mut plain = String::new();
    let mut rest = text;
    // A link in a heading keeps its text.
    while let Some(open) = rest.find('[') {
        plain.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find("](").zip(after.find(')')) {
            Some((mid, close)) if mid < close => {
                plain.push_str(&after[..mid]);
                rest = &after[close + 1..];
            }
            _ => {
                plain.push('[');
                rest = after;
            }
        }
    }
    plain.push_str(rest);
    plain
        .replace("&lt;", "")
        .replace("&gt;", "")
        .replace("&amp;", "")
        .trim()
        .chars()
        .filter_map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '-' {
                Some(c.to_ascii_lowercase())
            } else if c.is_whitespace() {
                Some('-')
            } else {
                None
            }
        })
        .collect()
}

/// The anchors of a page's headings (ATX `#` headings outside code), numbered `-1`, `-2`
/// … when a heading repeats, as mdBook numbers them; `{#id}` sets one explicitly.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    let mut fence: Option<char> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            let c = trimmed.chars().next().unwrap();
            fence = match fence {
                None => Some(c),
                Some(open) if open == c => None,
                other => other,
            };
            continue;
        }
        if fence.is_some() || !trimmed.starts_with('#') {
            continue;
        }
        let level = trimmed.chars().take_while(|&c| c == '#').count();
        let body = &trimmed[level..];
        if level > 6 || !(body.is_empty() || body.starts_with(' ')) {
            continue;
        }
        let body = body.trim().trim_end_matches('#').trim();
        let id = match body.rfind("{#") {
            Some(i) if body.ends_with('}') => body[i + 2..body.len() - 1].to_owned(),
            _ => heading_id(&strip_code_spans_keeping_text(body)),
        };
        let n = seen.entry(id.clone()).or_insert(0);
        out.insert(if *n == 0 {
            id.clone()
        } else {
            format!("{id}-{n}")
        });
        *n += 1;
    }
    out
}

/// `text` with the backticks of its code spans removed but their content kept (a
/// heading's anchor includes the code's text).
fn strip_code_spans_keeping_text(text: &str) -> String {
    text.replace(['`', '*'], "")
}

/// `rel` joined to the folder of `from` (both relative to the book's source), or `None`
/// when it climbs out of the book.
fn resolve(from: &Path, rel: &str) -> Option<PathBuf> {
    let mut parts: Vec<String> = from
        .parent()
        .unwrap_or(Path::new(""))
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.iter().collect())
}

/// Every broken internal link of the book under `src`, one line each:
/// `file:line: link: what is wrong`.
fn broken_links(src: &Path) -> Vec<String> {
    let files = markdown_files(src);
    let text = |p: &Path| std::fs::read_to_string(src.join(p)).unwrap();
    let summary = PathBuf::from("SUMMARY.md");
    let listed: BTreeSet<PathBuf> = prose_lines(&text(&summary))
        .iter()
        .flat_map(|(_, line)| link_targets(line))
        .filter(|t| !t.is_empty())
        .map(PathBuf::from)
        .collect();
    let mut broken = Vec::new();
    for file in &files {
        let source = text(file);
        for (line_no, line) in prose_lines(&source) {
            for target in link_targets(&line) {
                let mut problem = |why: String| {
                    broken.push(format!("{}:{line_no}: {target}: {why}", file.display()))
                };
                if target.is_empty() {
                    problem("empty link".into());
                    continue;
                }
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let (path, anchor) = match target.split_once('#') {
                    Some((p, a)) => (p, Some(a)),
                    None => (target.as_str(), None),
                };
                let page = if path.is_empty() {
                    file.clone()
                } else {
                    match resolve(file, path) {
                        Some(p) => p,
                        None => {
                            problem("points outside docs/src (not part of the built book)".into());
                            continue;
                        }
                    }
                };
                if !src.join(&page).is_file() {
                    problem(format!("no such file docs/src/{}", page.display()));
                    continue;
                }
                let is_md = page.extension().is_some_and(|e| e == "md");
                if is_md && *file != summary && !listed.contains(&page) {
                    problem(format!(
                        "docs/src/{} is not listed in SUMMARY.md, so the book has no such page",
                        page.display()
                    ));
                    continue;
                }
                if let Some(anchor) = anchor {
                    if !is_md {
                        problem("an anchor into a file that is not a page".into());
                    } else if !anchors(&text(&page)).contains(anchor) {
                        problem(format!(
                            "no heading with anchor #{anchor} in {}",
                            page.display()
                        ));
                    }
                }
            }
        }
    }
    broken
}

#[test]
fn every_internal_link_of_the_book_points_at_a_page_and_heading_that_exist() {
    let src = book_src();
    assert!(
        src.join("SUMMARY.md").is_file(),
        "docs/src/SUMMARY.md is missing"
    );
    let broken = broken_links(&src);
    assert!(
        broken.is_empty(),
        "broken links in the book:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_link_check_names_the_file_and_the_link_it_cannot_follow() {
    let dir = std::env::temp_dir().join(format!("mcp-edge-book-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("guide")).unwrap();
    let write = |p: &str, t: &str| std::fs::write(dir.join(p), t).unwrap();
    write(
        "SUMMARY.md",
        "# Summary\n\n- [Intro](intro.md)\n- [Guide](guide/setup.md)\n",
    );
    write(
        "intro.md",
        "# Intro\n\n## Two `words` here\n\n## Again\n\n## Again\n\n\
         [ok](guide/setup.md#set-it-up) [ok](#two-words-here) [ok](#again-1)\n\
         `[not a link](missing.md)`\n\n```md\n[not a link](missing.md)\n```\n\
         [web](https://example.com/x.md)\n",
    );
    write(
        "guide/setup.md",
        "# Set it up\n\n[up](../intro.md) [gone](../nowhere.md) [bad](../intro.md#nope)\n\
         [out](../../README.md) [unlisted](extra.md) [self](#set-it-up)\n",
    );
    write("guide/extra.md", "# Extra\n");
    let mut broken = broken_links(&dir);
    broken.sort();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        broken,
        [
            "guide/setup.md:3: ../intro.md#nope: no heading with anchor #nope in intro.md",
            "guide/setup.md:3: ../nowhere.md: no such file docs/src/nowhere.md",
            "guide/setup.md:4: ../../README.md: points outside docs/src (not part of the built book)",
            "guide/setup.md:4: extra.md: docs/src/guide/extra.md is not listed in SUMMARY.md, so the book has no such page",
        ]
    );
}

#[test]
fn the_readme_links_only_to_files_and_headings_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut broken = Vec::new();
    for (line_no, line) in prose_lines(&readme) {
        for target in link_targets(&line) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((target.as_str(), ""));
            let file = root.join(path);
            if path.is_empty() || !file.exists() {
                broken.push(format!("README.md:{line_no}: {target}: no such file"));
            } else if !anchor.is_empty()
                && !anchors(&std::fs::read_to_string(&file).unwrap()).contains(anchor)
            {
                broken.push(format!("README.md:{line_no}: {target}: no such heading"));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}
