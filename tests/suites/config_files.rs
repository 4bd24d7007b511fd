//! Shipped example configs parse, and `.env.example` lists exactly the env vars read.

use std::collections::BTreeSet;
use std::path::Path;

use mcp_edge::config::{self, FlagOverrides, KEYS, Sources};

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
                // Every key appears, commented out or set, with its env var named.
                for spec in KEYS {
                    let name = spec.key.rsplit('.').next().unwrap();
                    assert!(
                        text.contains(&format!("{name} =")),
                        "{} missing {}",
                        path.display(),
                        spec.key
                    );
                    assert!(
                        text.contains(spec.env),
                        "{} does not name {}",
                        path.display(),
                        spec.env
                    );
                }
            }
        }
    }
    assert!(seen >= 1, "no configs under {}", dir.display());
}

#[test]
fn env_example_lists_exactly_the_variables_the_server_reads() {
    let text = std::fs::read_to_string(root().join(".env.example")).unwrap();
    let listed: BTreeSet<String> = text
        .lines()
        .map(|l| l.trim().trim_start_matches('#').trim())
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_owned()))
        .filter(|k| {
            k.starts_with("MCP_")
                && k.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .collect();
    let mut read: BTreeSet<String> = KEYS.iter().map(|k| k.env.to_owned()).collect();
    read.insert(config::ENV_CONFIG_FILE.to_owned());
    assert_eq!(
        listed, read,
        ".env.example and the server's env vars differ"
    );
}
