//! Search snippets: the ~200 characters of a hit's body where most of the query's
//! terms meet, with the terms in bold.
//!
//! tantivy's `SnippetGenerator` tokenizes and stems all the text it is given; the
//! English stemmer allocates per word, so even a 400-byte window cost more than the
//! BM25 query. The terms it would look for are already stems, and a stem is the
//! start of the words it stands for ("limit" for "limits", "configur" for
//! "configuration"), so a word-start substring search over the lowercased body finds
//! them without tokenizing anything. The one common exception is Porter's y → i
//! ("appli" for "apply"), handled by [`Needle`].

use std::collections::VecDeque;

use memchr::memmem::Finder;

/// Snippet length in characters.
pub(super) const SNIPPET_CHARS: usize = 200;
/// Bodies up to this size are lowercased when a snippet is cut; longer ones keep
/// a lowercased copy (lowering a long README on every hit cost more than the search).
const LOWERED_ON_DEMAND_BYTES: usize = 4096;
/// How many term occurrences are weighed at most when choosing the spot.
const MAX_OCCURRENCES: usize = 256;
/// Characters kept before the chosen spot, so the snippet does not start on the term.
const LEAD_CHARS: usize = SNIPPET_CHARS / 4;

/// A document's body as kept in memory for snippets (the index stores only paths,
/// so a hit costs no document decoding).
pub(super) struct DocText {
    body: Box<str>,
    lower: Option<Box<str>>,
}

impl DocText {
    pub(super) fn new(body: String) -> Self {
        let lower =
            (body.len() > LOWERED_ON_DEMAND_BYTES).then(|| body.to_ascii_lowercase().into());
        Self {
            body: body.into(),
            lower,
        }
    }

    /// The snippet for a hit of `terms`: the spot where most distinct terms meet,
    /// terms in bold, whitespace collapsed; the start of the body when no term is
    /// in it (a title-only match).
    pub(super) fn snippet(&self, terms: &QueryTerms) -> String {
        let lowered;
        let lower: &str = match &self.lower {
            Some(lower) => lower,
            None => {
                lowered = self.body.to_ascii_lowercase();
                &lowered
            }
        };
        let Some(spot) = best_spot(lower, terms) else {
            return head_snippet(&self.body);
        };
        let (start, end) = fragment_around(&self.body, spot);
        let highlights: Vec<_> = terms
            .each_in(&lower[start..end])
            .flatten()
            .map(|o| o.start..o.end)
            .collect();
        render_snippet(&self.body[start..end], &highlights)
    }
}

/// The query's (stemmed, lowercase) body terms, made ready to find once per search.
pub(super) struct QueryTerms {
    needles: Vec<Needle>,
}

/// One term to look for. A stem ending in `i` may stand for a word spelt with
/// `y` there ("appli" for "apply"), so it is searched without that `i`, which
/// must then be followed by `i` or `y`.
struct Needle {
    finder: Finder<'static>,
    then_i_or_y: bool,
}

impl QueryTerms {
    pub(super) fn new(terms: &[String]) -> Self {
        let needles = terms
            .iter()
            .filter(|t| !t.is_empty())
            .map(|term| match term.strip_suffix('i') {
                Some(stem) if stem.len() >= 2 => Needle {
                    finder: Finder::new(stem.as_bytes()).into_owned(),
                    then_i_or_y: true,
                },
                _ => Needle {
                    finder: Finder::new(term.as_bytes()).into_owned(),
                    then_i_or_y: false,
                },
            })
            .collect();
        Self { needles }
    }
}

/// A term's occurrence: the byte range of the whole word it starts.
struct Occurrence {
    start: usize,
    end: usize,
    term: usize,
}

/// The occurrences of one term at the start of words of `lower`, in order.
struct Occurrences<'a> {
    lower: &'a str,
    needle: &'a Needle,
    term: usize,
    from: usize,
}

impl Iterator for Occurrences<'_> {
    type Item = Occurrence;

    fn next(&mut self) -> Option<Occurrence> {
        let bytes = self.lower.as_bytes();
        while let Some(at) = self.needle.finder.find(&bytes[self.from..]) {
            let start = self.from + at;
            let after = start + self.needle.finder.needle().len();
            self.from = after;
            let starts_word = !self.lower[..start]
                .chars()
                .next_back()
                .is_some_and(char::is_alphanumeric);
            let spelt = !self.needle.then_i_or_y || matches!(bytes.get(after), Some(b'i' | b'y'));
            if starts_word && spelt {
                let end = self.lower[after..]
                    .find(|c: char| !c.is_alphanumeric())
                    .map_or(self.lower.len(), |n| after + n);
                return Some(Occurrence {
                    start,
                    end,
                    term: self.term,
                });
            }
        }
        self.from = bytes.len();
        None
    }
}

impl QueryTerms {
    fn each_in<'a>(&'a self, lower: &'a str) -> impl Iterator<Item = Occurrences<'a>> {
        self.needles
            .iter()
            .enumerate()
            .map(move |(term, needle)| Occurrences {
                lower,
                needle,
                term,
                from: 0,
            })
    }
}

/// Where the snippet should start: the first place where [`SNIPPET_CHARS`] bytes
/// hold the most distinct terms. Occurrences are merged in text order and the scan
/// stops at the first window that holds every term, so a long document is read
/// only up to there (or in full, at most [`MAX_OCCURRENCES`] occurrences, when
/// some term is missing from it).
fn best_spot(lower: &str, terms: &QueryTerms) -> Option<usize> {
    let mut streams: Vec<_> = terms.each_in(lower).map(Iterator::peekable).collect();
    let mut window: VecDeque<Occurrence> = VecDeque::new();
    let mut counts = vec![0u32; streams.len()];
    let mut distinct = 0;
    let mut best: Option<(usize, usize)> = None;
    for _ in 0..MAX_OCCURRENCES {
        // The earliest next occurrence of any term.
        let Some((i, _)) = streams
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| Some((i, s.peek()?.start)))
            .min_by_key(|&(_, start)| start)
        else {
            break;
        };
        let Some(o) = streams[i].next() else { break };
        let next = o.start;
        counts[o.term] += 1;
        if counts[o.term] == 1 {
            distinct += 1;
        }
        window.push_back(o);
        while let Some(first) = window.front()
            && first.start + SNIPPET_CHARS <= next
        {
            counts[first.term] -= 1;
            if counts[first.term] == 0 {
                distinct -= 1;
            }
            window.pop_front();
        }
        if best.is_none_or(|(most, _)| distinct > most) {
            best = window.front().map(|first| (distinct, first.start));
        }
        if distinct == counts.len() {
            break;
        }
    }
    best.map(|(_, at)| at)
}

/// The byte range of a fragment of about [`SNIPPET_CHARS`] characters that holds
/// `spot` after a short lead, cut at whitespace where there is some.
fn fragment_around(body: &str, spot: usize) -> (usize, usize) {
    let lead_start = body[..spot]
        .char_indices()
        .rev()
        .nth(LEAD_CHARS - 1)
        .map_or(0, |(at, _)| at);
    let start = if lead_start == 0 {
        0
    } else {
        // Begin at the next word, unless the lead holds no whitespace at all.
        body[lead_start..spot]
            .find(char::is_whitespace)
            .map_or(lead_start, |ws| lead_start + ws + 1)
    };
    let end = match body[start..].char_indices().nth(SNIPPET_CHARS) {
        None => body.len(),
        Some((cut, _)) => {
            let cut = start + cut;
            // End after the last whole word, if that keeps the term.
            match body[spot..cut].rfind(char::is_whitespace) {
                Some(ws) if ws > 0 => spot + ws,
                _ => cut,
            }
        }
    };
    (start, end)
}

/// Insert `**` around highlighted byte ranges, then collapse whitespace.
fn render_snippet(fragment: &str, highlighted: &[std::ops::Range<usize>]) -> String {
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
fn head_snippet(body: &str) -> String {
    let flat = collapse_ws(body);
    match flat.char_indices().nth(SNIPPET_CHARS) {
        Some((cut, _)) => format!("{}…", flat[..cut].trim_end()),
        None => flat,
    }
}

fn collapse_ws(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(words: &[&str]) -> QueryTerms {
        QueryTerms::new(&words.iter().map(|w| w.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn a_long_documents_snippet_comes_from_where_the_terms_meet() {
        let body = format!(
            "Rates are mentioned here. {}\nThe rate limit applies per principal.\n{} limits.",
            "Filler words here. ".repeat(400),
            "More filler. ".repeat(400)
        );
        let snippet = DocText::new(body).snippet(&terms(&["limit", "rate"]));
        assert!(
            snippet.contains("The **rate** **limit** applies"),
            "{snippet}"
        );
        assert!(snippet.chars().count() <= SNIPPET_CHARS + 20, "{snippet}");
    }

    #[test]
    fn whole_words_are_bold_from_their_stem_and_only_at_word_starts() {
        let text = DocText::new("Configuration policies apply; generate separately.".into());
        let snippet = text.snippet(&terms(&["configur", "polici", "appli", "rate"]));
        assert_eq!(
            snippet,
            "**Configuration** **policies** **apply**; generate separately."
        );
    }

    #[test]
    fn no_term_in_the_body_gives_its_start() {
        let body = "word ".repeat(100);
        let snippet = DocText::new(body).snippet(&terms(&["zebra"]));
        assert!(snippet.starts_with("word word"), "{snippet}");
        assert!(snippet.ends_with('…'), "{snippet}");
    }

    #[test]
    fn fragments_start_and_end_between_words_and_keep_multibyte_text_whole() {
        let body = format!("{} the zebra grazes {}", "é ".repeat(200), "ü ".repeat(200));
        let snippet = DocText::new(body).snippet(&terms(&["zebra"]));
        assert!(snippet.starts_with("é "), "{snippet}");
        assert!(snippet.contains("the **zebra** grazes"), "{snippet}");
        assert!(snippet.ends_with('ü'), "{snippet}");
    }
}
