//! Text taken from documents: titles from their first heading, and the search
//! snippet cut from a window around the query's terms.

use std::path::Path;

/// Snippet length in characters.
pub(super) const SNIPPET_CHARS: usize = 200;
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

/// Bodies up to this size are given to the snippet generator whole.
const WHOLE_BODY_BYTES: usize = 4096;
/// How many term occurrences [`snippet_window`] weighs at most.
const MAX_OCCURRENCES: usize = 256;

/// The part of `body` the snippet is cut from. The snippet generator tokenizes
/// and stems all the text it is given, which over a long document (the README
/// is ~70 kB) costs milliseconds per hit; a cheap scan for the query's terms
/// picks the ~400 bytes around the spot where most of them meet instead. Terms are
/// stems ("limit" for "limits"), so they are looked up as prefixes of words, in
/// ASCII-lowercased text (byte offsets stay the same). When no term is found
/// the whole body is used, as before.
pub(super) fn snippet_window<'a>(body: &'a str, terms: &[String]) -> &'a str {
    if body.len() <= WHOLE_BODY_BYTES || terms.is_empty() {
        return body;
    }
    let lower = body.to_ascii_lowercase();
    let mut hits: Vec<(usize, usize)> = Vec::new();
    for (t, term) in terms.iter().enumerate() {
        // memchr's SIMD substring search: `str::find` here cost more than the rest
        // of the search together.
        let finder = memchr::memmem::Finder::new(term.as_bytes());
        let mut from = 0;
        while let Some(at) = finder.find(&lower.as_bytes()[from..]) {
            let at = from + at;
            let starts_word = !lower[..at]
                .chars()
                .next_back()
                .is_some_and(char::is_alphanumeric);
            if starts_word {
                hits.push((at, t));
            }
            from = at + term.len();
            if hits.len() >= MAX_OCCURRENCES {
                break;
            }
        }
    }
    if hits.is_empty() {
        return body;
    }
    hits.sort_unstable();
    // The hit whose next SNIPPET_CHARS bytes hold the most distinct terms.
    let mut best = (0, hits[0].0);
    for (i, &(at, _)) in hits.iter().enumerate() {
        let mut seen = vec![false; terms.len()];
        for &(_, t) in hits[i..]
            .iter()
            .take_while(|(p, _)| *p < at + SNIPPET_CHARS)
        {
            seen[t] = true;
        }
        let distinct = seen.iter().filter(|s| **s).count();
        if distinct > best.0 {
            best = (distinct, at);
        }
    }
    // Twice the snippet's length: room for the generator to centre its fragment,
    // little to tokenize and stem.
    let start = floor_boundary(body, best.1.saturating_sub(SNIPPET_CHARS / 2));
    let end = floor_boundary(body, (best.1 + SNIPPET_CHARS * 3 / 2).min(body.len()));
    &body[start..end]
}

fn floor_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Insert `**` around highlighted byte ranges, then collapse whitespace.
pub(super) fn render_snippet(fragment: &str, highlighted: &[std::ops::Range<usize>]) -> String {
    let mut ranges: Vec<_> = highlighted
        .iter()
        .filter(|r| r.start < r.end && r.end <= fragment.len())
        .filter(|r| fragment.is_char_boundary(r.start) && fragment.is_char_boundary(r.end))
        .cloned()
        .collect();
    ranges.sort_by_key(|r| r.start);
    let mut out = String::with_capacity(fragment.len() + 8 * ranges.len());
    let mut pos = 0;
    for r in ranges {
        if r.start < pos {
            continue; // overlapping; the earlier range already covers it
        }
        out.push_str(&fragment[pos..r.start]);
        out.push_str("**");
        out.push_str(&fragment[r.clone()]);
        out.push_str("**");
        pos = r.end;
    }
    out.push_str(&fragment[pos..]);
    collapse_ws(&out)
}

/// First ~200 characters of the body, whitespace collapsed.
pub(super) fn head_snippet(body: &str) -> String {
    let flat = collapse_ws(body);
    match flat.char_indices().nth(SNIPPET_CHARS) {
        Some((cut, _)) => format!("{}…", flat[..cut].trim_end()),
        None => flat,
    }
}

fn collapse_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
