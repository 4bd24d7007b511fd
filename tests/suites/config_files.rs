//! Shipped example configs parse; `config/edge.example.toml`, `.env.example` and the
//! committed configuration reference list exactly the keys the binary accepts, with
//! its defaults.

use std::collections::BTreeSet;
use std::path::Path;

use mcp_edge::config::raw::{TABLES, TableSpec, ValueType};
use mcp_edge::config::{self, FlagOverrides, KEYS, KeySpec, Sources, reference};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_shipped_config_parses_and_documents_every_key() {
    let dir = root().join("config");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            seen += 1;
            let text = std::fs::read_to_string(&path).unwrap();
            // Parse: unknown keys or bad values would fail here (secret files need not exist).
            let env: std::collections::HashMap<String, String> = Default::default();
            let result = config::load(Sources {
                file: Some(path.clone()),
                env: &env,
                flags: FlagOverrides::default(),
            });
            assert!(
                result.is_ok(),
                "{}: {}",
                path.display(),
                result.unwrap_err()
            );
            if path.file_name().unwrap() == "edge.example.toml" {
                // Every key's environment variable is named beside it.
                for spec in KEYS {
                    assert!(
                        text.contains(spec.env),
                        "{} does not name {} ({})",
                        path.display(),
                        spec.env,
                        spec.key
                    );
                }
            }
        }
    }
    assert!(seen >= 1, "no configs under {}", dir.display());
}

/// The marker of a value in `config/edge.example.toml` that is deliberately not the
/// default: its trailing comment starts with this (see the top of that file).
const TOML_EXAMPLE_MARK: &str = "# example";

/// The marker of such a value in `.env.example`: the comment line just above the
/// variable ends with it (an env file has no trailing comments).
const ENV_EXAMPLE_MARK: &str = "(example)";

/// One `key = value` line of the example config, commented out or not.
struct Shown {
    line: usize,
    /// The full path: the `[section]` header it is under, then its name.
    key: String,
    value: toml::Value,
    marked: bool,
}

/// The `key = value` lines of a TOML example, under their `[section]` or
/// `[[section]]` headers, whether commented out (`# key = value`) or not.
fn shown_keys(text: &str) -> Result<Vec<Shown>, String> {
    let mut section = String::new();
    let mut shown = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        let trimmed = line.trim();
        let body = trimmed.strip_prefix('#').unwrap_or(trimmed).trim();
        let code = body.split('#').next().unwrap_or_default().trim();
        if let Some(header) = code
            .strip_prefix("[[")
            .and_then(|h| h.strip_suffix("]]"))
            .or_else(|| code.strip_prefix('[').and_then(|h| h.strip_suffix(']')))
        {
            section = header.trim().to_owned();
            continue;
        }
        let Some((name, _)) = body.split_once('=') else {
            continue;
        };
        let name = name.trim();
        let is_key = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !is_key {
            continue;
        }
        let parsed: toml::Table = toml::from_str(body)
            .map_err(|e| format!("line {line_no}: {body:?} is not a TOML key = value: {e}"))?;
        let value = parsed
            .get(name)
            .cloned()
            .unwrap_or(toml::Value::Boolean(false));
        let key = if section.is_empty() {
            name.to_owned()
        } else {
            format!("{section}.{name}")
        };
        shown.push(Shown {
            line: line_no,
            key,
            value,
            marked: body.contains(TOML_EXAMPLE_MARK),
        });
    }
    Ok(shown)
}

/// A TOML value written as in an environment variable (lists comma separated).
fn as_env_text(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(items) => items.iter().map(as_env_text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// The table `key` belongs to, and the field it names there (`backends.credentials.dir`
/// → `[[backends]]`, `credentials.dir`; `rate_limit.tiers.gold.rate` → `rate`).
fn table_field(key: &str) -> Option<(&'static TableSpec, String)> {
    TABLES.iter().find_map(|table| {
        let rest = key.strip_prefix(table.key)?.strip_prefix('.')?;
        let field = match table.ty {
            // Named entries: the first segment is the entry's name.
            ValueType::Table => rest.split_once('.')?.1,
            _ => rest,
        };
        Some((table, field.to_owned()))
    })
}

/// A problem with a shown value: not the default and not marked, or marked but the
/// default after all. `None` for keys without a literal default (any value is an example).
fn default_problem(spec: &KeySpec, value: &str, marked: bool, how_to_mark: &str) -> Option<String> {
    match (spec.is_default(value)?, marked) {
        (true, false) | (false, true) => None,
        (false, false) => Some(format!(
            "{} shows {value:?} but its default is {:?}: show the default, or mark the value \
             as a deliberate example ({how_to_mark})",
            spec.key,
            match spec.default {
                config::raw::DefaultValue::Literal(d) => d,
                _ => "",
            }
        )),
        (true, true) => Some(format!(
            "{} is marked as an example but shows the default {value:?}: drop the mark",
            spec.key
        )),
    }
}

#[test]
fn the_example_config_shows_every_key_once_with_its_default() {
    let path = root().join("config/edge.example.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let shown = shown_keys(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for s in &shown {
        let at = format!("{} line {}", path.display(), s.line);
        if let Some(spec) = KEYS.iter().find(|k| k.key == s.key) {
            if !seen.insert(spec.key) {
                problems.push(format!("{at}: {} is shown twice", spec.key));
            }
            let mark = format!("end the line with `{TOML_EXAMPLE_MARK}`");
            if let Some(p) = default_problem(spec, &as_env_text(&s.value), s.marked, &mark) {
                problems.push(format!("{at}: {p}"));
            }
        } else if TABLES.iter().any(|t| t.key == s.key) {
            // A table key written inline (`group_tiers = { … }`): serde checks inside.
        } else if let Some((table, field)) = table_field(&s.key) {
            match table.fields.iter().find(|f| f.name == field) {
                None => problems.push(format!(
                    "{at}: [{}] has no field {field:?} (the binary would refuse it)",
                    table.key
                )),
                Some(f) => {
                    if let config::raw::DefaultValue::Literal(default) = f.default {
                        let same =
                            f.ty.canonical(default) == f.ty.canonical(&as_env_text(&s.value));
                        if same == s.marked {
                            problems.push(format!(
                                "{at}: {}: {field} shows {} but its default is {default:?} \
                                 (a deliberate example ends with `{TOML_EXAMPLE_MARK}`, \
                                 a default does not)",
                                table.key, s.value
                            ));
                        }
                    }
                }
            }
        } else {
            problems.push(format!(
                "{at}: {} is not a key the binary accepts (a stale or misspelt key)",
                s.key
            ));
        }
    }
    for spec in KEYS {
        if !seen.contains(spec.key) {
            problems.push(format!(
                "{}: {} is missing (show it, commented out with its default if need be)",
                path.display(),
                spec.key
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn env_example_lists_exactly_the_variables_the_server_reads_with_their_defaults() {
    let path = root().join(".env.example");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut listed = BTreeSet::new();
    let mut problems = Vec::new();
    let mut previous = "";
    for (n, line) in text.lines().enumerate() {
        let body = line.trim().trim_start_matches('#').trim();
        let above = previous;
        previous = line.trim();
        let Some((name, value)) = body.split_once('=') else {
            continue;
        };
        let name = name.trim();
        let is_var = name.starts_with("MCP_")
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !is_var {
            continue;
        }
        let at = format!("{} line {}", path.display(), n + 1);
        if !listed.insert(name.to_owned()) {
            problems.push(format!("{at}: {name} is listed twice"));
        }
        if name == config::ENV_CONFIG_FILE {
            continue;
        }
        let Some(spec) = KEYS.iter().find(|k| k.env == name) else {
            problems.push(format!("{at}: {name} is not read by the server (stale?)"));
            continue;
        };
        let marked = above.ends_with(ENV_EXAMPLE_MARK);
        let mark = format!("end the comment line above with `{ENV_EXAMPLE_MARK}`");
        if let Some(p) = default_problem(spec, value, marked, &mark) {
            problems.push(format!("{at}: {name}: {p}"));
        }
    }
    for spec in KEYS {
        if !listed.contains(spec.env) {
            problems.push(format!(
                "{}: {} ({}) is missing",
                path.display(),
                spec.env,
                spec.key
            ));
        }
    }
    if !listed.contains(config::ENV_CONFIG_FILE) {
        problems.push(format!(
            "{}: {} is missing",
            path.display(),
            config::ENV_CONFIG_FILE
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The committed reference is what the binary prints, byte for byte.
#[test]
fn the_committed_reference_is_what_the_binary_prints() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-edge"))
        .args(["config", "reference", "--format", "markdown"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8(output.stdout).unwrap();
    let path = root().join(reference::MARKDOWN_PATH);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if printed != committed {
        let (n, (want, have)) = printed
            .lines()
            .chain(std::iter::repeat(""))
            .zip(committed.lines().chain(std::iter::repeat("")))
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .unwrap_or((0, ("(trailing bytes)", "(trailing bytes)")));
        let key = KEYS
            .iter()
            .find(|k| {
                want.contains(&format!("`{}`", k.env)) || have.contains(&format!("`{}`", k.env))
            })
            .map_or(String::new(), |k| format!(" (key {})", k.key));
        panic!(
            "{} is not what `mcp-edge config reference --format markdown` prints; first \
             difference at line {}{key}:\n  printed:   {want}\n  committed: {have}\n\
             Regenerate it with: {}",
            path.display(),
            n + 1,
            reference::REGENERATE
        );
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-edge"))
        .args(["config", "reference", "--format", "json"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let keys = json["keys"].as_array().unwrap();
    assert_eq!(keys.len(), KEYS.len());
    assert_eq!(json["tables"].as_array().unwrap().len(), TABLES.len());
    for (k, spec) in keys.iter().zip(KEYS) {
        assert_eq!(k["key"], spec.key);
        assert_eq!(k["env"], spec.env);
    }
}
