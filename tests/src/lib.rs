//! Shared helpers for the end-to-end and corpus tests of `rmcp-authz`.

pub mod everything;
pub mod http;
pub mod notes;
pub mod postgres;
pub mod provider;
pub mod proxy;
pub mod server;

use std::path::PathBuf;

/// The workspace's root directory (where `target/interop/`, set up by
/// `scripts/setup-interop.sh`, lives).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

/// The directory holding test fixtures (`tests/fixtures`).
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Reads a fixture file as text, failing the test with the path when it is missing.
pub fn read_fixture(relative: &str) -> String {
    let path = fixtures_dir().join(relative);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()))
}

/// The Python of the interop virtual environment (`target/interop/venv`, with PyJWT,
/// `cryptography` and the MCP Python SDK), failing the test with what to run when it is
/// missing.
pub fn interop_python() -> PathBuf {
    let python = repo_root().join("target/interop/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup-interop.sh (scripts/test.sh runs it before the tests)",
        python.display()
    );
    python
}
