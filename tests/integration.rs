//! One integration test binary: every suite runs the real server (see `common`).

mod common;
mod suites;
