//! The in-RAM tantivy index: building it from a scan of the root, searching
//! it, and applying changes to it (see the design notes in `docs`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use tantivy::collector::TopDocs;
use tantivy::query::{AllQuery, BooleanQuery, BoostQuery, Occur, Query, QueryParser, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions, Value as _,
};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, TantivyDocument, Term};
use tracing::{debug, info, warn};

use super::paths::{
    has_doc_extension, in_skipped_dir, in_skipped_place, is_indexable_rel, parse_rel_path,
    read_capped, rel_string,
};
use super::query::{MAX_QUERY_BYTES, body_terms, sanitize_query};
use super::scan::{LoadedDoc, load_doc, resolve, scan_dir};
use super::snippet::{DocText, QueryTerms};
use super::{DOC_EXTENSIONS, DocEntry, DocsError, SearchHit};
use crate::sync::{self, lock};

/// Title matches weigh double.
const TITLE_BOOST: f32 = 2.0;
/// Hard cap on `search` results.
const MAX_LIMIT: usize = 50;
/// Writer memory budget; tantivy requires at least 15 MB per thread.
const WRITER_MEMORY_BYTES: usize = 32_000_000;

#[derive(Clone, Copy)]
struct Fields {
    path: Field,
    title: Field,
    body: Field,
}

/// One change to apply to the index, in order.
enum Op {
    Upsert(LoadedDoc),
    Remove(String),
}

pub struct DocsIndex {
    root: PathBuf,
    fields: Fields,
    reader: IndexReader,
    writer: Mutex<IndexWriter<TantivyDocument>>,
    parser: QueryParser,
    /// The body's tokenizer (stemming), for [`DocsIndex::plain_words`].
    analyzer: TextAnalyzer,
    /// path -> entry and text, mirrors the committed index; only modified while
    /// the writer lock is held so it stays consistent with it. Titles and bodies
    /// live here, not in tantivy's store: a hit then costs a lookup, not the
    /// decoding of a whole stored document.
    entries: RwLock<BTreeMap<String, Indexed>>,
}

struct Indexed {
    entry: DocEntry,
    text: DocText,
}

impl From<LoadedDoc> for Indexed {
    fn from(doc: LoadedDoc) -> Self {
        Indexed {
            entry: DocEntry {
                path: doc.rel,
                title: doc.title,
                bytes: doc.bytes,
            },
            text: DocText::new(doc.body),
        }
    }
}

impl fmt::Debug for DocsIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DocsIndex")
            .field("root", &self.root)
            .field("docs", &self.len())
            .finish_non_exhaustive()
    }
}

impl DocsIndex {
    /// Scan `root` and index every document. Blocking (call from
    /// `spawn_blocking`). Errors if `root` is not a readable directory.
    pub fn build(root: &Path) -> Result<Arc<Self>, DocsError> {
        let meta = fs::metadata(root)?;
        if !meta.is_dir() {
            return Err(DocsError::NotADirectory(root.to_path_buf()));
        }
        let root = fs::canonicalize(root)?;
        // Fail early on an unreadable directory rather than silently serving
        // an empty index.
        fs::read_dir(&root)?;

        let mut builder = Schema::builder();
        // English stemming so "configure" also finds "configuration". Only the
        // path is stored: titles and bodies are kept in `entries`.
        let text = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("en_stem")
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        );
        let fields = Fields {
            path: builder.add_text_field("path", STRING | STORED),
            title: builder.add_text_field("title", text.clone()),
            body: builder.add_text_field("body", text),
        };
        let index = Index::create_in_ram(builder.build());
        // One indexing thread: the machine is small and batches are small.
        let writer = index.writer_with_num_threads(1, WRITER_MEMORY_BYTES)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let mut parser = QueryParser::for_index(&index, vec![fields.title, fields.body]);
        parser.set_field_boost(fields.title, TITLE_BOOST);
        let analyzer = index.tokenizer_for_field(fields.body)?;

        let this = Arc::new(DocsIndex {
            root,
            fields,
            reader,
            writer: Mutex::new(writer),
            parser,
            analyzer,
            entries: RwLock::new(BTreeMap::new()),
        });
        this.reindex_all()?;
        info!(root = %this.root.display(), docs = this.len(), "docs index built");
        Ok(this)
    }

    /// The canonicalized root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Number of indexed documents.
    pub fn len(&self) -> usize {
        sync::read(&self.entries).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// BM25-ranked hits, best first. `limit` is clamped to `1..=50`.
    ///
    /// Query syntax errors do not fail: the query is then parsed leniently so
    /// arbitrary user text works. An empty query is a `QueryParse` error, as
    /// is one longer than 1024 bytes.
    pub fn search(&self, query: &str, limit: usize) -> Result<Vec<SearchHit>, DocsError> {
        let query = query.trim();
        if query.is_empty() {
            return Err(DocsError::QueryParse("query is empty".into()));
        }
        if query.len() > MAX_QUERY_BYTES {
            return Err(DocsError::QueryParse(format!(
                "query is longer than {MAX_QUERY_BYTES} bytes"
            )));
        }
        let limit = limit.clamp(1, MAX_LIMIT);
        let searcher = self.reader.searcher();
        let parsed = self.parse(query, &searcher);
        let top = searcher.search(&*parsed, &TopDocs::with_limit(limit))?;
        let terms = QueryTerms::new(&body_terms(&*parsed, self.fields.body));
        let entries = sync::read(&self.entries);
        let mut hits = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let doc: TantivyDocument = searcher.doc(addr)?;
            let path = doc
                .get_first(self.fields.path)
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            // Absent only in the moment between a commit and the entries' update.
            let Some(Indexed { entry, text }) = entries.get(path) else {
                continue;
            };
            let snippet = text.snippet(&terms);
            hits.push(SearchHit {
                path: entry.path.clone(),
                title: entry.title.clone(),
                snippet,
                score,
            });
        }
        Ok(hits)
    }

    /// Parse user text, never failing: strict syntax first, then tantivy's
    /// lenient parser, then (if the grammar panics, which tantivy 0.25 does
    /// on some inputs) the bare words of the query.
    fn parse(&self, query: &str, searcher: &Searcher) -> Box<dyn Query> {
        if let Some(words) = self.plain_words(query, searcher) {
            return words;
        }
        let query = sanitize_query(query);
        let attempt =
            std::panic::catch_unwind(AssertUnwindSafe(|| match self.parser.parse_query(&query) {
                Ok(q) => q,
                Err(strict_err) => {
                    let (q, errs) = self.parser.parse_query_lenient(&query);
                    debug!(%strict_err, lenient_errors = errs.len(), "query parsed leniently");
                    q
                }
            }));
        match attempt {
            Ok(q) => q,
            Err(_) => {
                warn!(query = %query, "docs: query parser panicked; searching plain words");
                let words: String = query
                    .chars()
                    .map(|c| if c.is_alphanumeric() { c } else { ' ' })
                    .collect();
                // Only words and spaces: nothing left for the grammar to trip on.
                let (q, _) = self.parser.parse_query_lenient(&words);
                q
            }
        }
    }

    /// A query of plain words (letters, digits, spaces: what most searches are), built
    /// directly as the parser would read it — each word's stem in the title (weighing
    /// double) or the body — but as one flat disjunction: the parser's grammar cost
    /// more than the search, and its nesting (a union per word) made tantivy set up
    /// a buffered union scorer per word. A stem found in no document of a field is
    /// left out (it scores nothing): tantivy's block-WAND top-k only runs when every
    /// clause has postings. `None` for anything else.
    fn plain_words(&self, query: &str, searcher: &Searcher) -> Option<Box<dyn Query>> {
        if !query.chars().all(|c| c.is_alphanumeric() || c == ' ') {
            return None;
        }
        let mut analyzer = self.analyzer.clone();
        let mut stream = analyzer.token_stream(query);
        let mut words = BTreeSet::new();
        while let Some(token) = stream.next() {
            words.insert(token.text.clone());
        }
        if words.is_empty() {
            return None;
        }
        let clause = |field, word: &str, boost: f32| -> Option<(Occur, Box<dyn Query>)> {
            let term = Term::from_field_text(field, word);
            // A lookup error keeps the clause: the search itself will report it.
            if searcher.doc_freq(&term).is_ok_and(|n| n == 0) {
                return None;
            }
            let query = TermQuery::new(term, IndexRecordOption::WithFreqs);
            Some(if boost == 1.0 {
                (Occur::Should, Box::new(query))
            } else {
                (
                    Occur::Should,
                    Box::new(BoostQuery::new(Box::new(query), boost)),
                )
            })
        };
        let clauses = words
            .iter()
            .flat_map(|word| {
                [
                    clause(self.fields.title, word, TITLE_BOOST),
                    clause(self.fields.body, word, 1.0),
                ]
            })
            .flatten()
            .collect();
        Some(Box::new(BooleanQuery::new(clauses)))
    }

    /// Text of one document by its relative path as returned by
    /// `search`/`list` (e.g. `guide/setup.md`), read fresh from disk.
    ///
    /// Refuses absolute paths, `..` components and NUL bytes, files whose
    /// canonical target (symlinks followed) is outside the root, and
    /// anything that would not be indexed (wrong extension, hidden or
    /// build/dependency directories, over 2 MiB).
    pub fn read(&self, rel_path: &str) -> Result<String, DocsError> {
        let rel = parse_rel_path(rel_path)?;
        if !has_doc_extension(&rel) {
            return Err(DocsError::InvalidPath(format!(
                "{rel_path}: only {} files can be read",
                DOC_EXTENSIONS.join("/")
            )));
        }
        if in_skipped_place(&rel) {
            // Hidden and build/dependency files are not part of the corpus;
            // report them as absent rather than confirming they exist.
            return Err(DocsError::NotFound(rel_path.to_string()));
        }
        let (canon, _) = resolve(&self.root, &rel, rel_path)?;
        read_capped(&canon, rel_path)
    }

    /// All indexed documents sorted by path.
    pub fn list(&self) -> Vec<DocEntry> {
        sync::read(&self.entries)
            .values()
            .map(|indexed| indexed.entry.clone())
            .collect()
    }

    /// Rescan the whole root and rebuild the index. Blocking.
    pub fn reindex_all(&self) -> Result<(), DocsError> {
        let mut writer = lock(&self.writer);
        // Scan while holding the writer lock so no incremental update can
        // land between our scan and our commit (it would be overwritten).
        let docs = scan_dir(&self.root, &self.root)?;
        let result = (|| -> Result<(), DocsError> {
            writer.delete_query(Box::new(AllQuery))?;
            for doc in &docs {
                writer.add_document(self.to_tantivy(doc))?;
            }
            writer.commit()?;
            Ok(())
        })();
        if let Err(e) = result {
            rollback(&mut writer);
            return Err(e);
        }
        self.reader.reload()?;
        let map = docs
            .into_iter()
            .map(|d| (d.rel.clone(), Indexed::from(d)))
            .collect::<BTreeMap<_, _>>();
        *sync::write(&self.entries) = map;
        Ok(())
    }

    /// Re-sync the given absolute paths with the disk. `walk_dirs` says
    /// whether a directory path should be rescanned (creation/rename) or can
    /// be ignored (metadata change). Returns how many documents were
    /// indexed or removed; on an error the index keeps its last content.
    pub(super) fn sync_paths(&self, paths: &BTreeMap<PathBuf, bool>) -> Result<usize, DocsError> {
        let mut writer = lock(&self.writer);
        let mut ops = Vec::new();
        for (abs, &walk_dirs) in paths {
            self.ops_for_path(abs, walk_dirs, &mut ops);
        }
        if ops.is_empty() {
            return Ok(0);
        }
        let result = (|| -> Result<(), DocsError> {
            for op in &ops {
                match op {
                    Op::Upsert(doc) => {
                        writer.delete_term(Term::from_field_text(self.fields.path, &doc.rel));
                        writer.add_document(self.to_tantivy(doc))?;
                    }
                    Op::Remove(rel) => {
                        writer.delete_term(Term::from_field_text(self.fields.path, rel));
                    }
                }
            }
            writer.commit()?;
            Ok(())
        })();
        if let Err(e) = result {
            rollback(&mut writer);
            return Err(e);
        }
        self.reader.reload()?;
        let changes = ops.len();
        let mut entries = sync::write(&self.entries);
        for op in ops {
            match op {
                Op::Upsert(doc) => {
                    debug!(path = %doc.rel, "docs: indexed");
                    entries.insert(doc.rel.clone(), Indexed::from(doc));
                }
                Op::Remove(rel) => {
                    if entries.remove(&rel).is_some() {
                        debug!(path = %rel, "docs: removed");
                    }
                }
            }
        }
        Ok(changes)
    }

    /// Work out what one changed path means for the index. Must be called
    /// with the writer lock held (it reads `entries` as the committed state).
    fn ops_for_path(&self, abs: &Path, walk_dirs: bool, ops: &mut Vec<Op>) {
        let Ok(rel_path) = abs.strip_prefix(&self.root) else {
            debug!(path = %abs.display(), "docs: event outside root ignored");
            return;
        };
        let Some(rel) = rel_string(rel_path) else {
            return;
        };
        if rel.is_empty() {
            // The root itself: handled by the caller as a full rescan.
            return;
        }
        let prefix = format!("{rel}/");
        let indexed_under: Vec<String> = sync::read(&self.entries)
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();

        match fs::symlink_metadata(abs) {
            Ok(meta) if meta.is_dir() => {
                if !walk_dirs {
                    return;
                }
                if in_skipped_dir(rel_path, true) {
                    return;
                }
                // A directory appeared or was renamed into place: its files
                // may predate the OS watch on it, so scan it.
                match scan_dir(&self.root, abs) {
                    Ok(docs) => {
                        let found: BTreeSet<&str> = docs.iter().map(|d| d.rel.as_str()).collect();
                        for gone in indexed_under.iter().filter(|p| !found.contains(&p[..])) {
                            ops.push(Op::Remove(gone.clone()));
                        }
                        ops.extend(docs.into_iter().map(Op::Upsert));
                    }
                    Err(e) => {
                        warn!(path = %abs.display(), error = %e, "docs: cannot scan directory")
                    }
                }
            }
            Ok(_) => {
                if is_indexable_rel(rel_path) {
                    match load_doc(&self.root, rel_path, &rel) {
                        Some(doc) => ops.push(Op::Upsert(doc)),
                        None => ops.push(Op::Remove(rel)),
                    }
                } else if sync::read(&self.entries).contains_key(&rel) {
                    ops.push(Op::Remove(rel));
                }
            }
            Err(_) => {
                // Gone (or unreachable): drop it and, if it was a directory,
                // everything that was indexed below it.
                if sync::read(&self.entries).contains_key(&rel) {
                    ops.push(Op::Remove(rel));
                }
                ops.extend(indexed_under.into_iter().map(Op::Remove));
            }
        }
    }

    fn to_tantivy(&self, doc: &LoadedDoc) -> TantivyDocument {
        let mut d = TantivyDocument::default();
        d.add_text(self.fields.path, &doc.rel);
        d.add_text(self.fields.title, &doc.title);
        d.add_text(self.fields.body, &doc.body);
        d
    }
}

fn rollback(writer: &mut IndexWriter<TantivyDocument>) {
    if let Err(e) = writer.rollback() {
        warn!(error = %e, "docs: index rollback failed");
    }
}
