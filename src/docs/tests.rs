//! Tests of the docs index: scanning, search, path safety and the watcher.

use super::query::{MAX_QUERY_BYTES, sanitize_query};
use super::snippet::SNIPPET_CHARS;
use super::text::extract_title;
use super::watch::DEBOUNCE;
use super::*;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(p, content).unwrap();
}

fn paths(idx: &DocsIndex) -> Vec<String> {
    idx.list().into_iter().map(|e| e.path).collect()
}

fn hit_paths(idx: &DocsIndex, q: &str) -> Vec<String> {
    idx.search(q, 50)
        .unwrap()
        .into_iter()
        .map(|h| h.path)
        .collect()
}

/// Poll until `cond` holds; generous deadline because CI machines are
/// small and busy, but returns as soon as the condition is met.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

#[test]
fn index_is_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<DocsIndex>();
    check::<Arc<DocsIndex>>();
    check::<DocsWatcher>();
}

#[test]
fn bm25_ranks_dense_title_match_first() {
    let dir = tempfile::tempdir().unwrap();
    let filler = "lorem ipsum dolor sit amet consectetur adipiscing elit ".repeat(20);
    write(
        dir.path(),
        "once.md",
        &format!("# Notes\n\n{filler}\nWe also mention zebra here.\n{filler}"),
    );
    write(
        dir.path(),
        "guide/zebra.md",
        "# Zebra handbook\n\nA zebra is striped. Zebra herds move; every zebra grazes.\n",
    );
    write(dir.path(), "other.md", "# Other\n\nNothing relevant.\n");
    let idx = DocsIndex::build(dir.path()).unwrap();
    assert_eq!(idx.len(), 3);

    let hits = idx.search("zebra", 10).unwrap();
    let got: Vec<_> = hits.iter().map(|h| h.path.as_str()).collect();
    assert_eq!(got, ["guide/zebra.md", "once.md"]);
    assert!(hits[0].score > hits[1].score);
    assert_eq!(hits[0].title, "Zebra handbook");
    assert!(hits[0].snippet.contains("**zebra**") || hits[0].snippet.contains("**Zebra**"));
    assert!(hits[1].snippet.chars().count() <= SNIPPET_CHARS + 20);
    assert!(!hits[1].snippet.contains('\n'));

    // Stemming: "zebras" finds "zebra".
    assert_eq!(hit_paths(&idx, "zebras").len(), 2);
    // Limit is clamped to at least one.
    assert_eq!(idx.search("zebra", 0).unwrap().len(), 1);
}

#[test]
fn title_only_match_gets_body_head_snippet() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.rst", "Quokka\n======\n\nSmall marsupial.\n");
    let idx = DocsIndex::build(dir.path()).unwrap();
    let hits = idx.search("quokka", 5).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].title, "Quokka");
    assert!(!hits[0].snippet.is_empty());
}

#[test]
fn titles() {
    let t = |name: &str, body: &str| extract_title(Path::new(name), body);
    assert_eq!(
        t("a.md", "intro\n\n## Second level ##\n# Later\n"),
        "Second level"
    );
    assert_eq!(
        t("a.md", "---\ntitle: x\n# not a heading\n---\n# Real\n"),
        "Real"
    );
    assert_eq!(
        t("a.md", "```sh\n# comment\n```\n# After fence\n"),
        "After fence"
    );
    assert_eq!(t("a.md", "#hashtag\nno heading here\n"), "a");
    assert_eq!(t("dir/setup-guide.markdown", ""), "setup-guide");
    assert_eq!(
        t("x.mdx", "import X from 'y'\n\n# MDX Title\n"),
        "MDX Title"
    );
    assert_eq!(t("x.rst", "\n=====\nTitle\n=====\n\nbody\n"), "Title");
    assert_eq!(t("x.rst", ".. comment\n\nHeading\n-------\n"), "Heading");
    assert_eq!(t("x.txt", "\n  Release notes  \nmore\n"), "Release notes");
    assert_eq!(t("x.txt", &"long ".repeat(30)), "x");
    assert_eq!(t("x.adoc", ":toc:\n\n= Asciidoc Title\n"), "Asciidoc Title");
    assert_eq!(t("x.MD", "# Upper ext\n"), "Upper ext");
}

#[test]
fn skips_hidden_build_and_foreign_files() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(r, "README.MD", "# Readme\nkeepme\n");
    write(r, "docs/guide.txt", "keepme guide\n");
    write(r, "docs/deep/x.adoc", "= X\nkeepme\n");
    for skipped in [
        ".hidden.md",
        ".git/HEAD.md",
        "docs/.cache/a.md",
        "target/doc/a.md",
        "node_modules/pkg/README.md",
        "dist/a.md",
        "build/a.md",
        "__pycache__/a.md",
        "venv/a.md",
        ".venv/a.md",
        "src/main.rs",
        "image.png",
        "notes.md.bak",
    ] {
        write(r, skipped, "keepme\n");
    }
    // Over the 2 MiB cap.
    write(r, "huge.md", &"keepme ".repeat(400_000));
    let idx = DocsIndex::build(r).unwrap();
    assert_eq!(
        paths(&idx),
        ["README.MD", "docs/deep/x.adoc", "docs/guide.txt"]
    );
    assert_eq!(hit_paths(&idx, "keepme").len(), 3);
    let entry = &idx.list()[0];
    assert_eq!(entry.title, "Readme");
    assert_eq!(entry.bytes, "# Readme\nkeepme\n".len() as u64);
}

#[test]
fn build_rejects_non_directory() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "f.md", "x");
    assert!(matches!(
        DocsIndex::build(&dir.path().join("f.md")),
        Err(DocsError::NotADirectory(_))
    ));
    assert!(matches!(
        DocsIndex::build(&dir.path().join("missing")),
        Err(DocsError::Io(_))
    ));
}

#[test]
fn read_is_confined_to_root() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(r, "guide/setup.md", "# Setup\nsteps\n");
    write(r, "notes.rs", "fn main() {}");
    write(r, ".secret.md", "secret");
    write(outside.path(), "secret.md", "outside secret");
    #[cfg(unix)]
    {
        use std::os::unix::fs::symlink;
        symlink(outside.path().join("secret.md"), r.join("escape.md")).unwrap();
        symlink(outside.path(), r.join("linkdir")).unwrap();
        symlink(r.join("guide/setup.md"), r.join("alias.md")).unwrap();
        symlink(r.join(".secret.md"), r.join("peek.md")).unwrap();
    }
    let idx = DocsIndex::build(r).unwrap();

    assert_eq!(idx.read("guide/setup.md").unwrap(), "# Setup\nsteps\n");
    assert_eq!(idx.read("./guide/setup.md").unwrap(), "# Setup\nsteps\n");
    for bad in [
        "../x.md",
        "a/../../x.md",
        "guide/../guide/setup.md",
        "/etc/passwd",
    ] {
        assert!(
            matches!(idx.read(bad), Err(DocsError::OutsideRoot(_))),
            "{bad} must be refused"
        );
    }
    let abs = r.join("guide/setup.md");
    assert!(matches!(
        idx.read(abs.to_str().unwrap()),
        Err(DocsError::OutsideRoot(_))
    ));
    assert!(matches!(idx.read("a\0.md"), Err(DocsError::InvalidPath(_))));
    assert!(matches!(idx.read(""), Err(DocsError::InvalidPath(_))));
    assert!(matches!(
        idx.read("notes.rs"),
        Err(DocsError::InvalidPath(_))
    ));
    assert!(matches!(
        idx.read(".secret.md"),
        Err(DocsError::NotFound(_))
    ));
    assert!(matches!(
        idx.read("missing.md"),
        Err(DocsError::NotFound(_))
    ));
    assert!(matches!(idx.read("guide"), Err(DocsError::InvalidPath(_))));

    #[cfg(unix)]
    {
        assert!(matches!(
            idx.read("escape.md"),
            Err(DocsError::OutsideRoot(_))
        ));
        assert!(matches!(
            idx.read("linkdir/secret.md"),
            Err(DocsError::OutsideRoot(_))
        ));
        assert!(matches!(
            idx.read("peek.md"),
            Err(DocsError::InvalidPath(_))
        ));
        assert_eq!(idx.read("alias.md").unwrap(), "# Setup\nsteps\n");
        // The scan applies the same rules.
        assert_eq!(paths(&idx), ["alias.md", "guide/setup.md"]);
        assert!(idx.search("outside secret", 10).unwrap().is_empty());
    }

    // read() sees fresh content without reindexing.
    write(r, "guide/setup.md", "changed");
    assert_eq!(idx.read("guide/setup.md").unwrap(), "changed");
    // Size cap applies.
    write(r, "big.md", &"x".repeat(MAX_DOC_BYTES as usize + 1));
    assert!(matches!(
        idx.read("big.md"),
        Err(DocsError::TooLarge { .. })
    ));
}

#[test]
fn lenient_and_invalid_queries() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.md", "# Foo\nfoo bar baz\n");
    let idx = DocsIndex::build(dir.path()).unwrap();
    for q in [
        "foo AND (",
        "foo)",
        "\"foo",
        "title:",
        "nosuchfield:foo",
        "foo^",
        "*",
        ":::",
        "AND OR NOT",
        "[1 TO",
        // These panic inside tantivy 0.25's grammar unless defused.
        "- *",
        "a -+ *",
        "-a:((((+ +()*:",
    ] {
        assert!(idx.search(q, 10).is_ok(), "query {q:?} must not fail");
    }
    assert_eq!(hit_paths(&idx, "foo AND ("), ["a.md"]);
    assert!(matches!(idx.search("", 10), Err(DocsError::QueryParse(_))));
    assert!(matches!(
        idx.search("  \t\n", 10),
        Err(DocsError::QueryParse(_))
    ));
    assert!(matches!(
        idx.search(&"foo ".repeat(400), 10),
        Err(DocsError::QueryParse(_))
    ));
    // Deep nesting is exponential for the grammar and used to overflow a
    // tokio-sized (2 MiB) stack; it must now be quick and harmless.
    let idx2 = Arc::clone(&idx);
    let started = Instant::now();
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            idx2.search(&"(".repeat(MAX_QUERY_BYTES), 10).unwrap();
            let nested = format!("{}foo{}", "(".repeat(500), ")".repeat(500));
            assert_eq!(idx2.search(&nested, 10).unwrap().len(), 1);
            idx2.search(&"NOT (".repeat(200), 10).unwrap();
        })
        .unwrap()
        .join()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn sanitize_query_limits_nesting_and_dangling_operators() {
    assert_eq!(sanitize_query("a AND (b OR c)"), "a AND (b OR c)");
    assert_eq!(sanitize_query("-foo +bar"), "-foo +bar");
    assert_eq!(sanitize_query("(((((x)))))"), "(((( x ))))");
    assert_eq!(sanitize_query("- * foo -"), "  * foo  ");
    assert_eq!(sanitize_query("((((+ (x"), "((((   x");
    assert_eq!(sanitize_query("e-mail"), "e-mail");
}

#[test]
fn concurrent_search_during_reindex() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..20 {
        write(
            dir.path(),
            &format!("d{i}.md"),
            &format!("# Doc {i}\nshared words {i}\n"),
        );
    }
    let idx = DocsIndex::build(dir.path()).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let idx = Arc::clone(&idx);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) || n == 0 {
                    let hits = idx.search("shared", 50).unwrap();
                    assert!(hits.len() >= 20);
                    assert!(idx.list().len() >= 20);
                    idx.read("d3.md").unwrap();
                    n += 1;
                }
            })
        })
        .collect();
    for i in 20..25 {
        write(dir.path(), &format!("d{i}.md"), "shared\n");
        idx.reindex_all().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    assert_eq!(idx.len(), 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_follows_changes() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path().to_path_buf();
    write(&r, "keep.md", "# Keep\nstable content\n");
    write(&r, "edit.md", "# Edit\nbefore pelican\n");
    let root = r.clone();
    let idx = tokio::task::spawn_blocking(move || DocsIndex::build(&root))
        .await
        .unwrap()
        .unwrap();
    let _guard = idx.watch().unwrap();

    // Create.
    write(&r, "new.md", "# New\nfresh armadillo\n");
    eventually("created file indexed", || {
        hit_paths(&idx, "armadillo") == ["new.md"]
    })
    .await;
    assert_eq!(
        idx.list()
            .iter()
            .find(|e| e.path == "new.md")
            .unwrap()
            .title,
        "New"
    );

    // Modify.
    write(&r, "edit.md", "# Edited\nafter flamingo\n");
    eventually("modified file re-indexed", || {
        hit_paths(&idx, "flamingo") == ["edit.md"] && hit_paths(&idx, "pelican").is_empty()
    })
    .await;

    // Editor-style atomic save: write a temp file, rename over the target.
    write(&r, ".keep.md.swp", "# Keep\nreplaced wombat\n");
    fs::rename(r.join(".keep.md.swp"), r.join("keep.md")).unwrap();
    eventually("atomically replaced file re-indexed", || {
        hit_paths(&idx, "wombat") == ["keep.md"] && hit_paths(&idx, "stable").is_empty()
    })
    .await;

    // Delete.
    fs::remove_file(r.join("new.md")).unwrap();
    eventually("deleted file removed", || {
        hit_paths(&idx, "armadillo").is_empty() && idx.len() == 2
    })
    .await;

    // A new directory with files, then renaming and deleting it.
    write(&r, "sub/inner/a.md", "# A\nnested capybara\n");
    write(&r, "sub/b.txt", "nested capybara too\n");
    eventually("new directory indexed", || {
        hit_paths(&idx, "capybara").len() == 2
    })
    .await;
    fs::rename(r.join("sub"), r.join("moved")).unwrap();
    eventually("renamed directory re-indexed", || {
        let mut p = hit_paths(&idx, "capybara");
        p.sort();
        p == ["moved/b.txt", "moved/inner/a.md"]
    })
    .await;
    fs::remove_dir_all(r.join("moved")).unwrap();
    eventually("removed directory dropped", || {
        hit_paths(&idx, "capybara").is_empty() && idx.len() == 2
    })
    .await;

    // Ignored places stay ignored.
    write(&r, "node_modules/x/README.md", "capybara\n");
    write(&r, ".hidden.md", "capybara\n");
    write(&r, "marker.md", "sentinel\n");
    eventually("marker indexed", || hit_paths(&idx, "sentinel").len() == 1).await;
    assert!(hit_paths(&idx, "capybara").is_empty());
    assert_eq!(paths(&idx), ["edit.md", "keep.md", "marker.md"]);
}

#[tokio::test(flavor = "current_thread")]
async fn dropping_watcher_stops_updates() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.md", "alpha\n");
    let idx = DocsIndex::build(dir.path()).unwrap();
    let guard = idx.watch().unwrap();
    write(dir.path(), "b.md", "beta\n");
    eventually("b indexed", || idx.len() == 2).await;
    drop(guard);
    write(dir.path(), "c.md", "gamma\n");
    tokio::time::sleep(DEBOUNCE * 3).await;
    assert_eq!(idx.len(), 2);
}

#[test]
fn plain_words_rank_as_the_query_parser_does() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.md",
        "# Zebra herds\n\nZebras graze in herds.\n",
    );
    write(
        dir.path(),
        "b.md",
        "# Grazing\n\nA zebra grazes alone; herds elsewhere.\n",
    );
    write(dir.path(), "c.md", "# Other\n\nNothing about it.\n");
    let idx = DocsIndex::build(dir.path()).unwrap();
    // The trailing `?` sends the same words through tantivy's query parser. "alone"
    // is in no title and "unicorn" nowhere: the plain query leaves those clauses out.
    let plain = idx.search("zebra herds alone unicorn", 10).unwrap();
    let parsed = idx.search("zebra herds alone unicorn?", 10).unwrap();
    let ranked = |hits: &[SearchHit]| {
        hits.iter()
            .map(|h| (h.path.clone(), (h.score * 1000.0).round() as i64))
            .collect::<Vec<_>>()
    };
    assert_eq!(ranked(&plain), ranked(&parsed));
    assert_eq!(plain.len(), 2);
    assert_eq!(plain[0].path, "a.md", "the title match weighs double");
}
