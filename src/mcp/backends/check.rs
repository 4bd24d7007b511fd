//! What can be checked about `[[backends]]` without starting them: programs exist,
//! working directories exist, credential and CA files are readable (their contents
//! are never printed).

use std::fmt;
use std::path::Path;

use crate::config::{BackendKind, Config};

/// One problem with a backend's files, as a line naming the backend and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileProblem {
    /// A stdio backend's program is not there (yet). `serve` starts anyway: the proxy
    /// answers the backend's calls with a clear error and retries with backoff, as the
    /// program may be installed or mounted later. `check-config` still fails on it.
    ProgramMissing(String),
    /// Anything else (a missing working directory, an unreadable credential or CA
    /// file): fatal to `serve` and `check-config` alike.
    Unusable(String),
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileProblem::ProgramMissing(line) | FileProblem::Unusable(line) => f.write_str(line),
        }
    }
}

/// Every problem with the files of `config`'s backends, in backend order.
pub fn check_files(config: &Config) -> Vec<FileProblem> {
    let mut problems = Vec::new();
    for (i, b) in config.backends.iter().enumerate() {
        let at = |field: &str| format!("backends[{i}].{field} ({})", b.name);
        match &b.kind {
            BackendKind::Stdio { command, cwd, .. } => {
                if let Some(program) = command.first()
                    && !program_exists(program)
                {
                    problems.push(FileProblem::ProgramMissing(format!(
                        "{}: {program:?} is not an executable file or on PATH",
                        at("command")
                    )));
                }
                if let Some(dir) = cwd
                    && !dir.is_dir()
                {
                    problems.push(FileProblem::Unusable(format!(
                        "{}: {} is not a directory",
                        at("cwd"),
                        dir.display()
                    )));
                }
            }
            BackendKind::Http {
                credential_file,
                ca_file,
                ..
            } => {
                if let Some(file) = credential_file
                    && let Err(e) = std::fs::read_to_string(file)
                {
                    problems.push(FileProblem::Unusable(format!(
                        "{}: {}: {e}",
                        at("credential_file"),
                        file.display()
                    )));
                }
                if let Some(file) = ca_file
                    && let Some(problem) = ca_file_problem(file)
                {
                    problems.push(FileProblem::Unusable(format!(
                        "{}: {}: {problem}",
                        at("ca_file"),
                        file.display()
                    )));
                }
            }
            BackendKind::Docs => {}
        }
        // Each principal's files are read when their child starts; the directory
        // holding them must be there and listable now.
        if let Some(dir) = b.credentials.as_ref().and_then(|c| c.dir.as_ref()) {
            let problem = match std::fs::read_dir(dir) {
                Ok(_) => None,
                Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
                    Some("is not a directory".to_owned())
                }
                Err(e) => Some(e.to_string()),
            };
            if let Some(problem) = problem {
                problems.push(FileProblem::Unusable(format!(
                    "{}: {}: {problem}",
                    at("credentials.dir"),
                    dir.display()
                )));
            }
        }
    }
    problems
}

/// Why a CA file cannot be used: unreadable, or no PEM certificate in it.
fn ca_file_problem(file: &Path) -> Option<String> {
    match std::fs::read(file) {
        Err(e) => Some(e.to_string()),
        Ok(pem) => reqwest::Certificate::from_pem_bundle(&pem)
            .map(|c| c.is_empty())
            .unwrap_or(true)
            .then(|| "no PEM certificate in it".to_owned()),
    }
}

fn program_exists(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return executable(Path::new(program));
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| executable(&dir.join(program))))
}
