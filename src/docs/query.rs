//! Getting user text safely through tantivy's query grammar, and the terms a
//! parsed query looks for.

use tantivy::query::Query;
use tantivy::schema::Field;

/// Queries longer than this are rejected: the query grammar is recursive and
/// pathological input (thousands of nested parentheses) must not be able to
/// exhaust a worker thread's stack.
pub(super) const MAX_QUERY_BYTES: usize = 1024;
/// tantivy's query grammar backtracks exponentially on nested parentheses
/// (~20 unclosed `(` take seconds, a few hundred overflow the stack), so
/// parentheses nested deeper than this are blanked before parsing.
const MAX_PAREN_DEPTH: usize = 4;

/// Defuse inputs on which tantivy's query grammar misbehaves:
/// - parentheses nested deeper than `MAX_PAREN_DEPTH` are blanked (with
///   their closers; the dropped ones are always the innermost open ones, so a
///   counter pairs them) because parsing is exponential in nesting depth;
/// - a run of `+`/`-` followed by whitespace (e.g. `- *`) is blanked: it applies to
///   nothing, and `- *` makes the grammar panic.
pub(super) fn sanitize_query(query: &str) -> String {
    let mut nested = String::with_capacity(query.len());
    let mut depth = 0usize;
    let mut dropped = 0usize;
    for c in query.chars() {
        match c {
            '(' if depth < MAX_PAREN_DEPTH => {
                depth += 1;
                nested.push('(');
            }
            '(' => {
                dropped += 1;
                nested.push(' ');
            }
            ')' if dropped > 0 => {
                dropped -= 1;
                nested.push(' ');
            }
            ')' => {
                depth = depth.saturating_sub(1);
                nested.push(')');
            }
            _ => nested.push(c),
        }
    }
    // Second pass, as blanking parentheses can leave new dangling operators.
    let chars: Vec<char> = nested.chars().collect();
    let mut out = String::with_capacity(nested.len());
    let mut i = 0;
    while i < chars.len() {
        let run = chars[i..]
            .iter()
            .take_while(|&&x| x == '+' || x == '-')
            .count();
        if run == 0 {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let dangling = chars.get(i + run).is_none_or(|n| n.is_whitespace());
        for &x in &chars[i..i + run] {
            out.push(if dangling { ' ' } else { x });
        }
        i += run;
    }
    out
}

/// The (stemmed, lowercase) words of `query` that search `field`.
pub(super) fn body_terms(query: &dyn Query, field: Field) -> Vec<String> {
    let mut terms = Vec::new();
    query.query_terms(&mut |term, _| {
        if term.field() == field
            && let Some(text) = term.value().as_str()
            && !text.is_empty()
        {
            terms.push(text.to_owned());
        }
    });
    terms.sort();
    terms.dedup();
    terms
}
